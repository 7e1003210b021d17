// Worker entry point of one task instance (a chain of operators, one subtask).
//
// workerData: { url, plan, setup } — the compiled flow module to import, the physical
// plan, and this instance's rings and state attachment. Messages to the coordinator:
//   { type: 'ready' } · { type: 'metrics', metrics } every 250 ms · { type: 'done', metrics }
//   { type: 'error', message, code }
import { parentPort, workerData } from 'node:worker_threads';
import { importFlow } from '../src/flow/module-loader.js';
import { TaskRunner, type TaskSetup } from '../src/runtime/task.js';
import type { PhysicalPlan } from '../src/flow/plan.js';

const { url, plan, setup } = workerData as { url: string; plan: PhysicalPlan; setup: TaskSetup };
const port = parentPort!;
let runner: TaskRunner | undefined;
let timer: NodeJS.Timeout | undefined;

try {
  const flow = await importFlow(url);
  runner = new TaskRunner(flow, plan, setup, {
    ack: (ack) => port.postMessage({ type: 'ack', ack }),
    exhausted: () => port.postMessage({ type: 'exhausted' }),
  });
  const r = runner;
  port.on('message', (m: { type: string; id: number; final?: boolean }) => {
    if (m.type === 'checkpoint') r.requestCheckpoint(m.id, !!m.final);
    else if (m.type === 'commit') r.commit(m.id);
    // The coordinator gave up on this attempt. Exiting from here, between event-loop
    // turns, is never inside an lmdb-js call (see STOP_GRACE_MS in execution.ts).
    else if (m.type === 'stop') process.exit(0);
  });
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
