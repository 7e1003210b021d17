// Checkpoint cost of one state partition: the snapshot pause (what stops records), the
// time until the snapshot is durable, and the bytes written — for 100 MB and 1 GB of
// state with 1% and 10% of the keys touched between two checkpoints — against raw
// lmdb-js puts of the same pages.
//
//   npm run build && node dist/perf/checkpoint.bench.js [flags]
//
//   --sizes 100,1000     state sizes, MB (10^6 B) of ~100 B string values (10,000 keys per MB)
//   --fractions 1,10     % of the keys touched (overwritten) between two checkpoints
//   --patterns random,clustered
//                        random: keys picked uniformly (nearly every page of a key range
//                        gets dirty); clustered: runs of 100 consecutive keys (few pages)
//   --intervals 12       checkpoints measured per configuration (after warm-up ones), but
//   --max-touches 2000000  at most this many overwrites per configuration: random writes
//                        into a state 60× the cache cost ~0.1 ms each (a page read and a
//                        dirty page spilled per write), so 1 GB / 10% measures fewer (≥ 3)
//   --cache-pages 1024   the engine's page cache (the operator default: 16 MiB of pages)
//   --quick              10 and 40 MB, 5 intervals
//
// The engine is the one an operator instance owns (StateEngine behind the embedded
// store, LMDB storage through the shared I/O worker, 16 KiB pages). Per interval the
// bench overwrites the chosen keys (as records would), waits until the previous
// checkpoint is durable, then calls `engine.checkpoint()` — exactly what a task does
// when a barrier is aligned:
//   pause    the synchronous call: dirty resident pages frozen (arrays copied), spilled
//            pages referenced; records are stopped for this long
//   durable  checkpoint() → its promise resolved: pages encoded (while the owner could
//            go on), written by the I/O worker and synced, commit record durable
//   bytes    page envelopes written (the commit record's bytesWritten)
// The raw baseline puts the same number of values of the same average size with
// lmdb-js in this process (`put` each, await the last, await `flushed`), in a fresh
// environment.
import { readFileSync } from 'node:fs';
import { openStore, type Store } from '../src/store.js';
import type { StateEngine } from '../src/state/engine.js';
import {
  fmtInt, fmtMB, fmtMs, fmtRatio, gc, keyOf, machineLine, parseFlags, progress, randomIndices, removeDir, table, tempDir,
  timeRawLmdbPuts, valueOf, verdict,
} from './bench-util.js';

const flags = parseFlags(
  process.argv.slice(2),
  { sizes: '100,1000', fractions: '1,10', patterns: 'random,clustered', intervals: 12, 'max-touches': 2_000_000, 'cache-pages': 1024, quick: false },
  { sizes: '10,40', intervals: 5 },
);
const KEYS_PER_MB = 10_000;
const RUN = 100; // clustered pattern: consecutive keys per run

interface Interval {
  touched: number;
  touchMs: number;
  dirtyPages: number;
  pauseMs: number;
  durableMs: number;
  pages: number;
  bytes: number;
  /** Key and value bytes of the distinct entries the interval changed (what a checkpoint must at least write). */
  changedBytes: number;
  /** Bytes this process handed to write(2)/pwrite(2) from checkpoint() to durable: LMDB's own pages, its copy-on-write included. */
  syscallBytes: number;
}

/** /proc/self/io wchar: bytes of every write system call of this process (all threads). */
function wchar(): number {
  try {
    return Number(/wchar: (\d+)/.exec(readFileSync('/proc/self/io', 'utf8'))![1]);
  } catch {
    return NaN;
  }
}

interface Config {
  mb: number;
  pct: number;
  pattern: string;
  keys: number;
  livePages: number;
  intervals: Interval[];
  rawMBps: number;
}

const engineOf = (s: Store) => (s as unknown as { engine: StateEngine }).engine;
const mbps = (bytes: number, ms: number) => bytes / 1e3 / ms;
const quantile = (xs: number[], p: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil(p * s.length) - 1))]!;
};
const median = (xs: number[]) => quantile(xs, 0.5);
/** Bytes written over the changed entries' bytes, summed over the measured checkpoints. */
const amplification = (c: Config) => c.intervals.reduce((a, x) => a + x.bytes, 0) / Math.max(1, c.intervals.reduce((a, x) => a + x.changedBytes, 0));

/** Loads `keys` keys in key order, flushing every 500k so the spill file stays small. */
async function load(store: Store, engine: StateEngine, keys: number): Promise<void> {
  const t = engine.table('state');
  for (let i = 0; i < keys; i++) {
    t.set(keyOf(i), valueOf(i));
    engine.mutations++; // what the store and keyed state do: a checkpoint with none is skipped
    if (i % 4096 === 4095) engine.pager.evict();
    if (i % 500_000 === 499_999) {
      await store.flush();
      progress(`  loaded ${fmtInt(i + 1)} keys`);
    }
  }
  engine.pager.evict();
  await store.flush();
}

/** The keys interval `r` touches: uniform, or runs of RUN consecutive keys. */
function touchSet(pattern: string, count: number, keys: number, r: number): Uint32Array {
  if (pattern === 'random') return randomIndices(count, keys, 0x1234567 + r * 7919);
  const starts = randomIndices(Math.ceil(count / RUN), Math.max(1, keys - RUN), 0x7654321 + r * 104729);
  const out = new Uint32Array(count);
  for (let i = 0; i < count; i++) out[i] = starts[Math.floor(i / RUN)]! + (i % RUN);
  return out;
}

async function measure(mb: number, pct: number, pattern: string): Promise<Config> {
  const keys = mb * KEYS_PER_MB;
  const dir = tempDir('checkpoint');
  try {
    const store = await openStore({ storage: 'lmdb', path: dir, name: 'bench', cachePages: flags['cache-pages'] });
    const engine = engineOf(store);
    const table = engine.table('state');
    progress(`${mb} MB state (${fmtInt(keys)} keys): loading`);
    await load(store, engine, keys);
    const livePages = engine.pager.livePages;
    const count = Math.round((keys * pct) / 100);
    const intervals: Interval[] = [];
    const measured = Math.max(3, Math.min(flags.intervals, Math.floor(flags['max-touches'] / Math.max(1, count))));
    const warmup = measured >= flags.intervals ? 2 : 1;
    for (let r = 0; r < warmup + measured; r++) {
      const which = touchSet(pattern, count, keys, r);
      const t0 = performance.now();
      for (let j = 0; j < which.length; j++) {
        const i = which[j]!;
        table.set(keyOf(i), valueOf(i + r + 1));
        engine.mutations++;
        if (j % 1024 === 1023) engine.pager.evict(); // a task evicts between record batches
      }
      engine.pager.evict();
      const touchMs = performance.now() - t0;
      let changedBytes = 0;
      for (const i of new Set(which)) changedBytes += keyOf(i).length + Buffer.byteLength(valueOf(i + r + 1));
      await engine.idle();
      const dirtyPages = engine.pager.dirtyPages;
      gc();
      const w0 = wchar();
      const c0 = performance.now();
      const durable = engine.checkpoint();
      const pauseMs = performance.now() - c0;
      const info = await durable;
      const durableMs = performance.now() - c0;
      const syscallBytes = wchar() - w0;
      if (r >= warmup) intervals.push({ touched: count, touchMs, dirtyPages, pauseMs, durableMs, pages: info.pages, bytes: info.bytes, changedBytes, syscallBytes });
      progress(`  ${pct}% ${pattern}, interval ${r + 1}: ${fmtInt(dirtyPages)} dirty pages, pause ${fmtMs(pauseMs)}, durable ${fmtMs(durableMs)}, ${fmtMB(info.bytes)} (write syscalls ${fmtMB(syscallBytes)})`);
    }
    await store.close();
    const pages = median(intervals.map((x) => x.pages));
    const avg = Math.max(1, Math.round(median(intervals.map((x) => x.bytes)) / Math.max(1, pages)));
    const rawMBps = await rawPuts(Math.max(1, pages), avg);
    return { mb, pct, pattern, keys, livePages, intervals, rawMBps };
  } finally {
    removeDir(dir);
  }
}

/** lmdb-js: `count` binary values of `bytes` each, put and flushed; MB/s, best of 2. */
async function rawPuts(count: number, size: number): Promise<number> {
  const bytes = Math.max(64, size);
  let best = 0;
  for (let rep = 0; rep < 2; rep++) best = Math.max(best, mbps(count * bytes, await timeRawLmdbPuts(count, bytes, 'bench')));
  return best;
}

async function main(): Promise<void> {
  const started = performance.now();
  const sizes = flags.sizes.split(',').map(Number);
  const fractions = flags.fractions.split(',').map(Number);
  const patterns = flags.patterns.split(',').map((p) => p.trim());
  for (const p of patterns) if (p !== 'random' && p !== 'clustered') throw new Error(`--patterns: unknown pattern '${p}' (random, clustered)`);
  console.log(`## tidepool checkpoint cost${flags.quick ? ' (--quick sizes)' : ''}\n`);
  console.log(machineLine());

  await measureWarmup();
  const configs: Config[] = [];
  for (const mb of sizes) for (const pattern of patterns) for (const pct of fractions) configs.push(await measure(mb, pct, pattern));

  console.log(`\n### Checkpoint of one partition (pageSize 16384, cachePages ${flags['cache-pages']}; up to ${flags.intervals} checkpoints per row after 1–2 warm-up ones)\n`);
  console.log(table(
    ['state', 'touched / interval', 'checkpoints', 'dirty pages (median)', 'pause p50', 'pause p99 (= max)', 'durable p50', 'durable max', 'bytes p50', 'write syscalls p50', 'changed entries p50', 'written / changed', 'MB/s written', 'raw lmdb-js MB/s', 'vs raw'],
    configs.map((c) => {
      const iv = c.intervals;
      const bytes = median(iv.map((x) => x.bytes));
      const durable = median(iv.map((x) => x.durableMs));
      const dirty = median(iv.map((x) => x.dirtyPages));
      const rate = mbps(bytes, durable);
      return [
        `${c.mb} MB (${fmtInt(c.keys)} keys, ${fmtInt(c.livePages)} pages)`, `${c.pct}% ${c.pattern} (${fmtInt(iv[0]!.touched)})`, String(iv.length),
        `${fmtInt(dirty)} (${((dirty / c.livePages) * 100).toFixed(1)}%)`,
        fmtMs(median(iv.map((x) => x.pauseMs))), fmtMs(quantile(iv.map((x) => x.pauseMs), 0.99)), fmtMs(durable), fmtMs(Math.max(...iv.map((x) => x.durableMs))), fmtMB(bytes), fmtMB(median(iv.map((x) => x.syscallBytes))),
        fmtMB(median(iv.map((x) => x.changedBytes))), fmtRatio(amplification(c)), rate.toFixed(1), c.rawMBps.toFixed(1), fmtRatio(rate / c.rawMBps),
      ];
    }),
  ));
  console.log(`
Notes: MB = 10^6 bytes. "pause" is the synchronous \`checkpoint()\` call (what a task's records wait for once a barrier is
aligned, besides flushing its output batch); "durable" runs from that call until the commit record is durable, with
nothing else running on the owning thread (in a flow, records are processed meanwhile). "changed entries" are the key
and value bytes of the distinct keys the interval overwrote; "written / changed" is the total of bytes written over
the total changed across the measured checkpoints. "write syscalls" is what the process handed to write(2)/pwrite(2)
(\`/proc/self/io\` wchar) from \`checkpoint()\` to durable: LMDB's own pages, copy-on-write of the B-tree leaves that
hold the page versions included, so it shows what LMDB adds to the envelope bytes. "vs raw" compares MB/s of
bytes written with lmdb-js putting the same number of values of the same average size (best of 2, fresh environment).
The time to overwrite the keys of one interval (not a checkpoint cost) was: ${configs.map((c) => `${c.mb} MB/${c.pct}% ${c.pattern} ${fmtMs(median(c.intervals.map((x) => x.touchMs)))}`).join(', ')}.`);

  console.log(`\n### Targets (checkpoint cost)\n`);
  const rows: string[][] = [];
  const big = configs.filter((c) => c.pct === 1 && c.mb === Math.max(...sizes));
  for (const c of big) {
    const p99 = quantile(c.intervals.map((x) => x.pauseMs), 0.99);
    rows.push([`pause ≤ 50 ms p99 at ${c.mb} MB / 1% (${c.pattern})`, fmtMs(p99), verdict(p99, 50, ' ms', true)]);
  }
  for (const c of configs) {
    const iv = c.intervals;
    const pct = (mbps(median(iv.map((x) => x.bytes)), median(iv.map((x) => x.durableMs))) / c.rawMBps) * 100;
    rows.push([`write rate ≥ 80% of raw lmdb-js (${c.mb} MB / ${c.pct}% ${c.pattern})`, `${pct.toFixed(0)}%`, verdict(pct, 80, '%')]);
  }
  for (const c of configs.filter((x) => x.mb === Math.max(...sizes) && x.pattern === 'random')) {
    const amp = amplification(c);
    rows.push([`bytes written ≤ 3× the changed entries (${c.mb} MB / ${c.pct}% random)`, `${amp.toFixed(2)}×`, verdict(amp, 3, '×', true)]);
    const sys = c.intervals.reduce((a, x) => a + x.syscallBytes, 0) / Math.max(1, c.intervals.reduce((a, x) => a + x.changedBytes, 0));
    rows.push([`… counting LMDB's own writes (write syscalls) (${c.mb} MB / ${c.pct}% random)`, `${sys.toFixed(2)}×`, verdict(sys, 3, '×', true)]);
    const d = median(c.intervals.map((x) => x.durableMs));
    rows.push([`durable ≤ 2 s (${c.mb} MB / ${c.pct}% random, p50)`, fmtMs(d), verdict(d, 2000, ' ms', true)]);
  }
  console.log(table(['target', 'measured', 'verdict'], rows));
  console.log(`\n(checkpoint bench took ${fmtMs(performance.now() - started)})`);
}

/** JIT, the I/O worker and lmdb-js warmed up on a small state first. */
async function measureWarmup(): Promise<void> {
  const dir = tempDir('checkpoint-warm');
  try {
    const store = await openStore({ storage: 'lmdb', path: dir, name: 'warm', cachePages: flags['cache-pages'] });
    await load(store, engineOf(store), 50_000);
    await store.close();
    await rawPuts(256, 16384);
  } finally {
    removeDir(dir);
  }
}

await main();
