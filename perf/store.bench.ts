// The embedded store against its baselines: a plain Map and raw lmdb-js.
//
//   npm run build && node dist/perf/store.bench.js [flags]
//
//   --n 1M           keys of the in-cache case (cache large enough for everything)
//   --flush-n 300k   keys of the set-then-flush (durable) case
//   --rss-n 2M       keys of the bounded-memory case (256-page cache, peak RSS)
//   --rss-gets 200k  random gets in that case
//   --big 10M        keys of the through-a-small-cache case
//   --big-gets 1M    random gets in that case
//   --cache-pages 256 --page-size 16384   cache of the two through-cache cases
//   --reps 3         repetitions of the repeatable measurements (best is kept)
//   --cases cache,durable,rss,big         which cases to run
//   --quick          small sizes (a smoke run of every case in well under a minute)
//
// Every case runs its baselines in the same invocation and prints ratios. The two
// through-cache cases run each side in its own child process, so the peak RSS of one
// side is not mixed with the other's (sampled every 50 ms, plus the kernel's
// high-water mark). Output: markdown tables for perf/RESULTS.md on stdout, progress
// on stderr.
import { statSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { open, type RootDatabase } from 'lmdb';
import { openStore, type Store } from '../src/store.js';
import {
  RssSampler, best, emitResult, fmtInt, fmtMB, fmtMs, fmtRate, fmtRatio, gc, keyOf, machineLine, objectOf,
  parseFlags, permutation, progress, randomIndices, rate, removeDir, runChild, table, tempDir, timeAsync, timeSync,
  valueOf, verdict, type RssReport,
} from './bench-util.js';

const flags = parseFlags(
  process.argv.slice(2),
  {
    n: 1_000_000, 'flush-n': 300_000, 'rss-n': 2_000_000, 'rss-gets': 200_000, big: 10_000_000, 'big-gets': 1_000_000,
    'cache-pages': 256, 'page-size': 16384, reps: 3, cases: 'cache,durable,rss,big', quick: false,
    // internal: a child process running one side of a through-cache case
    child: '', side: '', count: 0, gets: 0, 'lmdb-chunk': 100_000,
  },
  { n: 100_000, 'flush-n': 50_000, 'rss-n': 200_000, 'rss-gets': 20_000, big: 400_000, 'big-gets': 40_000, reps: 1 },
);

/** cachePages for "everything stays in memory". */
const ALL_CACHED = 1 << 22;
type Values = readonly unknown[];
type Rates = Record<string, number>;

function sameValue(a: unknown, b: unknown): boolean {
  if (typeof a === 'object' && a !== null && typeof b === 'object' && b !== null) {
    return (a as { id: number }).id === (b as { id: number }).id;
  }
  return a === b;
}

// ====================================================================== in cache

const OPS = ['set (key order)', 'set (random order)', 'get (random order)', 'scan (all entries)'] as const;

interface Contender {
  name: string;
  run(keys: string[], vals: Values, perm: Uint32Array, reps: number): Promise<Rates>;
}

function checkAll(found: number, n: number, what: string): void {
  if (found !== n) throw new Error(`${what}: saw ${found} of ${n} expected entries`);
}

const tidepool: Contender = {
  name: 'tidepool',
  async run(keys, vals, perm, reps) {
    const n = keys.length;
    const r: Rates = {};
    const dir = tempDir('cache');
    try {
      let s: Store = await openStore({ storage: 'lmdb', path: join(dir, 'a'), cachePages: ALL_CACHED });
      r[OPS[0]] = rate(n, timeSync(() => { for (let i = 0; i < n; i++) s.set(keys[i]!, vals[i]); }));
      r[OPS[2]] = rate(n, await best(reps, () => timeSync(() => {
        let ok = 0;
        for (let i = 0; i < n; i++) { const j = perm[i]!; if (sameValue(s.get(keys[j]!), vals[j])) ok++; }
        checkAll(ok, n, 'tidepool get');
      })));
      r[OPS[3]] = rate(n, await best(reps, () => timeSync(() => {
        let c = 0;
        for (const [k, v] of s.entries()) if (k !== undefined && v !== undefined) c++;
        checkAll(c, n, 'tidepool scan');
      })));
      const st = s.stats;
      if (st.spillWrites !== 0 || st.persistentReads !== 0) throw new Error(`tidepool in-cache run left the cache: ${JSON.stringify(st)}`);
      r.pages = st.residentPages;
      await s.close();
      s = await openStore({ storage: 'lmdb', path: join(dir, 'b'), cachePages: ALL_CACHED });
      r[OPS[1]] = rate(n, timeSync(() => { for (let i = 0; i < n; i++) { const j = perm[i]!; s.set(keys[j]!, vals[j]); } }));
      checkAll(s.size, n, 'tidepool size');
      await s.close();
    } finally {
      removeDir(dir);
    }
    return r;
  },
};

const map: Contender = {
  name: 'Map',
  async run(keys, vals, perm, reps) {
    const n = keys.length;
    const r: Rates = {};
    let m = new Map<string, unknown>();
    r[OPS[0]] = rate(n, timeSync(() => { for (let i = 0; i < n; i++) m.set(keys[i]!, vals[i]); }));
    r[OPS[2]] = rate(n, await best(reps, () => timeSync(() => {
      let ok = 0;
      for (let i = 0; i < n; i++) { const j = perm[i]!; if (sameValue(m.get(keys[j]!), vals[j])) ok++; }
      checkAll(ok, n, 'Map get');
    })));
    r[OPS[3]] = rate(n, await best(reps, () => timeSync(() => {
      let c = 0;
      for (const [k, v] of m) if (k !== undefined && v !== undefined) c++;
      checkAll(c, n, 'Map scan');
    })));
    m = new Map();
    r[OPS[1]] = rate(n, timeSync(() => { for (let i = 0; i < n; i++) { const j = perm[i]!; m.set(keys[j]!, vals[j]); } }));
    checkAll(m.size, n, 'Map size');
    return r;
  },
};

async function lmdbPutAll(db: RootDatabase, n: number, key: (i: number) => string, val: (i: number) => unknown): Promise<void> {
  let last: Promise<boolean> | undefined;
  for (let i = 0; i < n; i++) last = db.put(key(i), val(i));
  await last;
}

const lmdb: Contender = {
  name: 'lmdb-js',
  async run(keys, vals, perm, reps) {
    const n = keys.length;
    const r: Rates = {};
    const dir = tempDir('cache-lmdb');
    try {
      let db = open({ path: join(dir, 'a') });
      r[OPS[0]] = rate(n, await timeAsync(() => lmdbPutAll(db, n, (i) => keys[i]!, (i) => vals[i])));
      await db.flushed;
      r[OPS[2]] = rate(n, await best(reps, () => timeSync(() => {
        let ok = 0;
        for (let i = 0; i < n; i++) { const j = perm[i]!; if (sameValue(db.get(keys[j]!), vals[j])) ok++; }
        checkAll(ok, n, 'lmdb get');
      })));
      r[OPS[3]] = rate(n, await best(reps, () => timeSync(() => {
        let c = 0;
        for (const { key, value } of db.getRange()) if (key !== undefined && value !== undefined) c++;
        checkAll(c, n, 'lmdb getRange');
      })));
      await db.close();
      db = open({ path: join(dir, 'b') });
      r[OPS[1]] = rate(n, await timeAsync(() => lmdbPutAll(db, n, (i) => keys[perm[i]!]!, (i) => vals[perm[i]!])));
      await db.flushed;
      await db.close();
    } finally {
      removeDir(dir);
    }
    return r;
  },
};

interface CacheResult { strings: Record<string, Rates>; objects: Record<string, Rates> }

async function inCacheCase(n: number, reps: number): Promise<CacheResult> {
  progress(`in cache: ${fmtInt(n)} keys, generating data`);
  const keys = Array.from({ length: n }, (_, i) => keyOf(i));
  const perm = permutation(n);
  const out: CacheResult = { strings: {}, objects: {} };
  const contenders = [tidepool, map, lmdb];
  // Warm every code path (JIT) on a small data set first.
  const w = Math.min(n, 50_000);
  const wk = keys.slice(0, w), wp = permutation(w);
  for (const c of contenders) {
    await c.run(wk, wk.map((_, i) => valueOf(i)), wp, 1);
    await c.run(wk, wk.map((_, i) => objectOf(i)), wp, 1);
  }
  for (const kind of ['strings', 'objects'] as const) {
    let vals: unknown[] | undefined = Array.from({ length: n }, (_, i) => (kind === 'strings' ? valueOf(i) : objectOf(i)));
    for (const c of contenders) {
      gc();
      progress(`in cache: ${kind}, ${c.name}`);
      out[kind][c.name] = await c.run(keys, vals, perm, reps);
    }
    vals = undefined;
  }
  return out;
}

function printInCache(n: number, res: CacheResult): void {
  for (const kind of ['strings', 'objects'] as const) {
    const t = res[kind].tidepool!, m = res[kind].Map!, l = res[kind]['lmdb-js']!;
    const what = kind === 'strings' ? '~100 B string values' : 'small object values `{ id, name, score }`';
    console.log(`\n### In cache: ${fmtInt(n)} keys, ${what} (ops/s, higher is better)\n`);
    console.log(table(
      ['operation', 'tidepool', 'Map', 'lmdb-js', 'tidepool / Map', 'tidepool / lmdb-js'],
      OPS.map((op) => [op, fmtInt(t[op]!), fmtInt(m[op]!), fmtInt(l[op]!), fmtRatio(t[op]! / m[op]!), fmtRatio(t[op]! / l[op]!)]),
    ));
  }
  console.log(`
Notes: tidepool = \`openStore({ storage: 'lmdb', cachePages: ${ALL_CACHED} })\` (everything stayed resident:
${fmtInt(res.strings.tidepool!.pages!)} pages for the string values, no spill, no page reads); its set is in
memory, not yet durable. lmdb-js = \`open({ path })\` with default msgpack values; set = issue every
\`put\` then await the last one (committed, visible; durability is the set-then-flush case); get = the
synchronous \`db.get\` (lmdb-js 3 has no separate \`getSync\`); scan = \`getRange()\`. Map scan iterates
the Map in insertion order (not key order: sorting keys per scan would not be a fair baseline, so this
is the cost floor of walking the entries). Map stores object values by reference; tidepool and lmdb-js
serialize them (msgpack) at set and decode a fresh copy at get. get and scan: best of ${flags.reps} runs;
every run is checked (all ${fmtInt(n)} keys found with the expected value).`);
}

// ====================================================================== set then flush

interface DurableRow { label: string; order: string; setMs: number; flushMs: number; totalMs: number; spills?: number }

async function durableCase(n: number, reps: number): Promise<DurableRow[]> {
  progress(`set-then-flush: ${fmtInt(n)} keys`);
  const keys = Array.from({ length: n }, (_, i) => keyOf(i));
  const vals = Array.from({ length: n }, (_, i) => valueOf(i));
  const perm = permutation(n);
  const orders = [['key order', (i: number) => i], ['random order', (i: number) => perm[i]!]] as const;
  const rows: DurableRow[] = [];
  const measure = async (label: string, order: string, once: () => Promise<{ setMs: number; flushMs: number; spills?: number }>) => {
    await once(); // warm-up run, not counted
    let bestRun: { setMs: number; flushMs: number; spills?: number } = { setMs: Infinity, flushMs: Infinity };
    for (let r = 0; r < reps; r++) {
      gc();
      const m = await once();
      if (m.setMs + m.flushMs < bestRun.setMs + bestRun.flushMs) bestRun = m;
    }
    rows.push({ label, order, ...bestRun, totalMs: bestRun.setMs + bestRun.flushMs });
  };
  for (const [order, at] of orders) {
    for (const cachePages of [1024, ALL_CACHED]) {
      const label = cachePages === 1024 ? 'tidepool (default cachePages 1024)' : `tidepool (cachePages ${ALL_CACHED}, all cached)`;
      progress(`set-then-flush: ${label}, ${order}`);
      await measure(label, order, async () => {
        const dir = tempDir('durable');
        try {
          const s = await openStore({ storage: 'lmdb', path: dir, cachePages });
          const t0 = performance.now();
          for (let i = 0; i < n; i++) { const j = at(i); s.set(keys[j]!, vals[j]); }
          const t1 = performance.now();
          await s.flush();
          const t2 = performance.now();
          const spills = s.stats.spillWrites;
          await s.close();
          return { setMs: t1 - t0, flushMs: t2 - t1, spills };
        } finally {
          removeDir(dir);
        }
      });
    }
    progress(`set-then-flush: lmdb-js, ${order}`);
    await measure('lmdb-js (put all, await last put, await db.flushed)', order, async () => {
      const dir = tempDir('durable-lmdb');
      try {
        const db = open({ path: dir });
        const t0 = performance.now();
        let last: Promise<boolean> | undefined;
        for (let i = 0; i < n; i++) { const j = at(i); last = db.put(keys[j]!, vals[j]); }
        const t1 = performance.now();
        await last;
        await db.flushed;
        const t2 = performance.now();
        await db.close();
        return { setMs: t1 - t0, flushMs: t2 - t1 };
      } finally {
        removeDir(dir);
      }
    });
  }
  return rows;
}

function printDurable(n: number, rows: DurableRow[]): void {
  console.log(`\n### Set then flush (durable): ${fmtInt(n)} keys, ~100 B string values (best of ${flags.reps}, after a warm-up run)\n`);
  const lmdbOf = (order: string) => rows.find((r) => r.order === order && r.label.startsWith('lmdb'))!;
  console.log(table(
    ['contender', 'order', 'set', 'flush / await', 'total', 'keys/s', 'speed vs lmdb-js', 'spill writes'],
    rows.map((r) => [r.label, r.order, fmtMs(r.setMs), fmtMs(r.flushMs), fmtMs(r.totalMs), fmtInt(rate(n, r.totalMs)), fmtRatio(lmdbOf(r.order).totalMs / r.totalMs), r.spills === undefined ? '—' : fmtInt(r.spills)]),
  ));
  console.log(`
Notes: time from the first set to durability. tidepool: \`set\` every key, then \`await store.flush()\`.
lmdb-js: \`put\` every key (the "set" column is the time to issue the puts), then await the last put and
\`db.flushed\` (the "flush / await" column). Opening and closing are not timed; each run uses a fresh directory.
"spill writes": dirty pages the tidepool cache evicted to its spill file before the flush (each is written to the
spill file, read back and decoded when touched again, and read again by the flush).`);
}

// ====================================================================== through a small cache (child processes)

interface ThroughResult {
  side: string;
  count: number;
  gets: number;
  setMs: number;
  flushMs: number;
  getMs: number;
  scanMs: number;
  closeMs: number;
  rss: RssReport;
  fileBytes: number;
  stats?: Record<string, number>;
  /** Earlier attempts of this side that crashed (the run shown is the retry). */
  failures?: string[];
}

/** One side of a through-cache case, in its own process. */
async function throughChild(): Promise<void> {
  const side = flags.side, n = flags.count, gets = flags.gets;
  const sampler = new RssSampler(50).start();
  const dir = tempDir(`through-${side}`);
  const POOL = Array.from({ length: 4096 }, (_, i) => valueOf(i));
  const idx = randomIndices(gets, n);
  const res: ThroughResult = { side, count: n, gets, setMs: 0, flushMs: 0, getMs: 0, scanMs: 0, closeMs: 0, rss: undefined as never, fileBytes: 0 };
  const phase = (m: string) => process.stderr.write(`[${side}] ${m}, rss ${fmtMB(process.memoryUsage.rss())}\n`);
  try {
    if (side === 'tidepool') {
      const s = await openStore({ storage: 'lmdb', path: dir, cachePages: flags['cache-pages'], pageSize: flags['page-size'] });
      let t0 = performance.now();
      for (let i = 0; i < n; i++) {
        s.set(keyOf(i), POOL[i & 4095]);
        if ((i & 4095) === 0) sampler.tick();
      }
      res.setMs = performance.now() - t0;
      phase(`set ${fmtMs(res.setMs)}`);
      res.flushMs = await timeAsync(() => s.flush());
      phase(`flush ${fmtMs(res.flushMs)}`);
      t0 = performance.now();
      let ok = 0;
      for (let i = 0; i < gets; i++) {
        const j = idx[i]!;
        if (s.get(keyOf(j)) === POOL[j & 4095]) ok++;
        if ((i & 1023) === 0) sampler.tick();
      }
      res.getMs = performance.now() - t0;
      checkAll(ok, gets, 'tidepool get');
      phase(`get ${fmtMs(res.getMs)}`);
      t0 = performance.now();
      let c = 0;
      for (const [k, v] of s.entries()) {
        if (k !== undefined && v !== undefined) c++;
        if ((c & 4095) === 0) sampler.tick();
      }
      res.scanMs = performance.now() - t0;
      checkAll(c, n, 'tidepool scan');
      phase(`scan ${fmtMs(res.scanMs)}`);
      const st = s.stats;
      res.stats = { cacheHits: st.cacheHits, cacheMisses: st.cacheMisses, spillWrites: st.spillWrites, persistentReads: st.persistentReads, residentPages: st.residentPages };
      res.closeMs = await timeAsync(() => s.close());
    } else {
      const db = open({ path: dir });
      const chunk = flags['lmdb-chunk'];
      let t0 = performance.now();
      let last: Promise<boolean> | undefined;
      for (let i = 0; i < n; i++) {
        last = db.put(keyOf(i), POOL[i & 4095]);
        if ((i & 4095) === 0) sampler.tick();
        if (i % chunk === chunk - 1) await last; // backpressure: lmdb-js queues every pending put in memory
      }
      await last;
      res.setMs = performance.now() - t0;
      phase(`set ${fmtMs(res.setMs)}`);
      res.flushMs = await timeAsync(() => db.flushed);
      phase(`flush ${fmtMs(res.flushMs)}`);
      t0 = performance.now();
      let ok = 0;
      for (let i = 0; i < gets; i++) {
        const j = idx[i]!;
        if (db.get(keyOf(j)) === POOL[j & 4095]) ok++;
        if ((i & 1023) === 0) sampler.tick();
      }
      res.getMs = performance.now() - t0;
      checkAll(ok, gets, 'lmdb get');
      phase(`get ${fmtMs(res.getMs)}`);
      t0 = performance.now();
      let c = 0;
      for (const { key, value } of db.getRange()) {
        if (key !== undefined && value !== undefined) c++;
        if ((c & 4095) === 0) sampler.tick();
      }
      res.scanMs = performance.now() - t0;
      checkAll(c, n, 'lmdb scan');
      phase(`scan ${fmtMs(res.scanMs)}`);
      res.closeMs = await timeAsync(() => db.close());
    }
    res.rss = sampler.stop();
    try {
      res.fileBytes = statSync(join(dir, 'data.mdb')).size;
    } catch {
      res.fileBytes = 0;
    }
  } finally {
    removeDir(dir);
  }
  emitResult(res);
}

async function throughCase(n: number, gets: number): Promise<ThroughResult[]> {
  const out: ThroughResult[] = [];
  for (const side of ['tidepool', 'lmdb-js']) {
    const args = [
      '--child', 'through', '--side', side, '--count', String(n), '--gets', String(gets),
      '--cache-pages', String(flags['cache-pages']), '--page-size', String(flags['page-size']), '--lmdb-chunk', String(flags['lmdb-chunk']),
    ];
    const failures: string[] = [];
    for (let attempt = 1; ; attempt++) {
      progress(`through cache: ${fmtInt(n)} keys, ${side} (child process${attempt > 1 ? `, attempt ${attempt}` : ''})`);
      try {
        const r = await runChild<ThroughResult>(fileURLToPath(import.meta.url), args);
        r.failures = failures;
        out.push(r);
        break;
      } catch (e) {
        // One retry: a crash is reported in the output, not hidden.
        failures.push((e as Error).message.replace(/^.* exited with /, 'exited with '));
        if (attempt >= 2) throw e;
      }
    }
  }
  return out;
}

function printThrough(title: string, [t, l]: ThroughResult[]): void {
  console.log(`\n### ${title}\n`);
  const row = (name: string, ops: number, tm: number, lm: number) =>
    [name, `${fmtRate(rate(ops, tm))}/s (${fmtMs(tm)})`, `${fmtRate(rate(ops, lm))}/s (${fmtMs(lm)})`, fmtRatio(lm / tm)];
  console.log(table(['phase', 'tidepool', 'lmdb-js', 'tidepool speed / lmdb-js'], [
    row(`set ${fmtInt(t!.count)} keys (key order)`, t!.count, t!.setMs, l!.setMs),
    ['flush (durable)', fmtMs(t!.flushMs), fmtMs(l!.flushMs), '—'],
    row(`set + flush`, t!.count, t!.setMs + t!.flushMs, l!.setMs + l!.flushMs),
    row(`get ${fmtInt(t!.gets)} random keys`, t!.gets, t!.getMs, l!.getMs),
    row(`scan all entries`, t!.count, t!.scanMs, l!.scanMs),
    ['close', fmtMs(t!.closeMs), fmtMs(l!.closeMs), ''],
    ['peak RSS (sampled every 50 ms)', fmtMB(t!.rss.sampledMax), fmtMB(l!.rss.sampledMax), ''],
    ['peak RSS (kernel high-water mark)', fmtMB(t!.rss.kernelMax), fmtMB(l!.rss.kernelMax), ''],
    ['peak RssAnon (sampled; excludes mmap\'d file pages)', fmtMB(t!.rss.sampledAnonMax), fmtMB(l!.rss.sampledAnonMax), ''],
    ['data.mdb size', fmtMB(t!.fileBytes), fmtMB(l!.fileBytes), ''],
  ]));
  const st = t!.stats!;
  for (const r of [t!, l!]) {
    for (const f of r.failures ?? []) console.log(`\n**Note:** a first attempt of the ${r.side} side ${f}; the numbers above are from the retry.`);
  }
  console.log(`
Notes: each side ran in its own child process. tidepool: \`openStore({ storage: 'lmdb', cachePages: ${flags['cache-pages']}, pageSize: ${flags['page-size']} })\`
(cache hits ${fmtInt(st.cacheHits!)}, misses ${fmtInt(st.cacheMisses!)}, spill writes ${fmtInt(st.spillWrites!)}, page reads from LMDB ${fmtInt(st.persistentReads!)}).
lmdb-js: \`open({ path })\`, puts awaited every ${fmtInt(flags['lmdb-chunk'])} (otherwise lmdb-js queues every pending put in memory),
then \`db.flushed\` (its "flush" row is only the wait for \`db.flushed\` after the last put resolved: lmdb-js syncs while
later puts are issued, so compare the "set + flush" rows); reads with \`db.get\` and \`getRange()\`. Keys \`key:%08d\` and 100 B values are generated inside the
timed loops on both sides (same cost for both). RSS counts pages of the memory-mapped LMDB file that were read
(file-backed, reclaimable); RssAnon is the process's own memory.`);
}

// ====================================================================== main

async function main(): Promise<void> {
  if (flags.child === 'through') return throughChild();
  const cases = new Set(flags.cases.split(',').map((s) => s.trim()));
  for (const c of cases) if (!['cache', 'durable', 'rss', 'big'].includes(c)) throw new Error(`--cases: unknown case ${c}`);
  const started = performance.now();
  console.log(`## tidepool store benchmarks${flags.quick ? ' (--quick sizes)' : ''}\n`);
  console.log(machineLine());
  const targets: [string, string, string][] = [];

  if (cases.has('cache')) {
    const res = await inCacheCase(flags.n, flags.reps);
    printInCache(flags.n, res);
    for (const kind of ['strings', 'objects'] as const) {
      const t = res[kind].tidepool!, l = res[kind]['lmdb-js']!;
      const g = OPS[2];
      targets.push([`cached get ≥ 2× lmdb-js get (${kind})`, fmtRatio(t[g]! / l[g]!), verdict(t[g]! / l[g]!, 2)]);
    }
    for (const kind of ['strings', 'objects'] as const) {
      const t = res[kind].tidepool!, m = res[kind].Map!, l = res[kind]['lmdb-js']!;
      for (const op of [OPS[0], OPS[1]]) {
        targets.push([`${op.replace('set', 'set ≥ 2× lmdb-js batched put')} (${kind})`, fmtRatio(t[op]! / l[op]!), verdict(t[op]! / l[op]!, 2)]);
        targets.push([`${op.replace('set', 'set ≥ 50% of Map.set')} (${kind})`, `${((t[op]! / m[op]!) * 100).toFixed(0)}%`, verdict((t[op]! / m[op]!) * 100, 50, '%')]);
      }
    }
  }

  if (cases.has('durable')) {
    const n = flags['flush-n'];
    const rows = await durableCase(n, flags.reps);
    printDurable(n, rows);
    for (const order of ['key order', 'random order']) {
      const l = rows.find((r) => r.order === order && r.label.startsWith('lmdb'))!;
      for (const r of rows.filter((x) => x.order === order && x.label.startsWith('tidepool'))) {
        targets.push([`set-then-flush ${fmtInt(n)} keys ≥ 1.5× lmdb-js (${r.label.replace('tidepool ', '')}, ${order})`, fmtRatio(l.totalMs / r.totalMs), verdict(l.totalMs / r.totalMs, 1.5)]);
      }
    }
  }

  if (cases.has('rss')) {
    const n = flags['rss-n'];
    const res = await throughCase(n, flags['rss-gets']);
    printThrough(`Bounded memory: ${fmtInt(n)} keys × ~100 B through a ${flags['cache-pages']}-page cache (pageSize ${flags['page-size']})`, res);
    const t = res[0]!;
    targets.push([`${fmtInt(n)} keys through a ${flags['cache-pages']}-page cache: peak RSS < 300 MB`, fmtMB(t.rss.kernelMax), verdict(t.rss.kernelMax / 1e6, 300, ' MB', true)]);
    targets.push([`(same, RssAnon only: excluding mmap'd LMDB file pages)`, fmtMB(t.rss.sampledAnonMax), verdict(t.rss.sampledAnonMax / 1e6, 300, ' MB', true)]);
  }

  if (cases.has('big')) {
    const n = flags.big;
    const res = await throughCase(n, flags['big-gets']);
    printThrough(`Through a small cache: ${fmtInt(n)} keys × ~100 B, ${flags['cache-pages']}-page cache (pageSize ${flags['page-size']})`, res);
  }

  if (targets.length) {
    console.log(`\n### Targets (store)\n`);
    console.log(table(['target', 'measured', 'verdict'], targets));
  }
  console.log(`\n(store bench took ${fmtMs(performance.now() - started)})`);
}

await main();
