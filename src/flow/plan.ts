// From the logical graph to the physical plan: parallelism per operator, key groups,
// chaining into tasks, and the edges (with their partitioning) between tasks.
//
//   logical:  lines → words → [keyBy] counts → out
//   tasks:    T0 = [lines, words] ×p0 ──hash──> T1 = [counts, out] ×p1   (out chained: same parallelism)
//
//   a graph:  bids ─┬─[keyBy]→ counts (window) ─→ out
//                   │                     └late→ late-out
//                   └──────→ audit (sink)
//
// Rules:
// - An operator joins its input's task (chaining) only on a 1:1 forward edge: it has one
//   input, no keyBy, the same parallelism, and it is neither stateful (reduce, process,
//   windows and joins each start a task, so no two stateful operators share one) nor a
//   mapAsync (which starts a task: its calls complete asynchronously). Stateless steps
//   and the sink do chain behind a stateful operator (`reduce → map → sink` is one task:
//   no ring, no encode/decode between them). As in Flink, what counts is that the consumer has a
//   single input: stateless steps (map, filter, flatMap) chain even when their producer
//   fans out, so a task can be a tree (a source feeding two filters runs all three, and
//   only the filters' survivors are serialized). A sink chains only at the end of a task
//   that has not branched, onto a producer with no other consumer (a task has one sink,
//   always last). Everything else is a ring.
// - One exception for a stateful operator: a reduce whose producer and itself both have
//   parallelism 1 joins the producer's task when that task has no stateful operator, no
//   sink and no mapAsync (`source → [keyBy] reduce → sink` is one task at p=1: a hash
//   edge with one consumer routes nothing).
// - Edge partitioning: `hash` when the input has a keyBy (key group of the key → owning
//   subtask), `forward` when parallelism is equal, else `rebalance` (round robin per batch).
// - An operator with several inputs (union, two-input operators) reads all of its rings;
//   each ring knows the side (left/right) it feeds.
// - Key groups: subtask i of p owns groups [⌈i·G/p⌉, ⌈(i+1)·G/p⌉), so a checkpoint
//   taken at one parallelism can be split at another (rescale).
import { createHash } from 'node:crypto';
import { resolve as resolvePath } from 'node:path';
import { TidepoolError, errors } from '../errors.js';
import { EVENT_TIME, STATEFUL, type LogicalOperator, type OperatorKind, type Port } from './types.js';
import type { Flow } from './builder.js';

export type Partitioning = 'forward' | 'hash' | 'rebalance';

export type OnRecordPolicy = 'fail' | 'skip' | 'deadLetter';

export interface PlanOptions {
  parallelism: number;
  keyGroups: number;
  chaining: boolean;
  operators: Record<string, { parallelism?: number; errors?: { onRecord?: OnRecordPolicy } }>;
  /** Poison-record handling (default: fail). */
  errors?: { onRecord: OnRecordPolicy; deadLetterPath: string };
}

/** The planner's own sink of dead letters (runtime/dead-letters.ts). */
export const DEAD_LETTER_SINK = '~dead-letter';

export interface TaskPlan {
  index: number;
  /** Operator names in chain order. */
  operators: string[];
  kinds: OperatorKind[];
  /** What restoring state needs to match per operator (kind and window/join shape). */
  shapes: string[];
  parallelism: number;
  stateful: boolean;
  /** Name shown in errors and metrics: the operators joined by '→'. */
  label: string;
}

export interface EdgePlan {
  from: number;
  to: number;
  partitioning: Partitioning;
  /** The producing operator (the last of task `from`) and which of its outputs. */
  fromOperator: string;
  /** 'dead': the dead letters of task `from` (to the dead-letter sink). */
  port: Port | 'dead';
  /** The consuming operator (the first of task `to`), and which input of it this is. */
  toOperator: string;
  input: number;
  /** 0, or 1 for the right side of a two-input operator. */
  side: 0 | 1;
  /** For 'hash': the operator whose input `input` has the keyBy function. */
  keyOperator?: string;
}

export interface PhysicalPlan {
  flow: string;
  keyGroups: number;
  tasks: TaskPlan[];
  edges: EdgePlan[];
  /** Hash of the stateful part (names, kinds, shapes, key groups): a checkpoint is only restorable into the same. */
  stateHash: string;
  /** Operators whose failed records are skipped or dead-lettered (others fail the run). */
  onRecord: Record<string, OnRecordPolicy>;
  /** Where dead letters go (absolute), when any operator dead-letters. */
  deadLetterPath?: string;
}

/**
 * The stateful operator of a task (a planned one or a manifest's), whose name its state
 * partitions carry: the first operator, or a reduce fused behind a source's task.
 */
export function stateOperatorOf(t: { operators: string[]; kinds: string[] }): string | undefined {
  const i = t.kinds.findIndex((k) => STATEFUL.has(k as OperatorKind));
  return i < 0 ? undefined : t.operators[i];
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

/** What state restore must find unchanged for an operator (its kind, and its window or join shape). */
export function operatorShape(op: LogicalOperator): string {
  const o = op.options;
  switch (op.kind) {
    case 'window': {
      const a = o!.assigner!;
      const mode = a.kind === 'session' ? (o!.aggregate!.merge ? 'merge' : 'records') : a.kind === 'tumbling' || o!.aggregate!.merge ? 'panes' : 'windows';
      return `window:${JSON.stringify(a)}:${mode}`;
    }
    case 'windowJoin':
      return `windowJoin:${JSON.stringify(o!.assigner)}`;
    case 'intervalJoin':
      return `intervalJoin:${o!.lowerMs}:${o!.upperMs}`;
    case 'join':
      return `join:${o?.ttlMs ?? 'no-ttl'}`;
    default:
      return op.kind;
  }
}

function planError(flow: Flow, why: string): TidepoolError {
  return new TidepoolError('TIDEPOOL_BAD_OPTION', `invalid flow '${flow.name}': ${why}`);
}

/** The sources upstream of `op` (transitively). */
function upstreamSources(flow: Flow, op: LogicalOperator, seen = new Set<string>()): LogicalOperator[] {
  if (seen.has(op.name)) return [];
  seen.add(op.name);
  if (op.kind === 'source') return [op];
  return op.inputs.flatMap((i) => upstreamSources(flow, flow.operator(i.from)!, seen));
}

function validate(flow: Flow, ops: readonly LogicalOperator[]): void {
  if (!ops.some((o) => o.kind === 'source')) throw planError(flow, 'it has no source');
  if (!ops.some((o) => o.kind === 'sink')) throw planError(flow, 'it has no sink (every flow must end in at least one sink)');
  const index = new Map(ops.map((o, i) => [o.name, i]));
  for (const [i, op] of ops.entries()) {
    for (const inp of op.inputs) {
      const j = index.get(inp.from);
      if (j === undefined) throw planError(flow, `operator '${op.name}' reads '${inp.from}', which is not in the flow`);
      // The builder only connects to operators that exist already, so inputs come first;
      // a hand-built graph that does not is a cycle (or out of order).
      if (j >= i) throw planError(flow, `operator '${op.name}' reads '${inp.from}', which comes after it: a cycle`);
      if (ops[j]!.kind === 'sink') throw planError(flow, `operator '${op.name}' reads sink '${inp.from}'; sinks have no output`);
    }
  }
  const unconsumed = ops.filter((o) => o.kind !== 'sink' && !ops.some((c) => c.inputs.some((i) => i.from === o.name && i.port === 'main')));
  if (unconsumed.length) {
    throw planError(flow, `nobody consumes the output of ${unconsumed.map((o) => `'${o.name}'`).join(', ')} (end every stream in a sink)`);
  }
  for (const op of ops) {
    if (!EVENT_TIME.has(op.kind)) continue;
    const missing = upstreamSources(flow, op).filter((s) => s.sourceOptions?.eventTime === undefined);
    if (missing.length) {
      throw planError(flow, `${op.kind} '${op.name}' needs event time, but source ${missing.map((s) => `'${s.name}'`).join(', ')} has no eventTime`);
    }
  }
}

export function planFlow(flow: Flow, opts: PlanOptions): PhysicalPlan {
  const ops = flow.operators;
  validate(flow, ops);
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
  const consumers = (name: string) => ops.reduce((n, c) => n + c.inputs.filter((i) => i.from === name).length, 0);
  const tasks: TaskPlan[] = [];
  const edges: EdgePlan[] = [];
  const taskOf = new Map<string, TaskPlan>();
  /** Tasks whose operators form a tree, not a line (no sink may join them). */
  const branched = new Set<TaskPlan>();
  for (const op of ops) {
    const p = parallelismOf(op);
    const stateful = STATEFUL.has(op.kind);
    const inp = op.inputs.length === 1 ? op.inputs[0]! : undefined;
    const producerTask = inp ? taskOf.get(inp.from) : undefined;
    const forward =
      opts.chaining && inp !== undefined && producerTask !== undefined && inp.port === 'main' && inp.keyBy === undefined &&
      producerTask.parallelism === p && !stateful && op.kind !== 'mapAsync';
    const atEnd = producerTask !== undefined && producerTask.operators[producerTask.operators.length - 1] === inp!.from;
    const chain =
      forward &&
      (op.kind === 'sink'
        ? consumers(inp!.from) === 1 && atEnd && !branched.has(producerTask!)
        : !producerTask!.kinds.includes('sink'));
    // Fusion across a keyed edge: with one producer and one consumer instance a hash
    // edge routes nothing, so a reduce joins the stateless task feeding it (the source's
    // task, usually) instead of costing a ring, a thread and an encode and decode per
    // record. Only reduce: it never reads the watermark or a timer, so a fused instance
    // needs no event time of its own (the source's task forwards the source's).
    const fuse =
      opts.chaining && op.kind === 'reduce' && inp !== undefined && producerTask !== undefined && inp.port === 'main' &&
      !producerTask.stateful && producerTask.parallelism === 1 && p === 1 &&
      !producerTask.kinds.some((k) => k === 'sink' || k === 'mapAsync') &&
      atEnd && consumers(inp.from) === 1 && !branched.has(producerTask);
    if (chain || fuse) {
      if (fuse) producerTask!.stateful = true;
      if (!fuse && (consumers(inp!.from) > 1 || !atEnd)) branched.add(producerTask!);
      producerTask!.operators.push(op.name);
      producerTask!.kinds.push(op.kind);
      producerTask!.shapes.push(operatorShape(op));
      producerTask!.label = chainLabel(producerTask!.operators, ops);
      taskOf.set(op.name, producerTask!);
      continue;
    }
    const task: TaskPlan = { index: tasks.length, operators: [op.name], kinds: [op.kind], shapes: [operatorShape(op)], parallelism: p, stateful, label: op.name };
    op.inputs.forEach((i, n) => {
      const from = taskOf.get(i.from)!;
      edges.push({
        from: from.index,
        to: task.index,
        partitioning: i.keyBy !== undefined ? 'hash' : from.parallelism === p ? 'forward' : 'rebalance',
        fromOperator: i.from,
        port: i.port,
        toOperator: op.name,
        input: n,
        side: i.side,
        keyOperator: i.keyBy !== undefined ? op.name : undefined,
      });
    });
    tasks.push(task);
    taskOf.set(op.name, task);
  }
  // Poison records: each operator's policy; dead letters get a sink task of their own.
  const onRecord: Record<string, OnRecordPolicy> = {};
  for (const op of ops) {
    if (op.kind === 'sink') continue;
    const p = opts.operators[op.name]?.errors?.onRecord ?? opts.errors?.onRecord ?? 'fail';
    if (p !== 'fail') onRecord[op.name] = p;
  }
  let deadLetterPath: string | undefined;
  const dlTasks = tasks.filter((t) => t.operators.some((n) => onRecord[n] === 'deadLetter'));
  if (dlTasks.length) {
    deadLetterPath = resolvePath(opts.errors!.deadLetterPath);
    const sink: TaskPlan = { index: tasks.length, operators: [DEAD_LETTER_SINK], kinds: ['sink'], shapes: ['sink'], parallelism: 1, stateful: false, label: DEAD_LETTER_SINK };
    dlTasks.forEach((t, n) => {
      edges.push({ from: t.index, to: sink.index, partitioning: t.parallelism === 1 ? 'forward' : 'rebalance', fromOperator: t.operators[t.operators.length - 1]!, port: 'dead', toOperator: DEAD_LETTER_SINK, input: n, side: 0 });
    });
    tasks.push(sink);
  }
  const statePart = ops.filter((o) => STATEFUL.has(o.kind) || o.kind === 'source' || o.kind === 'sink').map((o) => `${o.name}:${operatorShape(o)}`);
  const stateHash = createHash('sha256').update(JSON.stringify([opts.keyGroups, statePart])).digest('hex').slice(0, 16);
  return { flow: flow.name, keyGroups: opts.keyGroups, tasks, edges, stateHash, onRecord, deadLetterPath };
}

/** A task's operators as a chain `a→b→c`, or a tree `src→(f→m|g)` when it branched. */
function chainLabel(names: string[], ops: readonly LogicalOperator[]): string {
  const input = (n: string) => ops.find((o) => o.name === n)!.inputs[0]?.from;
  const render = (n: string): string => {
    const kids = names.filter((k) => k !== names[0] && input(k) === n);
    if (kids.length === 0) return n;
    return kids.length === 1 ? `${n}→${render(kids[0]!)}` : `${n}→(${kids.map(render).join('|')})`;
  };
  return render(names[0]!);
}

/** A one-line description per task, for --verbose and errors. */
export function describePlan(plan: PhysicalPlan): string {
  return plan.tasks
    .map((t) => {
      const ins = plan.edges.filter((x) => x.to === t.index);
      const from = ins.map((e) => `${ins.length > 1 || plan.edges.some((x) => x.from === e.from && x !== e) || e.from !== t.index - 1 ? `${plan.tasks[e.from]!.label}` : ''}${e.port === 'late' ? '.late' : ''}--${e.partitioning}--> `).join('');
      return `${from}[${t.label}]×${t.parallelism}`;
    })
    .join(' ');
}
