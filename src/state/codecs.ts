// Per-page compression codecs.
//
// Every serialized page names its codec by a one-byte id in its header (see
// page-format.ts), so a store reopened with a different `compression` still reads
// the pages written before: the reader looks the page's codec up by id.
//
//     id   name       implementation
//     0    none       identity
//     1    lz4        lz4-napi compressSync/uncompressSync (block, size-prefixed)
//     2    zstd       @bokuweb/zstd-wasm, level 3 (wasm initialised once per thread)
//     3    deflate    node:zlib raw deflate, level 1
//     128  { module } a user module exporting sync compress(bytes) and
//                     decompress(bytes, rawLength); functions cannot cross
//                     threads, a module path can, so each worker loads it itself.
//
// All codecs are synchronous: a page read on a cache miss is synchronous.
// Ids are part of the on-disk format: never renumber them.

import { isAbsolute, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { deflateRawSync, inflateRawSync } from 'node:zlib';
import { createRequire } from 'node:module';
import { errors } from '../errors.js';

// lz4-napi and the zstd wasm module load on first use, not at import: every operator
// worker imports this file, and most never see a compressed page (worker start-up is
// part of every run's fixed cost and of a restore's time to first record).
const require = createRequire(import.meta.url);
type Lz4 = { compressSync(b: Buffer): Buffer; uncompressSync(b: Uint8Array): Buffer };
let lz4Module: Lz4 | undefined;
const lz4Lib = (): Lz4 => (lz4Module ??= require('lz4-napi') as Lz4);
type Zstd = typeof import('@bokuweb/zstd-wasm');
let zstd!: Zstd;

export type CompressionSpec = 'none' | 'lz4' | 'zstd' | 'deflate' | { module: string };

export interface PageCodec {
  readonly id: number;
  readonly name: string;
  compress(raw: Uint8Array): Uint8Array;
  decompress(data: Uint8Array, rawLength: number): Uint8Array;
}

export const CODEC_NONE = 0;
export const CODEC_LZ4 = 1;
export const CODEC_ZSTD = 2;
export const CODEC_DEFLATE = 3;
export const CODEC_CUSTOM = 128;

const ZSTD_LEVEL = 3;
const DEFLATE_LEVEL = 1;

const asBuffer = (b: Uint8Array): Buffer =>
  Buffer.isBuffer(b) ? b : Buffer.from(b.buffer, b.byteOffset, b.byteLength);

const none: PageCodec = {
  id: CODEC_NONE,
  name: 'none',
  compress: (raw) => raw,
  decompress: (data) => data,
};

const lz4: PageCodec = {
  id: CODEC_LZ4,
  name: 'lz4',
  compress: (raw) => lz4Lib().compressSync(asBuffer(raw)),
  decompress: (data, rawLength) => {
    // lz4-napi trusts the block's u32 size prefix and allocates it up front: check it.
    const claimed = data.length >= 4 ? asBuffer(data).readUInt32LE(0) : -1;
    if (claimed !== rawLength) throw new Error(`lz4 size prefix ${claimed} does not match ${rawLength}`);
    return lz4Lib().uncompressSync(data);
  },
};

const deflate: PageCodec = {
  id: CODEC_DEFLATE,
  name: 'deflate',
  compress: (raw) => deflateRawSync(raw, { level: DEFLATE_LEVEL }),
  // maxOutputLength: a damaged stream cannot inflate past the page's raw length (+1
  // so that "too long" is reported as a length mismatch rather than a zlib error).
  decompress: (data, rawLength) => inflateRawSync(data, { maxOutputLength: Math.max(1, rawLength + 1) }),
};

const zstdCodec: PageCodec = {
  id: CODEC_ZSTD,
  name: 'zstd',
  compress: (raw) => zstd.compress(asBuffer(raw), ZSTD_LEVEL),
  decompress: (data, rawLength) => {
    // zstd-wasm allocates the frame's declared content size: check it first.
    const claimed = zstdContentSize(data);
    if (claimed !== -1 && claimed !== rawLength) {
      throw new Error(`zstd frame declares ${claimed} bytes, expected ${rawLength}`);
    }
    return zstd.decompress(asBuffer(data), { defaultHeapSize: rawLength });
  },
};

/** Frame_Content_Size from a zstd frame header (RFC 8878 3.1.1.1), -1 if absent. */
function zstdContentSize(d: Uint8Array): number {
  const b = asBuffer(d);
  if (b.length < 5 || b.readUInt32LE(0) !== 0xfd2fb528) throw new Error('not a zstd frame');
  const fhd = b[4]!;
  const fcsFlag = fhd >> 6;
  const single = (fhd >> 5) & 1;
  const pos = 5 + (single ? 0 : 1) + [0, 1, 2, 4][fhd & 3]!;
  const size = fcsFlag === 0 ? single : [0, 2, 4, 8][fcsFlag]!;
  if (size === 0) return -1;
  if (b.length < pos + size) throw new Error('truncated zstd frame header');
  if (size === 1) return b[pos]!;
  if (size === 2) return b.readUInt16LE(pos) + 256;
  if (size === 4) return b.readUInt32LE(pos);
  return Number(b.readBigUInt64LE(pos));
}

let zstdReady: Promise<void> | undefined;
let zstdInitialised = false;

/** Initialises the zstd wasm module once per thread. */
function initZstd(): Promise<void> {
  zstdReady ??= import('@bokuweb/zstd-wasm').then((m) => (zstd = m).init()).then(
    () => {
      zstdInitialised = true;
    },
    (err: unknown) => {
      zstdReady = undefined;
      throw errors.codec('zstd', `cannot initialise the wasm module: ${(err as Error)?.message ?? err}`);
    },
  );
  return zstdReady;
}

/**
 * Makes every built-in codec usable by codecById(). loadCodec() calls it, so a store
 * configured with, say, 'none' can still read zstd pages written under another config.
 */
export async function prepareBuiltinCodecs(): Promise<void> {
  await initZstd();
}

/**
 * The built-in codec with this id, the `custom` codec for id 128, or undefined.
 * Throws TIDEPOOL_CODEC for zstd before prepareBuiltinCodecs()/loadCodec() ran.
 */
export function codecById(id: number, custom?: PageCodec): PageCodec | undefined {
  switch (id) {
    case CODEC_NONE:
      return none;
    case CODEC_LZ4:
      return lz4;
    case CODEC_DEFLATE:
      return deflate;
    case CODEC_ZSTD:
      if (!zstdInitialised) throw errors.codec('zstd', 'not initialised; await loadCodec() or prepareBuiltinCodecs() first');
      return zstdCodec;
    case CODEC_CUSTOM:
      return custom && custom.id === CODEC_CUSTOM ? custom : undefined;
    default:
      return undefined;
  }
}

/** The `codecFor` lookup for decodePage(): built-ins by id, custom pages via `configured`. */
export function codecResolver(configured: PageCodec): (id: number) => PageCodec | undefined {
  return (id) => (id === configured.id ? configured : codecById(id, configured));
}

/** Resolves a `{ module }` spec: a file URL, an absolute path, or a path relative to cwd. */
export function resolveCodecModule(module: string): string {
  if (module.startsWith('file:')) return fileURLToPath(module);
  return isAbsolute(module) ? module : resolve(process.cwd(), module);
}

type CodecModule = {
  compress?: unknown;
  decompress?: unknown;
  default?: { compress?: unknown; decompress?: unknown };
};

async function loadCustom(module: string): Promise<PageCodec> {
  if (typeof module !== 'string' || module === '') {
    throw errors.badOption('compression', 'module must be a non-empty path string');
  }
  const path = resolveCodecModule(module);
  let mod: CodecModule;
  try {
    mod = (await import(pathToFileURL(path).href)) as CodecModule;
  } catch (err) {
    throw errors.codec(module, `cannot load module ${path}: ${(err as Error)?.message ?? err}`);
  }
  const compress = typeof mod.compress === 'function' ? mod.compress : mod.default?.compress;
  const decompress = typeof mod.decompress === 'function' ? mod.decompress : mod.default?.decompress;
  const missing = [
    typeof compress === 'function' ? '' : 'compress(bytes)',
    typeof decompress === 'function' ? '' : 'decompress(bytes, rawLength)',
  ].filter(Boolean);
  if (missing.length) {
    throw errors.codec(module, `module ${path} must export function${missing.length > 1 ? 's' : ''} ${missing.join(' and ')}`);
  }
  const c = compress as (b: Uint8Array) => unknown;
  const d = decompress as (b: Uint8Array, n: number) => unknown;
  const check = (fn: string, out: unknown): Uint8Array => {
    if (out instanceof Uint8Array) return out;
    const got = out && typeof out === 'object' && 'then' in out ? 'a Promise (it must be synchronous)' : typeof out;
    throw errors.codec(module, `${fn}() in ${path} returned ${got}, expected a Uint8Array`);
  };
  return {
    id: CODEC_CUSTOM,
    name: module,
    compress: (raw) => check('compress', c(raw)),
    decompress: (data, rawLength) => check('decompress', d(data, rawLength)),
  };
}

/**
 * Loads the codec a `compression` option names, and readies the built-ins for reading
 * pages written under another setting — unless `older` is false: state that starts
 * empty holds only pages of this codec (a fresh run's instances skip the zstd wasm).
 */
export async function loadCodec(spec: CompressionSpec, older = true): Promise<PageCodec> {
  if (older || spec === 'zstd') await prepareBuiltinCodecs();
  switch (spec) {
    case 'none':
      return none;
    case 'lz4':
      return lz4;
    case 'zstd':
      return zstdCodec;
    case 'deflate':
      return deflate;
  }
  if (spec && typeof spec === 'object' && 'module' in spec) return loadCustom(spec.module);
  throw errors.badOption(
    'compression',
    `expected 'none' | 'lz4' | 'zstd' | 'deflate' | { module: string }, got ${JSON.stringify(spec) ?? String(spec)}`,
  );
}
