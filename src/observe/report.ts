// What a run tells its user: a live progress line (TTY) and the summary written by
// --summary — per-operator counts and throughput, backpressure, state pages and the
// cache hit rate.
import type { RemoteSummary } from '../runtime/remote.js';
import type { PhysicalPlan } from '../flow/plan.js';
import type { TidepoolConfig } from '../config/schema.js';
import type { TaskMetrics } from '../runtime/task.js';
import type { CheckpointStats } from '../runtime/checkpoints.js';

export interface OperatorSummary {
  task: string;
  operators: string[];
  parallelism: number;
  recordsIn: number;
  recordsOut: number;
  recordsInPerSec: number;
  /** Time producers of this task spent parked on full rings, summed over subtasks. */
  backpressureMs: number;
  statePages: number;
  stateSpilledPages: number;
  cacheHitRate: number | null;
  /** The task's event-time watermark at the end (min over subtasks; null: none; 'Infinity' after end of input). */
  watermark: number | 'Infinity' | null;
  /** Records windows or joins dropped as too late (they went to `.late()`). */
  lateRecords: number;
  /** Timers registered at the end (event and processing time). */
  pendingTimers: number;
  /** Entries of window state (panes, windows or sessions) at the end. */
  windowStateEntries: number;
  /** Entries of join state at the end, both sides (a window join: one per record and window). */
  joinStateEntries: number;
  /** Records that made user code throw: dropped (errors.onRecord 'skip') and dead-lettered. */
  skippedRecords: number;
  deadLetters: number;
}

export interface RunSummary {
  flow: string;
  wallMs: number;
  parallelism: number;
  execution: 'workers' | 'inline';
  recordsIn: number;
  recordsOut: number;
  operators: OperatorSummary[];
  /** Checkpoints completed and aborted in the last attempt, longest snapshot pause. */
  checkpoints?: CheckpointStats;
  /** With state.remote: uploads of this run, and the remote checkpoint it restored from (if the local state was replaced). */
  remote?: RemoteSummary;
  /** The checkpoint this run restored, if any. */
  restoredFrom?: number;
  /** The state directory held a final checkpoint: the run had nothing left to do. */
  alreadyComplete?: boolean;
  /** In-process restarts after failures. */
  restarts?: number;
}

function aggregate(plan: PhysicalPlan, metrics: TaskMetrics[], wallMs: number): OperatorSummary[] {
  return plan.tasks.map((t) => {
    const ms = metrics.filter((m) => m.task === t.index);
    const sum = (f: (m: TaskMetrics) => number) => ms.reduce((a, m) => a + f(m), 0);
    const hits = sum((m) => m.cacheHits);
    const misses = sum((m) => m.cacheMisses);
    const recordsIn = sum((m) => m.recordsIn);
    return {
      task: t.label,
      operators: t.operators,
      parallelism: t.parallelism,
      recordsIn,
      recordsOut: sum((m) => m.recordsOut),
      recordsInPerSec: Math.round(recordsIn / Math.max(wallMs / 1000, 1e-3)),
      backpressureMs: Math.round(sum((m) => m.blockedMs)),
      statePages: sum((m) => m.statePages),
      stateSpilledPages: sum((m) => m.stateSpilled),
      cacheHitRate: hits + misses ? Number((hits / (hits + misses)).toFixed(4)) : null,
      watermark: watermarkOf(ms),
      lateRecords: sum((m) => m.lateRecords ?? 0),
      pendingTimers: sum((m) => m.pendingTimers ?? 0),
      windowStateEntries: sum((m) => m.windowState ?? 0),
      joinStateEntries: sum((m) => m.joinState ?? 0),
      skippedRecords: sum((m) => m.skippedRecords ?? 0),
      deadLetters: sum((m) => m.deadLetters ?? 0),
    };
  });
}

function watermarkOf(ms: TaskMetrics[]): number | 'Infinity' | null {
  if (!ms.length || ms.some((m) => m.watermark === null || m.watermark === undefined)) return null;
  const w = Math.min(...ms.map((m) => m.watermark!));
  return w === Infinity ? 'Infinity' : w;
}

export function buildSummary(flow: string, plan: PhysicalPlan, metrics: TaskMetrics[], wallMs: number, config: TidepoolConfig): RunSummary {
  const operators = aggregate(plan, metrics, wallMs);
  return {
    flow,
    wallMs: Math.round(wallMs),
    parallelism: config.parallelism,
    execution: config.execution,
    recordsIn: operators[0]?.recordsIn ?? 0,
    recordsOut: operators[operators.length - 1]?.recordsOut ?? 0,
    operators,
  };
}

const fmt = (n: number) => (n >= 1e6 ? `${(n / 1e6).toFixed(1)}M` : n >= 1e3 ? `${(n / 1e3).toFixed(1)}k` : String(Math.round(n)));

/** One line redrawn in place on stderr: rates in and out, backpressure per task, state. */
export class ProgressLine {
  private lastIn = 0;
  private lastOut = 0;
  private lastT = 0;
  private lastBlocked = new Map<number, number>();

  constructor(private readonly plan: PhysicalPlan) {}

  draw(metrics: TaskMetrics[], elapsedMs: number): void {
    const ops = aggregate(this.plan, metrics, elapsedMs);
    const recIn = ops[0]?.recordsIn ?? 0;
    const recOut = ops[ops.length - 1]?.recordsOut ?? 0;
    const dt = Math.max((elapsedMs - this.lastT) / 1000, 1e-3);
    const inRate = (recIn - this.lastIn) / dt;
    const outRate = (recOut - this.lastOut) / dt;
    const bp = ops
      .map((o, i) => {
        const before = this.lastBlocked.get(i) ?? 0;
        this.lastBlocked.set(i, o.backpressureMs);
        const pct = Math.min(100, ((o.backpressureMs - before) / (dt * 1000 * o.parallelism)) * 100);
        return `${o.task} ${pct.toFixed(0)}%`;
      })
      .join(' ');
    const pages = ops.reduce((a, o) => a + o.statePages, 0);
    this.lastIn = recIn;
    this.lastOut = recOut;
    this.lastT = elapsedMs;
    const late = ops.reduce((a, o) => a + o.lateRecords, 0);
    const timers = ops.reduce((a, o) => a + o.pendingTimers, 0);
    const windowState = ops.reduce((a, o) => a + o.windowStateEntries, 0);
    const joinState = ops.reduce((a, o) => a + o.joinStateEntries, 0);
    // Event time: the watermark lag of the slowest task that has one (a live source's delay).
    const wms = ops.map((o) => o.watermark).filter((w): w is number => typeof w === 'number');
    const lag = wms.length ? ` | watermark lag ${((Date.now() - Math.min(...wms)) / 1000).toFixed(1)}s` : '';
    const time = `${lag}${late ? ` | late ${fmt(late)}` : ''}${timers ? ` | timers ${fmt(timers)}` : ''}${windowState ? ` | windows ${fmt(windowState)}` : ''}${joinState ? ` | joins ${fmt(joinState)}` : ''}`;
    const line = `${(elapsedMs / 1000).toFixed(1)}s in ${fmt(recIn)} (${fmt(inRate)}/s) out ${fmt(recOut)} (${fmt(outRate)}/s) | backpressure ${bp} | state ${pages} pages${time}`;
    // Shorter than the terminal, so it never wraps (\r returns to the start of the last
    // row only). A terminal that reports no width (0, e.g. a pty nobody sized) gets it whole.
    const columns = process.stderr.columns;
    process.stderr.write(`\r\x1b[2K${columns > 0 ? line.slice(0, columns - 1) : line}`);
  }

  clear(): void {
    process.stderr.write('\r\x1b[2K');
  }
}
