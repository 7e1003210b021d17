// A task's chained operators as one emit function. A task is a line of steps or, where a
// stream fans out into stateless steps (plan.ts), a tree: each operator emits into its
// chained consumers and into the outputs (rings) of the edges that leave from it. At
// most one stateful operator is in it: the first, or a reduce fused behind a source.
import type { LogicalOperator } from '../flow/types.js';
import { makeStep } from '../operators/steps.js';
import type { Emit, OperatorInstance, StepEnv } from '../operators/keyed.js';
import type { Output } from '../transport/channels.js';

export const isStep = (o: LogicalOperator): boolean => o.kind === 'map' || o.kind === 'filter' || o.kind === 'flatMap';

/**
 * What the task's first operator emits into (or, when it is a step or the sink, its own
 * input): `mainFrom` holds the main-port outputs per producing operator, `sinkTail` the
 * task's sink when it ends in one.
 */
export function chainEmit(
  ops: LogicalOperator[],
  mainFrom: Map<string, Output[]>,
  sinkTail: Emit,
  env: StepEnv,
  /** Builds a stateful operator chained after the first (a reduce fused at p=1, plan.ts). */
  stateful?: (op: LogicalOperator, emit: Emit) => OperatorInstance,
): Emit {
  // Operator i's chained consumers are the later operators of this task reading it.
  const children = (i: number) => ops.flatMap((o, j) => (j > i && o.inputs[0]?.from === ops[i]!.name ? [j] : []));
  const mutates = (j: number): boolean => ops[j]!.kind === 'map' || ops[j]!.kind === 'flatMap' || children(j).some(mutates);
  /** What operator i emits into: its chained consumers and its outputs. */
  const emitOf = (i: number): Emit => {
    const targets = children(i).map((j) => ({ emit: inputOf(j), copy: mutates(j) }));
    for (const out of mainFrom.get(ops[i]!.name) ?? []) targets.push({ emit: outputEmit(out), copy: false });
    return branches(targets);
  };
  /** A chained operator's input: the sink, or the step applied before what it emits into. */
  const inputOf = (j: number): Emit => {
    const op = ops[j]!;
    if (op.kind === 'sink') return sinkTail;
    if (isStep(op)) return makeStep(op, emitOf(j), env);
    if (!stateful) throw new Error(`operator '${op.name}' (${op.kind}) cannot be chained`);
    return guarded(op, stateful(op, emitOf(j)), env);
  };
  const first = ops[0]!;
  return isStep(first) || first.kind === 'sink' ? inputOf(0) : emitOf(0);
}

export const outputEmit = (o: Output): Emit => (r, ts) => o.push(r, ts);

/**
 * A chained stateful operator's input. It throws on a failed record (userError, naming
 * the operator and subtask) like a task's first operator, whose failures the task loop
 * skips or dead-letters; chained, the same policy applies here.
 */
function guarded(op: LogicalOperator, inst: OperatorInstance, env: StepEnv): Emit {
  const failed = env.recordFailed;
  if (!failed) return (r, ts) => inst.push(r, ts, 0);
  return (r, ts) => {
    try {
      inst.push(r, ts, 0);
    } catch (e) {
      if ((e as { code?: string }).code !== 'TIDEPOOL_USER_CODE' || !failed(op, r, e)) throw e;
    }
  };
}

export function fanOut(emits: Emit[]): Emit {
  if (emits.length === 1) return emits[0]!;
  return (r, ts) => {
    for (let i = 0; i < emits.length; i++) emits[i]!(r, ts);
  };
}

/**
 * A record to several consumers in one task. Across a ring every consumer decodes its
 * own copy; chained in a task they would share one object, so a branch that may change
 * its record (it holds a map or flatMap) gets a structured clone, made before any
 * branch runs, and the others (outputs, which encode the record later, and filters)
 * share the original.
 */
function branches(targets: { emit: Emit; copy: boolean }[]): Emit {
  if (targets.length === 0) return () => undefined;
  if (targets.length === 1) return targets[0]!.emit;
  const copied = targets.filter((t) => t.copy).map((t) => t.emit);
  const sharing = targets.filter((t) => !t.copy).map((t) => t.emit);
  if (copied.length === 0) return fanOut(sharing);
  // Copying branches run first, each on a clone of the untouched original; the last one
  // takes the original itself when no branch shares it.
  const shared = sharing.length > 0 ? fanOut(sharing) : undefined;
  return (r, ts) => {
    for (let i = 0; i < copied.length; i++) copied[i]!(shared === undefined && i === copied.length - 1 ? r : structuredClone(r), ts);
    shared?.(r, ts);
  };
}
