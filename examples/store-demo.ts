// The quick-start demo: an embedded store filled far beyond its page cache, flushed
// durably, reopened, and read back — printing what it measured along the way.
//
//   npm run demo                      # 1,000,000 keys through a 256-page cache
//   node dist/examples/store-demo.js --keys 200000 --path ./demo-state
import { mkdtempSync, rmSync, readdirSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { openStore } from '../src/index.js';

const { values: args } = parseArgs({
  options: {
    keys: { type: 'string', default: '1000000' },
    path: { type: 'string' },
    cache: { type: 'string', default: '256' },
    compression: { type: 'string', default: 'lz4' },
  },
});
const N = Number(args.keys);
const cachePages = Number(args.cache);
const path = args.path ?? mkdtempSync(join(tmpdir(), 'tidepool-demo-'));
const keep = args.path !== undefined;
const compression = args.compression as 'none' | 'lz4' | 'zstd' | 'deflate';

let peakRss = 0;
const sampler = setInterval(() => (peakRss = Math.max(peakRss, process.memoryUsage.rss())), 20);
const mb = (b: number) => `${(b / 2 ** 20).toFixed(1)} MB`;
const rate = (n: number, ms: number) => `${Math.round(n / (ms / 1000)).toLocaleString('en-US')}/s`;
const dirBytes = (d: string) => readdirSync(d).reduce((s, f) => s + statSync(join(d, f)).size, 0);

console.log(`tidepool store demo: ${N.toLocaleString('en-US')} keys, cachePages ${cachePages} (16 KiB pages), ${compression}, in ${path}`);

let store = await openStore({ path, cachePages, compression });
let t0 = performance.now();
for (let i = 0; i < N; i++) {
  store.set(['user', i], { id: i, name: `user-${i}`, score: (i * 7919) % 1000, tags: ['a', 'b'] });
}
let ms = performance.now() - t0;
console.log(`set      ${N.toLocaleString('en-US')} keys in ${ms.toFixed(0)} ms (${rate(N, ms)}); cache holds ${store.stats.residentPages} pages, ${store.stats.spilledPages} dirty pages spilled to disk`);

t0 = performance.now();
await store.flush();
ms = performance.now() - t0;
console.log(`flush    durable in ${ms.toFixed(0)} ms; LMDB files now ${mb(dirBytes(path))}`);
await store.close();

t0 = performance.now();
store = await openStore({ path, cachePages, compression });
console.log(`reopen   in ${(performance.now() - t0).toFixed(1)} ms: ${store.size.toLocaleString('en-US')} keys`);

t0 = performance.now();
let bad = 0;
const reads = Math.min(N, 200_000);
for (let j = 0; j < reads; j++) {
  const i = (j * 104729) % N;
  const v = store.get(['user', i]) as { id: number } | undefined;
  if (v?.id !== i) bad++;
}
ms = performance.now() - t0;
console.log(`get      ${reads.toLocaleString('en-US')} random keys in ${ms.toFixed(0)} ms (${rate(reads, ms)}), ${store.stats.persistentReads} pages read from LMDB, ${bad} wrong`);

t0 = performance.now();
let scanned = 0;
for (const _ of store.keys({ prefix: ['user'] })) scanned++;
ms = performance.now() - t0;
console.log(`scan     ${scanned.toLocaleString('en-US')} keys in key order in ${ms.toFixed(0)} ms (${rate(scanned, ms)})`);
await store.close();
clearInterval(sampler);
console.log(`peak RSS ${mb(peakRss)} (the cache is bounded by cachePages, not by the number of keys)`);
if (!keep) rmSync(path, { recursive: true, force: true });
if (bad !== 0 || scanned !== N) {
  console.error('demo: data did not read back correctly');
  process.exit(1);
}
