// Keyed count for the checkpoint tests. TP_N records { k, i } from a generator, keys
// from TP_KEYS values (default 1000), keyBy → reduce keeping { n, i } (records of the
// key so far, index of the last one) → file sink TP_OUT (lines { key, value: { n, i } }).
// TP_RATE paces each source instance (records/s; unset: unpaced). TP_REDUCE renames
// the reduce (default 'counts'), TP_SOURCE the source (default 'gen'): restoring a
// checkpoint into a changed flow. TP_PAD adds a string of that many characters to every
// accumulator (field p: pages full of strings, as real state has).
import { flow, sources, sinks } from 'tidepool';
import { envRate, pacer } from './lib/pace.js';

interface Rec { k: string; i: number }
interface Acc { n: number; i: number; p?: string }

const n = Number(process.env.TP_N);
const keys = Number(process.env.TP_KEYS ?? 1000);
const out = process.env.TP_OUT;
const reduceName = process.env.TP_REDUCE || 'counts';
const sourceName = process.env.TP_SOURCE || 'gen';
if (!Number.isSafeInteger(n) || !Number.isSafeInteger(keys) || keys < 1 || !out) {
  throw new Error('keyed-count fixture: set TP_N, TP_OUT (and TP_KEYS, TP_RATE, TP_REDUCE)');
}
const pace = pacer(envRate());
const pad = Number(process.env.TP_PAD ?? 0) > 0 ? 'x'.repeat(Number(process.env.TP_PAD)) : undefined;

/** Record i's key: i scrambled, mod `keys` (the tests compute the same). */
const keyOf = (i: number): string => `k${(Math.imul(i, 2654435761) >>> 0) % keys}`;

export default flow('chk-count')
  .source(sourceName, sources.generator({ count: n, make: (i): Rec => (pace(), { k: keyOf(i), i }) }))
  .keyBy((r: Rec) => r.k)
  .reduce(reduceName, (acc: Acc | undefined, r: Rec): Acc => (pad === undefined ? { n: (acc?.n ?? 0) + 1, i: r.i } : { n: (acc?.n ?? 0) + 1, i: r.i, p: pad }))
  .sink('out', sinks.file({ path: out }));
