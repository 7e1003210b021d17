// Keyed count whose sink publishes slowly: a SinkSpec around sinks.file(TP_OUT) whose
// commit(epoch) first writes the epoch to the marker file TP_MARKER, then waits
// TP_COMMIT_DELAY_MS before publishing. A test can SIGKILL the run inside that window:
// after the checkpoint's manifest exists, before its lines are visible.
// TP_N records { k, i }, keys i mod 50 → reduce 'counts' { n, i } → sink 'out'.
import { writeFileSync } from 'node:fs';
import { flow, sources, sinks, type SinkSpec, type SinkWriter } from 'tidepool';

interface Rec { k: string; i: number }
interface Acc { n: number; i: number }

const n = Number(process.env.TP_N);
const out = process.env.TP_OUT;
const marker = process.env.TP_MARKER;
const delayMs = Number(process.env.TP_COMMIT_DELAY_MS ?? 0);
if (!Number.isSafeInteger(n) || !out) throw new Error('slow-commit fixture: set TP_N and TP_OUT (and TP_MARKER, TP_COMMIT_DELAY_MS)');

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
      prepare: (epoch) => inner.prepare(epoch),
      async commit(epoch) {
        if (marker) writeFileSync(marker, `${epoch}\n`);
        if (delayMs > 0) await new Promise((r) => setTimeout(r, delayMs));
        await inner.commit(epoch);
      },
      abort: () => inner.abort?.(),
      close: () => inner.close(),
    };
  },
};

export default flow('chk-slow-commit')
  .source('gen', sources.generator({ count: n, make: (i): Rec => ({ k: `k${i % 50}`, i }) }))
  .keyBy((r: Rec) => r.k)
  .reduce('counts', (acc: Acc | undefined, r: Rec): Acc => ({ n: (acc?.n ?? 0) + 1, i: r.i }))
  .sink('out', slowFile);
