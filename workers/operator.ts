// Worker entry point of one task instance (a chain of operators, one subtask).
//
// workerData: { url, source, plan, task, subtask } — the compiled flow module to import
// (and its source file, which errors name) and the physical plan. The worker starts
// before its instance's state is attached (prestartWorkers, src/runtime/execution.ts):
// it loads the runtime and the flow, then waits for { type: 'setup', setup } (its rings
// and state attachment, ports transferred).
// Messages to the coordinator:
//   { type: 'ready' } · { type: 'metrics', metrics } every 250 ms · { type: 'done', metrics }
//   { type: 'error', message, code }
import { parentPort, workerData } from 'node:worker_threads';
import { importFlow } from '../src/flow/module-loader.js';
import { TaskRunner, type TaskSetup } from '../src/runtime/task.js';
import type { PhysicalPlan } from '../src/flow/plan.js';

const { url, source, plan } = workerData as { url: string; source?: string; plan: PhysicalPlan };
const port = parentPort!;
let runner: TaskRunner | undefined;
let timer: NodeJS.Timeout | undefined;

// Listening from the first moment: a setup (or a stop) may come while the flow loads.
let gotSetup!: (s: TaskSetup) => void;
const setupMessage = new Promise<TaskSetup>((resolve) => (gotSetup = resolve));
const early: { type: string; id: number; final?: boolean }[] = [];
let handle = (m: { type: string; id: number; final?: boolean }) => void early.push(m);
port.on('message', (m: { type: string; id: number; final?: boolean; setup?: TaskSetup }) => {
  if (m.type === 'setup') gotSetup(m.setup!);
  // The coordinator gave up on this attempt. Exiting from here, between event-loop
  // turns, is never inside an lmdb-js call (see STOP_GRACE_MS in execution.ts).
  else if (m.type === 'stop') process.exit(0);
  else handle(m);
});

try {
  // Nothing is reported before the setup came: until then the coordinator may not be
  // listening yet (a failed import is reported right after it).
  const loading = importFlow(url, source);
  loading.catch(() => undefined);
  const setup = await setupMessage;
  const flow = await loading;
  runner = new TaskRunner(flow, plan, setup, {
    ack: (ack) => port.postMessage({ type: 'ack', ack }),
    exhausted: () => port.postMessage({ type: 'exhausted' }),
  });
  const r = runner;
  handle = (m) => {
    if (m.type === 'checkpoint') r.requestCheckpoint(m.id, !!m.final);
    else if (m.type === 'commit') r.commit(m.id);
  };
  for (const m of early.splice(0)) handle(m);
  await runner.init();
  port.postMessage({ type: 'ready' });
  timer = setInterval(() => port.postMessage({ type: 'metrics', metrics: runner!.metrics() }), 250);
  await runner.run();
  clearInterval(timer);
  const metrics = runner.metrics(); // before close: state pages are released there
  await runner.close();
  port.postMessage({ type: 'done', metrics });
  port.removeAllListeners('message');
} catch (e) {
  if (timer) clearInterval(timer);
  const err = e as { message?: string; code?: string; stack?: string };
  port.postMessage({ type: 'error', message: err.message ?? String(e), code: err.code, stack: err.stack });
  await runner?.close().catch(() => undefined);
}
