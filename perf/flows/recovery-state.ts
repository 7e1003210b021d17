// Recovery benchmark flow (perf/recovery.bench.ts): unbounded generator → keyBy →
// process (one value state per key) → stdout.
//
//   record i < KEYS   writes key i: a string of VALUE_BYTES characters; emits nothing
//   record i ≥ KEYS   reads a pseudo-random key of 0..KEYS-1 (so after a restore the
//                     page holding it is loaded lazily, not already in cache) and emits
//                     one small line { i, k, len } (len: the value's length, -1 if absent)
//
// With KEYS = 0 every record reads a missing key and emits (a fresh start's baseline).
// Environment (workers inherit it):
//   TIDEPOOL_BENCH_KEYS         distinct keys written before any output (default 1000)
//   TIDEPOOL_BENCH_VALUE_BYTES  characters per value (default 1000)
//   TIDEPOOL_BENCH_MARKERS=1    write `@@module-loaded` (main thread, on import) and
//                               `@@first-record {…}` (each keyed instance, first record
//                               it emits) to stderr with writeSync: the bench times them
import { writeSync } from 'node:fs';
import { isMainThread } from 'node:worker_threads';
import { flow, sinks, sources } from '../../src/index.js';
import { envInt } from './records.js';

const keys = envInt('TIDEPOOL_BENCH_KEYS', 1000);
const valueBytes = envInt('TIDEPOOL_BENCH_VALUE_BYTES', 1000);
const markers = process.env.TIDEPOOL_BENCH_MARKERS === '1';

if (markers && isMainThread) writeSync(2, '@@module-loaded\n');

export interface StateRecord {
  i: number;
  k: number;
}

/** murmur3's 32-bit finalizer: a well-mixed hash of i. */
function mix(i: number): number {
  let h = i >>> 0;
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/** Record i: key i while building, then a pseudo-random existing key. */
export function makeRecord(i: number): StateRecord {
  if (i < keys || keys === 0) return { i, k: i };
  return { i, k: (mix(i) + Math.floor(i / 2 ** 32)) % keys };
}

const FILL = 'abcdefghijklmnopqrstuvwxyz0123456789'.repeat(Math.ceil((valueBytes + 40) / 36));

/** The value of key k: VALUE_BYTES characters, distinct per key. */
export function valueOf(k: number): string {
  const head = `${k}:`;
  return head + FILL.slice(k % 36, k % 36 + Math.max(0, valueBytes - head.length));
}

let marked = false;

export default flow('bench-recovery')
  .source('gen', sources.generator({ make: makeRecord }))
  .keyBy((r: StateRecord) => r.k)
  .process('state', (r: StateRecord, ctx) => {
    const v = ctx.state.value<string>('v');
    if (r.i < keys) {
      v.set(valueOf(r.k));
      return;
    }
    const value = v.get();
    const out = { i: r.i, k: r.k, len: value === undefined ? -1 : value.length };
    if (markers && !marked) {
      marked = true;
      writeSync(2, `@@first-record ${JSON.stringify(out)}\n`);
    }
    ctx.emit(out);
  })
  .sink('out', sinks.stdout());
