// Sliding windows: does a record cost more when size/slide grows? The same stream is
// counted in sliding windows of slide 1 s and size 5 s, 60 s and 3600 s (ratio 5, 60,
// 3600), each a whole `tidepool` run (perf/flows/sliding-count.ts: generator with event
// time → keyBy → sliding count → discard sink, checkpoints every second), and the same
// counts computed by a plain single-threaded loop (a running sum per key over an
// array of pane counts) that emits the same window rows.
//
//   npm run build && node dist/perf/sliding.bench.js [--n 2M] [--keys 5] [--step-ms 18] [--ratios 5,60,3600] [--quick]
//
// Defaults: 2,000,000 records, 5 keys, 18 ms of event time apart (11 records per key
// per slide), spanning 36,000 s — ten times the largest window, so the rows a run
// emits (one per key and slide with data, plus the trailing windows) differ by ~10%
// between ratios, not by the ratio. The windows use panes (the aggregate has `merge`):
// a record costs one pane update and a firing merges O(slide/pane) panes amortized.
// The target: CPU per record flat across ratios (within noise).
import { fileURLToPath } from 'node:url';
import { run } from '../src/index.js';
import { slidingRecord } from './flows/records.js';
import { emitResult, fmtInt, fmtMs, fmtRatio, machineLine, parseFlags, progress, removeDir, runChild, table, tempDir } from './bench-util.js';

const flags = parseFlags(
  process.argv.slice(2),
  { n: 2_000_000, keys: 5, 'step-ms': 18, ratios: '5,60,3600', reps: 1, quick: false, child: '', ratio: 0 },
  { n: 300_000 },
);
const SLIDE = 1000;
const BATCH = 512;

interface ChildResult { wallMs: number; cpuMs: number; rows: number }

function setEnv(ratio: number): void {
  process.env.TIDEPOOL_BENCH_N = String(flags.n);
  process.env.TIDEPOOL_BENCH_KEYS = String(flags.keys);
  process.env.TIDEPOOL_BENCH_STEP_MS = String(flags['step-ms']);
  process.env.TIDEPOOL_BENCH_SLIDE_MS = String(SLIDE);
  process.env.TIDEPOOL_BENCH_RATIO = String(ratio);
}

async function runFlow(): Promise<ChildResult> {
  setEnv(flags.ratio);
  const state = tempDir('tidepool-sliding-bench-');
  try {
    const cpu0 = process.cpuUsage();
    const t0 = performance.now();
    const summary = await run(fileURLToPath(new URL('./flows/sliding-count.js', import.meta.url)), {
      state,
      overrides: { parallelism: 1, checkpoint: { intervalMs: 1000 } },
    });
    const wallMs = performance.now() - t0;
    const cpu = process.cpuUsage(cpu0);
    if (summary.recordsIn !== flags.n) throw new Error(`run read ${summary.recordsIn} records, expected ${flags.n}`);
    return { wallMs, cpuMs: (cpu.user + cpu.system) / 1000, rows: summary.operators.at(-1)!.recordsOut };
  } finally {
    removeDir(state);
  }
}

/**
 * The plain loop: pane counts per key in a ring of `ratio` slots and a running sum; a
 * window [e − size, e) is emitted when the stream passes e and it holds a record.
 */
function runLoop(): ChildResult {
  const ratio = flags.ratio;
  const size = ratio * SLIDE;
  const make = slidingRecord(flags.keys, flags['step-ms']);
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  const keys = new Map<number, { panes: Float64Array; sum: number; end: number }>();
  let out: unknown[] = [];
  let rows = 0;
  const emit = (key: number, end: number, value: number) => {
    out.push({ key, window: { start: end - size, end }, value });
    if (out.length >= BATCH) {
      rows += out.length;
      out = [];
    }
  };
  /** Fire key's windows ending at or before `upTo`, sliding its sum pane by pane. */
  const advance = (key: number, s: { panes: Float64Array; sum: number; end: number }, upTo: number) => {
    while (s.end <= upTo && s.sum > 0) {
      emit(key, s.end, s.sum);
      const leaving = ((((s.end - size) / SLIDE) % ratio) + ratio) % ratio; // the pane [end − size, end − size + slide) leaves (before 0 for the first windows)
      s.sum -= s.panes[leaving]!;
      s.panes[leaving] = 0;
      s.end += SLIDE;
    }
    if (s.sum === 0 && s.end <= upTo) s.end = upTo - (upTo % SLIDE) + SLIDE;
  };
  let lastWatermark = -Infinity;
  for (let i = 0; i < flags.n; i++) {
    const r = make(i);
    if (r.t - (r.t % SLIDE) > lastWatermark) {
      // the watermark (= event time, in order) crossed a slide boundary: windows ending there fire
      lastWatermark = r.t - (r.t % SLIDE);
      for (const [k, s] of keys) advance(k, s, r.t);
    }
    let s = keys.get(r.k);
    if (s === undefined) keys.set(r.k, (s = { panes: new Float64Array(ratio), sum: 0, end: r.t - (r.t % SLIDE) + SLIDE }));
    else if (s.sum === 0) s.end = r.t - (r.t % SLIDE) + SLIDE;
    s.panes[(r.t - (r.t % SLIDE)) / SLIDE % ratio]! += 1;
    s.sum += 1;
  }
  for (const [k, s] of keys) advance(k, s, Infinity);
  rows += out.length;
  const wallMs = performance.now() - t0;
  const cpu = process.cpuUsage(cpu0);
  return { wallMs, cpuMs: (cpu.user + cpu.system) / 1000, rows };
}

async function measure(kind: 'flow' | 'loop', ratio: number): Promise<ChildResult> {
  let best: ChildResult | undefined;
  for (let r = 0; r < flags.reps; r++) {
    const res = await runChild<ChildResult>(new URL(import.meta.url), [
      '--child', kind, '--ratio', String(ratio), '--n', String(flags.n), '--keys', String(flags.keys), '--step-ms', String(flags['step-ms']),
    ]);
    if (best === undefined || res.cpuMs < best.cpuMs) best = res;
  }
  return best!;
}

async function main(): Promise<void> {
  if (flags.child === 'flow') return emitResult(await runFlow());
  if (flags.child === 'loop') return emitResult(runLoop());
  console.log(machineLine());
  console.log(`Sliding-window count: ${fmtInt(flags.n)} records, ${flags.keys} keys, ${flags['step-ms']} ms apart, slide ${SLIDE} ms, parallelism 1, checkpoint every 1 s, discard sink\n`);
  const ratios = flags.ratios.split(',').map((s) => Number(s.trim()));
  const rows: { ratio: number; tp: ChildResult; loop: ChildResult }[] = [];
  for (const ratio of ratios) {
    progress(`ratio ${ratio}: tidepool`);
    const tp = await measure('flow', ratio);
    progress(`ratio ${ratio}: plain loop`);
    const loop = await measure('loop', ratio);
    if (tp.rows !== loop.rows) throw new Error(`ratio ${ratio}: tidepool emitted ${tp.rows} windows, the loop ${loop.rows}`);
    rows.push({ ratio, tp, loop });
  }
  const us = (r: ChildResult) => (r.cpuMs * 1000) / flags.n;
  const first = rows[0]!;
  console.log(table(
    ['size/slide', 'windows out', 'wall', 'records/CPU-s', 'CPU µs/record', 'vs first ratio', 'loop µs/record', 'tidepool/loop (CPU)'],
    rows.map((r) => [
      r.ratio, fmtInt(r.tp.rows), fmtMs(r.tp.wallMs), fmtInt((flags.n * 1000) / r.tp.cpuMs), us(r.tp).toFixed(2), fmtRatio(us(r.tp) / us(first.tp)),
      us(r.loop).toFixed(3), fmtRatio(r.loop.cpuMs / r.tp.cpuMs),
    ]),
  ));
  const worst = Math.max(...rows.map((r) => us(r.tp) / us(first.tp)));
  console.log(`\nCPU per record at the largest ratio vs the smallest: worst ${fmtRatio(worst)} (target: flat, ≤ 1.2× allowing for noise and the extra trailing windows)`);
}

await main();
