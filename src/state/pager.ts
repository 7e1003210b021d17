// The page space of one partition: where a page id is looked up, through the tiers.
//
//   get(id):  resident (tier 1, decoded nodes, LRU with second chance)
//          →  spilled  (tier 2, dirty pages evicted since the last flush)
//          →  in flight (handed to the I/O worker, not yet reported durable)
//          →  persistent (tier 3, newest durable version, read by this thread)
//
// A page in flight keeps no encoded copy in memory: its envelope is written straight
// into the page ring and forgotten. Until the flush is durable the page is read from
// the resident node (the same content, or newer), from the frozen node while it is not
// encoded yet, or from a spill slot — a clean page evicted while in flight is written
// to the spill file first. So a flush holds no more memory than the cache itself.
//
// A spilled page read back keeps its spill slot ("spill-backed"): the node is clean
// with respect to that slot, so if it is evicted again unchanged it goes back to the
// slot without being serialized, compressed and written again; a flush takes the slot
// as it is. A mutation marks the node dirty, and the slot is dropped the next time the
// pager looks at the page (eviction, flush, free).
//
// Invariants:
// - A page id is in at most one of resident-dirty / spilled / spill-backed. A page not
//   durable is never dropped: eviction writes it to the spill file first (or, unchanged
//   and spill-backed, leaves it in its slot).
// - Pages handed to the I/O worker stay readable (in flight) until it reports their
//   flush durable; only then may the persistent tier be the only copy.
// - Eviction happens only between operations (`evict()`), never inside one, so tree
//   code may hold node references for the duration of one operation.
import { errors, oneLine } from '../errors.js';
import { deserializeNode, freezeNode, serializeNode, shareNode, newBranch, newLeaf, type BranchNode, type LeafNode, type TreeNode } from './node.js';
import { FLAG_DELTA, PAGE_HEADER_BYTES, decodePage, encodePage, encodePageInto, isDeltaEnvelope, verifyPage } from './page-format.js';
import { DeltaLog, decodeStoredPage, deltaBound, parsing, serializeDelta, type DeltaEntries, type TakenChanges } from './page-delta.js';
import { CODEC_NONE, codecById, type PageCodec } from './codecs.js';
import type { SpillSlot, SpillStore } from './spill-file.js';
import { ResidentBytes } from './resident-bytes.js';
import type { FlushPage } from '../storage/backend.js';

/**
 * A page as stored: its newest whole version and, above it, the deltas stored since
 * (page-delta.ts), oldest first. With no whole version below its deltas (a broken
 * chain) `bytes` is the oldest delta's envelope, which the pager refuses.
 */
export interface StoredPage {
  bytes: Uint8Array;
  version: number;
  deltas?: { bytes: Uint8Array; version: number }[];
}

/** Reads the newest durable version of a page (tier 3). */
export interface PersistentPages {
  readPage(pageId: number): StoredPage | undefined;
}

/**
 * A page of a flush not yet durable: its frozen node (not encoded yet), or a spill slot
 * holding its envelope, or neither while the resident node is the only copy.
 */
interface InFlight {
  version: number;
  slot?: SpillSlot;
  node?: TreeNode;
}

export interface PagerStats {
  hits: number;
  misses: number;
  spillWrites: number;
  spillReads: number;
  persistentReads: number;
  evictions: number;
}


export class Pager {
  private readonly resident = new Map<number, TreeNode>();
  private readonly spilled = new Map<number, SpillSlot>();
  /** Resident pages read back from the spill file, unchanged since: their slot holds them (see above). */
  private readonly backing = new Map<number, SpillSlot>();
  private readonly inflight = new Map<number, InFlight>();
  private freedSinceFlush: number[] = [];
  /** Pages that are part of some tree (allocated and not freed), whatever tier holds them. */
  livePages = 0;
  /** The cacheBytes accounting; undefined without a byte budget (nothing is counted then). */
  private readonly bytes: ResidentBytes | undefined;
  /** Envelopes of uncompressed spill copies (encodeFlushBody). */
  private readonly rawCodec = codecById(CODEC_NONE)!;
  /** Changes per leaf since its last flush, and its stored delta chain (page-delta.ts). */
  readonly changes: DeltaLog;
  readonly stats: PagerStats = { hits: 0, misses: 0, spillWrites: 0, spillReads: 0, persistentReads: 0, evictions: 0 };

  constructor(
    readonly cachePages: number,
    private readonly codec: PageCodec,
    private readonly codecFor: (id: number) => PageCodec | undefined,
    private readonly spill: SpillStore,
    private readonly persistent: PersistentPages,
    public nextPageId: number,
    /** A budget for the decoded pages' memory (resident-bytes.ts), besides `cachePages`. */
    cacheBytes = Infinity,
    /** Store a leaf with few changes as a delta of its previous version (page-delta.ts): for backends that keep every version. */
    deltas?: { pageCapacity: number },
  ) {
    this.bytes = Number.isFinite(cacheBytes) ? new ResidentBytes(cacheBytes) : undefined;
    this.changes = new DeltaLog(deltas !== undefined, deltas?.pageCapacity ?? 0);
  }

  /** Estimated memory of the resident pages, when a `cacheBytes` budget is set. */
  get residentBytes(): number | undefined {
    this.settleBytes();
    return this.bytes?.total;
  }

  /** Re-measures the pages operations touched since the last call (cacheBytes only). */
  private settleBytes(): void {
    this.bytes?.settle();
  }

  get residentPages(): number {
    return this.resident.size;
  }
  get spilledPages(): number {
    return this.spilled.size;
  }
  /** Pages not durable yet: resident dirty, spilled, or spill-backed. */
  get dirtyPages(): number {
    let n = this.spilled.size + this.backing.size;
    for (const [id, node] of this.resident) if (node.dirty && !this.backing.has(id)) n++;
    return n;
  }

  /** The spill slot still holding resident page `id` unchanged, if any; a stale one is freed. */
  private backingOf(id: number, node: TreeNode): SpillSlot | undefined {
    const slot = this.backing.get(id);
    if (slot === undefined) return undefined;
    if (!node.dirty) return slot;
    this.backing.delete(id); // changed since it was read back: the slot is an old version
    this.spill.free(slot);
    return undefined;
  }

  get(id: number, table: string): TreeNode {
    const node = this.resident.get(id);
    if (node !== undefined) {
      node.ref = true;
      this.stats.hits++;
      this.bytes?.touch(node);
      return node;
    }
    this.stats.misses++;
    const loaded = this.load(id, table);
    this.resident.set(id, loaded);
    this.bytes?.touch(loaded);
    return loaded;
  }

  private load(id: number, table: string): TreeNode {
    const slot = this.spilled.get(id);
    if (slot !== undefined) {
      this.stats.spillReads++;
      const node = this.decode(id, table, this.spill.read(slot), 'spill');
      this.spilled.delete(id);
      this.backing.set(id, slot); // not durable anywhere but there: clean with respect to it
      return node;
    }
    const fl = this.inflight.get(id);
    if (fl !== undefined) {
      // Not encoded yet: a fresh copy of the frozen node (the frozen one must stay as taken).
      if (fl.node) return { ...freezeNode(fl.node), ref: true };
      if (fl.slot) return this.decode(id, table, this.spill.read(fl.slot), `${fl.version} (in flight)`);
      // Not reachable: an in-flight page leaves the cache only with a copy (evictNode).
      throw errors.corruptPage({ table, pageId: id, version: `${fl.version} (in flight)` }, 'the in-flight page has no copy left (internal error)');
    }
    let found: StoredPage | undefined;
    try {
      found = this.persistent.readPage(id);
    } catch (e) {
      // LMDB's own structures are damaged (lmdb-js throws MDB_CORRUPTED, MDB_PAGE_NOTFOUND…).
      if ((e as { code?: unknown }).code === 'TIDEPOOL_CORRUPT_PAGE') throw e;
      throw errors.corruptPage({ table, pageId: id, version: 'any' }, `storage could not read it: ${oneLine(String((e as Error)?.message ?? e))}`);
    }
    if (found === undefined) {
      throw errors.corruptPage({ table, pageId: id, version: 'any' }, 'page is referenced by the tree but missing from storage');
    }
    this.stats.persistentReads++;
    if (found.deltas === undefined && !isDeltaEnvelope(found.bytes)) {
      this.changes.loaded(id, 0, 0);
      return this.decode(id, table, found.bytes, found.version);
    }
    return this.decodeChain(id, table, found);
  }

  /** A page stored as a whole version and deltas above it: the whole one with the deltas applied. */
  private decodeChain(id: number, table: string, found: StoredPage): TreeNode {
    const { node, depth, bytes } = decodeStoredPage(id, table, found, this.codecFor);
    this.changes.loaded(id, depth, bytes);
    return node;
  }

  private decode(id: number, table: string, bytes: Uint8Array, version: number | string): TreeNode {
    const where = { table, pageId: id, version };
    const raw = decodePage(bytes, where, this.codecFor);
    return parsing(where, () => deserializeNode(id, raw));
  }

  allocLeaf(): LeafNode {
    const node = newLeaf(this.nextPageId++);
    this.changes.fresh(node.id);
    this.resident.set(node.id, node);
    this.bytes?.touch(node);
    this.livePages++;
    return node;
  }

  allocBranch(children: number[], keys: string[]): BranchNode {
    const node = newBranch(this.nextPageId++, children, keys);
    this.resident.set(node.id, node);
    this.bytes?.touch(node);
    this.livePages++;
    return node;
  }

  /** The page is no longer part of any tree; its persisted versions become garbage at the next flush. */
  free(id: number): void {
    this.livePages--;
    this.changes.freed(id);
    const node = this.resident.get(id);
    if (node !== undefined) {
      this.resident.delete(id);
      this.bytes?.removed(node);
    }
    const backed = this.backing.get(id);
    if (backed !== undefined) {
      this.backing.delete(id);
      this.spill.free(backed);
    }
    const slot = this.spilled.get(id);
    if (slot !== undefined) {
      this.spilled.delete(id);
      this.spill.free(slot);
    }
    this.freedSinceFlush.push(id);
  }

  /**
   * Brings the cache back within `cachePages` and `cacheBytes`: clean pages are
   * dropped, dirty ones spilled. If the spill file cannot take a page (a full disk),
   * that page stays resident and dirty — nothing is lost — clean pages are still
   * dropped, and the error is thrown once the pass is over.
   */
  evict(): void {
    const b = this.bytes;
    this.settleBytes();
    const over = () => this.resident.size > this.cachePages || (b !== undefined && b.over);
    if (!over()) return;
    let failure: unknown;
    // Clock over the Map's insertion order: a referenced page gets a second chance
    // (moved to the back with its bit cleared). Two passes always suffice.
    let budget = this.resident.size * 2;
    for (const [id, node] of this.resident) {
      if (!over() || budget-- === 0) break;
      if (node.ref) {
        node.ref = false;
        this.resident.delete(id);
        this.resident.set(id, node);
        continue;
      }
      if (node.dirty && failure !== undefined) continue;
      try {
        this.evictNode(node);
      } catch (e) {
        failure = e;
      }
    }
    if (failure !== undefined) throw failure;
  }

  private evictNode(node: TreeNode): void {
    const backed = this.backingOf(node.id, node);
    if (backed !== undefined) {
      // Unchanged since it was read from its slot: back to the slot, nothing written.
      this.backing.delete(node.id);
      this.spilled.set(node.id, backed);
    } else if (node.dirty) {
      const slot = this.spill.write(encodePage(serializeNode(node), this.codec));
      this.spilled.set(node.id, slot);
      this.stats.spillWrites++;
    } else if (this.inflight.size !== 0) {
      const fl = this.inflight.get(node.id);
      if (fl !== undefined && fl.node === undefined && fl.slot === undefined) {
        // The only copy of a version not durable yet (its envelope went into the ring):
        // keep it in the spill file until durable(), not in memory.
        fl.slot = this.spill.write(encodePage(serializeNode(node), this.codec));
        this.stats.spillWrites++;
      }
    }
    this.resident.delete(node.id);
    this.bytes?.removed(node);
    this.stats.evictions++;
  }

  /**
   * Takes flush `version` synchronously: every dirty page is frozen (resident ones: a
   * copy that shares the node's arrays until the tree changes them, copy-on-write, see
   * shareNode; encoded later by `encodeFlushPage`) or referenced by its
   * spill slot (spilled ones), marked clean and kept readable in flight until
   * `durable(version)`. Also returns the page ids freed since the last flush.
   * Encoding is left out of this call on purpose: it is the checkpoint's pause, and a
   * copy of pointers is an order of magnitude cheaper than writing every key and value.
   */
  snapshot(version: number): { pages: FlushPage[]; freed: number[] } {
    const pages: FlushPage[] = [];
    for (const node of this.resident.values()) {
      const backed = this.backingOf(node.id, node);
      if (backed !== undefined) {
        // Taken as its spill slot (which holds exactly this node), like a spilled page.
        this.backing.delete(node.id);
        this.inflight.set(node.id, { version, slot: backed });
        pages.push({ pageId: node.id, slot: backed });
        continue;
      }
      if (!node.dirty) continue;
      const frozen = shareNode(node, version);
      node.dirty = false;
      this.inflight.set(node.id, { version, node: frozen });
      pages.push({ pageId: node.id, node: frozen });
    }
    for (const [id, slot] of this.spilled) {
      this.inflight.set(id, { version, slot });
      pages.push({ pageId: id, slot });
    }
    this.spilled.clear();
    this.taken = this.changes.cut();
    const freed = this.freedSinceFlush;
    this.freedSinceFlush = [];
    return { pages, freed };
  }

  /** The changes of the last snapshot's pages (page-delta.ts), resolved page by page as they are encoded. */
  private taken: TakenChanges = new Map();

  /** Whether a page of the snapshot goes as a delta: decided once, at its first look here. */
  private deltaOf(page: FlushPage): DeltaEntries | undefined {
    if (page.delta === undefined) page.delta = this.changes.resolve(page.pageId, this.taken) ?? null;
    return page.delta ?? undefined;
  }

  /** Upper bound of the envelope bytes `encodeFlushPage` writes for this page. */
  flushPageBound(page: FlushPage): number {
    const delta = this.deltaOf(page);
    if (delta) return PAGE_HEADER_BYTES + deltaBound(delta);
    return page.slot ? page.slot.length : PAGE_HEADER_BYTES + page.node!.bytes;
  }

  /**
   * Writes the envelope of a page taken by `snapshot` into `alloc(n)` (n ≤
   * flushPageBound) and returns that view: a frozen node is serialized and encoded, a
   * spilled page is read from the spill file straight into it and verified by its
   * CRC-32C (a damaged spill file must fail the flush, not become the durable state;
   * nothing is decompressed for that).
   */
  encodeFlushPage(page: FlushPage, alloc: (n: number) => Uint8Array): Uint8Array {
    const { pageId } = page;
    const delta = this.deltaOf(page);
    if (delta) {
      // Only the changes go out; the page itself stays readable in flight until durable.
      const out = encodePageInto(serializeDelta(delta), this.codec, alloc, FLAG_DELTA);
      if (page.node) this.releaseFrozen(page, () => encodePage(serializeNode(page.node!), this.rawCodec));
      return out;
    }
    if (page.node) {
      const out = encodePageInto(serializeNode(page.node), this.codec, alloc);
      this.releaseFrozen(page, () => out);
      return out;
    }
    const slot = page.slot!;
    const dest = alloc(slot.length);
    const n = this.spill.readInto(slot, dest);
    verifyPage(n === dest.length ? dest : dest.subarray(0, n), { table: '(spilled page)', pageId, version: 'spill' });
    return dest;
  }

  /**
   * The page's serialized body when it is a frozen node (undefined for a spilled page,
   * which exists only as an envelope): what the codec pool compresses and wraps
   * instead of this thread (workers/io-codec-pool.ts). An upper bound of its length is
   * `flushBodyBound`.
   */
  flushBodyBound(page: FlushPage): number | undefined {
    return page.node && !this.deltaOf(page) ? page.node.bytes : undefined;
  }

  /** Writes the serialized body of a frozen node taken by `snapshot` into `alloc(n)`. */
  encodeFlushBody(page: FlushPage, alloc: (n: number) => Uint8Array): Uint8Array {
    const raw = serializeNode(page.node!);
    const out = alloc(raw.length);
    out.set(raw);
    // A spill copy, if one is needed, is stored uncompressed: compressing here is the
    // work the pool takes off this thread, and the copy lives only until durable().
    this.releaseFrozen(page, () => encodePage(out, this.rawCodec));
    return out;
  }

  /**
   * The frozen node of a page just encoded can go once another copy exists: the
   * resident node (the same content, or a newer one), a newer spilled version, or a
   * spill slot of its own holding `envelope()`.
   */
  private releaseFrozen(page: FlushPage, envelope: () => Uint8Array): void {
    const fl = this.inflight.get(page.pageId);
    if (fl === undefined || fl.node !== page.node) return;
    if (this.resident.has(page.pageId) || this.spilled.has(page.pageId)) {
      fl.node = undefined;
      return;
    }
    try {
      fl.slot = this.spill.write(envelope());
      fl.node = undefined;
      this.stats.spillWrites++;
    } catch {
      // No room in the spill file: the frozen node stays the copy (memory, not loss).
    }
  }

  /**
   * Flush `version` failed without damage (the disk was full): the pages it took are
   * dirty again and its freed ids pending again, so a later flush writes them. The
   * newest copy of each page wins: resident, then spilled, then the in-flight one.
   */
  abort(version: number, freed: number[]): void {
    const freedSince = new Set(this.freedSinceFlush);
    for (const [id, fl] of this.inflight) {
      if (fl.version !== version) continue;
      this.inflight.delete(id);
      if (!freedSince.has(id)) this.changes.failed(id); // what it took (a delta, maybe) is not stored: it goes whole
      const node = this.resident.get(id);
      const newer = node !== undefined || this.spilled.has(id) || freedSince.has(id);
      if (newer) {
        if (node) node.dirty = true;
        if (fl.slot) this.spill.free(fl.slot);
      } else if (fl.slot) {
        this.spilled.set(id, fl.slot);
      } else if (fl.node) {
        const back = { ...freezeNode(fl.node), ref: false };
        back.dirty = true;
        this.resident.set(id, back); // over the bound until the next evict() spills it
        this.bytes?.touch(back);
      } else {
        throw new Error(`internal: page ${id} of the failed flush ${version} has no copy left`);
      }
    }
    this.freedSinceFlush = freed.concat(this.freedSinceFlush);
  }

  /** The I/O worker reported `version` durable: in-flight copies are no longer needed. */
  durable(version: number): void {
    this.taken = new Map(); // every page of the snapshot was resolved when it was encoded
    for (const [id, fl] of this.inflight) {
      if (fl.version > version) continue;
      if (fl.slot) this.spill.free(fl.slot);
      this.inflight.delete(id);
      // Nothing reads the frozen copies of this flush any more: a node still sharing its
      // arrays with one owns them again, without a copy.
      const node = this.resident.get(id);
      if (node !== undefined && node.sharedVersion !== 0 && node.sharedVersion <= version) node.sharedVersion = 0;
    }
    this.spill.compact();
  }

  /** Drops every resident page (used by clear/close); dirty state must already be flushed or discarded. */
  dropAll(): void {
    this.changes.clear();
    this.resident.clear();
    this.bytes?.clear();
    for (const slot of this.backing.values()) this.spill.free(slot);
    this.backing.clear();
    for (const slot of this.spilled.values()) this.spill.free(slot);
    this.spilled.clear();
  }
}
