// keyed.connect(other).process for test/keyed-state-more.test.ts. TP_SPEC names a JSON
// file { left: L[], right: R[], out }: left records { k, id, t, op } keyed by k, right
// records { user: { id }, rid, t } keyed by user.id (another shape, another key
// function, equal keys). Shared per-key state: value 'n' (records of both sides), and
// list state: 'lefts' (left: op 'add' adds id, 'clear' clears, 'get' emits the list),
// 'rights' (every right rid). Each record emits what it saw (key, timestamp) and
// registers the event-time timer END, which fires once per key at end of input and
// emits the key's final state.
import { flow, sinks } from 'tidepool';
import { readFileSync } from 'node:fs';
import { phased } from './lib/phased.js';

interface L { k: number; id: number; t: number; op: 'add' | 'clear' | 'get' }
interface R { user: { id: number }; rid: number; t: number }

export const END = 1e12;
const specPath = process.env.TP_SPEC;
if (!specPath) throw new Error('connect fixture: set TP_SPEC');
const spec = JSON.parse(readFileSync(specPath, 'utf8')) as { left: L[]; right: R[]; out: string };

const f = flow('connect-model');
const left = f.source('left', phased(spec.left), { eventTime: (e: L) => e.t }).keyBy((e: L) => e.k);
const right = f.source('right', phased(spec.right), { eventTime: (e: R) => e.t }).keyBy((e: R) => e.user.id);

left
  .connect(right)
  .process('both', {
    left(e: L, ctx) {
      const lefts = ctx.state.list<number>('lefts');
      const n = ctx.state.value<number>('n');
      n.set((n.get() ?? 0) + 1);
      if (e.op === 'add') lefts.add(e.id);
      else if (e.op === 'clear') lefts.clear();
      ctx.timers.eventTime(END);
      ctx.emit({ side: 'L', key: ctx.key, id: e.id, ts: ctx.timestamp, ...(e.op === 'get' ? { list: lefts.get() } : {}) });
    },
    right(e: R, ctx) {
      ctx.state.list<number>('rights').add(e.rid);
      const n = ctx.state.value<number>('n');
      n.set((n.get() ?? 0) + 1);
      ctx.timers.eventTime(END);
      ctx.emit({ side: 'R', key: ctx.key, id: e.rid, ts: ctx.timestamp });
    },
    onTimer(time, ctx) {
      ctx.emit({ side: 'final', key: ctx.key, time, ts: ctx.timestamp, n: ctx.state.value<number>('n').get(), lefts: ctx.state.list<number>('lefts').get(), rights: ctx.state.list<number>('rights').get() });
    },
  })
  .sink('out', sinks.file({ path: spec.out }));

export default f;
