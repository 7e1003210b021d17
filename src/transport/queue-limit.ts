// Buffer debloating, as Flink does it: each input ring of a task instance is limited to
// the bytes the instance consumes from it in `targetMs`, measured while it runs. A
// barrier queued behind records then waits about targetMs for them to be processed,
// not as long as it takes to work through full rings — under backpressure a full
// 256 KiB ring of large records in front of a slow operator was seconds of work.
//
// The rate is an exponential average of bytes read per sample interval. An input that
// is blocked (it delivered the barrier being aligned) or has nothing to read keeps its
// rate: neither says how fast the instance consumes. The writer side only reads the
// limit (ring.ts, "Limit").
import type { RingReader } from './ring.js';

/** How often the rates are sampled. */
export const SAMPLE_MS = 100;
/** The lowest limit set: below it, waking the producer costs more than queueing saves. */
export const MIN_LIMIT_BYTES = 16 << 10;
/** Weight of a new sample in the average. */
const ALPHA = 0.3;
/** Relative change below which the limit is left as it is (a store the writer would read). */
const HYSTERESIS = 0.1;

interface Input {
  reader: RingReader;
  blocked: boolean;
}

interface RateState {
  bytes: number;
  /** Bytes per ms; NaN until the first sample. */
  rate: number;
}

export class QueueLimiter {
  private readonly state = new WeakMap<RingReader, RateState>();
  private at = performance.now();

  constructor(readonly targetMs: number) {}

  /** Samples the inputs' rates if SAMPLE_MS passed, and sets each ring's limit. */
  tick(inputs: readonly Input[], now: number): void {
    const dt = now - this.at;
    if (dt < SAMPLE_MS) return;
    this.at = now;
    for (const x of inputs) {
      const r = x.reader;
      let s = this.state.get(r);
      if (s === undefined) {
        this.state.set(r, (s = { bytes: r.bytesRead, rate: NaN }));
        continue;
      }
      const read = r.bytesRead - s.bytes;
      s.bytes = r.bytesRead;
      // Nothing read while blocked or while the ring was empty says nothing of the rate.
      if (x.blocked || (read === 0 && r.used === 0)) continue;
      const sample = read / dt;
      s.rate = Number.isNaN(s.rate) ? sample : s.rate + ALPHA * (sample - s.rate);
      const want = Math.min(r.capacity, Math.max(MIN_LIMIT_BYTES, s.rate * this.targetMs));
      const cur = r.limit;
      const bound = want === r.capacity || want === MIN_LIMIT_BYTES; // reach the bounds exactly
      if (want !== cur && (bound || Math.abs(want - cur) > cur * HYSTERESIS)) r.setLimit(want);
    }
  }
}
