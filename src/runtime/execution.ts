// Running the instances of one attempt: one worker thread each (workers/operator.ts), or
// all on this thread (inline mode, same semantics). Either way the coordinator sees an
// Execution: done/ready promises, metrics polls, checkpoint and commit messages, stop.
import { Worker, type TransferListItem } from 'node:worker_threads';
import { errors, TidepoolError } from '../errors.js';
import type { Flow } from '../flow/builder.js';
import type { PhysicalPlan } from '../flow/plan.js';
import { TaskRunner, type CheckpointAck, type TaskControl, type TaskMetrics } from './task.js';
import type { Instance } from './instances.js';

export interface ExecutionControl {
  ack?: (a: CheckpointAck) => void;
  exhausted?: (task: number, subtask: number) => void;
}

export interface Execution {
  done: Promise<TaskMetrics[]>;
  /** Every instance initialized (state attached, inputs open): checkpoint timing starts here. */
  ready: Promise<void>;
  poll(): TaskMetrics[];
  checkpoint(task: number, subtask: number, id: number, final: boolean): void;
  commit(task: number, subtask: number, id: number): void;
  stop(): Promise<void>;
}

/** How long a worker asked to stop may take before it is terminated. */
const STOP_GRACE_MS = 2000;

/**
 * Starts one operator worker per instance of the plan before their setups exist: each
 * loads the runtime and the flow module while the coordinator attaches the instances'
 * state to the I/O worker (which is what a setup needs), instead of after it. `release`
 * ends workers that never got a setup (the attach failed).
 */
export interface Prestarted {
  workers: Map<string, Worker>;
  /** Workers that exited before runWorkers took them, with the error that ended them, if any. */
  gone: Map<Worker, string>;
  release(): Promise<void>;
}

export function prestartWorkers(url: string, plan: PhysicalPlan, source?: string): Prestarted {
  const workerUrl = new URL('../../workers/operator.js', import.meta.url);
  const workers = new Map<string, Worker>();
  const gone = new Map<Worker, string>();
  for (const t of plan.tasks) {
    for (let s = 0; s < t.parallelism; s++) {
      const w = new Worker(workerUrl, { workerData: { url, source, plan, task: t.index, subtask: s } });
      // A worker reports a failed flow import only once it has its setup, so before
      // runWorkers takes it, only a crash can end it: remembered here for runWorkers.
      let error = '';
      w.on('error', (e) => (error = e.message));
      w.once('exit', (code) => gone.set(w, error || `exited with code ${code} while starting`));
      workers.set(`${t.index}/${s}`, w);
    }
  }
  let released = false;
  return {
    workers,
    gone,
    release: async () => {
      if (released) return;
      released = true;
      // Not set up yet: nothing of lmdb-js runs in them, terminate() is safe.
      await Promise.all([...workers.values()].map((w) => w.terminate()));
    },
  };
}

export function runWorkers(url: string, plan: PhysicalPlan, instances: Instance[], control: ExecutionControl, started?: Prestarted, source?: string): Execution {
  const workerUrl = new URL('../../workers/operator.js', import.meta.url);
  const latest: TaskMetrics[] = [];
  const workers = new Map<string, Worker>();
  const all: Worker[] = [];
  const exited = new Set<Worker>();
  const finishedWorkers = new Set<Worker>();
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
      void stop().finally(() => rejectAll(e));
    };
    for (const inst of instances) {
      const label = `${plan.tasks[inst.task]!.label}#${inst.subtask}`;
      const w = started?.workers.get(`${inst.task}/${inst.subtask}`) ?? new Worker(workerUrl, { workerData: { url, source, plan, task: inst.task, subtask: inst.subtask } });
      w.postMessage({ type: 'setup', setup: inst.setup }, inst.transfer as never);
      const early = started?.gone.get(w);
      if (early !== undefined) {
        exited.add(w);
        queueMicrotask(() => fail(errors.worker(`worker ${label}`, early)));
      }
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
          finishedWorkers.add(w);
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
        exited.add(w);
        if (!finished && !failed) fail(errors.worker(`worker ${label}`, `exited with code ${code} before finishing`));
      });
    }
  });
  // Stopping asks first: `worker.terminate()` while a worker is inside an lmdb-js call
  // that throws aborts the whole process ("FATAL ERROR: ... napi_throw", node-addon-api
  // treats the terminating environment's refusal as fatal; lmdb-js issue #200). A worker
  // handles 'stop' between two event-loop turns, outside any native call, and exits; a
  // worker that does not (user code stuck in a synchronous loop) is terminated after
  // STOP_GRACE_MS, which then cannot be inside lmdb-js.
  let stopping: Promise<void> | undefined;
  const stop = () => (stopping ??= Promise.all(all.map(async (w) => {
    if (exited.has(w)) return;
    if (finishedWorkers.has(w)) return void await w.terminate(); // its state is closed: no lmdb-js call left
    const gone = new Promise<void>((resolve) => w.once('exit', () => resolve()));
    w.postMessage({ type: 'stop' });
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<'late'>((resolve) => (timer = setTimeout(() => resolve('late'), STOP_GRACE_MS)));
    if (await Promise.race([gone, late]) === 'late') await w.terminate();
    clearTimeout(timer);
  })).then(() => undefined));
  return {
    done: done.finally(stop),
    ready,
    poll: () => latest.splice(0),
    checkpoint: (t, s, id, final) => workers.get(`${t}/${s}`)?.postMessage({ type: 'checkpoint', id, final }),
    commit: (t, s, id) => workers.get(`${t}/${s}`)?.postMessage({ type: 'commit', id }),
    stop,
  };
}

export function runInline(flow: Flow, plan: PhysicalPlan, instances: Instance[], control: ExecutionControl): Execution {
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
