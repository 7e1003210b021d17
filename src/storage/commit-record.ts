// Commit records carry a checksum, like pages (storage rule 6).
//
// A record is stored as a msgpack map (lmdb-js's 'msgpack' encoding, so that other
// readers of the commits database keep working); `check` is the CRC-32C of our own
// msgpack encoding of the record without it. A reader re-encodes what it decoded and
// compares: a damaged byte anywhere in the record changes a field, the structure or
// the check. Records written before checks existed have no `check` and only known
// keys; a key we do not know (a damaged key name, `check` itself among them) is damage.
//
// Readers take the stored bytes raw (a 'binary' handle on the same database) and
// decode them here: lmdb-js decodes a value in its shared read buffer, where a damaged
// length header reads past the value into stale bytes — a 1-byte damaged record took
// 20 s to decode that way. msgpackr on the exact bytes fails at once.
import { crc32c } from '@node-rs/crc32';
import { errors } from '../errors.js';
import { packr } from '../state/values.js';
import type { CommitRecord } from './backend.js';

const KNOWN = new Set(['format', 'version', 'time', 'nextPageId', 'livePages', 'pageSize', 'codec', 'tables', 'pagesWritten', 'bytesWritten', 'gcWritten', 'gcFreed', 'gcDeltas', 'check']);

function checkOf(record: object): number {
  return crc32c(packr.pack(record)) >>> 0;
}

/** Adds `check` (last, after every other field is final). */
export function sealCommit(record: CommitRecord): CommitRecord {
  const sealed = { ...record };
  delete sealed.check;
  sealed.check = checkOf(sealed);
  return sealed;
}

const isId = (n: unknown) => typeof n === 'number' && Number.isSafeInteger(n) && n >= 0;

/** Decodes and verifies the raw bytes of a stored record (see verifyCommit). */
export function decodeCommit(raw: Uint8Array, stateId: string, version: number | string, dir: string): CommitRecord {
  let value: unknown;
  try {
    value = packr.unpack(raw);
  } catch (e) {
    throw errors.corruptState(`commit record of flush ${version} of state '${stateId}'`, dir, `not msgpack: ${(e as Error).message}`);
  }
  return verifyCommit(value, stateId, version, dir);
}

/**
 * The version in a raw attempts record, or undefined if it is damaged (a record is a
 * msgpack unsigned integer: lmdb-js writes a number that way).
 */
export function decodeAttempt(raw: Uint8Array): number | undefined {
  let v: unknown;
  try {
    v = packr.unpack(raw);
  } catch {
    return undefined;
  }
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0 ? v : undefined;
}

/** The record if it is intact; a TIDEPOOL_CORRUPT_STATE error naming it otherwise. */
export function verifyCommit(value: unknown, stateId: string, version: number | string, dir: string): CommitRecord {
  const bad = (why: string) => errors.corruptState(`commit record of flush ${version} of state '${stateId}'`, dir, why);
  if (value === null || typeof value !== 'object' || Array.isArray(value)) throw bad(`not a record (${typeof value})`);
  const v = value as Record<string, unknown>;
  for (const k of Object.keys(v)) if (!KNOWN.has(k)) throw bad(`unknown field ${JSON.stringify(k)}`);
  if ('check' in v) {
    const { check, ...rest } = v;
    const got = checkOf(rest);
    if (got !== check) throw bad(`checksum mismatch: stored ${String(check)}, computed ${got}`);
  }
  const tables = v.tables as Record<string, unknown> | undefined;
  const tablesOk = tables !== null && typeof tables === 'object' && Object.values(tables).every((t) => {
    const r = t as { root?: unknown; size?: unknown } | null;
    return r !== null && typeof r === 'object' && isId(r.root) && isId(r.size);
  });
  if (v.format !== 1 || !isId(v.version) || !isId(v.nextPageId) || !isId(v.pageSize) || typeof v.codec !== 'string' || !tablesOk) {
    throw bad('unexpected content');
  }
  if (typeof version === 'number' && v.version !== version) throw bad(`it says flush ${String(v.version)}`);
  return v as unknown as CommitRecord;
}
