// Event-time timers for test/timers-model.test.ts, from the JSON file TP_SPEC:
// { out, cases: [{ D, events: [{ id, k, t, reg: [times], del: [times] }] }], bad?: 'nan' | 'string' }.
// Each case is a sub-graph of its own: source `c<i>-events` → process `c<i>-timers` →
// `<out>/c<i>.jsonl`. Per record the process registers `reg`, then deletes `del`, and emits
//   { kind: 'rec', id, key, ts, wm }
// per fired timer it emits { kind: 'fire', key, time, ts, wm } and, when time % 5 === 0,
// registers time − 2 (already due: fires in the same advance) and time + 3.
// Watermarks are written as strings (JSON has no Infinity).
import { readFileSync } from 'node:fs';
import { flow, sources, sinks } from 'tidepool';

interface Ev { id: number; k: string; t: number; reg: number[]; del: number[] }
interface Spec { out: string; cases: { D: number; events: Ev[] }[]; bad?: 'nan' | 'string' }

const specPath = process.env.TP_SPEC;
if (!specPath) throw new Error('timers fixture: set TP_SPEC');
const spec = JSON.parse(readFileSync(specPath, 'utf8')) as Spec;

const f = flow('timers-model');
spec.cases.forEach(({ D, events }, c) => {
  f.source(`c${c}-events`, sources.array(events), { eventTime: (e) => e.t, watermark: { maxOutOfOrdernessMs: D } })
    .keyBy((e) => e.k)
    .process(
      `c${c}-timers`,
      (e: Ev, ctx) => {
        if (spec.bad === 'nan') ctx.timers.eventTime(NaN);
        if (spec.bad === 'string') ctx.timers.eventTime('soon' as unknown as number);
        for (const x of e.reg) ctx.timers.eventTime(x);
        for (const x of e.del) ctx.timers.delete(x);
        ctx.emit({ kind: 'rec', id: e.id, key: ctx.key, ts: ctx.timestamp, wm: String(ctx.watermark) });
      },
      {
        onTimer(time, ctx) {
          ctx.emit({ kind: 'fire', key: ctx.key, time, ts: ctx.timestamp, wm: String(ctx.watermark) });
          if (time % 5 === 0) {
            ctx.timers.eventTime(time - 2);
            ctx.timers.eventTime(time + 3);
          }
        },
      },
    )
    .sink(`c${c}-out`, sinks.file({ path: `${spec.out}/c${c}.jsonl` }));
});

export default f;
