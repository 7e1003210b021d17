// A map that fails once: on record TP_BOOM_AT it creates the marker file TP_MARKER and
// throws if the marker did not exist yet, so a restarted attempt (in-process restart,
// or a rerun) gets past it. TP_N records { k, i } (keys i mod 100, paced by TP_RATE per
// source instance) → map 'boom' → keyBy → reduce 'counts' { n, i } → file sink TP_OUT.
import { flow, sources, sinks } from 'tidepool';
import { envRate, pacer } from './lib/pace.js';
import { boomOnce, throwOnceEnv } from './lib/throw-once.js';

interface Rec { k: string; i: number }
interface Acc { n: number; i: number }

const { n, boomAt, marker, out } = throwOnceEnv('throw-once');
const pace = pacer(envRate());

export default flow('chk-throw-once')
  .source('gen', sources.generator({ count: n, make: (i): Rec => (pace(), { k: `k${i % 100}`, i }) }))
  .map('boom', boomOnce<Rec>(boomAt, marker))
  .keyBy((r: Rec) => r.k)
  .reduce('counts', (acc: Acc | undefined, r: Rec): Acc => ({ n: (acc?.n ?? 0) + 1, i: r.i }))
  .sink('out', sinks.file({ path: out }));
