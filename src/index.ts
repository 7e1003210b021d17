// The public surface of tidepool. Keep it thin: the machinery lives behind it.
export { openStore, Store } from './store.js';
export type { StoreOptions, KeyRange, StoreStats, Key, CompressionSpec } from './store.js';
export { TidepoolError, type TidepoolErrorCode } from './errors.js';
