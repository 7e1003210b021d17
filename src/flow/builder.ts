// The fluent flow builder of the contract:
//
//   export default flow('wordcount')
//     .source('lines', sources.file({ path: 'input.txt' }))
//     .flatMap('words', (line) => line.split(' '))
//     .keyBy((w) => w)
//     .reduce('counts', (acc, w) => (acc ?? 0) + 1)
//     .sink('out', sinks.file({ path: 'counts.jsonl' }));
//
// Building only records operators; nothing runs. Names must be unique and stable:
// state is stored under them, like Flink's operator uids.
import { TidepoolTypeError } from '../errors.js';
import type { LogicalOperator, SinkSpec, SourceSpec } from './types.js';
import type { ProcessContext } from '../operators/context.js';

const FLOW_BRAND = Symbol.for('tidepool.flow');
const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$/;

function badFlow(why: string): TidepoolTypeError {
  return new TidepoolTypeError('TIDEPOOL_BAD_OPTION', `invalid flow: ${why}`);
}

/** A complete flow definition: the default export of a flow module. */
export class Flow {
  readonly [FLOW_BRAND] = true;
  constructor(readonly name: string, readonly operators: readonly LogicalOperator[]) {}

  operator(name: string): LogicalOperator | undefined {
    return this.operators.find((o) => o.name === name);
  }
}

export function isFlow(x: unknown): x is Flow {
  return typeof x === 'object' && x !== null && (x as Record<symbol, unknown>)[FLOW_BRAND] === true;
}

class Chain {
  constructor(readonly flowName: string, readonly ops: LogicalOperator[]) {}

  add(op: LogicalOperator): LogicalOperator[] {
    if (typeof op.name !== 'string' || !NAME_RE.test(op.name)) {
      throw badFlow(`operator name ${JSON.stringify(op.name)} must be 1-100 letters, digits, '.', '_' or '-'`);
    }
    if (this.ops.some((o) => o.name === op.name)) throw badFlow(`operator name '${op.name}' is used twice; names must be unique`);
    if (op.fn !== undefined && typeof op.fn !== 'function') throw badFlow(`${op.kind} '${op.name}' needs a function`);
    return [...this.ops, op];
  }
}

export class FlowBuilder {
  constructor(private readonly name: string) {
    if (typeof name !== 'string' || !NAME_RE.test(name)) throw badFlow(`flow name ${JSON.stringify(name)} must be 1-100 letters, digits, '.', '_' or '-'`);
  }

  source<T>(name: string, spec: SourceSpec<T>): DataStream<T> {
    if (spec?.kind !== 'source') throw badFlow(`source '${name}' needs a source (sources.file, sources.generator, sources.array)`);
    const chain = new Chain(this.name, []);
    return new DataStream<T>(new Chain(this.name, chain.add({ name, kind: 'source', source: spec as SourceSpec })));
  }
}

export class DataStream<T> {
  /** @internal */
  constructor(private readonly chain: Chain) {}

  private next<U>(op: LogicalOperator): DataStream<U> {
    return new DataStream<U>(new Chain(this.chain.flowName, this.chain.add(op)));
  }

  map<U>(name: string, fn: (record: T) => U): DataStream<U> {
    return this.next({ name, kind: 'map', fn: fn as LogicalOperator['fn'] });
  }

  filter(name: string, fn: (record: T) => boolean): DataStream<T> {
    return this.next({ name, kind: 'filter', fn: fn as LogicalOperator['fn'] });
  }

  flatMap<U>(name: string, fn: (record: T) => Iterable<U> | null | undefined): DataStream<U> {
    return this.next({ name, kind: 'flatMap', fn: fn as LogicalOperator['fn'] });
  }

  keyBy<K>(keyFn: (record: T) => K): KeyedStream<T, K> {
    if (typeof keyFn !== 'function') throw badFlow('keyBy needs a key function');
    return new KeyedStream<T, K>(this.chain, keyFn as LogicalOperator['keyBy']);
  }

  sink(name: string, spec: SinkSpec<T>): Flow {
    if (spec?.kind !== 'sink') throw badFlow(`sink '${name}' needs a sink (sinks.file, sinks.stdout)`);
    return new Flow(this.chain.flowName, this.chain.add({ name, kind: 'sink', sink: spec as SinkSpec }));
  }
}

export class KeyedStream<T, K> {
  /** @internal */
  constructor(private readonly chain: Chain, private readonly keyFn: LogicalOperator['keyBy']) {}

  private next<U>(op: LogicalOperator): DataStream<U> {
    return new DataStream<U>(new Chain(this.chain.flowName, this.chain.add({ ...op, keyBy: this.keyFn })));
  }

  /** Keeps one value per key; emits `{ key, value }` after every record. */
  reduce<A>(name: string, fn: (acc: A | undefined, record: T) => A): DataStream<{ key: K; value: A }> {
    return this.next({ name, kind: 'reduce', fn: fn as LogicalOperator['fn'] });
  }

  /** Runs `fn` per record with the key, keyed state and an emitter. */
  process<U>(name: string, fn: (record: T, ctx: ProcessContext<K, U>) => void): DataStream<U> {
    return this.next({ name, kind: 'process', fn: fn as LogicalOperator['fn'] });
  }

  /** A sink partitioned by key (each key always goes to the same sink subtask). */
  sink(name: string, spec: SinkSpec<T>): Flow {
    if (spec?.kind !== 'sink') throw badFlow(`sink '${name}' needs a sink (sinks.file, sinks.stdout)`);
    return new Flow(this.chain.flowName, this.chain.add({ name, kind: 'sink', sink: spec as SinkSpec, keyBy: this.keyFn }));
  }
}

export function flow(name: string): FlowBuilder {
  return new FlowBuilder(name);
}
