// The public surface of tidepool. Keep it thin: the machinery lives behind it.
export { openStore, Store } from './store.js';
export type { StoreOptions, KeyRange, StoreStats, Key, CompressionSpec } from './store.js';
export { flow, Flow, DataStream, KeyedStream, FlowBuilder, isFlow } from './flow/builder.js';
export type { SourceSpec, SinkSpec, SourceReader, SinkWriter, InstanceContext } from './flow/types.js';
export type { ProcessContext, ValueState, MapState } from './operators/context.js';
export { sources, sinks } from './connectors/index.js';
export { run } from './runtime/coordinator.js';
export type { RunOptions, RunSummary } from './runtime/coordinator.js';
export { TidepoolError, type TidepoolErrorCode } from './errors.js';
