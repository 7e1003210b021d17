// The delta tier (src/state/page-delta.ts): a dirty leaf with few changes is stored as
// the entries changed since its previous version, and read back through its chain.
//
// - a store against a Map model, with flushes and reopens interleaved and a cache of
//   three pages, so chains are written, evicted pages are read back through them, and
//   every reopen reads them cold;
// - the chain bound: a page is written whole again at DELTA_CHAIN_MAX links, and GC
//   then removes the chain below it;
// - a chain with a link or its whole version missing is a corrupt page, never a value;
// - a delta materialized whole (what a remote upload stores) holds the chain's content;
// - the log's own rules: a restructured, fresh or failed page goes whole.
import t from 'tap';
import fc from 'fast-check';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openStoreDbs } from './helpers/corrupt.js';
import { Model, engineOf, keyArb, plain, valueArb } from './helpers/model.js';
import { openStore, type Key, type StoreOptions } from '../src/index.js';
import { DELTA_CHAIN_MAX, DeltaLog, decodeStoredPage, deltaEntries } from '../src/state/page-delta.js';
import { isDeltaEnvelope, decodePage } from '../src/state/page-format.js';
import { LEAF, deserializeNode, leafValue, type LeafNode } from '../src/state/node.js';
import { codecById } from '../src/state/codecs.js';
import { isPageKey, openPageDbs, readPageChain, wholePageAt } from '../src/storage/page-chain.js';
import { envOptions } from '../src/storage/io-protocol.js';
import { storedStateIds } from '../src/storage/gc.js';
import { DeltaHeads } from '../workers/io-deltas.js';
import { encodeKey } from '../src/state/keys.js';
import { fromStored } from '../src/state/values.js';

const tmp = mkdtempSync(join(tmpdir(), 'tidepool-delta-'));
t.teardown(() => rmSync(tmp, { recursive: true, force: true }));
let dirs = 0;

/**
 * Whole and delta envelopes stored in a store directory, each in its database with the
 * right flag, and every delta listed by its page's head (and no head entry without one).
 */
async function countEnvelopes(dir: string): Promise<{ whole: number; deltas: number; versionsOf: Map<number, number[]> }> {
  const { env, pages, deltas: deltaDb, heads } = openStoreDbs(dir);
  let whole = 0;
  let deltas = 0;
  const versionsOf = new Map<number, number[]>();
  const listed = new Set<string>();
  for (const { key, value } of heads.getRange({})) for (const v of value) listed.add(`${(key as [string, number])[1]}@${v}`);
  for (const { key, value } of pages.getRange({})) {
    if (!isPageKey(key)) continue; // the deltas' records, read below
    const [, id, v] = key;
    if (isDeltaEnvelope(value)) throw new Error(`a delta envelope in the pages database (page ${id} version ${v})`);
    whole++;
    versionsOf.set(id, [...(versionsOf.get(id) ?? []), v]);
  }
  for (const { key, value } of deltaDb.getRange({})) {
    const [, v, id] = key as [string, number, number];
    if (!isDeltaEnvelope(value)) throw new Error(`a whole envelope in the deltas database (page ${id} version ${v})`);
    if (!listed.delete(`${id}@${v}`)) throw new Error(`delta of page ${id} at version ${v} is not in its head`);
    deltas++;
    versionsOf.set(id, [...(versionsOf.get(id) ?? []), v].sort((a, b) => a - b));
  }
  await env.close();
  if (listed.size) throw new Error(`heads list deltas that are not stored: ${[...listed].slice(0, 5).join(', ')}`);
  return { whole, deltas, versionsOf };
}

type DeltaOp = { op: 'set'; key: Key; value: unknown } | { op: 'delete'; key: Key } | { op: 'flush' } | { op: 'reopen' };

const deltaOpArb: fc.Arbitrary<DeltaOp> = fc.oneof(
  { weight: 12, arbitrary: fc.record({ op: fc.constant('set' as const), key: keyArb, value: valueArb }) },
  { weight: 4, arbitrary: fc.record({ op: fc.constant('delete' as const), key: keyArb }) },
  { weight: 2, arbitrary: fc.constant({ op: 'flush' as const }) },
  { weight: 1, arbitrary: fc.constant({ op: 'reopen' as const }) },
);

let deltasSeen = 0;

t.test('a store with deltas equals a Map model across flushes and reopens', async (t) => {
  const opts: StoreOptions = { storage: 'lmdb', pageSize: 2048, cachePages: 3 };
  await fc.assert(
    fc.asyncProperty(fc.array(deltaOpArb, { minLength: 50, maxLength: 500 }), async (ops) => {
      const path = join(tmp, `m${dirs++}`);
      const model = new Model();
      let store = await openStore({ ...opts, path });
      const check = (when: string) => {
        const got = JSON.stringify([...store.entries()].map(([k, v]) => [plain(k), plain(v)]));
        const want = JSON.stringify(model.sorted().map(([k, v]) => [plain(k), plain(v)]));
        if (got !== want) throw new Error(`entries disagree ${when}`);
        if (store.size !== model.m.size) throw new Error(`size ${store.size} vs ${model.m.size} ${when}`);
      };
      try {
        for (const o of ops) {
          if (o.op === 'set') {
            store.set(o.key, o.value);
            model.set(o.key, o.value);
          } else if (o.op === 'delete') {
            if (store.delete(o.key) !== model.delete(o.key)) throw new Error(`delete(${String(o.key)}) disagrees`);
          } else if (o.op === 'flush') {
            await store.flush();
          } else {
            await store.close(); // close flushes
            store = await openStore({ ...opts, path });
            check('after a reopen');
          }
        }
        check('at the end');
        await store.close();
        store = await openStore({ ...opts, path });
        check('after the last reopen');
      } finally {
        await store.close();
      }
      deltasSeen += (await countEnvelopes(path)).deltas;
      rmSync(path, { recursive: true, force: true });
    }),
    { numRuns: 40, interruptAfterTimeLimit: 90_000, markInterruptAsFailure: true },
  );
  t.ok(deltasSeen > 0, `the runs stored ${deltasSeen} delta envelopes (the tier was exercised)`);
});

const keyAt = (i: number) => `user:${String(i).padStart(5, '0')}`;
const valueAt = (i: number, gen: number) => ({ i, gen, s: 'v'.repeat(40) });

/** A store of `n` keys flushed whole once, then `rounds` flushes each changing key `hot`. */
async function chainStore(path: string, n: number, rounds: number, hot = 0): Promise<void> {
  const s = await openStore({ path, pageSize: 16384 });
  for (let i = 0; i < n; i++) s.set(keyAt(i), valueAt(i, 0));
  await s.flush();
  for (let r = 1; r <= rounds; r++) {
    s.set(keyAt(hot), valueAt(hot, r));
    await s.flush();
  }
  await s.close();
}

t.test('a page goes whole again at DELTA_CHAIN_MAX links, and GC then drops its chain', async (t) => {
  const path = join(tmp, `chain${dirs++}`);
  // 20 keys fit one leaf: every flush after the first is one delta of that leaf.
  await chainStore(path, 20, DELTA_CHAIN_MAX - 1);
  let c = await countEnvelopes(path);
  t.equal(c.deltas, DELTA_CHAIN_MAX - 1, 'one delta per flush, none whole');
  t.equal(c.whole, 1, 'the first flush is the only whole version');
  const s = await openStore({ path, pageSize: 16384 });
  t.same(s.get(keyAt(0)), valueAt(0, DELTA_CHAIN_MAX - 1), 'read through the whole chain');
  for (let r = 0; r < 3; r++) {
    s.set(keyAt(1), valueAt(1, 100 + r));
    await s.flush();
  }
  await s.close();
  c = await countEnvelopes(path);
  // The first of the three flushes is link DELTA_CHAIN_MAX; the second goes whole, and
  // once it is the oldest retained flush GC removes every version below it; the third
  // is a delta on top.
  const versions = [...c.versionsOf.values()][0]!;
  t.equal(c.whole, 1, 'one whole version left');
  t.equal(c.deltas, 1, 'and the delta above it');
  t.equal(versions.length, 2);
  const again = await openStore({ path, pageSize: 16384 });
  t.same(again.get(keyAt(0)), valueAt(0, DELTA_CHAIN_MAX - 1));
  t.same(again.get(keyAt(1)), valueAt(1, 102));
  t.same(again.get(keyAt(19)), valueAt(19, 0));
  await again.close();
});

t.test('a chain with a link missing, or with no whole version, is a corrupt page', async (t) => {
  for (const drop of ['a middle delta', 'the whole version', "a version from the page's head"] as const) {
    const path = join(tmp, `broken${dirs++}`);
    await chainStore(path, 20, 5);
    const { env, pages, deltas, heads } = openStoreDbs(path);
    if (drop === 'a middle delta') await deltas.remove(([...deltas.getKeys({})] as [string, number, number][])[2]!);
    else if (drop === 'the whole version') await pages.remove([...pages.getKeys({})].filter(isPageKey)[0]!);
    else {
      const [{ key, value }] = [...heads.getRange({})];
      await heads.put(key, value.filter((_, i) => i !== 2));
    }
    await env.close();
    const s = await openStore({ path, pageSize: 16384 });
    try {
      s.get(keyAt(3));
      t.fail(`${drop} removed: the read returned a value`);
    } catch (e) {
      const err = e as { code?: string; message: string };
      t.equal(err.code, 'TIDEPOOL_CORRUPT_PAGE', `${drop} removed: ${err.message}`);
      t.match(err.message, /missing from storage/);
    } finally {
      await s.close().catch(() => undefined);
    }
  }
});

t.test("a damaged delta head: one line naming state and page, when the store opens and when a page is read", async (t) => {
  const path = join(tmp, `badhead${dirs++}`);
  await chainStore(path, 20, 3);
  const { env, pages, heads } = openStoreDbs(path);
  const [[stateId, pageId]] = [...heads.getKeys({})];
  (pages as unknown as { putSync(k: unknown, v: Buffer): void }).putSync([stateId, 'h', pageId], Buffer.alloc(13, 7));
  // What a reader of the damaged directory sees (inspect, a rescale, an upload).
  t.throws(() => readPageChain(openPageDbs(env), stateId, pageId!, 4), { code: 'TIDEPOOL_CORRUPT_PAGE', message: /delta head is damaged: .*13 bytes/ }, 'a read through the chain is a corrupt page');
  await env.close();
  const opened = await openStore({ path, pageSize: 16384 }).then(async (s) => { await s.close(); return undefined; }, (e: Error) => e);
  t.ok(opened, 'opening the store fails');
  t.match(opened?.message, new RegExp(`state '${stateId}': the delta head of page ${pageId} is damaged`), `it says which: ${opened?.message}`);
  t.notOk(/\n/.test(opened?.message ?? ''), 'in one line');
});

t.test("the newest flush's page versions must all be found at open: a lost head or whole version is a corrupt state, not stale values", async (t) => {
  for (const lose of ['its delta head', 'its whole version'] as const) {
    const path = join(tmp, `lost${dirs++}`);
    // 'its whole version': one flush only, so its page is whole and the newest.
    await chainStore(path, 20, lose === 'its delta head' ? 3 : 0);
    const { env, pages, heads } = openStoreDbs(path);
    if (lose === 'its delta head') await heads.remove([...heads.getKeys({})][0]!);
    else {
      const newest = [...pages.getKeys({})].filter(isPageKey).sort((a, b) => b[2] - a[2])[0]!;
      await pages.remove(newest);
    }
    await env.close();
    const opened = await openStore({ path, pageSize: 16384 }).then(async (s) => { await s.close(); return undefined; }, (e: Error & { code?: string }) => e);
    t.equal(opened?.code, 'TIDEPOOL_CORRUPT_STATE', `${lose} lost: opening fails as a corrupt state`);
    t.match(opened?.message, /of flush \d+ is missing from storage \(LMDB's own pages are damaged\)/, `it says what: ${opened?.message}`);
  }
});

t.test('a delta materialized whole holds what its chain holds', async (t) => {
  const path = join(tmp, `whole${dirs++}`);
  await chainStore(path, 20, 6, 7);
  const dbs = openStoreDbs(path);
  const { env } = dbs;
  try {
    const keys = [...dbs.deltas.getKeys({})] as [string, number, number][];
    const [stateId, newest, pageId] = keys[keys.length - 1]!;
    const chain = readPageChain(dbs, stateId, pageId, newest)!;
    t.equal(chain.deltas?.length, 6, 'the page is stored as a whole version and six deltas');
    const whole = wholePageAt(dbs, stateId, pageId, newest);
    t.notOk(isDeltaEnvelope(whole), 'the materialized envelope is whole');
    const node = deserializeNode(pageId, decodePage(whole, { table: 't', pageId, version: newest }, (id) => codecById(id))) as LeafNode;
    const fromChain = decodeStoredPage(pageId, 't', chain, (id) => codecById(id)).node as LeafNode;
    t.equal(node.kind, LEAF);
    t.same(node.keys, fromChain.keys);
    t.same(node.keys.map((_, i) => leafValue(node, i)), fromChain.keys.map((_, i) => leafValue(fromChain, i)));
    t.ok(node.keys.includes(encodeKey(keyAt(7))));
  } finally {
    await env.close();
  }
});

/** One snapshot of one page: cut the log, resolve the page. */
const take = (log: DeltaLog, id: number) => log.resolve(id, log.cut());

t.test('the delta log: what goes whole and what goes as a delta', async (t) => {
  const log = new DeltaLog(true, 1000);
  log.fresh(1);
  log.set(1, 'a', 1, 20);
  t.equal(take(log, 1), undefined, 'a fresh page is written whole');
  log.set(1, 'b', 2, 20);
  log.set(1, 'a', 3, 20);
  log.delete(1, 'c');
  const d = take(log, 1)!;
  const { keys, vals } = deltaEntries(d);
  t.same(keys, ['a', 'b', 'c'], 'keys ascend, one entry per key');
  t.same(vals, [3, 2, undefined], 'the newest change of each, a deletion as undefined');
  t.equal(d.depth, 1);
  log.set(1, 'a', 4, 20);
  t.equal(take(log, 1)!.depth, 2, 'the next delta is the second link');
  log.set(1, 'a', 5, 20);
  log.rewrite(1);
  t.equal(take(log, 1), undefined, 'a split, merge or borrow makes it whole');
  log.set(1, 'a', 6, 20);
  t.equal(take(log, 1)!.depth, 1, 'a whole write restarts the chain');
  for (let i = 0; i < 30; i++) log.set(1, `k${i}`, i, 20);
  t.equal(take(log, 1), undefined, 'changes past half a page go whole');
  log.set(1, 'a', 7, 20);
  log.failed(1);
  t.equal(take(log, 1), undefined, 'a page of a failed flush goes whole');
  // A change after the cut belongs to the next snapshot, not to the one being resolved.
  log.set(1, 'a', 8, 20);
  const cut = log.cut();
  log.set(1, 'z', 9, 20);
  t.same(deltaEntries(log.resolve(1, cut)!).keys, ['a'], 'the snapshot holds what was noted before its cut');
  t.same(deltaEntries(take(log, 1)!).keys, ['z'], 'and the next one what came after');
  const off = new DeltaLog(false, 1000);
  off.set(2, 'a', 1, 20);
  t.equal(take(off, 2), undefined, 'disabled (memory storage): always whole');
});

t.test('a change made while a flush is being written belongs to the next flush', async (t) => {
  const path = join(tmp, `iso${dirs++}`);
  const s = await openStore({ path, pageSize: 16384 });
  for (let i = 0; i < 20; i++) s.set(keyAt(i), valueAt(i, 0));
  await s.flush(); // version 1, whole
  s.set(keyAt(3), valueAt(3, 1));
  // A checkpoint's snapshot is taken in the call (store.flush() takes it a turn later).
  const second = engineOf(s).checkpoint(); // version 2: encoded and written after this line
  s.set(keyAt(3), valueAt(3, 2));
  s.set(keyAt(4), valueAt(4, 2));
  await second;
  await s.flush(); // version 3
  await s.close();
  const dbs = openStoreDbs(path);
  try {
    const [[stateId, pageId]] = [...dbs.heads.getKeys({})] as [string, number][];
    const at = (v: number) => {
      const node = decodeStoredPage(pageId!, 't', readPageChain(dbs, stateId!, pageId!, v)!, (id) => codecById(id)).node as LeafNode;
      const get = (i: number) => fromStored(leafValue(node, node.keys.indexOf(encodeKey(keyAt(i)))));
      return [get(3), get(4)];
    };
    t.same(at(2), [valueAt(3, 1), valueAt(4, 0)], 'flush 2 holds what was set before it was taken');
    t.same(at(3), [valueAt(3, 2), valueAt(4, 2)], 'flush 3 holds the later changes');
    t.same(dbs.heads.get([stateId!, pageId!]), [2, 3], 'both are deltas of the whole version 1');
  } finally {
    await dbs.env.close();
  }
});

t.test('deltas and heads live in the pages database, out of every page range', async (t) => {
  const dir = join(tmp, `keyspace${dirs++}`);
  const { open } = await import('lmdb');
  const root = open(envOptions(dir, true));
  const dbs = openPageDbs(root);
  // 'a' and 'ab' share a prefix; 'b' sorts after both.
  for (const s of ['a', 'ab', 'b']) {
    for (const id of [0, 1, 2]) await dbs.pages.put([s, id, 1], Buffer.from(`${s}${id}@1`));
    await dbs.deltas.put([s, 2, 1], Buffer.from(`${s}1@2`));
    await dbs.deltas.put([s, 3, 1], Buffer.from(`${s}1@3`));
    await dbs.heads.put([s, 1], [2, 3]);
  }
  const pageKeys = [...dbs.pages.getKeys({ start: ['a', -1, 0], end: ['a', Number.MAX_SAFE_INTEGER, 0] })];
  t.same(pageKeys, [['a', 0, 1], ['a', 1, 1], ['a', 2, 1]], "a state's page range holds only its pages");
  t.same([...dbs.deltas.getKeys({ start: ['a', -1], end: ['a', Number.MAX_SAFE_INTEGER] })], [['a', 2, 1], ['a', 3, 1]], "its deltas, version first, without 'ab''s");
  t.same([...dbs.deltas.getKeys({ start: ['a', 3], end: ['a', 4] })], [['a', 3, 1]], 'a version range of them');
  t.same([...dbs.heads.getRange({})].map((e) => [e.key, e.value]), [[['a', 1], [2, 3]], [['ab', 1], [2, 3]], [['b', 1], [2, 3]]], 'every head of every state, decoded');
  t.equal([...dbs.deltas.getKeys({})].length, 6, 'every delta of every state');
  t.same(readPageChain(dbs, 'ab', 1, 3)?.deltas?.map((d) => d.bytes.toString()), ['ab1@2', 'ab1@3'], 'a chain reads its deltas through the head');
  t.ok([...dbs.pages.getKeys({})].some((k) => !isPageKey(k)), 'the whole database does hold the tagged records');
  await root.close();
  t.same([...(await storedStateIds(dir))].sort(), ['a', 'ab', 'b'], 'listing the stored states skips each one past its deltas (and ends)');
});

t.test("the I/O worker's heads in memory equal what LMDB stores after any puts, GC drops and failed flushes", async (t) => {
  const { open } = await import('lmdb');
  type Op = { kind: 'put'; page: number } | { kind: 'gc'; page: number; below: number } | { kind: 'fail'; pages: number[] } | { kind: 'flush' };
  const op: fc.Arbitrary<Op> = fc.oneof(
    fc.record({ kind: fc.constant('put' as const), page: fc.integer({ min: 0, max: 5 }) }),
    fc.record({ kind: fc.constant('gc' as const), page: fc.integer({ min: 0, max: 5 }), below: fc.integer({ min: 1, max: 12 }) }),
    fc.record({ kind: fc.constant('fail' as const), pages: fc.array(fc.integer({ min: 0, max: 5 }), { maxLength: 3 }) }),
    fc.constant({ kind: 'flush' as const }),
  );
  let runs = 0;
  await fc.assert(
    fc.asyncProperty(fc.array(op, { maxLength: 40 }), async (ops) => {
      const dir = join(tmp, `heads${dirs++}`);
      const root = open(envOptions(dir, true));
      const dbs = openPageDbs(root);
      const pending: Promise<unknown>[] = [];
      const write = (p: Promise<unknown>) => void pending.push(p);
      // Another state in the same database, which nothing here may touch.
      await dbs.heads.put(['other', 1], [1]);
      await dbs.deltas.put(['other', 1, 1], Buffer.from('x'));
      let heads = DeltaHeads.load(dbs, 's');
      const model = new Map<number, Set<number>>(); // page → versions whose delta is stored
      let version = 1;
      let thisFlush: number[] = []; // pages given a delta at `version`
      for (const o of ops) {
        if (o.kind === 'put') {
          write(heads.put(o.page, version, Buffer.from(`${o.page}@${version}`), write));
          (model.get(o.page) ?? model.set(o.page, new Set()).get(o.page)!).add(version);
          thisFlush.push(o.page);
        } else if (o.kind === 'gc') {
          heads.drop(o.page, (v) => v < o.below, write);
          for (const v of model.get(o.page) ?? []) if (v < o.below) model.get(o.page)!.delete(v);
        } else if (o.kind === 'fail') {
          // More deltas of this version are put, then the flush fails; the head write of
          // one page is taken to have been lost (removed from LMDB behind the cache's back).
          for (const p of o.pages) write(heads.put(p, version, Buffer.from('doomed'), write));
          const failed = [...thisFlush, ...o.pages];
          await Promise.all(pending);
          if (failed.length) await dbs.heads.remove(['s', failed[0]!]);
          heads.dropFailed(version, failed, write);
          for (const vs of model.values()) vs.delete(version);
          version++;
          thisFlush = [];
        } else {
          await Promise.all(pending);
          heads = DeltaHeads.load(dbs, 's'); // a re-attach reads what is stored
          version++;
          thisFlush = [];
        }
      }
      await Promise.all(pending);
      const want = [...model].filter(([, vs]) => vs.size).map(([p, vs]) => [p, [...vs].sort((a, b) => a - b)] as const).sort((a, b) => a[0] - b[0]);
      const storedHeads = [...dbs.heads.getRange({ start: ['s', -1], end: ['s', Number.MAX_SAFE_INTEGER] })].map((e) => [e.key[1], e.value] as const);
      const storedDeltas = [...dbs.deltas.getKeys({ start: ['s', -1], end: ['s', Number.MAX_SAFE_INTEGER] })].map((k) => `${k[2]}@${k[1]}`).sort();
      const wantDeltas = want.flatMap(([p, vs]) => vs.map((v) => `${p}@${v}`)).sort();
      const reloaded = DeltaHeads.load(dbs, 's').pages;
      const other = [dbs.heads.get(['other', 1]), dbs.deltas.get(['other', 1, 1])?.toString()];
      await root.close();
      rmSync(dir, { recursive: true, force: true });
      runs++;
      return JSON.stringify(storedHeads) === JSON.stringify(want) && JSON.stringify(storedDeltas) === JSON.stringify(wantDeltas) &&
        reloaded === want.length && JSON.stringify(other) === JSON.stringify([[1], 'x']);
    }),
    { numRuns: 60, seed: 4242 },
  );
  t.equal(runs, 60, 'every run stored exactly the model: heads, deltas, nothing of another state touched');
});
