// Nexmark: every query of examples/nexmark/ as a whole `tidepool` run — generator,
// runtime, checkpoints every second, the JSON-lines file sink — against a plain
// single-threaded JavaScript reference of the same query (perf/nexmark/reference.ts)
// that generates the same events and writes the same rows as JSON lines.
//
//   npm run build && node dist/perf/nexmark.bench.js [flags]
//
//   --events 1M        events per run
//   --slow-rate 100    the second event-time rate (events/s of event time): many windows close
//   --queries q0,…     which queries (default: all of examples/nexmark/)
//   --p 1              parallelism of the tidepool runs
//   --reps 1           runs per configuration (the fastest is kept)
//   --alignment-target-ms N   checkpoint.alignmentTargetMs of the tidepool runs (default: the config's)
//   --quick            200k events, q0,q2,q5 only
//
// Two rates: "default" is the suite's 10,000 events/s of event time (1M events span
// 100 s: a handful of 10 s windows), "slow" spaces the same number of events further
// apart so thousands of windows open and close. Both are unpaced (as fast as the
// source is pulled), as Flink's published figures are.
//
// events/s is events ÷ wall time of the whole run() (module load, workers, I/O worker,
// checkpoints, final drain); events/CPU-s divides by the CPU time of every thread of the
// child process. The reference runs in its own child process, one thread, so its events/s
// is also its events per CPU-second. The published per-core figures (Flink: nexmark
// GUIDE_V1; Feldera) are printed beside ours; the floor is Flink's per core, per CPU-second.
import { closeSync, openSync, readFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { crc32 } from 'node:zlib';
import { run } from '../src/index.js';
import { nexmarkEvents, NEXMARK_DEFAULT_RATE, type NexmarkEvent } from '../src/connectors/nexmark-events.js';
import { queries, Q12_SIZE_MS } from './nexmark/reference.js';
import { emitResult, fmtInt, fmtMs, fmtRatio, machineLine, parseFlags, progress, removeDir, runChild, table, tempDir } from './bench-util.js';

const ALL = ['q0', 'q1', 'q2', 'q3', 'q4', 'q5', 'q7', 'q8', 'q11', 'q12'] as const;
type Query = (typeof ALL)[number];

/** Published events/s per core: Flink (nexmark GUIDE_V1), Feldera. */
const FLINK: Record<Query, number> = { q0: 155e3, q1: 158e3, q2: 175e3, q3: 152e3, q4: 34e3, q5: 22e3, q7: 12e3, q8: 146e3, q11: 40e3, q12: 76e3 };
const FELDERA: Partial<Record<Query, number>> = { q0: 436e3, q1: 412e3, q2: 422e3, q3: 413e3, q4: 265e3, q5: 412e3, q7: 196e3, q8: 415e3 };

const flags = parseFlags(
  process.argv.slice(2),
  {
    events: 1_000_000, 'slow-rate': 100, queries: ALL.join(','), p: 1, reps: 1, quick: false, 'alignment-target-ms': '',
    // internal: one measured run in a child process
    child: '', query: '', rate: 0, out: '',
  },
  { events: 200_000, queries: 'q0,q2,q5' },
);

interface ChildResult { wallMs: number; cpuMs: number; events: number }
interface OutputCheck { lines: number; digest: number; bids: number }

// ====================================================================== children

const examplePath = (q: Query) => fileURLToPath(new URL(`../../examples/nexmark/${q}.ts`, import.meta.url));

/** One tidepool run() of the query's example flow, checkpoints every second. */
async function runTidepool(): Promise<ChildResult> {
  process.env.NEXMARK_EVENTS = String(flags.events);
  process.env.NEXMARK_EVENT_RATE = String(flags.rate);
  process.env.NEXMARK_OUT = flags.out;
  const state = tempDir('tidepool-nexmark-bench-');
  try {
    const cpu0 = process.cpuUsage();
    const t0 = performance.now();
    const summary = await run(examplePath(flags.query as Query), {
      state,
      overrides: {
        parallelism: flags.p,
        checkpoint: { intervalMs: 1000, ...(flags['alignment-target-ms'] !== '' ? { alignmentTargetMs: Number(flags['alignment-target-ms']) } : {}) },
      },
    });
    const wallMs = performance.now() - t0;
    const cpu = process.cpuUsage(cpu0);
    if (summary.recordsIn !== flags.events) throw new Error(`run read ${summary.recordsIn} events, expected ${flags.events}`);
    return { wallMs, cpuMs: (cpu.user + cpu.system) / 1000, events: flags.events };
  } finally {
    removeDir(state);
  }
}

/** Buffered JSON-lines writer: what the file sink writes, without the runtime. */
class LineWriter {
  private readonly fd: number;
  private chunk: string[] = [];
  constructor(path: string) {
    this.fd = openSync(path, 'w');
  }
  write(row: unknown): void {
    this.chunk.push(JSON.stringify(row));
    if (this.chunk.length >= 4096) this.flush();
  }
  flush(): void {
    if (this.chunk.length > 0) writeSync(this.fd, this.chunk.join('\n') + '\n');
    this.chunk = [];
  }
  close(): void {
    this.flush();
    closeSync(this.fd);
  }
}

/** q12's reference with its own clock: per bidder, a row when its 10 s processing-time window changes, and at the end. */
function q12Rows(events: Iterable<NexmarkEvent>, out: LineWriter): void {
  const open = new Map<number, { start: number; count: number }>();
  const row = (bidder: number, w: { start: number; count: number }) => ({ bidder, bid_count: w.count, starttime: w.start, endtime: w.start + Q12_SIZE_MS });
  for (const e of events) {
    if (e.type !== 'bid') continue;
    const now = Date.now();
    const start = now - (now % Q12_SIZE_MS);
    const w = open.get(e.bidder);
    if (w !== undefined && w.start === start) w.count++;
    else {
      if (w !== undefined) out.write(row(e.bidder, w));
      open.set(e.bidder, { start, count: 1 });
    }
  }
  for (const [bidder, w] of open) out.write(row(bidder, w));
}

/** The plain reference: generate the events, run the query, write its rows as JSON lines. */
function runReference(): ChildResult {
  const q = flags.query as Query;
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  const events = nexmarkEvents({ events: flags.events, seed: 0, rate: flags.rate });
  const out = new LineWriter(flags.out);
  if (q === 'q12') q12Rows(events, out);
  else for (const row of queries[q](events) as Iterable<unknown>) out.write(row);
  out.close();
  const wallMs = performance.now() - t0;
  const cpu = process.cpuUsage(cpu0);
  return { wallMs, cpuMs: (cpu.user + cpu.system) / 1000, events: flags.events };
}

// ====================================================================== parent

/** Line count and an order-independent digest (sum of CRC-32s) of a JSON-lines file; for q12, the bid total. */
function checkOutput(path: string, q: Query): OutputCheck {
  const text = readFileSync(path, 'utf8');
  let lines = 0;
  let digest = 0;
  let bids = 0;
  for (const line of text.split('\n')) {
    if (line === '') continue;
    lines++;
    if (q === 'q12') bids += (JSON.parse(line) as { bid_count: number }).bid_count;
    else digest = (digest + crc32(line)) % 2 ** 32;
  }
  return { lines, digest, bids };
}

async function measure(kind: 'tidepool' | 'reference', q: Query, rate: number, out: string): Promise<ChildResult> {
  let best: ChildResult | undefined;
  for (let r = 0; r < flags.reps; r++) {
    const res = await runChild<ChildResult>(new URL(import.meta.url), [
      '--child', kind, '--query', q, '--rate', String(rate), '--events', String(flags.events), '--p', String(flags.p), ...(flags['alignment-target-ms'] !== '' ? ['--alignment-target-ms', flags['alignment-target-ms']] : []), '--out', out,
    ]);
    if (best === undefined || res.cpuMs < best.cpuMs) best = res;
  }
  return best!;
}

interface Row { q: Query; rate: string; tp: ChildResult; ref: ChildResult; lines: number }

async function main(): Promise<void> {
  if (flags.child === 'tidepool') return emitResult(await runTidepool());
  if (flags.child === 'reference') return emitResult(runReference());

  const chosen = flags.queries.split(',').map((s) => s.trim()) as Query[];
  for (const q of chosen) if (!ALL.includes(q)) throw new Error(`--queries: unknown query ${q} (known: ${ALL.join(', ')})`);
  console.log(machineLine());
  console.log(`Nexmark: ${fmtInt(flags.events)} events per run, parallelism ${flags.p}, checkpoint every 1 s, file sink; reference: plain JS, one thread, same events, same JSON lines\n`);
  const dir = tempDir('tidepool-nexmark-out-');
  const rows: Row[] = [];
  try {
    for (const q of chosen) {
      for (const [label, rate] of [['default', NEXMARK_DEFAULT_RATE], ['slow', flags['slow-rate']]] as const) {
        const tpOut = join(dir, `${q}-${label}-tidepool.jsonl`);
        const refOut = join(dir, `${q}-${label}-reference.jsonl`);
        progress(`${q} ${label} rate: tidepool`);
        const tp = await measure('tidepool', q, rate, tpOut);
        progress(`${q} ${label} rate: reference`);
        const ref = await measure('reference', q, rate, refOut);
        const a = checkOutput(tpOut, q);
        const b = checkOutput(refOut, q);
        const same = q === 'q12' ? a.bids === b.bids : a.lines === b.lines && a.digest === b.digest;
        if (!same) throw new Error(`${q} ${label}: tidepool wrote ${JSON.stringify(a)}, the reference ${JSON.stringify(b)}`);
        rows.push({ q, rate: `${label} (${fmtInt(rate)}/s)`, tp, ref, lines: a.lines });
      }
    }
  } finally {
    removeDir(dir);
  }
  const perCpu = (r: ChildResult) => (r.events * 1000) / r.cpuMs;
  const perWall = (r: ChildResult) => (r.events * 1000) / r.wallMs;
  console.log(table(
    ['query', 'event-time rate', 'rows out', 'wall', 'events/s', 'events/CPU-s', 'reference events/s', 'tidepool/reference (CPU)', 'Flink /core', 'vs Flink', 'Feldera /core'],
    rows.map((r) => [
      r.q, r.rate, fmtInt(r.lines), fmtMs(r.tp.wallMs), fmtInt(perWall(r.tp)), fmtInt(perCpu(r.tp)), fmtInt(perCpu(r.ref)),
      fmtRatio(perCpu(r.tp) / perCpu(r.ref)), fmtInt(FLINK[r.q]), fmtRatio(perCpu(r.tp) / FLINK[r.q]), FELDERA[r.q] === undefined ? '—' : fmtInt(FELDERA[r.q]!),
    ]),
  ));
  const below = rows.filter((r) => perCpu(r.tp) < FLINK[r.q]);
  console.log(below.length === 0
    ? '\nFloor met: every query at or above Flink\'s per-core figure per CPU-second.'
    : `\nBelow Flink's per-core figure per CPU-second: ${below.map((r) => `${r.q} ${r.rate.split(' ')[0]} (${fmtRatio(perCpu(r.tp) / FLINK[r.q])})`).join(', ')}`);
}

await main();
