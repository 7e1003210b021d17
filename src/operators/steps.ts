// Stateless operators as "steps": a task's chain of map/filter/flatMap is a pipeline of
// functions `(record, ts) => void`, each calling the next one (or the task's output).
// Records keep their timestamp through every step. User functions run inside
// try/catch so a failure names its operator, subtask and record.
// (reduce, the simplest keyed operator, is in reduce.ts.)
import type { LogicalOperator } from '../flow/types.js';
import { notAsync, userError, type Emit, type OperatorInstance, type StepEnv } from './keyed.js';

export type { Emit, StepEnv } from './keyed.js';


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
