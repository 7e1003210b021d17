// mapAsync for test/async-map.test.ts. TP_N records { i } from a generator into
// mapAsync 'call' (concurrency TP_CONC, ordered unless TP_ORDERED=0), whose function
// waits a delay that depends on i (0…TP_DELAY ms; every TP_SLOW_EVERY-th record
// TP_SLOW_MS) and rejects at record TP_FAIL_AT. Counters at module level, so per
// worker (per subtask with real workers): calls started, in flight, most in flight.
//   default   chained map 'tag' → { i, max (most in flight so far), held (calls started
//             minus results emitted: in flight plus finished-but-waiting) }; it throws at
//             record TP_THROW_AT (a user error downstream of mapAsync) → sink TP_OUT
//   TP_KEYED  keyBy(k) → reduce 'counts' { n, i } → sink TP_OUT (the keyed-count output:
//             lines { key, value: { n, i } }), for crash loops; TP_RATE paces the source.
import { flow, sources, sinks } from 'tidepool';
import { envRate, pacer } from '../checkpoint/lib/pace.js';

const n = Number(process.env.TP_N);
const out = process.env.TP_OUT;
if (!Number.isSafeInteger(n) || !out) throw new Error('async-map fixture: set TP_N and TP_OUT');
const env = (name: string, d: number) => (process.env[name] === undefined || process.env[name] === '' ? d : Number(process.env[name]));
const concurrency = env('TP_CONC', 8);
const ordered = process.env.TP_ORDERED !== '0';
const maxDelay = env('TP_DELAY', 3);
const slowEvery = env('TP_SLOW_EVERY', 0);
const slowMs = env('TP_SLOW_MS', 50);
const failAt = env('TP_FAIL_AT', -1);
const throwAt = env('TP_THROW_AT', -1);
const keys = env('TP_KEYS', 50);
const pace = pacer(envRate());

export const keyOf = (i: number): string => `k${(Math.imul(i, 2654435761) >>> 0) % keys}`;
const delayOf = (i: number) => (slowEvery > 0 && i % slowEvery === slowEvery - 1 ? slowMs : (Math.imul(i + 7, 0x9e3779b1) >>> 0) % (maxDelay + 1));
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

let started = 0;
let inFlight = 0;
let most = 0;
let emitted = 0;

interface Rec { i: number }

const f = flow('async-map');
const results = f
  .source('gen', sources.generator({ count: n, make: (i): Rec => (pace(), { i }) }))
  .mapAsync('call', async (r: Rec) => {
    started++;
    inFlight++;
    if (inFlight > most) most = inFlight;
    try {
      await sleep(delayOf(r.i));
      if (r.i === failAt) throw new Error(`service refused ${r.i}`);
      return r;
    } finally {
      inFlight--;
    }
  }, { concurrency, ordered });

if (process.env.TP_KEYED) {
  results
    .keyBy((r: Rec) => keyOf(r.i))
    .reduce('counts', (acc: { n: number; i: number } | undefined, r: Rec) => ({ n: (acc?.n ?? 0) + 1, i: r.i }))
    .sink('out', sinks.file({ path: out }));
} else {
  results
    .map('tag', (r: Rec) => {
      if (r.i === throwAt) throw new Error(`tag failed on ${r.i}`);
      emitted++;
      return { i: r.i, max: most, held: started - emitted + 1 };
    })
    .sink('out', sinks.file({ path: out }));
}
export default f;
