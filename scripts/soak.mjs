// Long soak runs, kept out of `npm test` (which must stay near 10 minutes on 2 cores):
// the randomized crash and corruption tests with many more rounds and cases. Each
// prints its seed; rerun one with the same environment variable to replay it.
//   npm run soak            (about an hour on 2 cores)
import { spawnSync } from 'node:child_process';

const env = {
  ...process.env,
  TIDEPOOL_CRASH_ROUNDS: process.env.TIDEPOOL_CRASH_ROUNDS ?? '200',
  TIDEPOOL_FUZZ_CASES: process.env.TIDEPOOL_FUZZ_CASES ?? '60',
  TIDEPOOL_DOORBELL_RUNS: process.env.TIDEPOOL_DOORBELL_RUNS ?? '100',
};
const files = ['store-crash', 'corruption-fuzz-flow', 'store-corruption-fuzz', 'doorbell', 'checkpoint-crash', 'graph-crash', 'nexmark-crash']
  .map((f) => `dist/test/${f}.test.js`);
const r = spawnSync(process.execPath, ['scripts/run-tests.mjs', ...files], { stdio: 'inherit', env });
process.exit(r.status ?? 1);
