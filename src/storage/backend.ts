// What a page space needs from persistent storage (tier 3), whatever the medium.
//
// Storage rules (CONTRIBUTING.md lists them; the test that checks each is named):
// 1. One writer per state id: a page space is opened by one thread of one process
//    (the lock in lock.ts enforces it across processes). test/store-lock.test.ts
// 2. A page is written at most once per flush version. test/store-model.test.ts ("rule 2")
// 3. A flush is complete iff its commit record is durable; writeFlush resolves only
//    then. test/store-crash.test.ts (SIGKILLs), test/store-disk-full.test.ts
// 4. Readers see, for each page, the newest version ≤ the last complete flush (its newest
//    whole version and the deltas above it, page-chain.ts); pages of
//    an unfinished flush are never visible and are deleted before the next flush
//    writes. test/store-crash.test.ts (cleanup after every kill), test/store-disk-full.test.ts
// 5. After flush N is complete, versions that no retained flush needs are deleted (a
//    delta's chain is needed: only a whole version makes older ones garbage).
//    test/store-crash.test.ts ("GC: nothing grows")
// 6. Pages and commit records carry checksums; a mismatch is an error, never a value.
//    test/page-format.test.ts, test/store-corruption.test.ts, test/store-corruption-fuzz.test.ts
import type { PersistentPages } from '../state/pager.js';
import type { SpillSlot } from '../state/spill-file.js';
import type { TreeNode } from '../state/node.js';
import type { DeltaEntries } from '../state/page-delta.js';

export type StorageKind = 'lmdb' | 'temp' | 'memory';

export interface TableRoot {
  root: number;
  size: number;
}

/** Written last in a flush; a flush exists iff its commit record does. */
export interface CommitRecord {
  format: 1;
  version: number;
  time: number;
  nextPageId: number;
  /** Pages in the trees of this flush (for metrics; absent in older records). */
  livePages?: number;
  pageSize: number;
  codec: string;
  tables: Record<string, TableRoot>;
  /** Pages written by this flush (for GC of their older versions and for inspection). */
  pagesWritten: number;
  bytesWritten: number;
  /** Filled in by the I/O worker: pages written and freed by this flush, for GC replay. */
  gcWritten?: number[];
  gcFreed?: number[];
  /** Filled in by the I/O worker: pages this flush stored as deltas (checked at attach). */
  gcDeltas?: number[];
  /** CRC-32C of the rest (commit-record.ts); absent in records written before checks. */
  check?: number;
}

/**
 * One page of a flush: a slot of the spill file, or a frozen copy of a resident node
 * (encoded when the backend asks for it). Backends only use `pageId` and the batch's
 * `read` / `encode` / `bound`.
 */
export interface FlushPage {
  pageId: number;
  slot?: SpillSlot;
  node?: TreeNode;
  /**
   * Set by the pager when it first looks at the page for encoding: the delta of its
   * previous version it is stored as (page-delta.ts), or null for the whole page.
   */
  delta?: DeltaEntries | null;
}

/**
 * A flush, taken synchronously by the page space (so it is one consistent tree) and
 * written asynchronously by the backend. `read` returns a page's envelope bytes.
 */
export interface FlushBatch {
  version: number;
  pages: FlushPage[];
  freed: number[];
  read(page: FlushPage): Uint8Array;
  /**
   * Writes the page's envelope into `alloc(n)` (memory the backend owns: a reserved
   * slot of the page ring) and returns the view written; n ≤ bound(page).
   */
  encode(page: FlushPage, alloc: (n: number) => Uint8Array): Uint8Array;
  bound(page: FlushPage): number;
  /**
   * For a backend that compresses elsewhere (the I/O worker's codec pool): an upper
   * bound of the page's serialized body, or undefined if the page exists only as an
   * envelope (a spilled page: `encode` it).
   */
  bodyBound(page: FlushPage): number | undefined;
  /** Writes the page's serialized body (no envelope) into `alloc(n)`; only when bodyBound is defined. */
  body(page: FlushPage, alloc: (n: number) => Uint8Array): Uint8Array;
  /** The commit record; the backend fills in pagesWritten and bytesWritten. */
  commit: CommitRecord;
}

export interface StateBackend extends PersistentPages {
  readonly kind: StorageKind;
  /** The newest complete flush when the backend was opened, if any. */
  readonly lastCommit: CommitRecord | undefined;
  /** Directory for the spill file, or undefined for an in-memory spill. */
  readonly spillDir: string | undefined;
  /**
   * Writes the batch; resolves when its commit record is durable (rule 3), with the
   * envelope bytes stored when they were counted elsewhere (pages compressed in the pool).
   */
  writeFlush(batch: FlushBatch): Promise<{ bytes: number } | void>;
  close(): Promise<void>;
}
