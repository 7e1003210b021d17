// A graph flow for the crash loops: three sources, fan-out, union, a sliding window,
// a two-input keyed process with event-time timers, a window join and four sinks.
//
//   a (TP_A records) ─┬─ union(c) ─ keyBy k ─ window sliding 1000/250 count ─→ out-win
//                     ├─ connect(b).process (timers per 500 ms bucket) ───────→ out-co
//                     ├─ windowJoin(b) tumbling 500 ───────────────────────────→ out-wj
//                     └─ map ──────────────────────────────────────────────────→ out-copy
//   b (TP_B records) ─┘ (both above)     c (TP_C records): into the union
//
// Event time is bounded-disorder (≤ 40 ms, watermark allows 50), so no record is ever
// late and every output is a function of the input alone: a run killed and resumed
// must produce exactly the multisets of an uninterrupted one. TP_OUT is a directory.
import { flow, sources, sinks, windows } from 'tidepool';
import { envRate, pacer } from './lib/pace.js';

interface Rec { s: string; i: number; k: number; t: number }

const out = process.env.TP_OUT;
const na = Number(process.env.TP_A ?? 3000);
const nb = Number(process.env.TP_B ?? 1000);
const nc = Number(process.env.TP_C ?? 500);
if (!out) throw new Error('graph fixture: set TP_OUT (a directory)');
const jitter = (i: number) => (Math.imul(i, 2654435761) >>> 0) % 40;
const paceA = pacer(envRate());
const paceB = pacer(envRate() / 3);
const paceC = pacer(envRate() / 6);
const make = (s: string, step: number, keys: number, pace: () => void) => (i: number): Rec => (pace(), { s, i, k: i % keys, t: i * step + jitter(i) });
const time = { eventTime: (r: Rec) => r.t, watermark: { maxOutOfOrdernessMs: 50 } };

const f = flow('chk-graph');
const a = f.source('a', sources.generator({ count: na, make: make('a', 5, 13, paceA) }), time);
const b = f.source('b', sources.generator({ count: nb, make: make('b', 15, 13, paceB) }), time);
const c = f.source('c', sources.generator({ count: nc, make: make('c', 30, 7, paceC) }), time);

a.union(c)
  .keyBy((r: Rec) => r.k)
  .window(windows.sliding({ sizeMs: 1000, slideMs: Number(process.env.TP_SLIDE ?? 250) }))
  .aggregate('win', { create: () => 0, add: (n: number) => n + 1, merge: (x: number, y: number) => x + y })
  .sink('out-win', sinks.file({ path: `${out}/win.jsonl` }));

a.keyBy((r: Rec) => r.k)
  .connect(b.keyBy((r: Rec) => r.k))
  .process<{ k: number; bucket: number; n: number; sum: number }>('co', {
    left(r, ctx) {
      ctx.state.list<[number, number]>('seen').add([r.t, r.i]);
      ctx.timers.eventTime(Math.ceil((r.t + 1) / 500) * 500);
    },
    right(r, ctx) {
      ctx.state.list<[number, number]>('seen').add([r.t, -r.i - 1]);
      ctx.timers.eventTime(Math.ceil((r.t + 1) / 500) * 500);
    },
    onTimer(time, ctx) {
      // Every record of this key with t < time has arrived (bounded disorder): emit them.
      // Later ones (already here, ahead of the watermark) wait for their own bucket.
      const seen = ctx.state.list<[number, number]>('seen');
      const all = seen.get();
      seen.clear();
      const due = all.filter(([t]) => t < time);
      for (const e of all) if (e[0] >= time) seen.add(e);
      ctx.emit({ k: ctx.key, bucket: time, n: due.length, sum: due.reduce((x, [, i]) => x + i, 0) });
    },
  })
  .sink('out-co', sinks.file({ path: `${out}/co.jsonl` }));

a.keyBy((r: Rec) => r.k)
  .windowJoin('wj', b.keyBy((r: Rec) => r.k), windows.tumbling({ sizeMs: 500 }), (x: Rec, y: Rec, w) => ({ a: x.i, b: y.i, end: w.end }))
  .sink('out-wj', sinks.file({ path: `${out}/wj.jsonl` }));

a.map('copy', (r: Rec) => r.i).sink('out-copy', sinks.file({ path: `${out}/copy.jsonl` }));

export default f;
