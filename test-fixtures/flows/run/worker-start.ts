// A flow module that fails only inside an operator worker, while it starts (before its
// setup arrives: workers are started beside the state attach). TP_MODE: 'exit' (the
// worker calls process.exit(3)), 'throw' (the import throws there), else it runs.
import { isMainThread } from 'node:worker_threads';
import { flow, sources, sinks } from 'tidepool';

if (!isMainThread && process.env.TP_MODE === 'exit') process.exit(3);
if (!isMainThread && process.env.TP_MODE === 'throw') throw new Error('boom in a worker');

export default flow('worker-start')
  .source('nums', sources.array([1, 2, 3]))
  .map('inc', (x: number) => x + 1)
  .sink('out', sinks.stdout());
