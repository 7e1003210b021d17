// Windows, timers and joins for test/inspect-time.test.ts: one generator of TP_N records
//   { i, k: `k${(i · 2654435761 mod 2³²) % 100}`, j: floor(i / 2) % 2000, side: i % 2, t: 10·i + 300·floor(i / 100) }
// (event time t: increasing, with a jump of 300 ms every 100 records, so sessions close;
// keys scrambled, so a key's records come at irregular times and its panes have gaps),
// watermark t − 500, TP_RATE records/s per source subtask (unset: unpaced; the source
// returns nothing while it is ahead instead of sleeping, so an inline run keeps going). By k:
//   win    sliding 4000/1000 count, no merge (a cell per window)
//   panes  sliding 3000/1000 count with merge (a cell per 1000 ms pane)
//   sess   session windows, gap 255 ms, count with merge
//   timers connect(side 0, side 1).process: a left record registers an event-time timer at
//          ceil(t / 1000)·1000 + 2500 + 10·(i % 7); a right record a processing-time timer at
//          FAR + i % 3 (year 2100: never fires), and keeps value state `seen` (records of
//          the key) and list state `hist` (their i)
// and by j: pairs  join(side 0, side 1), kept forever.
// Every output goes to /dev/null: the test reads the state, not the output.
import { flow, sinks, windows, type SourceSpec } from 'tidepool';

const FAR = Date.UTC(2100, 0, 1);

interface Rec { i: number; k: string; j: number; side: number; t: number }

const n = Number(process.env.TP_N);
const rate = Number(process.env.TP_RATE ?? 0);
if (!Number.isSafeInteger(n)) throw new Error('inspect time-state fixture: set TP_N (and TP_RATE)');

const make = (i: number): Rec => ({ i, k: `k${(Math.imul(i, 2654435761) >>> 0) % 100}`, j: Math.floor(i / 2) % 2000, side: i % 2, t: 10 * i + 300 * Math.floor(i / 100) });

/** Records i = subtask, subtask + p, … < n, like the generator; position: the next i. */
const paced: SourceSpec<Rec> = {
  kind: 'source',
  type: 'fixture-paced',
  bounded: true,
  open(ctx) {
    let i = ctx.subtask;
    let start = performance.now();
    let made = 0;
    return {
      next(max) {
        if (i >= n) return null;
        let k = max;
        if (rate > 0) k = Math.min(max, Math.floor(((performance.now() - start) * rate) / 1000) - made);
        const out: Rec[] = [];
        for (; out.length < k && i < n; i += ctx.parallelism) out.push(make(i));
        made += out.length;
        return out;
      },
      position: () => i,
      seek(p) {
        i = p as number;
        start = performance.now();
        made = 0;
      },
      close() {},
    };
  },
};

const f = flow('inspect-time');
const events = f.source('gen', paced, { eventTime: (r) => r.t, watermark: { maxOutOfOrdernessMs: 500 } });

const byK = events.keyBy((r: Rec) => r.k);
const count = { create: () => 0, add: (c: number) => c + 1, merge: (a: number, b: number) => a + b };
const win = byK.window(windows.sliding({ sizeMs: 4000, slideMs: 1000 })).aggregate('win', { create: () => 0, add: (c: number) => c + 1 });
const panes = byK.window(windows.sliding({ sizeMs: 3000, slideMs: 1000 })).aggregate('panes', count);
const sess = byK.window(windows.session({ gapMs: 255 })).aggregate('sess', count);

const lefts = events.filter('lefts', (r: Rec) => r.side === 0);
const rights = events.filter('rights', (r: Rec) => r.side === 1);
const timers = lefts.keyBy((r: Rec) => r.k).connect(rights.keyBy((r: Rec) => r.k)).process('timers', {
  left(r: Rec, ctx) {
    ctx.timers.eventTime(Math.ceil(r.t / 1000) * 1000 + 2500 + 10 * (r.i % 7));
  },
  right(r: Rec, ctx) {
    ctx.timers.processingTime(FAR + (r.i % 3));
    const seen = ctx.state.value<number>('seen');
    seen.set((seen.get() ?? 0) + 1);
    ctx.state.list<number>('hist').add(r.i);
  },
  onTimer(time, ctx) {
    ctx.emit({ key: ctx.key, time });
  },
});
const pairs = lefts.keyBy((r: Rec) => r.j).join('pairs', rights.keyBy((r: Rec) => r.j), (x: Rec, y: Rec) => [x.i, y.i]);

win.union(panes, sess, timers, pairs).sink('out', sinks.file({ path: '/dev/null' }));
export default f;
