// Keeps a truncated data.mdb from killing the process.
//
// LMDB reads its pages through a memory map. A data.mdb cut short (a damaged disk, a
// bad copy) leaves pages of the map with no file behind them, and the first read of
// one is a SIGBUS. So before the first open of an environment in a process we read
// LMDB's meta pages ourselves and, if the file is shorter than the last page they
// name, extend it with zeros (O_APPEND, so a concurrent writer's pages are never
// overwritten): LMDB then reads zero pages, which it rejects as corrupted, and those
// errors reach the caller as TIDEPOOL_CORRUPT_* errors.
//
// A valid file can also be a little shorter than its last page (pages allocated and
// freed in one transaction are never written); zeros there are free pages nobody reads.
//
// Meta page layout (lmdb-js's LMDB fork, little-endian): a 24-byte page header (pgno,
// txnid, pad, flags u16 at 18 with P_META = 0x08), then MDB_meta: magic u32 at 24
// (0xBEEFC0DE), page size u32 at 48 (mm_dbs[0].md_pad), last page u64 at 144. Metas sit
// at 0 and psize (plus psize/2 with overlappingSync, the default for synced envs).
import { appendFileSync, closeSync, fstatSync, openSync, readSync } from 'node:fs';
import { join } from 'node:path';

const MAGIC = 0xbeefc0de;
const P_META = 0x08;

/** The size data.mdb must have for every page its newest meta names, or undefined if unknown. */
export function neededBytes(head: Buffer): number | undefined {
  const meta = (off: number) =>
    off + 152 <= head.length && head.readUInt32LE(off + 24) === MAGIC && (head.readUInt16LE(off + 18) & P_META) !== 0;
  if (!meta(0)) return undefined;
  const psize = head.readUInt32LE(48);
  if (psize < 512 || psize > 65536 || (psize & (psize - 1)) !== 0) return undefined;
  let last = -1;
  for (const off of [0, psize >> 1, psize]) {
    if (!meta(off)) continue;
    const pg = Number(head.readBigUInt64LE(off + 144));
    if (Number.isSafeInteger(pg) && pg < 2 ** 40) last = Math.max(last, pg);
  }
  return last < 0 ? undefined : (last + 1) * psize;
}

/** The start of `dir`/data.mdb (its meta pages) and the file's size; undefined if there is none. */
function readHead(dir: string): { head: Buffer; size: number } | undefined {
  let fd: number;
  try {
    fd = openSync(join(dir, 'data.mdb'), 'r');
  } catch {
    return undefined; // no environment yet
  }
  try {
    const size = fstatSync(fd).size;
    const head = Buffer.alloc(Math.min(size, 65536 + 160));
    readSync(fd, head, 0, head.length, 0);
    return { head, size };
  } finally {
    closeSync(fd);
  }
}

/** Extends `dir`/data.mdb with zeros up to its last page (see the header). */
export function backLmdbMap(dir: string): void {
  const file = readHead(dir);
  if (!file) return;
  const { size } = file;
  const needed = neededBytes(file.head);
  if (needed === undefined || size >= needed) return;
  const zeros = Buffer.alloc(Math.min(needed - size, 1 << 20));
  for (let left = needed - size; left > 0; left -= zeros.length) {
    appendFileSync(join(dir, 'data.mdb'), left >= zeros.length ? zeros : zeros.subarray(0, left));
  }
}

/**
 * How many records the main database holds by LMDB's newest meta page: one per named
 * database (pages, commits, attempts). Undefined if the head is not an LMDB file.
 * Offsets as above: the main database's MDB_db is mm_dbs[1] at 96, its md_entries at
 * 128; mm_txnid at 152 picks the newest meta.
 */
export function mainDbEntries(head: Buffer): number | undefined {
  if (neededBytes(head) === undefined) return undefined;
  const psize = head.readUInt32LE(48);
  let best: { txnid: bigint; entries: bigint } | undefined;
  for (const off of [0, psize >> 1, psize]) {
    if (off + 160 > head.length || head.readUInt32LE(off + 24) !== MAGIC || (head.readUInt16LE(off + 18) & P_META) === 0) continue;
    const txnid = head.readBigUInt64LE(off + 152);
    if (!best || txnid > best.txnid) best = { txnid, entries: head.readBigUInt64LE(off + 128) };
  }
  return best === undefined ? undefined : Number(best.entries);
}

/**
 * Refuses an environment whose list of named databases LMDB cannot read in full. Its
 * main database (the list) is rewritten by every commit, so its pages are among the
 * newest, at the end of the file: cut off by a truncation they read as zeros, and
 * LMDB then finds no database at all instead of failing. Opening a named database
 * would create it afresh, empty, and the state would look new: every flush silently
 * lost. Call after `open`, before any `openDB`.
 */
export function checkNamedDbs(dir: string, root: { getKeys(range: object): Iterable<unknown> }): void {
  const file = readHead(dir);
  if (!file) return;
  const entries = mainDbEntries(file.head);
  if (!entries) return; // a new environment: nothing is listed yet
  let names: unknown[];
  try {
    names = [...root.getKeys({})];
  } catch (e) {
    throw new Error(`MDB_CORRUPTED: LMDB's list of databases cannot be read (${(e as Error).message})`);
  }
  if (names.length !== entries) {
    throw new Error(`MDB_CORRUPTED: LMDB's list of databases is damaged: its meta page counts ${entries}, ${names.length} can be read${names.length ? ` (${names.join(', ')})` : ''}`);
  }
}
