// The default state cache (src/runtime/cache-budget.ts): with `state.cachePages` unset each
// stateful instance gets a share of memory, split over the flow's stateful instances and
// bounded; set, the configured number is used as is. Unit level (no threads), plus the
// instances a plan gets (memory storage, so no I/O worker).
import t from 'tap';
import { flow, sources } from '../src/index.js';
import { anySink } from './helpers/any-sink.js';
import { planFlow } from '../src/flow/plan.js';
import { parseConfig } from '../src/config/schema.js';
import { prepareInstances } from '../src/runtime/instances.js';
import {
  defaultCachePages, usableMemoryBytes, CACHE_MEMORY_SHARE, DECODED_PAGE_FACTOR, MIN_AUTO_CACHE_PAGES, MAX_AUTO_CACHE_PAGES,
} from '../src/runtime/cache-budget.js';

const GiB = 2 ** 30;

t.test('sized from memory, split over instances, within bounds', async (t) => {
  // 24 GiB, 16 KiB pages: 1.5 GiB for caches; one instance would get 24,576 pages → the max.
  t.equal(defaultCachePages(16384, 1, 24 * GiB), MAX_AUTO_CACHE_PAGES);
  // 4 instances: 384 MiB each / 64 KiB per decoded page = 6,144 pages.
  t.equal(defaultCachePages(16384, 4, 24 * GiB), 6144);
  t.equal(defaultCachePages(16384, 8, 24 * GiB), 3072, 'twice the instances, half the pages each');
  t.equal(defaultCachePages(16384, 64, 24 * GiB), MIN_AUTO_CACHE_PAGES, 'never below the old fixed default');
  t.equal(defaultCachePages(16384, 2, 1 * GiB), MIN_AUTO_CACHE_PAGES, 'a small machine keeps 1024');
  t.equal(defaultCachePages(1024, 4, 24 * GiB), MAX_AUTO_CACHE_PAGES, 'small pages: more of them, up to the max');
  for (const n of [1, 2, 3, 5, 16, 100]) {
    const pages = defaultCachePages(16384, n, 24 * GiB);
    const total = pages * n * 16384 * DECODED_PAGE_FACTOR;
    if (pages > MIN_AUTO_CACHE_PAGES && total > 24 * GiB * CACHE_MEMORY_SHARE) t.fail(`${n} instances: ${total} B over the share`);
  }
  const mem = usableMemoryBytes();
  t.ok(mem > 0 && Number.isFinite(mem), `usable memory here: ${(mem / GiB).toFixed(1)} GiB`);
});

const keyed = () =>
  flow('keyed')
    .source('src', sources.generator({ count: 1000, make: (i) => i }))
    .keyBy((x: number) => x % 7)
    .reduce('r', (acc: number | undefined, x: number) => (acc ?? 0) + x)
    .keyBy((u) => u.key)
    .process('p', (u, ctx) => ctx.emit(u))
    .sink('out', anySink());

t.test('the instances of a run get the default unless cachePages is configured', async (t) => {
  for (const p of [1, 3]) {
    const plan = planFlow(keyed(), { parallelism: p, keyGroups: 128, chaining: true, operators: {} });
    const auto = await prepareInstances(plan, parseConfig({ parallelism: p, state: { storage: 'memory' } }), '/nonexistent', undefined);
    const stateful = auto.filter((i) => i.setup.state);
    t.equal(stateful.length, 2 * p, `p=${p}: two stateful operators × ${p}`);
    t.same(new Set(stateful.map((i) => i.setup.state!.cachePages)), new Set([defaultCachePages(16384, 2 * p)]), `p=${p}: the share of ${2 * p} instances`);
    const fixed = await prepareInstances(plan, parseConfig({ parallelism: p, state: { storage: 'memory', cachePages: 77 } }), '/nonexistent', undefined);
    t.same(new Set(fixed.filter((i) => i.setup.state).map((i) => i.setup.state!.cachePages)), new Set([77]), `p=${p}: configured 77 is used as is`);
  }
});
