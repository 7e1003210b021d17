// Keyed state as an operator sees it: scoped to the key of the record being processed.
//
// Every state key starts with the record key's key group, then the key itself:
//   value state  `v`:  [keyGroup, key]          in table `<operator>/<v>`
//   map state    `m`:  [keyGroup, key, mapKey]  in table `<operator>/<m>`
//   reduce:            [keyGroup, key]          in table `<operator>`
// so the state of a key group is one contiguous range of every table: a restore at
// another parallelism reads exactly the groups it now owns.
import { encodeKey, encodeKeyGroup, decodeKey, prefixBounds, type Key } from '../state/keys.js';
import { fromStored, toStored } from '../state/values.js';
import type { BTree } from '../state/btree.js';
import type { StateEngine } from '../state/engine.js';
import type { KeyRange } from '../store.js';
import { TtlSweeper, unwrapTtl, wrapTtl } from './ttl.js';
import type { StoredValue } from '../state/values.js';

export interface ValueState<V> {
  get(): V | undefined;
  set(value: V): void;
  clear(): void;
}

export interface MapState<MK extends Key, V> {
  get(key: MK): V | undefined;
  set(key: MK, value: V): void;
  has(key: MK): boolean;
  delete(key: MK): boolean;
  clear(): void;
  readonly size: number;
  keys(range?: Omit<KeyRange, 'prefix'>): IterableIterator<MK>;
  entries(range?: Omit<KeyRange, 'prefix'>): IterableIterator<[MK, V]>;
}

export interface ListState<V> {
  add(value: V): void;
  /** Every value added, in order (copies). */
  get(): V[];
  clear(): void;
}

export interface StateOptions {
  /** Processing time (ms) after its last write that an entry reads as absent and is removed. */
  ttlMs?: number;
}

export interface TimerService {
  /** Fires when the operator's watermark advances to ≥ t. One timer per key and time. */
  eventTime(t: number): void;
  /** Fires when the wall clock reaches t (Date.now() ≥ t); not deterministic across restarts. */
  processingTime(t: number): void;
  /** Deletes the key's timers (both domains) at t. */
  delete(t: number): void;
}

export interface ProcessContext<K, U> {
  /** The key of the current record. */
  readonly key: K;
  /** The record's event time (NaN if its source has none); in onTimer, the timer's time. */
  readonly timestamp: number;
  /** The operator's current watermark (−Infinity before the first). */
  readonly watermark: number;
  /** Sends a record downstream, with `timestamp` (default: ctx.timestamp). */
  emit(record: U, timestamp?: number): void;
  readonly timers: TimerService;
  readonly state: {
    value<V>(name: string, options?: StateOptions): ValueState<V>;
    map<MK extends Key, V>(name: string, options?: StateOptions): MapState<MK, V>;
    list<V>(name: string): ListState<V>;
  };
}

/** What onTimer receives: the timer's key, state and emitter; `timestamp` is the timer's time. */
export type TimerContext<K, U> = ProcessContext<K, U>;

/** The current key, shared by the state handles of one operator instance. */
export class KeyScope {
  key: unknown = undefined;
  group = 0;
  /** The key's own (element) encoding: what timers store. */
  element = '';
  // The tuple encodings are built on first use per record: a reduce whose accumulator
  // is in its hot cache (keyed by `element`) never needs them.
  #open: string | undefined = '';
  #encoded: string | undefined = '';

  /** encodeKey([group, key]): the key of this key's state. */
  get encoded(): string {
    return (this.#encoded ??= stateKeyOf(this.group, this.element));
  }

  /** The encoded tuple without its terminator, to append map keys to. */
  get open(): string {
    return (this.#open ??= openOf(this.group, this.element));
  }

  set(key: unknown, group: number): void {
    this.key = key;
    this.group = group;
    const encoded = encodeKey([group, key as Key], Infinity);
    this.#encoded = encoded;
    this.#open = encoded.slice(0, -1);
    this.element = this.#open.slice(TUPLE.length + encodeKeyGroup(group).length);
  }

  /**
   * Same as set(), from the key's own encoding (already computed to find the key
   * group): a tuple's encoding is TUPLE + element encodings + END, and an element's
   * encoding is the key's encoding, so nothing is encoded twice.
   */
  setEncoded(key: unknown, group: number, encodedKey: string): void {
    this.key = key;
    this.group = group;
    this.element = encodedKey;
    this.#open = undefined;
    this.#encoded = undefined;
  }
}

const TUPLE = '\x09';
const END = '\x00';

/** encodeKey([group, key]) without its terminator, from the key's element encoding. */
function openOf(group: number, element: string): string {
  return TUPLE + encodeKeyGroup(group) + element;
}

/** encodeKey([group, key]) from the key's element encoding. */
export function stateKeyOf(group: number, element: string): string {
  return openOf(group, element) + END;
}

function withinKey(scope: KeyScope, mk: unknown): string {
  // A tuple's encoding is its elements between a tag and a terminator, so the state
  // key [group, key, mk] is the scope's open prefix + mk's element encoding + terminator.
  const inner = encodeKey([mk as Key], Infinity); // tag + element + terminator
  return scope.open + inner.slice(1, -1) + scope.encoded.slice(-1);
}

/**
 * The kind of state each table holds. A value, a map and a list state of the same name
 * would share one table, and their keys overlap ([group, key] is a prefix of
 * [group, key, mapKey]): a map would list the value as an entry, a list would take a
 * map key for its last index. So one name is one kind, and TTL or not.
 */
const kinds = new WeakMap<BTree, string>();

function claim(table: BTree, kind: string): void {
  const had = kinds.get(table);
  if (had === undefined) kinds.set(table, kind);
  else if (had !== kind) {
    const slash = table.name.indexOf('/');
    throw new TypeError(`state '${table.name.slice(slash + 1)}' of operator '${table.name.slice(0, slash)}' is ${had} state; it cannot also be ${kind} state (use another name)`);
  }
}

const kindOf = (kind: string, ttlMs: number | undefined) => (ttlMs === undefined ? kind : `${kind} (ttlMs ${ttlMs})`);

/** Reads and writes of one table, through TTL wrapping when the state has a ttlMs. */
class Cells {
  private readonly sweeper?: TtlSweeper;
  constructor(readonly table: BTree, readonly engine: StateEngine, ttlMs?: number) {
    if (ttlMs !== undefined) {
      if (!Number.isFinite(ttlMs) || ttlMs <= 0) throw new TypeError(`state ttlMs must be a positive number of ms, got ${String(ttlMs)}`);
      this.sweeper = new TtlSweeper(table, engine, ttlMs);
    }
  }
  get ttl(): boolean {
    return this.sweeper !== undefined;
  }
  read(k: string): StoredValue | undefined {
    const v = this.table.get(k);
    if (!this.sweeper) return v;
    const now = Date.now();
    this.sweeper.step(now);
    if (v === undefined) return undefined;
    const inner = unwrapTtl(v, this.sweeper.ttlMs, now);
    if (inner === undefined) this.sweeper.remove(k);
    return inner;
  }
  /** Returns whether the key is new to the table. */
  write(k: string, v: StoredValue): boolean {
    if (this.sweeper) {
      const now = Date.now();
      this.sweeper.step(now);
      v = wrapTtl(v, now);
    }
    const added = this.table.set(k, v);
    this.engine.mutations++;
    return added;
  }
  remove(k: string): boolean {
    const existed = this.table.delete(k);
    if (existed) this.engine.mutations++;
    return existed;
  }
  /**
   * Live entries of a range (expired ones are skipped and removed). A `limit` counts
   * live entries: applied to the table it would count expired ones too, and
   * `keys({ limit: 1 })` could come back empty with live entries behind an expired one.
   */
  *range(r: NonNullable<Parameters<BTree['entries']>[0]>): Generator<[string, StoredValue]> {
    if (!this.sweeper) {
      yield* this.table.entries(r);
      return;
    }
    const { limit = Infinity, ...bounds } = r;
    const now = Date.now();
    const dead: string[] = [];
    let live = 0;
    try {
      if (live >= limit) return;
      for (const [k, v] of this.table.entries(bounds)) {
        const inner = unwrapTtl(v, this.sweeper.ttlMs, now);
        if (inner === undefined) dead.push(k);
        else {
          yield [k, inner];
          if (++live >= limit) break;
        }
      }
    } finally {
      // Also when the caller stops early: never while the table is being iterated.
      for (const k of dead) this.sweeper.remove(k);
    }
  }
}

export class KeyedValueState<V> implements ValueState<V> {
  private readonly cells: Cells;
  constructor(private readonly scope: KeyScope, table: BTree, engine: StateEngine, ttlMs?: number) {
    this.cells = new Cells(table, engine, ttlMs);
    claim(table, kindOf('value', ttlMs));
  }
  get(): V | undefined {
    const v = this.cells.read(this.scope.encoded);
    return v === undefined ? undefined : (fromStored(v) as V);
  }
  set(value: V): void {
    this.cells.write(this.scope.encoded, toStored(value));
  }
  clear(): void {
    this.cells.remove(this.scope.encoded);
  }
}

/**
 * Map state: entries [group, key, mapKey]. Without a TTL, `size` is O(1): a count cell at
 * [group, key] — which sorts before every entry of the key (the terminator is below
 * every element tag) — holds the number of entries, kept by set/delete/clear, and
 * ranges start after it. The cell is absent when the key has no entries, or in state
 * written before counts were kept; `size` then counts by a scan, and the key's next
 * change records the count. With a TTL, entries expire without a write, so `size`
 * counts the live ones by a scan.
 */
export class KeyedMapState<MK extends Key, V> implements MapState<MK, V> {
  private readonly cells: Cells;
  constructor(private readonly scope: KeyScope, private readonly table: BTree, engine: StateEngine, ttlMs?: number) {
    this.cells = new Cells(table, engine, ttlMs);
    claim(table, kindOf('map', ttlMs));
  }
  /** The key's recorded entry count, if there is one (never with a TTL). */
  private recorded(): number | undefined {
    const c = this.table.get(this.scope.encoded);
    return typeof c === 'number' ? c : undefined;
  }
  private scan(): number {
    let n = 0;
    for (const _ of this.cells.range(this.bounds())) n++;
    return n;
  }
  /** After an entry was added (+1) or removed (−1): records the key's new count. */
  private counted(delta: number): void {
    const had = this.recorded();
    const n = had === undefined ? this.scan() : had + delta; // no cell: count what is there now
    const ck = this.scope.encoded;
    if (n > 0) this.table.set(ck, n);
    else if (had !== undefined) this.table.delete(ck);
  }
  get(key: MK): V | undefined {
    const v = this.cells.read(withinKey(this.scope, key));
    return v === undefined ? undefined : (fromStored(v) as V);
  }
  set(key: MK, value: V): void {
    const added = this.cells.write(withinKey(this.scope, key), toStored(value));
    if (added && !this.cells.ttl) this.counted(1);
  }
  has(key: MK): boolean {
    return this.cells.read(withinKey(this.scope, key)) !== undefined;
  }
  /** Whether a live entry was there: an expired one reads as absent, so it was not. */
  delete(key: MK): boolean {
    const k = withinKey(this.scope, key);
    if (this.cells.ttl) return this.cells.read(k) !== undefined && this.cells.remove(k);
    const existed = this.cells.remove(k);
    if (existed) this.counted(-1);
    return existed;
  }
  clear(): void {
    for (const k of [...this.rawKeys()]) this.cells.remove(k);
    if (!this.cells.ttl) this.cells.remove(this.scope.encoded); // the count cell
  }
  get size(): number {
    return (this.cells.ttl ? undefined : this.recorded()) ?? this.scan();
  }
  private *rawKeys(): Generator<string> {
    for (const [k] of this.table.entries(this.bounds())) yield k;
  }
  private bounds(range?: Omit<KeyRange, 'prefix'>) {
    const b = prefixBounds([this.scope.group, this.scope.key as Key]);
    // After [group, key] itself: the count cell, not an entry.
    const r: { gt?: string; gte?: string; lt?: string; lte?: string; reverse?: boolean; limit?: number } = {
      gt: this.scope.encoded, lt: b.lt, reverse: range?.reverse, limit: range?.limit,
    };
    if (range?.gt !== undefined) r.gt = withinKey(this.scope, range.gt); // gt wins over gte, as in the tree
    else if (range?.gte !== undefined) { delete r.gt; r.gte = withinKey(this.scope, range.gte); }
    if (range?.lt !== undefined) r.lt = withinKey(this.scope, range.lt);
    if (range?.lte !== undefined) { delete r.lt; r.lte = withinKey(this.scope, range.lte); }
    return r;
  }
  *keys(range?: Omit<KeyRange, 'prefix'>): IterableIterator<MK> {
    for (const [k] of this.cells.range(this.bounds(range))) yield (decodeKey(k) as Key[])[2] as MK;
  }
  *entries(range?: Omit<KeyRange, 'prefix'>): IterableIterator<[MK, V]> {
    for (const [k, v] of this.cells.range(this.bounds(range))) yield [(decodeKey(k) as Key[])[2] as MK, fromStored(v) as V];
  }
}

/** List state: entries [keyGroup, key, index] in order of `add`. */
export class KeyedListState<V> implements ListState<V> {
  constructor(private readonly scope: KeyScope, private readonly table: BTree, private readonly engine: StateEngine) {
    claim(table, 'list');
  }
  private bounds() {
    return prefixBounds([this.scope.group, this.scope.key as Key]);
  }
  add(value: V): void {
    let next = 0;
    for (const [k] of this.table.entries({ ...this.bounds(), reverse: true, limit: 1 })) next = ((decodeKey(k) as Key[])[2] as number) + 1;
    this.table.set(withinKey(this.scope, next), toStored(value));
    this.engine.mutations++;
  }
  get(): V[] {
    const out: V[] = [];
    for (const [, v] of this.table.entries(this.bounds())) out.push(fromStored(v) as V);
    return out;
  }
  clear(): void {
    const ks: string[] = [];
    for (const [k] of this.table.entries(this.bounds())) ks.push(k);
    for (const k of ks) this.table.delete(k);
    if (ks.length) this.engine.mutations++;
  }
}
