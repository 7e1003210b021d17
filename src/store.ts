// openStore(): the state engine embedded in the calling thread, without a flow —
// the LocalFileStorage / InMemoryStorage use case. `flush()` is its checkpoint.
import { mkdirSync, statSync } from 'node:fs';
import { resolve } from 'node:path';
import { errors } from './errors.js';
import { StateEngine } from './state/engine.js';
import type { BTree, EncodedRange } from './state/btree.js';
import { encodeKey, decodeKey, prefixBounds, MAX_KEY_BYTES, type Key } from './state/keys.js';
import { codecResolver, loadCodec, type CompressionSpec } from './state/codecs.js';
import { PAGE_HEADER_BYTES } from './state/page-format.js';
import { toStored, fromStored } from './state/values.js';
import { acquireStoreLock, type StoreLock } from './storage/lock.js';
import { LmdbBackend, tempDirFor } from './storage/lmdb-backend.js';
import { MemoryBackend } from './storage/memory-backend.js';
import { codecPoolFor, defaultCodecThreads } from './storage/io-client.js';
import { MAX_CODEC_THREADS } from './storage/io-protocol.js';
import type { StateBackend, StorageKind } from './storage/backend.js';

export type { Key } from './state/keys.js';
export type { CompressionSpec } from './state/codecs.js';

export interface StoreOptions {
  path?: string;
  name?: string;
  storage?: StorageKind;
  pageSize?: number;
  cachePages?: number;
  /** Estimated memory of the decoded pages kept, bytes (a second bound beside cachePages; default: none). */
  cacheBytes?: number;
  compression?: CompressionSpec;
  /** Threads of the process's page-codec pool (0: compress on the calling thread; default: the number of cores for zstd and custom codecs, 0 for lz4 and deflate). */
  codecThreads?: number;
}

export interface KeyRange {
  gt?: Key;
  gte?: Key;
  lt?: Key;
  lte?: Key;
  /** Only tuple keys starting with these elements (tidepool extension). */
  prefix?: readonly Key[];
  reverse?: boolean;
  limit?: number;
}

export interface StoreStats {
  residentPages: number;
  spilledPages: number;
  dirtyPages: number;
  cacheHits: number;
  cacheMisses: number;
  spillWrites: number;
  persistentReads: number;
  /** Estimated memory of the resident pages; only counted when `cacheBytes` is set. */
  residentBytes?: number;
  version: number;
}

const DEFAULTS = { name: 'default', storage: 'lmdb' as StorageKind, pageSize: 16384, cachePages: 1024, compression: 'none' as CompressionSpec };
const KNOWN = new Set(['path', 'name', 'storage', 'pageSize', 'cachePages', 'cacheBytes', 'compression', 'codecThreads']);
const TABLE = 'data';

function intOption(name: string, v: unknown, min: number, max: number): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) {
    throw errors.badOption(name, `expected an integer from ${min} to ${max}, got ${JSON.stringify(v)}`);
  }
  return v;
}

export class Store {
  private closed = false;
  private readonly maxKeyBytes: number;

  /** @internal use openStore() */
  constructor(
    readonly name: string,
    private readonly engine: StateEngine,
    private readonly tree: BTree,
    private readonly lock: StoreLock | undefined,
    pageSize: number,
  ) {
    this.maxKeyBytes = Math.min(MAX_KEY_BYTES, Math.floor((pageSize - PAGE_HEADER_BYTES) / 4));
  }

  private live(): void {
    if (this.closed) throw errors.storeClosed(this.name);
  }

  /**
   * Eviction after a read. A read's result is right even when the spill file could
   * not take a dirty page (a full disk): the cache stays over its bound and the next
   * mutation reports TIDEPOOL_DISK_FULL, so reads go on working until space returns.
   */
  private evictAfterRead(): void {
    try {
      this.engine.pager.evict();
    } catch (e) {
      if ((e as { code?: string }).code !== 'TIDEPOOL_DISK_FULL') throw e;
    }
  }

  private key(k: unknown): string {
    return encodeKey(k, this.maxKeyBytes);
  }

  /**
   * A TIDEPOOL_DISK_FULL from a mutation comes after the change was made in memory:
   * only evicting to the spill file failed, and a later flush makes it durable.
   */
  set(key: Key, value: unknown): void {
    this.live();
    const k = this.key(key);
    const v = toStored(value); // both validated before anything changes
    this.tree.set(k, v);
    this.engine.mutations++;
    this.engine.pager.evict();
  }

  get(key: Key): unknown {
    this.live();
    const v = this.tree.get(this.key(key));
    this.evictAfterRead();
    return v === undefined ? undefined : fromStored(v);
  }

  has(key: Key): boolean {
    this.live();
    const found = this.tree.has(this.key(key));
    this.evictAfterRead();
    return found;
  }

  delete(key: Key): boolean {
    this.live();
    const existed = this.tree.delete(this.key(key));
    if (existed) this.engine.mutations++;
    this.engine.pager.evict();
    return existed;
  }

  clear(): void {
    this.live();
    this.tree.clear();
    this.engine.mutations++;
    this.engine.pager.evict();
  }

  get size(): number {
    return this.tree.size;
  }

  private encodeRange(r: KeyRange | undefined): EncodedRange {
    if (!r) return {};
    const out: EncodedRange = { reverse: !!r.reverse };
    if (r.limit !== undefined) {
      if (typeof r.limit !== 'number' || r.limit < 0 || Number.isNaN(r.limit)) throw errors.badOption('range.limit', 'expected a number ≥ 0');
      out.limit = r.limit;
    }
    if (r.gt !== undefined) out.gt = encodeKey(r.gt, Infinity);
    if (r.gte !== undefined) out.gte = encodeKey(r.gte, Infinity);
    if (r.lt !== undefined) out.lt = encodeKey(r.lt, Infinity);
    if (r.lte !== undefined) out.lte = encodeKey(r.lte, Infinity);
    if (r.prefix !== undefined) {
      if (!Array.isArray(r.prefix)) throw errors.badOption('range.prefix', 'expected an array (a tuple prefix)');
      const b = prefixBounds(r.prefix);
      // Intersect with any explicit bounds.
      const lo = out.gt ?? out.gte;
      if (lo === undefined || lo < b.gte) { delete out.gt; out.gte = b.gte; }
      const hi = out.lt ?? out.lte;
      if (hi === undefined || hi >= b.lt) { delete out.lte; out.lt = b.lt; }
    }
    return out;
  }

  *entries(range?: KeyRange): IterableIterator<[Key, unknown]> {
    this.live();
    for (const [k, v] of this.tree.entries(this.encodeRange(range))) {
      this.evictAfterRead();
      yield [decodeKey(k), fromStored(v)];
    }
  }

  *keys(range?: KeyRange): IterableIterator<Key> {
    this.live();
    for (const [k] of this.tree.entries(this.encodeRange(range))) {
      this.evictAfterRead();
      yield decodeKey(k);
    }
  }

  [Symbol.iterator](): IterableIterator<[Key, unknown]> {
    return this.entries();
  }

  /** Resolves once everything set before the call is durable. */
  async flush(): Promise<void> {
    this.live();
    await this.engine.flush();
  }

  /** Flushes, then releases files, the lock and the I/O worker attachment. */
  async close(): Promise<void> {
    if (this.closed) return;
    try {
      await this.engine.flush();
    } finally {
      this.closed = true;
      await this.engine.close();
      await this.lock?.release();
    }
  }

  get stats(): StoreStats {
    const p = this.engine.pager;
    return {
      residentPages: p.residentPages, spilledPages: p.spilledPages, dirtyPages: p.dirtyPages,
      cacheHits: p.stats.hits, cacheMisses: p.stats.misses, spillWrites: p.stats.spillWrites,
      persistentReads: p.stats.persistentReads, residentBytes: p.residentBytes, version: this.engine.version,
    };
  }
}

export async function openStore(options: StoreOptions = {}): Promise<Store> {
  if (options === null || typeof options !== 'object') throw errors.badOption('options', 'expected an object');
  for (const k of Object.keys(options)) if (!KNOWN.has(k)) throw errors.badOption(k, `unknown option (known: ${[...KNOWN].join(', ')})`);
  const o = { ...DEFAULTS, ...Object.fromEntries(Object.entries(options).filter(([, v]) => v !== undefined)) } as Required<StoreOptions>;
  if (!['lmdb', 'temp', 'memory'].includes(o.storage)) throw errors.badOption('storage', `expected 'lmdb', 'temp' or 'memory', got ${JSON.stringify(o.storage)}`);
  if (typeof o.name !== 'string' || !/^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/.test(o.name)) {
    throw errors.badOption('name', `expected letters, digits, '.', '_' or '-' (it names files), got ${JSON.stringify(o.name)}`);
  }
  const pageSize = intOption('pageSize', o.pageSize, 256, 16 << 20);
  const cachePages = intOption('cachePages', o.cachePages, 1, 1 << 30);
  const cacheBytes = o.cacheBytes === undefined ? undefined : intOption('cacheBytes', o.cacheBytes, 1, Number.MAX_SAFE_INTEGER);
  const codecThreads = o.codecThreads === undefined ? defaultCodecThreads(o.compression) : intOption('codecThreads', o.codecThreads, 0, MAX_CODEC_THREADS);
  const codec = await loadCodec(o.compression);
  let dir: string | undefined;
  if (o.storage !== 'memory') {
    if (typeof o.path !== 'string' || o.path === '') throw errors.badOption('path', `required for storage '${o.storage}'`);
    dir = resolve(o.path);
    try {
      mkdirSync(dir, { recursive: true });
    } catch (e) {
      throw errors.io(`cannot create state directory ${dir}`, e);
    }
    if (!statSync(dir).isDirectory()) throw errors.badOption('path', `${dir} is not a directory`);
  }
  const lock = dir ? await acquireStoreLock(dir, o.name) : undefined;
  let backend: StateBackend;
  try {
    backend = o.storage === 'memory'
      ? new MemoryBackend()
      : await LmdbBackend.open({
          kind: o.storage, dir: o.storage === 'temp' ? tempDirFor(dir!, o.name) : dir!, stateId: o.name, retain: 1,
          codecPool: codecPoolFor(o.compression, codecThreads),
        });
  } catch (e) {
    await lock?.release();
    throw e;
  }
  const engine = new StateEngine({ name: o.name, pageSize, cachePages, cacheBytes, codec, codecFor: codecResolver(codec), backend });
  return new Store(o.name, engine, engine.table(TABLE), lock, pageSize);
}
