// A TypeScript flow module: annotations, an interface, generics, and a relative import
// of a .ts helper (NodeNext style: './lib/shapes.js' is lib/shapes.ts). TP_OUTPUT.
import { flow, sources, sinks, type Flow } from 'tidepool';
import { band, readings, Band, type Reading } from './lib/shapes.js';

interface Banded extends Reading {
  band: Band;
}

const output: string = process.env.TP_OUTPUT ?? '';
if (output === '') throw new Error('typed-flow fixture: set TP_OUTPUT');

function withBand<T extends Reading>(r: T): T & { band: Band } {
  return { ...r, band: band(r) };
}

const typed: Flow = flow('typed-flow')
  .source('readings', sources.array<Reading>(readings(200)))
  .map('band', (r: Reading): Banded => withBand(r))
  .filter('not-mild', (r: Banded): boolean => r.band !== Band.Mild)
  .keyBy((r: Banded): string => r.band)
  .reduce('per-band', (acc: number | undefined, _r: Banded): number => (acc ?? 0) + 1)
  .sink('out', sinks.file({ path: output }));

export default typed;
