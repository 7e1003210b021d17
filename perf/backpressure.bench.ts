// Checkpoints under full backpressure: a slow keyed operator whose input rings stay
// full (perf/flows/slow-consumer.ts), checkpoint.intervalMs 1000, with buffer debloating
// (checkpoint.alignmentTargetMs, default 50) against without (0: rings fill to their
// size). Same flow, same run, sides alternating. Targets (issue 10): checkpoint duration
// p99 ≤ 1 s, alignment p99 ≤ 100 ms; the records/s of the two sides show what the
// limit costs.
//
//   npm run build && node dist/perf/backpressure.bench.js [flags]
//
//   --n 24000         records per run
//   --work-us 400     CPU per record in the slow operator (µs)
//   --targets 50,0    checkpoint.alignmentTargetMs per side
//   --reps 2          runs per side, the fastest kept
//
// Layout: source ×2 → enrich ×2 (every enrich instance aligns barriers on 2 inputs),
// lmdb state in a fresh temporary directory, every run in a child process.
import { fileURLToPath } from 'node:url';
import { run, type RunSummary } from '../src/index.js';
import { emitResult, fmtInt, fmtMs, fmtQuantiles, machineLine, parseFlags, progress, removeDir, runChild, table, tempDir, verdict, type Quantiles } from './bench-util.js';

const flags = parseFlags(
  process.argv.slice(2),
  { n: 24_000, 'work-us': 400, targets: '50,0', reps: 2, quick: false, child: false, target: 0 },
  { n: 6000, reps: 1 },
);

interface Stats { completed: number; aborted: number; durationMs?: Quantiles; pauseMs?: Quantiles; alignMs?: Quantiles }
interface ChildResult { wallMs: number; records: number; checkpoints?: Stats }

async function child(): Promise<ChildResult> {
  process.env.TIDEPOOL_BENCH_N = String(flags.n);
  process.env.TIDEPOOL_BENCH_KEYS = '1000';
  process.env.TIDEPOOL_BENCH_WORK_US = String(flags['work-us']);
  const modulePath = fileURLToPath(new URL('./flows/slow-consumer.js', import.meta.url));
  const state = tempDir('backpressure');
  try {
    const t0 = performance.now();
    const summary: RunSummary = await run(modulePath, {
      state,
      overrides: { parallelism: 2, checkpoint: { intervalMs: 1000, alignmentTargetMs: flags.target } },
    });
    const wallMs = performance.now() - t0;
    const out = summary.operators.at(-1)!.recordsOut;
    if (summary.recordsIn !== flags.n || out !== flags.n) throw new Error(`run saw ${summary.recordsIn} in, ${out} at the sink (expected ${flags.n})`);
    return { wallMs, records: flags.n, checkpoints: summary.checkpoints as Stats | undefined };
  } finally {
    removeDir(state);
  }
}

const q = fmtQuantiles;

async function main(): Promise<void> {
  if (flags.child) {
    emitResult(await child());
    process.exit(0); // do not wait for idle workers' timers
  }
  const targets = flags.targets.split(',').map((s) => Number(s.trim()));
  console.log(`## tidepool checkpoints under full backpressure: alignmentTargetMs ${targets.join(' vs ')}${flags.quick ? ' (--quick sizes)' : ''}\n`);
  console.log(machineLine());
  const runs = new Map<number, ChildResult[]>(targets.map((x) => [x, []]));
  for (let r = 0; r < flags.reps; r++) {
    for (const target of r % 2 === 0 ? targets : [...targets].reverse()) {
      progress(`alignmentTargetMs ${target}, run ${r + 1} of ${flags.reps}`);
      runs.get(target)!.push(await runChild<ChildResult>(fileURLToPath(import.meta.url), ['--child', '--n', String(flags.n), '--work-us', String(flags['work-us']), '--target', String(target)]));
    }
  }
  const best = (xs: ChildResult[]) => xs.reduce((a, b) => (b.wallMs < a.wallMs ? b : a));
  console.log(`\n### ${fmtInt(flags.n)} records of ~500 B, ${flags['work-us']} µs of CPU each in enrich, source ×2 → enrich ×2, checkpoint.intervalMs 1000 (best of ${flags.reps})\n`);
  console.log(table(
    ['checkpoint.alignmentTargetMs', 'records/s', 'all runs (records/s)', 'completed', 'duration p50/p99/max', 'align p50/p99/max', 'pause p50/p99/max'],
    targets.map((target) => {
      const xs = runs.get(target)!;
      const b = best(xs);
      const c = b.checkpoints;
      return [target === 0 ? '0 (off)' : fmtInt(target), fmtInt((b.records * 1000) / b.wallMs), xs.map((x) => fmtInt((x.records * 1000) / x.wallMs)).join(' / '),
        c ? fmtInt(c.completed) : '—', q(c?.durationMs), q(c?.alignMs), q(c?.pauseMs)];
    }),
  ));
  const on = targets.find((x) => x > 0);
  if (on !== undefined) {
    const c = best(runs.get(on)!).checkpoints;
    console.log('\n### Targets\n');
    console.log(table(['target', 'measured', 'verdict'], [
      [`checkpoint duration p99 ≤ 1000 ms (alignmentTargetMs ${on})`, c?.durationMs ? fmtMs(c.durationMs.p99) : '—', c?.durationMs ? verdict(c.durationMs.p99, 1000, ' ms', true) : '—'],
      [`alignment p99 ≤ 100 ms (alignmentTargetMs ${on})`, c?.alignMs ? fmtMs(c.alignMs.p99) : '—', c?.alignMs ? verdict(c.alignMs.p99, 100, ' ms', true) : '—'],
    ]));
  }
}

await main();
