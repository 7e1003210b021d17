// Sliding-window count: generator (event time) → keyBy(k) → sliding window count → discard.
// The records (slidingRecord) are shared with perf/sliding.bench.ts's plain baseline. Sizes from the
// environment: TIDEPOOL_BENCH_N records, TIDEPOOL_BENCH_KEYS keys, TIDEPOOL_BENCH_STEP_MS
// of event time between records, TIDEPOOL_BENCH_SLIDE_MS and TIDEPOOL_BENCH_RATIO
// (window size = ratio × slide).
import { flow, sources, windows } from '../../src/index.js';
import { discardSink, envInt, slidingRecord, type Tick, type WindowCount } from './records.js';

const n = envInt('TIDEPOOL_BENCH_N', 1000);
const keys = envInt('TIDEPOOL_BENCH_KEYS', 5);
const step = envInt('TIDEPOOL_BENCH_STEP_MS', 18);
const slide = envInt('TIDEPOOL_BENCH_SLIDE_MS', 1000);
const ratio = envInt('TIDEPOOL_BENCH_RATIO', 5);

const f = flow('bench-sliding-count');
f.source('ticks', sources.generator({ count: n, make: slidingRecord(keys, step) }), { eventTime: (r: Tick) => r.t, watermark: { maxOutOfOrdernessMs: 0 } })
  .keyBy((r: Tick) => r.k)
  .window(windows.sliding({ sizeMs: ratio * slide, slideMs: slide }))
  .aggregate('counts', { create: () => 0, add: (c: number) => c + 1, merge: (a: number, b: number) => a + b })
  .sink('out', discardSink<WindowCount>());
export default f;
