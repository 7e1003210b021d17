// Remote-checkpoint benchmark flow (perf/remote.bench.ts): TIDEPOOL_BENCH_KEYS records,
// record i writes key i a string of TIDEPOOL_BENCH_VALUE_BYTES characters (reduce), the
// output is discarded. The final checkpoint holds keys × value bytes of state.
import { flow, sources } from '../../src/index.js';
import { discardSink, envInt } from './records.js';

const keys = envInt('TIDEPOOL_BENCH_KEYS', 1000);
const valueBytes = envInt('TIDEPOOL_BENCH_VALUE_BYTES', 100);
const filler = 'x'.repeat(valueBytes);

export default flow('bench-remote-state')
  .source('gen', sources.generator({ count: keys, make: (i: number) => ({ i }) }))
  .keyBy((r: { i: number }) => r.i)
  .reduce('values', (_acc: string | undefined, r: { i: number }) => `${r.i}:${filler}`.slice(0, valueBytes))
  .sink('out', discardSink<{ key: number; value: string }>());
