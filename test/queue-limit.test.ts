// Buffer debloating (src/transport/queue-limit.ts): a ring's limit follows what its
// reader consumes in the target time, on a real ring with a real writer, the clock
// driven by the test. Also what it must not do: shrink while the input is blocked for
// an aligning barrier, or while the ring is empty.
import t from 'tap';
import { createRingBuffer, RingReader, RingWriter } from '../src/transport/ring.js';
import { MIN_LIMIT_BYTES, QueueLimiter, SAMPLE_MS } from '../src/transport/queue-limit.js';

const FRAME = new Uint8Array(1016); // 1 KiB with its record header

/** Writes until the ring refuses, then reads `kib` frames (1 KiB each). */
function consume(w: RingWriter, r: RingReader, kib: number): void {
  while (w.tryWrite(FRAME));
  for (let i = 0; i < kib; i++) {
    if (r.read() === null) throw new Error('ring ran dry: the test writes too little');
    w.tryWrite(FRAME);
  }
}

t.test('the limit follows the consumption rate times the target, within the ring and above the floor', async (t) => {
  const sab = createRingBuffer(1 << 20);
  const w = new RingWriter(sab);
  const r = new RingReader(sab);
  const limiter = new QueueLimiter(1000);
  const input = { reader: r, blocked: false };
  let now = 0;
  const step = (kib: number) => {
    consume(w, r, kib);
    now += SAMPLE_MS;
    limiter.tick([input], now + 1e9); // the test's clock, far past the limiter's start
  };
  limiter.tick([input], 1e9); // first sample: records the byte count only
  t.equal(r.limit, 1 << 20, 'no limit before a rate is known');
  for (let i = 0; i < 30; i++) step(50); // 50 KiB per 100 ms = 500 KiB per s
  const want = 500 * 1024;
  t.ok(Math.abs(r.limit - want) < want * 0.15, `limit ${r.limit} ≈ ${want} (500 KiB/s × 1 s)`);
  t.ok(w.used <= r.limit + 1024, `queued ${w.used} within the limit`);

  input.blocked = true; // an aligning barrier: nothing is read from this input
  const before = r.limit;
  for (let i = 0; i < 10; i++) { now += SAMPLE_MS; limiter.tick([input], now + 1e9); }
  t.equal(r.limit, before, 'a blocked input keeps its limit');
  input.blocked = false;

  for (let i = 0; i < 40; i++) step(1); // 10 KiB/s: 10 KiB, below the floor
  t.equal(r.limit, MIN_LIMIT_BYTES, 'never below the floor');

  r.drain(() => undefined); // an empty ring and nothing written: idle, not slow
  now += SAMPLE_MS;
  limiter.tick([input], now + 1e9); // (the drain itself was consumption)
  const idle = r.limit;
  for (let i = 0; i < 10; i++) { now += SAMPLE_MS; limiter.tick([input], now + 1e9); }
  t.equal(r.limit, idle, 'an idle input keeps its limit');

  for (let i = 0; i < 40; i++) step(400); // 4 MiB/s × 1 s > the ring
  t.equal(r.limit, 1 << 20, 'never above the ring');
});
