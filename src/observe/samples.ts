// A bounded sample of durations, for p50/p99/max in run summaries. Checkpoints are
// rare (one a second by default), so the last LIMIT samples sorted on demand cost
// nothing worth optimizing; the cap keeps a run of days from growing memory.
export interface Distribution {
  count: number;
  p50: number;
  p99: number;
  max: number;
}

const LIMIT = 10_000;

export class Samples {
  private readonly values: number[] = [];
  private next = 0;
  private total = 0;
  private maximum = 0;

  add(x: number): void {
    this.total++;
    this.maximum = Math.max(this.maximum, x);
    if (this.values.length < LIMIT) this.values.push(x);
    else {
      this.values[this.next] = x; // overwrite the oldest
      this.next = (this.next + 1) % LIMIT;
    }
  }

  /** Percentiles by the nearest-rank method, over the retained samples; max over all. */
  distribution(): Distribution {
    const sorted = [...this.values].sort((a, b) => a - b);
    const rank = (p: number) => (sorted.length ? sorted[Math.min(sorted.length - 1, Math.ceil(p * sorted.length) - 1)]! : 0);
    const r = (x: number) => Math.round(x * 100) / 100;
    return { count: this.total, p50: r(rank(0.5)), p99: r(rank(0.99)), max: r(this.maximum) };
  }
}
