// Checkpoints that exceed checkpoint.timeoutMs: aborted without a trace in the results
// (no manifest, the epoch's records published by the next checkpoint, exactly once),
// and more consecutive failures than checkpoint.tolerableFailures fail the run with one
// line — after which a rerun resumes from the last complete checkpoint.
//
// Fixture: test-fixtures/flows/checkpoint/slow-sink.ts, whose sink holds prepare(3).
import t from 'tap';
import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { FlowChildren, manifestIds } from './helpers/flow-child.js';
import { checkExactlyOnce } from './helpers/keyed-output.js';

const children = new FlowChildren('tidepool-chk-abort-');
const tmp = children.dir;
t.teardown(() => children.remove());
const { runToEnd } = children;
const keyOf = (i: number) => `k${i % 50}`;

interface Summary { checkpoints: { completed: number; aborted: number } }

t.test('a checkpoint that times out is aborted; within tolerableFailures the run completes exactly-once', async (t) => {
  const state = join(tmp, 'tolerated-state');
  const out = join(tmp, 'tolerated', 'out.jsonl');
  const summary = join(tmp, 'tolerated', 'summary.json');
  const n = 12_000;
  mkdirSync(join(tmp, 'tolerated'), { recursive: true });
  // The sink holds prepare(3) for 2 s: checkpoint 3 times out after 1.2 s; the next one
  // (triggered 100 ms after the abort) waits behind the held sink and completes once it
  // lets go — or, on a slow machine, times out too: 2 consecutive failures are tolerated.
  // The margins are wide on purpose: under a loaded test run (load 8 on 2 cores) a
  // 400 ms timeout also aborted the checkpoints after the held one.
  const e = await runToEnd('slow-sink.ts', state, [
    '--set', 'parallelism=2', '--set', 'checkpoint.intervalMs=100', '--set', 'checkpoint.timeoutMs=1200',
    '--set', 'checkpoint.tolerableFailures=2', '--set', 'restart.maxAttempts=0', '--summary', summary,
  ], { TP_N: String(n), TP_OUT: out, TP_RATE: '2000', TP_SLOW_PHASE: 'prepare', TP_SLOW_EPOCH: '3', TP_SLOW_MS: '2000' });
  t.equal(e.code, 0, `the run completes${e.stderr ? `: ${e.stderr.trim()}` : ''}`);
  const s = JSON.parse(readFileSync(summary, 'utf8')) as Summary;
  t.ok(s.checkpoints.aborted >= 1, `${s.checkpoints.aborted} checkpoint(s) aborted`);
  t.ok(s.checkpoints.completed >= 2, `${s.checkpoints.completed} completed after it`);
  t.notOk(manifestIds(join(state, 'chk-slow-sink')).includes(3), 'no manifest for the aborted checkpoint 3');
  checkExactlyOnce(t, out, n, keyOf, 'with an aborted checkpoint');
});

t.test('more consecutive timeouts than tolerableFailures fail the run with one line; a rerun resumes exactly-once', async (t) => {
  const state = join(tmp, 'failing-state');
  const out = join(tmp, 'failing', 'out.jsonl');
  const n = 12_000;
  mkdirSync(join(tmp, 'failing'), { recursive: true });
  const args = ['--set', 'parallelism=2', '--set', 'checkpoint.intervalMs=100', '--set', 'restart.maxAttempts=0'];
  const env = { TP_N: String(n), TP_OUT: out, TP_RATE: '2000' };
  const failed = await runToEnd('slow-sink.ts', state, [...args, '--set', 'checkpoint.timeoutMs=1000', '--set', 'checkpoint.tolerableFailures=0'],
    { ...env, TP_SLOW_PHASE: 'prepare', TP_SLOW_EPOCH: '3', TP_SLOW_MS: '4000' });
  const lines = failed.stderr.trim().split('\n').filter((l) => l !== '');
  t.not(failed.code, 0, 'exits non-zero');
  t.equal(lines.length, 1, `one stderr line: ${JSON.stringify(lines[0])}`);
  t.match(lines[0] ?? '', /checkpoint 3/, 'names the checkpoint');
  t.match(lines[0] ?? '', /timed out after 1000 ms/, 'says why');
  t.match(lines[0] ?? '', /tolerableFailures/, 'and which setting');
  t.same(manifestIds(join(state, 'chk-slow-sink')), [1, 2], 'checkpoints 1 and 2 are the complete ones');

  const rerun = await runToEnd('slow-sink.ts', state, args, env);
  t.equal(rerun.code, 0, `the rerun resumes from checkpoint 2 and completes${rerun.stderr ? `: ${rerun.stderr.trim()}` : ''}`);
  checkExactlyOnce(t, out, n, keyOf, 'after the failed run');
});

// Aborted checkpoints still flush: the stateful instances' snapshots were durable when
// the checkpoint timed out at the held sink. The I/O worker keeps a partition's newest
// flushes by count, so with only retain + 1 kept, a run of aborted checkpoints collected
// the page versions the oldest retained (older) checkpoint needs.
t.test('a run of aborted checkpoints keeps every retained checkpoint restorable', async (t) => {
  const state = join(tmp, 'many-aborts-state');
  const out = join(tmp, 'many-aborts', 'out.jsonl');
  const n = 40_000;
  mkdirSync(join(tmp, 'many-aborts'), { recursive: true });
  const args = ['--set', 'parallelism=2', '--set', 'checkpoint.intervalMs=100', '--set', 'checkpoint.retain=3', '--set', 'restart.maxAttempts=0'];
  const env = { TP_N: String(n), TP_OUT: out, TP_RATE: '2000' };
  // The sink holds prepare(3) for 4 s while checkpoints time out after 300 ms: about
  // ten aborted checkpoints whose 'counts' snapshots are durable (retain 3 + 1 = 4 kept
  // before the fix). Killed as soon as the first checkpoint after the hold completes.
  const run = children.start('slow-sink.ts', state, [...args, '--set', 'checkpoint.timeoutMs=300', '--set', 'checkpoint.tolerableFailures=40'],
    { ...env, TP_SLOW_PHASE: 'prepare', TP_SLOW_EPOCH: '3', TP_SLOW_MS: '4000' });
  const flowState = join(state, 'chk-slow-sink');
  const deadline = performance.now() + 90_000;
  while (!run.exited && performance.now() < deadline && !manifestIds(flowState).some((id) => id > 3)) await new Promise((r) => setTimeout(r, 10));
  run.child.kill('SIGKILL');
  await run.done;
  const ids = manifestIds(flowState);
  const after = ids.find((id) => id > 3);
  t.ok(after !== undefined && after >= 8, `checkpoints 3…${(after ?? 4) - 1} were aborted (retained now: ${ids.join(', ')})`);
  const oldest = ids[0]!;
  t.ok(oldest <= 2, `the oldest retained checkpoint (${oldest}) is from before the aborted ones`);
  const rerun = await runToEnd('slow-sink.ts', state, [...args, '--from-checkpoint', String(oldest)], env);
  t.equal(rerun.code, 0, `--from-checkpoint ${oldest} restores and completes${rerun.stderr ? `: ${rerun.stderr.trim()}` : ''}`);
  checkExactlyOnce(t, out, n, keyOf, `after going back to checkpoint ${oldest}`);
});
