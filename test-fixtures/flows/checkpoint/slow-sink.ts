// Keyed count whose file sink is slow at one step, so a test can SIGKILL the run inside
// a precise window of a checkpoint. The sink wraps sinks.file(TP_OUT) (a SinkSpec of
// its own): when TP_SLOW_PHASE ('prepare' or 'commit') runs for epoch TP_SLOW_EPOCH (or
// for every epoch when unset), it first writes "<phase> <epoch>" to the marker file
// TP_MARKER, then waits TP_SLOW_MS before doing the real work.
//   prepare: the barrier reached the sink; stateful operators' snapshots of that
//            checkpoint may already be durable, its manifest is not written yet.
//   commit:  the manifest exists; the epoch's lines are not published yet.
// TP_N records { k, i } (keys i mod 50, paced by TP_RATE per source instance) →
// reduce 'counts' { n, i } → sink 'out'.
import { writeFileSync } from 'node:fs';
import { flow, sources, sinks, type SinkSpec, type SinkWriter } from 'tidepool';
import { envRate, pacer } from './lib/pace.js';

interface Rec { k: string; i: number }
interface Acc { n: number; i: number }

const n = Number(process.env.TP_N);
const out = process.env.TP_OUT;
const marker = process.env.TP_MARKER;
const phase = process.env.TP_SLOW_PHASE;
const slowEpoch = process.env.TP_SLOW_EPOCH ? Number(process.env.TP_SLOW_EPOCH) : undefined;
const slowMs = Number(process.env.TP_SLOW_MS ?? 0);
if (!Number.isSafeInteger(n) || !out) throw new Error('slow-sink fixture: set TP_N and TP_OUT (and TP_SLOW_PHASE, TP_SLOW_EPOCH, TP_SLOW_MS, TP_MARKER, TP_RATE)');
const pace = pacer(envRate());

async function maybeSlow(step: string, epoch: number): Promise<void> {
  if (step !== phase || (slowEpoch !== undefined && epoch !== slowEpoch)) return;
  if (marker) writeFileSync(marker, `${step} ${epoch}\n`);
  if (slowMs > 0) await new Promise((r) => setTimeout(r, slowMs));
}

const file = sinks.file({ path: out });

const slowFile: SinkSpec<unknown> = {
  kind: 'sink',
  type: 'slow-file',
  defaultParallelism: 1,
  maxParallelism: 1,
  validate: () => file.validate?.(),
  reset: (p) => file.reset?.(p),
  async open(ctx): Promise<SinkWriter<unknown>> {
    const inner = await file.open(ctx);
    return {
      write: (records) => inner.write(records),
      async prepare(epoch) {
        await maybeSlow('prepare', epoch);
        await inner.prepare(epoch);
      },
      async commit(epoch) {
        await maybeSlow('commit', epoch);
        await inner.commit(epoch);
      },
      abort: () => inner.abort?.(),
      close: () => inner.close(),
    };
  },
};

export default flow('chk-slow-sink')
  .source('gen', sources.generator({ count: n, make: (i): Rec => (pace(), { k: `k${i % 50}`, i }) }))
  .keyBy((r: Rec) => r.k)
  .reduce('counts', (acc: Acc | undefined, r: Rec): Acc => ({ n: (acc?.n ?? 0) + 1, i: r.i }))
  .sink('out', slowFile);
