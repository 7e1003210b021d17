// The coordinator: plans a flow, wires rings, starts one worker per task instance
// (or runs them all on this thread in inline mode), follows their metrics and ends
// the run when every instance has finished — or on the first failure, which stops
// every worker and surfaces as one error naming operator, subtask and record.
//
// It never touches records: they go worker to worker over SharedArrayBuffer rings.
import { Worker, type TransferListItem } from 'node:worker_threads';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { errors, TidepoolError } from '../errors.js';
import { loadConfig } from '../config/load.js';
import type { TidepoolConfig } from '../config/schema.js';
import { loadFlowModule } from '../flow/module-loader.js';
import { planFlow, describePlan, type PhysicalPlan } from '../flow/plan.js';
import type { Flow } from '../flow/builder.js';
import { createRingBuffer } from '../transport/ring.js';
import { IoClient } from '../storage/io-client.js';
import { TaskRunner, type TaskMetrics, type TaskSetup } from './task.js';
import { createBell } from './channels.js';
import { ProgressLine, buildSummary, type RunSummary } from './report.js';
import { startMetricsServer, type MetricsServer } from './metrics.js';

export interface RunOptions {
  /** State directory (default: a temporary directory removed after the run). */
  state?: string;
  /** JSON config file. */
  config?: string;
  /** `path=value` overrides, as `--set`. */
  set?: string[];
  /** Programmatic config overrides (applied after `set`). */
  overrides?: Record<string, unknown>;
  /** Draw a live progress line on stderr (TTY only). */
  progress?: boolean;
  /** Write the run summary as JSON to this file. */
  summary?: string;
  /** Accepted for forward compatibility; checkpoints arrive with the recovery release. */
  fromCheckpoint?: number;
  verbose?: boolean;
}

export type { RunSummary } from './report.js';

const RING_BYTES = 1 << 20;

interface Instance {
  task: number;
  subtask: number;
  setup: TaskSetup;
  transfer: TransferListItem[];
}

/** Rings per edge, and each instance's inputs and outputs. */
interface Wiring {
  inputs: SharedArrayBuffer[];
  outputs: SharedArrayBuffer[];
  bell: SharedArrayBuffer;
  outputBells: SharedArrayBuffer[];
}

function wire(plan: PhysicalPlan): Map<string, Wiring> {
  const io = new Map<string, Wiring>();
  const at = (t: number, s: number) => {
    const k = `${t}/${s}`;
    let v = io.get(k);
    if (!v) io.set(k, (v = { inputs: [], outputs: [], bell: createBell(), outputBells: [] }));
    return v;
  };
  for (const t of plan.tasks) for (let s = 0; s < t.parallelism; s++) at(t.index, s);
  for (const e of plan.edges) {
    const pa = plan.tasks[e.from]!.parallelism;
    const pb = plan.tasks[e.to]!.parallelism;
    if (e.partitioning === 'forward') {
      for (let i = 0; i < pa; i++) {
        const ring = createRingBuffer(RING_BYTES);
        at(e.from, i).outputs.push(ring);
        at(e.from, i).outputBells.push(at(e.to, i).bell);
        at(e.to, i).inputs.push(ring);
      }
    } else {
      for (let i = 0; i < pa; i++) {
        for (let j = 0; j < pb; j++) {
          const ring = createRingBuffer(RING_BYTES);
          at(e.from, i).outputs.push(ring); // index j: downstream subtask j
          at(e.from, i).outputBells.push(at(e.to, j).bell);
          at(e.to, j).inputs.push(ring);
        }
      }
    }
  }
  return io;
}

export async function run(modulePath: string, options: RunOptions = {}): Promise<RunSummary> {
  const started = performance.now();
  const config = loadConfig({ file: options.config, sets: options.set, overrides: options.overrides });
  const { flow, url } = await loadFlowModule(modulePath);
  for (const op of flow.operators) {
    op.source?.validate?.();
    op.sink?.validate?.();
  }
  const plan = planFlow(flow, { parallelism: config.parallelism, keyGroups: config.keyGroups, chaining: config.chaining, operators: config.operators });
  if (options.verbose) process.stderr.write(`tidepool: plan ${describePlan(plan)}\n`);

  const tempState = options.state === undefined;
  const stateRoot = tempState ? mkdtempSync(join(tmpdir(), 'tidepool-state-')) : resolve(options.state!);
  // Until checkpoints and recovery land, every run starts from empty state: the
  // flow's state directory is recreated, other files in --state are left alone.
  const stateDir = join(stateRoot, flow.name);
  rmSync(stateDir, { recursive: true, force: true });
  mkdirSync(stateDir, { recursive: true });

  for (const t of plan.tasks) {
    for (const name of t.operators) await flow.operator(name)!.sink?.reset?.(t.parallelism);
  }

  const metricsServer = config.metrics.port ? await startMetricsServer(config.metrics.port) : undefined;
  try {
    const instances = await prepareInstances(flow, plan, config, stateDir);
    const exec = config.execution === 'inline' ? runInline(flow, plan, instances) : runWorkers(url, plan, instances);
    const progress = options.progress && process.stderr.isTTY ? new ProgressLine(plan) : undefined;
    const latest = new Map<string, TaskMetrics>();
    const tick = setInterval(() => {
      for (const m of exec.poll()) latest.set(`${m.task}/${m.subtask}`, m);
      progress?.draw([...latest.values()], performance.now() - started);
      metricsServer?.update(flow.name, [...latest.values()]);
    }, 250);
    let final: TaskMetrics[];
    try {
      final = await exec.done;
    } finally {
      clearInterval(tick);
      progress?.clear();
    }
    const summary = buildSummary(flow.name, plan, final, performance.now() - started, config);
    if (options.summary) writeFileSync(options.summary, JSON.stringify(summary, null, 2) + '\n');
    return summary;
  } finally {
    await metricsServer?.close();
    if (tempState) rmSync(stateRoot, { recursive: true, force: true });
  }
}

async function prepareInstances(flow: Flow, plan: PhysicalPlan, config: TidepoolConfig, stateDir: string): Promise<Instance[]> {
  const rings = wire(plan);
  const instances: Instance[] = [];
  for (const t of plan.tasks) {
    for (let s = 0; s < t.parallelism; s++) {
      const { inputs, outputs, bell, outputBells } = rings.get(`${t.index}/${s}`)!;
      const setup: TaskSetup = { taskIndex: t.index, subtask: s, inputs, outputs, bell, outputBells, batchSize: config.batchSize };
      const transfer: TransferListItem[] = [];
      if (t.stateful) {
        const stateId = `${t.operators[0]}#${s}`;
        const st = config.state;
        setup.state = { storage: st.storage, stateId, pageSize: st.pageSize, cachePages: st.cachePages, compression: st.compression };
        if (st.storage !== 'memory') {
          const a = await IoClient.shared().attachRaw({ stateId, dir: stateDir, noSync: st.storage === 'temp', retain: 1, ringBytes: 8 << 20 });
          Object.assign(setup.state, { dir: stateDir, ring: a.ring, port: a.port, lastCommit: a.lastCommit });
          transfer.push(a.port as unknown as TransferListItem);
        }
      }
      instances.push({ task: t.index, subtask: s, setup, transfer });
    }
  }
  void flow;
  return instances;
}

interface Execution {
  done: Promise<TaskMetrics[]>;
  poll(): TaskMetrics[];
}

function runWorkers(url: string, plan: PhysicalPlan, instances: Instance[]): Execution {
  const workerUrl = new URL('../../workers/operator.js', import.meta.url);
  const latest: TaskMetrics[] = [];
  const workers: Worker[] = [];
  const done = new Promise<TaskMetrics[]>((resolveAll, rejectAll) => {
    let remaining = instances.length;
    const final: TaskMetrics[] = [];
    let failed = false;
    const fail = (e: Error) => {
      if (failed) return;
      failed = true;
      for (const w of workers) void w.terminate();
      rejectAll(e);
    };
    for (const inst of instances) {
      const label = `${plan.tasks[inst.task]!.label}#${inst.subtask}`;
      const w = new Worker(workerUrl, { workerData: { url, plan, setup: inst.setup }, transferList: inst.transfer as never });
      workers.push(w);
      let finished = false;
      w.on('message', (m: { type: string; metrics?: TaskMetrics; message?: string; code?: string; stack?: string }) => {
        if (m.type === 'metrics') latest.push(m.metrics!);
        else if (m.type === 'done') {
          finished = true;
          final.push(m.metrics!);
          if (--remaining === 0) resolveAll(final);
        } else if (m.type === 'error') {
          const err = new TidepoolError((m.code as never) ?? 'TIDEPOOL_WORKER', m.message ?? 'worker failed');
          if (m.stack) err.stack = m.stack;
          fail(err);
        }
      });
      w.on('error', (e) => fail(errors.worker(`worker ${label}`, e.message)));
      w.on('exit', (code) => {
        if (!finished && !failed) fail(errors.worker(`worker ${label}`, `exited with code ${code} before finishing`));
      });
    }
  });
  return {
    done: done.finally(() => Promise.all(workers.map((w) => w.terminate()))),
    poll: () => latest.splice(0),
  };
}

function runInline(flow: Flow, plan: PhysicalPlan, instances: Instance[]): Execution {
  const runners = instances.map((i) => new TaskRunner(flow, plan, i.setup));
  const done = (async () => {
    await Promise.all(runners.map((r) => r.init()));
    let metrics: TaskMetrics[];
    try {
      await Promise.all(runners.map((r) => r.run()));
      metrics = runners.map((r) => r.metrics());
    } finally {
      await Promise.all(runners.map((r) => r.close().catch(() => undefined)));
    }
    return metrics;
  })();
  return { done, poll: () => runners.map((r) => r.metrics()) };
}
