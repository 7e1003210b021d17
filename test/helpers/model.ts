// Shared pieces of the property tests: arbitraries for keys and values, a Map model
// kept in key order, and a walker that checks the B+tree's structural invariants.
import fc from 'fast-check';
import { compareKeys, encodeKey, type Key } from '../../src/state/keys.js';
import type { Store } from '../../src/store.js';
import { BRANCH, LEAF, entryBytes, leafValue, type TreeNode } from '../../src/state/node.js';
import type { StateEngine } from '../../src/state/engine.js';
import type { KeyRange } from '../../src/store.js';

/** A small universe so that overwrites, deletes and merges actually happen. */
export const keyArb: fc.Arbitrary<Key> = fc.oneof(
  fc.integer({ min: 0, max: 400 }).map((i) => `k${i}`),
  fc.integer({ min: -200, max: 200 }),
  fc.tuple(fc.constantFrom('a', 'b', 'c'), fc.integer({ min: 0, max: 60 })),
  fc.tuple(fc.constantFrom('a', 'b'), fc.integer({ min: 0, max: 5 }), fc.constantFrom('x', 'y\u0000z', '\u00e9')),
  fc.constantFrom(true, false, 10n ** 20n, -3n, new Uint8Array([0, 1, 255]), ''),
);

export const valueArb: fc.Arbitrary<unknown> = fc.oneof(
  fc.integer(),
  fc.string({ maxLength: 40 }),
  fc.constant(null),
  fc.boolean(),
  fc.bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n }),
  fc.record({ n: fc.integer(), s: fc.string({ maxLength: 60 }), tags: fc.array(fc.string({ maxLength: 5 }), { maxLength: 4 }) }),
  fc.array(fc.integer(), { maxLength: 30 }),
  fc.string({ minLength: 100, maxLength: 300 }), // large enough that tiny pages split often
);

export type Op =
  | { op: 'set'; key: Key; value: unknown }
  | { op: 'delete'; key: Key }
  | { op: 'get'; key: Key }
  | { op: 'clear' }
  | { op: 'flush' };

export const setArb: fc.Arbitrary<Op> = fc.record({ op: fc.constant('set' as const), key: keyArb, value: valueArb });
export const deleteArb: fc.Arbitrary<Op> = fc.record({ op: fc.constant('delete' as const), key: keyArb });

export const opArb: fc.Arbitrary<Op> = fc.oneof(
  { weight: 200, arbitrary: fc.record({ op: fc.constant('set' as const), key: keyArb, value: valueArb }) },
  { weight: 100, arbitrary: fc.record({ op: fc.constant('delete' as const), key: keyArb }) },
  { weight: 60, arbitrary: fc.record({ op: fc.constant('get' as const), key: keyArb }) },
  { weight: 20, arbitrary: fc.record({ op: fc.constant('flush' as const) }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('clear' as const) }) },
);

export const rangeArb: fc.Arbitrary<KeyRange> = fc.record(
  {
    gt: keyArb, gte: keyArb, lt: keyArb, lte: keyArb,
    reverse: fc.boolean(),
    limit: fc.integer({ min: 0, max: 50 }),
    prefix: fc.constantFrom<Key[]>(['a'], ['b'], ['a', 3], ['c']),
  },
  { requiredKeys: [] },
).map((r) => {
  // At most one lower and one upper bound, as a caller would pass them.
  if (r.gt !== undefined && r.gte !== undefined) delete r.gte;
  if (r.lt !== undefined && r.lte !== undefined) delete r.lte;
  return r;
});

/** A model of the store: a Map from encoded key to [key, value]. */
export class Model {
  readonly m = new Map<string, [Key, unknown]>();
  set(k: Key, v: unknown): void {
    this.m.set(encodeKey(k, Infinity), [k, v]);
  }
  delete(k: Key): boolean {
    return this.m.delete(encodeKey(k, Infinity));
  }
  get(k: Key): unknown {
    return this.m.get(encodeKey(k, Infinity))?.[1];
  }
  clear(): void {
    this.m.clear();
  }
  sorted(): [Key, unknown][] {
    return [...this.m.values()].sort((a, b) => compareKeys(a[0], b[0]));
  }
  range(r: KeyRange): [Key, unknown][] {
    let out = this.sorted().filter(([k]) => {
      if (r.gt !== undefined && compareKeys(k, r.gt) <= 0) return false;
      if (r.gte !== undefined && compareKeys(k, r.gte) < 0) return false;
      if (r.lt !== undefined && compareKeys(k, r.lt) >= 0) return false;
      if (r.lte !== undefined && compareKeys(k, r.lte) > 0) return false;
      if (r.prefix !== undefined) {
        if (!Array.isArray(k) || k.length < r.prefix.length) return false;
        for (let i = 0; i < r.prefix.length; i++) if (compareKeys(k[i] as Key, r.prefix[i]!) !== 0) return false;
      }
      return true;
    });
    if (r.reverse) out = out.reverse();
    if (r.limit !== undefined) out = out.slice(0, r.limit);
    return out;
  }
}

/** Values as comparable plain data (byte arrays as arrays, since msgpack returns Buffers). */
export function plain(v: unknown): unknown {
  if (v instanceof Uint8Array) return { bytes: [...v] };
  if (Array.isArray(v)) return v.map(plain);
  if (typeof v === 'bigint') return { bigint: v.toString() };
  if (v && typeof v === 'object' && !(v instanceof Date)) {
    return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, plain(x)]));
  }
  return v;
}

export function engineOf(store: Store): StateEngine {
  return (store as unknown as { engine: StateEngine }).engine;
}

/**
 * Walks the whole tree and checks: keys strictly ascending; every key within the
 * separators above it; `bytes` equal to a recomputation and ≤ capacity unless a leaf
 * holds a single entry; all leaves at one depth; the entry count equal to `size`.
 * Returns a list of violations (empty when the tree is sound).
 */
export function checkTree(engine: StateEngine, table: string): string[] {
  const tree = engine.table(table);
  const problems: string[] = [];
  let leafDepth = -1;
  let count = 0;
  const visit = (id: number, lo: string | undefined, hi: string | undefined, depth: number, isRoot: boolean) => {
    const n: TreeNode = engine.pager.get(id, table);
    for (let i = 1; i < n.keys.length; i++) if (!(n.keys[i - 1]! < n.keys[i]!)) problems.push(`page ${id}: keys out of order at ${i}`);
    for (const k of n.keys) {
      if (lo !== undefined && k < lo) problems.push(`page ${id}: key below its separator`);
      if (hi !== undefined && k >= hi) problems.push(`page ${id}: key at or above its separator`);
    }
    if (n.kind === LEAF) {
      let bytes = 6;
      n.keys.forEach((k, i) => {
        const size = entryBytes(k, leafValue(n, i));
        if (n.sizes[i] !== size) problems.push(`leaf ${id}: entry ${i} sized ${n.sizes[i]} but takes ${size}`);
        bytes += size;
      });
      if (n.sizes.length !== n.keys.length) problems.push(`leaf ${id}: ${n.sizes.length} sizes for ${n.keys.length} keys`);
      if (bytes !== n.bytes) problems.push(`leaf ${id}: bytes ${n.bytes} but entries add up to ${bytes}`);
      if (n.bytes > engine.capacity && n.keys.length > 1) problems.push(`leaf ${id}: ${n.bytes} bytes over capacity ${engine.capacity}`);
      if (leafDepth === -1) leafDepth = depth;
      else if (leafDepth !== depth) problems.push(`leaf ${id} at depth ${depth}, others at ${leafDepth}`);
      count += n.keys.length;
      return;
    }
    if (n.kind !== BRANCH) return;
    if (n.children.length !== n.keys.length + 1) problems.push(`branch ${id}: ${n.children.length} children for ${n.keys.length} keys`);
    if (!isRoot && n.children.length < 2) problems.push(`branch ${id}: fewer than 2 children`);
    if (n.bytes > engine.capacity) problems.push(`branch ${id}: over capacity`);
    const children = [...n.children];
    const keys = [...n.keys];
    children.forEach((c, i) => visit(c, i === 0 ? lo : keys[i - 1], i < keys.length ? keys[i] : hi, depth + 1, false));
  };
  visit(tree.root, undefined, undefined, 0, true);
  if (count !== tree.size) problems.push(`size ${tree.size} but ${count} entries`);
  engine.pager.evict();
  return problems;
}
