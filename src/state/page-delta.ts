// Page deltas: checkpoint bytes that follow the changed entries, not the dirty pages.
//
// Under random updates most leaves are dirty at every checkpoint for a change or two
// each (at 1 GB of state and 1% of keys touched, 73% of pages), so writing dirty pages
// whole writes ~80× the changed bytes. Instead a dirty leaf whose changes are few is
// stored as a delta: the entries set or deleted since the page's previous stored
// version, in an envelope flagged FLAG_DELTA (page-format.ts), appended to LMDB's
// `deltas` database (src/storage/page-chain.ts has the layout and why). A page's stored
// form is then a chain: its newest whole version below a run of deltas. Reading a page
// takes the whole one and applies the deltas above it oldest first; the chain stays
// short because a page is written whole again once its deltas reach DELTA_CHAIN_MAX
// links or half a page of bytes.
//
// Delta layout (raw, before the codec), like a leaf's:
//   u8 kind = 2 | varint depth | varint count | count × ( varint keyLen | key | varint valLen | msgpack value )
// Keys ascend; valLen 0 is a deletion. `depth` is the delta's place in its chain (1:
// right above the whole version), so a reader detects a chain with a link missing.
//
// GC (workers/io-gc.ts) frees a page's older versions only when a whole version is
// written (a delta's versions below it are its chain); recovery, restores to an older
// checkpoint and rescales read through the same chains; remote uploads store the page
// whole (uploader.ts materializes a delta), so a remote checkpoint never holds chains.
import { ByteReader, deserializeNode, KEY_OVERHEAD, LEAF, MalformedNode, NODE_OVERHEAD, VALUE_OVERHEAD, rawStoredSize, sharedWriter, valueAt, writeValue, type LeafNode, type TreeNode } from './node.js';
import type { StoredValue } from './values.js';
import { decodePage, isDeltaEnvelope, type PageLocation } from './page-format.js';
import type { PageCodec } from './codecs.js';
import { errors } from '../errors.js';

/** A page as stored: a whole version and the deltas above it, oldest first (pager.ts StoredPage). */
interface Chain {
  bytes: Uint8Array;
  version: number;
  deltas?: { bytes: Uint8Array; version: number }[];
}

export const DELTA = 2;
/** Links a chain may have before the page is written whole again. */
export const DELTA_CHAIN_MAX = 64;

/** A deleted entry in a pending delta. */
const DELETED = Symbol('deleted');

interface Pending {
  /** The newest change of each key, with its serialized bound. */
  changes: Map<string, { v: StoredValue | typeof DELETED; size: number }>;
  /** Upper bound of the serialized changes. */
  bytes: number;
}

/**
 * A page delta taken by a snapshot: its place in the chain and the changes, as noted.
 * Sorting them is left to the encode (deltaEntries), outside the checkpoint's pause.
 */
export interface DeltaEntries {
  depth: number;
  changes: Pending['changes'];
  /** Upper bound of the serialized delta. */
  bytes: number;
}

/** A delta's entries, keys ascending; a value of undefined is a deletion. */
export function deltaEntries(d: DeltaEntries): { keys: string[]; vals: (StoredValue | undefined)[] } {
  const keys = [...d.changes.keys()].sort();
  const vals = keys.map((k) => {
    const { v } = d.changes.get(k)!;
    return v === DELETED ? undefined : v;
  });
  return { keys, vals };
}

const deletedBytes = (k: string) => k.length + KEY_OVERHEAD + 1;

/**
 * What the pager knows of each page's delta chain: the changes made to a leaf since
 * its last snapshot, and how long its stored chain is. A leaf's content changes only
 * through `set` / `delete` (noted here) or a restructuring (`rewrite`: a split, a
 * merge, a borrow), so a page with pending changes and no rewrite differs from its
 * previous stored version by exactly those changes.
 */
/** Pages' pending changes as of one snapshot (DeltaLog.cut): null where a page goes whole. */
export type TakenChanges = Map<number, Pending | null>;

export class DeltaLog {
  /** Changes per page since the last snapshot; null: the page's next write is whole. */
  private pending: TakenChanges = new Map();
  /** Deltas stored above each page's newest whole version: links and bytes. */
  private readonly chains = new Map<number, { depth: number; bytes: number }>();
  /** Chain bytes past which the page is written whole (half a page). */
  private readonly maxBytes: number;

  constructor(readonly enabled: boolean, pageCapacity: number) {
    this.maxBytes = pageCapacity / 2;
  }

  /** A page with no stored version yet (just allocated): its first write is whole. */
  fresh(id: number): void {
    if (this.enabled) this.pending.set(id, null);
  }

  /** The page's entries were rearranged (split, merge, borrow): its next write is whole. */
  rewrite(id: number): void {
    if (this.enabled) this.pending.set(id, null);
  }

  /** `size`: the entry's entryBytes (the tree has it already). */
  set(id: number, key: string, v: StoredValue, size: number): void {
    if (this.enabled) this.note(id, key, v, size);
  }

  delete(id: number, key: string): void {
    if (this.enabled) this.note(id, key, DELETED, deletedBytes(key));
  }

  private note(id: number, key: string, v: StoredValue | typeof DELETED, size: number): void {
    let p = this.pending.get(id);
    if (p === null) return;
    if (p === undefined) {
      p = { changes: new Map(), bytes: NODE_OVERHEAD + 5 };
      this.pending.set(id, p);
    }
    const old = p.changes.get(key);
    if (old === undefined) p.changes.set(key, { v, size });
    else {
      p.bytes -= old.size;
      old.v = v;
      old.size = size;
    }
    p.bytes += size;
    // Past the bound the page goes whole anyway: stop holding its changes.
    if (p.bytes + (this.chains.get(id)?.bytes ?? 0) > this.maxBytes) this.pending.set(id, null);
  }

  /** A page read from storage with `depth` deltas of `bytes` above its whole version. */
  loaded(id: number, depth: number, bytes: number): void {
    if (depth === 0) this.chains.delete(id);
    else this.chains.set(id, { depth, bytes });
  }

  /**
   * A snapshot: every page's pending changes so far, handed over in O(1) (the pause
   * does nothing per page here); changes from now on belong to the next snapshot. Each
   * page of the snapshot is then resolved, once, when it is encoded (`resolve`).
   */
  cut(): TakenChanges {
    const taken = this.pending;
    this.pending = new Map();
    return taken;
  }

  /**
   * The delta to store for page `id` of the snapshot `taken`, or undefined when it is
   * written whole; its chain becomes what is stored. Call once per page, in the flush's
   * order: flushes are serialized, so no later snapshot resolves before this one ends.
   */
  resolve(id: number, taken: TakenChanges): DeltaEntries | undefined {
    if (!this.enabled) return undefined;
    const p = taken.get(id);
    const chain = this.chains.get(id);
    if (p == null || p.changes.size === 0 || (chain?.depth ?? 0) >= DELTA_CHAIN_MAX) {
      this.chains.delete(id);
      return undefined;
    }
    const depth = (chain?.depth ?? 0) + 1;
    this.chains.set(id, { depth, bytes: (chain?.bytes ?? 0) + p.bytes });
    return { depth, changes: p.changes, bytes: p.bytes };
  }

  /** The flush that took the page failed: what it took is not stored, so the page goes whole. */
  failed(id: number): void {
    if (this.enabled) this.pending.set(id, null);
  }

  /** The page left every tree. */
  freed(id: number): void {
    this.pending.delete(id);
    this.chains.delete(id);
  }

  clear(): void {
    this.pending.clear();
    this.chains.clear();
  }
}

/** Upper bound of a serialized delta's bytes. */
export function deltaBound(d: DeltaEntries): number {
  return d.bytes + 5;
}

/** Serializes a delta; the view is reused by the next serialization (as serializeNode's). */
export function serializeDelta(d: DeltaEntries): Buffer {
  const { keys, vals } = deltaEntries(d);
  const w = sharedWriter;
  w.reset();
  w.u8(DELTA);
  w.varint(d.depth);
  w.varint(keys.length);
  for (let i = 0; i < keys.length; i++) {
    w.latin1(keys[i]!);
    const v = vals[i];
    if (v === undefined) w.varint(0);
    else writeValue(w, v);
  }
  return w.buf.subarray(0, w.pos);
}

/** A delta read back: values decoded (containers copied out of the page buffer). */
export interface ParsedDelta {
  depth: number;
  keys: string[];
  vals: (StoredValue | undefined)[];
  sizes: number[];
  /** Serialized bytes (for the chain's size). */
  bytes: number;
}

export function parseDelta(raw: Uint8Array): ParsedDelta {
  const r = new ByteReader(raw);
  if (r.u8() !== DELTA) throw new MalformedNode('a delta envelope does not hold a delta');
  const depth = r.varint();
  if (depth < 1) throw new MalformedNode(`delta depth ${depth}`);
  const count = r.varint();
  const keys = new Array<string>(count);
  const vals = new Array<StoredValue | undefined>(count);
  const sizes = new Array<number>(count);
  for (let i = 0; i < count; i++) {
    const k = r.latin1();
    if (i > 0 && !(k > keys[i - 1]!)) throw new MalformedNode('delta keys out of order');
    keys[i] = k;
    const n = r.varint();
    r.need(n);
    if (n === 0) {
      vals[i] = undefined;
      sizes[i] = 0;
      continue;
    }
    const v = valueAt(r.buf, r.pos, n);
    vals[i] = v instanceof Uint8Array ? Buffer.from(v) : v;
    sizes[i] = k.length + KEY_OVERHEAD + rawStoredSize(r.buf[r.pos]!, n) + VALUE_OVERHEAD;
    r.pos += n;
  }
  if (r.pos !== r.end) throw new MalformedNode('trailing bytes after delta');
  return { depth, keys, vals, sizes, bytes: r.end };
}

/**
 * The leaf `base` with `deltas` applied, oldest first. Entries no delta touches stay
 * undecoded in the base's page buffer (the result keeps it, with its own offsets).
 */
export function applyDeltas(base: TreeNode, deltas: ParsedDelta[]): LeafNode {
  if (base.kind !== LEAF) throw new MalformedNode('a delta above a branch page');
  // The newest change of each key wins.
  const changed = new Map<string, number>(); // key → index into flat arrays below
  const cv: (StoredValue | undefined)[] = [];
  const cs: number[] = [];
  for (const d of deltas) {
    for (let i = 0; i < d.keys.length; i++) {
      const k = d.keys[i]!;
      const at = changed.get(k);
      if (at === undefined) {
        changed.set(k, cv.length);
        cv.push(d.vals[i]);
        cs.push(d.sizes[i]!);
      } else {
        cv[at] = d.vals[i];
        cs[at] = d.sizes[i]!;
      }
    }
  }
  const ck = [...changed.keys()].sort();
  const keys: string[] = [];
  const vals: (StoredValue | undefined)[] = [];
  const sizes: number[] = [];
  const voff: number[] = [];
  let bytes = NODE_OVERHEAD;
  const push = (k: string, v: StoredValue | undefined, size: number, start: number, len: number) => {
    keys.push(k);
    vals.push(v);
    sizes.push(size);
    voff.push(start, len);
    bytes += size;
  };
  const bk = base.keys;
  let i = 0;
  for (const k of ck) {
    while (i < bk.length && bk[i]! < k) {
      push(bk[i]!, base.vals[i], base.sizes[i]!, base.voff?.[2 * i] ?? 0, base.voff?.[2 * i + 1] ?? 0);
      i++;
    }
    if (i < bk.length && bk[i] === k) i++; // replaced or deleted
    const at = changed.get(k)!;
    const v = cv[at];
    if (v !== undefined) push(k, v, cs[at]!, 0, 0);
  }
  for (; i < bk.length; i++) push(bk[i]!, base.vals[i], base.sizes[i]!, base.voff?.[2 * i] ?? 0, base.voff?.[2 * i + 1] ?? 0);
  const leaf: LeafNode = { kind: LEAF, id: base.id, keys, vals, sizes, bytes, dirty: false, ref: true, cost: 0, sharedVersion: 0 };
  if (base.raw !== undefined) {
    leaf.raw = base.raw;
    leaf.voff = voff;
  }
  return leaf;
}

/** Runs a parse, turning MalformedNode into the corrupt-page error naming `where`. */
export function parsing<T>(where: PageLocation, f: () => T): T {
  try {
    return f();
  } catch (e) {
    if (e instanceof MalformedNode) throw errors.corruptPage(where, e.message);
    throw e;
  }
}

/**
 * The node a stored page holds: its whole version with its deltas applied, every
 * envelope checked; `depth` and `bytes` describe the deltas. A chain with a link
 * missing, or with no whole version below it, is a corrupt page, never a value.
 */
export function decodeStoredPage(id: number, table: string, found: Chain, codecFor: (id: number) => PageCodec | undefined): { node: TreeNode; depth: number; bytes: number } {
  const deltas = found.deltas ?? [];
  const where = { table, pageId: id, version: found.version };
  if (isDeltaEnvelope(found.bytes)) {
    decodePage(found.bytes, where, codecFor); // a damaged envelope is reported as such
    throw errors.corruptPage(where, 'a delta with no whole version of the page below it (a version of the page is missing from storage)');
  }
  const raw = decodePage(found.bytes, where, codecFor);
  const base = parsing(where, () => deserializeNode(id, raw));
  if (deltas.length === 0) return { node: base, depth: 0, bytes: 0 };
  const parsed: ParsedDelta[] = [];
  let bytes = 0;
  for (let i = 0; i < deltas.length; i++) {
    const d = deltas[i]!;
    const at: PageLocation = { table, pageId: id, version: d.version };
    const p = parsing(at, () => parseDelta(decodePage(d.bytes, at, codecFor)));
    if (p.depth !== i + 1) {
      throw errors.corruptPage(at, `delta ${p.depth} of its chain is stored as link ${i + 1} above version ${found.version} (a version of the page is missing from storage)`);
    }
    parsed.push(p);
    bytes += p.bytes;
  }
  return { node: parsing(where, () => applyDeltas(base, parsed)), depth: parsed.length, bytes };
}
