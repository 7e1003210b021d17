// Stateless operators as "steps": a task's chain of map/filter/flatMap is a pipeline of
// functions `(record, ts) => void`, each calling the next one (or the task's output).
// Records keep their timestamp through every step. User functions run inside
// try/catch so a failure names its operator, subtask and record.
//
// `reduce` is here too: the simplest keyed operator (one value per key).
import type { LogicalOperator } from '../flow/types.js';
import { fromStored, toStored } from '../state/values.js';
import { KeyedRuntime, notAsync, userError, type Emit, type OperatorInstance, type StepEnv } from './keyed.js';

export type { Emit, StepEnv } from './keyed.js';

/** Primitive accumulators of hot keys kept decoded in front of the B+tree (per instance). */
const HOT_KEYS = 65536;

export function makeStep(op: LogicalOperator, next: Emit, env: StepEnv): Emit {
  const fn = op.fn as (r: unknown) => unknown;
  switch (op.kind) {
    case 'map':
      return (r, ts) => {
        let out: unknown;
        try {
          out = fn(r);
          notAsync(op, out);
        } catch (e) {
          if (env.recordFailed?.(op, r, e)) return;
          throw userError(op, env, r, e);
        }
        next(out, ts);
      };
    case 'filter':
      return (r, ts) => {
        let keep: unknown;
        try {
          keep = fn(r);
          notAsync(op, keep);
        } catch (e) {
          if (env.recordFailed?.(op, r, e)) return;
          throw userError(op, env, r, e);
        }
        if (keep) next(r, ts);
      };
    case 'flatMap':
      return (r, ts) => {
        let out: unknown;
        try {
          out = fn(r);
          if (out === null || out === undefined) return;
          notAsync(op, out);
          if (typeof (out as Iterable<unknown>)[Symbol.iterator] !== 'function') throw new TypeError('flatMap must return an iterable (or null)');
        } catch (e) {
          if (env.recordFailed?.(op, r, e)) return;
          throw userError(op, env, r, e);
        }
        for (const x of out as Iterable<unknown>) next(x, ts);
      };
    default:
      throw new Error(`operator kind '${op.kind}' is not a step`);
  }
}

/** A chain of stateless steps as an operator instance (no state, no timers). */
export function statelessInstance(head: Emit): OperatorInstance {
  return {
    push: (r, ts) => head(r, ts),
    onWatermark() {},
    onProcessingTime() {},
    nextProcessingTime: () => Infinity,
    beforeSnapshot() {},
    stats: () => ({ lateRecords: 0, pendingTimers: 0 }),
  };
}

export function makeReduce(op: LogicalOperator, env: StepEnv, next: Emit): OperatorInstance {
  const rt = new KeyedRuntime(op, env, next);
  const engine = rt.engine;
  const table = engine.table(op.name);
  const scope = rt.scope;
  const fn = op.fn as (acc: unknown, r: unknown) => unknown;
  // Write-back cache of primitive accumulators (counts, sums, strings): a hot key costs
  // a Map lookup instead of a tree descent and msgpack round trip. Objects always go
  // through the tree, which hands out fresh copies (a buffered emitted record must not
  // change when the next record's reduce mutates the accumulator). Bounded; written back
  // before every snapshot, so checkpoints see exactly the state before the barrier.
  // Keyed by the key's element encoding (its group follows from it), so a hit builds
  // no tuple encoding; the write-back derives each state key.
  const hot = new Map<string, number | string | boolean | bigint | null>();
  const writeBack = (evict: boolean) => {
    if (hot.size === 0) return;
    for (const [k, v] of hot) table.set(rt.stateKey(k), v);
    engine.mutations++;
    hot.clear();
    if (evict) env.afterState?.();
  };
  return {
    push(r, ts) {
      rt.setKey(r, 0);
      const el = scope.element;
      let old: unknown = hot.get(el);
      const wasHot = old !== undefined; // accumulators are never undefined
      if (!wasHot) {
        const stored = table.get(scope.encoded);
        old = stored === undefined ? undefined : fromStored(stored);
      }
      let acc: unknown;
      try {
        acc = fn(old, r);
        if (acc === undefined) throw new TypeError('reduce returned undefined');
        notAsync(op, acc);
        const t = typeof acc;
        if (acc === null || t === 'number' || t === 'string' || t === 'boolean' || t === 'bigint') {
          if (!wasHot && hot.size >= HOT_KEYS) writeBack(true);
          hot.set(el, acc as number);
        } else {
          if (wasHot) hot.delete(el);
          table.set(scope.encoded, toStored(acc));
          engine.mutations++;
          env.afterState?.();
        }
      } catch (e) {
        throw userError(op, env, r, e);
      }
      next({ key: scope.key, value: acc }, ts);
    },
    onWatermark(wm) {
      rt.watermark = wm;
    },
    onProcessingTime() {},
    nextProcessingTime: () => Infinity,
    // Before a snapshot the pages just written stay resident: the snapshot freezes them
    // (a pointer copy) and the task evicts afterwards, when they are clean and dropped
    // for free — instead of serializing them into the spill file inside the pause.
    beforeSnapshot: () => writeBack(false),
    stats: () => rt.stats(),
  };
}
