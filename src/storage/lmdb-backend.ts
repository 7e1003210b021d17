// `lmdb` and `temp` storage, seen from the owning thread.
//
// Writes go through the page ring to the I/O worker (the only LMDB writer); reads of
// pages missing from the cache go straight to LMDB through this thread's own handle
// (memory-mapped, no copy until the codec). A reader asks for the newest version of a
// page not newer than the last durable flush, so pages of a flush in progress — or
// of one cut off by a crash — are never seen.
import { mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import type { Database, RootDatabase } from 'lmdb';
import { loadLmdb } from './lmdb-lib.js';
import { errors } from '../errors.js';
import { packr } from '../state/values.js';
import { COMMITS_DB, FRAME_BODY, FRAME_COMMIT, FRAME_FREE, FRAME_HEADER, FRAME_PAGE, envOptions, frameHeader, type AttachRequest } from './io-protocol.js';
import { IoClient, type IoAttachment } from './io-client.js';
import type { CommitRecord, FlushBatch, StateBackend } from './backend.js';
import type { StoredPage } from '../state/pager.js';
import { openPageDbs, readPageChain, type PageDbs } from './page-chain.js';
import { checkNamedDbs } from './lmdb-file.js';

export interface LmdbBackendOptions {
  kind: 'lmdb' | 'temp';
  /** The LMDB environment directory. */
  dir: string;
  stateId: string;
  retain: number;
  ringBytes?: number;
  /** The directory was restored lazily from remote storage: a page missing locally is fetched. */
  lazyRemote?: boolean;
  /** temp only: remove the directory on close (default true; a flow's coordinator removes it instead). */
  removeOnClose?: boolean;
  /**
   * Pages are compressed in the I/O worker's codec pool: this thread sends their bodies
   * (BODY frames). open() attaches with it; an attachment made elsewhere must have been.
   */
  codecPool?: AttachRequest['codecPool'];
}

const FREE_BATCH = 4096;
/** A PAGE frame's bytes before the envelope: frame header, then the f64 page id. */
const PAGE_FRAME = FRAME_HEADER + 8;
const PUBLISH_BYTES = 256 << 10;

export class LmdbBackend implements StateBackend {
  readonly kind: 'lmdb' | 'temp';
  readonly spillDir: string;
  private readVersion: number;
  private closed = false;
  private scratch = new Uint8Array(0);

  private constructor(
    private readonly opts: LmdbBackendOptions,
    private readonly io: IoAttachment,
    private readonly root: RootDatabase,
    private readonly dbs: PageDbs,
  ) {
    this.kind = opts.kind;
    this.spillDir = opts.dir;
    this.readVersion = io.lastCommit?.version ?? 0;
  }

  static async open(opts: LmdbBackendOptions): Promise<LmdbBackend> {
    if (opts.kind === 'temp') rmSync(opts.dir, { recursive: true, force: true });
    mkdirSync(opts.dir, { recursive: true });
    // Attach first: the I/O worker creates the environment and removes the pages of
    // a flush cut off by a crash before this thread reads anything.
    const io = await IoClient.shared().attach({
      stateId: opts.stateId, dir: opts.dir, noSync: opts.kind === 'temp', retain: opts.retain, ringBytes: opts.ringBytes ?? 8 << 20,
      codecPool: opts.codecPool,
    });
    return LmdbBackend.withAttachment(opts, io);
  }

  /** A backend over an attachment made elsewhere (an operator worker's state). */
  static async withAttachment(opts: LmdbBackendOptions, io: IoAttachment): Promise<LmdbBackend> {
    try {
      const { open } = await loadLmdb();
      const root = open(envOptions(opts.dir, opts.kind === 'temp'));
      checkNamedDbs(opts.dir, root); // the I/O worker checked at attach; this handle must not create them either
      const dbs = openPageDbs(root);
      root.openDB({ name: COMMITS_DB, encoding: 'msgpack', keyEncoding: 'ordered-binary' });
      return new LmdbBackend(opts, io, root, dbs);
    } catch (e) {
      await io.detach();
      throw errors.io(`cannot open LMDB environment in ${opts.dir}`, e);
    }
  }

  /** A reused buffer for the frames that cannot be reserved in the ring. */
  private scratchFor(n: number): Uint8Array {
    if (this.scratch.length < n) this.scratch = new Uint8Array(Math.max(n, 2 * this.scratch.length));
    return this.scratch.subarray(0, n);
  }

  get lastCommit(): CommitRecord | undefined {
    return this.io.lastCommit;
  }

  readPage(pageId: number): StoredPage | undefined {
    return this.readVersioned(this.opts.stateId, pageId, this.readVersion);
  }

  /**
   * The newest stored version ≤ `version` of a page of `stateId` (this partition, or an
   * old one a rescale reads). In a lazily restored directory a page not copied in yet
   * is fetched from remote storage first.
   */
  readVersioned(stateId: string, pageId: number, version: number): StoredPage | undefined {
    const found = this.lookup(stateId, pageId, version);
    if (found || !this.opts.lazyRemote) return found;
    const fetched = this.io.fetchPageSync(stateId, pageId);
    if (fetched && fetched.version <= version) return fetched;
    this.root.resetReadTxn(); // see the I/O worker's write now
    return this.lookup(stateId, pageId, version);
  }

  private lookup(s: string, pageId: number, version: number): StoredPage | undefined {
    return readPageChain(this.dbs, s, pageId, version);
  }

  async writeFlush(batch: FlushBatch): Promise<{ bytes: number }> {
    if (this.io.failure) throw this.io.failure;
    const { version } = batch;
    const w = this.io.writer;
    const pooled = this.opts.codecPool !== undefined;
    let unpublished = 0;
    for (const page of batch.pages) {
      // Each page is written straight into a reserved slot of the page ring: no buffer
      // of its own, no frame copy. Waiting for room first (only when the ring is full)
      // keeps the encode synchronous; a frame that cannot go in as one contiguous
      // record (the ring's end, an oversized page) goes through a reused scratch buffer.
      // With the codec pool a frozen page goes as its serialized body (BODY), and the
      // I/O worker has it compressed and wrapped; a spilled page is an envelope already.
      const bodyBound = pooled ? batch.bodyBound(page) : undefined;
      const asBody = bodyBound !== undefined;
      await w.roomFor(PAGE_FRAME + (bodyBound ?? batch.bound(page)));
      if (this.io.failure) throw this.io.failure;
      let frame!: Uint8Array;
      let reserved = false;
      const alloc = (n: number): Uint8Array => {
        const slot = w.tryReserve(PAGE_FRAME + n);
        reserved = slot !== null;
        frame = slot ?? this.scratchFor(PAGE_FRAME + n);
        return frame.subarray(PAGE_FRAME, PAGE_FRAME + n);
      };
      try {
        if (asBody) batch.body(page, alloc);
        else batch.encode(page, alloc);
      } catch (e) {
        if (reserved) w.cancelReserved();
        throw e;
      }
      frameHeader(frame, asBody ? FRAME_BODY : FRAME_PAGE, version).setFloat64(FRAME_HEADER, page.pageId, true);
      if (reserved) {
        // Publish about every 256 KiB rather than per page: the I/O worker drains
        // faster than pages are encoded, so it parks often, and each wake-up is a syscall.
        unpublished += frame.length;
        const publish = unpublished >= PUBLISH_BYTES;
        w.commitReserved(publish);
        if (publish) unpublished = 0;
      } else await w.writeAsync(frame);
    }
    w.publish();
    for (let i = 0; i < batch.freed.length; i += FREE_BATCH) {
      const ids = batch.freed.slice(i, i + FREE_BATCH);
      const frame = new Uint8Array(FRAME_HEADER + 8 * ids.length);
      const dv = frameHeader(frame, FRAME_FREE, version);
      ids.forEach((id, j) => dv.setFloat64(FRAME_HEADER + 8 * j, id, true));
      await w.writeAsync(frame);
    }
    // bytesWritten: the I/O worker counts what it stored (pooled pages are compressed there).
    const record: CommitRecord = { ...batch.commit, pagesWritten: batch.pages.length, bytesWritten: 0 };
    const body = packr.pack(record);
    const frame = new Uint8Array(FRAME_HEADER + body.length);
    frameHeader(frame, FRAME_COMMIT, version);
    frame.set(body, FRAME_HEADER);
    const durable = this.io.whenDurable(version);
    await w.writeAsync(frame);
    const bytes = await durable;
    this.readVersion = version;
    this.root.resetReadTxn(); // see the I/O worker's commit now, not at the next event turn
    return { bytes };
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.io.detach();
    await this.root.close();
    if (this.kind === 'temp' && this.opts.removeOnClose !== false) rmSync(this.opts.dir, { recursive: true, force: true });
  }
}

export function tempDirFor(path: string, name: string): string {
  return join(path, `${name}.temp`);
}
