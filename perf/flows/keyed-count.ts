// Keyed count: generator → keyBy(user) → reduce count → discard.
// Sizes from TIDEPOOL_BENCH_N and TIDEPOOL_BENCH_KEYS (see records.ts).
import { flow, sources } from '../../src/index.js';
import { count, discardSink, envInt, makeEvents, userOf } from './records.js';

const n = envInt('TIDEPOOL_BENCH_N', 1000);
const keys = envInt('TIDEPOOL_BENCH_KEYS', 1000);

export default flow('bench-keyed-count')
  .source('events', sources.generator({ count: n, make: makeEvents(keys) }))
  .keyBy(userOf)
  .reduce('counts', count)
  .sink('out', discardSink<{ key: string; value: number }>());
