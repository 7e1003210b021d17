// The memory of the page cache's decoded pages, for the `cacheBytes` budget.
//
// A page's cost is an estimate of what its decoded node holds on the heap: its
// serialized size (`bytes`, which the tree keeps up to date), plus per entry ENTRY_COST
// (key string, array slots, the decoded value's object) — or, for a leaf read from
// storage whose values are still undecoded, the raw page buffer it keeps plus KEY_COST
// per entry. Measured on 400k keys (heapUsed + external after a full GC against Σ of
// this estimate): from −38% to +32% for string, number and object values, fresh or
// read back (perf/RESULTS.md, "cacheBytes").
//
// Costs are settled between operations, not inside them: every page the tree reaches
// during an operation (pager.get or alloc) is noted, and `settle()` re-measures just
// those — the tree holds node references for one operation only, so a node changes
// only while it is noted. So the bookkeeping is a few pages per operation, not a pass
// over the cache; each page carries the cost counted for it (`TreeNode.cost`).
import { LEAF, type TreeNode } from './node.js';

/** Heap bytes per leaf entry beyond its serialized bytes (key string, array slots, value object). */
export const ENTRY_COST = 120;
/** The same for a key alone (a branch's separators, a leaf whose values are still in its raw buffer). */
export const KEY_COST = 40;

export function pageCost(node: TreeNode): number {
  if (node.kind === LEAF && node.raw !== undefined) return node.bytes + node.raw.length + node.keys.length * KEY_COST;
  return node.bytes + node.keys.length * (node.kind === LEAF ? ENTRY_COST : KEY_COST);
}

export class ResidentBytes {
  /** Σ of the settled cost of every resident page. */
  total = 0;
  private touched: TreeNode[] = [];

  constructor(readonly budget: number) {}

  /** A resident page was reached by an operation (it may change before settle()). */
  touch(node: TreeNode): void {
    const t = this.touched;
    if (t.length === 0 || t[t.length - 1] !== node) t.push(node); // a root reached twice in a row counts once
  }

  /** Re-measures the pages touched since the last call. */
  settle(): void {
    const t = this.touched;
    if (t.length === 0) return;
    this.touched = [];
    for (let i = 0; i < t.length; i++) {
      const node = t[i]!;
      if (node.cost < 0) continue; // it left the cache meanwhile (removed() took it off)
      const now = pageCost(node);
      this.total += now - node.cost;
      node.cost = now;
    }
  }

  /** A page left the cache (evicted, freed, dropped). */
  removed(node: TreeNode): void {
    if (node.cost > 0) this.total -= node.cost;
    node.cost = -1;
  }

  clear(): void {
    this.total = 0;
    this.touched = [];
  }

  get over(): boolean {
    return this.total > this.budget;
  }
}
