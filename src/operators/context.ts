// Keyed state as an operator sees it: scoped to the key of the record being processed.
//
// Every state key starts with the record key's key group, then the key itself:
//   value state  `v`:  [keyGroup, key]          in table `<operator>/<v>`
//   map state    `m`:  [keyGroup, key, mapKey]  in table `<operator>/<m>`
//   reduce:            [keyGroup, key]          in table `<operator>`
// so the state of a key group is one contiguous range of every table: a restore at
// another parallelism reads exactly the groups it now owns.
import { encodeKey, decodeKey, prefixBounds, type Key } from '../state/keys.js';
import { fromStored, toStored } from '../state/values.js';
import type { BTree } from '../state/btree.js';
import type { StateEngine } from '../state/engine.js';
import type { KeyRange } from '../store.js';

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

export interface ProcessContext<K, U> {
  /** The key of the current record. */
  readonly key: K;
  /** Sends a record downstream. */
  emit(record: U): void;
  readonly state: {
    value<V>(name: string): ValueState<V>;
    map<MK extends Key, V>(name: string): MapState<MK, V>;
  };
}

/** The current key, shared by the state handles of one operator instance. */
export class KeyScope {
  key: unknown = undefined;
  group = 0;
  /** encodeKey([group, key]) — computed once per record. */
  encoded = '';
  /** The encoded tuple without its terminator, to append map keys to. */
  open = '';

  set(key: unknown, group: number): void {
    this.key = key;
    this.group = group;
    this.encoded = encodeKey([group, key as Key], Infinity);
    this.open = this.encoded.slice(0, -1);
  }

  /**
   * Same as set(), from the key's own encoding (already computed to find the key
   * group): a tuple's encoding is TUPLE + element encodings + END, and an element's
   * encoding is the key's encoding, so nothing is encoded twice.
   */
  setEncoded(key: unknown, group: number, encodedKey: string): void {
    this.key = key;
    this.group = group;
    this.open = TUPLE + groupPrefix(group) + encodedKey;
    this.encoded = this.open + END;
  }
}

const TUPLE = '\x09';
const END = '\x00';
const groupCache: string[] = [];
function groupPrefix(g: number): string {
  return (groupCache[g] ??= encodeKey(g));
}

function withinKey(scope: KeyScope, mk: unknown): string {
  // A tuple's encoding is its elements between a tag and a terminator, so the state
  // key [group, key, mk] is the scope's open prefix + mk's element encoding + terminator.
  const inner = encodeKey([mk as Key], Infinity); // tag + element + terminator
  return scope.open + inner.slice(1, -1) + scope.encoded.slice(-1);
}

export class KeyedValueState<V> implements ValueState<V> {
  constructor(private readonly scope: KeyScope, private readonly table: BTree, private readonly engine: StateEngine) {}
  get(): V | undefined {
    const v = this.table.get(this.scope.encoded);
    return v === undefined ? undefined : (fromStored(v) as V);
  }
  set(value: V): void {
    this.table.set(this.scope.encoded, toStored(value));
    this.engine.mutations++;
  }
  clear(): void {
    if (this.table.delete(this.scope.encoded)) this.engine.mutations++;
  }
}

export class KeyedMapState<MK extends Key, V> implements MapState<MK, V> {
  constructor(private readonly scope: KeyScope, private readonly table: BTree, private readonly engine: StateEngine) {}
  get(key: MK): V | undefined {
    const v = this.table.get(withinKey(this.scope, key));
    return v === undefined ? undefined : (fromStored(v) as V);
  }
  set(key: MK, value: V): void {
    this.table.set(withinKey(this.scope, key), toStored(value));
    this.engine.mutations++;
  }
  has(key: MK): boolean {
    return this.table.has(withinKey(this.scope, key));
  }
  delete(key: MK): boolean {
    const existed = this.table.delete(withinKey(this.scope, key));
    if (existed) this.engine.mutations++;
    return existed;
  }
  clear(): void {
    for (const k of [...this.rawKeys()]) this.table.delete(k);
    this.engine.mutations++;
  }
  get size(): number {
    let n = 0;
    for (const _ of this.rawKeys()) n++;
    return n;
  }
  private *rawKeys(range?: Omit<KeyRange, 'prefix'>): Generator<string> {
    for (const [k] of this.table.entries(this.bounds(range))) yield k;
  }
  private bounds(range?: Omit<KeyRange, 'prefix'>) {
    const b = prefixBounds([this.scope.group, this.scope.key as Key]);
    const r: { gt?: string; gte?: string; lt?: string; lte?: string; reverse?: boolean; limit?: number } = {
      gte: b.gte, lt: b.lt, reverse: range?.reverse, limit: range?.limit,
    };
    if (range?.gt !== undefined) { delete r.gte; r.gt = withinKey(this.scope, range.gt); }
    if (range?.gte !== undefined) r.gte = withinKey(this.scope, range.gte);
    if (range?.lt !== undefined) r.lt = withinKey(this.scope, range.lt);
    if (range?.lte !== undefined) { delete r.lt; r.lte = withinKey(this.scope, range.lte); }
    return r;
  }
  *keys(range?: Omit<KeyRange, 'prefix'>): IterableIterator<MK> {
    for (const [k] of this.table.entries(this.bounds(range))) yield (decodeKey(k) as Key[])[2] as MK;
  }
  *entries(range?: Omit<KeyRange, 'prefix'>): IterableIterator<[MK, V]> {
    for (const [k, v] of this.table.entries(this.bounds(range))) yield [(decodeKey(k) as Key[])[2] as MK, fromStored(v) as V];
  }
}
