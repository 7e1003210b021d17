// Ring memory as parallelism grows (src/runtime/wiring.ts): a hash edge has p × p rings,
// so their size shrinks past a few producers — what one consumer can have queued on an
// edge (and what a barrier waits behind) stays bounded, and an edge's memory grows
// linearly with parallelism instead of quadratically. No threads: the wiring only.
import t from 'tap';
import { flow, sources } from '../src/index.js';
import { anySink } from './helpers/any-sink.js';
import { planFlow } from '../src/flow/plan.js';
import { wire, ringBytesFor, RING_BYTES, INPUT_BYTES_PER_EDGE, MIN_RING_BYTES } from '../src/runtime/wiring.js';

const keyed = () =>
  flow('keyed')
    .source('src', sources.generator({ count: 1_000_000, make: (i) => i })) // enough records for 64 source subtasks
    .keyBy((x: number) => x % 7)
    .reduce('r', (acc: number | undefined, x: number) => (acc ?? 0) + x)
    .sink('out', anySink());

/** Bytes of the ring buffers (header included) per edge, and the largest per consumer. */
function measure(p: number, chaining = true): { edge: number; perConsumer: number; rings: number; ringSize: Set<number> } {
  // At p=1 (chaining on) the reduce is fused into the source's task: no edge to measure.
  const plan = planFlow(keyed(), { parallelism: p, keyGroups: 1024, chaining: chaining && p > 1, operators: {} });
  const io = wire(plan);
  let edge = 0, rings = 0, perConsumer = 0;
  const ringSize = new Set<number>();
  for (const [key, w] of io) {
    if (!key.startsWith('1/')) continue; // the reduce task's instances: the hash edge's consumers
    const bytes = w.inputs.reduce((a, r) => a + r.byteLength, 0);
    edge += bytes;
    rings += w.inputs.length;
    perConsumer = Math.max(perConsumer, bytes);
    for (const r of w.inputs) ringSize.add(r.byteLength);
  }
  return { edge, perConsumer, rings, ringSize };
}

t.test('ring sizes: full size up to 4 producers, then shrinking to the minimum', async (t) => {
  t.equal(ringBytesFor(1), RING_BYTES);
  t.equal(ringBytesFor(4), RING_BYTES);
  t.equal(ringBytesFor(5), 128 << 10, 'a power of two below the share');
  t.equal(ringBytesFor(16), 64 << 10);
  t.equal(ringBytesFor(64), MIN_RING_BYTES);
  t.equal(ringBytesFor(1000), MIN_RING_BYTES, 'never below the minimum');
  for (let p = 1; p <= 256; p++) {
    const b = ringBytesFor(p);
    if ((b & (b - 1)) !== 0 || b > RING_BYTES || b < MIN_RING_BYTES) t.fail(`p=${p}: ${b}`);
    if (p * b > Math.max(INPUT_BYTES_PER_EDGE, p * MIN_RING_BYTES)) t.fail(`p=${p}: ${p} × ${b} over the per-consumer budget`);
  }
});

t.test('a hash edge: p × p rings, memory linear in p past 4', async (t) => {
  const at = [1, 2, 4, 8, 16, 32, 64].map((p) => ({ p, ...measure(p) }));
  for (const m of at) {
    t.equal(m.rings, m.p * m.p, `p=${m.p}: ${m.p}² rings`);
    t.ok(m.perConsumer <= INPUT_BYTES_PER_EDGE + m.p * 4096, `p=${m.p}: at most ~1 MiB queued per consumer (${m.perConsumer} B)`);
  }
  const mb = (b: number) => (b / 2 ** 20).toFixed(1);
  t.comment(at.map((m) => `p=${m.p}: ${mb(m.edge)} MiB`).join(', '));
  // Before: 256 KiB × p² (1 GiB at p = 64). Now ~1 MiB per consumer.
  t.ok(at.at(-1)!.edge < 80 * 2 ** 20, `p=64: ${mb(at.at(-1)!.edge)} MiB for the edge (256 KiB rings would be ${mb(64 * 64 * RING_BYTES)} MiB)`);
  t.same([...measure(1).ringSize].map((b) => b >= RING_BYTES), [true], 'p=1 (chaining off): one full-size ring');
  const fused = planFlow(keyed(), { parallelism: 1, keyGroups: 1024, chaining: true, operators: {} });
  t.same(fused.tasks.map((x) => x.label), ['src→r→out'], 'p=1, chaining on: the reduce is fused into the source task');
  t.equal([...wire(fused).values()].reduce((n, w) => n + w.inputs.length, 0), 0, '…with no ring');
});
