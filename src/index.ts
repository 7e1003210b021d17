// The public surface of tidepool. Keep it thin: the machinery lives behind it.
export { openStore, Store } from './store.js';
export type { StoreOptions, KeyRange, StoreStats, Key, CompressionSpec } from './store.js';
export { flow, Flow, DataStream, KeyedStream, WindowedStream, WindowedResultStream, ConnectedStreams, isFlow } from './flow/builder.js';
export { windows } from './flow/windows.js';
export type { WindowAssigner, AggregateSpec, SourceOptions, WatermarkOptions } from './flow/types.js';
export type { SourceSpec, SinkSpec, SourceReader, SinkWriter, InstanceContext } from './flow/types.js';
export type { ProcessContext, TimerContext, TimerService, ValueState, MapState, ListState, StateOptions } from './operators/context.js';
export { sources, sinks } from './connectors/index.js';
export type { NexmarkEvent, NexmarkPerson, NexmarkAuction, NexmarkBid } from './connectors/index.js';
export type { RunOptions, RunSummary } from './runtime/coordinator.js';
import type { RunOptions, RunSummary } from './runtime/coordinator.js';

/**
 * Runs a flow module: `run('flow.ts', { state: 'state/', set: ['parallelism=2'] })`.
 * The coordinator (config schema, module bundler, metrics server) loads on the first
 * call: every operator worker imports this entry through its flow module, and none of
 * them runs flows, so their start-up — a restore's time to first record — skips it.
 */
export async function run(modulePath: string, options?: RunOptions): Promise<RunSummary> {
  // The I/O worker (a thread, lmdb-js) boots while the coordinator loads: the first run
  // in a process would otherwise wait for one after the other (perf/RESULTS.md, "Fixed
  // cost"). A run with memory state leaves it idle; it does not keep the process alive.
  const [coordinator] = await Promise.all([
    import('./runtime/coordinator.js'),
    import('./storage/io-client.js').then((m) => m.IoClient.shared()),
  ]);
  return coordinator.run(modulePath, options);
}
export { TidepoolError, type TidepoolErrorCode } from './errors.js';
