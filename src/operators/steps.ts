// Built-in operators as "steps": a task's chain of operators is a pipeline of
// functions `(record) => void`, each calling the next one (or the task's output).
// User functions run inside try/catch so a failure names its operator, subtask and
// record.
import { errors } from '../errors.js';
import type { LogicalOperator } from '../flow/types.js';
import { KeyScope, KeyedMapState, KeyedValueState, type ProcessContext } from './context.js';
import type { StateEngine } from '../state/engine.js';
import { fromStored, toStored } from '../state/values.js';
import { hashEncoded } from '../runtime/partition.js';
import { encodeKey, type Key } from '../state/keys.js';

export type Emit = (record: unknown) => void;

export interface StepEnv {
  subtask: number;
  keyGroups: number;
  /** The instance's state partition (stateful operators only). */
  engine?: StateEngine;
  /** Called after every record that touched state: evicts down to the cache bound. */
  afterState?: () => void;
  /** Steps register here what must reach the state tables before a snapshot. */
  beforeSnapshot?: (() => void)[];
}

/** Primitive accumulators of hot keys kept decoded in front of the B+tree (per instance). */
const HOT_KEYS = 65536;

function fail(op: LogicalOperator, env: StepEnv, record: unknown, e: unknown): never {
  throw errors.userCode(op.name, env.subtask, record, e);
}

export function makeStep(op: LogicalOperator, next: Emit, env: StepEnv): Emit {
  const fn = op.fn as ((...a: unknown[]) => unknown) | undefined;
  switch (op.kind) {
    case 'map':
      return (r) => {
        let out: unknown;
        try {
          out = fn!(r);
        } catch (e) {
          fail(op, env, r, e);
        }
        next(out);
      };
    case 'filter':
      return (r) => {
        let keep: unknown;
        try {
          keep = fn!(r);
        } catch (e) {
          fail(op, env, r, e);
        }
        if (keep) next(r);
      };
    case 'flatMap':
      return (r) => {
        let out: unknown;
        try {
          out = fn!(r);
          if (out === null || out === undefined) return;
          if (typeof (out as Iterable<unknown>)[Symbol.iterator] !== 'function') throw new TypeError('flatMap must return an iterable (or null)');
        } catch (e) {
          fail(op, env, r, e);
        }
        for (const x of out as Iterable<unknown>) next(x);
      };
    case 'reduce':
      return makeReduce(op, next, env);
    case 'process':
      return makeProcess(op, next, env);
    default:
      throw new Error(`operator kind '${op.kind}' is not a step`);
  }
}

function keyOf(op: LogicalOperator, env: StepEnv, r: unknown): unknown {
  try {
    return op.keyBy!(r as never);
  } catch (e) {
    fail(op, env, r, e);
  }
}

function makeReduce(op: LogicalOperator, next: Emit, env: StepEnv): Emit {
  const engine = env.engine!;
  const table = engine.table(op.name);
  const scope = new KeyScope();
  const fn = op.fn as (acc: unknown, r: unknown) => unknown;
  // Write-back cache of primitive accumulators (counts, sums, strings): a hot key costs
  // a Map lookup instead of a tree descent and msgpack round trip. Objects always go
  // through the tree, which hands out fresh copies (a buffered emitted record must not
  // change when the next record's reduce mutates the accumulator). Bounded; written back
  // before every snapshot, so checkpoints see exactly the state before the barrier.
  const hot = new Map<string, number | string | boolean | bigint | null>();
  const writeBack = (evict: boolean) => {
    if (hot.size === 0) return;
    for (const [k, v] of hot) table.set(k, v);
    engine.mutations++;
    hot.clear();
    if (evict) env.afterState?.();
  };
  // Before a snapshot the pages just written stay resident: the snapshot freezes them
  // (a pointer copy) and the task evicts afterwards, when they are clean and dropped
  // for free — instead of serializing them into the spill file inside the pause.
  env.beforeSnapshot?.push(() => writeBack(false));
  return (r) => {
    const key = keyOf(op, env, r);
    let enc: string;
    try {
      const kenc = encodeKey(key as Key, Infinity);
      scope.setEncoded(key, hashEncoded(kenc) % env.keyGroups, kenc);
      enc = scope.encoded;
    } catch (e) {
      fail(op, env, r, e); // a key tidepool cannot store (NaN, an object…)
    }
    let old: unknown = hot.get(enc);
    if (old === undefined) {
      const stored = table.get(enc);
      old = stored === undefined ? undefined : fromStored(stored);
    }
    let acc: unknown;
    try {
      acc = fn(old, r);
      if (acc === undefined) throw new TypeError('reduce returned undefined');
      const t = typeof acc;
      if (acc === null || t === 'number' || t === 'string' || t === 'boolean' || t === 'bigint') {
        if (hot.size >= HOT_KEYS && !hot.has(enc)) writeBack(true);
        hot.set(enc, acc as number);
      } else {
        hot.delete(enc);
        table.set(enc, toStored(acc));
        engine.mutations++;
        env.afterState?.();
      }
    } catch (e) {
      fail(op, env, r, e);
    }
    next({ key, value: acc });
  };
}

function makeProcess(op: LogicalOperator, next: Emit, env: StepEnv): Emit {
  const engine = env.engine!;
  const scope = new KeyScope();
  const fn = op.fn as (r: unknown, ctx: ProcessContext<unknown, unknown>) => void;
  const values = new Map<string, KeyedValueState<unknown>>();
  const maps = new Map<string, KeyedMapState<never, unknown>>();
  const stateName = (name: string) => {
    if (typeof name !== 'string' || name === '') throw new TypeError('state names must be non-empty strings');
    return `${op.name}/${name}`;
  };
  const ctx: ProcessContext<unknown, unknown> = {
    get key() {
      return scope.key;
    },
    emit: (x) => next(x),
    state: {
      value<V>(name: string) {
        let s = values.get(name);
        if (!s) values.set(name, (s = new KeyedValueState(scope, engine.table(stateName(name)), engine)));
        return s as KeyedValueState<V>;
      },
      map(name: string) {
        let s = maps.get(name);
        if (!s) maps.set(name, (s = new KeyedMapState(scope, engine.table(stateName(name)), engine)));
        return s as never;
      },
    },
  };
  return (r) => {
    const key = keyOf(op, env, r);
    try {
      const enc = encodeKey(key as Key, Infinity);
      scope.setEncoded(key, hashEncoded(enc) % env.keyGroups, enc);
      fn(r, ctx);
    } catch (e) {
      if ((e as { code?: string }).code === 'TIDEPOOL_USER_CODE') throw e; // from a downstream step
      fail(op, env, r, e);
    }
    env.afterState?.();
  };
}
