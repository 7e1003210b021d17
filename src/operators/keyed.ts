// What every keyed operator (reduce, process, connect().process, windows, joins) runs on:
// the current key, the instance's timers, its watermark, and the emitter.
//
// A task instance that holds a keyed operator calls, in stream order:
//   push(record, ts, side)    per record (side 1: the right input of a two-input operator)
//   onWatermark(wm)           the instance's watermark advanced: fire event-time timers ≤ wm
//   onProcessingTime(now)     fire processing-time timers ≤ now
//   beforeSnapshot()          write back what is cached before the state is snapshotted
// and forwards the watermark only after onWatermark returned, so everything a watermark
// triggers goes out before it.
import { errors } from '../errors.js';
import type { LogicalOperator } from '../flow/types.js';
import { keyGroupRange } from '../flow/plan.js';
import type { StateEngine } from '../state/engine.js';
import { encodeKey, type Key } from '../state/keys.js';
import { hashEncoded } from '../runtime/partition.js';
import { TimerTable, type DueTimer } from '../time/timers.js';
import { KeyScope, stateKeyOf, KeyedListState, KeyedMapState, KeyedValueState, type ProcessContext, type StateOptions } from './context.js';

/** Sends a record with its timestamp (NaN: none) downstream. */
export type Emit = (record: unknown, ts: number) => void;

export interface OperatorStats {
  lateRecords: number;
  pendingTimers: number;
  /** Entries of a window operator's state (panes, windows or sessions). */
  windowState?: number;
  /** Entries of a join's state, both sides (a window join: one per record and window). */
  joinState?: number;
}

/** A task's operator as the task loop drives it (a stateless chain is one too). */
export interface OperatorInstance {
  push(record: unknown, ts: number, side: 0 | 1): void;
  onWatermark(wm: number): void;
  onProcessingTime(now: number): void;
  /** The next processing-time timer (Infinity: none), so an idle task wakes for it. */
  nextProcessingTime(): number;
  beforeSnapshot(): void;
  stats(): OperatorStats;
}

export interface StepEnv {
  subtask: number;
  parallelism: number;
  keyGroups: number;
  /** The instance's state partition (stateful operators only). */
  engine?: StateEngine;
  /** Called after every record that touched state: evicts down to the cache bound. */
  afterState?: () => void;
  /** A record made `op` throw: true when it was skipped or dead-lettered (errors.onRecord), false to fail. */
  recordFailed?: (op: LogicalOperator, record: unknown, error: unknown) => boolean;
  /** The watermark restored from the checkpoint (the instance's, or the minimum of the old ones'). */
  restoredWatermark?: number;
}

export function userError(op: LogicalOperator, env: StepEnv, record: unknown, e: unknown): Error {
  if ((e as { code?: string }).code === 'TIDEPOOL_USER_CODE') return e as Error;
  return errors.userCode(op.name, env.subtask, record, e);
}

/** A user function returned a Promise where a value is expected. */
export function notAsync(op: LogicalOperator, out: unknown): void {
  if (out !== null && typeof out === 'object' && typeof (out as { then?: unknown }).then === 'function') {
    // The run fails on this error; a later rejection of the Promise must not crash it too.
    (out as PromiseLike<unknown>).then(undefined, () => undefined);
    throw new TypeError(`${op.kind} '${op.name}' returned a Promise; its function must not be async (use mapAsync for asynchronous calls)`);
  }
}

function checkTime(t: unknown, what: string): number {
  if (typeof t !== 'number' || !Number.isFinite(t)) throw new TypeError(`${what} time must be a finite number of ms, got ${String(t)}`);
  return t;
}

export class KeyedRuntime {
  readonly scope = new KeyScope();
  readonly engine: StateEngine;
  private event?: TimerTable;
  private processing?: TimerTable;
  private readonly groups: [number, number];
  watermark: number;
  /** The current record's (or firing timer's) time. */
  timestamp = NaN;
  lateRecords = 0;
  private readonly keyFns: ((r: never) => unknown)[];

  constructor(readonly op: LogicalOperator, readonly env: StepEnv, readonly emit: Emit) {
    this.engine = env.engine!;
    this.groups = keyGroupRange(env.subtask, env.parallelism, env.keyGroups);
    // Timer tables exist once used (or when restored state has them): an operator that
    // never registers a timer keeps no empty tables.
    const names = new Set(this.engine.tableNames());
    if (names.has(this.timerTable('event'))) void this.eventTimers;
    if (names.has(this.timerTable('processing'))) void this.processingTimers;
    this.watermark = env.restoredWatermark ?? -Infinity;
    const fns: ((r: never) => unknown)[] = [];
    for (const i of op.inputs) if (i.keyBy && !fns[i.side]) fns[i.side] = i.keyBy;
    this.keyFns = fns;
  }

  private timerTable(domain: 'event' | 'processing'): string {
    return `${this.op.name}/~timers/${domain}`;
  }

  get eventTimers(): TimerTable {
    return (this.event ??= new TimerTable(this.engine.table(this.timerTable('event')), this.engine, this.groups[0], this.groups[1]));
  }

  get processingTimers(): TimerTable {
    return (this.processing ??= new TimerTable(this.engine.table(this.timerTable('processing')), this.engine, this.groups[0], this.groups[1]));
  }

  /** Fires due event-time timers, if this operator has any. */
  fireEvent(upTo: number, handler: (t: DueTimer) => void): void {
    if (this.event) this.fire(this.event, upTo, handler);
  }

  fireProcessing(upTo: number, handler: (t: DueTimer) => void): void {
    if (this.processing) this.fire(this.processing, upTo, handler);
  }

  nextProcessingTime(): number {
    return this.processing ? this.processing.next() : Infinity;
  }

  /** Sets the current key from a record of `side`. */
  setKey(record: unknown, side: 0 | 1): void {
    this.setKeyOf(this.keyOf(record, side), record);
  }

  /** The key of a record of `side` (the keyBy function's result, not yet validated). */
  keyOf(record: unknown, side: 0 | 1): unknown {
    try {
      return this.keyFns[side]!(record as never);
    } catch (e) {
      throw userError(this.op, this.env, record, e);
    }
  }

  /** Sets the current key to `key` (of `record`): validates and encodes it. */
  setKeyOf(key: unknown, record: unknown): void {
    let enc: string;
    try {
      enc = encodeKey(key as Key, Infinity);
    } catch (e) {
      throw userError(this.op, this.env, record, e); // a key tidepool cannot store (NaN, an object…)
    }
    this.scope.setEncoded(key, this.groupOf(enc), enc);
  }

  /** The key group of a key, from its (element) encoding. */
  groupOf(encodedKey: string): number {
    return hashEncoded(encodedKey) % this.env.keyGroups;
  }

  /** The state key `[group, key]` of a key, from its (element) encoding. */
  stateKey(encodedKey: string): string {
    return stateKeyOf(this.groupOf(encodedKey), encodedKey);
  }

  /** The element encoding of the current key (what timers store). */
  get keyEncoded(): string {
    return this.scope.element;
  }

  registerEventTimer(t: number): void {
    this.eventTimers.register(this.scope.group, this.keyEncoded, checkTime(t, 'event timer'));
  }

  registerProcessingTimer(t: number): void {
    this.processingTimers.register(this.scope.group, this.keyEncoded, checkTime(t, 'processing timer'));
  }

  deleteTimers(t: number): void {
    checkTime(t, 'timer');
    this.event?.delete(this.scope.group, this.keyEncoded, t);
    this.processing?.delete(this.scope.group, this.keyEncoded, t);
  }

  /** Fires every due timer of `table` up to `upTo` (also ones registered while firing). */
  fire(table: TimerTable, upTo: number, handler: (t: DueTimer) => void): void {
    for (let t = table.pop(upTo); t !== undefined; t = table.pop(upTo)) {
      this.scope.setEncoded(t.key, t.group, t.keyEncoded);
      this.timestamp = t.time;
      handler(t);
      this.env.afterState?.();
    }
  }

  /** The context user functions of process and connect().process see. */
  context(): ProcessContext<unknown, unknown> {
    const rt = this;
    const values = new Map<string, KeyedValueState<unknown>>();
    const maps = new Map<string, KeyedMapState<never, unknown>>();
    const lists = new Map<string, KeyedListState<unknown>>();
    const stateName = (name: string) => {
      if (typeof name !== 'string' || name === '' || name.startsWith('~')) throw new TypeError(`state names must be non-empty strings not starting with '~', got ${String(name)}`);
      return `${rt.op.name}/${name}`;
    };
    const ttlOf = (name: string, o: StateOptions | undefined) => {
      if (o === undefined) return undefined;
      if (typeof o !== 'object' || o === null || Object.keys(o).some((k) => k !== 'ttlMs')) throw new TypeError(`state '${name}' options must be { ttlMs }`);
      return o.ttlMs;
    };
    return {
      get key() {
        return rt.scope.key;
      },
      get timestamp() {
        return rt.timestamp;
      },
      get watermark() {
        return rt.watermark;
      },
      emit: (x, ts) => rt.emit(x, ts === undefined ? rt.timestamp : checkTime(ts, 'emit')),
      timers: {
        eventTime: (t) => rt.registerEventTimer(t),
        processingTime: (t) => rt.registerProcessingTimer(t),
        delete: (t) => rt.deleteTimers(t),
      },
      state: {
        value<V>(name: string, options?: StateOptions) {
          let s = values.get(name);
          if (!s) values.set(name, (s = new KeyedValueState(rt.scope, rt.engine.table(stateName(name)), rt.engine, ttlOf(name, options))));
          return s as KeyedValueState<V>;
        },
        map(name: string, options?: StateOptions) {
          let s = maps.get(name);
          if (!s) maps.set(name, (s = new KeyedMapState(rt.scope, rt.engine.table(stateName(name)), rt.engine, ttlOf(name, options))));
          return s as never;
        },
        list<V>(name: string) {
          let s = lists.get(name);
          if (!s) lists.set(name, (s = new KeyedListState(rt.scope, rt.engine.table(stateName(name)), rt.engine)));
          return s as KeyedListState<V>;
        },
      },
    };
  }

  stats(): OperatorStats {
    return { lateRecords: this.lateRecords, pendingTimers: (this.event?.pending ?? 0) + (this.processing?.pending ?? 0) };
  }
}

type UserFn = (r: unknown, ctx: ProcessContext<unknown, unknown>) => unknown;

/** `keyed.process(name, fn, { onTimer })` and `a.connect(b).process(name, { left, right, onTimer })`. */
export function makeProcess(op: LogicalOperator, env: StepEnv, emit: Emit): OperatorInstance {
  const rt = new KeyedRuntime(op, env, emit);
  const ctx = rt.context();
  const fns: UserFn[] = op.kind === 'coProcess' ? [op.options!.left as UserFn, op.options!.right as UserFn] : [op.fn as UserFn];
  const onTimer = op.options?.onTimer as ((t: number, c: ProcessContext<unknown, unknown>) => unknown) | undefined;
  const call = (record: unknown, f: () => unknown) => {
    let out: unknown;
    try {
      out = f();
      notAsync(op, out);
    } catch (e) {
      throw userError(op, env, record, e);
    }
  };
  const timerHandler = (t: DueTimer) => {
    if (onTimer) call(`timer at ${t.time} for key ${JSON.stringify(t.key) ?? String(t.key)}`, () => onTimer(t.time, ctx));
  };
  return {
    push(record, ts, side) {
      rt.setKey(record, side);
      rt.timestamp = ts;
      call(record, () => fns[side]!(record, ctx));
      env.afterState?.();
    },
    onWatermark(wm) {
      rt.watermark = wm;
      rt.fireEvent(wm, timerHandler);
    },
    onProcessingTime(now) {
      rt.fireProcessing(now, timerHandler);
    },
    nextProcessingTime: () => rt.nextProcessingTime(),
    beforeSnapshot() {},
    stats: () => rt.stats(),
  };
}
