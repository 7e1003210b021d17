// Keyed sums: TP_COUNT records { k: `k${i % 997}`, i, v } from a generator, a stateless
// map, a reduce keeping { n, sum, last } per key, and a formatting map into TP_OUTPUT.
import { flow, sources, sinks } from 'tidepool';

interface Rec { k: string; i: number; v: number }
interface Acc { n: number; sum: number; last: number }

const count = Number(process.env.TP_COUNT);
const output = process.env.TP_OUTPUT;
if (!Number.isSafeInteger(count) || !output) throw new Error('keyed-sum fixture: set TP_COUNT and TP_OUTPUT');

export const valueOf = (i: number): number => ((i * 7) % 13) + 1;

export default flow('keyed-sum')
  .source('gen', sources.generator({ count, make: (i): Rec => ({ k: `k${i % 997}`, i, v: 0 }) }))
  .map('tag', (r: Rec): Rec => ({ ...r, v: valueOf(r.i) }))
  .keyBy((r: Rec) => r.k)
  .reduce('sums', (acc: Acc | undefined, r: Rec): Acc => ({ n: (acc?.n ?? 0) + 1, sum: (acc?.sum ?? 0) + r.v, last: r.i }))
  .map('fmt', (u: { key: string; value: Acc }) => ({ k: u.key, n: u.value.n, sum: u.value.sum, i: u.value.last }))
  .sink('out', sinks.file({ path: output }));
