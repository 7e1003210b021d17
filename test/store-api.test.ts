// The contract of openStore(): options, bad keys and values, storage kinds, ranges.
import t from 'tap';
import { existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openStore, type Store } from '../src/index.js';

const tmp = mkdtempSync(join(tmpdir(), 'tidepool-api-'));
t.teardown(() => rmSync(tmp, { recursive: true, force: true }));
let n = 0;
const dir = () => join(tmp, `d${n++}`);

t.test('bad keys throw TypeError naming the problem and change nothing', async (t) => {
  const s = await openStore({ storage: 'memory' });
  s.set('a', 1);
  const bad: [unknown, RegExp][] = [
    [NaN, /NaN/],
    [undefined, /undefined/],
    [null, /null|type/],
    [{ a: 1 }, /object|type/],
    [['x', undefined], /undefined.*index 1|index 1/],
    [['x', NaN], /NaN/],
    [Symbol('s'), /symbol|type/],
    ['k'.repeat(5000), /bytes.*limit/],
  ];
  for (const [k, re] of bad) {
    for (const call of [() => s.set(k as never, 1), () => s.get(k as never), () => s.has(k as never), () => s.delete(k as never)]) {
      t.throws(call, { name: 'TypeError', code: 'TIDEPOOL_BAD_KEY', message: re }, `key ${String(k).slice(0, 20)}`);
    }
  }
  t.equal(s.size, 1);
  t.same([...s.entries()], [['a', 1]]);
  await s.close();
});

t.test('bad values throw TypeError naming the problem and change nothing', async (t) => {
  const s = await openStore({ storage: 'memory' });
  s.set('a', { v: 1 });
  const bad: [unknown, RegExp][] = [
    [undefined, /undefined/],
    [() => 1, /function/],
    [{ f: () => 1 }, /function at value\.f/],
    [Symbol('x'), /symbol/],
    [new Map([[1, 2]]), /Map/],
    [{ nested: [new Set([1])] }, /Set at value\.nested\[0\]/],
  ];
  const cyclic: Record<string, unknown> = {};
  cyclic.self = cyclic;
  bad.push([cyclic, /deeper|cycle/]);
  for (const [v, re] of bad) {
    t.throws(() => s.set('a', v), { name: 'TypeError', code: 'TIDEPOOL_BAD_VALUE', message: re });
    t.throws(() => s.set('new', v), { name: 'TypeError' });
  }
  t.same(s.get('a'), { v: 1 }, 'old value intact');
  t.equal(s.has('new'), false);
  t.equal(s.size, 1);
  await s.close();
});

t.test('values round-trip, and stored objects are copies', async (t) => {
  const s = await openStore({ storage: 'memory', pageSize: 1024, cachePages: 2 });
  const values: unknown[] = [null, true, false, 0, -1.5, 2 ** 60, 123n, -(2n ** 100n), '', 'héllo 🌊', new Date(1700000000000),
    [1, 'two', [3]], { a: { b: [1, { c: null }] } }, new Uint8Array([1, 2, 3])];
  values.forEach((v, i) => s.set(i, v));
  for (let i = 0; i < 200; i++) s.set(`pad${i}`, 'x'.repeat(50)); // push the values out of the cache
  values.forEach((v, i) => {
    const got = s.get(i);
    if (v instanceof Uint8Array) t.same([...(got as Uint8Array)], [...v]);
    else t.same(got, v, `value ${i}`);
    t.equal(typeof got, typeof v);
  });
  const obj = { n: 1 };
  s.set('obj', obj);
  obj.n = 2;
  t.same(s.get('obj'), { n: 1 }, 'mutating after set does not change the store');
  (s.get('obj') as { n: number }).n = 3;
  t.same(s.get('obj'), { n: 1 }, 'mutating a returned value does not change the store');
  await s.close();
});

t.test('key order: by type, then by value; tuples element by element', async (t) => {
  const s = await openStore({ storage: 'memory' });
  const keys = [['b'], 'b', 2n, -1, false, new Uint8Array([0]), ['a', 2], 'a', ['a'], true, 1.5, ['a', 1, 'z'], 'é', 'z'];
  for (const k of keys) s.set(k as never, 1);
  t.same([...s.keys()], [false, true, -1, 1.5, 2n, 'a', 'b', 'z', 'é', new Uint8Array([0]), ['a'], ['a', 1, 'z'], ['a', 2], ['b']]);
  t.same([...s.keys({ gte: 'a', lt: 'z' })], ['a', 'b']);
  t.same([...s.keys({ gt: 'a', lte: 'z', reverse: true })], ['z', 'b']);
  t.same([...s.keys({ prefix: ['a'] })], [['a'], ['a', 1, 'z'], ['a', 2]]);
  t.same([...s.keys({ prefix: ['a'], gt: ['a'] })], [['a', 1, 'z'], ['a', 2]]);
  t.same([...s.keys({ limit: 2, reverse: true })], [['b'], ['a', 2]]);
  t.same([...s.keys({ limit: 0 })], []);
  t.same([...s.entries({ gte: -1, lte: 1.5 })], [[-1, 1], [1.5, 1]]);
  await s.close();
});

t.test('option errors name the option', async (t) => {
  await t.rejects(openStore({ storage: 'lmdb' }), { code: 'TIDEPOOL_BAD_OPTION', message: /path/ });
  await t.rejects(openStore({ storage: 'disk' as never, path: dir() }), { message: /storage/ });
  await t.rejects(openStore({ storage: 'memory', pageSize: 100 }), { message: /pageSize/ });
  await t.rejects(openStore({ storage: 'memory', cachePages: 0 }), { message: /cachePages/ });
  await t.rejects(openStore({ storage: 'memory', compression: 'snappy' as never }), { message: /compression/ });
  await t.rejects(openStore({ storage: 'memory', compression: { module: './nope.js' } }), { code: 'TIDEPOOL_CODEC', message: /nope\.js/ });
  await t.rejects(openStore({ storage: 'memory', pagesize: 4 } as never), { message: /pagesize.*unknown/ });
  await t.rejects(openStore({ path: dir(), name: '../escape' }), { message: /name/ });
  const file = join(tmp, 'a-file');
  writeFileSync(file, 'x');
  await t.rejects(openStore({ path: file }), { message: /a-file/ });
});

t.test('lmdb: reopen shows the last flush; close flushes', async (t) => {
  const path = dir();
  let s: Store = await openStore({ path });
  s.set('x', 1);
  await s.flush();
  s.set('y', 2);
  await s.close();
  s = await openStore({ path });
  t.same([...s.entries()], [['x', 1], ['y', 2]]);
  s.delete('x');
  s.clear();
  s.set('z', 3);
  await s.close();
  s = await openStore({ path });
  t.same([...s.entries()], [['z', 3]]);
  await s.close();
  t.throws(() => s.get('z'), { code: 'TIDEPOOL_STORE_CLOSED' });
  t.ok(existsSync(join(path, 'data.mdb')), 'LMDB files in the store directory');
});

t.test('names are separate stores in one directory', async (t) => {
  const path = dir();
  const a = await openStore({ path, name: 'a' });
  const b = await openStore({ path, name: 'b' });
  a.set('k', 'from a');
  b.set('k', 'from b');
  await Promise.all([a.close(), b.close()]);
  const a2 = await openStore({ path, name: 'a' });
  const b2 = await openStore({ path, name: 'b' });
  t.equal(a2.get('k'), 'from a');
  t.equal(b2.get('k'), 'from b');
  await Promise.all([a2.close(), b2.close()]);
});

t.test('temp: disk-backed, cleared on open and removed on close', async (t) => {
  const path = dir();
  let s = await openStore({ path, storage: 'temp', pageSize: 512, cachePages: 2 });
  for (let i = 0; i < 2000; i++) s.set(i, `v${i}`);
  await s.flush();
  t.ok(readdirSync(path).some((f) => f.endsWith('.temp')), 'has a directory on disk');
  for (let i = 0; i < 2000; i += 97) t.equal(s.get(i), `v${i}`);
  await s.close();
  t.notOk(readdirSync(path).some((f) => f.endsWith('.temp')), 'removed on close');
  s = await openStore({ path, storage: 'temp' });
  t.equal(s.size, 0, 'nothing kept across opens');
  s.set('a', 1);
  await s.flush();
  await s.close();
  s = await openStore({ path, storage: 'temp' });
  t.equal(s.size, 0, 'still nothing after a flushed temp store');
  await s.close();
});

t.test('memory: no files, nothing across opens, bounded decoded cache', async (t) => {
  const s = await openStore({ storage: 'memory', pageSize: 1024, cachePages: 4 });
  for (let i = 0; i < 10000; i++) s.set(i, { i });
  t.ok(s.stats.residentPages <= 4);
  await s.flush();
  for (let i = 0; i < 10000; i += 101) t.same(s.get(i), { i });
  await s.close();
  const s2 = await openStore({ storage: 'memory' });
  t.equal(s2.size, 0);
  await s2.close();
});

t.test('flush with nothing changed is cheap and still resolves', async (t) => {
  const s = await openStore({ path: dir() });
  await s.flush();
  s.set('a', 1);
  await s.flush();
  const v = s.stats.version;
  await s.flush();
  t.equal(s.stats.version, v, 'no new version without changes');
  await s.close();
});

t.test('a new compression setting still reads old pages', async (t) => {
  const path = dir();
  let s = await openStore({ path, compression: 'zstd', pageSize: 1024, cachePages: 2 });
  for (let i = 0; i < 3000; i++) s.set(i, 'value '.repeat(5) + i);
  await s.close();
  s = await openStore({ path, compression: 'lz4', pageSize: 1024, cachePages: 2 });
  for (let i = 0; i < 3000; i += 7) t.equal(s.get(i), 'value '.repeat(5) + i);
  for (let i = 0; i < 3000; i += 2) s.set(i, i);
  await s.close();
  s = await openStore({ path, compression: 'none', pageSize: 1024, cachePages: 2 });
  let ok = 0;
  for (let i = 0; i < 3000; i++) if (s.get(i) === (i % 2 === 0 ? i : 'value '.repeat(5) + i)) ok++;
  t.equal(ok, 3000);
  await s.close();
});

t.test('cacheBytes bounds the decoded pages by their memory, beside cachePages', async (t) => {
  const path = join(tmp, 'cache-bytes');
  const budget = 256 << 10;
  const s = await openStore({ path, pageSize: 4096, cachePages: 1 << 20, cacheBytes: budget });
  let peak = 0;
  for (let i = 0; i < 20_000; i++) {
    s.set(`user:${(i * 7919) % 20_000}`, { n: i, s: 'x'.repeat(40) });
    peak = Math.max(peak, s.stats.residentBytes!);
  }
  t.ok(peak <= budget, `counted memory stays within the budget (peak ${peak})`);
  const live = (s as unknown as { engine: { pager: { livePages: number } } }).engine.pager.livePages;
  t.ok(s.stats.residentPages < live / 4, `most pages are not resident (${s.stats.residentPages} of ${live})`);
  t.ok(s.stats.spillWrites > 0, 'dirty pages went to the spill file');
  await s.flush();
  for (let i = 0; i < 20_000; i += 97) t.equal((s.get(`user:${(i * 7919) % 20_000}`) as { n: number }).n, i);
  t.ok(s.stats.residentBytes! <= budget);
  await s.close();
  const u = await openStore({ path, pageSize: 4096 });
  t.equal(u.stats.residentBytes, undefined, 'nothing is counted without a budget');
  t.equal(u.size, 20_000);
  await u.close();
  for (const bad of [0, -1, 1.5, '1MB']) {
    await t.rejects(openStore({ path: join(tmp, 'cache-bytes-bad'), cacheBytes: bad as number }), { code: 'TIDEPOOL_BAD_OPTION', message: /cacheBytes/ });
  }
});

t.test('a state directory made with 4 KiB LMDB pages (before LMDB_PAGE_BYTES) still opens, writes and reads', async (t) => {
  const { open } = await import('lmdb');
  const { envOptions, LMDB_PAGE_BYTES } = await import('../src/storage/io-protocol.js');
  const path = join(tmp, 'old-lmdb-pages');
  const env = open({ ...envOptions(path, false), pageSize: 4096 });
  await env.close();
  const s = await openStore({ path, pageSize: 1024, cachePages: 8 });
  for (let i = 0; i < 3000; i++) s.set(i, `value ${i}`);
  await s.close();
  const r = await openStore({ path, pageSize: 1024, cachePages: 8 });
  t.equal(r.size, 3000);
  t.equal(r.get(2999), 'value 2999');
  await r.close();
  const again = open(envOptions(path, false));
  t.equal((again.getStats() as { pageSize?: number }).pageSize, 4096, `the environment kept its 4 KiB pages (new ones get ${LMDB_PAGE_BYTES})`);
  await again.close();
});
