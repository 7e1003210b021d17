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
import { planFlow, describePlan, keyGroupRange, type PhysicalPlan } from '../flow/plan.js';
import type { Flow } from '../flow/builder.js';
import { STATEFUL, type OperatorKind } from '../flow/types.js';
import { createRingBuffer } from '../transport/ring.js';
import { IoClient } from '../storage/io-client.js';
import { acquireStoreLock, type StoreLock } from '../storage/lock.js';
import { TaskRunner, type CheckpointAck, type OutputSetup, type TaskControl, type TaskMetrics, type TaskSetup } from './task.js';
import { CheckpointCoordinator, checkpointDir, listManifests, readManifest, syncDir, type Manifest } from './checkpoints.js';
import { createBell } from '../transport/channels.js';
import { dropOrphanPartitions } from '../storage/gc.js';
import { resolveOperator } from './dead-letters.js';
import { ProgressLine, buildSummary, type RunSummary } from '../observe/report.js';
import { startMetricsServer, type MetricsServer } from '../observe/metrics.js';

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
  /** Restore this retained checkpoint instead of the newest. */
  fromCheckpoint?: number;
  /** Restore even if stateful operators of the checkpoint are gone from the flow (their state is dropped). */
  allowDroppedState?: boolean;
  verbose?: boolean;
}

export type { RunSummary } from '../observe/report.js';

/**
 * Bytes per channel ring. Aligned barriers queue behind what a full ring holds, so this
 * bounds checkpoint latency under backpressure: 256 KiB (~10k small records) measured
 * the same keyed-count throughput as 1 MiB and about half the time to a restored run's
 * first published record (perf/RESULTS.md, "Checkpoints and recovery").
 */
const RING_BYTES = 256 << 10;

interface Instance {
  task: number;
  subtask: number;
  setup: TaskSetup;
  transfer: TransferListItem[];
}

/** Rings per edge, and each instance's inputs and outputs. */
interface Wiring {
  inputs: SharedArrayBuffer[];
  inputSides: (0 | 1)[];
  outputs: OutputSetup[];
  bell: SharedArrayBuffer;
}

function wire(plan: PhysicalPlan): Map<string, Wiring> {
  const io = new Map<string, Wiring>();
  const at = (t: number, s: number) => {
    const k = `${t}/${s}`;
    let v = io.get(k);
    if (!v) io.set(k, (v = { inputs: [], inputSides: [], outputs: [], bell: createBell() }));
    return v;
  };
  for (const t of plan.tasks) for (let s = 0; s < t.parallelism; s++) at(t.index, s);
  plan.edges.forEach((e, ei) => {
    const pa = plan.tasks[e.from]!.parallelism;
    const pb = plan.tasks[e.to]!.parallelism;
    for (let i = 0; i < pa; i++) {
      const out: OutputSetup = { edge: ei, rings: [], bells: [] };
      // forward: producer i feeds consumer i only; otherwise every consumer j (index j).
      const targets = e.partitioning === 'forward' ? [i] : [...Array(pb).keys()];
      for (const j of targets) {
        const ring = createRingBuffer(RING_BYTES);
        out.rings.push(ring);
        out.bells.push(at(e.to, j).bell);
        at(e.to, j).inputs.push(ring);
        at(e.to, j).inputSides.push(e.side);
      }
      at(e.from, i).outputs.push(out);
    }
  });
  return io;
}

export async function run(modulePath: string, options: RunOptions = {}): Promise<RunSummary> {
  const started = performance.now();
  const config = loadConfig({ file: options.config, sets: options.set, overrides: options.overrides });
  // Boot the I/O worker (lmdb-js and its native addon load in it) while the flow module
  // loads: on a restore this overlap is part of the time to the first record.
  if (config.state.storage !== 'memory') IoClient.shared();
  const { flow, url } = await loadFlowModule(modulePath);
  for (const op of flow.operators) {
    op.source?.validate?.();
    op.sink?.validate?.();
  }
  const plan = planFlow(flow, { parallelism: config.parallelism, keyGroups: config.keyGroups, chaining: config.chaining, operators: config.operators, errors: config.errors });
  if (options.verbose) process.stderr.write(`tidepool: plan ${describePlan(plan)}\n`);

  const tempState = options.state === undefined;
  const stateRoot = tempState ? mkdtempSync(join(tmpdir(), 'tidepool-state-')) : resolve(options.state!);
  const stateDir = join(stateRoot, flow.name);
  // One run per --state directory, taken before anything in it is read or changed. The
  // lock is released by the kernel when this process dies, SIGKILL included.
  mkdirSync(stateRoot, { recursive: true });
  let lock: StoreLock;
  try {
    lock = await acquireStoreLock(stateRoot, '.tidepool-run');
  } catch (e) {
    if ((e as { code?: string }).code !== 'TIDEPOOL_STORE_LOCKED') throw e;
    const holder = /in (another process.*|this process.*); close/.exec((e as Error).message)?.[1] ?? 'another run';
    throw errors.stateLocked(stateRoot, holder.replace(/^another process/, 'another run'));
  }
  // Only lmdb state survives a run; temp and memory state start empty every time.
  const durable = config.state.storage === 'lmdb';
  const metricsServer = config.metrics.port ? await startMetricsServer(config.metrics.port).catch(async (e: unknown) => { await lock.release(); throw e; }) : undefined;
  let attempt = 0;
  let restarts = 0;
  try {
    for (;;) {
      const restore = durable ? chooseCheckpoint(stateDir, plan, options.fromCheckpoint, attempt === 0, !!options.allowDroppedState) : undefined;
      if (restore?.final && attempt === 0) {
        // Sources were exhausted and the final checkpoint completed: nothing to do but
        // make sure its epoch is published (a crash may have come between the manifest
        // and the sinks' commit; commit is idempotent).
        for (const t of plan.tasks) {
          const op = resolveOperator(flow, t.operators[t.operators.length - 1]!, plan.deadLetterPath);
          if (!op.sink) continue;
          for (let s = 0; s < t.parallelism; s++) {
            const w = await op.sink.open({ flow: flow.name, operator: op.name, subtask: s, parallelism: t.parallelism });
            await w.commit(restore.id);
            await w.close();
          }
        }
        const summary = buildSummary(flow.name, plan, [], performance.now() - started, config);
        summary.restoredFrom = restore.id;
        summary.alreadyComplete = true;
        if (options.summary) writeFileSync(options.summary, JSON.stringify(summary, null, 2) + '\n');
        return summary;
      }
      if (!restore) {
        rmSync(stateDir, { recursive: true, force: true });
        for (const t of plan.tasks) for (const name of t.operators) await resolveOperator(flow, name, plan.deadLetterPath).sink?.reset?.(t.parallelism);
      }
      mkdirSync(stateDir, { recursive: true });
      try {
        const summary = await execute(flow, url, plan, config, stateDir, restore, options, metricsServer, started);
        summary.restarts = restarts;
        if (options.summary) writeFileSync(options.summary, JSON.stringify(summary, null, 2) + '\n');
        return summary;
      } catch (e) {
        const code = (e as { code?: string }).code;
        const retriable = code === 'TIDEPOOL_USER_CODE' || code === 'TIDEPOOL_WORKER' || code === 'TIDEPOOL_IO';
        if (!retriable || !durable || attempt >= config.restart.maxAttempts) throw e;
        attempt++;
        restarts++;
        const wait = config.restart.backoffMs * 2 ** (attempt - 1);
        process.stderr.write(`tidepool: ${(e as Error).message.split('\n')[0]} — restarting from the last checkpoint in ${wait} ms (attempt ${attempt} of ${config.restart.maxAttempts})\n`);
        await new Promise((r) => setTimeout(r, wait));
      }
    }
  } finally {
    await lock.release();
    await metricsServer?.close();
    if (tempState) rmSync(stateRoot, { recursive: true, force: true });
  }
}

/** The checkpoint to restore, checked against the plan; undefined for a fresh start. */
function chooseCheckpoint(stateDir: string, plan: PhysicalPlan, fromCheckpoint: number | undefined, first: boolean, allowDropped: boolean): Manifest | undefined {
  const ids = listManifests(stateDir);
  if (fromCheckpoint !== undefined && first) {
    if (!ids.includes(fromCheckpoint)) {
      throw errors.input(`--from-checkpoint ${fromCheckpoint}`, ids.length ? `no such checkpoint (retained: ${ids.join(', ')})` : 'no checkpoint in this state directory');
    }
  }
  const id = first && fromCheckpoint !== undefined ? fromCheckpoint : ids[ids.length - 1];
  if (id === undefined) return undefined;
  const m = readManifest(stateDir, id);
  // Going back to an older checkpoint: the newer ones stop existing (their state
  // versions are dropped at attach), so their manifests go first, durably.
  const newer = ids.filter((x) => x > id);
  if (newer.length) {
    for (const x of newer) rmSync(join(checkpointDir(stateDir), `chk-${String(x).padStart(10, '0')}.json`), { force: true });
    syncDir(checkpointDir(stateDir));
  }
  if (m.keyGroups !== plan.keyGroups) {
    throw errors.config('keyGroups', `the state in ${stateDir} was written with ${m.keyGroups} key groups, this run has ${plan.keyGroups}; keyGroups cannot change`);
  }
  // Every stateful operator of the checkpoint must exist with the same kind and shape
  // (window assigner, join bounds), and every source must still be there: a renamed or
  // new source would read from the beginning into restored state (double counting).
  for (const t of m.tasks) {
    t.operators.forEach((name, i) => {
      const kind = t.kinds[i] as OperatorKind;
      if (kind === 'source') {
        if (allowDropped || plan.tasks.some((x) => x.operators[0] === name && x.kinds[0] === 'source')) return;
        throw errors.input(`source '${name}'`, `its position is in checkpoint ${m.id} but the flow has no such source (renamed?); restoring would reread every source from a mix of positions (--allow-dropped-state to accept)`);
      }
      if (!STATEFUL.has(kind)) return;
      const now = plan.tasks.find((x) => x.operators.includes(name));
      if (!now) {
        if (allowDropped) return;
        throw errors.input(`operator '${name}'`, `its state is in checkpoint ${m.id} but the flow has no such operator; restoring would drop it (--allow-dropped-state to accept)`);
      }
      const j = now.operators.indexOf(name);
      const nowKind = now.kinds[j];
      if (nowKind !== kind) throw errors.input(`operator '${name}'`, `was a ${kind} in checkpoint ${m.id}, is now a ${nowKind}; its state cannot be restored`);
      const was = t.shapes?.[i];
      if (was !== undefined && was !== now.shapes[j]) {
        throw errors.input(`operator '${name}'`, `changed shape since checkpoint ${m.id} (${was} → ${now.shapes[j]}); its state cannot be restored`);
      }
    });
  }
  for (const t of plan.tasks) {
    if (t.kinds[0] !== 'source') continue;
    const old = m.tasks.find((x) => x.operators[0] === t.operators[0] && x.kinds[0] === 'source');
    if (!old) {
      if (allowDropped) continue;
      throw errors.input(`source '${t.operators[0]}'`, `is not in checkpoint ${m.id}; a new source would start from its beginning into restored state (--allow-dropped-state to accept)`);
    }
    if (old.parallelism !== t.parallelism) {
      throw errors.input(`source '${t.operators[0]}'`, `checkpoint ${m.id} has parallelism ${old.parallelism}, this run ${t.parallelism}; source positions cannot be split differently`);
    }
  }
  return m;
}

async function execute(
  flow: Flow, url: string, plan: PhysicalPlan, config: TidepoolConfig, stateDir: string,
  restore: Manifest | undefined, options: RunOptions, metricsServer: MetricsServer | undefined, started: number,
): Promise<RunSummary> {
  metricsServer?.beginAttempt(); // instances of this attempt report totals from 0
  const instances = await prepareInstances(plan, config, stateDir, restore);
  const control: ExecutionControl = {};
  const exec = config.execution === 'inline' ? runInline(flow, plan, instances, control) : runWorkers(url, plan, instances, control);
  const checkpoints = new CheckpointCoordinator(plan, stateDir, {
    intervalMs: config.state.storage === 'lmdb' ? config.checkpoint.intervalMs : 0,
    timeoutMs: config.checkpoint.timeoutMs,
    retain: config.checkpoint.retain,
    tolerableFailures: config.checkpoint.tolerableFailures,
    minPauseMs: Math.min(config.checkpoint.intervalMs, 50),
  }, restore?.id ?? 0, { checkpoint: exec.checkpoint, commit: exec.commit });
  // Partitions of a rescaled or dropped operator are named only by checkpoints older
  // than this run; once the retained checkpoints are all newer, nothing can restore
  // them: delete them (those an earlier run left behind by dying too early as well).
  // Checked after each of the first `retain` checkpoints of a run and after its final
  // one; later ones cannot orphan anything the plan has not changed.
  let sinceStart = 0;
  const drops: Promise<unknown>[] = [];
  if (config.state.storage === 'lmdb') {
    const live = instances.flatMap((i) => (i.setup.state ? [i.setup.state.stateId] : []));
    checkpoints.onComplete = (_id, final) => {
      if (++sinceStart > config.checkpoint.retain && !final) return;
      drops.push(dropOrphanPartitions(stateDir, live).catch(() => undefined));
    };
  }
  control.ack = (a) => checkpoints.ack(a);
  control.exhausted = (t, s) => checkpoints.sourceExhausted(t, s);
  // The first checkpoint is requested at once; timeouts and the interval start once every
  // instance is up: worker start-up (seconds on a loaded machine) must not count against
  // checkpoint.timeoutMs.
  checkpoints.begin();
  void exec.ready.then(() => checkpoints.start());
  const progress = options.progress && process.stderr.isTTY ? new ProgressLine(plan) : undefined;
  const latest = new Map<string, TaskMetrics>();
  const tick = setInterval(() => {
    for (const m of exec.poll()) latest.set(`${m.task}/${m.subtask}`, m);
    progress?.draw([...latest.values()], performance.now() - started);
    metricsServer?.update(flow.name, [...latest.values()]);
  }, 250);
  let final: TaskMetrics[];
  try {
    // A failed checkpoint (timeouts beyond tolerableFailures) fails the run too.
    const failedCheckpoint = checkpoints.finished.then(() => new Promise<never>(() => undefined));
    final = await Promise.race([exec.done, failedCheckpoint]);
    await checkpoints.finished;
  } catch (e) {
    await exec.stop();
    throw e;
  } finally {
    checkpoints.stop();
    clearInterval(tick);
    progress?.clear();
  }
  await Promise.all(drops);
  metricsServer?.update(flow.name, final); // the last reports, for a final scrape
  const summary = buildSummary(flow.name, plan, final, performance.now() - started, config);
  summary.checkpoints = checkpoints.stats;
  if (restore) summary.restoredFrom = restore.id;
  return summary;
}

async function prepareInstances(plan: PhysicalPlan, config: TidepoolConfig, stateDir: string, restore: Manifest | undefined): Promise<Instance[]> {
  const rings = wire(plan);
  const instances: Instance[] = [];
  for (const t of plan.tasks) {
    const old = restore?.tasks.find((x) => x.operators[0] === t.operators[0]);
    for (let s = 0; s < t.parallelism; s++) {
      const { inputs, inputSides, outputs, bell } = rings.get(`${t.index}/${s}`)!;
      const setup: TaskSetup = { taskIndex: t.index, subtask: s, inputs, inputSides, outputs, bell, batchSize: config.batchSize, checkpointing: config.state.storage === 'lmdb' };
      const saved = old?.instances.find((i) => i.subtask === s);
      if (restore) setup.restoredCheckpoint = restore.id;
      // Watermarks do not go back across a restore: a source resumes from its largest
      // timestamp, an operator from its own watermark (rescaled: the old instances' minimum).
      const oldWms = old ? (old.parallelism === t.parallelism ? [saved?.watermark] : old.instances.map((i) => i.watermark)) : [];
      if (oldWms.length && oldWms.every((w) => typeof w === 'number')) setup.restoredWatermark = Math.min(...(oldWms as number[]));
      if (saved?.position !== undefined && t.kinds[0] === 'source') setup.sourcePosition = saved.position;
      const transfer: TransferListItem[] = [];
      if (t.stateful) {
        // Rescaled (restored at another parallelism): a new generation of partitions,
        // each copying its key groups from the old ones it overlaps.
        const rescaled = old !== undefined && old.parallelism !== t.parallelism;
        const stateId = rescaled ? `${t.operators[0]}#${s}.g${restore!.id}` : saved?.stateId ?? `${t.operators[0]}#${s}`;
        const st = config.state;
        setup.state = { storage: st.storage, stateId, pageSize: st.pageSize, cachePages: st.cachePages, compression: st.compression, retain: config.checkpoint.retain + 1 };
        if (rescaled) {
          const [a, b] = keyGroupRange(s, t.parallelism, plan.keyGroups);
          setup.state.groups = [a, b];
          setup.state.rescaleFrom = old!.instances
            .filter((i) => {
              const [oa, ob] = keyGroupRange(i.subtask, old!.parallelism, plan.keyGroups);
              return i.stateId !== undefined && i.version !== undefined && oa < b && a < ob;
            })
            .map((i) => ({ stateId: i.stateId!, version: i.version! }));
        }
        if (st.storage !== 'memory') {
          const restoreVersion = restore ? (rescaled ? 0 : saved?.version ?? 0) : undefined;
          // retain + 1: a snapshot is durable before its manifest exists, so the versions
          // of the oldest retained checkpoint must outlive one more snapshot.
          let a;
          try {
            a = await IoClient.shared().attachRaw({ stateId, dir: stateDir, noSync: st.storage === 'temp', retain: config.checkpoint.retain + 1, ringBytes: 8 << 20, restoreVersion });
          } catch (e) {
            throw errors.input(`state of '${t.operators[0]}' subtask ${s}`, (e as Error).message); // not retriable
          }
          Object.assign(setup.state, { dir: stateDir, ring: a.ring, port: a.port, lastCommit: a.lastCommit });
          transfer.push(a.port as unknown as TransferListItem);
        }
      }
      instances.push({ task: t.index, subtask: s, setup, transfer });
    }
  }
  return instances;
}

interface ExecutionControl {
  ack?: (a: CheckpointAck) => void;
  exhausted?: (task: number, subtask: number) => void;
}

interface Execution {
  done: Promise<TaskMetrics[]>;
  /** Every instance initialized (state attached, inputs open): checkpoint timing starts here. */
  ready: Promise<void>;
  poll(): TaskMetrics[];
  checkpoint(task: number, subtask: number, id: number, final: boolean): void;
  commit(task: number, subtask: number, id: number): void;
  stop(): Promise<void>;
}

function runWorkers(url: string, plan: PhysicalPlan, instances: Instance[], control: ExecutionControl): Execution {
  const workerUrl = new URL('../../workers/operator.js', import.meta.url);
  const latest: TaskMetrics[] = [];
  const workers = new Map<string, Worker>();
  const all: Worker[] = [];
  let readyCount = 0;
  let allReady!: () => void;
  const ready = new Promise<void>((resolve) => (allReady = resolve));
  const done = new Promise<TaskMetrics[]>((resolveAll, rejectAll) => {
    let remaining = instances.length;
    const final: TaskMetrics[] = [];
    let failed = false;
    const fail = (e: Error) => {
      if (failed) return;
      failed = true;
      for (const w of all) void w.terminate();
      rejectAll(e);
    };
    for (const inst of instances) {
      const label = `${plan.tasks[inst.task]!.label}#${inst.subtask}`;
      const w = new Worker(workerUrl, { workerData: { url, plan, setup: inst.setup }, transferList: inst.transfer as never });
      workers.set(`${inst.task}/${inst.subtask}`, w);
      all.push(w);
      let finished = false;
      w.on('message', (m: { type: string; metrics?: TaskMetrics; ack?: CheckpointAck; message?: string; code?: string; stack?: string }) => {
        if (m.type === 'metrics') latest.push(m.metrics!);
        else if (m.type === 'ready') {
          if (++readyCount === instances.length) allReady();
        }
        else if (m.type === 'ack') control.ack?.(m.ack!);
        else if (m.type === 'exhausted') control.exhausted?.(inst.task, inst.subtask);
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
  const stop = async () => {
    await Promise.all(all.map((w) => w.terminate()));
  };
  return {
    done: done.finally(stop),
    ready,
    poll: () => latest.splice(0),
    checkpoint: (t, s, id, final) => workers.get(`${t}/${s}`)?.postMessage({ type: 'checkpoint', id, final }),
    commit: (t, s, id) => workers.get(`${t}/${s}`)?.postMessage({ type: 'commit', id }),
    stop,
  };
}

function runInline(flow: Flow, plan: PhysicalPlan, instances: Instance[], control: ExecutionControl): Execution {
  const taskControl: TaskControl = {
    ack: (a) => control.ack?.(a),
    exhausted: (t, s) => control.exhausted?.(t, s),
  };
  const runners = new Map<string, TaskRunner>();
  for (const i of instances) runners.set(`${i.task}/${i.subtask}`, new TaskRunner(flow, plan, i.setup, taskControl));
  const list = [...runners.values()];
  let stopped = false;
  let allReady!: () => void;
  const ready = new Promise<void>((resolve) => (allReady = resolve));
  const done = (async () => {
    await Promise.all(list.map((r) => r.init()));
    allReady();
    let metrics: TaskMetrics[];
    try {
      await Promise.all(list.map((r) => r.run()));
      metrics = list.map((r) => r.metrics());
    } finally {
      stopped = true;
      await Promise.all(list.map((r) => r.close().catch(() => undefined)));
    }
    return metrics;
  })();
  return {
    done,
    ready,
    poll: () => list.map((r) => r.metrics()),
    checkpoint: (t, s, id, final) => runners.get(`${t}/${s}`)?.requestCheckpoint(id, final),
    commit: (t, s, id) => runners.get(`${t}/${s}`)?.commit(id),
    stop: async () => {
      if (!stopped) await Promise.all(list.map((r) => r.close().catch(() => undefined)));
    },
  };
}
