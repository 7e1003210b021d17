// The state engine of one partition: named B+tree tables over one page space, and
// flushes that make them durable. The embedded store is one engine with one table;
// an operator instance of a flow owns one engine with a table per state name.
//
// A flush (a checkpoint, in a flow) is taken synchronously — dirty pages encoded or
// referenced in the spill file, table roots recorded — and written asynchronously,
// so the owning thread goes on working while the I/O worker persists it. Flushes are
// serialized: flush N+1 is taken only after flush N is durable.
import { BTree } from './btree.js';
import { Pager } from './pager.js';
import { MemorySpill, SpillFile, type SpillStore } from './spill-file.js';
import { PAGE_HEADER_BYTES } from './page-format.js';
import type { PageCodec } from './codecs.js';
import type { CommitRecord, FlushPage, StateBackend } from '../storage/backend.js';
import { join } from 'node:path';

export interface EngineOptions {
  /** Used in file names and error messages. */
  name: string;
  pageSize: number;
  cachePages: number;
  /** A budget for the decoded pages' estimated memory, besides cachePages (unset: none). */
  cacheBytes?: number;
  codec: PageCodec;
  codecFor: (id: number) => PageCodec | undefined;
  backend: StateBackend;
}

export interface FlushInfo {
  version: number;
  pages: number;
  bytes: number;
  /** Set when nothing had changed and no flush was written. */
  skipped: boolean;
}

export class StateEngine {
  readonly pager: Pager;
  private readonly tables = new Map<string, BTree>();
  private readonly spill: SpillStore;
  /** Last durable flush version. */
  version: number;
  /** Bumped by every mutation; a flush with no mutation since the last one is skipped. */
  mutations = 0;
  private flushedMutations = 0;
  private chain: Promise<unknown> = Promise.resolve();
  private failure: Error | undefined;
  readonly capacity: number;

  constructor(private readonly opts: EngineOptions) {
    const last = opts.backend.lastCommit;
    this.version = last?.version ?? 0;
    this.spill = opts.backend.spillDir ? new SpillFile(join(opts.backend.spillDir, `${opts.name}.spill`)) : new MemorySpill();
    this.capacity = opts.pageSize - PAGE_HEADER_BYTES;
    // Deltas need a backend that keeps a page's older versions (LMDB); memory keeps one.
    const deltas = opts.backend.kind === 'memory' ? undefined : { pageCapacity: this.capacity };
    this.pager = new Pager(opts.cachePages, opts.codec, opts.codecFor, this.spill, opts.backend, last?.nextPageId ?? 1, opts.cacheBytes, deltas);
    this.pager.livePages = last?.livePages ?? 0;
    if (last) {
      for (const [name, t] of Object.entries(last.tables)) {
        this.tables.set(name, new BTree(name, this.pager, t.root, t.size, this.capacity));
      }
    }
  }

  /** The persistent pages (tier 3) this engine flushes to. */
  get backend(): StateBackend {
    return this.opts.backend;
  }

  table(name: string): BTree {
    let t = this.tables.get(name);
    if (!t) {
      t = BTree.create(name, this.pager, this.capacity);
      this.tables.set(name, t);
      this.mutations++;
    }
    return t;
  }

  tableNames(): string[] {
    return [...this.tables.keys()];
  }

  /** Resolves once every mutation made before the call is durable. */
  flush(): Promise<FlushInfo> {
    const run = this.chain.then(() => this.flushNow());
    this.chain = run.catch(() => undefined);
    return run;
  }

  /** Resolves when no flush is in flight (the previous checkpoint is durable). */
  async idle(): Promise<void> {
    await this.chain;
  }

  /**
   * A checkpoint's snapshot: taken synchronously in this call — so it holds exactly
   * the mutations made before it, whatever the caller does next — and written in the
   * background. Call only when idle(); the promise resolves once it is durable.
   */
  checkpoint(): Promise<FlushInfo> {
    const run = this.flushNow();
    this.chain = run.catch(() => undefined);
    return run;
  }

  private flushNow(): Promise<FlushInfo> {
    if (this.failure) return Promise.reject(this.failure);
    if (this.mutations === this.flushedMutations) {
      return Promise.resolve({ version: this.version, pages: 0, bytes: 0, skipped: true });
    }
    return this.writeSnapshot();
  }

  /** Snapshot (synchronous, before the first await) and write of one flush. */
  private async writeSnapshot(): Promise<FlushInfo> {
    const version = this.version + 1;
    const mutations = this.mutations;
    const { pages, freed } = this.pager.snapshot(version);
    const tables: CommitRecord['tables'] = {};
    for (const [name, t] of this.tables) tables[name] = { root: t.root, size: t.size };
    const commit: CommitRecord = {
      format: 1,
      version,
      time: Date.now(),
      nextPageId: this.pager.nextPageId,
      livePages: this.pager.livePages,
      pageSize: this.opts.pageSize,
      codec: this.opts.codec.name,
      tables,
      pagesWritten: 0,
      bytesWritten: 0,
    };
    let bytes = 0;
    const encode = (p: FlushPage, alloc: (n: number) => Uint8Array): Uint8Array => {
      const b = this.pager.encodeFlushPage(p, alloc);
      bytes += b.length;
      return b;
    };
    try {
      const written = await this.opts.backend.writeFlush({
        version,
        pages,
        freed,
        read: (p) => encode(p, (n) => Buffer.allocUnsafe(n)),
        encode,
        bound: (p) => this.pager.flushPageBound(p),
        bodyBound: (p) => this.pager.flushBodyBound(p),
        body: (p, alloc) => this.pager.encodeFlushBody(p, alloc),
        commit,
      });
      if (written) bytes = written.bytes;
    } catch (e) {
      if ((e as { code?: string }).code === 'TIDEPOOL_DISK_FULL' || (e as { retryable?: boolean }).retryable === true) {
        // Nothing of this flush became durable, and the I/O worker deletes what it
        // stored before the next one: the pages are dirty again, a retry can succeed.
        // (A full disk, or a codec pool thread that failed: both reported by the I/O
        // worker for the whole flush, after it stopped putting its pages.)
        this.pager.abort(version, freed);
        throw e;
      }
      // The in-memory state is intact but its dirty marks went to a flush that failed:
      // refuse further flushes rather than persist a state with holes.
      this.failure = e as Error;
      throw e;
    }
    this.version = version;
    this.flushedMutations = mutations;
    this.pager.durable(version);
    return { version, pages: pages.length, bytes, skipped: false };
  }

  /** Flushes pending work is the caller's choice; close only releases resources. */
  async close(): Promise<void> {
    await this.chain;
    this.pager.dropAll();
    this.spill.close();
    await this.opts.backend.close();
  }
}
