// Every Nexmark query flow of examples/nexmark/ through real `tidepool run` processes at
// parallelism 1 and 2, against the plain single-threaded reference of the same query over
// the same events (perf/nexmark/reference.ts): equal as multisets. Event time runs at
// 200 events/s (unpaced), so 20,000 events span 100 s: ten 10 s windows, fifty 2 s slides.
import t from 'tap';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { cli } from './helpers/cli.js';
import { nexmarkEvents } from '../src/connectors/nexmark-events.js';
import { multiset, q12, q12Totals, queries } from '../perf/nexmark/reference.js';

const EXAMPLES = fileURLToPath(new URL('../../examples/nexmark/', import.meta.url));
const EVENTS = 20_000;
const EVENT_RATE = 200;
const SEED = 5;
const tmp = mkdtempSync(join(tmpdir(), 'tidepool-nexmark-q-'));
t.teardown(() => rmSync(tmp, { recursive: true, force: true }));
const events = [...nexmarkEvents({ events: EVENTS, seed: SEED, rate: EVENT_RATE })];

async function runQuery(q: string, p: number): Promise<unknown[]> {
  const out = join(tmp, `${q}-p${p}.jsonl`);
  const r = await cli(['run', join(EXAMPLES, `${q}.ts`), '--state', join(tmp, `state-${q}-${p}`), '--set', `parallelism=${p}`], {
    cwd: tmp,
    timeoutMs: 120_000,
    env: { NEXMARK_EVENTS: String(EVENTS), NEXMARK_SEED: String(SEED), NEXMARK_EVENT_RATE: String(EVENT_RATE), NEXMARK_OUT: out, TIDEPOOL_MODULE_CACHE: join(tmp, 'module-cache') },
  });
  if (r.code !== 0) throw new Error(`${q} at parallelism ${p} exited ${r.code}: ${r.stderr.trim()}`);
  return existsSync(out) ? readFileSync(out, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l) as unknown) : [];
}

for (const q of Object.keys(queries) as (keyof typeof queries)[]) {
  t.test(`${q} equals the reference`, async (t) => {
    const want = multiset((queries[q] as (e: typeof events) => unknown[])(events));
    t.ok(want.length > 0, `the reference has ${want.length} rows`);
    for (const p of [1, 2]) {
      const got = multiset(await runQuery(q, p));
      t.equal(got.length, want.length, `parallelism ${p}: ${got.length} rows`);
      t.same(got, want, `parallelism ${p}: the same multiset`);
    }
  });
}

t.test('q12 (processing-time windows): per-bidder totals equal the reference', async (t) => {
  const want = q12(events);
  for (const p of [1, 2]) {
    const rows = (await runQuery('q12', p)) as Parameters<typeof q12Totals>[0] extends Iterable<infer R> ? R[] : never;
    t.same([...q12Totals(rows)].sort(), [...want].sort(), `parallelism ${p}`);
  }
});
