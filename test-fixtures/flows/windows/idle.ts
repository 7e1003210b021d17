// An idle source for test/window-lateness.test.ts: two sources unioned into a 10 ms
// tumbling count per key. `active` emits { k, t: i } at about one record per ms of wall
// clock, t = i (TP_ACTIVE records, then nothing: it never ends either); `quiet` emits
// three records at t 0, 1, 2 and then only empty batches, without ending. With
// watermark.idleMs the quiet source is left out of the window's watermark once it has
// been silent that long, so the active source's windows are emitted while the run goes
// on. Output: TP_OUT (a file sink; run it with checkpoints to see it grow).
import { flow, sinks, windows, type SourceSpec } from 'tidepool';

interface Rec { k: string; t: number }
const active = Number(process.env.TP_ACTIVE);
const out = process.env.TP_OUT;
if (!Number.isSafeInteger(active) || !out) throw new Error('idle fixture: set TP_ACTIVE and TP_OUT');

/** `count` records made by `make`, released by `due()` (how many may be out by now), never ending. */
function paced(count: number, due: (elapsedMs: number) => number, make: (i: number) => Rec): SourceSpec<Rec> {
  return {
    kind: 'source',
    type: 'fixture-paced',
    bounded: false,
    maxParallelism: 1,
    open() {
      let i = 0;
      const t0 = Date.now();
      return {
        next(max: number) {
          const n = Math.min(count, due(Date.now() - t0), i + max) - i;
          const batch: Rec[] = [];
          for (let k = 0; k < n; k++) batch.push(make(i++));
          return batch;
        },
        position: () => i,
        seek: (p: unknown) => void (i = p as number),
        close: () => undefined,
      };
    },
  };
}

const f = flow('idle-source');
const wm = { eventTime: (r: Rec) => r.t, watermark: { maxOutOfOrdernessMs: 0, idleMs: 300 } };
const a = f.source('active', paced(active, (ms) => ms, (i) => ({ k: `k${i % 3}`, t: i })), wm);
const q = f.source('quiet', paced(3, () => 3, (i) => ({ k: 'q', t: i })), wm);
a.union(q)
  .keyBy((r) => r.k)
  .window(windows.tumbling({ sizeMs: 10 }))
  .aggregate('counts', { create: () => 0, add: (n: number) => n + 1 })
  .sink('out', sinks.file({ path: out }));
export default f;
