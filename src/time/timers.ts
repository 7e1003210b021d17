// Timers as keyed state: one ordered table per operator instance and time domain.
//
//   table `<operator>/~timers/event` (and `/processing`):
//     key   [keyGroup, time, key]   (order-preserving encoding: by group, then time)
//     value 0
//
// The key group comes first, as in every state table, so a key group's timers are one
// contiguous range: a checkpoint restored at another parallelism copies them with the
// rest of the group's state. Within a group they are ordered by time, so the group's
// next timer is its first entry. An instance owns at most `keyGroups` groups; it keeps
// the first time of each group in memory (the head), so "is anything due?" is one
// comparison with the minimum, and firing reads only the entries that fire.
//
// Rules: one timer per (key, time) — registering it again is a no-op; a timer fires at
// most once (it is deleted before its callback runs; registering the same (key, time)
// inside the callback registers it anew); timers due at the same time fire in key-group
// then key order. Timers live in the tables, so checkpoints, restore and rescale need
// nothing of their own.
import { encodeKey, encodeKeyGroup, decodeKey, prefixBounds, type Key } from '../state/keys.js';
import type { BTree } from '../state/btree.js';
import type { StateEngine } from '../state/engine.js';

const TUPLE = '\x09';
const END = '\x00';

export interface DueTimer {
  time: number;
  group: number;
  /** The record key (decoded) and its element encoding. */
  key: unknown;
  keyEncoded: string;
}

/** Bound of TimerTable's set of keys known to be registered. */
const KNOWN_MAX = 1 << 16;

/** The timers of one time domain of one operator instance. */
export class TimerTable {
  /** First timer time per owned key group (Infinity: none), indexed by group − from. */
  private readonly heads: Float64Array;
  private min = Infinity;
  private minValid = false;
  /** Timers currently registered (counted at open, then kept up to date). */
  pending = 0;
  /**
   * Per key (element encoding), the time of a timer known to be in the table: a keyed
   * operator registers the same (key, time) for record after record (a window's end,
   * q12's processing-time window), and this spares each repeat encoding the timer's key
   * and a B+tree lookup. Only ever true facts: an entry goes when its timer is deleted
   * or fired, and the whole map when it grows past its bound.
   */
  private readonly known = new Map<string, number>();

  constructor(
    private readonly table: BTree,
    private readonly engine: StateEngine,
    private readonly from: number,
    to: number,
  ) {
    this.heads = new Float64Array(Math.max(0, to - from)).fill(Infinity);
    for (let g = from; g < to; g++) this.heads[g - from] = this.firstTime(g);
    this.pending = table.size;
  }

  private firstTime(g: number): number {
    const b = prefixBounds([g]);
    const k = this.table.firstKey(b.gte, b.lt);
    return k === undefined ? Infinity : ((decodeKey(k) as Key[])[1] as number);
  }

  private static encode(group: number, time: number, keyEncoded: string): string {
    return TUPLE + encodeKeyGroup(group) + encodeKey(time) + keyEncoded + END;
  }

  /** Registers a timer for the key (its element encoding) in `group` at `time`. */
  register(group: number, keyEncoded: string, time: number): void {
    if (this.known.get(keyEncoded) === time) return;
    if (this.known.size >= KNOWN_MAX) this.known.clear();
    this.known.set(keyEncoded, time);
    const k = TimerTable.encode(group, time, keyEncoded);
    if (this.table.has(k)) return;
    this.table.set(k, 0);
    this.engine.mutations++;
    this.pending++;
    const i = group - this.from;
    if (time < this.heads[i]!) {
      this.heads[i] = time;
      if (time < this.min) this.min = time;
    }
  }

  /** Deletes the key's timer at `time`, if any. */
  delete(group: number, keyEncoded: string, time: number): void {
    if (this.known.get(keyEncoded) === time) this.known.delete(keyEncoded);
    if (!this.table.delete(TimerTable.encode(group, time, keyEncoded))) return;
    this.engine.mutations++;
    this.pending--;
    const i = group - this.from;
    if (this.heads[i] === time) {
      this.heads[i] = this.firstTime(group);
      this.minValid = false;
    }
  }

  /** The earliest registered time (Infinity: none). */
  next(): number {
    if (!this.minValid) {
      let m = Infinity;
      for (let i = 0; i < this.heads.length; i++) if (this.heads[i]! < m) m = this.heads[i]!;
      this.min = m;
      this.minValid = true;
    }
    return this.min;
  }

  /** Removes and returns the earliest timer with time ≤ `upTo`, or undefined. */
  pop(upTo: number): DueTimer | undefined {
    let found: string | undefined;
    let gi = 0;
    while (found === undefined) {
      const next = this.next();
      if (next === Infinity || next > upTo) return undefined;
      gi = 0;
      for (let i = 1; i < this.heads.length; i++) if (this.heads[i]! < this.heads[gi]!) gi = i;
      const b = prefixBounds([this.from + gi]);
      found = this.table.firstKey(b.gte, b.lt);
      if (found === undefined) {
        // A head that went stale (cannot happen if every change goes through this class).
        this.heads[gi] = Infinity;
        this.minValid = false;
      }
    }
    const group = this.from + gi;
    const parts = decodeKey(found) as Key[];
    this.table.delete(found);
    this.engine.mutations++;
    this.pending--;
    this.heads[gi] = this.firstTime(group);
    this.minValid = false;
    // The key's element encoding: what follows TUPLE + enc(group) + enc(time), less END.
    const head = TUPLE + encodeKeyGroup(group) + encodeKey(parts[1] as number);
    const keyEncoded = found.slice(head.length, -1);
    if (this.known.get(keyEncoded) === parts[1]) this.known.delete(keyEncoded);
    return { time: parts[1] as number, group, key: parts[2], keyEncoded };
  }
}
