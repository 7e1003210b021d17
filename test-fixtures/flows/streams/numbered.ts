// Numbered records { i, s: `r<i>` } from a generator into one sink, for the tests of
// sinks that are streams. TP_OUTPUT: a path for sinks.file, or `stdout` for
// sinks.stdout(); TP_COUNT: how many records (unset: unbounded).
import { flow, sources, sinks } from 'tidepool';

const output = process.env.TP_OUTPUT;
if (!output) throw new Error('numbered fixture: set TP_OUTPUT');
const count = process.env.TP_COUNT === undefined ? undefined : Number(process.env.TP_COUNT);

export default flow('numbered')
  .source('gen', sources.generator({ count, make: (i) => ({ i }) }))
  .map('tag', (r: { i: number }) => ({ i: r.i, s: `r${r.i}` }))
  .sink('out', output === 'stdout' ? sinks.stdout() : sinks.file({ path: output }));
