// B+tree nodes in memory and their serialized (raw, pre-codec) form.
//
//   leaf:    keys[i] ↦ vals[i], keys strictly ascending (JS string order = key order)
//   branch:  children[0] keys[0] children[1] keys[1] … children[n]
//            every key k in children[i] satisfies keys[i-1] <= k < keys[i]
//
// `bytes` is always an upper bound of the node's serialized raw size, kept up to date
// by every mutation, so the tree can split by bytes without serializing.
//
// Raw layout (little endian; one page = page-format header + codec(raw)):
//   u8 kind (0 leaf, 1 branch) | varint count
//   leaf:   count × ( varint keyLen | key bytes | varint valLen | msgpack value )
//   branch: f64 child0 | (count-1) × ( varint keyLen | key bytes | f64 child )
import { packr, storedSize, type StoredValue } from './values.js';

export const LEAF = 0;
export const BRANCH = 1;

/** Fixed part of a serialized node: kind byte + count varint (≤ 5 bytes). */
export const NODE_OVERHEAD = 6;
/** Bytes a separator/key costs beyond its own bytes (its varint length prefix). */
export const KEY_OVERHEAD = 3;
/** Bytes a leaf value costs beyond storedSize (its varint length prefix). */
export const VALUE_OVERHEAD = 4;
/** Bytes a child pointer costs. */
export const CHILD_BYTES = 8;

interface NodeBase {
  id: number;
  keys: string[];
  bytes: number;
  /** Modified since the last flush handed it to the I/O worker. */
  dirty: boolean;
  /** Second-chance bit of the page cache's clock. */
  ref: boolean;
  /** Memory counted for it by the cacheBytes budget (resident-bytes.ts); -1 once it left the cache. */
  cost: number;
  /**
   * Non-zero: the flush of this version froze the node by sharing its arrays
   * (shareNode), and they must be copied before they change (ownArrays) until that
   * flush is durable. 0: the arrays are the node's own.
   */
  sharedVersion: number;
}
export interface LeafNode extends NodeBase {
  kind: typeof LEAF;
  /**
   * Values; a hole (undefined) is a value not yet decoded from `raw`. A leaf read from
   * disk decodes only its keys: a point read then decodes one value, not ~100. A set or
   * delete keeps the others where they are (`voff` moves with the keys), and
   * serializing writes an unchanged value's bytes as they were read, without decoding
   * or re-encoding it: a random write through a small cache reads a page back, changes
   * one entry and spills it again. Merges and borrows between leaves materialize both.
   */
  vals: (StoredValue | undefined)[];
  /**
   * entryBytes() of each entry, kept beside keys and vals: a split, a merge or a
   * replaced value reads the sizes instead of measuring scattered value strings again
   * (that was most of a random insert's time at 1M keys).
   */
  sizes: number[];
  raw?: Buffer;
  /**
   * With `raw`: [start, length] of each entry's msgpack bytes in it, two numbers per
   * entry in step with `keys`; length 0 for a value set since the page was read (it is
   * in `vals`). Invariant: vals[i] !== undefined || voff[2i+1] > 0.
   */
  voff?: number[];
}
export interface BranchNode extends NodeBase {
  kind: typeof BRANCH;
  children: number[];
}
export type TreeNode = LeafNode | BranchNode;

/** The bytes one leaf entry adds to `bytes` (the same formula on every path). */
export function entryBytes(key: string, v: StoredValue): number {
  return key.length + KEY_OVERHEAD + storedSize(v) + VALUE_OVERHEAD;
}

export function newLeaf(id: number): LeafNode {
  return { kind: LEAF, id, keys: [], vals: [], sizes: [], bytes: NODE_OVERHEAD, dirty: true, ref: true, cost: 0, sharedVersion: 0 };
}
export function newBranch(id: number, children: number[], keys: string[]): BranchNode {
  let bytes = NODE_OVERHEAD + children.length * CHILD_BYTES;
  for (const k of keys) bytes += k.length + KEY_OVERHEAD;
  return { kind: BRANCH, id, keys, children, bytes, dirty: true, ref: true, cost: 0, sharedVersion: 0 };
}

/** A clean, unreferenced copy of a node's fields, with its arrays copied or shared. */
function nodeCopy(node: TreeNode, copyArrays: boolean): TreeNode {
  const arr = <T>(a: T[]): T[] => (copyArrays ? a.slice() : a);
  if (node.kind === LEAF) {
    const copy: LeafNode = { kind: LEAF, id: node.id, keys: arr(node.keys), vals: arr(node.vals), sizes: arr(node.sizes), bytes: node.bytes, dirty: false, ref: false, cost: 0, sharedVersion: 0 };
    if (node.raw !== undefined) {
      copy.raw = node.raw;
      copy.voff = arr(node.voff!);
    }
    return copy;
  }
  return { kind: BRANCH, id: node.id, keys: arr(node.keys), children: arr(node.children), bytes: node.bytes, dirty: false, ref: false, cost: 0, sharedVersion: 0 };
}

/**
 * A copy of a node that later mutations of `node` cannot reach: its own key, value and
 * child arrays (keys and stored values are immutable, so sharing them is safe; a lazy
 * leaf shares its read-only page buffer). Used to make a frozen page resident again.
 */
export function freezeNode(node: TreeNode): TreeNode {
  return nodeCopy(node, true);
}

/**
 * The snapshot of a node for flush `version`, taken copy-on-write: the copy shares the
 * node's arrays and the node is marked, so the tree copies them before its next change
 * (ownArrays) — or never, if the flush is durable first. A checkpoint's pause is this
 * call per dirty page: at 1M keys (~3,900 dirty pages per checkpoint) copying every
 * page's arrays here, as freezeNode does, took 16–26 ms of the pause, most of it the
 * garbage collector moving the copies.
 */
export function shareNode(node: TreeNode, version: number): TreeNode {
  node.sharedVersion = version;
  return nodeCopy(node, false);
}

/** Makes a node's arrays its own before they change (see shareNode). */
export function ownArrays(node: TreeNode): void {
  if (node.sharedVersion === 0) return;
  node.sharedVersion = 0;
  node.keys = node.keys.slice();
  if (node.kind === LEAF) {
    node.vals = node.vals.slice();
    node.sizes = node.sizes.slice();
    if (node.voff !== undefined) node.voff = node.voff.slice();
  } else {
    node.children = node.children.slice();
  }
}

// ---------------------------------------------------------------- serialization

/** A growable byte writer reused across serializations (pages are built one at a time). */
export class Writer {
  buf = Buffer.allocUnsafe(1 << 16);
  pos = 0;
  reset(): void {
    this.pos = 0;
  }
  ensure(n: number): void {
    if (this.pos + n <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < this.pos + n) size *= 2;
    const next = Buffer.allocUnsafe(size);
    this.buf.copy(next, 0, 0, this.pos);
    this.buf = next;
  }
  u8(v: number): void {
    this.ensure(1);
    this.buf[this.pos++] = v;
  }
  varint(v: number): void {
    this.ensure(5);
    while (v >= 0x80) {
      this.buf[this.pos++] = (v & 0x7f) | 0x80;
      v >>>= 7;
    }
    this.buf[this.pos++] = v;
  }
  f64(v: number): void {
    this.ensure(8);
    this.buf.writeDoubleLE(v, this.pos);
    this.pos += 8;
  }
  latin1(s: string): void {
    const n = s.length;
    this.ensure(n + 5);
    const b = this.buf;
    let pos = this.pos;
    if (n < 0x80) b[pos++] = n;
    else {
      this.varint(n);
      pos = this.pos;
    }
    // Keys are short (a page holds ~100 of them): a loop beats the native call, whose
    // cost per call was most of a page's serialization at 1M keys.
    if (n <= LATIN1_LOOP_MAX) {
      for (let i = 0; i < n; i++) b[pos + i] = s.charCodeAt(i);
      this.pos = pos + n;
    } else {
      this.pos = pos + (b as LatinBuffer).latin1Write(s, pos, n);
    }
  }
  f64be(v: number): void {
    this.ensure(8);
    this.buf.writeDoubleBE(v, this.pos);
    this.pos += 8;
  }
  /**
   * varint(total msgpack length) + msgpack str header + UTF-8 bytes, without an
   * intermediate buffer and without a pass to count the bytes first: the string is
   * written where headers sized for its length (its byte count if it is ASCII) put it,
   * and moved in the rare case its byte count needs longer headers.
   */
  msgpackString(s: string): void {
    const len = s.length;
    this.ensure(10 + 3 * len);
    const b = this.buf as LatinBuffer;
    const start = this.pos;
    const hdr0 = strHeaderBytes(len);
    const pre0 = varintBytes(hdr0 + len);
    const at = start + pre0 + hdr0;
    const n = b.utf8Write(s, at, b.length - at);
    const hdr = strHeaderBytes(n);
    const pre = varintBytes(hdr + n);
    if (hdr !== hdr0 || pre !== pre0) b.copyWithin(start + pre + hdr, at, at + n);
    this.varint(hdr + n);
    if (hdr === 1) b[this.pos++] = 0xa0 | n;
    else if (hdr === 2) {
      b[this.pos++] = 0xd9;
      b[this.pos++] = n;
    } else if (hdr === 3) {
      b[this.pos++] = 0xda;
      b.writeUInt16BE(n, this.pos);
      this.pos += 2;
    } else {
      b[this.pos++] = 0xdb;
      b.writeUInt32BE(n, this.pos);
      this.pos += 4;
    }
    this.pos += n;
  }
  /** A value's bytes copied from a page buffer: varint length, then buf[start, start + len). */
  slice(buf: Buffer, start: number, len: number): void {
    this.varint(len);
    this.ensure(len);
    buf.copy(this.buf, this.pos, start, start + len);
    this.pos += len;
  }
  bytes(b: Uint8Array): void {
    this.varint(b.length);
    this.ensure(b.length);
    this.buf.set(b, this.pos);
    this.pos += b.length;
  }
}
/** Longest key written by a JS loop rather than Buffer.latin1Write (see Writer.latin1). */
const LATIN1_LOOP_MAX = 64;
/** The writer every serialization uses (one page at a time; page-delta.ts too). */
export const sharedWriter = new Writer();

/** A leaf value as stored: varint length, then its msgpack bytes. */
export function writeValue(w: Writer, v: StoredValue): void {
  if (v instanceof Uint8Array) w.bytes(v);
  else if (typeof v === 'string') w.msgpackString(v);
  else if (typeof v === 'number') {
    w.varint(9);
    w.u8(0xcb);
    w.f64be(v);
  } else if (v === null) {
    w.varint(1);
    w.u8(0xc0);
  } else if (typeof v === 'boolean') {
    w.varint(1);
    w.u8(v ? 0xc3 : 0xc2);
  } else w.bytes(packr.pack(v));
}

/**
 * Serializes a node to raw bytes. Returns a view of a buffer reused by the next call:
 * consume it (encodePage copies or compresses it) before serializing another node.
 */
export function serializeNode(node: TreeNode): Buffer {
  const w = sharedWriter;
  w.reset();
  w.u8(node.kind);
  if (node.kind === LEAF) {
    const { keys, vals, raw, voff } = node;
    w.varint(keys.length);
    for (let i = 0; i < keys.length; i++) {
      w.latin1(keys[i]!);
      const len = voff === undefined ? 0 : voff[2 * i + 1]!;
      // Unchanged since read: its bytes as they are (they decode to the same value).
      if (len > 0) w.slice(raw!, voff![2 * i]!, len);
      else writeValue(w, vals[i]!);
    }
  } else {
    const { keys, children } = node;
    w.varint(children.length);
    w.f64(children[0]!);
    for (let i = 0; i < keys.length; i++) {
      w.latin1(keys[i]!);
      w.f64(children[i + 1]!);
    }
  }
  return w.buf.subarray(0, w.pos);
}

/** Thrown (and turned into a corrupt-page error by the caller) when raw bytes do not parse. */
export class MalformedNode extends Error {}

/** msgpack first bytes of containers/bin/ext: such values stay packed in memory. */
function staysPacked(first: number): boolean {
  return (first >= 0x80 && first <= 0x9f) || (first >= 0xc4 && first <= 0xc9) ||
    (first >= 0xd4 && first <= 0xd8) || (first >= 0xdc && first <= 0xdf);
}

/**
 * storedSize() of the value these msgpack bytes decode to, computed from the bytes
 * alone, so a leaf's `bytes` is right without decoding its values.
 */
export function rawStoredSize(first: number, n: number): number {
  if (staysPacked(first)) return n + 5;
  if (first >= 0xa0 && first <= 0xbf) return n - 1 + 5; // fixstr
  if (first === 0xd9) return n - 2 + 5; // str8
  if (first === 0xda) return n - 3 + 5; // str16
  if (first === 0xdb) return n - 5 + 5; // str32
  if (first === 0xc0 || first === 0xc2 || first === 0xc3) return 1; // nil, false, true
  return 9; // ints, floats, int64 bigints
}

/** Decodes one value of a leaf read from disk (and keeps it). */
export function leafValue(n: LeafNode, i: number): StoredValue {
  let v = n.vals[i];
  if (v !== undefined) return v;
  v = valueAt(n.raw!, n.voff![2 * i]!, n.voff![2 * i + 1]!);
  n.vals[i] = v;
  return v;
}

/** The value whose msgpack bytes are raw[start, start + len): containers stay packed (a view). */
export function valueAt(raw: Buffer, start: number, len: number): StoredValue {
  return staysPacked(raw[start]!) ? raw.subarray(start, start + len) : (packr.unpack(raw.subarray(start, start + len)) as StoredValue);
}

/** Replaces entry i's value (its key stays). */
export function leafReplace(n: LeafNode, i: number, v: StoredValue, size: number): void {
  n.bytes += size - n.sizes[i]!;
  n.vals[i] = v;
  n.sizes[i] = size;
  if (n.voff !== undefined) n.voff[2 * i + 1] = 0;
}

/** Inserts an entry at i. */
export function leafInsert(n: LeafNode, i: number, k: string, v: StoredValue, size: number): void {
  if (i === n.keys.length) {
    // Appends (ascending keys, a window's newest cell) skip splice, which costs several
    // ns per element moved in a leaf of hundreds.
    n.keys.push(k);
    n.vals.push(v);
    n.sizes.push(size);
    n.voff?.push(0, 0);
  } else {
    n.keys.splice(i, 0, k);
    n.vals.splice(i, 0, v);
    n.sizes.splice(i, 0, size);
    n.voff?.splice(2 * i, 0, 0, 0);
  }
  n.bytes += size;
}

/** Removes entry i. */
export function leafRemove(n: LeafNode, i: number): void {
  n.bytes -= n.sizes[i]!;
  if (i === 0) {
    // Deleting the oldest entry (expired cells and timers) is the common case: shift
    // trims the array in place where splice moves every element.
    n.keys.shift();
    n.vals.shift();
    n.sizes.shift();
    if (n.voff !== undefined) {
      n.voff.shift();
      n.voff.shift();
    }
  } else if (i === n.keys.length - 1) {
    n.keys.pop();
    n.vals.pop();
    n.sizes.pop();
    if (n.voff !== undefined) n.voff.length -= 2;
  } else {
    n.keys.splice(i, 1);
    n.vals.splice(i, 1);
    n.sizes.splice(i, 1);
    n.voff?.splice(2 * i, 2);
  }
}

/**
 * Moves entries [at, end) of leaf `n` to the empty leaf `right` (a split); values still
 * in n's page buffer stay there, now shared by both leaves.
 */
export function leafMoveTail(n: LeafNode, right: LeafNode, at: number): void {
  right.keys = n.keys.splice(at);
  right.vals = n.vals.splice(at);
  right.sizes = n.sizes.splice(at);
  if (n.raw !== undefined) {
    right.raw = n.raw;
    right.voff = n.voff!.splice(2 * at);
  }
  for (let i = 0; i < right.sizes.length; i++) right.bytes += right.sizes[i]!;
}

/** Decodes every value and lets go of the page buffer (before a merge or borrow moves values between leaves). */
export function materializeLeaf(n: LeafNode): void {
  if (n.raw === undefined) return;
  const raw = n.raw;
  for (let i = 0; i < n.keys.length; i++) {
    const v = n.vals[i] ?? leafValue(n, i);
    // Copy bytes out of the page buffer, so a value moved to another leaf does not
    // keep this whole page alive.
    if (v instanceof Uint8Array && v.buffer === raw.buffer) n.vals[i] = Buffer.from(v);
  }
  n.raw = undefined;
  n.voff = undefined;
}

/** Node's Buffer has these fast paths (undocumented in @types/node, stable since v0.x). */
type LatinBuffer = Buffer & {
  latin1Slice(start: number, end: number): string;
  latin1Write(s: string, offset: number, length: number): number;
  utf8Write(s: string, offset: number, length: number): number;
};

/** Bytes of a msgpack str header for a UTF-8 length of n. */
const strHeaderBytes = (n: number) => (n < 32 ? 1 : n < 256 ? 2 : n < 65536 ? 3 : 5);
/** Bytes of our varint for n. */
const varintBytes = (n: number) => (n < 0x80 ? 1 : n < 0x4000 ? 2 : n < 0x200000 ? 3 : n < 0x10000000 ? 4 : 5);

/** Reads serialized nodes (and deltas, page-delta.ts); throws MalformedNode past the end. */
export class ByteReader {
  readonly buf: Buffer;
  pos = 0;
  constructor(raw: Uint8Array) {
    this.buf = Buffer.isBuffer(raw) ? raw : Buffer.from(raw.buffer, raw.byteOffset, raw.byteLength);
  }
  get end(): number {
    return this.buf.length;
  }
  need(n: number): void {
    if (this.pos + n > this.buf.length) throw new MalformedNode(`node truncated at byte ${this.pos}`);
  }
  u8(): number {
    this.need(1);
    return this.buf[this.pos++]!;
  }
  varint(): number {
    let v = 0, shift = 0, b: number;
    do {
      b = this.u8();
      v += (b & 0x7f) * 2 ** shift;
      shift += 7;
    } while (b & 0x80 && shift < 35);
    return v;
  }
  latin1(): string {
    const n = this.varint();
    this.need(n);
    const s = (this.buf as LatinBuffer).latin1Slice(this.pos, this.pos + n); // toString() adds checks per call
    this.pos += n;
    return s;
  }
  f64(): number {
    this.need(8);
    const v = this.buf.readDoubleLE(this.pos);
    this.pos += 8;
    return v;
  }
}

export function deserializeNode(id: number, raw: Uint8Array): TreeNode {
  const r = new ByteReader(raw);
  const buf = r.buf;
  const end = r.end;
  const kind = r.u8();
  const count = r.varint();
  if (kind === LEAF) {
    const keys = new Array<string>(count);
    const voff = new Array<number>(count * 2);
    const sizes = new Array<number>(count);
    let bytes = NODE_OVERHEAD;
    for (let i = 0; i < count; i++) {
      const k = r.latin1();
      const n = r.varint();
      r.need(n);
      if (n === 0) throw new MalformedNode('empty value');
      keys[i] = k;
      voff[2 * i] = r.pos;
      voff[2 * i + 1] = n;
      const size = k.length + KEY_OVERHEAD + rawStoredSize(buf[r.pos]!, n) + VALUE_OVERHEAD;
      sizes[i] = size;
      bytes += size;
      r.pos += n;
    }
    if (r.pos !== end) throw new MalformedNode('trailing bytes after leaf');
    const vals = new Array<StoredValue | undefined>(count);
    return { kind: LEAF, id, keys, vals, sizes, bytes, dirty: false, ref: true, cost: 0, sharedVersion: 0, raw: buf, voff };
  }
  if (kind === BRANCH) {
    if (count < 1) throw new MalformedNode('branch without children');
    const children = new Array<number>(count);
    const keys = new Array<string>(count - 1);
    children[0] = r.f64();
    for (let i = 1; i < count; i++) {
      keys[i - 1] = r.latin1();
      children[i] = r.f64();
    }
    if (r.pos !== end) throw new MalformedNode('trailing bytes after branch');
    const node = newBranch(id, children, keys);
    node.dirty = false;
    return node;
  }
  throw new MalformedNode(`unknown node kind ${kind}`);
}
