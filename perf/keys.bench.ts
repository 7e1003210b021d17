// Key encoding and page codec throughput.
//   npm run build && node dist/perf/keys.bench.js
import { pathToFileURL } from 'node:url';
import { pack } from 'msgpackr';
import { decodeKey, encodeKey } from '../src/state/keys.js';
import { loadCodec, type CompressionSpec } from '../src/state/codecs.js';
import { decodePage, encodePage } from '../src/state/page-format.js';

function opsPerSec(n: number, fn: (i: number) => unknown): number {
  let sink = 0;
  for (let i = 0; i < Math.min(n, 100_000); i++) sink += (fn(i) as string).length | 0; // warm up
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < n; i++) sink += (fn(i) as string).length | 0;
  const ns = Number(process.hrtime.bigint() - t0);
  if (sink === -1) console.log(sink);
  return (n / ns) * 1e9;
}

/** ~16 KiB of msgpack records, like a leaf page of a keyed table. */
export function msgpackPage(bytes = 16384): Uint8Array {
  const parts: Buffer[] = [];
  let n = 0;
  for (let i = 0; n < bytes; i++) {
    const p = pack({ user: `user-${(i * 7919) % 100_000}`, count: i * 3, ts: 1_700_000_000_000 + i * 17,
      tags: i % 3 ? ['web', 'eu'] : ['app'], score: Math.round((i / 7) * 1000) / 1000 });
    parts.push(p);
    n += p.length;
  }
  return Buffer.concat(parts).subarray(0, bytes);
}

export async function runKeysBench(): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  const N = 2_000_000;
  const strs = Array.from({ length: 1024 }, (_, i) => `user:${i * 7919}`);
  const encStrs = strs.map((s) => encodeKey(s));
  const encInts = Array.from({ length: 1024 }, (_, i) => encodeKey(i * 7919));
  out['encodeKey short ASCII string (ops/s)'] = opsPerSec(N, (i) => encodeKey(strs[i & 1023]));
  out['encodeKey integer (ops/s)'] = opsPerSec(N, (i) => encodeKey(i));
  out['encodeKey float (ops/s)'] = opsPerSec(N, (i) => encodeKey(i + 0.5));
  out["encodeKey ['user', int] (ops/s)"] = opsPerSec(N / 4, (i) => encodeKey(['user', i]));
  out['decodeKey short ASCII string (ops/s)'] = opsPerSec(N, (i) => decodeKey(encStrs[i & 1023]!) as string);
  out['decodeKey integer (ops/s)'] = opsPerSec(N, (i) => String(decodeKey(encInts[i & 1023]!)));

  const raw = msgpackPage();
  for (const spec of ['none', 'lz4', 'zstd', 'deflate'] as CompressionSpec[]) {
    const codec = await loadCodec(spec);
    const page = encodePage(raw, codec);
    const iters = spec === 'none' ? 20_000 : 2_000;
    let t0 = performance.now();
    for (let i = 0; i < iters; i++) encodePage(raw, codec);
    const encMs = performance.now() - t0;
    const codecFor = () => codec;
    const where = { table: 'bench', pageId: 1, version: 1 };
    t0 = performance.now();
    for (let i = 0; i < iters; i++) decodePage(page, where, codecFor);
    const decMs = performance.now() - t0;
    const mb = (raw.length * iters) / 1e6;
    out[`${spec}: ratio (stored/raw)`] = page.length / raw.length;
    out[`${spec}: encodePage MB/s`] = mb / (encMs / 1000);
    out[`${spec}: decodePage MB/s`] = mb / (decMs / 1000);
  }
  return out;
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const r = await runKeysBench();
  for (const [k, v] of Object.entries(r)) console.log(`${k.padEnd(40)} ${v < 10 ? v.toFixed(3) : Math.round(v).toLocaleString('en-US')}`);
}
