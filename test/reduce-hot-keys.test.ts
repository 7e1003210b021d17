// A reduce over more distinct keys than its write-back cache of primitive accumulators
// holds (HOT_KEYS = 65,536 in src/operators/reduce.ts): one reduce instance gets every
// key and only the final checkpoint writes the cache back (checkpoint.intervalMs=0), so
// it fills, overflows into the tree and refills, over a small page cache (evictions).
// Every key's updates in the file sink's output must be 1, 2, … its exact count.
import t from 'tap';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { cli, FLOWS } from './helpers/cli.js';

const tmp = mkdtempSync(join(tmpdir(), 'tidepool-hot-keys-'));
t.teardown(() => rmSync(tmp, { recursive: true, force: true }));

const N = 200_000;
const KEYS = 100_000;
const HOT_KEYS = 65_536;

/** The fixture's key of record i (test-fixtures/flows/run/hot-keys.ts). */
function keyIndex(i: number, keys: number): number {
  let h = 0x811c9dc5;
  for (let b = 0; b < 4; b++) h = Math.imul(h ^ ((i >>> (8 * b)) & 0xff), 0x01000193);
  return (h >>> 0) % keys;
}

t.test(`a count over ${N} records and ~${KEYS} keys on one reduce instance: every count exact`, async (t) => {
  const reference = new Map<string, number>();
  for (let i = 0; i < N; i++) {
    const k = `u${keyIndex(i, KEYS)}`;
    reference.set(k, (reference.get(k) ?? 0) + 1);
  }
  t.ok(reference.size > HOT_KEYS * 1.2, `${reference.size} distinct keys, more than the ${HOT_KEYS} hot ones`);
  t.ok([...reference.values()].some((n) => n >= 5), 'counts vary by key');

  const output = join(tmp, 'out/counts.jsonl');
  const r = await cli(
    ['run', join(FLOWS, 'run/hot-keys.ts'), '--state', join(tmp, 'state'), '--set', 'parallelism=2', '--set', 'operators.counts.parallelism=1',
      '--set', 'state.cachePages=64', '--set', 'checkpoint.intervalMs=0', '--summary', join(tmp, 'summary.json')],
    { cwd: tmp, env: { TP_COUNT: String(N), TP_KEYS: String(KEYS), TP_OUTPUT: output, TIDEPOOL_MODULE_CACHE: join(tmp, 'module-cache') }, timeoutMs: 120_000 },
  );
  t.equal(r.code, 0, `exit 0 (${Math.round(r.ms)} ms) ${r.stderr}`);
  const summary = JSON.parse(readFileSync(join(tmp, 'summary.json'), 'utf8')) as { operators: { operators: string[]; parallelism: number; statePages: number }[]; checkpoints: { completed: number } };
  const counts = summary.operators.find((o) => o.operators.includes('counts'))!;
  t.equal(counts.parallelism, 1, 'one reduce instance holds every key');
  t.ok(counts.statePages > 64, `its state outgrew the page cache: ${counts.statePages} pages`);
  t.equal(summary.checkpoints.completed, 1, 'only the final checkpoint: nothing else empties the hot cache');

  const text = readFileSync(output, 'utf8');
  t.ok(text.endsWith('\n'));
  const lines = text.slice(0, -1).split('\n');
  t.equal(lines.length, N, 'one update per record');
  const seen = new Map<string, number>();
  const wrong: string[] = [];
  for (const line of lines) {
    const { key, value } = JSON.parse(line) as { key: string; value: number };
    const prev = seen.get(key) ?? 0;
    if (value !== prev + 1) wrong.push(`${key}: ${value} after ${prev}`);
    seen.set(key, value);
  }
  for (const [k, n] of reference) if (seen.get(k) !== n) wrong.push(`${k}: final ${seen.get(k)}, expected ${n}`);
  t.equal(seen.size, reference.size, 'every key, no other');
  t.same(wrong.slice(0, 5), [], `every key's updates are 1, 2, … its count (${wrong.length} wrong)`);
});
