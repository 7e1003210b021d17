// End-to-end flow throughput: whole `run()` calls of small flow modules, against a
// plain single-threaded JavaScript loop doing the same work per record.
//
//   npm run build && node dist/perf/flow.bench.js [flags]
//
//   --n 2M              records per keyed-count run (both key counts)
//   --stateless-n 30M   records per stateless-pipeline run (chaining on)
//   --unchained-n 3M    records of the stateless run with chaining off (much slower)
//   --keys 1000,1000000 distinct keys of the keyed-count runs
//   --reps 2            runs per configuration (the fastest is kept)
//   --big-cache 16384   with ≥ 100k keys, two more rows: p=1 and p=2 workers with this many
//                       cache pages (enough to hold all state), to separate spilling from the
//                       rest and to compare p=2 with p=1 at equal (no) spilling (0: no such rows)
//   --cases keyed,stateless[,profile]
//                       profile: re-runs keyed count (p=1 and p=2, workers) and the stateless
//                       pipeline (p=1) under `node --cpu-prof` (one profile per thread) and
//                       prints the top self-time functions of every thread
//   --profile-dir DIR   where the .cpuprofile files go (default: a temp dir, removed)
//   --quick             200k records, one run each
//
// Flows (compiled with the bench, in dist/perf/flows/; sizes via the environment):
//   keyed-count  generator → keyBy(user) → reduce count → discard sink
//   stateless    generator → map → filter → map → discard sink
// The discard sink only counts records, so the runs measure the runtime, not output I/O.
// The plain loop calls the same functions (perf/flows/records.ts): make record i, Map
// get/set of the count, an `{ key, value }` object per record pushed into a batch array
// that is dropped every 512 records (the runtime's default batch size).
//
// Every run is a child process: `run(modulePath, { overrides })` with the default
// settings (lmdb storage in a temporary state directory, 16 KiB pages, 1024-page cache,
// 128 key groups, a checkpoint every second and a final one at end of input). Wall time
// is the whole `run()` call — loading the module, starting the workers and the I/O
// worker, the records, checkpoints, the end-of-input drain and shutdown;
// CPU time is the child's process.cpuUsage() over that call (all its threads). The
// fixed cost of a configuration is measured with 1,000 records and shown separately.
import { mkdirSync, readdirSync, readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { run, type RunSummary } from '../src/index.js';
import {
  emitResult, fmtInt, fmtMs, fmtRatio, machineLine, parseFlags, progress, removeDir, runChild, table, tempDir, verdict,
} from './bench-util.js';
import { count, large, makeEvents, price, project, userOf } from './flows/records.js';

const flags = parseFlags(
  process.argv.slice(2),
  {
    n: 2_000_000, 'stateless-n': 30_000_000, 'unchained-n': 3_000_000, keys: '1000,1000000', reps: 2, 'big-cache': 16384, cases: 'keyed,stateless', 'profile-dir': '', quick: false,
    // internal: one measured run in a child process
    child: '', flow: '', exec: 'workers', p: 1, chaining: true, count: 0, kcount: 0, 'cache-pages': 0,
  },
  { n: 200_000, 'stateless-n': 1_000_000, 'unchained-n': 200_000, reps: 1 },
);

const FIXED_N = 1000;
const BATCH = 512;
const FLOWS = { keyed: 'keyed-count', stateless: 'stateless' } as const;
type FlowName = keyof typeof FLOWS;

interface ChildResult {
  wallMs: number;
  cpuMs: number;
  records: number;
  summary?: RunSummary;
  check: number;
}

// ====================================================================== children

/** One tidepool run() of a bench flow. */
async function runChildFlow(): Promise<ChildResult> {
  const flow = flags.flow as FlowName;
  process.env.TIDEPOOL_BENCH_N = String(flags.count);
  process.env.TIDEPOOL_BENCH_KEYS = String(flags.kcount);
  const modulePath = fileURLToPath(new URL(`./flows/${FLOWS[flow]}.js`, import.meta.url));
  const overrides: Record<string, unknown> = { parallelism: flags.p, execution: flags.exec, chaining: flags.chaining };
  if (flags['cache-pages'] > 0) overrides.state = { cachePages: flags['cache-pages'] };
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  const summary = await run(modulePath, { overrides });
  const wallMs = performance.now() - t0;
  const cpu = process.cpuUsage(cpu0);
  const expectedOut = flow === 'keyed' ? flags.count : countStateless(flags.count, flags.kcount);
  const sunk = summary.operators.at(-1)!.recordsOut; // the sink task's records handed to its sink
  if (summary.recordsIn !== flags.count || sunk !== expectedOut) {
    throw new Error(`run saw ${summary.recordsIn} records in, ${sunk} reached the sink (expected ${flags.count}, ${expectedOut})`);
  }
  return { wallMs, cpuMs: (cpu.user + cpu.system) / 1000, records: flags.count, summary, check: expectedOut };
}

/** Records that pass the stateless pipeline's filter (to check the sink saw them all). */
function countStateless(n: number, keys: number): number {
  const make = makeEvents(keys);
  let c = 0;
  for (let i = 0; i < n; i++) if (large(price(make(i)))) c++;
  return c;
}

/** The plain loop: same functions, one thread, no runtime. */
function runChildLoop(): ChildResult {
  const n = flags.count;
  const make = makeEvents(flags.kcount);
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  let out: unknown[] = [];
  let emitted = 0;
  if (flags.flow === 'keyed') {
    const counts = new Map<string, number>();
    for (let i = 0; i < n; i++) {
      const e = make(i);
      const key = userOf(e);
      const value = count(counts.get(key), e);
      counts.set(key, value);
      out.push({ key, value });
      if (out.length >= BATCH) {
        emitted += out.length;
        out = [];
      }
    }
    if (counts.size !== Math.min(n, flags.kcount)) throw new Error(`loop saw ${counts.size} keys`);
  } else {
    for (let i = 0; i < n; i++) {
      const p = price(make(i));
      if (!large(p)) continue;
      out.push(project(p));
      if (out.length >= BATCH) {
        emitted += out.length;
        out = [];
      }
    }
  }
  emitted += out.length;
  const wallMs = performance.now() - t0;
  const cpu = process.cpuUsage(cpu0);
  return { wallMs, cpuMs: (cpu.user + cpu.system) / 1000, records: n, check: emitted };
}

// ====================================================================== configurations

interface Config {
  flow: FlowName;
  label: string;
  exec: 'workers' | 'inline' | 'loop';
  p: number;
  chaining: boolean;
  cachePages?: number;
}

const configKey = (c: Config) => `${c.flow}/${c.exec}/${c.p}/${c.chaining}/${c.cachePages ?? 0}`;

function childArgs(c: Config, n: number, keys: number): string[] {
  return ['--child', c.exec === 'loop' ? 'loop' : 'run', '--flow', c.flow, '--exec', c.exec === 'loop' ? 'workers' : c.exec,
    '--p', String(c.p), `--chaining=${c.chaining}`, '--count', String(n), '--kcount', String(keys), '--cache-pages', String(c.cachePages ?? 0)];
}

/** Threads a configuration runs on: one worker per task instance, plus the main thread and the I/O worker. */
function threadsOf(c: Config, s?: RunSummary): string {
  if (c.exec === 'loop') return '1';
  if (!s) return '?';
  const instances = s.operators.reduce((a, o) => a + o.parallelism, 0);
  const io = s.operators.some((o) => o.statePages > 0 || o.cacheHitRate !== null) ? 1 : 0;
  if (c.exec === 'inline') return `1${io ? ' + I/O' : ''}`;
  return `${instances} + main${io ? ' + I/O' : ''}`;
}

/** One run of a configuration (run `rep` of `reps`, for the progress line). */
async function measure(c: Config, n: number, keys: number, rep: number, reps: number): Promise<ChildResult> {
  progress(`${c.flow}: ${c.label}, ${fmtInt(n)} records, ${fmtInt(keys)} keys, run ${rep + 1} of ${reps}`);
  return runChild<ChildResult>(fileURLToPath(import.meta.url), childArgs(c, n, keys));
}

interface Row {
  c: Config;
  keys: number;
  res: ChildResult;
  fixed?: ChildResult;
}

const fixedCache = new Map<string, ChildResult>();
async function fixedCost(c: Config): Promise<ChildResult | undefined> {
  if (c.exec === 'loop') return undefined;
  const k = configKey(c);
  if (!fixedCache.has(k)) {
    let best: ChildResult | undefined;
    for (let r = 0; r < flags.reps; r++) {
      progress(`${c.flow}: ${c.label}, fixed cost (${fmtInt(FIXED_N)} records), run ${r + 1} of ${flags.reps}`);
      const res = await runChild<ChildResult>(fileURLToPath(import.meta.url), childArgs(c, FIXED_N, FIXED_N));
      if (!best || res.wallMs < best.wallMs) best = res;
    }
    fixedCache.set(k, best!);
  }
  return fixedCache.get(k);
}

const perSec = (n: number, ms: number) => (n * 1000) / ms;

function printRows(rows: Row[], base: Row): void {
  const baseRate = perSec(base.res.records, base.res.wallMs);
  const baseCpuRate = perSec(base.res.records, base.res.cpuMs);
  console.log(table(
    ['contender', 'threads', 'records', 'wall', 'records/s', 'vs plain loop', 'CPU time', 'records per CPU-s', 'per CPU-s vs loop', 'fixed cost (1k records)', 'records/s excl. fixed cost'],
    rows.map((r) => {
      const rate = perSec(r.res.records, r.res.wallMs);
      const cpuRate = perSec(r.res.records, r.res.cpuMs);
      // Only meaningful when the fixed cost is a minor part of the run.
      const steady = r.fixed && r.res.wallMs - r.fixed.wallMs > r.res.wallMs / 4 ? fmtInt(perSec(r.res.records, r.res.wallMs - r.fixed.wallMs)) : 'n/a';
      return [
        r.c.label, threadsOf(r.c, r.res.summary), fmtInt(r.res.records), fmtMs(r.res.wallMs), fmtInt(rate), fmtRatio(rate / baseRate),
        fmtMs(r.res.cpuMs), fmtInt(cpuRate), fmtRatio(cpuRate / baseCpuRate),
        r.fixed ? fmtMs(r.fixed.wallMs) : '—', r.fixed ? steady : '—',
      ];
    }),
  ));
}

function printDetails(rows: Row[]): void {
  const lines: string[][] = [];
  for (const r of rows) {
    const s = r.res.summary;
    if (!s) continue;
    for (const o of s.operators) {
      lines.push([
        r.c.label, `${o.task} ×${o.parallelism}`, fmtInt(o.recordsIn), fmtInt(o.recordsOut), fmtMs(o.backpressureMs),
        o.statePages ? fmtInt(o.statePages) : '—', o.statePages ? fmtInt(o.stateSpilledPages) : '—',
        o.cacheHitRate === null ? '—' : `${(o.cacheHitRate * 100).toFixed(1)}%`,
        o === s.operators[0] && s.checkpoints ? `${s.checkpoints.completed} (last ${fmtMs(s.checkpoints.lastDurationMs)}, max pause ${fmtMs(s.checkpoints.maxPauseMs)})` : '',
      ]);
    }
  }
  console.log(table(['run', 'task', 'records in', 'records out', 'backpressure (sum)', 'state pages', 'spilled pages', 'cache hit rate', 'checkpoints completed'], lines));
}

// ====================================================================== profiles

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}
interface CpuProfile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

function shortFile(url: string): string {
  if (!url) return '';
  const path = url.startsWith('file:') ? fileURLToPath(url) : url;
  const m = /(?:^|\/)((?:src|workers|perf)\/.*)$/.exec(path) ?? /node_modules\/(.*)$/.exec(path);
  return m ? m[1]! : path.split('/').slice(-2).join('/');
}

/**
 * What a thread was, from the functions in its call tree: the main thread (coordinator),
 * the I/O worker, or a task instance — source, map/filter steps, reduce (B+tree access),
 * and a sink when the instance has no output channel (it hands records to its sink).
 */
function threadRole(nodes: ProfileNode[], tid: string): string {
  const has = (file: string, ...fns: string[]) =>
    nodes.some((n) => shortFile(n.callFrame.url).endsWith(file) && (fns.length === 0 || fns.includes(n.callFrame.functionName)));
  if (tid === '0') {
    if (has('perf/flow.bench.js', 'runChildLoop')) return 'main thread (plain loop)';
    return has('runtime/task.js', 'run') ? 'main thread (coordinator; every task, inline)' : 'main thread (coordinator)';
  }
  if (has('workers/io.js')) return 'I/O worker';
  if (!has('runtime/task.js', 'run')) return 'other';
  const roles: string[] = [];
  if (has('connectors/sources.js', 'next')) roles.push('source');
  if (has('flows/records.js', 'price', 'large', 'project')) roles.push('map/filter');
  if (has('state/btree.js', 'get', 'set')) roles.push('reduce');
  if (!has('runtime/channels.js', 'push', 'flush', 'encodeBatch')) roles.push('sink');
  return `task: ${roles.join(' → ')}`;
}

/** Top self-time functions of one .cpuprofile, and what the thread was. */
function summarizeProfile(file: string, top: number): { label: string; totalMs: number; idleMs: number; rows: [string, number][] } {
  const prof = JSON.parse(readFileSync(file, 'utf8')) as CpuProfile;
  const self = new Map<number, number>();
  let total = 0;
  for (let i = 0; i < prof.samples.length; i++) {
    const dt = prof.timeDeltas[i] ?? 0;
    self.set(prof.samples[i]!, (self.get(prof.samples[i]!) ?? 0) + dt);
    total += dt;
  }
  const byFn = new Map<string, number>();
  for (const node of prof.nodes) {
    const us = self.get(node.id);
    if (!us) continue;
    const { functionName, url, lineNumber } = node.callFrame;
    const f = shortFile(url);
    const name = `${functionName || '(anonymous)'}${f ? ` ${f}:${lineNumber + 1}` : ''}`;
    byFn.set(name, (byFn.get(name) ?? 0) + us);
  }
  const tid = /\.(\d+)\.\d+\.cpuprofile$/.exec(file)?.[1] ?? '?';
  const idleMs = (byFn.get('(idle)') ?? 0) / 1000;
  const rows = [...byFn.entries()].sort((a, b) => b[1] - a[1]).slice(0, top).map(([k, us]) => [k, us / 1000] as [string, number]);
  return { label: `${threadRole(prof.nodes, tid)}, thread ${tid}`, totalMs: total / 1000, idleMs, rows };
}

async function profileCase(name: string, c: Config, n: number, keys: number, root: string): Promise<void> {
  const dir = join(root, name.replace(/[^A-Za-z0-9_-]+/g, '_'));
  mkdirSync(dir, { recursive: true });
  progress(`profile: ${name}`);
  const res = await runChild<ChildResult>(fileURLToPath(import.meta.url), childArgs(c, n, keys), ['--cpu-prof', `--cpu-prof-dir=${dir}`]);
  console.log(`\n#### Profile: ${name} (${fmtInt(n)} records, wall ${fmtMs(res.wallMs)} under the profiler, ${fmtInt(perSec(n, res.wallMs))} records/s)\n`);
  const files = readdirSync(dir).filter((f) => f.endsWith('.cpuprofile')).sort();
  const threads = files.map((f) => summarizeProfile(join(dir, f), 14)).sort((a, b) => a.label.localeCompare(b.label));
  for (const t of threads) {
    console.log(`${t.label}: ${fmtMs(t.totalMs)} sampled, ${fmtMs(t.totalMs - t.idleMs)} not idle`);
    console.log(table(['self time', '%', 'function (compiled file:line)'], t.rows.map(([k, ms]) => [fmtMs(ms), `${((ms / t.totalMs) * 100).toFixed(1)}%`, k])));
    console.log('');
  }
}

// ====================================================================== main

async function main(): Promise<void> {
  if (flags.child) {
    const res = flags.child === 'loop' ? runChildLoop() : await runChildFlow();
    emitResult(res);
    process.exit(0); // do not wait for idle workers' timers
  }
  const started = performance.now();
  const cases = new Set(flags.cases.split(',').map((s) => s.trim()).filter(Boolean));
  for (const c of cases) if (!['keyed', 'stateless', 'profile'].includes(c)) throw new Error(`--cases: unknown case ${c}`);
  const keySets = flags.keys.split(',').map((s) => Number(s.trim().replace(/_/g, '')));
  const cores = availableParallelism();
  console.log(`## tidepool flow throughput${flags.quick ? ' (--quick sizes)' : ''}\n`);
  console.log(machineLine());
  console.log(`Cores available to this process (os.availableParallelism()): ${cores}`);
  const targets: string[][] = [];

  if (cases.has('keyed')) {
    const n = flags.n;
    const configs: Config[] = [
      { flow: 'keyed', label: 'plain JS loop (Map count)', exec: 'loop', p: 1, chaining: true },
      { flow: 'keyed', label: 'tidepool p=1, workers', exec: 'workers', p: 1, chaining: true },
      { flow: 'keyed', label: 'tidepool p=2, workers', exec: 'workers', p: 2, chaining: true },
      { flow: 'keyed', label: 'tidepool p=1, inline', exec: 'inline', p: 1, chaining: true },
    ];
    for (const keys of keySets) {
      const rows: Row[] = [];
      const bigCache = flags['big-cache'] > 0 && keys >= 100_000;
      const all: Config[] = bigCache
        ? [
          ...configs,
          { flow: 'keyed', label: `tidepool p=1, workers, cachePages ${flags['big-cache']}`, exec: 'workers', p: 1, chaining: true, cachePages: flags['big-cache'] },
          { flow: 'keyed', label: `tidepool p=2, workers, cachePages ${flags['big-cache']}`, exec: 'workers', p: 2, chaining: true, cachePages: flags['big-cache'] },
        ]
        : configs;
      // Take turns between configurations, so a noisy moment on a shared machine does not hit one row only.
      const best = new Map<Config, ChildResult>();
      for (let r = 0; r < flags.reps; r++) {
        for (const c of all) {
          const res = await measure(c, n, keys, r, flags.reps);
          const b = best.get(c);
          if (!b || res.wallMs < b.wallMs) best.set(c, res);
        }
      }
      for (const c of all) rows.push({ c, keys, res: best.get(c)!, fixed: await fixedCost(c) });
      console.log(`\n### Keyed count: ${fmtInt(n)} records, ${fmtInt(keys)} distinct keys (best of ${flags.reps})\n`);
      printRows(rows, rows[0]!);
      const [loop, p1, p2, inline] = rows.map((r) => perSec(r.res.records, r.res.wallMs)) as [number, number, number, number];
      console.log(`\nRatios (${fmtInt(keys)} keys): tidepool p=1 / plain loop ${fmtRatio(p1 / loop)}, p=2 / p=1 ${fmtRatio(p2 / p1)} ` +
        `(on ${cores} cores), inline p=1 / plain loop ${fmtRatio(inline / loop)}\n`);
      printDetails(rows.slice(1));
      targets.push([`keyed count per core ≥ 50% of plain loop (${fmtInt(keys)} keys; tidepool p=1 workers / loop, records/s)`,
        `${((p1 / loop) * 100).toFixed(1)}%`, verdict((p1 / loop) * 100, 50, '%')]);
      const cpuRatio = perSec(rows[1]!.res.records, rows[1]!.res.cpuMs) / perSec(rows[0]!.res.records, rows[0]!.res.cpuMs);
      targets.push([`(same, per CPU-second: records per CPU-s of p=1 workers / loop)`, `${(cpuRatio * 100).toFixed(1)}%`, verdict(cpuRatio * 100, 50, '%')]);
      targets.push([`(same, inline p=1 / loop)`, `${((inline / loop) * 100).toFixed(1)}%`, verdict((inline / loop) * 100, 50, '%')]);
      targets.push([`keyed count p=2 ≥ 1.6× p=1 (${fmtInt(keys)} keys, workers, ${cores} cores)`, fmtRatio(p2 / p1), verdict(p2 / p1, 1.6)]);
      if (bigCache) {
        const [b1, b2] = rows.slice(-2).map((r) => perSec(r.res.records, r.res.wallMs)) as [number, number];
        console.log(`With cachePages ${flags['big-cache']} (no spilling at either parallelism): p=2 / p=1 ${fmtRatio(b2 / b1)}\n`);
        targets.push([`(same, both with cachePages ${flags['big-cache']}: no spilling on either side)`, fmtRatio(b2 / b1), verdict(b2 / b1, 1.6)]);
      }
    }
  }

  if (cases.has('stateless')) {
    const n = flags['stateless-n'];
    const keys = keySets[0] ?? 1000;
    const configs: Config[] = [
      { flow: 'stateless', label: 'plain JS loop', exec: 'loop', p: 1, chaining: true },
      { flow: 'stateless', label: 'tidepool p=1, chaining on', exec: 'workers', p: 1, chaining: true },
      { flow: 'stateless', label: 'tidepool p=2, chaining on', exec: 'workers', p: 2, chaining: true },
      { flow: 'stateless', label: 'tidepool p=2, chaining off', exec: 'workers', p: 2, chaining: false },
    ];
    const nOf = (c: Config) => (c.chaining ? n : flags['unchained-n']);
    const best = new Map<Config, ChildResult>();
    for (let r = 0; r < flags.reps; r++) {
      for (const c of configs) {
        const res = await measure(c, nOf(c), keys, r, flags.reps);
        const b = best.get(c);
        if (!b || res.wallMs < b.wallMs) best.set(c, res);
      }
    }
    const rows: Row[] = [];
    for (const c of configs) rows.push({ c, keys, res: best.get(c)!, fixed: await fixedCost(c) });
    console.log(`\n### Stateless pipeline (map → filter → map): ${fmtInt(n)} records, chaining off: ${fmtInt(flags['unchained-n'])} (best of ${flags.reps})\n`);
    printRows(rows, rows[0]!);
    const [loop, p1, p2, p2u] = rows.map((r) => perSec(r.res.records, r.res.wallMs)) as [number, number, number, number];
    console.log(`\nRatios: p=1 chained / plain loop ${fmtRatio(p1 / loop)}, p=2 chained / p=1 chained ${fmtRatio(p2 / p1)}, ` +
      `p=2 unchained / p=2 chained ${fmtRatio(p2u / p2)} (on ${cores} cores)\n`);
    printDetails(rows.slice(1));
  }

  console.log(`
Notes: every row is a separate child process; "wall" is the whole \`run()\` call (module load, worker and
I/O worker start-up, records, checkpoints — default interval 1000 ms, plus the final one at end of input —,
end-of-input drain, shutdown). CPU time is
process.cpuUsage() of that process over the call, all threads together (the loop: its one thread).
"fixed cost" is the same configuration with ${fmtInt(FIXED_N)} records (best of ${flags.reps}); "records/s excl. fixed cost"
divides the records by (wall − fixed cost), n/a where the fixed cost is more than 3/4 of the wall time. Default state settings: lmdb storage in a temporary directory, pageSize 16384,
cachePages from the default (sized from memory, unless the row says otherwise), keyGroups 128, batchSize ${BATCH}. The sink is a discard sink (counts records) on both sides.
p=1 workers runs 1 task instance (source, reduce and sink fused) on its own thread, p=2 runs 4 (2 sources;
2 reduces with the sink chained behind each), plus the main thread and the I/O worker; the machine has ${cores} cores.`);

  if (cases.has('profile')) {
    const root = flags['profile-dir'] || tempDir('flow-prof');
    const keysFew = keySets[0] ?? 1000;
    const keysMany = keySets[1] ?? keySets[0] ?? 1000;
    const n = flags.n;
    console.log(`\n### CPU profiles (node --cpu-prof, one profile per thread; top self time)\n`);
    const keyed = (exec: Config['exec'], p: number, cachePages?: number): Config => ({ flow: 'keyed', label: '', exec, p, chaining: true, cachePages });
    await profileCase(`keyed count p=1 workers, ${fmtInt(keysFew)} keys`, keyed('workers', 1), n, keysFew, root);
    await profileCase(`keyed count p=1 inline (every task on one thread), ${fmtInt(keysFew)} keys`, keyed('inline', 1), n, keysFew, root);
    await profileCase(`keyed count p=2 workers, ${fmtInt(keysFew)} keys`, keyed('workers', 2), n, keysFew, root);
    await profileCase(`keyed count p=1 workers, ${fmtInt(keysMany)} keys (default 1024-page cache)`, keyed('workers', 1), n, keysMany, root);
    if (flags['big-cache'] > 0) {
      await profileCase(`keyed count p=1 workers, ${fmtInt(keysMany)} keys, cachePages ${flags['big-cache']}`, keyed('workers', 1, flags['big-cache']), n, keysMany, root);
    }
    await profileCase(`plain loop keyed count, ${fmtInt(keysFew)} keys`, keyed('loop', 1), n, keysFew, root);
    await profileCase(`stateless p=1 chained`, { flow: 'stateless', label: '', exec: 'workers', p: 1, chaining: true }, flags['stateless-n'], keysFew, root);
    if (!flags['profile-dir']) removeDir(root);
    else console.log(`(profiles kept in ${root})`);
  }

  if (targets.length) {
    console.log(`\n### Targets (flow)\n`);
    console.log(table(['target', 'measured', 'verdict'], targets));
  }
  console.log(`\n(flow bench took ${fmtMs(performance.now() - started)})`);
}

await main();
