// The two-stacks cache of sliding-window panes (src/operators/sliding-panes.ts) against
// the obvious model: a window's accumulator is all its panes merged in time order. The
// merge used is order-sensitive and mutates its first argument (an array push), so
// the test also catches a cache that merges out of order or lets user code change
// what it keeps. Late changes to panes already merged, deletions of old panes, keys
// interleaved and a tiny cache bound (evictions) are part of the random schedules.
import t from 'tap';
import fc from 'fast-check';
import { SlidingPaneCache } from '../src/operators/sliding-panes.js';

type Acc = number[];
const mutatingConcat = (a: unknown, b: unknown): unknown => {
  (a as Acc).push(...(b as Acc));
  return a;
};

interface Store { panes: Map<string, Map<number, Acc>> }

function reader(store: Store, id: string, reads: { n: number }) {
  return function* (from: number, to: number): Generator<[number, unknown]> {
    const m = store.panes.get(id);
    if (m === undefined) return;
    for (const s of [...m.keys()].sort((x, y) => x - y)) {
      if (s < from || s >= to) continue;
      reads.n++;
      yield [s, [...m.get(s)!]]; // decoded fresh, as the state engine does
    }
  };
}

const model = (store: Store, id: string, from: number, to: number): Acc | undefined => {
  const m = store.panes.get(id);
  const out: Acc = [];
  let any = false;
  for (const s of [...(m?.keys() ?? [])].sort((x, y) => x - y)) {
    if (s < from || s >= to) continue;
    out.push(...m!.get(s)!);
    any = true;
  }
  return any ? out : undefined;
};

t.test('windows equal the panes merged in order, under late changes, deletions and eviction', async (t) => {
  const step = fc.oneof(
    fc.record({ kind: fc.constant('add' as const), key: fc.integer({ min: 0, max: 2 }), ahead: fc.integer({ min: -6, max: 3 }), value: fc.integer({ min: 0, max: 99 }) }),
    fc.record({ kind: fc.constant('fire' as const), key: fc.integer({ min: 0, max: 2 }) }),
    fc.record({ kind: fc.constant('advance' as const) }),
  );
  await fc.assert(
    fc.property(fc.integer({ min: 1, max: 12 }), fc.integer({ min: 1, max: 3 }), fc.array(step, { minLength: 1, maxLength: 200 }), fc.integer({ min: 1, max: 64 }), (ratio, slidePanes, steps, bound) => {
      const pane = 10;
      const slide = slidePanes * pane;
      const size = ratio * slide;
      const cache = new SlidingPaneCache(mutatingConcat, bound);
      const store: Store = { panes: new Map() };
      const reads = { n: 0 };
      let now = size; // the end of the next window to fire, per key
      const nextEnd = new Map<number, number>();
      for (const s of steps) {
        const id = `k${s.kind === 'advance' ? 0 : s.key}`;
        if (s.kind === 'advance') {
          now += slide;
          // delete panes no window ending after `now` needs (as the operator's cleanup does)
          for (const m of store.panes.values()) for (const p of [...m.keys()]) if (p + size <= now - slide) m.delete(p);
        } else if (s.kind === 'add') {
          const p = Math.max(0, Math.floor(now / pane) * pane + s.ahead * pane);
          const m = store.panes.get(id) ?? new Map<number, Acc>();
          store.panes.set(id, m);
          m.set(p, [...(m.get(p) ?? []), s.value]);
          cache.changed(id, p);
        } else {
          const end = Math.max(nextEnd.get(s.key) ?? 0, now);
          nextEnd.set(s.key, end);
          const got = cache.window(id, end - size, end, reader(store, id, reads));
          const want = model(store, id, end - size, end);
          if (JSON.stringify(got) !== JSON.stringify(want)) {
            throw new Error(`window [${end - size}, ${end}) of ${id}: got ${JSON.stringify(got)}, want ${JSON.stringify(want)}`);
          }
          if (Array.isArray(got)) got.push(-1); // user code may change what it gets
        }
      }
      return cache.cachedAccumulators <= Math.max(bound, size / pane);
    }),
    { numRuns: 300 },
  );
});

t.test('a steady slide reads each pane a constant number of times, whatever size/slide is', async (t) => {
  for (const ratio of [5, 60, 3600]) {
    const pane = 1;
    const cache = new SlidingPaneCache((a, b) => (a as number) + (b as number));
    const panes = new Map<number, number>();
    const reads = { n: 0 };
    const read = function* (from: number, to: number): Generator<[number, unknown]> {
      for (let p = from; p < to; p++) {
        const v = panes.get(p);
        if (v === undefined) continue;
        reads.n++;
        yield [p, v];
      }
    };
    const fires = 20 * ratio;
    for (let p = 0; p < fires + ratio; p++) panes.set(p, 1);
    let sum = 0;
    for (let end = ratio; end < ratio + fires; end += pane) sum += cache.window('k', end - ratio, end, read) as number;
    t.equal(sum, fires * ratio, `ratio ${ratio}: every window counts its ${ratio} panes`);
    // Direct merging would read ratio panes per firing; the cache reads each pane about twice.
    t.ok(reads.n <= 3 * (fires + ratio), `ratio ${ratio}: ${reads.n} pane reads for ${fires} firings (direct: ${fires * ratio})`);
  }
});
