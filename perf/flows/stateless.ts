// Stateless pipeline: generator → map → filter → map → discard.
// Sizes from TIDEPOOL_BENCH_N and TIDEPOOL_BENCH_KEYS (see records.ts).
import { flow, sources } from '../../src/index.js';
import { discardSink, envInt, large, makeEvents, price, project } from './records.js';

const n = envInt('TIDEPOOL_BENCH_N', 1000);
const keys = envInt('TIDEPOOL_BENCH_KEYS', 1000);

export default flow('bench-stateless')
  .source('events', sources.generator({ count: n, make: makeEvents(keys) }))
  .map('price', price)
  .filter('large', large)
  .map('project', project)
  .sink('out', discardSink<{ u: string; c: number }>());
