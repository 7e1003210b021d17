// The rings of a plan: one SPSC ring per (producer subtask, consumer subtask, edge),
// and each instance's inputs (with the side they feed), outputs (per edge) and doorbell.
import { createRingBuffer } from '../transport/ring.js';
import { createBell } from '../transport/channels.js';
import type { PhysicalPlan } from '../flow/plan.js';
import type { OutputSetup } from './task.js';

/**
 * Bytes per channel ring, at most. Aligned barriers queue behind what a full ring holds,
 * so this bounds checkpoint latency under backpressure: 256 KiB (~10k small records)
 * measured the same keyed-count throughput as 1 MiB and about half the time to a
 * restored run's first published record (perf/RESULTS.md, "Checkpoints and recovery").
 */
export const RING_BYTES = 256 << 10;
/**
 * What one consumer instance may have queued on one edge, over all its producers' rings.
 * A hash edge has p × p rings: at 256 KiB each that is 1 GiB at p = 64, and a barrier
 * would wait behind all of it. Past 4 producers the rings shrink instead, so memory and
 * queued data per consumer stay flat and an edge grows linearly with parallelism (down
 * to MIN_RING_BYTES; a frame larger than its ring goes through in chunks).
 */
export const INPUT_BYTES_PER_EDGE = 1 << 20;
export const MIN_RING_BYTES = 16 << 10;

/** The ring size for each of `producers` rings into one consumer. */
export function ringBytesFor(producers: number): number {
  const share = Math.max(MIN_RING_BYTES, Math.floor(INPUT_BYTES_PER_EDGE / Math.max(1, producers)));
  return Math.min(RING_BYTES, 2 ** Math.floor(Math.log2(share)));
}


/** Rings per edge, and each instance's inputs and outputs. */
export interface Wiring {
  inputs: SharedArrayBuffer[];
  inputSides: (0 | 1)[];
  outputs: OutputSetup[];
  bell: SharedArrayBuffer;
}

export function wire(plan: PhysicalPlan): Map<string, Wiring> {
  const io = new Map<string, Wiring>();
  const at = (t: number, s: number) => {
    const k = `${t}/${s}`;
    let v = io.get(k);
    if (!v) io.set(k, (v = { inputs: [], inputSides: [], outputs: [], bell: createBell() }));
    return v;
  };
  for (const t of plan.tasks) for (let s = 0; s < t.parallelism; s++) at(t.index, s);
  plan.edges.forEach((e, ei) => {
    const pa = plan.tasks[e.from]!.parallelism;
    const pb = plan.tasks[e.to]!.parallelism;
    for (let i = 0; i < pa; i++) {
      const out: OutputSetup = { edge: ei, rings: [], bells: [] };
      // forward: producer i feeds consumer i only; otherwise every consumer j (index j).
      const targets = e.partitioning === 'forward' ? [i] : [...Array(pb).keys()];
      const bytes = ringBytesFor(e.partitioning === 'forward' ? 1 : pa);
      for (const j of targets) {
        const ring = createRingBuffer(bytes);
        out.rings.push(ring);
        out.bells.push(at(e.to, j).bell);
        at(e.to, j).inputs.push(ring);
        at(e.to, j).inputSides.push(e.side);
      }
      at(e.from, i).outputs.push(out);
    }
  });
  return io;
}
