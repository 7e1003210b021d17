import t, { type Test as Tap } from 'tap';
import { Worker } from 'node:worker_threads';
import { createRingBuffer, encodedFrameSize, RingReader, RingWriter } from '../src/transport/ring.js';
import { FRAME_DATA, Inputs, Output, createBell, encodeBatch } from '../src/transport/channels.js';
import { watermarkFrame } from '../src/transport/frames.js';
import {
  checkFrame,
  hash,
  makeFrame,
  type ConsumeResult,
  type Job,
  type ProduceResult,
  type Sizes,
} from './fixtures/ring-worker.js';

const FIXTURE = new URL('./fixtures/ring-worker.js', import.meta.url);

const live = new Set<Worker>(); // workers of the running test

/**
 * Run one fixture job in a worker: `ready` resolves once the job has started (a
 * consumer on an empty ring is parked by then), `result` with what the job reports.
 * execArgv is cleared so workers skip the test runner's loaders and start fast.
 */
function spawn<R>(job: Job): { ready: Promise<void>; result: Promise<R> } {
  const worker = new Worker(FIXTURE, { workerData: job, execArgv: [] });
  live.add(worker);
  let ready!: () => void;
  const readyP = new Promise<void>((resolve) => { ready = resolve; });
  const result = new Promise<R>((resolve, reject) => {
    worker.on('message', (m: { ready?: boolean }) => (m.ready ? ready() : resolve(m as R)));
    worker.once('error', reject);
    worker.once('exit', (code) => reject(new Error(`worker exited (${code}) without a result`)));
  });
  result.catch(() => {}); // a test that already failed may never await it
  return { ready: readyP, result };
}
const consumer = (job: Omit<Extract<Job, { role: 'consume' }>, 'role'>) => spawn<ConsumeResult>({ role: 'consume', ...job });
const producer = (job: Omit<Extract<Job, { role: 'produce' }>, 'role'>) => spawn<ProduceResult>({ role: 'produce', ...job });

/**
 * Every test gets a deadline and its workers are terminated when it ends, so a lost
 * wake-up fails the test instead of hanging the suite. Loops on this thread check
 * `inTime()` and wait with timeouts, so nothing here stays parked after a failure.
 */
const test = (name: string, fn: (t: Tap) => Promise<void>) =>
  t.test(name, { timeout: 20_000 }, async (t) => {
    t.teardown(() => Promise.all([...live].map((w) => w.terminate())).then(() => live.clear()));
    await fn(t);
  });
function inTime(deadline: number): true {
  if (performance.now() > deadline) throw new Error('no progress before the deadline');
  return true;
}
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const code = (c: string) => ({ code: c });

/** Write `count` generated frames on this thread with write(); returns their checksum. */
function produceHere(writer: RingWriter, count: number, sizes: Sizes): number {
  const buf = new Uint8Array(sizes.max);
  let h = 0x811c9dc5;
  for (let seq = 0; seq < count; seq++) {
    const f = makeFrame(buf, seq, sizes);
    h = hash(h, f);
    writer.write(f);
  }
  return h;
}

test('createRingBuffer validates capacity and ends validate the buffer', async (t) => {
  for (const bad of [0, 32, 100, 1000, 2 ** 31, 1.5]) {
    t.throws(() => createRingBuffer(bad), code('TIDEPOOL_BAD_OPTION'), `capacity ${bad}`);
  }
  t.throws(() => new RingReader(new SharedArrayBuffer(4096)), code('TIDEPOOL_BAD_OPTION'));
  const sab = createRingBuffer(1024);
  t.equal(sab.byteLength > 1024, true);
  t.equal(new RingWriter(sab).capacity, 1024);
  t.equal(new RingReader(sab).capacity, 1024);
});

test('wraparound with odd-sized frames, same thread, across int32 overflow', async (t) => {
  const cap = 256;
  const sab = createRingBuffer(cap);
  const w = new RingWriter(sab);
  const r = new RingReader(sab);
  const sizes = { min: 5, max: 119 }; // all fit one record (MAX_CHUNK = 120)
  const buf = new Uint8Array(sizes.max);
  let pos = 0;
  let straddled = 0;
  let nextRead = 0;
  let error: string | null = null;
  // 5000 frames × ~70 B ≈ 350 KB passes the 64 KiB-to-overflow start point several times.
  for (let seq = 0; seq < 5000 && error === null; seq++) {
    const f = makeFrame(buf, seq, sizes);
    if ((pos & (cap - 1)) + 8 + f.length > cap) straddled++; // 8-byte record header
    pos += encodedFrameSize(f.length, cap);
    while (!w.tryWrite(f)) {
      const got = seq % 2 ? r.read() : null;
      if (got) error ??= checkFrame(got, nextRead++, sizes);
      else r.drain((v) => { error ??= checkFrame(v, nextRead++, sizes); }, 1 + (seq % 3));
    }
  }
  r.drain((v) => { error ??= checkFrame(v, nextRead++, sizes); });
  t.equal(error, null);
  t.equal(nextRead, 5000);
  t.ok(straddled > 100, `${straddled} frames straddled the end`);
  t.equal(r.read(), null);
  t.equal(w.used, 0);
});

test('odd-sized frames from a worker producer, chunked and wrapped', async (t) => {
  const sab = createRingBuffer(256);
  const sizes = { min: 4, max: 700 }; // many frames exceed MAX_CHUNK (120) and the ring
  const p = producer({ sab, sizes, count: 3000, mode: 'mixed', batch: 7 });
  const r = new RingReader(sab);
  let seq = 0;
  let h = 0x811c9dc5;
  let error: string | null = null;
  const deadline = performance.now() + 15_000;
  while (!r.closed && inTime(deadline)) {
    const f = seq % 2 ? r.read() : null;
    if (f) {
      error ??= checkFrame(f, seq++, sizes);
      h = hash(h, f);
    } else if (r.drain((v) => { error ??= checkFrame(v, seq++, sizes); h = hash(h, v); }, 5) === 0) {
      await r.waitReadable(1000);
    }
  }
  const res = await p.result;
  t.equal(error, null);
  t.equal(res.error, null);
  t.equal(seq, 3000);
  t.equal(h, res.checksum, 'checksums match');
});

test('frames larger than the ring are chunked and reassembled', async (t) => {
  const cap = 1024;
  const sizes = { min: 4, max: 50_000 }; // up to ~49× the ring
  for (const mode of ['read', 'drain'] as const) {
    const sab = createRingBuffer(cap);
    const c = consumer({ sab, sizes, mode });
    const w = new RingWriter(sab);
    const sent = produceHere(w, 200, sizes);
    w.close();
    const res = await c.result;
    t.equal(res.error, null, mode);
    t.equal(res.frames, 200, mode);
    t.equal(res.checksum, sent, `${mode}: checksum`);
    t.ok(w.blockedCount > 0, `${mode}: writer had to wait for the reader`);
  }
  // Same thread: a chunked frame that fits at once goes through tryWrite whole.
  const sab = createRingBuffer(cap);
  const w = new RingWriter(sab);
  const r = new RingReader(sab);
  const big = makeFrame(new Uint8Array(900), 9, { min: 900, max: 900 });
  t.ok(encodedFrameSize(900, cap) <= cap && 900 > cap / 2);
  t.equal(w.tryWrite(big), true);
  t.same(r.read(), big);
  t.equal(w.tryWrite(new Uint8Array(cap)), false, 'never fits at once: false, not a wait');
  t.equal(w.used, 0, 'and nothing of it was written');
});

test('1,000,000 small frames between two workers: no loss, no reorder', async (t) => {
  const sab = createRingBuffer(64 * 1024);
  const sizes = { min: 4, max: 64 };
  const c = consumer({ sab, sizes, mode: 'mixed' });
  const p = producer({ sab, sizes, count: 1_000_000, mode: 'mixed', batch: 256 });
  const [cres, pres] = await Promise.all([c.result, p.result]);
  t.equal(pres.error, null);
  t.equal(cres.error, null);
  t.equal(cres.frames, 1_000_000);
  t.equal(cres.checksum, pres.checksum, 'checksums match');
  t.equal(cres.closed, true);
});

test('backpressure: a tiny ring blocks the writer while the consumer is slow', async (t) => {
  const sizes = { min: 4, max: 40 };
  const sab = createRingBuffer(128);
  const c = consumer({ sab, sizes, mode: 'read', slowEvery: 25, slowMs: 2 });
  const w = new RingWriter(sab);
  const t0 = performance.now();
  const sent = produceHere(w, 1000, sizes); // blocks this (main) thread with Atomics.wait
  const elapsed = performance.now() - t0;
  w.close();
  const res = await c.result;
  t.equal(res.error, null);
  t.equal(res.checksum, sent);
  t.ok(w.blockedCount >= 10, `writer blocked ${w.blockedCount} times`);
  t.ok(w.blockedMs > 20, `writer spent ${w.blockedMs.toFixed(1)} ms blocked`);
  t.ok(elapsed >= 60, `1000 frames through a slow reader took ${elapsed.toFixed(0)} ms (>= 40 naps of 2 ms)`);
});

test('writeAsync waits without blocking the event loop', async (t) => {
  const sizes = { min: 4, max: 40 };
  const sab = createRingBuffer(128);
  const c = consumer({ sab, sizes, mode: 'drain', slowEvery: 25, slowMs: 2 });
  const w = new RingWriter(sab);
  let ticks = 0;
  const timer = setInterval(() => ticks++, 1);
  let h = 0x811c9dc5;
  for (let seq = 0; seq < 1000; seq++) {
    const f = makeFrame(new Uint8Array(sizes.max), seq, sizes);
    h = hash(h, f);
    await w.writeAsync(f);
  }
  clearInterval(timer);
  w.close();
  const res = await c.result;
  t.equal(res.error, null);
  t.equal(res.checksum, h);
  t.ok(w.blockedCount > 0, 'writer waited');
  t.ok(ticks >= 2, `timers kept firing while the writer waited (${ticks})`);
});

test('close(): reader drains everything before it sees closed', async (t) => {
  const sab = createRingBuffer(256);
  const w = new RingWriter(sab);
  const r = new RingReader(sab);
  w.write(Uint8Array.of(1));
  w.writeMany([Uint8Array.of(2), new Uint8Array(200).fill(3)]); // 200 B: two chunks; all fits
  w.close();
  w.close(); // idempotent
  t.equal(w.closed, true);
  t.throws(() => w.write(Uint8Array.of(4)), code('TIDEPOOL_RING_CLOSED'));
  t.throws(() => w.tryWrite(Uint8Array.of(4)), code('TIDEPOOL_RING_CLOSED'));
  await t.rejects(w.writeAsync(Uint8Array.of(4)), code('TIDEPOOL_RING_CLOSED'));
  t.equal(r.closed, false, 'data still unread');
  t.equal(await r.waitReadable(0), true);
  t.same(r.read(), Uint8Array.of(1));
  t.equal(r.closed, false);
  const rest: number[][] = [];
  r.drain((v) => rest.push([v.length, v[0]!]));
  t.same(rest, [[1, 2], [200, 3]]);
  t.equal(r.closed, true);
  t.equal(r.read(), null);
  t.equal(await r.waitReadable(1000), true, 'end of stream is readable: no wait');

  // A pending writeAsync is delivered before the close.
  const sab2 = createRingBuffer(64);
  const w2 = new RingWriter(sab2);
  const r2 = new RingReader(sab2);
  t.teardown(() => r2.cancel()); // if this test fails, wake whatever still waits
  const pending = w2.writeAsync(new Uint8Array(200).fill(7)); // needs the reader to make room
  w2.close();
  const frames: Uint8Array[] = [];
  const deadline = performance.now() + 10_000;
  while (!r2.closed && inTime(deadline)) {
    const f = r2.read();
    if (f) frames.push(f);
    else await r2.waitReadable(1000);
  }
  await pending;
  t.same(frames, [new Uint8Array(200).fill(7)]);
});

test('close() from another thread wakes a parked reader', async (t) => {
  const sab = createRingBuffer(256);
  const c = consumer({ sab, sizes: { min: 4, max: 8 }, mode: 'drain' });
  await c.ready; // it is parked in waitReadable() now
  const w = new RingWriter(sab);
  w.close();
  const res = await c.result;
  t.same({ frames: res.frames, closed: res.closed, error: res.error }, { frames: 0, closed: true, error: null });
  t.ok(res.waits >= 1, 'the reader was parked');
});

test('tryWrite on a full ring returns false and never waits', async (t) => {
  const sab = createRingBuffer(64);
  const w = new RingWriter(sab);
  const r = new RingReader(sab);
  t.teardown(() => r.cancel());
  const f = new Uint8Array(8).fill(1); // 16 bytes with its header
  t.equal(w.tryWrite(f), true);
  t.equal(w.tryWrite(f), true);
  t.equal(w.tryWrite(f), true);
  t.equal(w.tryWrite(f), true);
  t.equal(w.used, 64);
  const t0 = performance.now();
  t.equal(w.tryWrite(f), false, 'full');
  t.equal(w.tryWrite(new Uint8Array(0)), false, 'even an empty frame needs a header');
  t.ok(performance.now() - t0 < 50);
  t.same(r.read(), f);
  t.equal(w.tryWrite(f), true, 'room again after a read');
  t.equal(w.framesWritten, 5);
  t.equal(w.bytesWritten, 40);

  // While writeAsync calls are queued, the sync calls must not overtake them.
  const big = new Uint8Array(100);
  const pending = w.writeAsync(big);
  t.equal(w.tryWrite(Uint8Array.of(1)), false);
  t.throws(() => w.write(Uint8Array.of(1)), code('TIDEPOOL_RING_MISUSE'));
  const drained: number[] = [];
  const deadline = performance.now() + 10_000;
  while (drained.length < 5 && inTime(deadline)) {
    if (r.drain((v) => drained.push(v.length)) === 0) await r.waitReadable(1000);
  }
  await pending;
  t.same(drained, [8, 8, 8, 8, 100]);
});

test('waitReadable: timeouts, wake-ups and the event loop', async (t) => {
  const sab = createRingBuffer(256);
  const r = new RingReader(sab);
  t.teardown(() => r.cancel());
  t.equal(await r.waitReadable(0), false, 'zero timeout on an empty ring');
  let t0 = performance.now();
  let ticks = 0;
  const timer = setInterval(() => ticks++, 5);
  t.equal(await r.waitReadable(100), false, 'times out');
  clearInterval(timer);
  const waited = performance.now() - t0;
  t.ok(waited >= 95 && waited < 5000, `waited ${waited.toFixed(0)} ms`);
  t.ok(ticks >= 2, `event loop served timers meanwhile (${ticks})`);
  t.ok(r.waitCount >= 1);

  // A worker writes while we are parked: we wake early.
  const p = producer({ sab, sizes: { min: 4, max: 4 }, count: 1, mode: 'write' });
  t0 = performance.now();
  t.equal(await r.waitReadable(15_000), true, 'data arrived before the timeout');
  t.ok(performance.now() - t0 < 12_000, 'woke on the write, not the timeout');
  t.equal((await p.result).error, null);
  t.same(r.read(), makeFrame(new Uint8Array(4), 0, { min: 4, max: 4 }));
  t.equal(await r.waitReadable(5), true, 'closed counts as readable');

  // The notify is spent only on a parked reader.
  const sab2 = createRingBuffer(1024);
  const w2 = new RingWriter(sab2);
  const r2 = new RingReader(sab2);
  t.teardown(() => r2.cancel());
  for (let i = 0; i < 50; i++) w2.write(Uint8Array.of(i));
  t.equal(w2.notifyCount, 0, 'no notify while the reader is awake');
  r2.drain(() => {});
  const parked = r2.waitReadable(5000);
  w2.write(Uint8Array.of(1));
  t.equal(w2.notifyCount, 1, 'one notify for a parked reader');
  t.equal(await parked, true);
});

test('a worker parked in waitReadable stays alive until data comes', async (t) => {
  const sab = createRingBuffer(256);
  const sizes = { min: 4, max: 16 };
  const c = consumer({ sab, sizes, mode: 'read' });
  await c.ready;
  await sleep(300); // with nothing but Atomics.waitAsync pending, a worker would exit here
  const w = new RingWriter(sab);
  const sent = produceHere(w, 3, sizes);
  w.close();
  const res = await c.result;
  t.same({ frames: res.frames, checksum: res.checksum }, { frames: 3, checksum: sent });
});

test('drain: max, zero-copy views and a throwing callback', async (t) => {
  const sab = createRingBuffer(128);
  const w = new RingWriter(sab);
  const r = new RingReader(sab);
  for (let i = 0; i < 6; i++) w.write(new Uint8Array(i + 1).fill(i));
  const seen: number[] = [];
  t.equal(r.drain((v) => { seen.push(v.length); t.equal(v.buffer, sab, 'a view into the ring'); }, 2), 2);
  const boom = (v: Uint8Array) => {
    seen.push(v.length);
    if (v.length === 4) throw new Error('boom');
  };
  t.throws(() => r.drain(boom), /boom/);
  t.same(seen, [1, 2, 3, 4]);
  t.same(r.read(), new Uint8Array(5).fill(4), 'the throwing frame counts as consumed');
  t.equal(r.drain(() => {}, 0), 0);
  t.equal(r.drain(() => {}), 1);
  t.equal(r.drain(() => {}), 0, 'empty');
  t.equal(r.framesRead, 6);
  t.equal(r.bytesRead, 21);
});

test('cancel(): a writer blocked on a full ring gets TIDEPOOL_RING_CLOSED', async (t) => {
  const sab = createRingBuffer(128);
  const p = producer({ sab, sizes: { min: 4, max: 30 }, count: 1e9, mode: 'write' });
  const r = new RingReader(sab);
  const deadline = performance.now() + 10_000;
  while (r.used < 64 && inTime(deadline)) await sleep(10);
  await sleep(50);
  r.cancel();
  const res = await p.result;
  t.equal(res.error, 'TIDEPOOL_RING_CLOSED');
  t.ok(res.blocked > 0);
  t.equal(r.read(), null);
});

test('a reader-set limit bounds what the writer queues; a record larger than the limit still goes into an empty ring', async (t) => {
  const sab = createRingBuffer(4096);
  const w = new RingWriter(sab);
  const r = new RingReader(sab);
  t.equal(w.limit, 4096, 'no limit: the capacity');
  r.setLimit(256);
  t.equal(w.limit, 256);
  const f = new Uint8Array(56); // 64 ring bytes with its header
  let n = 0;
  while (w.tryWrite(f)) n++;
  t.equal(n, 4, 'four 64-byte records under a 256-byte limit');
  t.equal(w.used, 256);
  t.ok(r.read() !== null);
  t.equal(w.tryWrite(f), true, 'room again once one was read');
  t.equal(w.tryWrite(f), false);
  r.drain(() => undefined);
  r.setLimit(64);
  const big = new Uint8Array(1000); // > the limit, < half the ring: one record
  t.equal(w.tryWrite(big), true, 'an empty ring takes a record larger than the limit');
  t.equal(w.tryWrite(f), false, 'and nothing after it until it is read');
  t.equal(r.read()?.length, 1000);
  t.equal(w.tryWrite(f), true);
  r.setLimit(1 << 30);
  t.equal(w.limit, 4096, 'a limit above the capacity is the capacity');
  r.setLimit(1);
  t.equal(w.limit, 64, 'and at least 64 bytes');
  // Under a constant limit, what is queued never exceeds it (or one record).
  r.drain(() => undefined);
  r.setLimit(1000);
  const sizes = { min: 4, max: 600 };
  const buf = new Uint8Array(sizes.max);
  let over = 0, seq = 0, next = 0;
  let error: string | null = null;
  for (; seq < 3000; seq++) {
    const fr = makeFrame(buf, seq, sizes);
    while (!w.tryWrite(fr)) r.drain((v) => { error ??= checkFrame(v, next++, sizes); }, 1 + (seq % 3));
    if (w.used > Math.max(1000, encodedFrameSize(fr.length, 4096))) over++;
  }
  r.drain((v) => { error ??= checkFrame(v, next++, sizes); });
  t.equal(error, null);
  t.equal(next, 3000);
  t.equal(over, 0, 'never more queued than the limit or one record');
});

test('a worker writer (blocking, async, chunked) keeps going while the reader changes the limit at random', async (t) => {
  for (const mode of ['write', 'async', 'mixed'] as const) {
    const sab = createRingBuffer(2048);
    const sizes = { min: 4, max: 3000 }; // some frames are chunked, some exceed the ring
    const p = producer({ sab, sizes, count: 2000, mode, batch: 5 });
    const r = new RingReader(sab);
    let seq = 0;
    let h = 0x811c9dc5;
    let error: string | null = null;
    let rnd = 12345;
    const next = () => (rnd = (Math.imul(rnd, 1103515245) + 12345) >>> 0);
    const deadline = performance.now() + 15_000;
    while (!r.closed && inTime(deadline)) {
      if (next() % 4 === 0) r.setLimit([64, 200, 1024, 2048, 100_000][next() % 5]!);
      const got = r.drain((v) => { error ??= checkFrame(v, seq++, sizes); h = hash(h, v); }, 1 + (next() % 4));
      if (got === 0) await r.waitReadable(1000);
      else if (next() % 8 === 0) await sleep(1); // let the writer block
    }
    const res = await p.result;
    t.equal(error, null, mode);
    t.equal(res.error, null, mode);
    t.equal(seq, 2000, `${mode}: every frame`);
    t.equal(h, res.checksum, `${mode}: checksums match`);
  }
});

t.test('Inputs.queuedBytes: what the input rings hold, written and not yet read', async (t) => {
  const bell = createBell();
  const rings = [createRingBuffer(64 << 10), createRingBuffer(64 << 10)];
  const inputs = new Inputs(rings.map((r) => new RingReader(r)), bell);
  const outs = rings.map((r, p) => new Output([new RingWriter(r)], [bell], 'forward', undefined, 1, 100, p));
  t.equal(inputs.queuedBytes, 0, 'empty rings: nothing queued');
  for (let i = 0; i < 250; i++) outs[i % 2]!.push({ i, pad: 'x'.repeat(50) }, NaN);
  for (const o of outs) await o.flush();
  const queued = inputs.queuedBytes;
  t.ok(queued > 250 * 50, `both rings' batches queued: ${queued} B`);
  let frames = 0;
  while (inputs.poll() !== null) frames++;
  t.ok(frames >= 2, `${frames} frames read`);
  t.equal(inputs.queuedBytes, 0, 'all read: nothing queued');
});

t.test('Inputs.poll: frames it swallows (watermarks behind a restored one, barrier copies) never make it report an empty input', async (t) => {
  // After a restore the combined watermark starts ahead of what the inputs send: those
  // watermarks are consumed without a result. poll() used to return null after one such
  // frame per input, and the task parked with a ring full of them (a 60 s checkpoint stall).
  const bell = createBell();
  const rings = [createRingBuffer(64 << 10), createRingBuffer(64 << 10)];
  const inputs = new Inputs(rings.map((r) => new RingReader(r)), bell, undefined, 1_000_000);
  const writers = rings.map((r) => new RingWriter(r));
  for (let i = 0; i < 50; i++) for (const w of writers) w.write(watermarkFrame(1000 + i));
  writers[0]!.write(encodeBatch([{ i: 1 }]));
  const f = inputs.poll();
  t.ok(f !== null && f[0] === FRAME_DATA, 'one poll() skips the 100 swallowed watermarks and returns the data frame');
  t.equal(inputs.poll(), null, 'then nothing is left');
  t.equal(inputs.queuedBytes, 0, 'every ring read to the end');
});
