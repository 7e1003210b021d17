// Read-only access to one state partition as of a given flush version — what a
// rescaled operator instance reads its key groups from when it takes over state that
// other (old) instances wrote. No I/O worker, no writes, no spill file. `CommitTables`
// is the part that reads the trees; `tidepool inspect` uses it inside its own read
// transaction.
import type { Database, RootDatabase } from 'lmdb';
import { lmdb } from './lmdb-lib.js';
import { errors } from '../errors.js';
import { BTree } from '../state/btree.js';
import { Pager, type StoredPage } from '../state/pager.js';
import { openPageDbs, readPageChain, type PageDbs } from './page-chain.js';
import { MemorySpill } from '../state/spill-file.js';
import type { PageCodec } from '../state/codecs.js';
import { COMMITS_DB, envOptions } from './io-protocol.js';
import { decodeCommit } from './commit-record.js';
import { backLmdbMap, checkNamedDbs } from './lmdb-file.js';
import type { CommitRecord } from './backend.js';

/**
 * The tables of one flush, read page by page through `readPage` (the newest stored
 * version of a page that is ≤ the flush's) into a cache of `cachePages` pages.
 */
export class CommitTables {
  private readonly pager: Pager;

  constructor(readonly commit: CommitRecord, readPage: (pageId: number) => StoredPage | undefined, codec: PageCodec, codecFor: (id: number) => PageCodec | undefined, cachePages: number) {
    this.pager = new Pager(cachePages, codec, codecFor, new MemorySpill(), { readPage }, commit.nextPageId);
  }

  tableNames(): string[] {
    return Object.keys(this.commit.tables);
  }

  table(name: string): BTree {
    const t = this.commit.tables[name]!;
    return new BTree(name, this.pager, t.root, t.size, this.commit.pageSize);
  }

  /** Keeps the read cache within its bound while a caller iterates. */
  evict(): void {
    this.pager.evict();
  }

  dropAll(): void {
    this.pager.dropAll();
  }
}

export class SnapshotReader {
  private readonly root: RootDatabase;
  private readonly dbs: PageDbs;
  readonly commit: CommitRecord;
  private readonly tables: CommitTables;

  /**
   * `readMissing`: where pages not found locally come from (a lazily restored directory:
   * the owning thread's backend fetches them from remote storage, see LmdbBackend.readVersioned).
   */
  constructor(
    dir: string, readonly stateId: string, readonly version: number, codec: PageCodec, codecFor: (id: number) => PageCodec | undefined, cachePages: number,
    readMissing?: (pageId: number) => StoredPage | undefined,
  ) {
    backLmdbMap(dir);
    this.root = lmdb().open(envOptions(dir, false)); // callers await loadLmdb() first
    checkNamedDbs(dir, this.root); // or openDB below would create them empty
    this.dbs = openPageDbs(this.root);
    const commits = this.root.openDB<Buffer, [string, number]>({ name: COMMITS_DB, encoding: 'binary', keyEncoding: 'ordered-binary' });
    let c: CommitRecord | undefined;
    try {
      const stored = commits.get([stateId, version]);
      c = stored === undefined ? undefined : decodeCommit(stored, stateId, version, dir);
    } catch (e) {
      void this.root.close();
      throw e;
    }
    if (!c) {
      void this.root.close();
      throw errors.input(`state '${stateId}'`, `flush ${version} named by the checkpoint is missing (collected or never written)`);
    }
    this.commit = c;
    const s = stateId;
    this.tables = new CommitTables(c, (pageId: number) => readPageChain(this.dbs, s, pageId, version) ?? readMissing?.(pageId), codec, codecFor, cachePages);
  }

  tableNames(): string[] {
    return this.tables.tableNames();
  }

  table(name: string): BTree {
    return this.tables.table(name);
  }

  /** Keeps the read cache within its bound while a caller iterates. */
  evict(): void {
    this.tables.evict();
  }

  async close(): Promise<void> {
    this.tables.dropAll();
    await this.root.close();
  }
}
