// The coordinator: plans a flow, wires rings, starts one worker per task instance
// (or runs them all on this thread in inline mode), follows their metrics and ends
// the run when every instance has finished — or on the first failure, which stops
// every worker and surfaces as one error naming operator, subtask and record.
//
// It never touches records: they go worker to worker over SharedArrayBuffer rings.
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { errors } from '../errors.js';
import { loadConfig } from '../config/load.js';
import type { TidepoolConfig } from '../config/schema.js';
import { loadFlowModule } from '../flow/module-loader.js';
import { planFlow, describePlan, type PhysicalPlan } from '../flow/plan.js';
import type { Flow } from '../flow/builder.js';
import { IoClient } from '../storage/io-client.js';
import { acquireStoreLock, type StoreLock } from '../storage/lock.js';
import type { TaskMetrics } from './task.js';
import { CheckpointCoordinator, type Manifest } from './checkpoints.js';
import { dropOrphanPartitions } from '../storage/gc.js';
import { resolveOperator } from './dead-letters.js';
import { chooseCheckpoint } from './restore.js';
import { prepareInstances } from './instances.js';
import { prestartWorkers, runInline, runWorkers, type ExecutionControl, type Prestarted } from './execution.js';
import { ProgressLine, buildSummary, type RunSummary } from '../observe/report.js';
import type { MetricsServer } from '../observe/metrics.js';
import { continueCopyIn, finishCopyIn, openRemoteRun, remoteSummary, type RemoteRun } from './remote.js';

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
    lock = await acquireStoreLock(stateRoot, '.tidepool-run', { ownerFile: false });
  } catch (e) {
    if ((e as { code?: string }).code !== 'TIDEPOOL_STORE_LOCKED') throw e;
    const holder = /in (another process.*|this process.*); close/.exec((e as Error).message)?.[1] ?? 'another run';
    throw errors.stateLocked(stateRoot, holder.replace(/^another process/, 'another run'));
  }
  const sourcePath = modulePath.startsWith('file:') ? fileURLToPath(modulePath) : resolve(modulePath);
  // The first attempt's operator workers start now, so that their start-up (a thread,
  // the runtime's modules, the flow) overlaps the I/O worker's and everything below up
  // to the attach — choosing a checkpoint, clearing a fresh directory — instead of
  // following it (perf/RESULTS.md, "Fixed cost"). A restart starts its own.
  let prestarted: Prestarted | undefined = config.execution === 'inline' ? undefined : prestartWorkers(url, plan, sourcePath);
  // Only lmdb state survives a run; temp and memory state start empty every time.
  const durable = config.state.storage === 'lmdb';
  // prom-client (~30 ms to import) loads only for a run that serves metrics.
  const metricsServer = config.metrics.port ? await import('../observe/metrics.js').then((m) => m.startMetricsServer(config.metrics.port!)).catch(async (e: unknown) => { await prestarted?.release(); await lock.release(); throw e; }) : undefined;
  let attempt = 0;
  let restarts = 0;
  let remote: RemoteRun | undefined;
  try {
    remote = await openRemoteRun(config, stateDir, options.fromCheckpoint, (line) => process.stderr.write(`${line}\n`));
    for (;;) {
      const restore = durable ? chooseCheckpoint(stateDir, plan, options.fromCheckpoint, attempt === 0, !!options.allowDroppedState) : undefined;
      if (remote) {
        // Every attempt: a restart goes back to `restore`, and what the failed attempt
        // uploaded beyond it (a remoteRequired checkpoint that never completed) goes too.
        await remote.uploader.settle();
        await remote.uploader.init(restore);
      }
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
        // …and that it is uploaded (the run that completed it may have died first).
        if (remote) {
          remote.uploader.enqueue(restore.id);
          await finishUploads(remote);
        }
        // A lazily restored directory whose job is done: finish copying its pages in,
        // so that it no longer depends on the remote store.
        continueCopyIn(remote, config, stateDir);
        await finishCopyIn(remote);
        const summary = buildSummary(flow.name, plan, [], performance.now() - started, config);
        summary.restoredFrom = restore.id;
        summary.alreadyComplete = true;
        if (remote) summary.remote = remoteSummary(remote);
        if (options.summary) writeFileSync(options.summary, JSON.stringify(summary, null, 2) + '\n');
        return summary;
      }
      if (!restore) {
        // An earlier attempt of this run (or an earlier run in this process) may have
        // left the I/O worker attached to this directory: it lets go before it is deleted.
        if (config.state.storage !== 'memory') await IoClient.shared().forgetDir(stateDir);
        rmSync(stateDir, { recursive: true, force: true });
        for (const t of plan.tasks) for (const name of t.operators) await resolveOperator(flow, name, plan.deadLetterPath).sink?.reset?.(t.parallelism);
      }
      mkdirSync(stateDir, { recursive: true });
      if (durable) continueCopyIn(remote, config, stateDir);
      try {
        const workers = prestarted;
        prestarted = undefined; // execute owns them now (and releases them if it fails)
        const summary = await execute(flow, url, sourcePath, plan, config, stateDir, restore, options, metricsServer, started, remote, workers);
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
    await prestarted?.release(); // not taken: the run ended (or failed) before its first attempt
    await remote?.uploader.close();
    await lock.release();
    await metricsServer?.close();
    if (tempState) rmSync(stateRoot, { recursive: true, force: true });
  }
}

async function execute(
  flow: Flow, url: string, source: string, plan: PhysicalPlan, config: TidepoolConfig, stateDir: string,
  restore: Manifest | undefined, options: RunOptions, metricsServer: MetricsServer | undefined, started: number, remote: RemoteRun | undefined,
  workers: Prestarted | undefined,
): Promise<RunSummary> {
  metricsServer?.beginAttempt(); // instances of this attempt report totals from 0
  const prestarted = config.execution === 'inline' ? undefined : workers ?? prestartWorkers(url, plan, source);
  let instances;
  try {
    instances = await prepareInstances(plan, config, stateDir, restore);
  } catch (e) {
    await prestarted?.release();
    throw e;
  }
  const control: ExecutionControl = {};
  const exec = config.execution === 'inline' ? runInline(flow, plan, instances, control) : runWorkers(url, plan, instances, control, prestarted, source);
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
  // one; later ones cannot orphan anything the plan has not changed. An attempt that
  // restored nothing started on an emptied directory: it holds only its own partitions.
  let sinceStart = 0;
  const drops: Promise<unknown>[] = [];
  if (config.state.storage === 'lmdb') {
    const live = instances.flatMap((i) => (i.setup.state ? [i.setup.state.stateId] : []));
    checkpoints.onComplete = (id, final) => {
      if (remote && !remote.required) remote.uploader.enqueue(id);
      if (!restore || (++sinceStart > config.checkpoint.retain && !final)) return;
      drops.push(dropOrphanPartitions(stateDir, live).catch(() => undefined));
    };
    if (remote?.required) checkpoints.beforePublish = (id, manifest) => remote.uploader.uploadNow(id, manifest);
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
    if (remote) metricsServer?.updateRemote(flow.name, remote.uploader.stats);
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
  if (remote) await finishUploads(remote);
  // A lazily restored job that reached its end finishes copying its pages in, so its
  // directory no longer depends on the remote store.
  await finishCopyIn(remote);
  metricsServer?.update(flow.name, final); // the last reports, for a final scrape
  if (remote) metricsServer?.updateRemote(flow.name, remote.uploader.stats);
  const summary = buildSummary(flow.name, plan, final, performance.now() - started, config);
  summary.checkpoints = checkpoints.stats;
  if (remote) {
    summary.checkpoints.remoteLagMs = remote.uploader.stats.lagMs;
    summary.remote = remoteSummary(remote);
  }
  if (restore) summary.restoredFrom = restore.id;
  return summary;
}

/** At the end of a run: the last checkpoint's upload gets up to 60 s more (with retries). */
async function finishUploads(remote: RemoteRun): Promise<void> {
  if (await remote.uploader.drain(60_000)) return;
  const s = remote.uploader.stats;
  process.stderr.write(`tidepool: the newest checkpoint is not uploaded yet (${s.failures} failed attempts, last: ${s.lastError ?? 'none'}); it is complete locally, the next run uploads it\n`);
}
