// The page-codec pool, seen from the I/O worker: one piscina pool per process.
//
// A state attached with `codecPool` sends its frozen pages as BODY frames (serialized,
// not compressed). The I/O worker batches them into pool tasks of about TASK_BYTES;
// a pool thread (codec-worker.ts) compresses each page and computes its CRC-32C, and
// the envelopes come back in one buffer, which the I/O worker puts into LMDB as it
// would put PAGE frames. So a checkpoint with zstd uses every pool thread while the
// operator threads only serialize, and one pool serves every state of the process
// (piscina is made for exactly this: interchangeable workers for pure CPU tasks).
//
// Why the pool lives here and not beside each owner: a Piscina instance belongs to
// the thread that made it, and the I/O worker is the one thread every state of the
// process already talks to. Its first user sizes it (`state.codecThreads`).
//
// Order and failure: a state's pages are put when their task returns, and the COMMIT
// frame after them waits for all of them (`settled`), so rule 3 holds unchanged. A task
// that fails (the codec throws, a pool thread dies) fails the flush like a failed
// write: nothing more of it is put, no commit record is written, and what it stored is
// deleted before the next flush (io.ts). Piscina replaces a dead thread, so a retry can
// succeed.
import { Piscina } from 'piscina';
import { oneLine } from '../src/errors.js';
import { FRAME_HEADER } from '../src/storage/io-protocol.js';
import { pageTotalLength } from '../src/state/page-format.js';
import type { CompressionSpec } from '../src/state/codecs.js';
import type { CodecTask } from './codec-worker.js';

const WORKER_URL = new URL('./codec-worker.js', import.meta.url).href;
/** Page bytes per pool task: large enough that a task's messages cost little next to its work. */
const TASK_BYTES = 256 << 10;
/** One state's page bytes in the pool or waiting for their puts, before it stops draining its ring. */
const INFLIGHT_BYTES = 16 << 20;

let pool: Piscina<CodecTask, Uint8Array> | undefined;

function poolOf(threads: number): Piscina<CodecTask, Uint8Array> {
  pool ??= new Piscina<CodecTask, Uint8Array>({ filename: WORKER_URL, minThreads: threads, maxThreads: threads });
  return pool;
}

/** Threads of the pool, 0 before anything used it (for tests). */
export function codecPoolThreads(): number {
  return pool?.threads.length ?? 0;
}

/** Ends the pool's threads (the I/O worker is shutting down). */
export async function closeCodecPool(): Promise<void> {
  const p = pool;
  pool = undefined;
  await p?.destroy();
}

export interface PooledSink {
  /** Puts one envelope of `version`; returns the put (the envelope's memory must outlive it). */
  put(pageId: number, version: number, envelope: Buffer): Promise<unknown> | undefined;
  /** The flush of `version` cannot be completed (its pages did not come back). */
  fail(version: number, e: Error): void;
}

export interface PoolConfig {
  spec: CompressionSpec;
  name: string;
  threads: number;
}

/** The BODY frames of one attached state, batched into pool tasks. */
export class PooledPages {
  private frames: Uint8Array[] = [];
  private ids: number[] = [];
  private batched = 0;
  private version = -1;
  private inflightBytes = 0;
  private readonly inflight = new Set<Promise<void>>();
  private readonly held = new Set<Uint8Array>();

  constructor(private readonly cfg: PoolConfig, private readonly sink: PooledSink) {}

  /** The codec's name, for errors. */
  get name(): string {
    return this.cfg.name;
  }

  /** Takes a BODY frame of `version` (a buffer of its own: it is transferred to the pool). */
  add(frame: Uint8Array, pageId: number, version: number): void {
    if (version !== this.version) {
      this.dispatch();
      this.version = version;
    }
    this.frames.push(frame);
    this.ids.push(pageId);
    this.batched += frame.length;
    if (this.batched >= TASK_BYTES) this.dispatch();
  }

  /** Sends the pages batched so far to the pool (also when the ring runs dry, so the pool works meanwhile). */
  dispatch(): void {
    if (this.frames.length === 0) return;
    const { frames, ids, batched: bytes, version } = this;
    this.frames = [];
    this.ids = [];
    this.batched = 0;
    this.inflightBytes += bytes;
    const task = poolOf(this.cfg.threads).run(
      { spec: this.cfg.spec, frames, bodyOffset: FRAME_HEADER + 8 },
      { transferList: frames.map((f) => f.buffer as ArrayBuffer) },
    );
    const done: Promise<void> = task
      .then(
        (out) => this.putAll(out, ids, version),
        (e: unknown) => this.sink.fail(version, codecFailure(this.cfg.name, e)),
      )
      .finally(() => {
        this.inflightBytes -= bytes;
        this.inflight.delete(done);
      });
    this.inflight.add(done);
  }

  private async putAll(out: Uint8Array, ids: number[], version: number): Promise<void> {
    const puts: Promise<unknown>[] = [];
    let at = 0;
    for (const id of ids) {
      const n = pageTotalLength(out.subarray(at));
      if (n < 0 || at + n > out.length) {
        this.sink.fail(version, codecFailure(this.cfg.name, new Error(`the pool returned a malformed envelope for page ${id}`)));
        return;
      }
      const put = this.sink.put(id, version, Buffer.from(out.buffer, out.byteOffset + at, n));
      if (put) puts.push(put);
      at += n;
    }
    // lmdb-js reads a put's value when its write thread runs, not at put(), and does not
    // hold the Buffer: `out` is held here until every put of it has settled.
    this.held.add(out);
    await Promise.allSettled(puts);
    this.held.delete(out);
  }

  /** Resolves once this state's page bytes in flight are below the bound. */
  async room(): Promise<void> {
    while (this.inflightBytes >= INFLIGHT_BYTES && this.inflight.size !== 0) await Promise.race(this.inflight);
  }

  /** Dispatches what is batched and resolves once every page handed over is put (or failed). */
  async settled(): Promise<void> {
    this.dispatch();
    while (this.inflight.size !== 0) await Promise.all([...this.inflight]);
  }
}

function codecFailure(name: string, e: unknown): Error {
  const why = oneLine(String((e as Error)?.message ?? e));
  return Object.assign(new Error(`compressing pages with '${name}' in the codec pool failed: ${why}`), { code: 'TIDEPOOL_CODEC' });
}
