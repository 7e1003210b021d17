// A key range of the LMDB `pages` database that holds records of another kind, addressed
// as if it were a database of its own: key [state, ...rest] is stored as
// [state, tag, ...rest]. Page keys are [state, pageId, version] with numeric page ids,
// and ordered-binary sorts a string after every number, so a state's tagged records sit
// after all of its pages and no page range ([state, -1, 0] .. [state, MAX, 0]) sees them.
//
// Why not named databases of their own: with two more named databases in the
// environment, the disk-full retry test (test/store-disk-full.test.ts) crashed inside
// LMDB — heap corruption after ENOSPC, "malloc(): corrupted top size" in
// mdb_page_alloc on lmdb-js's write thread — in 8 of 40 runs four at a time, even with
// the two databases only opened and never written; 0 of 32 without them. Keeping the
// environment's set of databases unchanged avoids that LMDB path altogether.
import type { Database, Transaction } from 'lmdb';

type Key = [string, ...number[]];
/** A tagged key as stored: [state, tag, ...rest]. */
type StoredKey = (string | number)[];
interface Range {
  start?: Key;
  end?: Key;
  transaction?: Transaction;
  limit?: number;
}

export interface ValueCodec<V> {
  encode(v: V): Buffer;
  decode(b: Buffer): V;
}

export const bytesCodec: ValueCodec<Buffer> = { encode: (b) => b, decode: (b) => b };

/** Ascending integers (page versions) as little-endian float64s. */
export const versionsCodec: ValueCodec<number[]> = {
  encode: (vs) => {
    const b = Buffer.allocUnsafe(vs.length * 8);
    vs.forEach((v, i) => b.writeDoubleLE(v, i * 8));
    return b;
  },
  decode: (b) => {
    if (b.length % 8 !== 0) throw new Error(`its list of delta versions is ${b.length} bytes, not a multiple of 8`);
    const out: number[] = [];
    for (let off = 0; off < b.length; off += 8) out.push(b.readDoubleLE(off));
    return out;
  },
};

/** The highest string a tag is compared with: after every tagged key of a state. */
const AFTER = '\uffff';

export class Keyspace<V> {
  constructor(
    private readonly db: Database<Buffer, StoredKey>,
    private readonly tag: string,
    private readonly codec: ValueCodec<V>,
  ) {}

  private stored(key: Key): StoredKey {
    return [key[0], this.tag, ...key.slice(1)];
  }

  private unstored(key: unknown[]): Key {
    return [key[0] as string, ...(key.slice(2) as number[])];
  }

  get(key: Key, transaction?: Transaction): V | undefined {
    const raw = (this.db.get as (k: unknown[], o?: { transaction: Transaction }) => Buffer | undefined)(this.stored(key), transaction ? { transaction } : undefined);
    return raw === undefined ? undefined : this.codec.decode(raw);
  }

  put(key: Key, value: V): Promise<boolean> {
    return this.db.put(this.stored(key), this.codec.encode(value));
  }

  putSync(key: Key, value: V): void {
    this.db.putSync(this.stored(key), this.codec.encode(value));
  }

  remove(key: Key): Promise<boolean> {
    return this.db.remove(this.stored(key));
  }

  /**
   * Keys within [start, end) of one state; with neither, every state's (a scan of the
   * whole database that skips each state's pages: for tests and tools, not hot paths).
   */
  *getKeys(range: Range = {}): Iterable<Key> {
    if (range.start === undefined && range.end === undefined) {
      for (const e of this.everyState(range.transaction)) yield e.key;
      return;
    }
    for (const key of this.db.getKeys({ ...this.bounds(range), transaction: range.transaction, limit: range.limit })) yield this.unstored(key as unknown[]);
  }

  *getRange(range: Range = {}): Iterable<{ key: Key; value: V }> {
    if (range.start === undefined && range.end === undefined) {
      yield* this.everyState(range.transaction);
      return;
    }
    for (const { key, value } of this.db.getRange({ ...this.bounds(range), transaction: range.transaction, limit: range.limit })) {
      yield { key: this.unstored(key as unknown[]), value: this.codec.decode(value) };
    }
  }

  /** A range of one state's tagged keys as stored (a missing end: the rest of the tag). */
  private bounds(range: Range): { start: StoredKey; end: StoredKey } {
    const state = (range.start ?? range.end)![0];
    return {
      start: range.start ? this.stored(range.start) : [state, this.tag],
      end: range.end ? this.stored(range.end) : [state, this.tag, AFTER],
    };
  }

  private *everyState(transaction?: Transaction): Iterable<{ key: Key; value: V }> {
    let from: StoredKey = [];
    for (;;) {
      let state: string | undefined;
      for (const k of this.db.getKeys({ start: from, limit: 1, transaction })) state = (k as unknown[])[0] as string;
      if (state === undefined) return;
      yield* this.getRange({ start: [state], transaction });
      from = [state, AFTER]; // past this state's pages and tagged records
    }
  }
}
