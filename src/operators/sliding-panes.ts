// Combining the panes of sliding windows without paying size/slide merges per firing.
//
// A sliding window of size S and slide L over panes of width P fires every L and
// covers S/P panes. Merging all of them at every firing costs S/P merges per window,
// which grows with the size/slide ratio (3,600 merges per firing for an hour sliding
// by a second). This is the "two stacks" FIFO aggregation: per key, a front of suffix
// aggregates (front[i] = panes i … pivot−1 merged) and a back aggregate of the panes
// from the pivot on. A firing drops front panes that left the window and merges the
// panes that entered it into the back; the window is front[first] ⊕ back. When the
// front runs out it is rebuilt from the panes of the current window (S/P merges, once
// every S/L firings), so each pane is merged a constant number of times: O(slide/pane)
// amortized per firing, whatever the ratio.
//
// The cache is derived data: it lives in memory only, holds decoded accumulators for a
// bounded number of panes (entries evicted oldest-used first), and a key missing from
// it is rebuilt from its panes in the state engine. A record that changes a pane the
// cache already merged (allowed lateness) drops that key's entry.

/** Panes of one key between `from` (inclusive) and `to` (exclusive), oldest first, as decoded accumulators. */
export type PaneReader = (from: number, to: number) => Iterable<[start: number, acc: unknown]>;
export type Merge = (a: unknown, b: unknown) => unknown;

interface Entry {
  /** Suffix aggregates: front[i].acc = panes front[i].start … pivot − 1 merged. */
  front: { start: number; acc: unknown }[];
  /** First live index of `front`. */
  first: number;
  /** Panes in [pivot, backTo) merged (undefined: none there). */
  back: unknown;
  pivot: number;
  backTo: number;
  /** Start of the newest window asked for: an older one is merged directly. */
  lastStart: number;
  /** Accumulators this entry holds (for the cache bound). */
  size: number;
}

/** Copy of a cached accumulator before user code sees it (a merge may mutate its arguments). */
const copy = (v: unknown): unknown => (v !== null && typeof v === 'object' ? structuredClone(v) : v);

export class SlidingPaneCache {
  private readonly entries = new Map<string, Entry>();
  private held = 0;
  /** At least every entry's backTo: a change at or after it cannot concern any entry. */
  private maxBackTo = -Infinity;

  constructor(private readonly merge: Merge, private readonly maxAccumulators = 1 << 20) {}

  /**
   * The merged accumulator of the window [start, end) of key `id` (undefined: no pane
   * has data), reading panes through `read`. Windows of one key are asked in
   * increasing order; an older window (a late re-firing) is merged directly.
   */
  window(id: string, start: number, end: number, read: PaneReader): unknown {
    let e = this.entries.get(id);
    if (e !== undefined && (start < e.lastStart || end < e.backTo)) {
      return this.direct(start, end, read);
    }
    if (e !== undefined) {
      this.entries.delete(id); // re-inserted below: Map order is use order
      for (const [, acc] of read(e.backTo, end)) e.back = e.back === undefined ? acc : this.merge(e.back, acc);
      e.backTo = end;
      while (e.first < e.front.length && e.front[e.first]!.start < start) e.first++;
      if (e.first >= e.front.length || start >= e.pivot) {
        this.held -= e.size;
        e = undefined; // the front ran out: rebuild from the window's panes
      }
    }
    if (e === undefined) e = this.rebuild(start, end, read);
    e.lastStart = start;
    if (e.backTo > this.maxBackTo) this.maxBackTo = e.backTo;
    this.entries.set(id, e);
    this.evict();
    const f = e.front[e.first]?.acc;
    if (f === undefined) return copy(e.back);
    return e.back === undefined ? copy(f) : this.merge(copy(f), copy(e.back));
  }

  /** A pane of key `id` starting at `paneStart` changed: drop the entry if it already merged that pane. */
  changed(id: string, paneStart: number): void {
    if (paneStart >= this.maxBackTo) return; // the usual case: a record for the newest pane
    const e = this.entries.get(id);
    if (e !== undefined && paneStart < e.backTo) this.drop(id, e);
  }

  /** Forget key `id` (its panes were deleted). */
  forget(id: string): void {
    const e = this.entries.get(id);
    if (e !== undefined) this.drop(id, e);
  }

  get cachedAccumulators(): number {
    return this.held;
  }

  private drop(id: string, e: Entry): void {
    this.entries.delete(id);
    this.held -= e.size;
  }

  private rebuild(start: number, end: number, read: PaneReader): Entry {
    const panes = [...read(start, end)];
    const front: Entry['front'] = new Array(panes.length);
    let suffix: unknown;
    for (let i = panes.length - 1; i >= 0; i--) {
      const [s, acc] = panes[i]!;
      suffix = suffix === undefined ? acc : this.merge(acc, copy(suffix));
      front[i] = { start: s, acc: suffix };
    }
    this.held += panes.length;
    return { front, first: 0, back: undefined, pivot: end, backTo: end, lastStart: start, size: panes.length };
  }

  private direct(start: number, end: number, read: PaneReader): unknown {
    let acc: unknown;
    for (const [, v] of read(start, end)) acc = acc === undefined ? v : this.merge(acc, v);
    return acc;
  }

  private evict(): void {
    for (const [id, e] of this.entries) {
      if (this.held <= this.maxAccumulators) return;
      this.drop(id, e);
    }
  }
}
