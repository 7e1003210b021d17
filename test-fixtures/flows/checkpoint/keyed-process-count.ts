// keyed-count.ts with a `process` operator and value state instead of the reduce: its
// state table appears only once a record reaches an instance, so an instance that no
// record reached before a checkpoint never flushed (the manifest names it at version 0).
// TP_N records { k, i }, TP_KEYS keys (default 1000), TP_RATE pacing, TP_OUT file sink
// (lines { key, value: { n, i } }, as keyed-count.ts writes them).
import { flow, sources, sinks } from 'tidepool';
import { envRate, pacer } from './lib/pace.js';

interface Rec { k: string; i: number }

const n = Number(process.env.TP_N);
const keys = Number(process.env.TP_KEYS ?? 1000);
const out = process.env.TP_OUT;
if (!Number.isSafeInteger(n) || !Number.isSafeInteger(keys) || keys < 1 || !out) {
  throw new Error('keyed-process-count fixture: set TP_N, TP_OUT (and TP_KEYS, TP_RATE)');
}
const pace = pacer(envRate());
const keyOf = (i: number): string => `k${(Math.imul(i, 2654435761) >>> 0) % keys}`;

export default flow('chk-count')
  .source('gen', sources.generator({ count: n, make: (i): Rec => (pace(), { k: keyOf(i), i }) }))
  .keyBy((r: Rec) => r.k)
  .process('counts', (r: Rec, ctx) => {
    const count = ctx.state.value<number>('n');
    const c = (count.get() ?? 0) + 1;
    count.set(c);
    ctx.emit({ key: ctx.key, value: { n: c, i: r.i } });
  })
  .sink('out', sinks.file({ path: out }));
