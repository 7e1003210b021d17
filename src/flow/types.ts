// The shapes a flow is made of: logical operators (what the user wrote) and the
// connector interfaces sources and sinks implement.
//
// A flow module is imported by the coordinator (to plan) and by every worker (to run
// its operators): functions never cross threads, operator *names* do.

/** Where a source or sink instance runs. */
export interface InstanceContext {
  /** Flow name, operator name. */
  flow: string;
  operator: string;
  subtask: number;
  parallelism: number;
  /**
   * Whether the run checkpoints (durable `lmdb` state). Without checkpoints a sink
   * cannot be exactly-once anyway, so it may publish records as they are written
   * instead of holding them until the end (`sinks.stdout()` prints progressively).
   */
  checkpointing?: boolean;
}

/** A running source instance: pulled by its worker in batches. */
export interface SourceReader<T = unknown> {
  /** Up to `max` records; an empty array when none is ready yet; null at end of input. */
  next(max: number): Promise<T[] | null> | T[] | null;
  /** Serializable position after the last record returned (checkpointed with state). */
  position(): unknown;
  /** Continue after `position` (a value `position()` returned in an earlier run). */
  seek(position: unknown): void | Promise<void>;
  close(): void | Promise<void>;
}

export interface SourceSpec<T = unknown> {
  readonly kind: 'source';
  /** e.g. 'file', 'generator', 'array' — shown in plans and errors. */
  readonly type: string;
  /** Whether the source ends (bounded) — a bounded flow exits when all sources end. */
  readonly bounded: boolean;
  /** Largest useful parallelism (e.g. an array of 3 items), if limited. */
  readonly maxParallelism?: number;
  /** Checks that can fail before any worker starts (missing file, bad option). */
  validate?(): void;
  open(ctx: InstanceContext): SourceReader<T> | Promise<SourceReader<T>>;
}

/**
 * A running sink instance. Records of one epoch (between two checkpoints) are
 * written, then `prepare(epoch)` makes them durable but invisible and `commit(epoch)`
 * publishes them — the two steps exactly-once output needs. Without checkpoints the
 * runtime prepares and commits once, at end of input.
 */
export interface SinkWriter<T = unknown> {
  write(records: T[]): void | Promise<void>;
  prepare(epoch: number): void | Promise<void>;
  commit(epoch: number): void | Promise<void>;
  /** Discard what was written but not prepared (a restart from a checkpoint). */
  abort?(): void | Promise<void>;
  close(): void | Promise<void>;
}

export interface SinkSpec<T = unknown> {
  readonly kind: 'sink';
  readonly type: string;
  /** Largest useful parallelism (stdout: 1). */
  readonly maxParallelism?: number;
  /** Parallelism when neither the builder nor the config sets one (file: 1, one output file). */
  readonly defaultParallelism?: number;
  /** Removes every trace of earlier runs (a run that starts from empty state). */
  reset?(parallelism: number): void | Promise<void>;
  validate?(): void;
  open(ctx: InstanceContext): SinkWriter<T> | Promise<SinkWriter<T>>;
}

export type OperatorKind =
  | 'source' | 'map' | 'filter' | 'flatMap' | 'mapAsync' | 'reduce' | 'process' | 'sink'
  | 'coProcess' | 'window' | 'join' | 'intervalJoin' | 'windowJoin';

/** Which output of an operator an edge reads: its records, or (windows) the late ones. */
export type Port = 'main' | 'late';

/** One input of a logical operator: the upstream operator, its port, the side it feeds. */
export interface LogicalInput {
  from: string;
  port: Port;
  /** 0 for one-input operators and a join's left side, 1 for the right side. */
  side: 0 | 1;
  /** Key function of the keyBy on this input (keyed operators and keyed sinks). */
  keyBy?: (record: never) => unknown;
}

export interface WatermarkOptions {
  /** Watermark = largest timestamp emitted − this (ms). Default 0. */
  maxOutOfOrdernessMs?: number;
  /** A source subtask with no records for this long is idle (left out of the minimum). */
  idleMs?: number;
}

export interface SourceOptions<T = unknown> {
  /** The record's event time in epoch ms. */
  eventTime?: (record: T) => number;
  watermark?: WatermarkOptions;
}

/** A window assigner (`windows.tumbling/sliding/session`). */
export type WindowAssigner =
  | { kind: 'tumbling'; sizeMs: number; offsetMs: number }
  | { kind: 'sliding'; sizeMs: number; slideMs: number; offsetMs: number }
  | { kind: 'session'; gapMs: number };

export interface AggregateSpec<T = unknown, A = unknown, R = unknown> {
  create(): A;
  add(acc: A, record: T): A;
  merge?(a: A, b: A): A;
  result?(acc: A, window: { start: number; end: number }, key: unknown): R;
}

/** One operator as the user wrote it: a node of the flow graph. */
export interface LogicalOperator {
  name: string;
  kind: OperatorKind;
  /** Upstream operators (none for a source). */
  inputs: LogicalInput[];
  fn?: (...args: never[]) => unknown;
  source?: SourceSpec;
  sourceOptions?: SourceOptions;
  sink?: SinkSpec;
  /** Explicit parallelism from the builder, if any (config overrides it). */
  parallelism?: number;
  /** Operator-specific options (window assigner and aggregate, join bounds, timers…). */
  options?: OperatorOptions;
}

export interface OperatorOptions {
  onTimer?: (time: number, ctx: never) => void;
  /** connect(...).process: the two sides' functions. */
  left?: (record: never, ctx: never) => void;
  right?: (record: never, ctx: never) => void;
  assigner?: WindowAssigner;
  aggregate?: AggregateSpec;
  allowedLatenessMs?: number;
  ttlMs?: number;
  lowerMs?: number;
  upperMs?: number;
  concurrency?: number;
  ordered?: boolean;
}

/** Operators that keep keyed state (each instance owns a partition). */
export const STATEFUL: ReadonlySet<OperatorKind> = new Set(['reduce', 'process', 'coProcess', 'window', 'join', 'intervalJoin', 'windowJoin']);
/** Operators that need event time on their inputs. */
export const EVENT_TIME: ReadonlySet<OperatorKind> = new Set(['window', 'intervalJoin', 'windowJoin']);
/** Two-input operators. */
export const TWO_INPUT: ReadonlySet<OperatorKind> = new Set(['coProcess', 'join', 'intervalJoin', 'windowJoin']);
