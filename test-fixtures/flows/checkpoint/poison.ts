// Poison records for the errors.onRecord tests: TP_N generated records { i }; the map
// 'parse' throws on every i % 97 === 3, the reduce 'sum' throws on every i % 89 === 5
// (the map's records otherwise pass), then a file sink TP_OUT of { key, value }.
// TP_RATE paces the source (records/s).
import { flow, sources, sinks } from 'tidepool';
import { envRate, pacer } from './lib/pace.js';

const n = Number(process.env.TP_N ?? 2000);
const out = process.env.TP_OUT;
if (!out) throw new Error('poison fixture: set TP_OUT');
const pace = pacer(envRate());

export default flow('chk-poison')
  .source('gen', sources.generator({ count: n, make: (i) => (pace(), { i }) }))
  .map('parse', (r: { i: number }) => {
    if (r.i % 97 === 3) throw new Error(`cannot parse ${r.i}`);
    return r;
  })
  .keyBy((r: { i: number }) => r.i % 10)
  .reduce('sum', (acc: number | undefined, r: { i: number }) => {
    if (r.i % 89 === 5) throw new RangeError(`bad ${r.i}`);
    return (acc ?? 0) + r.i;
  })
  .sink('out', sinks.file({ path: out }));
