// A TypeScript flow: types, an enum from a helper, 'tidepool' imported by name,
// relative imports both NodeNext-style ('./lib/specs.js' is specs.ts) and with .ts.
import { flow, type Flow } from 'tidepool';
import { numbers, discard, type Numbered } from './lib/specs.js';
import { parity, Parity, mathUrl } from './lib/math.ts';

interface Tagged {
  n: number;
  parity: Parity;
}

const tag = (r: Numbered): Tagged => ({ n: r.n, parity: parity(r.n) });

const typed: Flow = flow('typed')
  .source('numbers', numbers(10))
  .map('tag', tag)
  .keyBy((t: Tagged) => t.parity)
  .reduce('count', (acc: number | undefined, _t: Tagged) => (acc ?? 0) + 1)
  .sink('out', discard<{ key: Parity; value: number }>());

export default typed;
export const moduleUrl: string = import.meta.url;
export const helperUrl = mathUrl;
export { tag };
