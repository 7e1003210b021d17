// A flow under full backpressure: a fast generator of ~500-byte records → keyBy →
// a keyed map that costs TIDEPOOL_BENCH_WORK_US of CPU per record (a slow enrichment)
// → discard. The keyed instances are the bottleneck, so their input rings stay full
// and every barrier queues behind whatever those rings hold.
// Sizes: TIDEPOOL_BENCH_N records, TIDEPOOL_BENCH_KEYS keys, TIDEPOOL_BENCH_WORK_US.
import { flow, sources } from '../../src/index.js';
import { discardSink, envInt } from './records.js';

const n = envInt('TIDEPOOL_BENCH_N', 1000);
const keys = envInt('TIDEPOOL_BENCH_KEYS', 1000);
const workUs = envInt('TIDEPOOL_BENCH_WORK_US', 200);
const PAD = 'x'.repeat(480);

interface Fat { user: string; seq: number; pad: string }

/** Spins for `us` microseconds: CPU work the runtime cannot skip or overlap. */
function work(us: number): number {
  const end = performance.now() + us / 1000;
  let x = 0;
  while (performance.now() < end) x++;
  return x;
}

export default flow('bench-slow-consumer')
  .source('events', sources.generator({ count: n, make: (i: number): Fat => ({ user: `user-${i % keys}`, seq: i, pad: PAD }) }))
  .keyBy((e: Fat) => e.user)
  .process('enrich', (e: Fat, ctx) => {
    work(workUs);
    ctx.emit({ user: e.user, seq: e.seq });
  })
  .sink('out', discardSink<{ user: string; seq: number }>());
