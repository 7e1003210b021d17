// The owning side of the I/O worker: spawns it once per process (lazily), attaches
// page spaces to it, and turns its replies into promises. The worker is unref'd
// while nothing is attached, so an idle process can exit.
import { availableParallelism } from 'node:os';
import { MessageChannel, Worker, type MessagePort } from 'node:worker_threads';
import { TidepoolError, errors } from '../errors.js';
import { RingWriter, createRingBuffer } from '../transport/ring.js';
import { FETCH_BYTES, FETCH_HEADER, type AttachRequest, type IoReply } from './io-protocol.js';
import type { CommitRecord } from './backend.js';
import { resolveCodecModule, type CompressionSpec } from '../state/codecs.js';
import type { RemoteSpec } from './remote/object-store.js';
import type { HydrationStats } from './remote/hydration.js';

const WORKER_URL = new URL('../../workers/io.js', import.meta.url);


export interface AttachOptions {
  stateId: string;
  dir: string;
  noSync: boolean;
  retain: number;
  ringBytes: number;
  /** See AttachRequest.restoreVersion. */
  restoreVersion?: number;
  /** See AttachRequest.codecPool (codecPoolFor() builds it). */
  codecPool?: AttachRequest['codecPool'];
}

/**
 * `codecThreads` when the configuration leaves it unset: the number of cores for zstd
 * and custom modules; 0 for lz4 and deflate, which cost no more on the owning thread
 * than the hand-off to the pool does (perf/RESULTS.md, "Codec pool": pooled they were
 * equal or slower on 2 cores, zstd 1.16× faster), so their pages are compressed where
 * they are serialized.
 */
export function defaultCodecThreads(spec: CompressionSpec): number {
  return spec === 'lz4' || spec === 'deflate' ? 0 : availableParallelism();
}

/**
 * What attach needs for pooled compression, or undefined when the owning thread
 * compresses itself: `none` has nothing to compress, and `threads` 0 turns the pool off.
 */
export function codecPoolFor(spec: CompressionSpec, threads: number): AttachRequest['codecPool'] {
  if (spec === 'none' || threads <= 0) return undefined;
  if (typeof spec === 'object') return { spec: { module: resolveCodecModule(spec.module) }, name: spec.module, threads };
  return { spec, name: spec, threads };
}

/** One attached state: its ring, and the replies of the I/O worker for it. */
export class IoAttachment {
  readonly writer: RingWriter;
  private readonly waiting = new Map<number, { resolve: (bytes: number) => void; reject: (e: Error) => void }>();
  private detached?: () => void;
  private dead: Error | undefined;

  constructor(
    private readonly release: (() => void) | undefined,
    readonly stateId: string,
    private readonly ring: SharedArrayBuffer,
    private readonly port: MessagePort,
    readonly lastCommit: CommitRecord | undefined,
  ) {
    this.writer = new RingWriter(ring);
    port.on('message', (m: IoReply) => this.onReply(m));
    port.unref(); // an open store does not keep the process alive; a pending flush does
  }

  private settled(): void {
    if (this.waiting.size === 0) this.port.unref();
  }

  private onReply(m: IoReply): void {
    if (m.type === 'durable') {
      this.waiting.get(m.version)?.resolve(m.bytes);
      this.waiting.delete(m.version);
      this.settled();
    } else if (m.type === 'failed') {
      // A full disk or a failed codec pool leave nothing of the flush: it may be retried.
      const e = m.diskFull
        ? errors.diskFull(`flush ${m.version} of '${this.stateId}' was not written`, m.dir ?? 'the state directory')
        : m.codec !== undefined
          ? Object.assign(errors.codec(m.codec, `flush ${m.version} of '${this.stateId}' was not written: ${m.message}`), { retryable: true })
          : errors.io(`flush ${m.version} of '${this.stateId}' failed: ${m.message}`);
      this.waiting.get(m.version)?.reject(e);
      this.waiting.delete(m.version);
      this.settled();
    } else if (m.type === 'error') {
      this.fail(errors.io(`I/O worker failed for '${this.stateId}': ${m.message}`));
    } else if (m.type === 'detached') {
      this.detached?.();
    }
  }

  /** Rejects everything pending (the I/O worker died or reported an error). */
  fail(e: Error): void {
    this.dead = e;
    for (const w of this.waiting.values()) w.reject(e);
    this.waiting.clear();
    this.detached?.();
  }

  get failure(): Error | undefined {
    return this.dead;
  }

  /** A promise for `durable {version}` (with the bytes stored); register it before sending the COMMIT frame. */
  whenDurable(version: number): Promise<number> {
    if (this.dead) return Promise.reject(this.dead);
    this.port.ref();
    return new Promise((resolve, reject) => this.waiting.set(version, { resolve, reject }));
  }

  /**
   * A page of `stateId` (this one, or an old partition read for a rescale) that a lazy
   * remote restore has not copied in yet: asks the I/O worker to fetch it and blocks
   * this thread until it answers — with the page's bytes and version (it stores the
   * page in LMDB meanwhile, without making the reader wait for that commit), or with
   * undefined: read LMDB again (reset the read transaction first). Throws a one-line
   * TIDEPOOL_REMOTE error if it cannot be fetched.
   *
   * The answer comes through a fresh shared buffer per request (so a late answer to a
   * request given up on can never land in another's): i32 code (1 page, 2 error, 3 read
   * again), i32 length, f64 version, then the page bytes or the error message.
   */
  fetchPageSync(stateId: string, pageId: number, timeoutMs = 120_000): { bytes: Uint8Array; version: number } | undefined {
    const signal = new SharedArrayBuffer(FETCH_HEADER + FETCH_BYTES);
    const flag = new Int32Array(signal, 0, 2);
    this.port.postMessage({ type: 'fetch', stateId, pageId, signal });
    const deadline = performance.now() + timeoutMs;
    while (Atomics.load(flag, 0) === 0) {
      const left = deadline - performance.now();
      if (left <= 0 || Atomics.wait(flag, 0, 0, left) === 'timed-out') {
        throw errors.remote('the remote store', `page ${pageId} of '${stateId}' was not fetched within ${timeoutMs} ms (lazy restore)`);
      }
    }
    const code = flag[0];
    if (code === 2) {
      const why = Buffer.from(signal, FETCH_HEADER, flag[1]).toString('utf8');
      throw errors.remote('the remote store', `cannot fetch page ${pageId} of '${stateId}' (lazy restore): ${why}`);
    }
    // Copied out of shared memory: native decoders (msgpackr's string extraction) refuse it.
    if (code === 1) return { bytes: Buffer.from(new Uint8Array(signal, FETCH_HEADER, flag[1])), version: new Float64Array(signal, 8, 1)[0]! };
    return undefined;
  }

  /** Gives up this thread's use of the attachment so another thread can take it over. */
  handOff(): { ring: SharedArrayBuffer; port: MessagePort; lastCommit: CommitRecord | undefined } {
    this.port.removeAllListeners('message');
    return { ring: this.ring, port: this.port, lastCommit: this.lastCommit };
  }

  /** Closes the ring; resolves once the I/O worker has written everything and let go. */
  async detach(): Promise<void> {
    if (!this.dead) {
      const done = new Promise<void>((resolve) => (this.detached = resolve));
      this.port.ref();
      this.writer.close();
      this.port.postMessage({ type: 'detach' });
      await done;
    }
    this.port.close();
    this.release?.();
  }
}

export class IoClient {
  private static instance: IoClient | undefined;
  private readonly worker: Worker;
  private readonly attachments = new Set<IoAttachment>();
  private readonly pendingAttach = new Set<(e: Error) => void>();
  private users = 0;

  /**
   * Before process.exit: asks the I/O worker (if one was started) to finish its queued
   * writes, close LMDB and end, and waits for that (at most `timeoutMs`). Exiting with
   * the worker inside an lmdb-js call can abort the process (napi_throw during teardown).
   */
  static async shutdown(timeoutMs = 5000): Promise<void> {
    const c = IoClient.instance;
    if (!c) return;
    IoClient.instance = undefined;
    let timer: NodeJS.Timeout | undefined;
    const exited = new Promise<void>((resolve) => c.worker.once('exit', () => resolve()));
    c.worker.postMessage({ type: 'shutdown' });
    await Promise.race([exited, new Promise<void>((resolve) => (timer = setTimeout(resolve, timeoutMs)))]);
    clearTimeout(timer);
  }

  static shared(): IoClient {
    if (!IoClient.instance) IoClient.instance = new IoClient();
    return IoClient.instance;
  }

  private constructor() {
    this.worker = new Worker(WORKER_URL);
    this.worker.unref();
    const die = (e: Error) => {
      IoClient.instance = undefined;
      for (const a of this.attachments) a.fail(e);
      this.attachments.clear();
      for (const reject of this.pendingAttach) reject(e);
      this.pendingAttach.clear();
    };
    this.worker.on('error', (e) => die(errors.io('the I/O worker crashed', e)));
    this.worker.on('exit', (code) => die(errors.io(`the I/O worker exited (code ${code})`)));
  }

  /**
   * Attaches a state and returns its ring, port and last commit without wrapping
   * them, so they can be handed to another thread (an operator worker), which builds
   * its own IoAttachment from them.
   */
  async attachRaw(opts: AttachOptions): Promise<{ ring: SharedArrayBuffer; port: MessagePort; lastCommit: CommitRecord | undefined }> {
    const a = await this.attach(opts);
    return a.handOff();
  }

  async attach(opts: AttachOptions): Promise<IoAttachment> {
    const ring = createRingBuffer(opts.ringBytes);
    const { port1, port2 } = new MessageChannel();
    const req: AttachRequest = {
      type: 'attach', stateId: opts.stateId, dir: opts.dir, noSync: opts.noSync, retain: opts.retain,
      restoreVersion: opts.restoreVersion, ring, port: port2, codecPool: opts.codecPool,
    };
    this.users++;
    this.worker.ref();
    let reply: IoReply;
    try {
      reply = await new Promise<IoReply>((resolve, reject) => {
        this.pendingAttach.add(reject);
        port1.once('message', (m: IoReply) => {
          this.pendingAttach.delete(reject);
          resolve(m);
        });
        this.worker.postMessage(req, [port2]);
      });
    } catch (e) {
      port1.close();
      this.release();
      throw e;
    }
    if (reply.type !== 'attached') {
      port1.close();
      this.release();
      const why = reply.type === 'error' ? reply.message : reply.type;
      const code = reply.type === 'error' ? reply.code : undefined;
      if (code === 'TIDEPOOL_CORRUPT_STATE' || code === 'TIDEPOOL_CORRUPT_PAGE') {
        throw new TidepoolError(code, why.startsWith('corrupted ') ? why : `corrupted state '${opts.stateId}' in ${opts.dir}: ${why}`);
      }
      if (code === 'TIDEPOOL_DISK_FULL') throw errors.diskFull(`cannot open state '${opts.stateId}'`, opts.dir);
      throw errors.io(`cannot open state '${opts.stateId}' in ${opts.dir}: ${why}`);
    }
    // The attachment's port keeps the process alive while a flush or detach is
    // pending; an idle open store must not, so the worker goes back to unref'd.
    this.release();
    const a = new IoAttachment(undefined, opts.stateId, ring, port1, reply.lastCommit as CommitRecord | undefined);
    this.attachments.add(a);
    return a;
  }

  /**
   * Starts copying in the pages of a lazily restored state directory (remote-restore.ts)
   * in the I/O worker, which also serves page fetches for it from then on. `done`
   * waits for the copy to finish, keeping the process alive meanwhile; nothing else does.
   */
  hydrate(dir: string, spec: RemoteSpec, background: boolean): { done: () => Promise<HydrationStats | undefined>; finished: () => boolean } {
    const { port1, port2 } = new MessageChannel();
    let finished = false;
    let rejectClosed: (e: Error) => void = () => undefined;
    const result = new Promise<HydrationStats | undefined>((resolve, reject) => {
      rejectClosed = reject;
      port1.once('message', (m: { type: 'restored'; stats?: HydrationStats } | { type: 'error'; message: string }) => {
        finished = true;
        port1.close();
        if (m.type === 'restored') resolve(m.stats);
        else reject(errors.remote(spec.kind === 'dir' ? `dir ${spec.path}` : `azure-blob container ${spec.container}`, `copying in the lazily restored state of ${dir}: ${m.message}`));
      });
    });
    port1.once('close', () => {
      if (!finished) {
        finished = true;
        rejectClosed(errors.io('the I/O worker stopped before the lazy remote restore finished'));
      }
    });
    result.catch(() => undefined); // awaited through done()
    port1.unref();
    this.worker.postMessage({ type: 'hydrate', dir, spec, background, port: port2 }, [port2]);
    return {
      done: () => {
        if (finished) return result;
        port1.ref();
        return result.finally(() => port1.unref());
      },
      finished: () => finished,
    };
  }

  /** Opens the remote store in the I/O worker ahead of a possible lazy restore (loading its SDK takes a while). */
  preloadRemote(spec: RemoteSpec): void {
    this.worker.postMessage({ type: 'preload', spec });
  }

  /** Deletes every page and record of a state no checkpoint needs any more. */
  dropState(dir: string, noSync: boolean, stateId: string): Promise<void> {
    return this.ask((port) => ({ type: 'drop', dir, noSync, stateId, port }), `dropping state '${stateId}'`);
  }

  /**
   * Before a run deletes state directory `dir` for a fresh start: the I/O worker stops
   * what earlier attempts in this process left attached there and closes its LMDB
   * environments (workers/io.ts, forgetDir).
   */
  forgetDir(dir: string): Promise<void> {
    return this.ask((port) => ({ type: 'forget', dir, port }), `closing the state in ${dir}`);
  }

  /** One request to the I/O worker answered on a port of its own; an error reply throws, naming `what`. */
  private async ask(message: (port: MessagePort) => Record<string, unknown>, what: string): Promise<void> {
    const { port1, port2 } = new MessageChannel();
    this.users++;
    this.worker.ref();
    try {
      const reply = await new Promise<IoReply | { type: 'done' }>((resolve, reject) => {
        this.pendingAttach.add(reject);
        port1.once('message', (m: IoReply) => {
          this.pendingAttach.delete(reject);
          resolve(m);
        });
        this.worker.postMessage(message(port2), [port2]);
      });
      if (reply.type === 'error') throw errors.io(what, new Error(reply.message));
    } finally {
      port1.close();
      this.release();
    }
  }

  release(): void {
    if (--this.users <= 0) {
      this.users = 0;
      this.worker.unref();
    }
  }
}
