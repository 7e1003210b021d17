// Value and map state with ttlMs, for test/keyed-state-more.test.ts. TP_SPEC names a
// JSON file { items: { k, id }[], ttlMs, pauses: { at, ms }[], out }: one source
// (phased: it pauses before item `at`), keyed by k, into process 'ttl'. Per record it
// emits what it reads — value 'v' (ttl), map 'm' (ttl): has/get of 'a', size, entries —
// and value 'seen' (no ttl, a count), then writes v = id, m.a = id, m.x<id mod 3> = id.
// A record with `peek` only deletes m.x1 (reporting whether a live entry was there),
// reads the first live map key (m.keys({ limit: 1 })) and writes m.z = id.
import { flow, sinks } from 'tidepool';
import { readFileSync } from 'node:fs';
import { phased, type Pause } from './lib/phased.js';

interface Item { k: string; id: number; peek?: true }
const specPath = process.env.TP_SPEC;
if (!specPath) throw new Error('ttl-state fixture: set TP_SPEC');
const spec = JSON.parse(readFileSync(specPath, 'utf8')) as { items: Item[]; ttlMs: number; pauses: Pause[]; out: string };

export default flow('ttl-state')
  .source('items', phased(spec.items, spec.pauses))
  .keyBy((e: Item) => e.k)
  .process('ttl', (e: Item, ctx) => {
    const v = ctx.state.value<number>('v', { ttlMs: spec.ttlMs });
    const m = ctx.state.map<string, number>('m', { ttlMs: spec.ttlMs });
    if (e.peek) {
      ctx.emit({ k: ctx.key, id: e.id, deleted: m.delete('x1'), peek: [...m.keys({ limit: 1 })] }); // in this order
      m.set('z', e.id);
      return;
    }
    const seen = ctx.state.value<number>('seen');
    ctx.emit({ k: ctx.key, id: e.id, v: v.get() ?? null, has: m.has('a'), a: m.get('a') ?? null, size: m.size, entries: [...m.entries()], seen: seen.get() ?? 0 });
    v.set(e.id);
    m.set('a', e.id);
    m.set(`x${e.id % 3}`, e.id);
    seen.set((seen.get() ?? 0) + 1);
  })
  .sink('out', sinks.file({ path: spec.out }));
