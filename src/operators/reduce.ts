// reduce: one accumulator per key, `fn(acc, record)`, each new accumulator emitted as
// `{ key, value }`.
//
// Primitive accumulators (counts, sums, strings) live in a write-back cache in front of
// the B+tree, so a cached key costs a Map lookup instead of a tree descent, a key
// encoding and a msgpack round trip:
// - String and number keys are cached by the key itself: a hit neither encodes the key
//   nor hashes it to its key group (the encoding is made once, on the miss that brings the
//   key in, and kept for the write-back). A Map tells such keys apart exactly as their
//   encoding does (distinct strings and numbers encode differently; -0 encodes as 0, and
//   a Map takes them as one too). Other keys (tuples, bigints, booleans, bytes) are
//   cached by their encoding, whose type tag never matches a string's or a number's.
// - Entries stay cached across checkpoints: a snapshot writes back only the entries that
//   changed since the last one, and keeps them, now clean.
// - When the cache is full, a CLOCK sweep drops the entries not used again since they
//   came in or since the previous sweep (writing back the changed ones); if that frees
//   less than a quarter, the oldest go too, down to half.
// - At most MAX_DIRTY entries are changed and not written back: past that, the entries
//   changed longest ago are written back while records flow. A barrier pause writes
//   back the rest, so it never has a full cache to write (at 1M keys that was 70–100 ms
//   of a pause, every few checkpoints, when the cache had filled since the last sweep).
// Object accumulators always go through the tree, which hands out fresh copies (a
// buffered emitted record must not change when the next record mutates the accumulator).
import type { LogicalOperator } from '../flow/types.js';
import { fromStored, toStored } from '../state/values.js';
import { KeyedRuntime, notAsync, userError, type Emit, type OperatorInstance, type StepEnv } from './keyed.js';

/** Accumulators cached per reduce instance (by count; a primitive and its key are small). */
export const HOT_KEYS = 65536;
/**
 * Changed accumulators that may wait for a barrier. A write-back into a resident page
 * costs ~1.5 µs at 1M keys, so a barrier writes back at most ~10 ms of them; a set of
 * hot keys smaller than this (the common case) is written only at barriers.
 */
export const MAX_DIRTY = 6144;

type Primitive = number | string | boolean | bigint | null;

class HotEntry {
  /**
   * Used again since it came in or since the last sweep. A new entry starts unused, so a
   * sweep over keys seen once (many distinct keys, few repeats) frees nearly everything
   * instead of keeping the newest half of them.
   */
  ref = false;
  /** In the write-back queue (it may be clean by now: written by a sweep or a barrier). */
  queued = false;
  constructor(
    public value: Primitive,
    /** The key's element encoding (its state key and group follow from it). */
    public encoded: string,
    /** Changed since it was last written to the tree. */
    public dirty: boolean,
  ) {}
}

const isPrimitive = (v: unknown): v is Primitive => {
  const t = typeof v;
  return v === null || t === 'number' || t === 'string' || t === 'boolean' || t === 'bigint';
};

/** Keys a Map tells apart exactly as tidepool's key encoding does. */
const isRawKey = (k: unknown): k is string | number => typeof k === 'string' || typeof k === 'number';

export function makeReduce(op: LogicalOperator, env: StepEnv, next: Emit, capacity = HOT_KEYS, maxDirty = MAX_DIRTY): OperatorInstance {
  const rt = new KeyedRuntime(op, env, next);
  const engine = rt.engine;
  const table = engine.table(op.name);
  const scope = rt.scope;
  const fn = op.fn as (acc: unknown, r: unknown) => unknown;
  const byKey = new Map<string | number, HotEntry>();
  const byEncoding = new Map<string, HotEntry>();
  const cached = () => byKey.size + byEncoding.size;

  /** Entries a sweep dropped, reused for new keys (a miss allocates nothing). */
  const spare: HotEntry[] = [];
  /**
   * Entries in the order they became dirty (from `head` on). Every dirty entry is in it
   * (dirty ⇒ queued); an entry written back meanwhile stays until it comes up, and is
   * skipped then. So the oldest change goes first without a linked list.
   */
  let queue: HotEntry[] = [];
  let head = 0;
  let dirtyCount = 0;
  const markDirty = (e: HotEntry) => {
    if (!e.dirty) {
      e.dirty = true;
      dirtyCount++;
    }
    if (!e.queued) {
      e.queued = true;
      queue.push(e);
    }
  };
  const store = (e: HotEntry) => {
    table.set(rt.stateKey(e.encoded), e.value);
    e.dirty = false;
    dirtyCount--;
  };
  // Past maxDirty, the oldest two thirds go in one burst: written one at a time between
  // records, each descent found the tree out of the CPU caches (1M keys: 17% more CPU
  // than bursts of 4,096).
  const keep = maxDirty - Math.floor((maxDirty * 2) / 3);
  /** Writes back the oldest changes until `keep` are left. */
  const trim = () => {
    let written = 0;
    while (dirtyCount > keep) {
      const e = queue[head++];
      if (e === undefined) throw new Error(`reduce ${op.name}: ${dirtyCount} changed accumulators but none queued for write-back (internal error)`);
      e.queued = false;
      if (e.dirty) {
        store(e);
        written++;
      }
    }
    if (head > 1024 && head * 2 > queue.length) {
      queue = queue.slice(head);
      head = 0;
    }
    if (written) {
      engine.mutations++;
      env.afterState?.();
    }
  };
  /** An entry leaves the cache without a write-back (its key's state went to the tree). */
  const discard = (e: HotEntry) => {
    if (e.dirty) {
      e.dirty = false;
      dirtyCount--;
    }
    e.value = null;
    spare.push(e);
  };
  const sweep = () => {
    let written = 0;
    const drop = (e: HotEntry) => {
      if (e.dirty) {
        store(e);
        written++;
      }
      discard(e);
    };
    // One pass per map: used entries stay (unmarked), the rest go; then the map is
    // rebuilt from the kept ones (in their order, oldest first), cheaper than deleting
    // most of a large map entry by entry.
    const kept: [Map<string | number, HotEntry>, (string | number)[], HotEntry[]][] = [];
    for (const map of [byKey, byEncoding] as Map<string | number, HotEntry>[]) {
      const keys: (string | number)[] = [];
      const entries: HotEntry[] = [];
      for (const [k, e] of map) {
        if (e.ref) {
          e.ref = false;
          keys.push(k);
          entries.push(e);
        } else {
          drop(e);
        }
      }
      kept.push([map, keys, entries]);
    }
    // Mostly used (less than a quarter freed): the oldest go too, down to half.
    const left = kept.reduce((n, [, keys]) => n + keys.length, 0);
    let excess = left > (capacity * 3) / 4 ? left - Math.floor(capacity / 2) : 0;
    for (const [map, keys, entries] of kept) {
      map.clear();
      let from = 0;
      while (excess > 0 && from < entries.length) {
        drop(entries[from++]!);
        excess--;
      }
      for (let i = from; i < keys.length; i++) map.set(keys[i]!, entries[i]!);
    }
    if (written) {
      engine.mutations++;
      env.afterState?.();
    }
  };

  return {
    push(r, ts) {
      const key = rt.keyOf(r, 0);
      const raw = isRawKey(key);
      let e = raw ? byKey.get(key) : undefined;
      let keySet = false;
      if (e === undefined) {
        rt.setKeyOf(key, r); // validates the key
        keySet = true;
        if (!raw) e = byEncoding.get(scope.element);
      }
      let old: unknown;
      if (e !== undefined) {
        old = e.value;
        e.ref = true;
      } else {
        const stored = table.get(scope.encoded);
        old = stored === undefined ? undefined : fromStored(stored);
      }
      let acc: unknown;
      try {
        acc = fn(old, r);
        if (acc === undefined) throw new TypeError('reduce returned undefined');
        notAsync(op, acc);
      } catch (err) {
        throw userError(op, env, r, err);
      }
      if (isPrimitive(acc)) {
        if (e !== undefined) {
          e.value = acc;
          markDirty(e);
        } else {
          if (cached() >= capacity) sweep();
          e = spare.pop();
          if (e === undefined) e = new HotEntry(acc, scope.element, false);
          else {
            e.value = acc;
            e.encoded = scope.element;
          }
          markDirty(e);
          if (raw) byKey.set(key, e);
          else byEncoding.set(scope.element, e);
        }
        if (dirtyCount > maxDirty) trim();
      } else {
        if (!keySet) rt.setKeyOf(key, r);
        if (e !== undefined) {
          (raw ? byKey : byEncoding).delete(raw ? key : scope.element);
          discard(e); // the object accumulator below supersedes its value
        }
        table.set(scope.encoded, toStored(acc));
        engine.mutations++;
        env.afterState?.();
      }
      next({ key, value: acc }, ts);
    },
    onWatermark(wm) {
      rt.watermark = wm;
    },
    onProcessingTime() {},
    nextProcessingTime: () => Infinity,
    // The changed accumulators go to the tree; the pages they touch stay resident: the
    // snapshot freezes them (a pointer copy) and the task evicts afterwards, when they
    // are clean and dropped for free — instead of serializing them into the spill file
    // inside the pause.
    beforeSnapshot() {
      let written = 0;
      for (const e of byKey.values()) if (e.dirty) store(e), written++;
      for (const e of byEncoding.values()) if (e.dirty) store(e), written++;
      if (written) engine.mutations++;
      // Nothing is dirty now: the queue starts over.
      for (let i = head; i < queue.length; i++) queue[i]!.queued = false;
      queue = [];
      head = 0;
    },
    stats: () => rt.stats(),
  };
}
