// Fan-out chained into one task (test/fanout-chaining.test.ts): the source feeds a map
// that changes its record in place, a filter, and (through a ring) a sink of its own.
// Output directory: TP_OUT.
import { flow, sources, sinks } from 'tidepool';

interface Rec { id: number; tag: string; nested: { n: number } }
const out = (name: string) => sinks.file({ path: `${process.env.TP_OUT}/${name}.jsonl` });

const f = flow('fanout-branches');
const src = f.source('src', sources.generator({ count: 5000, make: (i: number): Rec => ({ id: i, tag: 'orig', nested: { n: i } }) }));
src
  .map('mutate', (r: Rec) => {
    r.tag = 'changed';
    r.nested.n = -1;
    return r;
  })
  .sink('mutated', out('mutated'));
src.filter('evens', (r: Rec) => r.id % 2 === 0).sink('evens-out', out('evens'));
src.sink('copy', out('copy'));
export default f;
