// One state name used for two kinds of state in one process, for
// test/keyed-state-more.test.ts. TP_MODE: 'value+map', 'map+list' or 'list+value'
// (the kinds process 'p' asks for under the name 's', in that order). Output: TP_OUT.
import { flow, sources, sinks } from 'tidepool';

const [first, second] = (process.env.TP_MODE ?? '').split('+');
const out = process.env.TP_OUT;
if (!first || !second || !out) throw new Error('state-names fixture: set TP_MODE and TP_OUT');

export default flow('state-names')
  .source('gen', sources.generator({ count: 4, make: (i) => ({ i, k: `k${i % 2}` }) }))
  .keyBy((r: { k: string }) => r.k)
  .process('p', (r: { i: number }, ctx) => {
    for (const kind of [first, second]) {
      if (kind === 'value') ctx.state.value<number>('s').set(r.i);
      else if (kind === 'map') ctx.state.map<string, number>('s').set('x', r.i);
      else ctx.state.list<number>('s').add(r.i);
    }
    ctx.emit(r);
  })
  .sink('out', sinks.file({ path: out }));
