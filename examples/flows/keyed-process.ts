// Keyed state with `process`: per user, a running total (value state) and the last
// three items (map state), emitting an alert when a user's total crosses 1,000.
//   npx tidepool run examples/flows/keyed-process.ts --set parallelism=2
import { flow, sources, sinks } from 'tidepool';

interface Purchase { user: string; item: string; amount: number }

export default flow('purchases')
  .source('purchases', sources.generator({
    count: 200_000,
    make: (i): Purchase => ({ user: `u${(i * 7919) % 5000}`, item: `item-${i % 97}`, amount: (i % 50) + 1 }),
  }))
  .keyBy((p: Purchase) => p.user)
  .process('totals', (p: Purchase, ctx) => {
    const total = ctx.state.value<number>('total');
    const before = total.get() ?? 0;
    total.set(before + p.amount);
    const recent = ctx.state.map<number, string>('recent');
    recent.set(Date.now() % 3, p.item);
    if (before < 1000 && before + p.amount >= 1000) ctx.emit({ user: ctx.key, total: before + p.amount });
  })
  .sink('alerts', sinks.file({ path: 'purchases-out/alerts.jsonl' }));
