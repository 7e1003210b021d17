// User functions that must be synchronous but hand back a Promise, for
// test/async-map.test.ts. TP_MODE picks the operator:
//   <kind>-async    an `async` function given to map/filter/flatMap/reduce/process
//                   (refused while the flow is built)
//   <kind>-promise  a plain function returning a Promise for record 3 (refused at run time)
//   map-rejected    a plain function returning a Promise that rejects, for record 3
// The operator is always named 'bad'; records { i, k } from a generator (10 of them).
import { flow, sources, sinks } from 'tidepool';

const mode = process.env.TP_MODE ?? '';
const out = process.env.TP_OUT;
if (!out) throw new Error('promise-misuse fixture: set TP_OUT');
const [kind, how] = mode.split('-') as [string, string];

interface Rec { i: number; k: string }
/** What the operator's function returns for record r, given its proper result. */
function result<T>(r: Rec, proper: T): T {
  if (r.i !== 3) return proper;
  if (how === 'promise') return Promise.resolve(proper) as T;
  if (how === 'rejected') return Promise.reject(new Error('rejected later')) as T;
  return proper;
}

/** The operator function: `async` for <kind>-async, else plain around result(). */
const wrap = <A extends unknown[], R>(r: (...args: A) => Rec, proper: (...args: A) => R) =>
  how === 'async' ? async (...args: A) => proper(...args) : (...args: A) => result(r(...args), proper(...args));

const f = flow('promise-misuse');
const s = f.source('gen', sources.generator({ count: 10, make: (i): Rec => ({ i, k: `k${i % 3}` }) }));
const sink = sinks.file({ path: out });
switch (kind) {
  case 'map':
    s.map('bad', wrap((r: Rec) => r, (r: Rec) => r) as never).sink('out', sink);
    break;
  case 'filter':
    s.filter('bad', wrap((r: Rec) => r, () => true) as never).sink('out', sink);
    break;
  case 'flatMap':
    s.flatMap('bad', wrap((r: Rec) => r, (r: Rec) => [r]) as never).sink('out', sink);
    break;
  case 'reduce':
    s.keyBy((r) => r.k).reduce('bad', wrap((_acc: number | undefined, r: Rec) => r, (acc: number | undefined, r: Rec) => (acc ?? 0) + r.i) as never).sink('out', sink);
    break;
  case 'process':
    s.keyBy((r) => r.k).process('bad', wrap((r: Rec) => r, () => undefined) as never).sink('out', sink);
    break;
  default:
    throw new Error(`promise-misuse fixture: unknown TP_MODE ${mode}`);
}
export default f;
