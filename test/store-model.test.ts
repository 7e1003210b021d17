// Property tests: the store against a Map model, with tiny pages and caches so that
// splits, merges, spills and reloads happen on almost every operation.
import t from 'tap';
import fc from 'fast-check';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openStore, type StoreOptions } from '../src/index.js';
import { Model, checkTree, deleteArb, engineOf, opArb, plain, rangeArb, setArb, type Op } from './helpers/model.js';
import type { FlushBatch, FlushPage, StateBackend } from '../src/storage/backend.js';
import type { TreeNode } from '../src/state/node.js';
import { pageCost } from '../src/state/resident-bytes.js';

const tmp = mkdtempSync(join(tmpdir(), 'tidepool-model-'));
t.teardown(() => rmSync(tmp, { recursive: true, force: true }));
let dirs = 0;

/**
 * With a cacheBytes budget, after every operation: the resident pages' counted memory
 * is within the budget and equals a recount of every resident page (the incremental
 * accounting missed no change).
 */
function checkBytes(store: Awaited<ReturnType<typeof openStore>>, budget: number): void {
  const pager = engineOf(store).pager;
  const resident = (pager as unknown as { resident: Map<number, TreeNode> }).resident;
  let sum = 0;
  for (const node of resident.values()) sum += pageCost(node);
  const counted = store.stats.residentBytes;
  if (counted !== sum) throw new Error(`residentBytes ${counted}, a recount says ${sum}`);
  if (sum > budget) throw new Error(`resident pages hold ~${sum} bytes, over cacheBytes ${budget}`);
}

async function runOps(opts: StoreOptions, ops: Op[], ranges: Parameters<Model['range']>[0][], reopen: boolean): Promise<void> {
  const path = join(tmp, `s${dirs++}`);
  let store = await openStore({ ...opts, path });
  const model = new Model();
  try {
    for (const o of ops) {
      switch (o.op) {
        case 'set':
          store.set(o.key, o.value);
          model.set(o.key, o.value);
          break;
        case 'delete':
          if (store.delete(o.key) !== model.delete(o.key)) throw new Error(`delete(${String(o.key)}) disagrees`);
          break;
        case 'get': {
          const got = store.get(o.key);
          if (JSON.stringify(plain(got)) !== JSON.stringify(plain(model.get(o.key)))) throw new Error(`get(${String(o.key)}) disagrees`);
          if (store.has(o.key) !== (model.get(o.key) !== undefined)) throw new Error('has disagrees');
          break;
        }
        case 'clear':
          store.clear();
          model.clear();
          break;
        case 'flush':
          await store.flush();
          break;
      }
      if (opts.cacheBytes !== undefined) checkBytes(store, opts.cacheBytes);
    }
    const problems = checkTree(engineOf(store), 'data');
    if (problems.length) throw new Error(`tree invariants: ${problems.slice(0, 5).join('; ')}`);
    const check = () => {
      if (store.size !== model.m.size) throw new Error(`size ${store.size} vs model ${model.m.size}`);
      const all = JSON.stringify([...store.entries()].map(([k, v]) => [plain(k), plain(v)]));
      if (all !== JSON.stringify(model.sorted().map(([k, v]) => [plain(k), plain(v)]))) throw new Error('entries disagree');
      for (const r of ranges) {
        const got = JSON.stringify([...store.keys(r)].map(plain));
        const want = JSON.stringify(model.range(r).map(([k]) => plain(k)));
        if (got !== want) throw new Error(`range ${JSON.stringify(plain(r))}: got ${got} want ${want}`);
      }
    };
    check();
    if (reopen) {
      await store.close();
      store = await openStore({ ...opts, path });
      check();
      const problems2 = checkTree(engineOf(store), 'data');
      if (problems2.length) throw new Error(`tree invariants after reopen: ${problems2.slice(0, 5).join('; ')}`);
    }
  } finally {
    await store.close();
  }
}

const configs: [string, StoreOptions, number][] = [
  ['memory, 256 B pages, 2-page cache', { storage: 'memory', pageSize: 256, cachePages: 2 }, 150],
  ['memory, 512 B pages, 8-page cache, lz4', { storage: 'memory', pageSize: 512, cachePages: 8, compression: 'lz4' }, 100],
  ['lmdb, 384 B pages, 3-page cache', { storage: 'lmdb', pageSize: 384, cachePages: 3 }, 40],
  ['lmdb, 1 KiB pages, 4-page cache, zstd', { storage: 'lmdb', pageSize: 1024, cachePages: 4, compression: 'zstd' }, 25],
  // A byte budget of about three full pages with a page bound that never bites.
  ['memory, 512 B pages, cacheBytes 4 KiB', { storage: 'memory', pageSize: 512, cachePages: 1 << 20, cacheBytes: 4096 }, 100],
  ['lmdb, 1 KiB pages, cacheBytes 8 KiB', { storage: 'lmdb', pageSize: 1024, cachePages: 1 << 20, cacheBytes: 8192 }, 30],
];

// Random mixes, and fill-then-drain sequences that force merges and borrowing.
const opsArb = fc.oneof(
  fc.array(opArb, { minLength: 1, maxLength: 600 }),
  fc.tuple(fc.array(setArb, { minLength: 100, maxLength: 500 }), fc.array(deleteArb, { minLength: 100, maxLength: 800 }), fc.array(opArb, { maxLength: 100 }))
    .map(([a, b, c]) => [...a, ...b, ...c]),
);

const replay = process.env.TIDEPOOL_MODEL_SEED
  ? { seed: Number(process.env.TIDEPOOL_MODEL_SEED), ...(process.env.TIDEPOOL_MODEL_PATH ? { path: process.env.TIDEPOOL_MODEL_PATH, endOnFailure: true } : {}) }
  : {};

for (const [name, opts, numRuns] of configs) {
  t.test(`store equals a Map model: ${name}`, async (t) => {
    await fc.assert(
      fc.asyncProperty(
        opsArb,
        fc.array(rangeArb, { maxLength: 12 }),
        async (ops, ranges) => {
          await runOps(opts, ops, ranges, opts.storage === 'lmdb');
        },
      ),
      // TIDEPOOL_MODEL_SEED (and TIDEPOOL_MODEL_PATH) replay a failure fast-check reported.
      { numRuns, interruptAfterTimeLimit: 90_000, markInterruptAsFailure: true, ...replay },
    );
    t.pass(`${numRuns} random op sequences agree with the model`);
  });
}

t.test('regression: a borrow that lengthens the separator of a full parent splits the parent', async (t) => {
  // fast-check found this with seed -2059301136 (256 B pages): after deletes, a leaf
  // borrowed from its sibling and the new, longer separator pushed the parent branch
  // past the page capacity, unsplit. The same seed replays it.
  const [, opts] = configs[0]!;
  await fc.assert(
    fc.asyncProperty(
      opsArb,
      fc.array(rangeArb, { maxLength: 12 }),
      async (ops, ranges) => {
        await runOps(opts, ops, ranges, false);
      },
    ),
    { numRuns: 36, seed: -2059301136 },
  );
  t.pass('the 36 sequences of that seed agree with the model');
});

t.test('bulk: 20k keys inserted then 3/4 deleted keep the tree sound (merges and root collapse)', async (t) => {
  const store = await openStore({ storage: 'memory', pageSize: 512, cachePages: 4 });
  const model = new Model();
  for (let i = 0; i < 20000; i++) {
    const k = ['user', (i * 7919) % 20000];
    store.set(k, { i, pad: 'p'.repeat(i % 40) });
    model.set(k, { i, pad: 'p'.repeat(i % 40) });
  }
  t.same(checkTree(engineOf(store), 'data'), [], 'sound after inserts');
  for (let i = 0; i < 20000; i++) {
    if (i % 4 === 0) continue;
    t.equal(store.delete(['user', i]), true);
    model.delete(['user', i]);
  }
  t.same(checkTree(engineOf(store), 'data'), [], 'sound after deletes');
  t.equal(store.size, model.m.size);
  t.same([...store.keys({ prefix: ['user'], limit: 3 })], [['user', 0], ['user', 4], ['user', 8]]);
  t.same([...store.keys({ prefix: ['user'], reverse: true, limit: 2 })], [['user', 19996], ['user', 19992]]);
  for (let i = 0; i < 20000; i += 4) store.delete(['user', i]);
  t.equal(store.size, 0);
  t.same(checkTree(engineOf(store), 'data'), [], 'sound when empty');
  t.equal(engineOf(store).pager.residentPages <= 4, true, 'cache stays within cachePages');
  await store.close();
});

t.test('values larger than a page get a leaf of their own and round-trip', async (t) => {
  const store = await openStore({ storage: 'memory', pageSize: 512, cachePages: 2 });
  const big = 'B'.repeat(5000);
  for (let i = 0; i < 50; i++) store.set(i, i % 5 === 0 ? { big, i } : i);
  t.same(checkTree(engineOf(store), 'data'), []);
  for (let i = 0; i < 50; i++) t.same(store.get(i), i % 5 === 0 ? { big, i } : i);
  await store.close();
});

t.test('mutation during iteration neither crashes nor skips untouched keys', async (t) => {
  const store = await openStore({ storage: 'memory', pageSize: 256, cachePages: 2 });
  for (let i = 0; i < 500; i++) store.set(i, i);
  const seen: number[] = [];
  for (const k of store.keys()) {
    seen.push(k as number);
    if ((k as number) % 10 === 0) store.delete((k as number) + 5); // delete ahead
    if ((k as number) % 7 === 0) store.set(10_000 + (k as number), 0); // insert far ahead
  }
  const expectUntouched = [...Array(500).keys()].filter((i) => !(i % 10 === 5 && i >= 5));
  t.same(seen.filter((k) => k < 500), expectUntouched);
  await store.close();
});

// A scan's first batch is short (btree.ts FIRST_BATCH); scans that go on must re-seek
// in the middle of a leaf without skipping or repeating an entry, both ways, with
// bounds, limits and writes between two steps.
t.test('scans longer than the first batch see every entry once, forward and reverse', async (t) => {
  const store = await openStore({ storage: 'memory' }); // default pages: hundreds of entries per leaf
  const keys = [...Array(3000).keys()].map((i) => i * 2);
  for (const k of keys) store.set(k, k);
  const pick = (lo: number, hi: number) => keys.filter((k) => k >= lo && k < hi);
  for (const [lo, hi] of [[0, 7000], [3, 17], [100, 117], [1001, 4999], [0, 12]] as const) {
    t.same([...store.keys({ gte: lo, lt: hi })], pick(lo, hi), `forward [${lo}, ${hi})`);
    t.same([...store.keys({ gte: lo, lt: hi, reverse: true })], pick(lo, hi).reverse(), `reverse [${lo}, ${hi})`);
    for (const limit of [1, 8, 9, 17, 500]) {
      t.same([...store.keys({ gte: lo, lt: hi, limit })], pick(lo, hi).slice(0, limit), `forward [${lo}, ${hi}) limit ${limit}`);
      t.same([...store.keys({ gte: lo, lt: hi, limit, reverse: true })], pick(lo, hi).reverse().slice(0, limit), `reverse [${lo}, ${hi}) limit ${limit}`);
    }
  }
  // Odd keys written between steps, right after the cursor: each is seen (forward) or
  // not (reverse, they are behind), and no even key is skipped or repeated.
  const fwd: number[] = [];
  for (const k of store.keys({ gte: 0, lt: 400 })) {
    fwd.push(k as number);
    if ((k as number) % 2 === 0 && (k as number) % 6 === 0) store.set((k as number) + 1, 0);
  }
  t.same(fwd.filter((k) => k % 2 === 0), pick(0, 400), 'forward with inserts: every even key once');
  t.same(fwd.filter((k) => k % 2 === 1), pick(0, 400).filter((k) => k % 6 === 0).map((k) => k + 1), 'forward with inserts: the inserted keys ahead');
  const rev: number[] = [];
  for (const k of store.keys({ gte: 1000, lt: 1400, reverse: true })) {
    rev.push(k as number);
    store.delete((k as number) + 2); // already seen
  }
  t.same(rev, pick(1000, 1400).reverse(), 'reverse with deletes behind the cursor: every even key once');
  await store.close();
});

t.test('pages stay readable while a flush is in flight, and writes during it land in the next', async (t) => {
  const path = join(tmp, `inflight${dirs++}`);
  let store = await openStore({ path, pageSize: 512, cachePages: 3 });
  for (let i = 0; i < 5000; i++) store.set(i, { i, pad: 'x'.repeat(i % 30) });
  const flushing = store.flush();
  // Reads with a 3-page cache reload pages that are only in flight right now.
  let ok = 0;
  for (const [k, v] of store.entries()) if ((v as { i: number }).i === k) ok++;
  t.equal(ok, 5000, 'every value readable during the flush');
  for (let i = 0; i < 5000; i += 3) store.set(i, { i: -i });
  await flushing;
  for (let i = 0; i < 5000; i++) {
    const v = store.get(i) as { i: number };
    if (v.i !== (i % 3 === 0 ? -i : i)) t.fail(`key ${i} has ${JSON.stringify(v)}`);
  }
  await store.close();
  store = await openStore({ path, pageSize: 512, cachePages: 3 });
  let good = 0;
  for (let i = 0; i < 5000; i++) if ((store.get(i) as { i: number }).i === (i % 3 === 0 ? -i : i)) good++;
  t.equal(good, 5000, 'close flushed the writes made during the first flush');
  await store.close();
});

// Storage rule 2: a flush writes each page at most once. Every batch the engine hands
// its backend is checked: distinct page ids, each read (encoded, sent) exactly once,
// and versions strictly increasing from flush to flush.
t.test('rule 2: every flush writes each page at most once', async (t) => {
  let batches = 0;
  let pagesSeen = 0;
  await fc.assert(
    fc.asyncProperty(fc.array(opArb, { minLength: 50, maxLength: 500 }), async (ops) => {
      const store = await openStore({ path: join(tmp, `r${dirs++}`), pageSize: 384, cachePages: 3 });
      const backend = (engineOf(store) as unknown as { opts: { backend: StateBackend } }).opts.backend;
      const writeFlush = backend.writeFlush.bind(backend);
      let lastVersion = backend.lastCommit?.version ?? 0;
      backend.writeFlush = (batch: FlushBatch) => {
        if (batch.version <= lastVersion) throw new Error(`flush version ${batch.version} after ${lastVersion}`);
        lastVersion = batch.version;
        const ids = batch.pages.map((p) => p.pageId);
        if (new Set(ids).size !== ids.length) throw new Error(`flush ${batch.version} holds a page twice: ${ids.filter((id, i) => ids.indexOf(id) !== i).join(', ')}`);
        const reads = new Map<number, number>();
        const { read, encode } = batch;
        const count = (p: FlushPage) => reads.set(p.pageId, (reads.get(p.pageId) ?? 0) + 1);
        batches++;
        pagesSeen += ids.length;
        return writeFlush({ ...batch, read: (p) => (count(p), read(p)), encode: (p, alloc) => (count(p), encode(p, alloc)) }).then(() => {
          const twice = [...reads].filter(([, n]) => n !== 1);
          if (twice.length || reads.size !== ids.length) throw new Error(`flush ${batch.version}: pages read ${JSON.stringify(twice)} times, ${reads.size} of ${ids.length} read`);
        });
      };
      try {
        for (const o of ops) {
          if (o.op === 'set') store.set(o.key, o.value);
          else if (o.op === 'delete') store.delete(o.key);
          else if (o.op === 'clear') store.clear();
          else if (o.op === 'flush') await store.flush();
        }
      } finally {
        await store.close();
      }
    }),
    { numRuns: 20 },
  );
  t.ok(batches > 20 && pagesSeen > batches, `${batches} flushes of ${pagesSeen} pages checked`);
});
