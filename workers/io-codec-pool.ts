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
// process already talks to. It has as many threads as the largest `codecThreads` of
// the states that used it.
//
// Order and failure: a state's pages are put when their task returns, and the COMMIT
// frame after them waits for all of them (`settled`), so rule 3 holds unchanged. A task
// that fails (the codec throws, a pool thread dies) fails the flush like a failed
// write: nothing more of it is put, no commit record is written, and what it stored is
// deleted before the next flush (io.ts). Piscina replaces a dead thread, so a retry can
// succeed.
import type { Piscina } from 'piscina';
import { oneLine } from '../src/errors.js';
import { FRAME_HEADER } from '../src/storage/io-protocol.js';
import { PAGE_HEADER_BYTES, pageTotalLength } from '../src/state/page-format.js';
import type { CompressionSpec } from '../src/state/codecs.js';
import type { CodecTask } from './codec-worker.js';

const WORKER_URL = new URL('./codec-worker.js', import.meta.url).href;
/** Page bytes per pool task: large enough that a task's messages cost little next to its work. */
const TASK_BYTES = 256 << 10;
/** A task buffer: TASK_BYTES and room for the frame that crosses it (a larger frame gets a buffer of its own). */
const TASK_BUFFER = TASK_BYTES + (64 << 10);
// The pool writes each envelope over its BODY frame: the frame's prefix must be the envelope header's size.
if (FRAME_HEADER + 8 !== PAGE_HEADER_BYTES) throw new Error('internal: BODY frame prefix and page header differ in size');
/** One state's page bytes in the pool or waiting for their puts, before it stops draining its ring. */
const INFLIGHT_BYTES = 16 << 20;

let pool: Piscina<CodecTask, Uint8Array> | undefined;
let poolSize = 0;
let PiscinaClass: typeof Piscina | undefined;

/**
 * Loads piscina in this thread (once), before the first state that uses the pool is
 * attached: most runs compress nothing on the pool, and importing it took ~20 ms of
 * the I/O worker's start-up, which every run waits for before its first attach.
 */
export async function loadCodecPool(): Promise<void> {
  PiscinaClass ??= (await import('piscina')).Piscina;
}

/**
 * The pool, with at least `threads` threads: its size is the largest any user asked
 * for. A larger request replaces it; the old pool finishes its tasks, then closes.
 */
function poolOf(threads: number): Piscina<CodecTask, Uint8Array> {
  if (pool === undefined || poolSize < threads) {
    const old = pool;
    if (PiscinaClass === undefined) throw new Error('internal: the codec pool is used before loadCodecPool()');
    pool = new PiscinaClass<CodecTask, Uint8Array>({ filename: WORKER_URL, minThreads: threads, maxThreads: threads });
    poolSize = threads;
    old?.close().catch(() => undefined);
  }
  return pool;
}

/** Ends the pool's threads (the I/O worker is shutting down). */
export async function closeCodecPool(): Promise<void> {
  const p = pool;
  pool = undefined;
  poolSize = 0;
  await p?.destroy();
}

export interface PooledSink {
  /** Puts one envelope of `version`; returns the put (the envelope's memory must outlive it). */
  put(pageId: number, version: number, envelope: Buffer): Promise<unknown> | undefined;
  /** The flush being written cannot be completed (its pages did not come back). */
  fail(e: Error): void;
}

export interface PoolConfig {
  spec: CompressionSpec;
  name: string;
  threads: number;
}

/**
 * The BODY frames of one attached state, batched into pool tasks: each frame is copied
 * from the ring into the current task buffer (`stage`), and a full buffer (about
 * TASK_BYTES) goes to the pool, where every page's envelope is written over its frame.
 */
export class PooledPages {
  private buf: Buffer | undefined;
  private used = 0;
  /** Frames of `buf` handed over by add(): [offset, length] flattened, and their page ids and versions. */
  private frames: number[] = [];
  private ids: number[] = [];
  private versions: number[] = [];
  private inflightBytes = 0;
  private readonly inflight = new Set<Promise<void>>();
  private readonly held = new Set<Uint8Array>();

  constructor(private readonly cfg: PoolConfig, private readonly sink: PooledSink) {}

  /** The codec's name, for errors. */
  get name(): string {
    return this.cfg.name;
  }

  /**
   * Copies a BODY frame out of the page ring into the task buffer (the ring slot is
   * reused once the frame is consumed) and returns the copy, to be passed to add().
   */
  stage(view: Uint8Array): Uint8Array {
    const n = view.length;
    if (this.buf !== undefined && this.used + n > this.buf.length) this.dispatch();
    // allocUnsafeSlow: an ArrayBuffer of its own (it is transferred), not zero-filled.
    this.buf ??= Buffer.allocUnsafeSlow(Math.max(TASK_BUFFER, n));
    const at = this.used;
    this.buf.set(view, at);
    this.used = (at + n + 7) & ~7;
    return this.buf.subarray(at, at + n);
  }

  /** Takes a staged frame of `version` into the next task. */
  add(copy: Uint8Array, pageId: number, version: number): void {
    if (copy.buffer !== this.buf?.buffer) throw new Error('internal: a BODY frame added after its task buffer was sent');
    this.frames.push(copy.byteOffset - this.buf.byteOffset, copy.length);
    this.ids.push(pageId);
    this.versions.push(version);
    if (this.used >= TASK_BYTES) this.dispatch();
  }

  /** Sends the frames added so far to the pool (also when the ring runs dry, so the pool works meanwhile). */
  dispatch(): void {
    const buf = this.buf;
    if (buf === undefined || this.frames.length === 0) return;
    const { frames, ids, versions } = this;
    const bytes = this.used;
    this.buf = undefined;
    this.used = 0;
    this.frames = [];
    this.ids = [];
    this.versions = [];
    this.inflightBytes += bytes;
    const task = poolOf(this.cfg.threads).run({ spec: this.cfg.spec, buf, frames }, { transferList: [buf.buffer as ArrayBuffer] });
    const done: Promise<void> = task
      .then(
        (out) => this.putAll(out, frames, ids, versions),
        (e: unknown) => this.sink.fail(codecFailure(this.cfg.name, e)),
      )
      .finally(() => {
        this.inflightBytes -= bytes;
        this.inflight.delete(done);
      });
    this.inflight.add(done);
  }

  private async putAll(out: Uint8Array, frames: number[], ids: number[], versions: number[]): Promise<void> {
    const puts: Promise<unknown>[] = [];
    for (let i = 0; i < ids.length; i++) {
      const at = frames[2 * i]!, room = frames[2 * i + 1]!;
      const n = pageTotalLength(out.subarray(at, at + room));
      if (n < 0 || n > room) {
        this.sink.fail(codecFailure(this.cfg.name, new Error(`the pool returned a malformed envelope for page ${ids[i]}`)));
        return;
      }
      const put = this.sink.put(ids[i]!, versions[i]!, Buffer.from(out.buffer, out.byteOffset + at, n));
      if (put) puts.push(put);
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
