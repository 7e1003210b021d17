// The streaming flush path: page envelopes encoded straight into reserved ring slots,
// in-flight pages that keep no encoded copy, and the string writer that skips the
// byte-count pass.
import t from 'tap';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openStore } from '../src/store.js';
import { createRingBuffer, RingReader, RingWriter } from '../src/transport/ring.js';
import { deserializeNode, leafValue, newLeaf, serializeNode, type LeafNode } from '../src/state/node.js';
import { engineOf } from './helpers/model.js';
import type { FlushBatch, StateBackend } from '../src/storage/backend.js';

const tmp = mkdtempSync(join(tmpdir(), 'tidepool-flushpath-'));
t.teardown(() => rmSync(tmp, { recursive: true, force: true }));

t.test('ring: a reserved frame is read as written; the ring end and misuse are refused', async (t) => {
  const sab = createRingBuffer(256);
  const w = new RingWriter(sab);
  const r = new RingReader(sab);
  const got: number[][] = [];
  const take = () => r.drain((v) => got.push([...v]));
  let wrapped = 0;
  for (let i = 0; i < 40; i++) {
    const len = 5 + (i % 13);
    let view = w.tryReserve(len);
    if (view === null) {
      // Full or at the end of the ring: drain, and if the end is the reason, write it the ordinary way.
      take();
      view = w.tryReserve(len);
      if (view === null) {
        wrapped++;
        w.write(Uint8Array.from({ length: len }, (_, j) => (i + j) & 0xff));
        continue;
      }
    }
    if (i === 0) t.throws(() => w.write(new Uint8Array(1)), { code: 'TIDEPOOL_RING_MISUSE' }, 'no write between reserve and commit');
    for (let j = 0; j < len; j++) view[j] = (i + j) & 0xff;
    w.commitReserved(i % 2 === 0); // every other frame unpublished until the next one
  }
  w.publish();
  take();
  t.equal(got.length, 40, 'every frame arrived');
  t.ok(got.every((f, i) => f.length === 5 + (i % 13) && f.every((b, j) => b === ((i + j) & 0xff))), 'in order, byte for byte');
  t.ok(wrapped > 0, `${wrapped} frames met the ring's end and were written in two parts`);
  t.equal(w.tryReserve(200), null, 'a frame larger than half the ring is never reserved');
  t.throws(() => w.commitReserved(), { code: 'TIDEPOOL_RING_MISUSE' });
});

t.test('ring: roomFor waits until the reader frees room', async (t) => {
  const sab = createRingBuffer(256);
  const w = new RingWriter(sab);
  const r = new RingReader(sab);
  // 32-byte records tile the 256-byte ring exactly, so the end is never the reason.
  while (w.tryReserve(24) !== null) w.commitReserved();
  let done = false;
  const room = w.roomFor(24).then(() => (done = true));
  await new Promise((resolve) => setTimeout(resolve, 20));
  t.notOk(done, 'still waiting while the ring is full');
  r.drain(() => undefined);
  await room;
  t.ok(w.tryReserve(24) !== null, 'room after the reader drained');
});

t.test('strings whose UTF-8 length needs longer headers than their length suggests round-trip', async (t) => {
  const leaf: LeafNode = newLeaf(1);
  const vals: string[] = [];
  // Around the fixstr/str8 (32), varint (128), str16 (256) and varint (16384) boundaries.
  for (const len of [0, 1, 30, 31, 32, 120, 125, 126, 127, 128, 250, 255, 256, 16370, 16380, 16383, 16384, 70000]) {
    for (const wide of ['', 'é', '€', '😀', 'éé€']) {
      if (wide.length > len) continue;
      vals.push('a'.repeat(len - wide.length) + wide);
      vals.push(wide + 'b'.repeat(len - wide.length));
    }
  }
  vals.forEach((v, i) => {
    leaf.keys.push(`k${String(i).padStart(4, '0')}`);
    leaf.vals.push(v);
  });
  const back = deserializeNode(1, Buffer.from(serializeNode(leaf))) as LeafNode;
  t.equal(back.keys.length, vals.length);
  const wrong = vals.filter((v, i) => leafValue(back, i) !== v);
  t.same(wrong.map((v) => v.length), [], `all ${vals.length} strings came back`);
});

t.test('keys of every length round-trip through a page: short ones written by a loop, long ones natively, varint lengths', async (t) => {
  const leaf: LeafNode = newLeaf(1);
  // Binary strings (chars 0..255) around the loop limit (64) and the 1-byte varint (128).
  const lens = [0, 1, 2, 15, 63, 64, 65, 100, 127, 128, 129, 300, 1000];
  lens.forEach((n, i) => {
    let k = String.fromCharCode(i); // distinct and ascending first chars
    for (let j = 1; j < n; j++) k += String.fromCharCode((i * 31 + j * 7) & 255);
    leaf.keys.push(k.slice(0, n));
    leaf.vals.push(i);
  });
  leaf.keys[0] = ''; // the empty key sorts first
  const back = deserializeNode(1, Buffer.from(serializeNode(leaf))) as LeafNode;
  t.same(back.keys, leaf.keys, `${lens.length} keys of lengths ${lens.join(', ')}`);
  t.same(back.keys.map((_, i) => leafValue(back, i)), leaf.vals);
});

t.test('pages read while their flush is in flight, after the cache evicted them, hold the flushed values', async (t) => {
  const path = join(tmp, 'inflight');
  const n = 3000;
  const val = (i: number, gen: number) => ({ i, gen, s: `value ${i} `.repeat(3) });
  let store = await openStore({ path, pageSize: 512, cachePages: 4 });
  for (let i = 0; i < n; i++) store.set(i, val(i, 0));
  await store.flush();
  for (let i = 0; i < n; i += 3) store.set(i, val(i, 1));

  const backend = (engineOf(store) as unknown as { opts: { backend: StateBackend } }).opts.backend;
  const writeFlush = backend.writeFlush.bind(backend);
  let checked = 0;
  let spillWritesInFlight = 0;
  backend.writeFlush = async (batch: FlushBatch) => {
    // Encode every page first, as the ring path does (the frozen copies go), then read
    // everything through the 4-page cache while nothing of this flush is durable.
    for (const p of batch.pages) batch.encode(p, (len) => Buffer.allocUnsafe(len));
    const before = store.stats.spillWrites;
    for (let i = 0; i < n; i++) {
      const v = store.get(i) as { gen: number };
      if (v.gen === (i % 3 === 0 ? 1 : 0)) checked++;
    }
    // Writes during the flush belong to the next one.
    for (let i = 1; i < n; i += 3) store.set(i, val(i, 2));
    spillWritesInFlight = store.stats.spillWrites - before;
    return writeFlush(batch);
  };
  await store.flush();
  t.equal(checked, n, 'every read during the flush saw the state being flushed');
  t.ok(spillWritesInFlight > 0, `clean in-flight pages were spilled when evicted (${spillWritesInFlight} spill writes)`);
  const gen = (i: number) => (i % 3 === 0 ? 1 : i % 3 === 1 ? 2 : 0);
  let good = 0;
  for (let i = 0; i < n; i++) if ((store.get(i) as { gen: number }).gen === gen(i)) good++;
  t.equal(good, n, 'after the flush: its values and the newer ones');
  await store.close();
  store = await openStore({ path, pageSize: 512, cachePages: 4 });
  good = 0;
  for (let i = 0; i < n; i++) if ((store.get(i) as { gen: number }).gen === gen(i)) good++;
  t.equal(good, n, 'reopened: everything durable');
  await store.close();
});

t.test('I/O staging: a slab is reused only after its puts settled, and pumps asking at once share one swap', async (t) => {
  const { Staging } = await import('../workers/io-staging.js');
  const st = new Staging(1024, 256);
  const settle: (() => void)[] = [];
  const put = () => new Promise<void>((resolve) => settle.push(resolve));
  const a = st.copy(new Uint8Array(700).fill(1));
  st.settle(a, put());
  t.equal(st.ready(), undefined, 'room left in the first slab');
  const b = st.copy(new Uint8Array(100).fill(2));
  st.settle(b, put());
  const r1 = st.ready();
  const r2 = st.ready();
  t.ok(r1 && (r2 === r1 || r2 === undefined), 'a second pump waits for the same swap or finds it done, never flips back');
  await r1;
  const c = st.copy(new Uint8Array(900).fill(3));
  st.settle(c, put());
  t.ok(c.buffer !== a.buffer, 'the second slab is used while the first one has puts in flight');
  let swapped = false;
  const w1 = st.ready()!;
  t.equal(st.ready(), w1, 'pumps asking while the swap waits share it');
  const r3 = w1.then(() => (swapped = true));
  await new Promise((resolve) => setTimeout(resolve, 10));
  t.notOk(swapped, 'no reuse of the first slab while its puts are pending');
  t.ok(a.every((x) => x === 1) && b.every((x) => x === 2), 'its bytes are intact');
  settle[0]!();
  settle[1]!();
  await r3;
  t.ok(swapped, 'reused once they settled');
  const d = st.copy(new Uint8Array(10).fill(4));
  t.equal(d.buffer, a.buffer, 'back in the first slab');
  const big = st.copy(new Uint8Array(5000));
  t.ok(big.buffer !== a.buffer && big.buffer !== c.buffer, 'a frame larger than the room left gets a buffer of its own');
  st.settle(big);
});

t.test('a spilled page read back and evicted unchanged is not written to the spill file again', async (t) => {
  for (const compression of ['none', 'zstd'] as const) {
    const path = join(tmp, `backed-${compression}`);
    const s = await openStore({ path, pageSize: 512, cachePages: 4, compression, codecThreads: 0 });
    const N = 2000;
    for (let i = 0; i < N; i++) s.set(i, { i, text: `first ${i}` });
    const spilledAfterLoad = s.stats.spillWrites;
    t.ok(spilledAfterLoad > 50, `${compression}: the load spilled dirty pages (${spilledAfterLoad})`);
    for (let round = 0; round < 3; round++) for (let i = 0; i < N; i += 7) t.same(s.get(i), { i, text: `first ${i}` });
    // At most the pages that were resident and dirty when the reads began are written
    // (they are evicted for the first time); before, every read-back page was rewritten.
    const more = s.stats.spillWrites - spilledAfterLoad;
    t.ok(more <= 4, `${compression}: reads of spilled pages wrote ${more} pages (at most the 4 cached dirty ones)`);
    t.ok(s.stats.dirtyPages > 50, 'they are still not durable');
    // A change after the read-back is written (the old slot is not the page any more).
    for (let i = 0; i < N; i += 10) s.set(i, { i, text: `second ${i}` });
    t.ok(s.stats.spillWrites > spilledAfterLoad, `${compression}: changed pages are spilled again`);
    for (let i = 0; i < N; i += 3) s.get(i);
    await s.flush();
    t.equal(s.stats.dirtyPages, 0, 'the flush took every page, spill-backed ones included');
    for (let i = 0; i < N; i += 3) s.get(i); // reads after the flush: clean pages, dropped
    await s.close();
    const r = await openStore({ path, pageSize: 512, cachePages: 4, compression });
    let wrong = 0;
    for (let i = 0; i < N; i++) {
      const v = r.get(i) as { text: string };
      if (v.text !== `${i % 10 === 0 ? 'second' : 'first'} ${i}`) wrong++;
    }
    t.equal(wrong, 0, `${compression}: every value reads back after reopening`);
    t.equal(r.size, N);
    await r.close();
  }
});
