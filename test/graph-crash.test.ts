// Crash loops of a graph flow (test-fixtures/flows/checkpoint/graph.ts): three sources,
// fan-out, union, a sliding window, a two-input process with event-time timers and list
// state, a window join and four sinks. Real `tidepool run` children are SIGKILLed at
// random moments on one state directory, then run to the end: every sink's output must
// be exactly the multiset of an uninterrupted run (each line once). Then the stateful
// operators are rescaled 1 → 3 → 2 across kills, with the same requirement.
import t, { type Test } from 'tap';
import { mkdirSync, readFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { FlowChildren, newestManifest, sleep } from './helpers/flow-child.js';
import { rng } from './helpers/rng.js';

const children = new FlowChildren('tidepool-graph-crash-');
t.teardown(() => children.remove());
const { start, runToEnd } = children;
const SINKS = ['win', 'co', 'wj', 'copy'];
const FIXTURE = 'graph.ts';

function outputs(dir: string): Record<string, string[]> {
  const o: Record<string, string[]> = {};
  for (const s of SINKS) {
    const p = join(dir, `${s}.jsonl`);
    o[s] = existsSync(p) ? readFileSync(p, 'utf8').split('\n').filter(Boolean).sort() : [];
  }
  return o;
}

let reference: Record<string, string[]>;

t.test('an uninterrupted run (the reference)', async (t) => {
  const out = join(children.dir, 'ref-out');
  mkdirSync(out, { recursive: true });
  const e = await runToEnd(FIXTURE, join(children.dir, 'ref-state'), ['--set', 'parallelism=2'], { TP_OUT: out });
  t.equal(e.code, 0, e.stderr);
  reference = outputs(out);
  for (const s of SINKS) t.ok(reference[s]!.length > 0, `${s}: ${reference[s]!.length} lines`);
});

/** Runs with kills at random moments (after at least one new checkpoint), then to the end. */
async function crashLoop(t: Test, name: string, argsPerRun: string[][], seed: number): Promise<void> {
  const out = join(children.dir, `${name}-out`);
  mkdirSync(out, { recursive: true });
  const state = join(children.dir, `${name}-state`);
  const flowState = join(state, 'chk-graph');
  const r = rng(seed);
  const env = { TP_OUT: out, TP_RATE: '1500' };
  let kills = 0;
  for (const args of argsPerRun.slice(0, -1)) {
    const before = newestManifest(flowState);
    const run = start(FIXTURE, state, ['--set', 'checkpoint.intervalMs=100', ...args], env);
    const deadline = performance.now() + 60_000;
    while (!run.exited && newestManifest(flowState) <= before && performance.now() < deadline) await sleep(10);
    await sleep(Math.floor(r() * 300));
    if (run.exited) {
      const e = await run.done;
      t.equal(e.code, 0, `run ended before its kill: ${e.stderr}`);
      continue;
    }
    run.child.kill('SIGKILL');
    await run.done;
    kills++;
  }
  const e = await runToEnd(FIXTURE, state, ['--set', 'checkpoint.intervalMs=100', ...argsPerRun.at(-1)!], env);
  t.equal(e.code, 0, e.stderr);
  t.ok(kills >= 1, `${kills} runs killed`);
  const got = outputs(out);
  for (const s of SINKS) t.same(got[s], reference[s], `${s}: exactly the uninterrupted output`);
}

t.test('SIGKILLs at random moments: every sink exactly once', async (t) => {
  const p2 = ['--set', 'parallelism=2'];
  await crashLoop(t, 'kills', [p2, p2, p2, p2], 0x5eed);
});

t.test('stateful operators rescaled 1 → 3 → 2 across kills', async (t) => {
  const at = (n: number) => ['--set', 'parallelism=2', ...['win', 'co', 'wj'].flatMap((o) => ['--set', `operators.${o}.parallelism=${n}`])];
  await crashLoop(t, 'rescale', [at(1), at(3), at(2), at(2)], 0xab1e);
});
