// A task's chained operators as one emit function. A task is a line of steps or, where a
// stream fans out into stateless steps (plan.ts), a tree: each operator emits into its
// chained consumers and into the outputs (rings) of the edges that leave from it.
import type { LogicalOperator } from '../flow/types.js';
import { makeStep } from '../operators/steps.js';
import type { Emit, StepEnv } from '../operators/keyed.js';
import type { Output } from '../transport/channels.js';

export const isStep = (o: LogicalOperator): boolean => o.kind === 'map' || o.kind === 'filter' || o.kind === 'flatMap';

/**
 * What the task's first operator emits into (or, when it is a step or the sink, its own
 * input): `mainFrom` holds the main-port outputs per producing operator, `sinkTail` the
 * task's sink when it ends in one.
 */
export function chainEmit(ops: LogicalOperator[], mainFrom: Map<string, Output[]>, sinkTail: Emit, env: StepEnv): Emit {
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
  const inputOf = (j: number): Emit => (ops[j]!.kind === 'sink' ? sinkTail : makeStep(ops[j]!, emitOf(j), env));
  const first = ops[0]!;
  return isStep(first) || first.kind === 'sink' ? inputOf(0) : emitOf(0);
}

export const outputEmit = (o: Output): Emit => (r, ts) => o.push(r, ts);

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
