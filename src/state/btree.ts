// A B+tree over pages whose serialized size is bounded by the page capacity.
//
// Keys are encoded key strings (keys.ts): JS string comparison is key order, so the
// hot path compares with `<` natively. Values are StoredValues (values.ts).
//
// Shape rules:
// - Split by bytes: a node whose `bytes` exceeds `capacity` is cut into as many
//   pieces as needed (a leaf keeps at least 1 entry, a branch at least 2 children);
//   a single entry larger than a page is the only case of an oversized leaf.
// - A non-root node below `capacity / 4` bytes merges with a sibling when both fit in
//   one page, otherwise borrows entries from it.
// - A root branch with one child is replaced by that child.
// Only pages whose content changed are marked dirty: no copy-on-write cascade, since
// page versions are addressed by (page id, flush version), not by parent pointers.
// A node a flush froze shares its arrays with the frozen copy until that flush is
// durable: every change below first calls ownArrays() on each node it edits.
import { BRANCH, CHILD_BYTES, KEY_OVERHEAD, LEAF, NODE_OVERHEAD, entryBytes, leafInsert, leafMoveTail, leafRemove, leafReplace, leafValue, materializeLeaf, ownArrays, type BranchNode, type TreeNode } from './node.js';
import type { Pager } from './pager.js';
import type { StoredValue } from './values.js';


/** First index i with keys[i] >= k. */
export function lowerBound(keys: string[], k: string): number {
  let lo = 0, hi = keys.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (keys[mid]! < k) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}
/** First index i with keys[i] > k. */
export function upperBound(keys: string[], k: string): number {
  let lo = 0, hi = keys.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (keys[mid]! <= k) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** An encoded-key range; bounds are encoded key strings. */
export interface EncodedRange {
  gt?: string;
  gte?: string;
  lt?: string;
  lte?: string;
  reverse?: boolean;
  limit?: number;
}

/** Entries in a range scan's first batch (see `entries`). */
const FIRST_BATCH = 8;

const sepBytes = (k: string) => k.length + KEY_OVERHEAD + CHILD_BYTES;

/** Start indices of the pieces after the first, so each piece is ≤ cap where possible. */
function cutPoints(sizes: number[], cap: number, minPer: number): number[] {
  let total = 0;
  for (const s of sizes) total += s;
  const pieces = Math.ceil(total / cap);
  if (pieces <= 1 || sizes.length < 2 * minPer) return [];
  const target = total / pieces;
  const cuts: number[] = [];
  let acc = 0, start = 0;
  for (let i = 0; i < sizes.length; i++) {
    const s = sizes[i]!;
    if (i - start >= minPer && sizes.length - i >= minPer && (acc + s > cap || acc >= target)) {
      cuts.push(i);
      acc = 0;
      start = i;
    }
    acc += s;
  }
  return cuts;
}

export class BTree {
  /** Bumped by every structural or content change; iterators re-seek when it moves. */
  private mods = 0;

  constructor(
    readonly name: string,
    private readonly pager: Pager,
    public root: number,
    public size: number,
    private readonly capacity: number,
  ) {}

  static create(name: string, pager: Pager, capacity: number): BTree {
    return new BTree(name, pager, pager.allocLeaf().id, 0, capacity);
  }

  private node(id: number): TreeNode {
    return this.pager.get(id, this.name);
  }

  get(k: string): StoredValue | undefined {
    let n = this.node(this.root);
    while (n.kind === BRANCH) n = this.node(n.children[upperBound(n.keys, k)]!);
    const i = lowerBound(n.keys, k);
    return i < n.keys.length && n.keys[i] === k ? leafValue(n, i) : undefined;
  }

  has(k: string): boolean {
    return this.get(k) !== undefined;
  }

  /** Inserts or replaces; returns true when the key is new. */
  set(k: string, v: StoredValue): boolean {
    const path: BranchNode[] = [];
    let n = this.node(this.root);
    while (n.kind === BRANCH) {
      path.push(n);
      n = this.node(n.children[upperBound(n.keys, k)]!);
    }
    ownArrays(n);
    const i = lowerBound(n.keys, k);
    let added: boolean;
    const size = entryBytes(k, v);
    if (i < n.keys.length && n.keys[i] === k) {
      leafReplace(n, i, v, size);
      added = false;
    } else {
      leafInsert(n, i, k, v, size);
      this.size++;
      added = true;
    }
    n.dirty = true;
    this.pager.changes.set(n.id, k, v, size);
    this.mods++;
    if (n.bytes > this.capacity) {
      // Appending past the last key (ascending inserts) cuts right before the new entry,
      // leaving full pages behind instead of half-empty ones.
      if (added && i === n.keys.length - 1 && n.keys.length > 1 && n.bytes - size <= this.capacity) this.splitAt(n, path, i);
      else this.split(n, path);
    }
    return added;
  }

  /** Removes a key; returns whether it existed. */
  delete(k: string): boolean {
    const path: BranchNode[] = [];
    const idx: number[] = [];
    let n = this.node(this.root);
    while (n.kind === BRANCH) {
      const i = upperBound(n.keys, k);
      path.push(n);
      idx.push(i);
      n = this.node(n.children[i]!);
    }
    const i = lowerBound(n.keys, k);
    if (i >= n.keys.length || n.keys[i] !== k) return false;
    ownArrays(n);
    leafRemove(n, i);
    n.dirty = true;
    this.pager.changes.delete(n.id, k);
    this.size--;
    this.mods++;
    this.fixUnderflow(n, path, idx);
    return true;
  }

  /** Frees every page of the tree and starts over with an empty root. */
  clear(): void {
    const stack = [this.root];
    while (stack.length) {
      const id = stack.pop()!;
      const n = this.node(id);
      if (n.kind === BRANCH) {
        // Leaves are freed without being read; branches must be read for their children.
        // All children of a branch are of one kind: leaves are freed unread.
        if (this.node(n.children[0]!).kind === LEAF) for (const c of n.children) this.pager.free(c);
        else stack.push(...n.children);
      }
      this.pager.free(id);
    }
    this.root = this.pager.allocLeaf().id;
    this.size = 0;
    this.mods++;
  }

  // ------------------------------------------------------------------ splitting

  /** Splits leaf `n` into [0, at) and [at, end). */
  private splitAt(n: TreeNode, path: BranchNode[], at: number): void {
    if (n.kind !== LEAF) return this.split(n, path);
    ownArrays(n);
    this.pager.changes.rewrite(n.id);
    const right = this.pager.allocLeaf();
    leafMoveTail(n, right, at);
    n.bytes -= right.bytes - NODE_OVERHEAD;
    this.insertPieces(n, [n, right], [right.keys[0]!], path);
  }

  private split(n: TreeNode, path: BranchNode[]): void {
    const cap = this.capacity;
    ownArrays(n);
    const pieces: TreeNode[] = [n];
    const seps: string[] = [];
    if (n.kind === LEAF) {
      const cuts = cutPoints(n.sizes, cap - NODE_OVERHEAD, 1);
      if (cuts.length === 0) return;
      this.pager.changes.rewrite(n.id);
      for (let c = cuts.length - 1; c >= 0; c--) {
        const right = this.pager.allocLeaf();
        leafMoveTail(n, right, cuts[c]!);
        pieces.splice(1, 0, right);
        seps.unshift(right.keys[0]!);
      }
      n.bytes = NODE_OVERHEAD;
      for (let i = 0; i < n.sizes.length; i++) n.bytes += n.sizes[i]!;
    } else {
      // unit i = child i plus the separator before it
      const sizes = n.children.map((_, i) => CHILD_BYTES + (i > 0 ? n.keys[i - 1]!.length + KEY_OVERHEAD : 0));
      const cuts = cutPoints(sizes, cap - NODE_OVERHEAD, 2);
      if (cuts.length === 0) return;
      for (let c = cuts.length - 1; c >= 0; c--) {
        const at = cuts[c]!;
        const children = n.children.splice(at);
        const keys = n.keys.splice(at - 1); // keys[at-1] is promoted
        const promoted = keys.shift()!;
        const right = this.pager.allocBranch(children, keys);
        pieces.splice(1, 0, right);
        seps.unshift(promoted);
      }
      n.bytes = NODE_OVERHEAD + n.children.length * CHILD_BYTES;
      for (const k of n.keys) n.bytes += k.length + KEY_OVERHEAD;
    }
    this.insertPieces(n, pieces, seps, path);
  }

  /** Links the pieces a node was cut into (n first) into its parent, splitting upward. */
  private insertPieces(n: TreeNode, pieces: TreeNode[], seps: string[], path: BranchNode[]): void {
    const cap = this.capacity;
    n.dirty = true;
    const parent = path.pop();
    if (parent === undefined) {
      const root = this.pager.allocBranch(pieces.map((p) => p.id), seps);
      this.root = root.id;
      if (root.bytes > cap) this.split(root, path);
      return;
    }
    ownArrays(parent);
    const at = parent.children.indexOf(n.id);
    parent.children.splice(at + 1, 0, ...pieces.slice(1).map((p) => p.id));
    parent.keys.splice(at, 0, ...seps);
    for (const s of seps) parent.bytes += sepBytes(s);
    parent.dirty = true;
    if (parent.bytes > cap) this.split(parent, path);
  }

  // ------------------------------------------------------------------ merging

  private fixUnderflow(n: TreeNode, path: BranchNode[], idx: number[]): void {
    const cap = this.capacity;
    for (;;) {
      const parent = path.pop();
      if (parent === undefined) {
        // n is the root: collapse a branch root with a single child.
        if (n.kind === BRANCH && n.children.length === 1) {
          this.root = n.children[0]!;
          this.pager.free(n.id);
        }
        return;
      }
      const i = idx.pop()!;
      if (n.bytes >= cap / 4) return;
      const li = i > 0 ? i - 1 : i; // merge/borrow with the left sibling, or the right one for child 0
      if (li + 1 >= parent.children.length) return; // only child: nothing to balance with
      const left = li === i ? n : this.node(parent.children[li]!);
      const right = li === i ? this.node(parent.children[li + 1]!) : n;
      const sep = parent.keys[li]!;
      ownArrays(parent);
      ownArrays(left);
      ownArrays(right);
      if (left.kind === LEAF) materializeLeaf(left);
      if (right.kind === LEAF) materializeLeaf(right);
      const mergedBytes = left.bytes + right.bytes - NODE_OVERHEAD + (left.kind === BRANCH ? sep.length + KEY_OVERHEAD : 0);
      // An empty leaf always goes, even next to an oversized single-entry sibling.
      const empty = right.keys.length === 0 || left.keys.length === 0;
      if (mergedBytes <= cap || (empty && left.kind === LEAF)) {
        this.merge(left, right, sep);
        parent.keys.splice(li, 1);
        parent.children.splice(li + 1, 1);
        parent.bytes -= sepBytes(sep);
        parent.dirty = true;
        this.pager.free(right.id);
        n = parent; // the parent lost an entry: it may underflow (or be a one-child root)
        continue;
      }
      parent.keys[li] = this.borrow(left, right, sep);
      parent.bytes += parent.keys[li]!.length - sep.length;
      parent.dirty = true;
      // The new separator may be longer than the old one: a full parent then splits
      // (`path` still holds its ancestors).
      if (parent.bytes > cap) this.split(parent, path);
      return;
    }
  }

  private merge(left: TreeNode, right: TreeNode, sep: string): void {
    if (left.kind === LEAF && right.kind === LEAF) {
      this.pager.changes.rewrite(left.id);
      for (let i = 0; i < right.keys.length; i++) {
        left.keys.push(right.keys[i]!);
        left.vals.push(right.vals[i]!);
        left.sizes.push(right.sizes[i]!);
      }
      left.bytes += right.bytes - NODE_OVERHEAD;
    } else if (left.kind === BRANCH && right.kind === BRANCH) {
      left.keys.push(sep, ...right.keys);
      left.children.push(...right.children);
      left.bytes += right.bytes - NODE_OVERHEAD + sep.length + KEY_OVERHEAD;
    }
    left.dirty = true;
  }

  /** Moves entries from the fuller sibling to the other until balanced; returns the new separator. */
  private borrow(left: TreeNode, right: TreeNode, sep: string): string {
    left.dirty = right.dirty = true;
    if (left.kind === LEAF && right.kind === LEAF) {
      this.pager.changes.rewrite(left.id);
      this.pager.changes.rewrite(right.id);
      // Move one entry at a time while that does not invert the imbalance.
      while (right.keys.length > 1) {
        const b = right.sizes[0]!;
        if (left.bytes + b > right.bytes - b) break;
        left.keys.push(right.keys.shift()!);
        left.vals.push(right.vals.shift()!);
        left.sizes.push(right.sizes.shift()!);
        left.bytes += b;
        right.bytes -= b;
      }
      while (left.keys.length > 1) {
        const j = left.keys.length - 1;
        const b = left.sizes[j]!;
        if (right.bytes + b > left.bytes - b) break;
        right.keys.unshift(left.keys.pop()!);
        right.vals.unshift(left.vals.pop()!);
        right.sizes.unshift(left.sizes.pop()!);
        right.bytes += b;
        left.bytes -= b;
      }
      return right.keys[0]!;
    }
    if (left.kind === BRANCH && right.kind === BRANCH) {
      // Rotate children through the separator.
      while (right.children.length > 2) {
        const moved = sepBytes(sep);
        if (left.bytes + moved > right.bytes - sepBytes(right.keys[0]!)) break;
        left.keys.push(sep);
        left.children.push(right.children.shift()!);
        left.bytes += moved;
        sep = right.keys.shift()!;
        right.bytes -= sepBytes(sep);
      }
      while (left.children.length > 2) {
        const moved = sepBytes(sep);
        if (right.bytes + moved > left.bytes - sepBytes(left.keys[left.keys.length - 1]!)) break;
        right.keys.unshift(sep);
        right.children.unshift(left.children.pop()!);
        right.bytes += moved;
        sep = left.keys.pop()!;
        left.bytes -= sepBytes(sep);
      }
      return sep;
    }
    throw new Error('siblings of different kinds');
  }

  // ------------------------------------------------------------------ ranges

  /**
   * The first key k with gte ≤ k < lt, without a generator or a batch: the lookups that
   * need one key only (a window's oldest cell, a timer table's first timer) call this
   * once or more per record or firing.
   */
  firstKey(gte: string, lt: string): string | undefined {
    let key = gte;
    for (;;) {
      let n = this.node(this.root);
      let upper: string | undefined;
      while (n.kind === BRANCH) {
        const i = upperBound(n.keys, key);
        if (i < n.keys.length) upper = n.keys[i];
        n = this.node(n.children[i]!);
      }
      const j = lowerBound(n.keys, key);
      if (j < n.keys.length) {
        const k = n.keys[j]!;
        return k < lt ? k : undefined;
      }
      if (upper === undefined || upper >= lt) return undefined; // an empty leaf (only the root can be) or the last one
      key = upper;
    }
  }

  /**
   * Around `k` within [lo, hi): the last key < k, the first key ≥ k, and the first key
   * after that one — one descent when they share a leaf (the usual case), else seeks.
   * Written into `out` (reused by the caller: a window firing asks this every time).
   */
  neighbors(k: string, lo: string, hi: string, out: [string | undefined, string | undefined, string | undefined]): void {
    let n = this.node(this.root);
    while (n.kind === BRANCH) n = this.node(n.children[upperBound(n.keys, k)]!);
    const keys = n.keys;
    const j = lowerBound(keys, k);
    const before = j > 0 ? keys[j - 1]! : this.lastKeyBefore(k, lo);
    out[0] = before !== undefined && before >= lo ? before : undefined;
    const at = j < keys.length ? keys[j]! : this.firstKey(k, hi);
    out[1] = at !== undefined && at < hi ? at : undefined;
    if (out[1] === undefined) {
      out[2] = undefined;
      return;
    }
    const after = j < keys.length && j + 1 < keys.length ? keys[j + 1]! : this.firstKey(out[1] + '\x00', hi);
    out[2] = after !== undefined && after < hi ? after : undefined;
  }

  /** The last key k with gte ≤ k < lt (see firstKey). */
  lastKeyBefore(lt: string, gte: string): string | undefined {
    let key = lt;
    for (;;) {
      let n = this.node(this.root);
      let lower: string | undefined;
      while (n.kind === BRANCH) {
        const i = lowerBound(n.keys, key);
        if (i > 0) lower = n.keys[i - 1];
        n = this.node(n.children[i]!);
      }
      const j = lowerBound(n.keys, key) - 1;
      if (j >= 0) {
        const k = n.keys[j]!;
        return k >= gte ? k : undefined;
      }
      if (lower === undefined || lower < gte) return undefined;
      key = lower;
    }
  }

  /**
   * Entries in key order (or reverse) within the range. Works leaf by leaf: after
   * each leaf it seeks again from the last separator, so pages may be evicted and the
   * tree modified between two `next()` calls without breaking the iteration.
   *
   * The first batch holds at most FIRST_BATCH entries: most scans without a limit stop
   * after a few (a window's cleanup, a session lookup), and batching a whole leaf for
   * them cost O(leaf) per call, which grew with the state. A scan that goes on re-seeks
   * once and then batches whole leaves.
   */
  *entries(r: EncodedRange = {}): Generator<[string, StoredValue]> {
    let remaining = r.limit ?? Infinity;
    let chunk = FIRST_BATCH;
    if (remaining <= 0) return;
    const hasLo = r.gt !== undefined || r.gte !== undefined;
    const lo = r.gt ?? r.gte;
    const loInc = r.gt === undefined;
    const hi = r.lt ?? r.lte;
    const hiInc = r.lt === undefined;
    if (r.reverse) {
      let key = hi, inc = hiInc;
      for (;;) {
        let n = this.node(this.root);
        let lower: string | undefined;
        while (n.kind === BRANCH) {
          const i = key === undefined ? n.children.length - 1 : inc ? upperBound(n.keys, key) : lowerBound(n.keys, key);
          if (i > 0) lower = n.keys[i - 1];
          n = this.node(n.children[i]!);
        }
        let j = key === undefined ? n.keys.length - 1 : (inc ? upperBound(n.keys, key) : lowerBound(n.keys, key)) - 1;
        const batch: [string, StoredValue][] = [];
        let done = false;
        for (; j >= 0; j--) {
          const k = n.keys[j]!;
          if (hasLo && (k < lo! || (!loInc && k === lo))) { done = true; break; }
          batch.push([k, leafValue(n, j)]);
          if (--remaining === 0) { done = true; break; }
          if (batch.length === chunk) break;
        }
        const cut = !done && j > 0 && batch.length === chunk; // more of this leaf is left
        chunk = Infinity;
        const mods = this.mods;
        let b = 0;
        for (; b < batch.length; b++) {
          yield batch[b]!;
          if (this.mods !== mods) break; // changed under us: re-seek after what was yielded
        }
        if (cut && b === batch.length) {
          key = batch[b - 1]![0]; // re-seek before the last entry yielded
          inc = false;
          continue;
        }
        if (b < batch.length - 1 || (b === batch.length - 1 && this.mods !== mods && !done)) {
          remaining += batch.length - b - 1;
          key = batch[b]![0];
          inc = false;
          continue;
        }
        if (done || lower === undefined) return;
        key = lower;
        inc = false;
      }
    }
    let key = lo, inc = loInc;
    for (;;) {
      let n = this.node(this.root);
      let upper: string | undefined;
      while (n.kind === BRANCH) {
        const i = key === undefined ? 0 : upperBound(n.keys, key);
        if (i < n.keys.length) upper = n.keys[i];
        n = this.node(n.children[i]!);
      }
      let j = key === undefined ? 0 : inc ? lowerBound(n.keys, key) : upperBound(n.keys, key);
      const batch: [string, StoredValue][] = [];
      let done = false;
      for (; j < n.keys.length; j++) {
        const k = n.keys[j]!;
        if (hi !== undefined && (k > hi || (!hiInc && k === hi))) { done = true; break; }
        batch.push([k, leafValue(n, j)]);
        if (--remaining === 0) { done = true; break; }
        if (batch.length === chunk) { j++; break; }
      }
      const cut = !done && j < n.keys.length && batch.length === chunk; // more of this leaf is left
      chunk = Infinity;
      const mods = this.mods;
      let b = 0;
      for (; b < batch.length; b++) {
        yield batch[b]!;
        if (this.mods !== mods) break; // changed under us: re-seek after what was yielded
      }
      if (cut && b === batch.length) {
        key = batch[b - 1]![0]; // re-seek after the last entry yielded
        inc = false;
        continue;
      }
      if (b < batch.length) {
        // Interrupted by a change: the rest of this batch may be stale.
        if (done && b === batch.length - 1) return;
        remaining += batch.length - b - 1;
        key = batch[b]![0];
        inc = false;
        continue;
      }
      if (done || upper === undefined) return;
      key = upper;
      inc = true;
    }
  }
}
