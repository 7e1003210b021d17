// The objects remote checkpoints are made of.
//
// Under `state.remote.prefix`, one folder per flow (`<prefix><flow>/`, as a --state root
// has one directory per flow), holding:
//   checkpoints/chk-<id>.json              one per checkpoint, written last, conditionally:
//                                          the local manifest, and per state partition the
//                                          flush version and the pack objects holding it
//   state/<stateId>/<v>-<run>-<n>.pack
//                                          page versions and commit records of one state
//                                          partition, many pages per object (a 16 KiB page
//                                          per blob would make uploads request-bound)
//
// A pack (format 2) is laid out for ranged reads, so a restore can fetch one page
// without the rest:
//
//   u32 'TPK2' | u32 n | index: n bytes of msgpack | u32 CRC-32C of the index |
//   page and commit-record bytes… | u32 CRC-32C of everything before
//
// The index lists [pageId, version, offset, length] per page (ascending page ids) and
// [version, offset, length] per commit record, offsets from the end of the index. The
// checkpoint object records each pack's first and last page id and index size, so a
// reader finds the pack of a page without listing anything. Pages and commit records
// are stored exactly as in LMDB (their own envelopes and checksums): a ranged read of
// one page is checked by the usual page checks on first use, a whole pack by its CRC.
// Format 1 (msgpack { format, stateId, pages, commits } + CRC, no index) is still read.
import { crc32c } from '@node-rs/crc32';
import { pack, unpack } from 'msgpackr';
import { errors } from '../../errors.js';
import type { Manifest } from '../../runtime/checkpoints.js';

export interface Pack {
  format: 1;
  stateId: string;
  pages: [pageId: number, version: number, bytes: Uint8Array][];
  commits: [version: number, bytes: Uint8Array][];
}

/** Where a format-2 pack's pages are: its first and last page id, and the bytes up to its data. */
export type PackRange = [first: number, last: number, headBytes: number];

export interface PackIndex {
  stateId: string;
  /** Per page: id, version, and where its bytes are (from the end of the index). */
  pages: [pageId: number, version: number, offset: number, length: number][];
  commits: [version: number, offset: number, length: number][];
}

/** Per state partition: the flush a checkpoint restores and the objects that hold its pages. */
export interface RemoteState {
  version: number;
  /** Pack objects, base first: together they hold the newest version ≤ `version` of every page. */
  objects: string[];
  /** Per object, where its pages are (absent if any object is a format-1 pack: no lazy restore). */
  ranges?: PackRange[];
  /** Incremental uploads since the last full one (a full upload resets it). */
  increments: number;
}

export interface RemoteCheckpoint {
  format: 1;
  id: number;
  time: number;
  /** The manifest as written locally, checksum included. */
  manifest: Manifest & { crc?: number };
  states: Record<string, RemoteState>;
  /** Bytes uploaded for this checkpoint (its new packs). */
  bytesUploaded: number;
  crc?: number;
}

export const CHECKPOINTS = 'checkpoints/';
export const STATE = 'state/';
export const checkpointName = (id: number) => `${CHECKPOINTS}chk-${String(id).padStart(10, '0')}.json`;
const CHECKPOINT_NAME = /chk-(\d+)\.json$/;
export const checkpointIdOf = (name: string): number | undefined => {
  const m = CHECKPOINT_NAME.exec(name);
  return m ? Number(m[1]) : undefined;
};

const MAGIC = 0x324b5054; // 'TPK2', little-endian

/**
 * Builds one format-2 pack. Page bytes are copied once, straight into the object's
 * buffer (the caller may pass LMDB's reused read buffer), after room kept for the
 * index; `finish` writes the index into that room, right before the data, so the body
 * is a view of the same buffer — no second copy of 8 MiB per pack.
 */
export class PackWriter {
  private buf: Buffer;
  private at: number;
  private readonly index: PackIndex;
  private readonly start: number;

  /**
   * `capacity`: the page bytes expected (it grows past them if need be). `reuse`: the
   * buffer of an earlier pack whose upload is over (fresh 8 MiB buffers cost page faults).
   */
  constructor(stateId: string, capacity: number, reuse?: Buffer) {
    this.index = { stateId, pages: [], commits: [] };
    // An index entry is at most ~30 bytes of msgpack; a 16 KiB page's is ~20.
    this.start = 12 + 4096 + (capacity >> 9);
    const size = this.start + capacity + 4;
    this.buf = reuse && reuse.length >= size ? reuse : Buffer.allocUnsafe(size);
    this.at = this.start;
  }

  /** The whole buffer the pack is written in (to reuse once its upload is over). */
  get buffer(): Buffer {
    return this.buf;
  }

  /** Page bytes added so far. */
  get bytes(): number {
    return this.at - this.start;
  }

  get pages(): number {
    return this.index.pages.length;
  }

  /** Pages go in ascending page id order. */
  addPage(pageId: number, version: number, bytes: Uint8Array): void {
    this.index.pages.push([pageId, version, this.bytes, bytes.length]);
    this.append(bytes);
  }

  addCommit(version: number, bytes: Uint8Array): void {
    this.index.commits.push([version, this.bytes, bytes.length]);
    this.append(bytes);
  }

  private append(bytes: Uint8Array): void {
    if (this.at + bytes.length + 4 > this.buf.length) {
      const grown = Buffer.allocUnsafe(Math.max(this.buf.length * 2, this.at + bytes.length + 4));
      this.buf.copy(grown, 0, 0, this.at);
      this.buf = grown;
    }
    this.buf.set(bytes, this.at);
    this.at += bytes.length;
  }

  finish(): { body: Buffer; range: PackRange } {
    const head = pack(this.index);
    const headBytes = 8 + head.length + 4;
    let out: Buffer;
    if (headBytes <= this.start) {
      out = this.buf.subarray(this.start - headBytes, this.at + 4);
    } else {
      // More index than the room kept (very many small pages): one copy after all.
      out = Buffer.allocUnsafe(headBytes + this.bytes + 4);
      this.buf.copy(out, headBytes, this.start, this.at);
    }
    out.writeUInt32LE(MAGIC, 0);
    out.writeUInt32LE(head.length, 4);
    head.copy(out, 8);
    out.writeUInt32LE(crc32c(head), 8 + head.length);
    const end = out.length - 4;
    out.writeUInt32LE(crc32c(out.subarray(0, end)), end);
    const pages = this.index.pages;
    const first = pages.length ? pages[0]![0] : 0;
    const last = pages.length ? pages.at(-1)![0] : -1;
    return { body: out, range: [first, last, headBytes] };
  }
}

/** The index of a format-2 pack from its first `headBytes` bytes (its range entry says how many). */
export function decodePackIndex(head: Buffer, where: string): PackIndex {
  if (head.length < 12 || head.readUInt32LE(0) !== MAGIC) throw errors.corruptState('remote pack', where, 'not an indexed pack');
  const n = head.readUInt32LE(4);
  if (head.length < 12 + n) throw errors.corruptState('remote pack', where, 'its index is truncated');
  const body = head.subarray(8, 8 + n);
  if (crc32c(body) !== head.readUInt32LE(8 + n)) throw errors.corruptState('remote pack', where, 'the checksum of its index does not match');
  const index = unpack(body) as PackIndex;
  if (!Array.isArray(index?.pages) || !Array.isArray(index.commits)) throw errors.corruptState('remote pack', where, 'unexpected index');
  return index;
}

/** Page `pageId` in a pack index (ascending page ids), or undefined. */
export function findPage(index: PackIndex, pageId: number): PackIndex['pages'][number] | undefined {
  let lo = 0;
  let hi = index.pages.length - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >>> 1;
    const e = index.pages[mid]!;
    if (e[0] === pageId) return e;
    if (e[0] < pageId) lo = mid + 1;
    else hi = mid - 1;
  }
  return undefined;
}

export function decodePack(bytes: Buffer, where: string): Pack {
  if (bytes.length < 4) throw errors.corruptState('remote pack', where, 'truncated');
  const body = bytes.subarray(0, bytes.length - 4);
  if (crc32c(body) !== bytes.readUInt32LE(bytes.length - 4)) throw errors.corruptState('remote pack', where, 'its checksum does not match');
  if (bytes.readUInt32LE(0) === MAGIC) {
    const index = decodePackIndex(bytes, where);
    const start = 12 + bytes.readUInt32LE(4);
    const at = (offset: number, length: number) => bytes.subarray(start + offset, start + offset + length);
    return {
      format: 1,
      stateId: index.stateId,
      pages: index.pages.map(([pageId, version, offset, length]) => [pageId, version, at(offset, length)]),
      commits: index.commits.map(([version, offset, length]) => [version, at(offset, length)]),
    };
  }
  const p = unpack(body) as Pack;
  if (p?.format !== 1 || !Array.isArray(p.pages) || !Array.isArray(p.commits)) throw errors.corruptState('remote pack', where, 'unexpected content');
  return p;
}

export function encodeCheckpoint(c: RemoteCheckpoint): Buffer {
  const { crc: _, ...body } = c;
  return Buffer.from(JSON.stringify({ ...body, crc: crc32c(Buffer.from(JSON.stringify(body))) }));
}

export function decodeCheckpoint(bytes: Buffer, where: string): RemoteCheckpoint {
  let c: RemoteCheckpoint;
  try {
    c = JSON.parse(bytes.toString('utf8')) as RemoteCheckpoint;
  } catch (e) {
    throw errors.corruptState('remote checkpoint', where, (e as Error).message);
  }
  const { crc, ...body } = c;
  if (c?.format !== 1 || typeof c.states !== 'object' || crc !== crc32c(Buffer.from(JSON.stringify(body)))) {
    throw errors.corruptState('remote checkpoint', where, 'unexpected content or checksum mismatch');
  }
  return c;
}
