// `mapAsync(name, fn, { concurrency, ordered })`: at most `concurrency` calls in flight
// per subtask. Ordered mode emits results in input order (a finished call waits for
// the ones before it); unordered emits each as it finishes. The task drains every call
// before it forwards a barrier or a watermark, so a checkpoint never covers a record
// whose result is still to come, and results stay ahead of the watermarks after them.
//
// Bounds: in flight ≤ concurrency, and in ordered mode also finished-but-waiting
// results + in flight ≤ concurrency (a slow head call must not let the queue behind it
// grow without limit: that memory is what backpressure promises to bound).
// Results are emitted from promise callbacks, so an error thrown downstream of them
// (a chained step's user code) is caught here and becomes the stage's failure, which
// the task throws: never an unhandled rejection.
import type { LogicalOperator } from '../flow/types.js';
import { userError, type Emit, type StepEnv } from './keyed.js';

interface Slot {
  done: boolean;
  skip?: boolean;
  value: unknown;
  ts: number;
}

export class AsyncStage {
  private inflight = 0;
  private readonly queue: Slot[] = [];
  private waiters: (() => void)[] = [];
  /** The first call that failed (the task fails with it). */
  failure: Error | undefined;
  private readonly concurrency: number;
  private readonly ordered: boolean;

  constructor(private readonly op: LogicalOperator, private readonly env: StepEnv, private readonly next: Emit) {
    this.concurrency = op.options?.concurrency ?? 64;
    this.ordered = op.options?.ordered ?? true;
  }

  get full(): boolean {
    return (this.ordered ? this.queue.length : this.inflight) >= this.concurrency;
  }

  get pending(): number {
    return this.inflight;
  }

  push(record: unknown, ts: number): void {
    if (this.failure) return; // the task fails with it; start no more calls
    const slot: Slot = { done: false, value: undefined, ts };
    if (this.ordered) this.queue.push(slot);
    this.inflight++;
    let p: Promise<unknown>;
    try {
      p = Promise.resolve((this.op.fn as (r: unknown) => unknown)(record));
    } catch (e) {
      p = Promise.reject(e);
    }
    p.then(
      (v) => {
        slot.done = true;
        slot.value = v;
        this.inflight--;
        try {
          if (this.failure) return; // results after a failure are never emitted
          if (this.ordered) this.release();
          else this.next(v, ts);
        } catch (e) {
          this.failure ??= e instanceof Error ? e : userError(this.op, this.env, record, e);
        } finally {
          this.wake();
        }
      },
      (e: unknown) => {
        this.inflight--;
        try {
          if (this.failure) return;
          if (this.env.recordFailed?.(this.op, record, e)) {
            // Skipped or dead-lettered: its slot emits nothing.
            slot.done = true;
            slot.skip = true;
            if (this.ordered) this.release(); // the results it held back go now
          } else this.failure = userError(this.op, this.env, record, e);
        } catch (err) {
          this.failure ??= err instanceof Error ? err : userError(this.op, this.env, record, err);
        } finally {
          this.wake();
        }
      },
    );
  }

  private release(): void {
    while (this.queue.length && this.queue[0]!.done) {
      const s = this.queue.shift()!;
      if (!s.skip) this.next(s.value, s.ts);
    }
  }

  private wake(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }

  /** Resolves at the next completion of a call. */
  progress(): Promise<void> {
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  /** Waits until fewer than `concurrency` calls are in flight. */
  async waitSlot(): Promise<void> {
    while (this.full && !this.failure) await this.progress();
  }

  /** Waits until every call has finished (and, ordered, been emitted). */
  async drain(): Promise<void> {
    while (this.inflight > 0 && !this.failure) await this.progress();
    if (this.failure) throw this.failure;
  }
}
