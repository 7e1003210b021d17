// Time-to-live for value and map state (processing time, as in Flink's state TTL).
//
// An entry of a TTL state is stored as [writtenAt, value] (msgpack). Reads of an entry
// older than ttlMs return absent and delete it. Entries of keys never read again are
// removed incrementally: every access of the state also looks at the next two entries
// of its table after a cursor (wrapping at the end) and deletes the expired ones, so
// cleanup costs O(1) per access and never a full scan at a checkpoint.
import { packr, type StoredValue } from '../state/values.js';
import type { BTree } from '../state/btree.js';
import type { StateEngine } from '../state/engine.js';

export function wrapTtl(value: StoredValue, now: number): StoredValue {
  return packr.pack([now, value]);
}

/** The stored value inside a TTL entry, or undefined when it expired at `now`. */
export function unwrapTtl(stored: StoredValue, ttlMs: number, now: number): StoredValue | undefined {
  const [at, v] = packr.unpack(stored as Uint8Array) as [number, StoredValue];
  if (now - at >= ttlMs) return undefined;
  return v instanceof Uint8Array ? Buffer.from(v) : v;
}

const SWEEP_PER_ACCESS = 2;

export class TtlSweeper {
  private cursor: string | undefined;
  /** Entries removed because they expired (reads and sweeps). */
  expired = 0;

  constructor(private readonly table: BTree, private readonly engine: StateEngine, readonly ttlMs: number) {}

  /** Looks at the next few entries after the cursor and deletes the expired ones. */
  step(now: number): void {
    let seen = 0;
    const dead: string[] = [];
    for (const [k, v] of this.table.entries(this.cursor === undefined ? { limit: SWEEP_PER_ACCESS } : { gt: this.cursor, limit: SWEEP_PER_ACCESS })) {
      seen++;
      this.cursor = k;
      if (unwrapTtl(v, this.ttlMs, now) === undefined) dead.push(k);
    }
    if (seen < SWEEP_PER_ACCESS) this.cursor = undefined; // wrap around
    for (const k of dead) this.remove(k);
  }

  remove(k: string): void {
    if (this.table.delete(k)) {
      this.engine.mutations++;
      this.expired++;
    }
  }
}
