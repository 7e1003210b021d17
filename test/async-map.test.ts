// mapAsync and the functions that must not be asynchronous, through the real CLI.
//
// Fixtures: test-fixtures/flows/joins/async-map.ts (mapAsync with delays that depend on
// the record, module-level counters of calls in flight; a chained map reports them)
// and promise-misuse.ts (map/filter/flatMap/reduce/process given an async function, or
// a plain one returning a Promise). With real workers every subtask has its own module
// instance, so the counters are per subtask; inline runs at parallelism 1 share one.
import t from 'tap';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { manifestIds, newestManifest } from './helpers/flow-child.js';
import { sleep } from './helpers/cli.js';
import { FixtureRuns, readJsonl } from './helpers/join-runs.js';
import { rng } from './helpers/rng.js';
import { flow, sources, sinks } from '../src/index.js';

const children = new FixtureRuns('tidepool-async-map-');
t.teardown(() => children.remove());
let runNo = 0;

interface Tagged { i: number; max: number; held: number }

async function runAsync(env: Record<string, string>, args: string[]) {
  const out = join(children.dir, `${++runNo}-out.jsonl`);
  const exit = await children.runToEnd('async-map.ts', join(children.dir, `${runNo}-state`), args, { TP_OUT: out, ...env });
  return { exit, out: readJsonl<Tagged>(out), path: out };
}

const firstLine = (s: string) => s.trim().split('\n')[0] ?? '';
const INLINE = ['--set', 'execution=inline', '--set', 'parallelism=1'];

/** Problems with the order of `is` (must be ascending). */
function unordered(is: number[]): string[] {
  const bad: string[] = [];
  for (let k = 1; k < is.length; k++) if (is[k]! < is[k - 1]! && bad.length < 5) bad.push(`${is[k]} after ${is[k - 1]}`);
  return bad;
}

function once(is: number[], n: number): { missing: number; twice: number } {
  const seen = new Uint8Array(n);
  let twice = 0;
  for (const i of is) if (seen[i]++) twice++;
  return { missing: seen.filter((x) => x === 0).length, twice };
}

t.test('ordered: input order kept under random delays and a slow call every 60; calls and waiting results bounded by concurrency', async (t) => {
  const N = 600;
  const C = 6;
  const r = await runAsync({ TP_N: String(N), TP_CONC: String(C), TP_DELAY: '4', TP_SLOW_EVERY: '60', TP_SLOW_MS: '40' }, INLINE);
  t.equal(r.exit.code, 0, `run completes ${firstLine(r.exit.stderr)}`);
  t.same(r.out.map((o) => o.i), Array.from({ length: N }, (_, i) => i), 'every record once, in input order');
  const most = Math.max(...r.out.map((o) => o.max));
  t.ok(most <= C && most >= 2, `at most ${C} calls in flight, and more than one at a time (most: ${most})`);
  // Calls started but not emitted: in flight plus finished results waiting behind a slow
  // one. Bounded by concurrency: a slow call must not let the queue grow without limit.
  const held = Math.max(...r.out.map((o) => o.held));
  t.ok(held <= C, `at most ${C} calls started and not yet emitted (most: ${held})`);
});

t.test('unordered: every record exactly once, results as they finish, at most concurrency in flight', async (t) => {
  const N = 600;
  const C = 8;
  const r = await runAsync({ TP_N: String(N), TP_CONC: String(C), TP_DELAY: '6', TP_ORDERED: '0' }, INLINE);
  t.equal(r.exit.code, 0, `run completes ${firstLine(r.exit.stderr)}`);
  const is = r.out.map((o) => o.i);
  t.same(once(is, N), { missing: 0, twice: 0 }, 'no record missing or twice');
  t.equal(is.length, N, 'one result per record');
  t.ok(unordered(is).length > 0, 'results leave in completion order, not input order');
  const most = Math.max(...r.out.map((o) => o.max));
  t.ok(most <= C && most >= 2, `at most ${C} calls in flight (most: ${most})`);
  t.ok(Math.max(...r.out.map((o) => o.held)) <= C, 'calls started and not emitted ≤ concurrency');
});

t.test('real workers, parallelism 2: per subtask in order, at most concurrency in flight per subtask', async (t) => {
  const N = 800;
  const C = 4;
  const r = await runAsync({ TP_N: String(N), TP_CONC: String(C), TP_DELAY: '3', TP_SLOW_EVERY: '90', TP_SLOW_MS: '30' }, ['--set', 'parallelism=2']);
  t.equal(r.exit.code, 0, `run completes ${firstLine(r.exit.stderr)}`);
  const is = r.out.map((o) => o.i);
  t.same(once(is, N), { missing: 0, twice: 0 }, 'no record missing or twice');
  // The generator gives subtask s the indices ≡ s (mod 2); mapAsync s keeps their order.
  t.same([0, 1].flatMap((s) => unordered(is.filter((i) => i % 2 === s))), [], 'each subtask’s results in its input order');
  const most = Math.max(...r.out.map((o) => o.max));
  t.ok(most <= C && most >= 2, `at most ${C} in flight per subtask (most: ${most})`);
  t.ok(Math.max(...r.out.map((o) => o.held)) <= C, 'calls started and not emitted ≤ concurrency per subtask');
});

t.test('a rejected call stops the run with one line naming the operator and the record', async (t) => {
  const r = await runAsync({ TP_N: '200', TP_FAIL_AT: '37' }, [...INLINE, '--set', 'restart.maxAttempts=0']);
  t.not(r.exit.code, 0, 'the run fails');
  const lines = r.exit.stderr.trim().split('\n');
  t.equal(lines.length, 1, `one line: ${r.exit.stderr.trim()}`);
  t.match(lines[0], /operator 'call' \(subtask 0\) threw Error: service refused 37 on record \{"i":37\}/, 'names the operator, the error and the record');
});

t.test('a user error downstream of mapAsync results is one line too (not an unhandled rejection)', async (t) => {
  for (const ordered of ['1', '0']) {
    const r = await runAsync({ TP_N: '200', TP_THROW_AT: '41', TP_ORDERED: ordered }, [...INLINE, '--set', 'restart.maxAttempts=0']);
    t.not(r.exit.code, 0, `ordered=${ordered}: the run fails`);
    const lines = r.exit.stderr.trim().split('\n');
    t.equal(lines.length, 1, `ordered=${ordered}: one line: ${r.exit.stderr.trim().split('\n').slice(0, 3).join(' | ')}`);
    t.match(lines[0], /operator 'tag' \(subtask 0\) threw Error: tag failed on 41 on record \{"i":41\}/, `ordered=${ordered}: names the chained operator and the record`);
  }
  // Results released by a skipped call (errors.onRecord=skip for 'call' only): record 37
  // is slow and rejected, 38 waits behind it and makes 'tag' throw when it is released.
  const r = await runAsync({ TP_N: '200', TP_FAIL_AT: '37', TP_SLOW_EVERY: '38', TP_SLOW_MS: '50', TP_THROW_AT: '38' }, [...INLINE, '--set', 'restart.maxAttempts=0', '--set', 'operators.call.errors.onRecord=skip']);
  const lines = r.exit.stderr.trim().split('\n');
  t.not(r.exit.code, 0, 'released by a skipped call: the run fails');
  t.equal(lines.length, 1, `released by a skipped call: one line: ${lines.slice(0, 3).join(' | ')}`);
  t.match(lines[0], /operator 'tag' \(subtask 0\) threw Error: tag failed on 38 on record \{"i":38\}/, 'released by a skipped call: names the chained operator and the record');
});

// ---- functions that must not be asynchronous ----------------------------------------------

t.test('an async function for map, filter, flatMap, reduce, process, keyBy or a join is refused while building, naming the operator', async (t) => {
  const f = flow('misuse');
  const s = f.source('gen', sources.generator({ count: 3, make: (i) => ({ i }) }));
  const keyed = s.keyBy((r) => r.i);
  const cases: [string, () => unknown][] = [
    ["map 'm'", () => s.map('m', async (r) => r)],
    ["filter 'f'", () => s.filter('f', (async () => true) as never)],
    ["flatMap 'fm'", () => s.flatMap('fm', (async (r: unknown) => [r]) as never)],
    ["reduce 'r'", () => keyed.reduce('r', (async (a: number | undefined) => (a ?? 0) + 1) as never)],
    ["process 'p'", () => keyed.process('p', async () => undefined)],
    ["process 'pt'", () => keyed.process('pt', () => undefined, { onTimer: async () => undefined })],
    ['keyBy', () => s.keyBy(async (r) => r.i)],
    ["join 'j'", () => keyed.join('j', keyed, async (x, y) => [x, y])],
    ["process 'cp.left'", () => keyed.connect(keyed).process('cp', { left: async () => undefined, right: () => undefined })],
  ];
  for (const [what, build] of cases) {
    let err: (Error & { code?: string }) | undefined;
    try {
      build();
    } catch (e) {
      err = e as Error;
    }
    t.equal(err?.code, 'TIDEPOOL_BAD_OPTION', `${what}: refused with TIDEPOOL_BAD_OPTION`);
    t.ok(err?.message.includes(what) && err.message.includes('async') && !err.message.includes('\n'), `${what}: one line naming it (${err?.message})`);
  }
  t.doesNotThrow(() => s.mapAsync('ok', async (r) => r).sink('out', sinks.stdout()), 'mapAsync takes an async function');
});

t.test('through the CLI: an async map is one line naming the operator, before anything runs', async (t) => {
  const out = join(children.dir, 'async-map-cli.jsonl');
  const exit = await children.runToEnd('promise-misuse.ts', join(children.dir, 'pm-state'), INLINE, { TP_MODE: 'map-async', TP_OUT: out });
  t.not(exit.code, 0, 'fails');
  t.equal(exit.stderr.trim().split('\n').length, 1, `one line: ${exit.stderr.trim()}`);
  t.match(exit.stderr, /map 'bad' is given an async function/, 'names the operator');
});

t.test('a plain map, filter, flatMap, reduce or process returning a Promise fails at run time with one line', async (t) => {
  for (const kind of ['map', 'filter', 'flatMap', 'reduce', 'process']) {
    const out = join(children.dir, `${kind}-promise.jsonl`);
    const exit = await children.runToEnd('promise-misuse.ts', join(children.dir, `${kind}-state`), [...INLINE, '--set', 'restart.maxAttempts=0'], { TP_MODE: `${kind}-promise`, TP_OUT: out });
    t.not(exit.code, 0, `${kind}: fails`);
    const lines = exit.stderr.trim().split('\n');
    t.equal(lines.length, 1, `${kind}: one line: ${lines.slice(0, 3).join(' | ')}`);
    t.match(lines[0], new RegExp(`operator 'bad' \\(subtask 0\\) threw TypeError: ${kind} 'bad' returned a Promise.* on record \\{"i":3,`), `${kind}: names the operator and the record`);
  }
});

t.test('a map returning a Promise that later rejects: still one line (the rejection must not surface)', async (t) => {
  // With the default restart policy the run waits before retrying; a returned Promise
  // that rejects meanwhile must not crash the process with its own stack trace.
  const out = join(children.dir, 'rejected.jsonl');
  const exit = await children.runToEnd('promise-misuse.ts', join(children.dir, 'rejected-state'), [...INLINE, '--set', 'restart.maxAttempts=1', '--set', 'restart.backoffMs=200'], { TP_MODE: 'map-rejected', TP_OUT: out });
  t.not(exit.code, 0, 'fails');
  const lines = exit.stderr.trim().split('\n').filter((l) => !l.includes('restarting from the last checkpoint'));
  t.equal(lines.length, 1, `one line besides the restart notice: ${lines.slice(0, 4).join(' | ')}`);
  t.match(lines[0], /operator 'bad' \(subtask 0\) threw TypeError: map 'bad' returned a Promise/, 'the error names the operator');
});

// ---- exactly-once through SIGKILLs ------------------------------------------------------------

t.test('mapAsync through a SIGKILL crash loop (checkpoints every 100 ms) ends exactly-once', async (t) => {
  const N = 6000;
  const KEYS = 50;
  const keyOf = (i: number): string => `k${(Math.imul(i, 2654435761) >>> 0) % KEYS}`;
  const state = join(children.dir, 'crash-state');
  const out = join(children.dir, 'crash-out.jsonl');
  const env = { TP_N: String(N), TP_KEYS: String(KEYS), TP_KEYED: '1', TP_OUT: out, TP_CONC: '16', TP_DELAY: '3', TP_SLOW_EVERY: '200', TP_SLOW_MS: '30' };
  // Small batches: a source injects a barrier between two batches, and the pacing sleeps inside one.
  const args = ['--set', 'parallelism=2', '--set', 'checkpoint.intervalMs=100', '--set', 'batchSize=32'];
  const r = rng(99);
  const rounds: string[] = [];
  let committed: Buffer = Buffer.alloc(0);
  const bad: string[] = [];
  // Round 1 is killed early (likely before any checkpoint); every later one once it
  // completed two checkpoints of its own (the first is taken as it starts), plus 0–400 ms, so each round makes progress
  // whatever the machine's speed.
  const flowState = join(state, 'async-map');
  for (let round = 0; round < 5; round++) {
    const before = newestManifest(flowState);
    const run = children.start('async-map.ts', state, args, { ...env, TP_RATE: '600' });
    const extra = Math.round(r() * 400);
    const deadline = run.started + 30_000;
    while (!run.exited && performance.now() < deadline) {
      if (round === 0 ? performance.now() - run.started >= 300 + extra : newestManifest(flowState) > before + 1) {
        if (round > 0) await sleep(extra);
        break;
      }
      await sleep(5);
    }
    const killAt = Math.round(performance.now() - run.started);
    const killed = !run.exited && run.child.kill('SIGKILL');
    const e = await run.done;
    rounds.push(`#${round + 1} ${killed ? `killed at ${killAt} ms` : `exited ${e.code}: ${firstLine(e.stderr)}`}`);
    if (!killed && e.code !== 0) bad.push(`round ${round + 1} failed: ${firstLine(e.stderr)}`);
    let now: Buffer;
    try {
      now = readFileSync(out);
    } catch {
      now = Buffer.alloc(0);
    }
    if (!now.subarray(0, committed.length).equals(committed)) bad.push(`round ${round + 1}: output published before it changed`);
    committed = now;
  }
  t.comment(rounds.join('\n'));
  t.same(bad, [], 'each round killed or finished cleanly; published output never changes');
  t.ok(committed.length > 0, `the killed runs published progress (${committed.length} bytes) before the last run`);
  t.ok(manifestIds(flowState).length > 0, 'and left checkpoints to restore');
  const fin = await children.runToEnd('async-map.ts', state, args, { ...env, TP_RATE: '0' });
  t.equal(fin.code, 0, `the last run completes ${firstLine(fin.stderr)}`);

  const lines = readJsonl<{ key: string; value: { n: number; i: number } }>(out);
  t.equal(lines.length, N, 'one output line per input record');
  t.same(once(lines.map((l) => l.value.i), N), { missing: 0, twice: 0 }, 'no record missing or twice');
  t.equal(lines.filter((l) => keyOf(l.value.i) !== l.key).length, 0, 'each update under its record key');
  // Per key the counts go 1, 2, 3, …; the records of one source subtask (i mod 2) meet
  // the reduce in their input order (ordered mapAsync), whatever the interleaving.
  const last = new Map<string, number>();
  const lastOf = new Map<string, number>();
  const problems: string[] = [];
  for (const { key, value } of lines) {
    if (value.n !== (last.get(key) ?? 0) + 1 && problems.length < 5) problems.push(`${key}: update ${value.n} after ${last.get(key) ?? 0}`);
    last.set(key, value.n);
    const sub = `${key}/${value.i % 2}`;
    if (value.i <= (lastOf.get(sub) ?? -1) && problems.length < 5) problems.push(`${key}: record ${value.i} after ${lastOf.get(sub)}`);
    lastOf.set(sub, value.i);
  }
  t.same(problems, [], "each key's updates are 1, 2, 3, …; each subtask's records in input order");
  const reference = new Map<string, number>();
  for (let i = 0; i < N; i++) reference.set(keyOf(i), (reference.get(keyOf(i)) ?? 0) + 1);
  t.same(Object.fromEntries([...last].sort()), Object.fromEntries([...reference].sort()), 'final counts equal an uninterrupted run (a plain count)');
});
