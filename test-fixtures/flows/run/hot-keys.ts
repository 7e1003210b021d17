// A count per key over more distinct keys than the reduce's write-back cache of hot
// primitive accumulators holds (HOT_KEYS in src/operators/steps.ts): TP_COUNT records
// i → key `u${keyIndex(i)}` with keyIndex a hash of i mod TP_KEYS (the test computes the
// same), keyBy → reduce (acc ?? 0) + 1 → file sink TP_OUTPUT ({ key, value } lines).
import { flow, sources, sinks } from 'tidepool';

const count = Number(process.env.TP_COUNT);
const keys = Number(process.env.TP_KEYS);
const output = process.env.TP_OUTPUT;
if (!Number.isSafeInteger(count) || !Number.isSafeInteger(keys) || keys < 1 || !output) throw new Error('hot-keys fixture: set TP_COUNT, TP_KEYS and TP_OUTPUT');

/** Record i's key index: FNV-1a of i's four bytes, mod `keys`. */
export function keyIndex(i: number, keys: number): number {
  let h = 0x811c9dc5;
  for (let b = 0; b < 4; b++) h = Math.imul(h ^ ((i >>> (8 * b)) & 0xff), 0x01000193);
  return (h >>> 0) % keys;
}

export default flow('hot-keys')
  .source('gen', sources.generator({ count, make: (i) => `u${keyIndex(i, keys)}` }))
  .keyBy((k: string) => k)
  .reduce('counts', (acc: number | undefined) => (acc ?? 0) + 1)
  .sink('out', sinks.file({ path: output }));
