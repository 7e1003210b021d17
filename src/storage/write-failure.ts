// Failed LMDB writes, as the I/O worker sees them.
//
// lmdb-js queues puts and removes, commits them in batches on its own thread, and
// reports a failed commit in three ways at once:
//   - every promise of the failed batch rejects with "Commit failed (see commitError
//     for details)", whose `commitError` is a second promise rejecting with the real
//     error (an Error with a numeric errno `code`);
//   - it prints that real error with console.error (several lines, with a stack);
//   - an unhandled rejection of either promise ends the worker thread — and lmdb-js
//     makes one itself: the batch it starts at each event turn gets a commit promise
//     that nobody holds (write.js, writeInstructions(1, store) in an immediate).
// So every write promise gets a handler here (WriteGroup), which also settles the
// `commitError` promise and keeps its errno; `guardLmdbFailures` drops lmdb-js's
// print and its orphan promise, because the failure is reported once, on one line,
// to the state that wrote.
//
// Disk full: LMDB (without a writemap, see envOptions) writes pages with pwrite, so a
// full device is an error of the commit, never a SIGBUS. It is ENOSPC or EDQUOT — or
// EIO when pwrite wrote only part of the pages ("short write, filesystem full?" in
// mdb.c), which we call disk full when the device has less free space than the flush.
import { statfsSync } from 'node:fs';
import type { IoErrorCode } from './io-protocol.js';

const ENOSPC = 28;
const EDQUOT = 122;
const EIO = 5;

export interface WriteFailure {
  /** errno of the underlying error, when lmdb-js gave one. */
  errno?: number;
  message: string;
  /** Not a write at all: the codec pool could not compress the flush's pages (io-codec-pool.ts). */
  codec?: boolean;
}

/** The write's failure, with the errno behind lmdb-js's "Commit failed". */
export async function failureOf(e: unknown): Promise<WriteFailure> {
  const err = e as { message?: string; code?: unknown; commitError?: Promise<unknown> };
  if (err?.code === 'TIDEPOOL_CODEC') return { message: String(err.message), codec: true };
  if (err?.commitError && typeof err.commitError.then === 'function') {
    try {
      await err.commitError;
    } catch (inner) {
      const i = inner as { message?: string; code?: unknown };
      return { errno: typeof i?.code === 'number' ? i.code : undefined, message: String(i?.message ?? inner) };
    }
  }
  return { errno: typeof err?.code === 'number' ? err.code : undefined, message: String(err?.message ?? e) };
}

const noop = () => undefined;

/**
 * Writes of lmdb-js whose outcome counts together (one flush, one cleanup). lmdb-js
 * settles its promises in write order and hands one promise to every write of a
 * batch, so waiting for the newest one waits for all, and each batch is watched once.
 */
export class WriteGroup {
  private last: Promise<unknown> | undefined;
  /** Set (synchronously, at the first rejection) once a write of the group failed. */
  failure: Promise<WriteFailure> | undefined;

  add<T>(p: Promise<T>): Promise<T> {
    if (p !== this.last) {
      p.then(undefined, (e: unknown) => this.fail(e));
      this.last = p;
    }
    return p;
  }

  fail(e: unknown): void {
    const f = failureOf(e); // always: it also handles the rejection of e.commitError
    this.failure ??= f;
  }

  /** Resolves once every write added so far has settled; never rejects. */
  async settled(): Promise<void> {
    const p = this.last;
    this.last = undefined;
    if (p) await p.then(noop, noop);
  }

  /** Settles the group and returns its first failure, if any, clearing it. */
  async take(): Promise<WriteFailure | undefined> {
    await this.settled();
    const f = this.failure;
    this.failure = undefined;
    return f && (await f);
  }
}

/** A write whose failure needs no report, handled so that it cannot end the thread. */
export const quietly = new WriteGroup();

/** Throws (one line) if any write of the group failed. */
export async function mustSucceed(g: WriteGroup, what: string): Promise<void> {
  const f = await g.take();
  if (f) throw Object.assign(new Error(`${what}: ${f.message.replace(/\s+/g, ' ')}`), { errno: f.errno });
}

/** Whether a failed write in `dir` means the device is full (see the header). */
export function isDiskFull(f: WriteFailure, dir: string, wantedBytes: number): boolean {
  if (f.errno === ENOSPC || f.errno === EDQUOT) return true;
  if (f.errno !== EIO && !/short write|no space/i.test(f.message)) return false;
  try {
    const s = statfsSync(dir);
    return s.bavail * s.bsize < wantedBytes + (1 << 20);
  } catch {
    return false;
  }
}

/**
 * Drops lmdb-js's own console.error print of a failed commit and its orphan commit
 * promise (see the header); every other unhandled rejection still ends the thread.
 */
export function guardLmdbFailures(): void {
  const original = console.error.bind(console);
  console.error = (...args: unknown[]) => {
    const only = args.length === 1 ? args[0] : undefined;
    if (only instanceof Error && typeof (only as { code?: unknown }).code === 'number' && /[\\/]lmdb[\\/]/.test(only.stack ?? '')) return;
    original(...args);
  };
  process.on('unhandledRejection', (reason: unknown) => {
    const e = reason as Error & { commitError?: Promise<unknown> };
    if (e instanceof Error && e.message === COMMIT_FAILED && e.commitError) {
      void failureOf(e);
      return;
    }
    throw reason;
  });
}
const COMMIT_FAILED = 'Commit failed (see commitError for details)';

/** The stable code of an attach failure: damage, a full disk, or another I/O error. */
export function attachErrorCode(e: Error, dir: string): IoErrorCode | undefined {
  const code = (e as { code?: unknown }).code;
  if (code === 'TIDEPOOL_CORRUPT_STATE' || code === 'TIDEPOOL_CORRUPT_PAGE') return code;
  // lmdb-js's errors for a damaged environment (and msgpack's for a damaged record).
  if (/\bMDB_(CORRUPTED|PAGE_NOTFOUND|BAD_TXN|INVALID|BAD_VALSIZE|BAD_DBI|VERSION_MISMATCH|INCOMPATIBLE|KEYEXIST|TLS_FULL)|Data read, but end of buffer not reached|Unexpected end of (MessagePack|buffer)|not valid msgpack/i.test(e.message)) return 'TIDEPOOL_CORRUPT_STATE';
  const errno = (e as { errno?: number }).errno;
  if (errno !== undefined && isDiskFull({ errno, message: e.message }, dir, 0)) return 'TIDEPOOL_DISK_FULL';
  return undefined;
}
