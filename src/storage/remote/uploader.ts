// Uploads each completed checkpoint to remote storage, incrementally, off the record
// path: it runs on the coordinator's event loop (records go worker to worker), reads the
// local LMDB environment through one read transaction per upload, and sends packs of
// at most PACK_BYTES one after the other, so its memory stays bounded by a pack.
//
// Per state partition it keeps a chain: a full upload (every page's newest version at
// that flush) followed by increments (the page versions written since the previous
// upload). After MAX_INCREMENTS increments the next upload is full again, so older
// objects stop being needed and the remote space stays bounded; a checkpoint names
// every object of its chains, and objects no retained checkpoint names are deleted.
//
// Upload order makes torn uploads harmless: packs first, then the checkpoint object
// with a conditional create. Only the newest waiting checkpoint is uploaded (one that
// was overtaken while waiting is skipped); a failed upload is retried with backoff.
import { randomBytes } from 'node:crypto';
import type { Database, RootDatabase, Transaction } from 'lmdb';
import { lmdb, loadLmdb } from '../lmdb-lib.js';
import { backLmdbMap, checkNamedDbs } from '../lmdb-file.js';
import { COMMITS_DB, envOptions } from '../io-protocol.js';
import { prepareBuiltinCodecs } from '../../state/codecs.js';
import { headsOf, openPageDbs, wholePageAt, type PageDbs } from '../page-chain.js';
import { listManifests, readManifest, type Manifest } from '../../runtime/checkpoints.js';
import type { ObjectStore } from './object-store.js';
import {
  CHECKPOINTS, STATE, checkpointIdOf, checkpointName, decodeCheckpoint, encodeCheckpoint, PackWriter,
  type Pack, type PackRange, type RemoteCheckpoint, type RemoteState,
} from './packs.js';

/** lmdb-js takes read options here too; its types say otherwise. The bytes are valid until the next read. */
type FastReads = { getBinaryFast(key: [string, number, number], options: { transaction: Transaction }): Uint8Array | undefined };

/** Packs are cut at this many page bytes: few large objects, bounded memory. */
const PACK_BYTES = 8 << 20;
/** Pack uploads at once per partition. */
const PUTS_IN_FLIGHT = 2;
/** Increments after a full upload before the next full one. */
const MAX_INCREMENTS = 8;
const MAX_BACKOFF_MS = 30_000;

export interface RemoteStats {
  /** Checkpoints uploaded by this run. */
  uploaded: number;
  /** The newest checkpoint that exists remotely (this run's or restored). */
  lastUploaded: number | undefined;
  bytesUploaded: number;
  /** How long the newest local checkpoint has waited for its upload (0: none waiting). */
  lagMs: number;
  failures: number;
  lastError?: string;
}

export class CheckpointUploader {
  private chains = new Map<string, RemoteState>();
  private readonly known = new Map<number, RemoteCheckpoint>();
  private waiting: number | undefined;
  private waitingSince: number | undefined;
  private running: Promise<void> | undefined;
  /** An upload of checkpoint.remoteRequired in progress (close waits for it). */
  private direct: Promise<unknown> | undefined;
  private retryTimer: NodeJS.Timeout | undefined;
  private backoff = 500;
  private root: RootDatabase | undefined;
  private closed = false;
  /** settle() in progress: a remoteRequired upload stops retrying. */
  private cancelled = false;
  /** Names of this run's packs differ from any earlier run's, even for the same version. */
  private readonly run = randomBytes(4).toString('hex');
  private readonly counts = { uploaded: 0, bytesUploaded: 0, failures: 0, lastUploaded: undefined as number | undefined, lastError: undefined as string | undefined };

  constructor(
    private readonly store: ObjectStore,
    private readonly prefix: string,
    private readonly stateDir: string,
    private readonly retain: number,
    private readonly warn: (line: string) => void,
  ) {}

  /**
   * While a lazy restore is copying in pages of partition `stateId`: a promise for the
   * end of the copy (set by the run); undefined once they are all local.
   */
  restoring: { pending(stateId: string): boolean; done(): Promise<void> } | undefined;

  /** Remote checkpoint ids, ascending. */
  async remoteIds(): Promise<number[]> {
    const ids: number[] = [];
    for (const o of await this.store.list(this.prefix + CHECKPOINTS)) {
      const id = checkpointIdOf(o.name);
      if (id !== undefined) ids.push(id);
    }
    return ids.sort((a, b) => a - b);
  }

  private async checkpoint(id: number): Promise<RemoteCheckpoint | undefined> {
    const cached = this.known.get(id);
    if (cached) return cached;
    const name = this.prefix + checkpointName(id);
    const bytes = await this.store.get(name);
    if (!bytes) return undefined;
    const c = decodeCheckpoint(bytes, `${this.store.where}, ${name}`);
    this.known.set(id, c);
    return c;
  }

  /**
   * Before each attempt of the run: the local state restores checkpoint `restored`
   * (undefined: a fresh start). Remote checkpoints newer than it belong to a future the
   * local directory gave up (--from-checkpoint went back, or a remoteRequired upload
   * finished after its attempt failed; their ids and flush versions will be reused), so
   * they go; the chains continue from the remote copy of `restored` when there is one.
   */
  async init(restored: Manifest | undefined): Promise<void> {
    const ids = await this.remoteIds();
    for (const id of ids.filter((x) => restored === undefined || x > restored.id)) await this.store.delete(this.prefix + checkpointName(id));
    for (const id of [...this.known.keys()]) if (restored === undefined || id > restored.id) this.known.delete(id);
    this.chains = new Map();
    if (restored === undefined) return;
    const c = ids.includes(restored.id) ? await this.checkpoint(restored.id) : undefined;
    // `restored` is the manifest as read from disk, checksum included.
    if (c && c.manifest.crc === (restored as Manifest & { crc?: number }).crc) {
      this.chains = new Map(Object.entries(c.states));
      this.counts.lastUploaded = restored.id;
    }
  }

  /** Checkpoint `id` completed locally: upload it (or a newer one) soon. */
  enqueue(id: number): void {
    if (this.closed) return;
    if (this.waiting === undefined) this.waitingSince = performance.now();
    this.waiting = Math.max(this.waiting ?? id, id);
    this.kick();
  }

  private kick(): void {
    if (this.running || this.retryTimer || this.waiting === undefined) return;
    const id = this.waiting;
    this.waiting = undefined;
    const since = this.waitingSince;
    this.running = this.upload(id).then(
      () => {
        this.backoff = 500;
        if (this.waiting === undefined) this.waitingSince = undefined; // else: since that one was enqueued
      },
      (e: unknown) => {
        this.counts.failures++;
        const line = (e as Error).message.split('\n')[0]!;
        if (line !== this.counts.lastError) this.warn(`tidepool: uploading checkpoint ${id} failed, retrying in ${this.backoff} ms: ${line}`);
        this.counts.lastError = line;
        // Retry this one unless a newer checkpoint is waiting; the lag keeps counting.
        if (this.waiting === undefined) this.waiting = id;
        this.waitingSince = since;
        this.retryTimer = setTimeout(() => {
          this.retryTimer = undefined;
          this.kick();
        }, this.backoff);
        this.backoff = Math.min(this.backoff * 2, MAX_BACKOFF_MS);
      },
    ).finally(() => {
      this.running = undefined;
      this.kick();
    });
  }

  /**
   * checkpoint.remoteRequired: uploads checkpoint `id` (its manifest not yet written
   * locally) now, retrying with backoff until it succeeds; rejects only on close().
   */
  uploadNow(id: number, manifest: Manifest & { crc?: number }): Promise<void> {
    const p = this.uploadRetrying(id, manifest);
    this.direct = p.catch(() => undefined).finally(() => (this.direct = undefined));
    return p;
  }

  /**
   * Between two attempts of a run: stops retrying a remoteRequired upload (its
   * checkpoint will never complete locally) and waits for uploads in progress, so that
   * init() for the next attempt sees every object they wrote.
   */
  async settle(): Promise<void> {
    this.cancelled = true;
    while (this.direct) await this.direct;
    while (this.running) await this.running.catch(() => undefined);
    this.cancelled = false;
  }

  private async uploadRetrying(id: number, manifest: Manifest & { crc?: number }): Promise<void> {
    let backoff = 500;
    this.waitingSince ??= performance.now();
    for (;;) {
      if (this.closed || this.cancelled) throw new Error('the run is stopping');
      try {
        await this.upload(id, manifest);
        this.waitingSince = undefined;
        return;
      } catch (e) {
        if (this.closed || this.cancelled) throw e;
        this.counts.failures++;
        const line = (e as Error).message.split('\n')[0]!;
        if (line !== this.counts.lastError) this.warn(`tidepool: uploading checkpoint ${id} failed, retrying (checkpoint.remoteRequired: nothing is published until it is uploaded): ${line}`);
        this.counts.lastError = line;
        await new Promise((r) => setTimeout(r, backoff));
        backoff = Math.min(backoff * 2, MAX_BACKOFF_MS);
      }
    }
  }

  get stats(): RemoteStats {
    const lagMs = this.waitingSince === undefined ? 0 : Math.round(performance.now() - this.waitingSince);
    return { uploaded: this.counts.uploaded, lastUploaded: this.counts.lastUploaded, bytesUploaded: this.counts.bytesUploaded, lagMs, failures: this.counts.failures, ...(this.counts.lastError ? { lastError: this.counts.lastError } : {}) };
  }

  /**
   * Waits until the newest enqueued checkpoint is uploaded, retrying for at most
   * `timeoutMs`; false if it is still not uploaded then.
   */
  async drain(timeoutMs: number): Promise<boolean> {
    const deadline = performance.now() + timeoutMs;
    while (this.running || this.waiting !== undefined) {
      if (performance.now() > deadline) return false;
      if (this.retryTimer) {
        clearTimeout(this.retryTimer); // at the end of the run: retry at once, then back off again
        this.retryTimer = undefined;
        this.kick();
      }
      // Not past the deadline either while an upload waits (on a lazy restore's copy-in).
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([this.running?.catch(() => undefined), new Promise((r) => (timer = setTimeout(r, this.running ? Math.max(0, deadline - performance.now()) : 50)))]);
      clearTimeout(timer);
    }
    return true;
  }

  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.retryTimer);
    while (this.running) await this.running.catch(() => undefined);
    while (this.direct) await this.direct;
    await this.root?.close();
    this.root = undefined;
  }

  private async env(): Promise<RootDatabase> {
    if (this.root) return this.root;
    await loadLmdb();
    backLmdbMap(this.stateDir);
    const root = lmdb().open(envOptions(this.stateDir, false));
    checkNamedDbs(this.stateDir, root); // or openDB would create them empty
    this.root = root;
    return this.root;
  }

  private async upload(id: number, given?: Manifest & { crc?: number }): Promise<void> {
    if (!given && !listManifests(this.stateDir).includes(id)) return; // gone (retain) while waiting: a newer one is queued
    const manifest = given ?? (readManifest(this.stateDir, id) as Manifest & { crc?: number });
    // Already there (restored from it, or uploaded by the run that completed it before it
    // died): the same manifest means the same checkpoint, nothing to send.
    const existing = await this.checkpoint(id);
    if (existing) {
      if (existing.manifest.crc !== manifest.crc) throw new Error(`${this.prefix + checkpointName(id)} already exists in ${this.store.where} with another manifest (another run writing to the same prefix?)`);
      this.chains = new Map(Object.entries(existing.states));
      this.counts.lastUploaded = id;
      return;
    }
    for (const t of manifest.tasks) {
      for (const i of t.instances) {
        // A full upload reads every page: wait until they are all local.
        if (i.stateId === undefined || i.version === undefined || !this.restoring?.pending(i.stateId)) continue;
        if (this.needsFull(i.stateId, i.version, true)) await this.restoring.done();
      }
    }
    const root = await this.env();
    const dbs = openPageDbs(root);
    const commits = root.openDB<Buffer, [string, number]>({ name: COMMITS_DB, encoding: 'binary', keyEncoding: 'ordered-binary' });
    // One snapshot for the whole upload: the I/O worker's GC cannot take page versions
    // away halfway (it may still delete them in later transactions).
    const txn = root.useReadTransaction();
    const states: Record<string, RemoteState> = {};
    let bytes = 0;
    try {
      for (const task of manifest.tasks) {
        for (const inst of task.instances) {
          if (inst.stateId === undefined || inst.version === undefined) continue;
          const r = await this.uploadState(dbs, commits, txn, inst.stateId, inst.version);
          states[inst.stateId] = r.state;
          bytes += r.bytes;
        }
      }
    } finally {
      txn.done();
    }
    const checkpoint: RemoteCheckpoint = { format: 1, id, time: Date.now(), manifest, states, bytesUploaded: bytes };
    const name = this.prefix + checkpointName(id);
    if (!(await this.store.createIfAbsent(name, encodeCheckpoint(checkpoint)))) {
      throw new Error(`${name} already exists in ${this.store.where} (another run writing to the same prefix?)`);
    }
    this.chains = new Map(Object.entries(states));
    this.known.set(id, checkpoint);
    this.counts.uploaded++;
    this.counts.bytesUploaded += bytes;
    this.counts.lastUploaded = id;
    await this.collect();
  }

  /**
   * Whether partition `stateId` is uploaded whole at `version`. While a lazy restore is
   * still copying pages in (`restoring`), not every page is local, so the chain of the
   * restored checkpoint goes on with increments, however many.
   */
  private needsFull(stateId: string, version: number, restoring: boolean): boolean {
    const chain = this.chains.get(stateId);
    if (chain === undefined || chain.version > version) return true;
    return chain.version !== version && chain.increments >= MAX_INCREMENTS && !restoring;
  }

  /** The pack objects for one partition at `version`: its chain's, plus what changed since. */
  private async uploadState(
    dbs: PageDbs, commits: Database<Buffer, [string, number]>, transaction: Transaction, stateId: string, version: number,
  ): Promise<{ state: RemoteState; bytes: number }> {
    const pages = dbs.pages;
    const chain = this.chains.get(stateId);
    if (chain && chain.version === version) return { state: chain, bytes: 0 }; // nothing flushed since
    const full = this.needsFull(stateId, version, this.restoring?.pending(stateId) ?? false);
    const from = full ? -1 : chain!.version;
    // Per page, the newest version in (from, version]: older ones are superseded.
    const newest = new Map<number, number>();
    for (const key of pages.getKeys({ start: [stateId, -1, -1], end: [stateId, Number.MAX_SAFE_INTEGER, Number.MAX_SAFE_INTEGER], transaction })) {
      const [, pageId, v] = key as [string, number, number];
      if (v > from && v <= version) newest.set(pageId, v);
    }
    // A page whose newest version is a delta (src/storage/page-chain.ts) goes up whole.
    const asDelta = new Set<number>();
    for (const [pageId, versions] of headsOf(dbs, stateId, transaction)) {
      let v = -1;
      for (const x of versions) if (x > from && x <= version) v = x;
      if (v >= 0 && v > (newest.get(pageId) ?? -1)) {
        newest.set(pageId, v);
        asDelta.add(pageId);
      }
    }
    const commitList: Pack['commits'] = [];
    for (const { key, value } of commits.getRange({ start: [stateId, from + 1], end: [stateId, version + 1], transaction })) {
      commitList.push([(key as [string, number])[1], value]);
    }
    const objects: string[] = [];
    const ranges: PackRange[] = [];
    let bytes = 0;
    const spare: Buffer[] = []; // buffers of packs whose upload is over
    const fresh = () => new PackWriter(stateId, PACK_BYTES + (64 << 10), spare.pop());
    let w = fresh();
    // PUTS_IN_FLIGHT packs uploading while the next is read and encoded: memory stays
    // bounded by PUTS_IN_FLIGHT + 1 packs, and one request's latency overlaps another's.
    const inFlight: Promise<void>[] = [];
    const flush = async (last: boolean) => {
      if (w.pages === 0 && !(last && objects.length === 0)) return; // every chain step has at least one pack (its commit records)
      if (last) for (const [v, bytes] of commitList) w.addCommit(v, bytes);
      const { body, range } = w.finish();
      const buffer = w.buffer;
      const name = `${this.prefix}${STATE}${stateId}/${String(version).padStart(10, '0')}-${this.run}-${objects.length}.pack`;
      objects.push(name);
      ranges.push(range);
      bytes += body.length;
      while (inFlight.length >= PUTS_IN_FLIGHT) await inFlight.shift();
      const put = this.store.put(name, body).then(() => void spare.push(buffer));
      put.catch(() => undefined); // awaited below or at a later pack; not an unhandled rejection meanwhile
      inFlight.push(put);
      w = fresh(); // in the buffer of the put awaited above, if any
      if (last) while (inFlight.length) await inFlight.shift();
    };
    for (const [pageId, v] of newest) {
      // LMDB's reused read buffer, copied once into the pack.
      let value: Uint8Array | undefined;
      if (asDelta.has(pageId)) {
        // A remote checkpoint holds one version per page: a delta goes up as the whole page.
        await prepareBuiltinCodecs();
        value = wholePageAt(dbs, stateId, pageId, v, transaction);
      } else {
        value = (pages as unknown as FastReads).getBinaryFast([stateId, pageId, v], { transaction });
      }
      if (value === undefined) continue; // collected (a newer version is in this snapshot)
      // Its `length` is the value's, set on a larger shared buffer that typed-array
      // methods see whole: cut it to that length first.
      w.addPage(pageId, v, value.subarray(0, value.length));
      if (w.bytes >= PACK_BYTES) await flush(false);
    }
    await flush(true);
    const state: RemoteState = full
      ? { version, objects, ranges, increments: 0 }
      : { version, objects: [...chain!.objects, ...objects], ...(chain!.ranges ? { ranges: [...chain!.ranges, ...ranges] } : {}), increments: chain!.increments + 1 };
    return { state, bytes };
  }

  /**
   * Remote GC: checkpoints beyond `retain` go (oldest first, before anything they
   * name), then every pack no retained checkpoint names — also packs of a torn upload.
   * Runs after an upload, never during one, so no pack in flight is taken for garbage.
   */
  private async collect(): Promise<void> {
    const ids = await this.remoteIds();
    const keep = ids.slice(Math.max(0, ids.length - this.retain));
    for (const id of ids.slice(0, ids.length - keep.length)) {
      await this.store.delete(this.prefix + checkpointName(id));
      this.known.delete(id);
    }
    const named = new Set<string>();
    for (const id of keep) {
      const c = await this.checkpoint(id);
      if (c) for (const s of Object.values(c.states)) for (const o of s.objects) named.add(o);
    }
    for (const o of await this.store.list(this.prefix + STATE)) if (!named.has(o.name)) await this.store.delete(o.name);
  }
}
