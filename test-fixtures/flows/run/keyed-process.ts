// `process` with value and map state. TP_COUNT events { u, item, amount } then one
// end marker per user (TP_USERS users); run the source at parallelism 1 so the markers
// come last. Per event: running total (value state), per-item counts (map state; an
// amount of 10 deletes the item instead), distinct items (value state). At the marker:
// the whole map, its size, and the total.
import { flow, sources, sinks } from 'tidepool';

export interface Ev { u: string; item: string; amount: number; end?: true }

const count = Number(process.env.TP_COUNT);
const users = Number(process.env.TP_USERS);
const output = process.env.TP_OUTPUT;
if (!Number.isSafeInteger(count) || !Number.isSafeInteger(users) || !output) {
  throw new Error('keyed-process fixture: set TP_COUNT, TP_USERS and TP_OUTPUT');
}

export function event(i: number): Ev {
  if (i >= count) return { u: `u${i - count}`, item: '', amount: 0, end: true };
  return { u: `u${(i * 31) % users}`, item: `it-${(i * i + 3 * i) % 211}`, amount: (i % 10) + 1 };
}

export default flow('keyed-process')
  .source('events', sources.generator({ count: count + users, make: event }))
  .keyBy((e: Ev) => e.u)
  .process('totals', (e: Ev, ctx) => {
    const total = ctx.state.value<number>('total');
    const distinct = ctx.state.value<number>('distinct');
    const items = ctx.state.map<string, number>('items');
    if (e.end) {
      ctx.emit({ kind: 'final', u: ctx.key, total: total.get() ?? 0, distinct: distinct.get() ?? 0, size: items.size, items: [...items.entries()] });
      return;
    }
    const t = (total.get() ?? 0) + e.amount;
    total.set(t);
    let d = distinct.get() ?? 0;
    if (e.amount === 10) {
      if (items.delete(e.item)) d--;
    } else {
      const c = items.get(e.item);
      if (c === undefined) d++;
      items.set(e.item, (c ?? 0) + 1);
    }
    if (d === 0) distinct.clear();
    else distinct.set(d);
    ctx.emit({ kind: 'update', u: ctx.key, total: t, distinct: d });
  })
  .sink('out', sinks.file({ path: output }));
