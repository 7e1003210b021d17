// From the logical flow to the physical plan: parallelism per operator, key groups,
// chaining into tasks, and the edges (with their partitioning) between tasks.
//
//   logical:  lines → words → [keyBy] counts → out
//   tasks:    T0 = [lines, words] ×p0 ──hash──> T1 = [counts] ×p1 ──forward──> T2 = [out] ×p2
//
// Rules:
// - A task is a maximal run of operators connected 1:1 (no keyBy, same parallelism),
//   all stateless, when chaining is on. A stateful operator (reduce, process) is alone.
// - Edge partitioning: `hash` when the downstream operator has a keyBy (key group of the
//   key → owning subtask), `forward` when parallelism is equal, else `rebalance`
//   (round robin per batch).
// - Key groups: subtask i of p owns groups [⌈i·G/p⌉, ⌈(i+1)·G/p⌉), so a checkpoint
//   taken at one parallelism can be split at another (rescale).
import { createHash } from 'node:crypto';
import { TidepoolError, errors } from '../errors.js';
import { STATEFUL, type LogicalOperator, type OperatorKind } from './types.js';
import type { Flow } from './builder.js';

export type Partitioning = 'forward' | 'hash' | 'rebalance';

export interface PlanOptions {
  parallelism: number;
  keyGroups: number;
  chaining: boolean;
  operators: Record<string, { parallelism?: number }>;
}

export interface TaskPlan {
  index: number;
  /** Operator names in chain order. */
  operators: string[];
  kinds: OperatorKind[];
  parallelism: number;
  stateful: boolean;
  /** Name shown in errors and metrics: the operators joined by '→'. */
  label: string;
}

export interface EdgePlan {
  from: number;
  to: number;
  partitioning: Partitioning;
  /** The operator whose keyBy function routes records (for 'hash'). */
  keyOperator?: string;
}

export interface PhysicalPlan {
  flow: string;
  keyGroups: number;
  tasks: TaskPlan[];
  edges: EdgePlan[];
  /** Hash of the stateful part (names, kinds, key groups): a checkpoint is only restorable into the same. */
  stateHash: string;
}

/** The key groups subtask `i` of `p` owns: [start, end). */
export function keyGroupRange(subtask: number, parallelism: number, keyGroups: number): [number, number] {
  // The exact inverse of subtaskForKeyGroup (g ↦ ⌊g·p/G⌋): subtask i owns ⌈i·G/p⌉ … ⌈(i+1)·G/p⌉ − 1.
  const start = (i: number) => Math.floor((i * keyGroups + parallelism - 1) / parallelism);
  return [start(subtask), start(subtask + 1)];
}

/** The subtask that owns key group `g`. */
export function subtaskForKeyGroup(g: number, parallelism: number, keyGroups: number): number {
  return Math.floor((g * parallelism) / keyGroups);
}

export function planFlow(flow: Flow, opts: PlanOptions): PhysicalPlan {
  const ops = flow.operators;
  if (ops.length < 2 || ops[0]!.kind !== 'source' || ops[ops.length - 1]!.kind !== 'sink') {
    throw new TidepoolError('TIDEPOOL_BAD_OPTION', `flow '${flow.name}' must start with a source and end with a sink`);
  }
  for (const name of Object.keys(opts.operators)) {
    if (!ops.some((o) => o.name === name)) {
      throw errors.config(`operators.${name}`, `no operator named '${name}' in flow '${flow.name}' (operators: ${ops.map((o) => o.name).join(', ')})`);
    }
  }
  const parallelismOf = (op: LogicalOperator): number => {
    let p = opts.operators[op.name]?.parallelism ?? op.parallelism ?? op.sink?.defaultParallelism ?? opts.parallelism;
    const max = op.source?.maxParallelism ?? op.sink?.maxParallelism;
    if (max !== undefined) p = Math.min(p, Math.max(1, max));
    return Math.min(p, opts.keyGroups);
  };
  const tasks: TaskPlan[] = [];
  const edges: EdgePlan[] = [];
  let current: TaskPlan | undefined;
  for (const op of ops) {
    const p = parallelismOf(op);
    const stateful = STATEFUL.has(op.kind);
    const oneToOne = current !== undefined && op.keyBy === undefined && current.parallelism === p;
    if (current && opts.chaining && oneToOne && !stateful && !current.stateful) {
      current.operators.push(op.name);
      current.kinds.push(op.kind);
      current.label = current.operators.join('→');
      continue;
    }
    const task: TaskPlan = { index: tasks.length, operators: [op.name], kinds: [op.kind], parallelism: p, stateful, label: op.name };
    if (current) {
      edges.push({
        from: current.index,
        to: task.index,
        partitioning: op.keyBy !== undefined ? 'hash' : current.parallelism === p ? 'forward' : 'rebalance',
        keyOperator: op.keyBy !== undefined ? op.name : undefined,
      });
    }
    tasks.push(task);
    current = task;
  }
  const statePart = ops.filter((o) => STATEFUL.has(o.kind) || o.kind === 'source' || o.kind === 'sink').map((o) => `${o.name}:${o.kind}`);
  const stateHash = createHash('sha256').update(JSON.stringify([opts.keyGroups, statePart])).digest('hex').slice(0, 16);
  return { flow: flow.name, keyGroups: opts.keyGroups, tasks, edges, stateHash };
}

/** A one-line description per task, for --verbose and errors. */
export function describePlan(plan: PhysicalPlan): string {
  return plan.tasks
    .map((t) => {
      const e = plan.edges.find((x) => x.to === t.index);
      return `${e ? `--${e.partitioning}--> ` : ''}[${t.label}]×${t.parallelism}`;
    })
    .join(' ');
}
