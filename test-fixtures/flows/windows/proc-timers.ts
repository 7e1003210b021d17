// Processing-time timers for test/timers-model.test.ts. A slow, unbounded source (no
// event time): one record { i, k } every 20 ms for TP_RECORDS records, then nothing
// (empty batches) until the test kills the run. Per record the process registers a
// processing-time timer at Date.now() + 200 and emits { kind: 'rec', i, key, due };
// each timer that fires emits { kind: 'fire', key, time, now }. Output: stdout, as the
// records come (run it with memory state: no checkpoints).
import { flow, sinks, type SourceSpec } from 'tidepool';

const records = Number(process.env.TP_RECORDS);
if (!Number.isSafeInteger(records)) throw new Error('proc-timers fixture: set TP_RECORDS');

interface Rec { i: number; k: string }

const slow: SourceSpec<Rec> = {
  kind: 'source',
  type: 'fixture-slow',
  bounded: false,
  maxParallelism: 1,
  open() {
    let i = 0;
    let last = 0;
    return {
      next: () => {
        const now = Date.now();
        if (i >= records) return [];
        if (now - last < 20) return [];
        last = now;
        return [{ i, k: `k${i++ % 4}` }];
      },
      position: () => i,
      seek: (p: unknown) => void (i = p as number),
      close: () => undefined,
    };
  },
};

export default flow('proc-timers')
  .source('slow', slow)
  .keyBy((r: Rec) => r.k)
  .process(
    'ptimers',
    (r: Rec, ctx) => {
      const due = Date.now() + 200;
      ctx.timers.processingTime(due);
      ctx.emit({ kind: 'rec', i: r.i, key: ctx.key, due });
    },
    { onTimer: (time, ctx) => ctx.emit({ kind: 'fire', key: ctx.key, time, now: Date.now() }) },
  )
  .sink('out', sinks.stdout());
