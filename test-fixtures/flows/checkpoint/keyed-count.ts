// Keyed count for the checkpoint tests: TP_N records { k, i } from a generator, keys
// drawn from TP_KEYS values, keyBy → reduce keeping { n, i } (count so far and the index
// of the last record) → file sink TP_OUT. TP_REDUCE renames the reduce (default
// 'counts'), to restore a checkpoint into a changed flow.
import { flow, sources, sinks } from 'tidepool';

interface Rec { k: string; i: number }
interface Acc { n: number; i: number }

const n = Number(process.env.TP_N);
const keys = Number(process.env.TP_KEYS ?? 1000);
const out = process.env.TP_OUT;
const reduceName = process.env.TP_REDUCE || 'counts';
if (!Number.isSafeInteger(n) || !Number.isSafeInteger(keys) || !out) throw new Error('keyed-count fixture: set TP_N, TP_KEYS and TP_OUT');


export default flow('chk-count')
  .source('gen', sources.generator({ count: n, make: (i): Rec => ({ k: `k${(Math.imul(i, 2654435761) >>> 0) % keys}`, i }) }))
  .keyBy((r: Rec) => r.k)
  .reduce(reduceName, (acc: Acc | undefined, r: Rec): Acc => ({ n: (acc?.n ?? 0) + 1, i: r.i }))
  .sink('out', sinks.file({ path: out }));
