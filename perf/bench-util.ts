// Shared helpers of the benchmarks in perf/: flags, timing, peak RSS sampling,
// markdown tables, the machine line, child processes, and the key/value generators
// every bench uses so their numbers are comparable.
import { spawn } from 'node:child_process';
import { randomFillSync } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { availableParallelism, cpus, loadavg, platform, arch, tmpdir, totalmem } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { open as openLmdb } from 'lmdb';

// ------------------------------------------------------------------ flags

export type FlagSpec = Record<string, number | string | boolean>;

/**
 * Parses `--name value`, `--name=value` and bare `--flag` (booleans) against `defaults`;
 * `--quick` (if declared) switches to `quick` values for every flag not given
 * explicitly. Numbers accept `_` separators and k/M/G suffixes (`10M`, `300k`).
 */
export function parseFlags<T extends FlagSpec>(argv: string[], defaults: T, quick: Partial<T> = {}): T & { given: Set<string> } {
  const out: Record<string, unknown> = { ...defaults };
  const given = new Set<string>();
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (!a.startsWith('--')) throw new Error(`unexpected argument ${JSON.stringify(a)} (flags: ${Object.keys(defaults).map((k) => '--' + k).join(' ')})`);
    let name = a.slice(2);
    let raw: string | undefined;
    const eq = name.indexOf('=');
    if (eq >= 0) {
      raw = name.slice(eq + 1);
      name = name.slice(0, eq);
    }
    if (!(name in defaults)) throw new Error(`unknown flag --${name} (flags: ${Object.keys(defaults).map((k) => '--' + k).join(' ')})`);
    const def = defaults[name];
    if (typeof def === 'boolean') {
      out[name] = raw === undefined ? true : raw !== 'false' && raw !== '0';
    } else {
      if (raw === undefined) raw = argv[++i];
      if (raw === undefined) throw new Error(`--${name} needs a value`);
      out[name] = typeof def === 'number' ? parseNumber(name, raw) : raw;
    }
    given.add(name);
  }
  if (out.quick === true) for (const [k, v] of Object.entries(quick)) if (!given.has(k)) out[k] = v;
  return Object.assign(out as T, { given });
}

function parseNumber(name: string, raw: string): number {
  const m = /^([0-9._]+)([kKmMgG]?)$/.exec(raw.trim());
  const n = m ? Number(m[1]!.replace(/_/g, '')) * ({ '': 1, k: 1e3, m: 1e6, g: 1e9 } as Record<string, number>)[m[2]!.toLowerCase()]! : NaN;
  if (!Number.isFinite(n)) throw new Error(`--${name}: expected a number, got ${JSON.stringify(raw)}`);
  return n;
}

// ------------------------------------------------------------------ machine

function lmdbVersion(): string {
  try {
    // lmdb's exports map hides package.json: walk up from its entry point.
    let dir = dirname(createRequire(import.meta.url).resolve('lmdb'));
    for (let i = 0; i < 4; i++, dir = dirname(dir)) {
      try {
        const pkg = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as { name?: string; version: string };
        if (pkg.name === 'lmdb') return pkg.version;
      } catch {
        // not here
      }
    }
    return '?';
  } catch {
    return '?';
  }
}

/** One line naming the machine, for pasting above a results table. */
export function machineLine(): string {
  const cpu = cpus()[0]?.model.replace(/\s+/g, ' ').trim() ?? 'unknown CPU';
  const mem = (totalmem() / 2 ** 30).toFixed(1);
  const load = loadavg().map((x) => x.toFixed(2)).join(' ');
  return `Machine: ${availableParallelism()} cores (os.availableParallelism()), ${cpu}, ${mem} GiB RAM, ` +
    `${platform()}/${arch()}, Node ${process.version}, lmdb-js ${lmdbVersion()}; load average at start ${load}`;
}

// ------------------------------------------------------------------ timing

/** A full garbage collection (exposes gc on first use; harmless if already exposed). */
export function gc(): void {
  let f = (globalThis as { gc?: () => void }).gc;
  if (!f) {
    setFlagsFromString('--expose-gc');
    f = runInNewContext('gc') as () => void;
    (globalThis as { gc?: () => void }).gc = f;
  }
  f();
}

export function now(): number {
  return performance.now();
}

/** Milliseconds taken by fn. */
export function timeSync(fn: () => void): number {
  const t0 = performance.now();
  fn();
  return performance.now() - t0;
}

export async function timeAsync(fn: () => Promise<unknown>): Promise<number> {
  const t0 = performance.now();
  await fn();
  return performance.now() - t0;
}

/** Runs fn `reps` times and keeps the smallest time (other load only slows a run down). */
export async function best(reps: number, fn: () => Promise<number> | number): Promise<number> {
  let min = Infinity;
  for (let i = 0; i < reps; i++) min = Math.min(min, await fn());
  return min;
}

/**
 * The raw lmdb-js baseline of the flush and checkpoint benches: `count` binary values of
 * `valueBytes` (random bytes, distinct per value) under keys `[prefix, i, 1]` — shaped like
 * tidepool's page keys — put one by one into a fresh environment, the last put and
 * `flushed` awaited. Returns milliseconds; values are built before the clock starts.
 */
export async function timeRawLmdbPuts(count: number, valueBytes: number, prefix: string): Promise<number> {
  const noise = randomFillSync(Buffer.allocUnsafe(valueBytes));
  const values = Array.from({ length: count }, (_, i) => {
    const b = Buffer.from(noise);
    b.writeUInt32LE(i, 0);
    return b;
  });
  const dir = tempDir(`${prefix}-lmdb`);
  try {
    const db = openLmdb({ path: dir, encoding: 'binary' });
    gc();
    const ms = await timeAsync(async () => {
      let last: Promise<boolean> | undefined;
      for (let i = 0; i < count; i++) last = db.put([prefix, i, 1], values[i]!);
      await last;
      await db.flushed;
    });
    await db.close();
    return ms;
  } finally {
    removeDir(dir);
  }
}

/** Ops per second for `n` ops in `ms`. */
export const rate = (n: number, ms: number): number => (n * 1000) / ms;

// ------------------------------------------------------------------ peak RSS

export interface RssReport {
  /** Largest process.memoryUsage.rss() seen by the sampler, bytes. */
  sampledMax: number;
  /** Largest RssAnon (heap, malloc; not file-backed mmap pages) seen, bytes; 0 where /proc is missing. */
  sampledAnonMax: number;
  /** The kernel's high-water mark (process.resourceUsage().maxRSS), bytes. */
  kernelMax: number;
  samples: number;
}

function rssAnon(): number {
  try {
    const m = /RssAnon:\s+(\d+) kB/.exec(readFileSync('/proc/self/status', 'latin1'));
    return m ? Number(m[1]) * 1024 : 0;
  } catch {
    return 0;
  }
}

/**
 * Samples process.memoryUsage.rss() every `intervalMs`. A timer cannot fire while a
 * synchronous loop runs, so loops also call `tick()` (cheap: one clock read) which
 * samples when the interval has passed. The kernel's own high-water mark is reported
 * alongside as the authoritative peak.
 */
export class RssSampler {
  private max = 0;
  private anonMax = 0;
  private n = 0;
  private last = 0;
  private timer: NodeJS.Timeout | undefined;
  constructor(private readonly intervalMs = 50) {}

  start(): this {
    this.sample();
    this.timer = setInterval(() => this.sample(), this.intervalMs);
    this.timer.unref();
    return this;
  }

  sample(): void {
    this.last = performance.now();
    const r = process.memoryUsage.rss();
    if (r > this.max) this.max = r;
    const a = rssAnon();
    if (a > this.anonMax) this.anonMax = a;
    this.n++;
  }

  tick(): void {
    if (performance.now() - this.last >= this.intervalMs) this.sample();
  }

  stop(): RssReport {
    this.sample();
    if (this.timer) clearInterval(this.timer);
    return { sampledMax: this.max, sampledAnonMax: this.anonMax, kernelMax: process.resourceUsage().maxRSS * 1024, samples: this.n };
  }
}

// ------------------------------------------------------------------ child processes

const RESULT_TAG = '@@bench-result ';

/** In a child: hands a JSON result to the parent (runChild). */
export function emitResult(value: unknown): void {
  process.stdout.write(`${RESULT_TAG}${JSON.stringify(value)}\n`);
}

/**
 * Runs `node script args…` and returns what it passed to emitResult(). Its other
 * stdout and its stderr are forwarded, indented, so progress stays visible.
 */
export function runChild<T>(script: string | URL, args: string[], nodeArgs: string[] = []): Promise<T> {
  const path = typeof script === 'string' ? script : fileURLToPath(script);
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [...nodeArgs, path, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let result: T | undefined;
    let buf = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => {
      buf += d;
      let nl;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        if (line.startsWith(RESULT_TAG)) result = JSON.parse(line.slice(RESULT_TAG.length)) as T;
        else process.stderr.write(`    ${line}\n`);
      }
    });
    child.stderr.setEncoding('utf8').on('data', (d: string) => process.stderr.write(d.replace(/^(?=.)/gm, '    ')));
    child.on('error', reject);
    child.on('close', (code, signal) => {
      if (code === 0 && result !== undefined) resolve(result);
      else reject(new Error(`${path} ${args.join(' ')} exited with ${signal ?? code}${result === undefined ? ' without a result' : ''}`));
    });
  });
}

/** Progress to stderr (kept out of the pasteable tables on stdout). */
export function progress(msg: string): void {
  process.stderr.write(`  · ${msg}\n`);
}

// ------------------------------------------------------------------ temp dirs

export function tempDir(prefix: string): string {
  return mkdtempSync(join(tmpdir(), `tidepool-bench-${prefix}-`));
}

export function removeDir(dir: string): void {
  rmSync(dir, { recursive: true, force: true });
}

// ------------------------------------------------------------------ data

/** `key:00001234` — zero padded so string order is numeric order. */
export function keyOf(i: number): string {
  return 'key:' + String(i).padStart(8, '0');
}

const FILLER = 'lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor incididunt ut labore';

/** A ~100-byte ASCII string, distinct per i, JSON-like (compresses like real records do). */
export function valueOf(i: number): string {
  const h = (Math.imul(i, 2654435761) >>> 0).toString(16).padStart(8, '0');
  const head = `{"user":${i % 100_003},"session":"${h}","status":"active","note":"`;
  return head + FILLER.slice(0, 98 - head.length) + '"}';
}

/** A small object value. */
export function objectOf(i: number): { id: number; name: string; score: number } {
  return { id: i, name: `name-${i % 100_003}`, score: (i % 1000) / 8 };
}

/** A deterministic permutation of 0..n-1 (for random-order access). */
export function permutation(n: number, seed = 0x9e3779b9): Uint32Array {
  const p = new Uint32Array(n);
  for (let i = 0; i < n; i++) p[i] = i;
  let s = seed >>> 0;
  for (let i = n - 1; i > 0; i--) {
    s ^= s << 13; s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5; s >>>= 0;
    const j = s % (i + 1);
    const t = p[i]!;
    p[i] = p[j]!;
    p[j] = t;
  }
  return p;
}

/** `count` deterministic pseudo-random indices in 0..n-1 (with repeats). */
export function randomIndices(count: number, n: number, seed = 0x2545f491): Uint32Array {
  const out = new Uint32Array(count);
  let s = seed >>> 0;
  for (let i = 0; i < count; i++) {
    s ^= s << 13; s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5; s >>>= 0;
    out[i] = s % n;
  }
  return out;
}

// ------------------------------------------------------------------ formatting

export function fmtInt(x: number): string {
  return Math.round(x).toLocaleString('en-US');
}

export function fmtRate(x: number): string {
  return x >= 100 ? fmtInt(x) : x.toFixed(1);
}

export function fmtRatio(x: number): string {
  return Number.isFinite(x) ? `${x >= 10 ? x.toFixed(1) : x.toFixed(2)}×` : '—';
}

export function fmtMB(bytes: number): string {
  return `${(bytes / 2 ** 20).toFixed(1)} MiB`;
}

export function fmtMs(ms: number): string {
  return ms >= 10_000 ? `${(ms / 1000).toFixed(1)} s` : `${ms.toFixed(ms >= 100 ? 0 : 1)} ms`;
}

/** A distribution as the run summary reports it (summary.checkpoints.durationMs, …). */
export interface Quantiles {
  count?: number;
  p50: number;
  p99: number;
  max: number;
}

/** `p50 / p99 / max (n=…)`, or — when there is nothing. */
export function fmtQuantiles(x?: Quantiles): string {
  return x && x.count !== 0 ? `${fmtMs(x.p50)} / ${fmtMs(x.p99)} / ${fmtMs(x.max)}${x.count !== undefined ? ` (n=${x.count})` : ''}` : '—';
}

/** A markdown table with padded columns (still valid markdown). */
export function table(headers: string[], rows: (string | number)[][]): string {
  const cells = [headers, ...rows.map((r) => r.map(String))];
  const width = headers.map((_, c) => Math.max(3, ...cells.map((r) => (r[c] ?? '').length)));
  const right = headers.map((_, c) => rows.length > 0 && rows.every((r) => /^[-+0-9.,×% —<>≥≤]*( ms| s| MiB| MB\/s)?$/.test(String(r[c] ?? ''))));
  const line = (r: string[]) => '| ' + r.map((s, c) => (right[c] ? s.padStart(width[c]!) : s.padEnd(width[c]!))).join(' | ') + ' |';
  const sep = '| ' + width.map((w, c) => (right[c] ? '-'.repeat(w - 1) + ':' : '-'.repeat(w))).join(' | ') + ' |';
  return [line(cells[0]!), sep, ...cells.slice(1).map(line)].join('\n');
}

/** "met (2.31× ≥ 2×)" / "missed: 1.20× < 2× (needs +67%)". */
export function verdict(actual: number, target: number, unit = '×', lowerIsBetter = false): string {
  const fmt = (x: number) => (unit === '×' ? fmtRatio(x) : `${x.toFixed(1)}${unit}`);
  if (lowerIsBetter) {
    if (actual <= target) return `**met** (${fmt(actual)} ≤ ${fmt(target)}, ${((1 - actual / target) * 100).toFixed(0)}% headroom)`;
    return `**missed** (${fmt(actual)} > ${fmt(target)}, ${((actual / target - 1) * 100).toFixed(0)}% over)`;
  }
  if (actual >= target) return `**met** (${fmt(actual)} ≥ ${fmt(target)}, ${((actual / target - 1) * 100).toFixed(0)}% above)`;
  return `**missed** (${fmt(actual)} < ${fmt(target)}, ${((1 - actual / target) * 100).toFixed(0)}% short; needs ${fmtRatio(target / actual)} faster)`;
}
