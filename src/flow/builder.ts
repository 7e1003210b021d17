// The fluent flow builder of the contract. A flow is a graph:
//
//   const f = flow('hot-items');
//   const events = f.source('events', sources.nexmark({ events: 1e6 }), { eventTime: (e) => e.dateTime });
//   const bids = events.filter('bids', (e) => e.type === 'bid');      // a stream used twice fans out
//   bids.keyBy((b) => b.auction).window(windows.tumbling({ sizeMs: 10_000 }))
//       .aggregate('counts', { create: () => 0, add: (n) => n + 1 })
//       .sink('counts-out', sinks.file({ path: 'counts.jsonl' }));    // sink() returns the flow
//   export default f;
//
// Building only records operators (nodes) and their inputs (edges); nothing runs.
// Names must be unique and stable: state is stored under them, like Flink's uids.
import { TidepoolTypeError } from '../errors.js';
import type { AggregateSpec, LogicalInput, LogicalOperator, OperatorKind, OperatorOptions, Port, SinkSpec, SourceOptions, SourceSpec, WindowAssigner } from './types.js';
import type { ProcessContext, TimerContext } from '../operators/context.js';

const FLOW_BRAND = Symbol.for('tidepool.flow');
const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$/;

function badFlow(why: string): TidepoolTypeError {
  return new TidepoolTypeError('TIDEPOOL_BAD_OPTION', `invalid flow: ${why}`);
}

/** A user function that is `async` (returns a Promise) where a plain one is required. */
function checkSync(kind: string, name: string, fn: unknown): void {
  if (typeof fn === 'function' && fn.constructor?.name === 'AsyncFunction') {
    throw badFlow(`${kind} '${name}' is given an async function; it must return its result directly (use mapAsync for asynchronous calls)`);
  }
}

/** A complete flow definition: the default export of a flow module. */
export class Flow {
  readonly [FLOW_BRAND] = true;
  private readonly nodes: LogicalOperator[];

  constructor(readonly name: string, operators: readonly LogicalOperator[] = []) {
    if (typeof name !== 'string' || !NAME_RE.test(name)) throw badFlow(`flow name ${JSON.stringify(name)} must be 1-100 letters, digits, '.', '_' or '-'`);
    this.nodes = [...operators];
  }

  /** Every operator, in the order they were added (inputs always come first). */
  get operators(): readonly LogicalOperator[] {
    return this.nodes;
  }

  operator(name: string): LogicalOperator | undefined {
    return this.nodes.find((o) => o.name === name);
  }

  /** Adds a source; may be called several times. */
  source<T>(name: string, spec: SourceSpec<T>, options?: SourceOptions<T>): DataStream<T> {
    if (spec?.kind !== 'source') throw badFlow(`source '${name}' needs a source (sources.file, sources.generator, sources.array, sources.nexmark)`);
    const so = checkSourceOptions(name, options);
    this.add({ name, kind: 'source', inputs: [], source: spec as SourceSpec, sourceOptions: so as SourceOptions });
    return new DataStream<T>(this, [{ op: name, port: 'main' }]);
  }

  /** @internal Adds an operator after checking its name and function. */
  add(op: LogicalOperator): void {
    if (typeof op.name !== 'string' || !NAME_RE.test(op.name)) {
      throw badFlow(`operator name ${JSON.stringify(op.name)} must be 1-100 letters, digits, '.', '_' or '-'`);
    }
    if (this.nodes.some((o) => o.name === op.name)) throw badFlow(`operator name '${op.name}' is used twice in flow '${this.name}'; names must be unique`);
    if (op.fn !== undefined && typeof op.fn !== 'function') throw badFlow(`${op.kind} '${op.name}' needs a function`);
    this.nodes.push(op);
  }
}

export function isFlow(x: unknown): x is Flow {
  return typeof x === 'object' && x !== null && (x as Record<symbol, unknown>)[FLOW_BRAND] === true;
}

function checkSourceOptions(name: string, o: SourceOptions<never> | undefined): SourceOptions<never> | undefined {
  if (o === undefined) return undefined;
  if (typeof o !== 'object' || o === null) throw badFlow(`source '${name}' options must be an object`);
  for (const k of Object.keys(o)) if (k !== 'eventTime' && k !== 'watermark') throw badFlow(`source '${name}' has unknown option '${k}' (expected eventTime, watermark)`);
  if (o.eventTime !== undefined && typeof o.eventTime !== 'function') throw badFlow(`source '${name}' eventTime must be a function (record) => epoch ms`);
  const w = o.watermark;
  if (w !== undefined) {
    if (typeof w !== 'object' || w === null) throw badFlow(`source '${name}' watermark must be an object`);
    for (const k of Object.keys(w)) if (k !== 'maxOutOfOrdernessMs' && k !== 'idleMs') throw badFlow(`source '${name}' watermark has unknown option '${k}' (expected maxOutOfOrdernessMs, idleMs)`);
    if (w.maxOutOfOrdernessMs !== undefined && !(Number.isFinite(w.maxOutOfOrdernessMs) && w.maxOutOfOrdernessMs >= 0)) throw badFlow(`source '${name}' watermark.maxOutOfOrdernessMs must be a number ≥ 0, got ${String(w.maxOutOfOrdernessMs)}`);
    if (w.idleMs !== undefined && !(Number.isFinite(w.idleMs) && w.idleMs > 0)) throw badFlow(`source '${name}' watermark.idleMs must be a number > 0, got ${String(w.idleMs)}`);
    if (o.eventTime === undefined) throw badFlow(`source '${name}' has a watermark but no eventTime`);
  }
  return o;
}

interface StreamRef {
  op: string;
  port: Port;
}

export class DataStream<T> {
  /** @internal */
  constructor(
    /** @internal */ readonly flow: Flow,
    /** @internal */ readonly refs: readonly StreamRef[],
  ) {}

  /** @internal */
  inputs(side: 0 | 1, keyBy?: LogicalInput['keyBy']): LogicalInput[] {
    return this.refs.map((r) => ({ from: r.op, port: r.port, side, keyBy }));
  }

  /** @internal */
  next<U>(op: Omit<LogicalOperator, 'inputs'>, inputs: LogicalInput[] = this.inputs(0)): DataStream<U> {
    this.flow.add({ ...op, inputs });
    return new DataStream<U>(this.flow, [{ op: op.name, port: 'main' }]);
  }

  map<U>(name: string, fn: (record: T) => U): DataStream<U> {
    checkSync('map', name, fn);
    return this.next({ name, kind: 'map', fn: fn as LogicalOperator['fn'] });
  }

  filter(name: string, fn: (record: T) => boolean): DataStream<T> {
    checkSync('filter', name, fn);
    return this.next({ name, kind: 'filter', fn: fn as LogicalOperator['fn'] });
  }

  flatMap<U>(name: string, fn: (record: T) => Iterable<U> | null | undefined): DataStream<U> {
    checkSync('flatMap', name, fn);
    return this.next({ name, kind: 'flatMap', fn: fn as LogicalOperator['fn'] });
  }

  /**
   * Calls an async function per record, at most `concurrency` calls in flight per
   * subtask; `ordered` (default) emits in input order. A checkpoint barrier (and a
   * watermark) waits until the calls before it have finished.
   */
  mapAsync<U>(name: string, fn: (record: T) => Promise<U> | U, options: { concurrency?: number; ordered?: boolean } = {}): DataStream<U> {
    if (typeof options !== 'object' || options === null) throw badFlow(`mapAsync '${name}' options must be an object`);
    for (const k of Object.keys(options)) if (k !== 'concurrency' && k !== 'ordered') throw badFlow(`mapAsync '${name}' has unknown option '${k}' (expected concurrency, ordered)`);
    const concurrency = options.concurrency ?? 64;
    if (!Number.isInteger(concurrency) || concurrency < 1 || concurrency > 65536) throw badFlow(`mapAsync '${name}' concurrency must be an integer from 1 to 65536, got ${String(options.concurrency)}`);
    if (options.ordered !== undefined && typeof options.ordered !== 'boolean') throw badFlow(`mapAsync '${name}' ordered must be true or false`);
    return this.next({ name, kind: 'mapAsync', fn: fn as LogicalOperator['fn'], options: { concurrency, ordered: options.ordered ?? true } });
  }

  /** Merges this stream with others (of the same flow) into one. */
  union(...others: DataStream<T>[]): DataStream<T> {
    const refs = [...this.refs];
    for (const o of others) {
      if (!(o instanceof DataStream)) throw badFlow('union takes streams of the same flow');
      if (o.flow !== this.flow) throw badFlow(`union of streams of two different flows ('${this.flow.name}' and '${o.flow.name}')`);
      refs.push(...o.refs);
    }
    return new DataStream<T>(this.flow, refs);
  }

  keyBy<K>(keyFn: (record: T) => K): KeyedStream<T, K> {
    if (typeof keyFn !== 'function') throw badFlow('keyBy needs a key function');
    checkSync('keyBy', 'key function', keyFn);
    return new KeyedStream<T, K>(this, keyFn as LogicalInput['keyBy']);
  }

  /** Writes every record to a sink; returns the flow (so a one-chain module can end here). */
  sink(name: string, spec: SinkSpec<T>): Flow {
    if (spec?.kind !== 'sink') throw badFlow(`sink '${name}' needs a sink (sinks.file, sinks.stdout)`);
    this.next({ name, kind: 'sink', sink: spec as SinkSpec });
    return this.flow;
  }
}

/** A window's result stream: its records, and `.late()` for records too late for it. */
export class WindowedResultStream<U> extends DataStream<U> {
  /** Records dropped as too late for every window they belong to. */
  late<T = unknown>(): DataStream<T> {
    return new DataStream<T>(this.flow, [{ op: this.refs[0]!.op, port: 'late' }]);
  }
}

export type ProcessFn<T, K, U> = (record: T, ctx: ProcessContext<K, U>) => void;
export type OnTimerFn<K, U> = (time: number, ctx: TimerContext<K, U>) => void;

export class KeyedStream<T, K> {
  /** @internal */
  constructor(/** @internal */ readonly stream: DataStream<T>, /** @internal */ readonly keyFn: LogicalInput['keyBy']) {}

  private next<U>(op: Omit<LogicalOperator, 'inputs'>): DataStream<U> {
    return this.stream.next<U>(op, this.stream.inputs(0, this.keyFn));
  }

  /** @internal Both keyed inputs of a two-input operator. */
  private two<U>(op: Omit<LogicalOperator, 'inputs'>, other: KeyedStream<unknown, unknown>, what: string): DataStream<U> {
    if (!(other instanceof KeyedStream)) throw badFlow(`${what} '${op.name}' needs a keyed stream on both sides (call keyBy first)`);
    if (other.stream.flow !== this.stream.flow) throw badFlow(`${what} '${op.name}' joins streams of two different flows ('${this.stream.flow.name}' and '${other.stream.flow.name}')`);
    return this.stream.next<U>(op, [...this.stream.inputs(0, this.keyFn), ...other.stream.inputs(1, other.keyFn)]);
  }

  /** Keeps one value per key; emits `{ key, value }` after every record. */
  reduce<A>(name: string, fn: (acc: A | undefined, record: T) => A): DataStream<{ key: K; value: A }> {
    checkSync('reduce', name, fn);
    return this.next({ name, kind: 'reduce', fn: fn as LogicalOperator['fn'] });
  }

  /** Runs `fn` per record with the key, keyed state, timers and an emitter. */
  process<U>(name: string, fn: ProcessFn<T, K, U>, options?: { onTimer?: OnTimerFn<K, U> }): DataStream<U> {
    checkSync('process', name, fn);
    if (options !== undefined && (typeof options !== 'object' || options === null)) throw badFlow(`process '${name}' options must be an object`);
    for (const k of Object.keys(options ?? {})) if (k !== 'onTimer') throw badFlow(`process '${name}' has unknown option '${k}' (expected onTimer)`);
    if (options?.onTimer !== undefined && typeof options.onTimer !== 'function') throw badFlow(`process '${name}' onTimer must be a function`);
    checkSync('process', name, options?.onTimer);
    return this.next({ name, kind: 'process', fn: fn as LogicalOperator['fn'], options: { onTimer: options?.onTimer as OperatorOptions['onTimer'] } });
  }

  /** Assigns records to event-time windows (per key). */
  window(assigner: WindowAssigner): WindowedStream<T, K> {
    if (!assigner || typeof assigner !== 'object' || !['tumbling', 'sliding', 'session'].includes((assigner as { kind?: string }).kind ?? '')) {
      throw badFlow('window needs an assigner (windows.tumbling, windows.sliding, windows.session)');
    }
    return new WindowedStream<T, K>(this, assigner);
  }

  /** Keyed two-input operator: `left` and `right` functions, equal keys meet. */
  connect<T2>(other: KeyedStream<T2, K>): ConnectedStreams<T, T2, K> {
    if (!(other instanceof KeyedStream)) throw badFlow('connect needs a keyed stream (call keyBy first)');
    if (other.stream.flow !== this.stream.flow) throw badFlow(`connect of streams of two different flows ('${this.stream.flow.name}' and '${other.stream.flow.name}')`);
    return new ConnectedStreams<T, T2, K>(this, other, (op, o) => this.two(op, o as KeyedStream<unknown, unknown>, 'connect'));
  }

  /** Inner join: every pair of equal-key records once, as soon as both are there. */
  join<T2, U>(name: string, other: KeyedStream<T2, K>, fn: (left: T, right: T2) => U, options: { ttlMs?: number } = {}): DataStream<U> {
    checkFn('join', name, fn);
    checkKeys('join', name, options, ['ttlMs']);
    if (options.ttlMs !== undefined && !(Number.isInteger(options.ttlMs) && options.ttlMs > 0)) throw badFlow(`join '${name}' ttlMs must be a positive integer, got ${String(options.ttlMs)}`);
    return this.two({ name, kind: 'join', fn: fn as LogicalOperator['fn'], options: { ttlMs: options.ttlMs } }, other as KeyedStream<unknown, unknown>, 'join');
  }

  /** Pairs with `left.time + lowerMs ≤ right.time ≤ left.time + upperMs`. */
  intervalJoin<T2, U>(name: string, other: KeyedStream<T2, K>, bounds: { lowerMs: number; upperMs: number }, fn: (left: T, right: T2) => U): DataStream<U> {
    checkFn('intervalJoin', name, fn);
    if (typeof bounds !== 'object' || bounds === null) throw badFlow(`intervalJoin '${name}' needs { lowerMs, upperMs }`);
    checkKeys('intervalJoin', name, bounds, ['lowerMs', 'upperMs']);
    const { lowerMs, upperMs } = bounds;
    if (!Number.isInteger(lowerMs) || !Number.isInteger(upperMs)) throw badFlow(`intervalJoin '${name}' lowerMs and upperMs must be integers (ms), got ${String(lowerMs)} and ${String(upperMs)}`);
    if (lowerMs > upperMs) throw badFlow(`intervalJoin '${name}' lowerMs (${lowerMs}) is greater than upperMs (${upperMs})`);
    return this.two({ name, kind: 'intervalJoin', fn: fn as LogicalOperator['fn'], options: { lowerMs, upperMs } }, other as KeyedStream<unknown, unknown>, 'intervalJoin');
  }

  /** Pairs of equal-key records in the same window, emitted when the window closes. */
  windowJoin<T2, U>(name: string, other: KeyedStream<T2, K>, assigner: WindowAssigner, fn: (left: T, right: T2, window: { start: number; end: number }) => U): DataStream<U> {
    checkFn('windowJoin', name, fn);
    if (!assigner || typeof assigner !== 'object' || (assigner.kind !== 'tumbling' && assigner.kind !== 'sliding')) {
      throw badFlow(`windowJoin '${name}' needs a windows.tumbling or windows.sliding assigner`);
    }
    return this.two({ name, kind: 'windowJoin', fn: fn as LogicalOperator['fn'], options: { assigner } }, other as KeyedStream<unknown, unknown>, 'windowJoin');
  }

  /** A sink partitioned by key (each key always goes to the same sink subtask). */
  sink(name: string, spec: SinkSpec<T>): Flow {
    if (spec?.kind !== 'sink') throw badFlow(`sink '${name}' needs a sink (sinks.file, sinks.stdout)`);
    this.next({ name, kind: 'sink', sink: spec as SinkSpec });
    return this.stream.flow;
  }
}

function checkFn(kind: string, name: string, fn: unknown): void {
  if (typeof fn !== 'function') throw badFlow(`${kind} '${name}' needs a function`);
  checkSync(kind, name, fn);
}

function checkKeys(kind: string, name: string, o: object, known: string[]): void {
  if (typeof o !== 'object' || o === null) throw badFlow(`${kind} '${name}' options must be an object`);
  for (const k of Object.keys(o)) if (!known.includes(k)) throw badFlow(`${kind} '${name}' has unknown option '${k}' (expected ${known.join(', ')})`);
}

export class WindowedStream<T, K> {
  /** @internal */
  constructor(private readonly keyed: KeyedStream<T, K>, private readonly assigner: WindowAssigner) {}

  /**
   * One record per key and window once the watermark reaches the window's end:
   * `result(acc, window, key)`, by default `{ key, window: { start, end }, value }`.
   */
  aggregate<A, R = { key: K; window: { start: number; end: number }; value: A }>(
    name: string,
    spec: { create(): A; add(acc: A, record: T): A; merge?(a: A, b: A): A; result?(acc: A, window: { start: number; end: number }, key: K): R },
    options: { allowedLatenessMs?: number } = {},
  ): WindowedResultStream<R> {
    if (typeof spec !== 'object' || spec === null) throw badFlow(`aggregate '${name}' needs { create, add, merge?, result? }`);
    checkKeys('aggregate', name, spec, ['create', 'add', 'merge', 'result']);
    for (const f of ['create', 'add', 'merge', 'result'] as const) {
      if (spec[f] !== undefined && typeof spec[f] !== 'function') throw badFlow(`aggregate '${name}' ${f} must be a function`);
      checkSync('aggregate', `${name}.${f}`, spec[f]);
    }
    if (typeof spec.create !== 'function' || typeof spec.add !== 'function') throw badFlow(`aggregate '${name}' needs create and add functions`);
    return this.add(name, spec as AggregateSpec, options);
  }

  /** Folds each key's records per window: `(acc | undefined, record) => acc`. */
  reduce<A>(name: string, fn: (acc: A | undefined, record: T) => A, options: { allowedLatenessMs?: number } = {}): WindowedResultStream<{ key: K; window: { start: number; end: number }; value: A }> {
    if (typeof fn !== 'function') throw badFlow(`reduce '${name}' needs a function`);
    checkSync('reduce', name, fn);
    const add = fn as (a: unknown, r: unknown) => unknown;
    return this.add(name, { create: () => undefined, add }, options) as never;
  }

  private add<R>(name: string, aggregate: AggregateSpec, options: { allowedLatenessMs?: number }): WindowedResultStream<R> {
    checkKeys('window', name, options, ['allowedLatenessMs']);
    const lateness = options.allowedLatenessMs ?? 0;
    if (!Number.isInteger(lateness) || lateness < 0) throw badFlow(`window '${name}' allowedLatenessMs must be an integer ≥ 0, got ${String(options.allowedLatenessMs)}`);
    const s = this.keyed.stream;
    s.flow.add({ name, kind: 'window', inputs: s.inputs(0, this.keyed.keyFn), options: { assigner: this.assigner, aggregate, allowedLatenessMs: lateness } });
    return new WindowedResultStream<R>(s.flow, [{ op: name, port: 'main' }]);
  }
}

export interface CoProcessFunctions<T1, T2, K, U> {
  left(record: T1, ctx: ProcessContext<K, U>): void;
  right(record: T2, ctx: ProcessContext<K, U>): void;
  onTimer?(time: number, ctx: TimerContext<K, U>): void;
}

export class ConnectedStreams<T1, T2, K> {
  /** @internal */
  constructor(
    private readonly a: KeyedStream<T1, K>,
    private readonly b: KeyedStream<T2, K>,
    private readonly make: (op: Omit<LogicalOperator, 'inputs'>, other: KeyedStream<T2, K>) => DataStream<unknown>,
  ) {}

  process<U>(name: string, fns: CoProcessFunctions<T1, T2, K, U>): DataStream<U> {
    if (typeof fns !== 'object' || fns === null) throw badFlow(`process '${name}' needs { left, right, onTimer? }`);
    checkKeys('process', name, fns, ['left', 'right', 'onTimer']);
    for (const f of ['left', 'right'] as const) checkFn('process', `${name}.${f}`, fns[f]);
    if (fns.onTimer !== undefined) checkFn('process', `${name}.onTimer`, fns.onTimer);
    void this.a;
    return this.make({ name, kind: 'coProcess', options: { left: fns.left as never, right: fns.right as never, onTimer: fns.onTimer as never } }, this.b) as DataStream<U>;
  }
}

export function flow(name: string): Flow {
  return new Flow(name);
}

/** @internal The kinds the builder creates, for the planner's checks. */
export type { OperatorKind };
