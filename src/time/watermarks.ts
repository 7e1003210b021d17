// A source subtask's watermark: the largest timestamp it has emitted minus
// maxOutOfOrdernessMs (Flink's bounded-out-of-orderness strategy), and its idleness.
//
//   records:   t=5 t=3 t=9 t=7            maxOutOfOrdernessMs = 2
//   watermark:  3   3   7   7             (max seen − 2; never moves back)
//
// It is emitted in-band after each batch that moved it, and as Infinity at end of
// input. A subtask that had no records for idleMs says so in-band (an idle frame), so
// downstream operators leave it out of their minimum until it emits again. The largest
// timestamp is part of the checkpoint: a restored subtask starts from it, so windows a
// checkpointed watermark closed stay closed.
import { errors, preview } from '../errors.js';

export class SourceWatermarks {
  /** Largest event time emitted so far (−Infinity: none). */
  maxTimestamp: number;
  /** The last watermark sent downstream. */
  private sent = -Infinity;
  private lastRecordAt = performance.now();
  private idle = false;

  constructor(
    private readonly operator: string,
    private readonly subtask: number,
    private readonly eventTime: (r: never) => number,
    private readonly outOfOrdernessMs: number,
    private readonly idleMs: number | undefined,
    restoredMaxTimestamp?: number,
  ) {
    this.maxTimestamp = restoredMaxTimestamp ?? -Infinity;
  }

  /** The record's event time, checked: a finite number of ms. */
  timestamp(record: unknown): number {
    let t: unknown;
    try {
      t = this.eventTime(record as never);
    } catch (e) {
      throw errors.userCode(this.operator, this.subtask, record, e);
    }
    if (typeof t !== 'number' || !Number.isFinite(t)) {
      // A number as itself: JSON (preview) would show NaN and Infinity as null.
      const got = typeof t === 'number' ? String(t) : preview(t, 40);
      throw errors.userCode(this.operator, this.subtask, record, new TypeError(`eventTime returned ${got}, expected a finite number of epoch ms`));
    }
    if (t > this.maxTimestamp) this.maxTimestamp = t;
    return t;
  }

  /** A batch of records was emitted (or none, when `count` is 0). */
  observed(count: number): void {
    if (count > 0) {
      this.lastRecordAt = performance.now();
      this.idle = false;
    }
  }

  /** The watermark to send now, if it moved since the last one sent. */
  advance(): number | undefined {
    const wm = this.maxTimestamp - this.outOfOrdernessMs;
    if (wm > this.sent) {
      this.sent = wm;
      return wm;
    }
    return undefined;
  }

  /** True once, when the subtask has had no records for idleMs. */
  becameIdle(): boolean {
    if (this.idle || this.idleMs === undefined) return false;
    if (performance.now() - this.lastRecordAt < this.idleMs) return false;
    this.idle = true;
    return true;
  }

  /** End of input: every window closes. */
  finish(): number {
    this.sent = Infinity;
    return Infinity;
  }
}
