// Lazy-restore benchmark flow (perf/remote-restore.bench.ts). Records 0..keys-1 write
// key i a value of TIDEPOOL_BENCH_VALUE_BYTES characters (the state); after them a paced
// tail (TIDEPOOL_BENCH_TAIL_RATE records/s, TIDEPOOL_BENCH_TAIL records) overwrites
// scattered keys. Only tail updates reach the file sink TIDEPOOL_BENCH_OUT, so its first
// line after a restore is the restored run's first record through restored state.
import { flow, sources, sinks } from '../../src/index.js';
import { envInt } from './records.js';

const keys = envInt('TIDEPOOL_BENCH_KEYS', 1000);
const tail = envInt('TIDEPOOL_BENCH_TAIL', 1_000_000);
const tailRate = envInt('TIDEPOOL_BENCH_TAIL_RATE', 2000);
const valueBytes = envInt('TIDEPOOL_BENCH_VALUE_BYTES', 100);
const out = process.env.TIDEPOOL_BENCH_OUT ?? '/dev/null';
const filler = 'x'.repeat(valueBytes);
const SCATTER = 999_983;

interface Value { i: number; s: string }
let marked = false;

// Tail pacing: sleep the source worker (Atomics.wait) when ahead of tailRate, counted
// from the first tail record this process makes (a restored run starts mid-tail).
const sleeper = new Int32Array(new SharedArrayBuffer(4));
let tailStart = 0;
let first = -1;
const pace = (i: number) => {
  if (i < keys) return;
  if (first < 0) {
    first = i;
    tailStart = performance.now();
  }
  const ahead = ((i - first + 1) * 1000) / tailRate - (performance.now() - tailStart);
  if (ahead > 2) Atomics.wait(sleeper, 0, 0, ahead);
};

export default flow('bench-remote-resume')
  .source('gen', sources.generator({ count: keys + tail, make: (i: number) => (pace(i), { i, k: i < keys ? i : (i * SCATTER) % keys }) }))
  .keyBy((r: { k: number }) => r.k)
  .reduce('values', (_acc: Value | undefined, r: { i: number }): Value => {
    if (r.i >= keys && !marked) {
      marked = true; // the bench times this line: the first tail record through restored state
      process.stderr.write('tidepool-bench: first record\n');
    }
    return { i: r.i, s: filler };
  })
  .filter('tail', (r: { key: number; value: Value }) => r.value.i >= keys)
  .sink('out', sinks.file({ path: out }));
