// The page envelope: every serialized page (spill file and persistent store) is a
// 24-byte header followed by the stored payload. Integers are little-endian.
//
//   0        4     5       6         8            12             16          20        24
//   +--------+-----+-------+---------+------------+--------------+-----------+---------+------------
//   | 'TPPG' | ver | codec |  flags  | rawLength  | storedLength | reserved  | crc32c  | payload ...
//   |  magic | u8  |  u8   |   u16   |    u32     |     u32      | u32 = 0   |   u32   | storedLength
//   +--------+-----+-------+---------+------------+--------------+-----------+---------+ bytes
//
//   crc32c = CRC-32C over header bytes 0..19 followed by the payload, i.e. everything
//            but the crc field itself.
//   flags  = 0, or FLAG_DELTA: the payload is a delta of the page (page-delta.ts), the
//            entries changed since the page's previous stored version, not the page.
//
// Invariants (what decodePage() checks, in this order, before returning a byte):
//   - page.length >= 24, magic is 'TPPG', ver === 1
//   - page.length === 24 + storedLength
//   - crc32c matches (so any single damaged byte, header or payload, is caught here)
//   - flags is 0 or FLAG_DELTA, and reserved === 0; codec 0 means storedLength === rawLength
//     (verifyPage() stops here: it needs no codec and decompresses nothing)
//   - codec is known
//   - decompressing the payload yields exactly rawLength bytes
// Anything else is TIDEPOOL_CORRUPT_PAGE naming table, page and version: never a
// silently wrong value.
//
// A writer stores the payload raw (codec 0) when compression does not make it
// smaller, which also saves the decode time.

import { crc32c } from '@node-rs/crc32';
import { errors } from '../errors.js';
import { CODEC_CUSTOM, CODEC_NONE, type PageCodec } from './codecs.js';

export const PAGE_HEADER_BYTES = 24;
export const PAGE_FORMAT_VERSION = 1;
/** 'TPPG' read as a little-endian u32. */
const MAGIC = 0x47505054;

const OFF_MAGIC = 0;
const OFF_VERSION = 4;
const OFF_CODEC = 5;
/** Where the codec id byte is (a reader that re-encodes a page with its codec). */
export const PAGE_CODEC_OFFSET = OFF_CODEC;
const OFF_FLAGS = 6;
const OFF_RAW = 8;
const OFF_STORED = 12;
const OFF_RESERVED = 16;
const OFF_CRC = 20;

/** The envelope's payload is a page delta (page-delta.ts), not a whole page. */
export const FLAG_DELTA = 1;

export interface PageLocation {
  table: string;
  pageId: number;
  version: number | string;
}

/** Wraps a serialized page body into the envelope, compressed with `codec` if that pays. */
export function encodePage(raw: Uint8Array, codec: PageCodec): Buffer {
  return encodePageInto(raw, codec, (n) => Buffer.allocUnsafe(n)) as Buffer;
}

/**
 * Like encodePage, into memory the caller supplies: `alloc(n)` returns n bytes to
 * write the whole envelope into (a reserved slot of the page ring, so a page is not
 * built in a buffer of its own and copied). Returns the view written.
 */
export function encodePageInto(raw: Uint8Array, codec: PageCodec, alloc: (n: number) => Uint8Array, flags = 0): Uint8Array {
  let payload = raw;
  let codecId = CODEC_NONE;
  if (codec.id !== CODEC_NONE && raw.length > 0) {
    const packed = codec.compress(raw);
    if (packed.length < raw.length) {
      payload = packed;
      codecId = codec.id;
    }
  }
  const dest = alloc(PAGE_HEADER_BYTES + payload.length);
  const page = asBuffer(dest);
  page.writeUInt32LE(MAGIC, OFF_MAGIC);
  page[OFF_VERSION] = PAGE_FORMAT_VERSION;
  page[OFF_CODEC] = codecId;
  page.writeUInt16LE(flags, OFF_FLAGS);
  page.writeUInt32LE(raw.length, OFF_RAW);
  page.writeUInt32LE(payload.length, OFF_STORED);
  page.writeUInt32LE(0, OFF_RESERVED);
  // In place (the codec pool writes an envelope over the frame holding its raw body):
  // an uncompressed payload is already where it belongs.
  if (payload.buffer !== page.buffer || payload.byteOffset !== page.byteOffset + PAGE_HEADER_BYTES) page.set(payload, PAGE_HEADER_BYTES);
  const crc = crc32c(page.subarray(PAGE_HEADER_BYTES), crc32c(page.subarray(0, OFF_CRC)));
  page.writeUInt32LE(crc, OFF_CRC);
  return dest;
}

/**
 * Total size of the page whose header starts `header` (for readers that fetch the
 * header first, e.g. from a spill file), or -1 if it does not start with a valid
 * magic and version. The full page must still go through decodePage().
 */
export function pageTotalLength(header: Uint8Array): number {
  if (header.length < PAGE_HEADER_BYTES) return -1;
  const b = asBuffer(header);
  if (b.readUInt32LE(OFF_MAGIC) !== MAGIC || b[OFF_VERSION] !== PAGE_FORMAT_VERSION) return -1;
  return PAGE_HEADER_BYTES + b.readUInt32LE(OFF_STORED);
}

/**
 * Whether an envelope holds a page delta, read from its header without any check (a
 * reader walking a page's versions uses it to know where the chain ends; decodePage
 * still checks every envelope, flags included, before anything is used).
 */
export function isDeltaEnvelope(page: Uint8Array): boolean {
  return page.length >= PAGE_HEADER_BYTES && (page[OFF_FLAGS]! | (page[OFF_FLAGS + 1]! << 8)) === FLAG_DELTA;
}

function asBuffer(b: Uint8Array): Buffer {
  return Buffer.isBuffer(b) ? b : Buffer.from(b.buffer, b.byteOffset, b.byteLength);
}

function hex(n: number, width: number): string {
  return '0x' + n.toString(16).padStart(width, '0');
}

/**
 * Checks a serialized page and returns its raw body. For codec 0 the result is a
 * view into `page` (no copy): copy it if `page`'s memory gets reused.
 * `codecFor(id)` supplies the codec for the id in the header (see codecResolver()).
 */
export function decodePage(
  page: Uint8Array,
  where: PageLocation,
  codecFor: (id: number) => PageCodec | undefined,
): Uint8Array {
  const b = verifyPage(page, where);
  const bad = (why: string) => errors.corruptPage(where, why);
  const rawLength = b.readUInt32LE(OFF_RAW);
  const payload = b.subarray(PAGE_HEADER_BYTES);
  const codecId = b[OFF_CODEC]!;
  if (codecId === CODEC_NONE) return payload; // verifyPage checked storedLength === rawLength
  const codec = codecFor(codecId);
  if (!codec) {
    if (codecId === CODEC_CUSTOM) {
      throw errors.codec(
        '{ module }',
        `table '${where.table}', page ${where.pageId}, version ${where.version} was written with a custom ` +
          'compression module; open the store with that compression: { module } to read it',
      );
    }
    throw bad(`unknown codec id ${codecId}`);
  }
  let out: Uint8Array;
  try {
    out = codec.decompress(payload, rawLength);
  } catch (err) {
    throw bad(`${codec.name} decompression failed: ${(err as Error)?.message ?? err}`);
  }
  if (!(out instanceof Uint8Array) || out.length !== rawLength) {
    const len = out instanceof Uint8Array ? `${out.length} bytes` : typeof out;
    throw bad(`${codec.name} decompressed to ${len}, header says ${rawLength}`);
  }
  return out;
}

/**
 * The checks of decodePage that need no codec: header, length and CRC-32C (which
 * covers the stored, possibly compressed, payload). Enough to know that a page read
 * back from the spill file is the page written, without decompressing it.
 */
export function verifyPage(page: Uint8Array, where: PageLocation): Buffer {
  const bad = (why: string) => errors.corruptPage(where, why);
  if (page.length < PAGE_HEADER_BYTES) {
    throw bad(`page is ${page.length} bytes, shorter than its ${PAGE_HEADER_BYTES}-byte header`);
  }
  const b = asBuffer(page);
  const magic = b.readUInt32LE(OFF_MAGIC);
  if (magic !== MAGIC) throw bad(`bad magic ${hex(magic, 8)} (expected 'TPPG')`);
  const version = b[OFF_VERSION]!;
  if (version !== PAGE_FORMAT_VERSION) {
    throw bad(`unknown page format version ${version} (this build reads version ${PAGE_FORMAT_VERSION})`);
  }
  const rawLength = b.readUInt32LE(OFF_RAW);
  const storedLength = b.readUInt32LE(OFF_STORED);
  if (page.length !== PAGE_HEADER_BYTES + storedLength) {
    throw bad(`length mismatch: header says ${storedLength} payload bytes, page holds ${page.length - PAGE_HEADER_BYTES}`);
  }
  const payload = b.subarray(PAGE_HEADER_BYTES);
  const want = b.readUInt32LE(OFF_CRC);
  const got = crc32c(payload, crc32c(b.subarray(0, OFF_CRC))) >>> 0;
  if (got !== want) throw bad(`checksum mismatch: stored crc32c ${hex(want, 8)}, computed ${hex(got, 8)}`);
  const flags = b.readUInt16LE(OFF_FLAGS);
  if (flags !== 0 && flags !== FLAG_DELTA) throw bad(`unsupported flags ${hex(flags, 4)}`);
  if (b.readUInt32LE(OFF_RESERVED) !== 0) throw bad('reserved header bytes are not zero');
  if (b[OFF_CODEC] === CODEC_NONE && storedLength !== rawLength) {
    throw bad(`length mismatch: uncompressed page stores ${storedLength} bytes, header says ${rawLength}`);
  }
  return b;
}
