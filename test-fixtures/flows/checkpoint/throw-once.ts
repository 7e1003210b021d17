// A map that fails once: on record TP_BOOM_AT it creates the marker file TP_MARKER and
// throws if the marker did not exist yet, so a restarted attempt (in-process restart,
// or a rerun) gets past it. TP_N records { k, i } (keys i mod 100, paced by TP_RATE per
// source instance) → map 'boom' → keyBy → reduce 'counts' { n, i } → file sink TP_OUT.
import { existsSync, writeFileSync } from 'node:fs';
import { flow, sources, sinks } from 'tidepool';
import { envRate, pacer } from './lib/pace.js';

interface Rec { k: string; i: number }
interface Acc { n: number; i: number }

const n = Number(process.env.TP_N);
const boomAt = Number(process.env.TP_BOOM_AT);
const marker = process.env.TP_MARKER;
const out = process.env.TP_OUT;
if (!Number.isSafeInteger(n) || !Number.isSafeInteger(boomAt) || !marker || !out) {
  throw new Error('throw-once fixture: set TP_N, TP_BOOM_AT, TP_MARKER and TP_OUT');
}
const pace = pacer(envRate());

export default flow('chk-throw-once')
  .source('gen', sources.generator({ count: n, make: (i): Rec => (pace(), { k: `k${i % 100}`, i }) }))
  .map('boom', (r: Rec): Rec => {
    if (r.i === boomAt && !existsSync(marker)) {
      writeFileSync(marker, `failed once at record ${r.i}\n`);
      throw new Error(`planned failure at record ${r.i}`);
    }
    return r;
  })
  .keyBy((r: Rec) => r.k)
  .reduce('counts', (acc: Acc | undefined, r: Rec): Acc => ({ n: (acc?.n ?? 0) + 1, i: r.i }))
  .sink('out', sinks.file({ path: out }));
