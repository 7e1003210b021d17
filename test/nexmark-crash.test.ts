// SIGKILL crash loops of the Nexmark q5 (sliding-window counts, then a tumbling window
// over them) and q8 (tumbling-window reduce, then a window join) flows of
// examples/nexmark/, through the real CLI. For each query an uninterrupted run is the
// reference (itself checked against the plain single-threaded reference of
// perf/nexmark/reference.ts over the same events); then several runs on one state
// directory (real worker threads) are SIGKILLed at random moments, each after at least one new checkpoint, and
// a last run goes to the end: its output file must be exactly the uninterrupted output as
// a multiset (each line once). q5 runs at parallelism 2 throughout; q8's operators are
// rescaled 1 → 2 → 1 → 2 across kills (the source stays at 2: its positions are per
// subtask).
//
// Event time runs slowly (NEXMARK_EVENT_RATE) so that few events span 200 s: a hundred
// 2 s slides for q5, twenty 10 s windows for q8. The crash loops are also paced in
// wall-clock time (NEXMARK_RATE): the input lasts about 8 s, long enough for several
// checkpoints per run even on a loaded machine, so kills land while windows are open and
// firing. The reference runs are unpaced.
import t, { type Test } from 'tap';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { nexmarkEvents } from '../src/connectors/nexmark-events.js';
import { multiset, q5, q8 } from '../perf/nexmark/reference.js';
import { readManifest } from '../src/runtime/checkpoints.js';
import { FlowChildren, newestManifest, sleep } from './helpers/flow-child.js';
import { rng } from './helpers/rng.js';

const EXAMPLES = fileURLToPath(new URL('../../examples/nexmark/', import.meta.url));
const SEED = 11;
/** Wall-clock length of a crash loop's input (paced), seconds. */
const PACED_S = 8;

const children = new FlowChildren('tidepool-nexmark-crash-');
t.teardown(() => children.remove());
const { start, runToEnd } = children;

type Events = ReturnType<typeof nexmarkEvents> extends Iterable<infer E> ? E[] : never;

interface Query {
  name: 'q5' | 'q8';
  /** The flow's name: its state lives in `<state>/<flow>`. */
  flow: string;
  /** Events, and events per second of event time: events / eventRate = 200 s. */
  events: number;
  eventRate: number;
  plain: (e: Events) => unknown[];
}

const env = (q: Query, out: string, paced: boolean): Record<string, string> => ({
  NEXMARK_EVENTS: String(q.events),
  NEXMARK_SEED: String(SEED),
  NEXMARK_EVENT_RATE: String(q.eventRate),
  NEXMARK_OUT: out,
  ...(paced ? { NEXMARK_RATE: String(q.events / PACED_S) } : {}),
});

/** The sink file's lines, sorted (a multiset); none if it was never published. */
const lines = (path: string): string[] => (existsSync(path) ? readFileSync(path, 'utf8').split('\n').filter(Boolean).sort() : []);

/**
 * An uninterrupted run, its output checked against the plain reference. Inline (one
 * thread): cheaper than workers, and the crash loops, which use workers, must match it.
 */
async function reference(t: Test, q: Query, args: string[]): Promise<string[]> {
  const out = join(children.dir, `${q.name}-ref.jsonl`);
  const state = join(children.dir, `${q.name}-ref-state`);
  const e = await runToEnd(join(EXAMPLES, `${q.name}.ts`), state, [...args, '--set', 'execution=inline'], env(q, out, false));
  t.equal(e.code, 0, `the uninterrupted run exits 0 ${e.stderr}`);
  const got = lines(out);
  const want = multiset(q.plain([...nexmarkEvents({ events: q.events, seed: SEED, rate: q.eventRate })]));
  t.ok(want.length > 20, `the plain reference has ${want.length} rows`);
  t.same(multiset(got.map((l) => JSON.parse(l) as unknown)), want, 'the uninterrupted run equals the plain reference');
  return got;
}

/** How far the source has read by the newest checkpoint: the smallest next index of its subtasks. */
function checkpointedInput(flowState: string): number {
  const id = newestManifest(flowState);
  if (id === 0) return 0;
  try {
    const source = readManifest(flowState, id).tasks.find((x) => x.kinds[0] === 'source')!;
    return Math.min(...source.instances.map((i) => i.position as number));
  } catch {
    return 0; // removed by a newer checkpoint meanwhile: look again
  }
}

/**
 * Runs with `argsPerRun[k]`, each but the last SIGKILLed, the last to the end; the output
 * must equal `want` line for line. Run k is killed a random 0–400 ms after a new
 * checkpoint that has read past the k-th of random points spread over 10–85 % of the
 * input: kills land all along the input whatever the machine's speed (the first
 * checkpoint of a run, taken as its instances start, has read nothing yet).
 */
async function crashLoop(t: Test, q: Query, argsPerRun: string[][], want: string[], seed: number): Promise<void> {
  const out = join(children.dir, `${q.name}-crash.jsonl`);
  const state = join(children.dir, `${q.name}-crash-state`);
  const flowState = join(state, q.flow);
  const flowPath = join(EXAMPLES, `${q.name}.ts`);
  const r = rng(seed);
  const common = ['--set', 'checkpoint.intervalMs=100'];
  const killed = argsPerRun.length - 1;
  const points = Array.from({ length: killed }, (_, k) => Math.floor(q.events * (0.1 + (0.75 * (k + r())) / killed)));
  let kills = 0;
  const published: number[] = [];
  for (const [k, args] of argsPerRun.slice(0, -1).entries()) {
    const before = newestManifest(flowState);
    const run = start(flowPath, state, [...common, ...args], env(q, out, true));
    const deadline = performance.now() + 60_000;
    const due = () => newestManifest(flowState) > before && checkpointedInput(flowState) >= points[k]!;
    while (!run.exited && !due() && performance.now() < deadline) await sleep(10);
    await sleep(Math.floor(r() * 400));
    if (run.exited) {
      const e = await run.done;
      t.equal(e.code, 0, `run ended before its kill: ${e.stderr}`);
      continue;
    }
    run.child.kill('SIGKILL');
    await run.done;
    kills++;
    published.push(lines(out).length);
  }
  const e = await runToEnd(flowPath, state, [...common, ...argsPerRun.at(-1)!], env(q, out, true));
  t.equal(e.code, 0, `the last run exits 0 ${e.stderr}`);
  const story = `input read at the kill points: ${points.join(', ')} of ${q.events}; lines published after each kill: ${published.join(', ')} of ${want.length}`;
  t.equal(kills, killed, `${kills} runs killed (${story})`);
  t.ok(published.some((n) => n > 0 && n < want.length), 'some kill landed after part of the output was published');
  const got = lines(out);
  t.equal(got.length, want.length, `${got.length} lines`);
  t.same(got, want, 'exactly the uninterrupted output, each line once');
}

t.test('q5 (sliding windows, then a tumbling window) at parallelism 2: SIGKILLs at random moments', async (t) => {
  const q: Query = { name: 'q5', flow: 'nexmark-q5', events: 10_000, eventRate: 50, plain: q5 };
  const p2 = ['--set', 'parallelism=2'];
  const want = await reference(t, q, p2);
  await crashLoop(t, q, [p2, p2, p2, p2], want, 0x9505);
});

t.test('q8 (tumbling reduce, then a window join) rescaled 1 → 2 → 1 → 2 across SIGKILLs', async (t) => {
  const q: Query = { name: 'q8', flow: 'nexmark-q8', events: 16_000, eventRate: 80, plain: q8 };
  const at = (n: number) => ['--set', `parallelism=${n}`, '--set', 'operators.events.parallelism=2'];
  const want = await reference(t, q, at(1));
  await crashLoop(t, q, [at(1), at(2), at(1), at(2)], want, 0x9808);
});
