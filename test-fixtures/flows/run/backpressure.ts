// A fast source into a slow step. TP_COUNT records of TP_PAYLOAD bytes; the 'slow'
// map spins TP_SPIN_US microseconds per record and passes on a small record. Run it
// with chaining off so the source and the slow map are separate tasks. TP_OUTPUT.
import { flow, sources, sinks } from 'tidepool';

const count = Number(process.env.TP_COUNT);
const payload = Number(process.env.TP_PAYLOAD);
const spinUs = Number(process.env.TP_SPIN_US);
const output = process.env.TP_OUTPUT;
if (![count, payload, spinUs].every(Number.isFinite) || !output) {
  throw new Error('backpressure fixture: set TP_COUNT, TP_PAYLOAD, TP_SPIN_US and TP_OUTPUT');
}
const filler = 'x'.repeat(payload);

export default flow('backpressure')
  .source('fast', sources.generator({ count, make: (i) => ({ i, p: `${i}:${filler}`.slice(0, payload) }) }))
  .map('slow', (r: { i: number; p: string }) => {
    const until = performance.now() + spinUs / 1000;
    while (performance.now() < until);
    return { i: r.i, n: r.p.length };
  })
  .sink('out', sinks.file({ path: output }));
