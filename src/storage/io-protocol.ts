// The wire between a page space and the I/O worker.
//
// Data (one SPSC page ring per attached state, owner → I/O worker), one frame each:
//
//   PAGE    | u8 1 | 7 pad | f64 version | f64 pageId | page envelope bytes…       |
//             (the page id sits at FRAME_HEADER, the envelope at FRAME_HEADER + 8)
//   FREE    | u8 2 | 7 pad | f64 version | f64 pageId × n                         |
//   COMMIT  | u8 3 | 7 pad | f64 version | msgpack CommitRecord                    |
//   BODY    | u8 4 | 7 pad | f64 version | f64 pageId | serialized page body…     |
//             (a page for the codec pool to compress and wrap: attach named the codec)
//
// Frames of flush N arrive as PAGE*/BODY*/FREE* then exactly one COMMIT. The I/O worker
// writes them in ring order (a BODY page once the pool gives back its envelope, always
// before the COMMIT after it), so when the COMMIT is durable every page before it is.
//
// Control (a MessagePort per attached state): the owner sends nothing after attach
// except `detach`, and `fetch {stateId, pageId, signal}` for a page a lazy remote
// restore has not copied in yet (answered through the shared `signal`, as the owner
// blocks on it; see IoAttachment.fetchPageSync); the I/O worker answers `durable {version,
// bytes}` or `failed {version, message, diskFull, codec}` for each COMMIT, and `detached`
// once the ring is drained.
import type { CompressionSpec } from '../state/codecs.js';

export const FRAME_PAGE = 1;
export const FRAME_FREE = 2;
export const FRAME_COMMIT = 3;
export const FRAME_BODY = 4;
export const FRAME_HEADER = 16;
/** The largest `codecThreads` (the codec pool's size) accepted. */
export const MAX_CODEC_THREADS = 256;
/** A `fetch` answer's shared buffer: header, then up to FETCH_BYTES of page (a larger page is read from LMDB). */
export const FETCH_HEADER = 16;
export const FETCH_BYTES = 1 << 20;

export interface AttachRequest {
  type: 'attach';
  stateId: string;
  dir: string;
  noSync: boolean;
  retain: number;
  /**
   * Open the state as of this flush version (a checkpoint being restored) instead of
   * the newest: every newer page version and commit record is deleted first.
   */
  restoreVersion?: number;
  ring: SharedArrayBuffer;
  port: import('node:worker_threads').MessagePort;
  /**
   * The state's pages are compressed in the I/O worker's codec pool (BODY frames), with
   * this codec (a `{ module }` path already absolute). There is one pool per process,
   * with as many threads as the largest `threads` asked for.
   */
  codecPool?: { spec: CompressionSpec; name: string; threads: number };
}

export type IoReply =
  | { type: 'attached'; lastCommit: unknown; cleaned: number }
  | { type: 'durable'; version: number; bytes: number }
  | { type: 'failed'; version: number; message: string; diskFull?: boolean; dir?: string; codec?: string }
  | { type: 'detached' }
  | { type: 'error'; message: string; code?: IoErrorCode };

/** How an attach failed, when it is one of the stable cases. */
export type IoErrorCode = 'TIDEPOOL_CORRUPT_STATE' | 'TIDEPOOL_CORRUPT_PAGE' | 'TIDEPOOL_DISK_FULL';

export function frameHeader(buf: Uint8Array, type: number, version: number): DataView {
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  buf[0] = type;
  dv.setFloat64(8, version, true);
  return dv;
}

export function readFrameHeader(frame: Uint8Array): { type: number; version: number; dv: DataView } {
  const dv = new DataView(frame.buffer, frame.byteOffset, frame.byteLength);
  return { type: frame[0]!, version: dv.getFloat64(8, true), dv };
}

/** LMDB environment options shared by every thread that opens a state directory. */
export function envOptions(dir: string, noSync: boolean) {
  // noSubdir: false — lmdb-js would otherwise treat a directory name with a dot as a file.
  // useWritemap: false (lmdb-js's default, pinned here) — pages are written with pwrite
  // and the map is read-only, so a full disk fails a commit with an error instead of
  // killing the process with SIGBUS on a store into a map page with no block behind it.
  // pageSize: LMDB_PAGE_BYTES for new environments (an existing one keeps its own).
  return { path: dir, maxDbs: 8, noSync, compression: false, noSubdir: false, useWritemap: false, pageSize: LMDB_PAGE_BYTES } as const;
}
/**
 * LMDB's page size for new state directories. With LMDB's default 4 KiB pages every
 * tidepool page (16 KiB by default) is an overflow value needing a run of 5 contiguous
 * free pages, and as GC frees old versions the free list fragments: at 1 GB of state
 * each checkpoint took longer than the last (2.9 → 15.5 s durable). With 32 KiB pages
 * a page of up to ~16.3 KB fits in a leaf (LMDB's largest inline value is about half a
 * page), and the same checkpoints took 4.0–7.0 s (perf/RESULTS.md, "LMDB page size").
 * 64 KiB was faster still but aborted inside lmdb-js on a full disk; 32 KiB passes the
 * disk-full tests. The cost is coarser files for tiny states (~1.2 MB for 99 KB).
 */
export const LMDB_PAGE_BYTES = 32768;
export const PAGES_DB = 'pages';
export const COMMITS_DB = 'commits';
export const ATTEMPTS_DB = 'attempts';
