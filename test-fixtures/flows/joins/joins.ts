// Every join of the contract over the same two sources, for the model tests
// (test/joins-model.test.ts). TP_SPEC names a JSON file:
//   { a: Ev[], b: Ev[], ooo, intervals: [lowerMs, upperMs][], tumbling: { sizeMs, offsetMs },
//     sliding: { sizeMs, slideMs, offsetMs }, out, pauses?: { a: Pause[], b: Pause[] } }
// Sources 'a' and 'b' (eventTime e.t, maxOutOfOrdernessMs ooo) keyed by e.k feed
// join 'inner', intervalJoin 'iv<i>' per interval, windowJoin 'wt' (tumbling) and 'ws'
// (sliding). Their outputs, tagged with the operator, are unioned into process 'stamp'
// (keyed by the left record), which adds the output timestamp the join gave the pair
// (ctx.timestamp), then sink 'out' (one file). With TP_MARK set, a source subtask
// that starts a pause writes the file `<TP_MARK>-<source>-<subtask>`.
import { flow, sinks, windows } from 'tidepool';
import { readFileSync, writeFileSync } from 'node:fs';
import { phased, type Pause } from './lib/phased.js';

interface Ev { k: number; t: number; id: number }
interface Spec {
  a: Ev[];
  b: Ev[];
  ooo: number;
  intervals: [number, number][];
  tumbling: { sizeMs: number; offsetMs: number };
  sliding: { sizeMs: number; slideMs: number; offsetMs: number };
  out: string;
  pauses?: { a: Pause[]; b: Pause[] };
}
interface Out { op: string; x: number; y: number; w?: { start: number; end: number } }

const specPath = process.env.TP_SPEC;
if (!specPath) throw new Error('joins fixture: set TP_SPEC');
const spec = JSON.parse(readFileSync(specPath, 'utf8')) as Spec;

const f = flow('joins-model');
const opts = { eventTime: (e: Ev) => e.t, watermark: { maxOutOfOrdernessMs: spec.ooo } };
const mark = (source: string) => (_at: number, subtask: number) => {
  if (process.env.TP_MARK) writeFileSync(`${process.env.TP_MARK}-${source}-${subtask}`, '');
};
const a = f.source('a', phased(spec.a, spec.pauses?.a, mark('a')), opts).keyBy((e: Ev) => e.k);
const b = f.source('b', phased(spec.b, spec.pauses?.b, mark('b')), opts).keyBy((e: Ev) => e.k);

const outs = [a.join('inner', b, (x: Ev, y: Ev): Out => ({ op: 'inner', x: x.id, y: y.id }))];
spec.intervals.forEach(([lowerMs, upperMs], i) => {
  outs.push(a.intervalJoin(`iv${i}`, b, { lowerMs, upperMs }, (x: Ev, y: Ev): Out => ({ op: `iv${i}`, x: x.id, y: y.id })));
});
outs.push(a.windowJoin('wt', b, windows.tumbling(spec.tumbling), (x: Ev, y: Ev, w): Out => ({ op: 'wt', x: x.id, y: y.id, w })));
outs.push(a.windowJoin('ws', b, windows.sliding(spec.sliding), (x: Ev, y: Ev, w): Out => ({ op: 'ws', x: x.id, y: y.id, w })));

outs[0]!
  .union(...outs.slice(1))
  .keyBy((r: Out) => r.x)
  .process('stamp', (r: Out, ctx) => ctx.emit({ ...r, ts: ctx.timestamp }))
  .sink('out', sinks.file({ path: spec.out }));

export default f;
