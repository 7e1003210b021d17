// Order-preserving key encoding.
//
// A key is encoded into a JS "binary string": every char code is 0..255 and stands
// for one byte. The B+tree keeps these strings in memory and compares them with the
// native `<`, so the one invariant this file exists for is
//
//     encodeKey(a) < encodeKey(b)   <=>   a sorts before b
//     encodeKey(a) === encodeKey(b) <=>   a and b are the same key
//
// Key order: by type, then by value:
//     booleans (false < true) < numbers (numeric) < bigints (numeric)
//       < strings (UTF-8 bytes) < byte arrays (bytewise) < tuples (element by element,
//       a prefix sorts first)
//
// Element layout (every element is self-delimiting, so a tuple is a concatenation):
//
//     END     00                              closes a tuple; below every tag
//     false   01
//     true    02
//     number  03 b0..b7                       IEEE-754 big-endian; sign >= 0: flip the
//                                             sign bit, sign < 0: invert all 8 bytes
//     bigint  04 ~len ~mag                    negative: length and magnitude inverted
//             05                              zero
//             06 len mag                      positive: len = 1 byte n (n < 255) or
//                                             FF + u32be n; mag = n bytes big-endian,
//                                             no leading zero byte
//     string  07 utf8* 00 00                  a 00 byte inside is escaped as 00 FF
//     bytes   08 bytes* 00 00                 same escaping
//     tuple   09 element* 00
//
// A tuple that starts with elements e1..ek is exactly an encoding that starts with
// 09 enc(e1)..enc(ek); the byte after that prefix is a tag or END (< FF), which gives
// prefixBounds(): [09 enc(e1..ek), 09 enc(e1..ek) FF).

import { errors } from '../errors.js';

export type Key = string | number | bigint | boolean | Uint8Array | readonly Key[];

/** Default limit on the encoded size of one key, in bytes. */
export const MAX_KEY_BYTES = 1024;
/** Deepest tuple nesting accepted (also what stops cyclic arrays). */
export const MAX_TUPLE_DEPTH = 32;

const T_END = 0x00;
const T_FALSE = 0x01;
const T_TRUE = 0x02;
const T_NUMBER = 0x03;
const T_BIGINT_NEG = 0x04;
const T_BIGINT_ZERO = 0x05;
const T_BIGINT_POS = 0x06;
const T_STRING = 0x07;
const T_BYTES = 0x08;
const T_TUPLE = 0x09;

const S_FALSE = '\x01';
const S_TRUE = '\x02';
const S_STRING = '\x07';
const S_BYTES = '\x08';
const S_TUPLE = '\x09';
const S_END = '\x00';
const S_TERM = '\x00\x00';

// Shared scratch for numbers; Float64Array is in platform byte order.
const f64 = new Float64Array(1);
const u8 = new Uint8Array(f64.buffer);
const LE = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

const NUL_RE = /\0/g;
const ESCAPED_NUL_RE = /\0\xff/g;
const HIGH_RE = /[\x80-\xff]/;

function encodeNumber(n: number): string {
  f64[0] = n === 0 ? 0 : n; // -0 -> 0
  let b0, b1, b2, b3, b4, b5, b6, b7;
  if (LE) {
    b0 = u8[7]!; b1 = u8[6]!; b2 = u8[5]!; b3 = u8[4]!; b4 = u8[3]!; b5 = u8[2]!; b6 = u8[1]!; b7 = u8[0]!;
  } else {
    b0 = u8[0]!; b1 = u8[1]!; b2 = u8[2]!; b3 = u8[3]!; b4 = u8[4]!; b5 = u8[5]!; b6 = u8[6]!; b7 = u8[7]!;
  }
  if (b0 & 0x80) {
    b0 ^= 0xff; b1 ^= 0xff; b2 ^= 0xff; b3 ^= 0xff; b4 ^= 0xff; b5 ^= 0xff; b6 ^= 0xff; b7 ^= 0xff;
  } else {
    b0 |= 0x80;
  }
  return String.fromCharCode(T_NUMBER, b0, b1, b2, b3, b4, b5, b6, b7);
}

function decodeNumber(enc: string, p: number): number {
  const neg = (enc.charCodeAt(p) & 0x80) === 0;
  for (let i = 0; i < 8; i++) {
    let b = enc.charCodeAt(p + i);
    if (neg) b ^= 0xff;
    else if (i === 0) b ^= 0x80;
    u8[LE ? 7 - i : i] = b;
  }
  return f64[0]!;
}

function encodeLength(n: number): string {
  if (n < 0xff) return String.fromCharCode(n);
  return String.fromCharCode(0xff, (n >>> 24) & 0xff, (n >>> 16) & 0xff, (n >>> 8) & 0xff, n & 0xff);
}

function invert(s: string): string {
  let out = '';
  for (let i = 0; i < s.length; i++) out += String.fromCharCode(0xff ^ s.charCodeAt(i));
  return out;
}

function encodeBigint(v: bigint): string {
  if (v === 0n) return '\x05';
  const neg = v < 0n;
  let hex = (neg ? -v : v).toString(16);
  if (hex.length & 1) hex = '0' + hex;
  let mag = '';
  for (let i = 0; i < hex.length; i += 2) mag += String.fromCharCode(parseInt(hex.slice(i, i + 2), 16));
  const body = encodeLength(mag.length) + mag;
  return neg ? '\x04' + invert(body) : '\x06' + body;
}

function escapeBinary(bin: string): string {
  return bin.indexOf('\0') === -1 ? bin : bin.replace(NUL_RE, '\0\xff');
}

function isWellFormed(s: string): boolean {
  const f = (s as { isWellFormed?: () => boolean }).isWellFormed;
  if (f) return f.call(s);
  return !/[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/.test(s);
}

function encodeString(s: string, where: string): string {
  // Hot path: ASCII without NUL is its own UTF-8 encoding.
  let i = 0;
  const n = s.length;
  for (; i < n; i++) {
    const c = s.charCodeAt(i);
    if (c === 0 || c > 0x7f) break;
  }
  if (i === n) return S_STRING + s + S_TERM;
  if (!isWellFormed(s)) throw errors.badKey(`string${where} contains a lone surrogate`);
  return S_STRING + escapeBinary(Buffer.from(s, 'utf8').toString('latin1')) + S_TERM;
}

function encodeBytes(b: Uint8Array): string {
  const bin = Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('latin1');
  return S_BYTES + escapeBinary(bin) + S_TERM;
}

function describe(v: unknown): string {
  if (v === null) return 'null';
  if (typeof v !== 'object') return typeof v;
  const name = (v as object).constructor?.name;
  return name && name !== 'Object' ? name : 'object';
}

function at(path: string): string {
  return path ? ` at tuple index ${path}` : '';
}

function encodeElement(v: unknown, path: string, depth: number): string {
  switch (typeof v) {
    case 'string':
      return encodeString(v, at(path));
    case 'number':
      if (v !== v) throw errors.badKey(`NaN is not a valid key${at(path)}`);
      return encodeNumber(v);
    case 'boolean':
      return v ? S_TRUE : S_FALSE;
    case 'bigint':
      return encodeBigint(v);
    case 'undefined':
      throw errors.badKey(path ? `undefined${at(path)}` : 'undefined is not a valid key');
    case 'object':
      if (v instanceof Uint8Array) return encodeBytes(v);
      if (Array.isArray(v)) return encodeTuple(v, path, depth + 1);
      if (v === null) throw errors.badKey(path ? `null${at(path)}` : 'null is not a valid key');
      break;
  }
  const kind = describe(v);
  const hint = ArrayBuffer.isView(v) ? ' (use a Uint8Array)' : '';
  throw errors.badKey(`${kind} is not a valid key type${at(path)}${hint}`);
}

function encodeTuple(arr: readonly unknown[], path: string, depth: number): string {
  if (depth > MAX_TUPLE_DEPTH) {
    throw errors.badKey(`tuples nested deeper than ${MAX_TUPLE_DEPTH} levels${at(path)} (is the array cyclic?)`);
  }
  let out = S_TUPLE;
  for (let i = 0; i < arr.length; i++) {
    out += encodeElement(arr[i], path ? `${path}.${i}` : String(i), depth);
  }
  return out + S_END;
}

/**
 * Encodes a key into an order-preserving binary string. Throws a TypeError
 * (TIDEPOOL_BAD_KEY) naming the problem for anything that is not a valid key or
 * whose encoding is longer than `maxBytes`.
 */
export function encodeKey(key: unknown, maxBytes: number = MAX_KEY_BYTES): string {
  let enc: string;
  if (typeof key === 'string') {
    enc = encodeString(key, '');
  } else if (typeof key === 'number') {
    if (key !== key) throw errors.badKey('NaN is not a valid key');
    if (maxBytes >= 9) return encodeNumber(key);
    enc = encodeNumber(key);
  } else {
    enc = encodeElement(key, '', 0);
  }
  if (enc.length > maxBytes) {
    throw errors.badKey(`key is ${enc.length} bytes, the limit is ${maxBytes}`);
  }
  return enc;
}

class Reader {
  p = 0;
  constructor(readonly s: string) {}
  bad(why: string): never {
    throw errors.badKey(`malformed encoded key at byte ${this.p}: ${why}`);
  }
  need(n: number): void {
    if (this.p + n > this.s.length) this.bad('truncated');
  }
  /** Returns the unescaped binary content of a string/bytes element. */
  escaped(): string {
    const s = this.s;
    const start = this.p;
    let hasEscape = false;
    for (;;) {
      const z = s.indexOf('\0', this.p);
      if (z === -1 || z + 1 >= s.length) this.bad('unterminated string or bytes');
      const next = s.charCodeAt(z + 1);
      if (next === 0) {
        this.p = z + 2;
        const raw = s.slice(start, z);
        return hasEscape ? raw.replace(ESCAPED_NUL_RE, '\0') : raw;
      }
      if (next !== 0xff) {
        this.p = z;
        this.bad('bad escape');
      }
      hasEscape = true;
      this.p = z + 2;
    }
  }
  length(inv: number): number {
    this.need(1);
    const b = this.s.charCodeAt(this.p++) ^ inv;
    if (b < 0xff) return b;
    this.need(4);
    let n = 0;
    for (let i = 0; i < 4; i++) n = n * 256 + (this.s.charCodeAt(this.p++) ^ inv);
    return n;
  }
  element(depth: number): Key {
    this.need(1);
    const tag = this.s.charCodeAt(this.p++);
    switch (tag) {
      case T_FALSE:
        return false;
      case T_TRUE:
        return true;
      case T_NUMBER: {
        this.need(8);
        const v = decodeNumber(this.s, this.p);
        if (v !== v) this.bad('NaN');
        this.p += 8;
        return v;
      }
      case T_BIGINT_ZERO:
        return 0n;
      case T_BIGINT_NEG:
      case T_BIGINT_POS: {
        const inv = tag === T_BIGINT_NEG ? 0xff : 0;
        const n = this.length(inv);
        if (n === 0) this.bad('empty bigint magnitude');
        this.need(n);
        let hex = '';
        for (let i = 0; i < n; i++) hex += ((this.s.charCodeAt(this.p++) ^ inv) | 0x100).toString(16).slice(1);
        const mag = BigInt('0x' + hex);
        return inv ? -mag : mag;
      }
      case T_STRING: {
        const bin = this.escaped();
        return HIGH_RE.test(bin) ? Buffer.from(bin, 'latin1').toString('utf8') : bin;
      }
      case T_BYTES: {
        const bin = this.escaped();
        const out = new Uint8Array(bin.length);
        for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
        return out;
      }
      case T_TUPLE: {
        if (depth >= MAX_TUPLE_DEPTH) this.bad('tuples nested too deep');
        const out: Key[] = [];
        for (;;) {
          this.need(1);
          if (this.s.charCodeAt(this.p) === T_END) {
            this.p++;
            return out;
          }
          out.push(this.element(depth + 1));
        }
      }
      default:
        this.p--;
        return this.bad(`unknown tag 0x${tag.toString(16)}`);
    }
  }
}

/** Exact inverse of encodeKey (numbers come back as numbers, byte arrays as Uint8Array). */
export function decodeKey(enc: string): Key {
  const r = new Reader(enc);
  const key = r.element(0);
  if (r.p !== enc.length) r.bad('trailing bytes');
  return key;
}

/** The bytes an encoded key stands for (latin1), e.g. to write it into a page. */
export function encodedKeyToBytes(enc: string): Buffer {
  return Buffer.from(enc, 'latin1');
}

/** Reads an encoded key back from page bytes [start, end). */
export function bytesToEncodedKey(buf: Uint8Array, start = 0, end = buf.length): string {
  const b = Buffer.isBuffer(buf) ? buf : Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength);
  return b.toString('latin1', start, end);
}

/**
 * The encoded range holding every tuple whose first elements are `prefix`
 * (including the tuple equal to `prefix`): gte <= encodeKey(k) < lt.
 */
export function prefixBounds(prefix: readonly Key[]): { gte: string; lt: string } {
  if (!Array.isArray(prefix)) throw errors.badKey(`prefix must be an array of key elements, got ${describe(prefix)}`);
  const tuple = encodeTuple(prefix, '', 1);
  const gte = tuple.slice(0, -1); // drop END
  return { gte, lt: gte + '\xff' };
}

/** Compares two keys in key order (-1, 0, 1), via their encodings. */
export function compareKeys(a: Key, b: Key): number {
  const ea = encodeKey(a, Infinity);
  const eb = encodeKey(b, Infinity);
  return ea < eb ? -1 : ea > eb ? 1 : 0;
}

const groupEncodings: string[] = [];
/** encodeKey(g) of a key group (the first element of every keyed state key), cached: there are at most `keyGroups` of them. */
export function encodeKeyGroup(g: number): string {
  return (groupEncodings[g] ??= encodeKey(g));
}
