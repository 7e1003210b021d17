// The recovery benchmark's stateless reference (perf/recovery.bench.ts): unbounded
// generator → map → stdout. No keyed state: its time to the first output line is what
// starting node, the CLI, the workers and the first checkpoint cost by themselves.
//   TIDEPOOL_BENCH_MARKERS=1  `@@module-loaded` (main thread) and `@@first-record {…}`
//                             (the map, first record) on stderr, as recovery-state.ts
import { writeSync } from 'node:fs';
import { isMainThread } from 'node:worker_threads';
import { flow, sinks, sources } from '../../src/index.js';

const markers = process.env.TIDEPOOL_BENCH_MARKERS === '1';
if (markers && isMainThread) writeSync(2, '@@module-loaded\n');

let marked = false;

export default flow('bench-first-output')
  .source('gen', sources.generator({ make: (i: number) => i }))
  .map('line', (i: number) => {
    const out = { i, k: i, len: -1 };
    if (markers && !marked) {
      marked = true;
      writeSync(2, `@@first-record ${JSON.stringify(out)}\n`);
    }
    return out;
  })
  .sink('out', sinks.stdout());
