// A bounded source over an array that can pause between phases without blocking its
// thread: `phased(items, pauses)` returns the items striped over subtasks (subtask i of
// p takes items i, i+p, …, as sources.array does), and before the item at each
// `pauses[j].at` (an index into `items`) it returns empty batches for `pauses[j].ms`
// of wall clock — so checkpoints, watermarks and processing-time timers go on while it
// waits. A pause already served (position past it) is not served again after a restore.
// `onPause(at, subtask)` is called once when a pause starts (e.g. to write a marker file).
import type { SourceSpec, SourceReader, InstanceContext } from 'tidepool';

export interface Pause {
  at: number;
  ms: number;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

class PhasedReader<T> implements SourceReader<T> {
  private taken = 0;
  private pauseUntil = 0;
  private readonly served = new Set<number>();

  constructor(private readonly items: readonly T[], private readonly pauses: readonly Pause[], private readonly ctx: InstanceContext, private readonly onPause?: (at: number, subtask: number) => void) {}

  /** The index into `items` of this subtask's k-th record. */
  private index(k: number): number {
    return this.ctx.subtask + k * this.ctx.parallelism;
  }

  async next(max: number): Promise<T[] | null> {
    if (this.pauseUntil > 0) {
      if (Date.now() < this.pauseUntil) {
        await sleep(Math.min(20, this.pauseUntil - Date.now()));
        return [];
      }
      this.pauseUntil = 0;
    }
    const out: T[] = [];
    while (out.length < Math.max(1, max)) {
      const i = this.index(this.taken);
      if (i >= this.items.length) break;
      // A pause at `at` holds the first record of this subtask at or after `at`.
      const p = this.pauses.find((x) => !this.served.has(x.at) && i >= x.at && (this.taken === 0 || this.index(this.taken - 1) < x.at));
      if (p) {
        if (out.length) break; // send what came before the pause first
        this.served.add(p.at);
        this.pauseUntil = Date.now() + p.ms;
        this.onPause?.(p.at, this.ctx.subtask);
        return [];
      }
      out.push(this.items[i]!);
      this.taken++;
    }
    return out.length ? out : null;
  }

  position(): number {
    return this.taken;
  }

  seek(position: unknown): void {
    this.taken = Number(position);
    for (const p of this.pauses) if (this.taken > 0 && this.index(this.taken - 1) >= p.at) this.served.add(p.at);
  }

  close(): void {}
}

export function phased<T>(items: readonly T[], pauses: readonly Pause[] = [], onPause?: (at: number, subtask: number) => void): SourceSpec<T> {
  return {
    kind: 'source',
    type: 'phased',
    bounded: true,
    maxParallelism: Math.max(1, items.length),
    open: (ctx) => new PhasedReader(items, pauses, ctx, onPause),
  };
}
