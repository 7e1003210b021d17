// errors.onRecord: a record that makes user code throw fails the run (default), is
// skipped and counted, or goes exactly once to the dead-letter file as
// { operator, subtask, error, record } — also per operator, and across SIGKILLs.
// Fixture: test-fixtures/flows/checkpoint/poison.ts (a map and a reduce that throw).
import t from 'tap';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { FlowChildren, newestManifest, sleep } from './helpers/flow-child.js';

const children = new FlowChildren('tidepool-poison-');
t.teardown(() => children.remove());
const { start, runToEnd } = children;
const N = 2000;
const badMap = [...Array(N).keys()].filter((i) => i % 97 === 3);
const badReduce = [...Array(N).keys()].filter((i) => i % 89 === 5 && i % 97 !== 3);

const lines = (p: string) => (existsSync(p) ? readFileSync(p, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>) : []);
interface Summary { operators: { task: string; skippedRecords: number; deadLetters: number }[] }

/** Final sum per key of the records that neither throws on. */
function finalSums(skip: Set<number>): Map<number, number> {
  const m = new Map<number, number>();
  for (let i = 0; i < N; i++) if (!skip.has(i)) m.set(i % 10, (m.get(i % 10) ?? 0) + i);
  return m;
}
function lastValues(out: string): Map<number, number> {
  const m = new Map<number, number>();
  for (const l of lines(out)) m.set(l.key as number, l.value as number);
  return m;
}

t.test('default: the first poison record fails the run with one line naming operator and record', async (t) => {
  const e = await runToEnd('poison.ts', join(children.dir, 'fail-state'), ['--set', 'restart.maxAttempts=0'], { TP_OUT: join(children.dir, 'fail.jsonl') });
  t.not(e.code, 0);
  const m = /^tidepool: operator 'parse' \(subtask \d+\) threw Error: cannot parse (\d+) on record \{"i":(\d+)\}\n$/.exec(e.stderr);
  t.ok(m && m[1] === m[2] && Number(m[1]) % 97 === 3, `one line naming the operator and a poison record: ${e.stderr}`);
});

t.test("skip: dropped and counted, the rest processed (p=2, and p=1 with the reduce fused into the source's task)", async (t) => {
  for (const p of [2, 1]) {
    const out = join(children.dir, `skip-${p}.jsonl`);
    const summary = join(children.dir, `skip-summary-${p}.json`);
    const e = await runToEnd('poison.ts', join(children.dir, `skip-state-${p}`), ['--set', 'errors.onRecord=skip', '--set', `parallelism=${p}`, '--summary', summary], { TP_OUT: out });
    t.equal(e.code, 0, e.stderr);
    t.same(lastValues(out), finalSums(new Set([...badMap, ...badReduce])), `p=${p}: the sums of the good records`);
    const s = JSON.parse(readFileSync(summary, 'utf8')) as Summary;
    t.equal(s.operators.reduce((a, o) => a + o.skippedRecords, 0), badMap.length + badReduce.length, `p=${p}: every skipped record counted`);
    if (p === 2) t.equal(s.operators.find((o) => o.task === 'sum')!.skippedRecords, badReduce.length, 'the reduce counted its own');
    else t.same(s.operators.map((o) => o.task), ['gen→parse→sum→out'], 'p=1: one fused task');
  }
});

t.test('deadLetter from a task that ends in its sink (p=1: gen→parse→sum→out is one task)', async (t) => {
  const out = join(children.dir, 'dl1.jsonl');
  const dl = join(children.dir, 'dl1-dead.jsonl');
  const e = await runToEnd('poison.ts', join(children.dir, 'dl1-state'), ['--set', 'errors.onRecord=deadLetter', '--set', `errors.deadLetterPath=${dl}`, '--set', 'parallelism=1'], { TP_OUT: out });
  t.equal(e.code, 0, e.stderr);
  t.same(lastValues(out), finalSums(new Set([...badMap, ...badReduce])));
  const dead = lines(dl);
  t.same(dead.filter((d) => d.operator === 'parse').map((d) => (d.record as { i: number }).i).sort((a, b) => a - b), badMap, 'the map\'s poison records, once each');
  t.same(dead.filter((d) => d.operator === 'sum').map((d) => (d.record as { i: number }).i).sort((a, b) => a - b), badReduce, 'the fused reduce\'s, once each');
});

t.test('deadLetter: each poison record once in the dead-letter file; per-operator override', async (t) => {
  const out = join(children.dir, 'dl.jsonl');
  const dl = join(children.dir, 'dl-dead.jsonl');
  const e = await runToEnd('poison.ts', join(children.dir, 'dl-state'), ['--set', 'errors.onRecord=deadLetter', '--set', `errors.deadLetterPath=${dl}`, '--set', 'operators.parse.errors.onRecord=skip', '--set', 'parallelism=2'], { TP_OUT: out });
  t.equal(e.code, 0, e.stderr);
  t.same(lastValues(out), finalSums(new Set([...badMap, ...badReduce])));
  const dead = lines(dl);
  t.same(dead.map((d) => (d.record as { i: number }).i).sort((a, b) => a - b), badReduce, 'only the reduce dead-letters (parse skips)');
  for (const d of dead) {
    t.equal(d.operator, 'sum');
    t.ok(d.subtask === 0 || d.subtask === 1);
    t.match(d.error as string, /^RangeError: bad \d+$/);
  }
});

t.test('deadLetter across SIGKILLs: exactly once', async (t) => {
  const state = join(children.dir, 'kill-state');
  const out = join(children.dir, 'kill.jsonl');
  const dl = join(children.dir, 'kill-dead.jsonl');
  const args = ['--set', 'errors.onRecord=deadLetter', '--set', `errors.deadLetterPath=${dl}`, '--set', 'checkpoint.intervalMs=100'];
  const env = { TP_OUT: out, TP_RATE: '800' };
  for (let k = 0; k < 2; k++) {
    const before = newestManifest(join(state, 'chk-poison'));
    const r = start('poison.ts', state, args, env);
    while (!r.exited && newestManifest(join(state, 'chk-poison')) < before + 2) await sleep(10);
    r.child.kill('SIGKILL');
    await r.done;
  }
  const e = await runToEnd('poison.ts', state, args, env);
  t.equal(e.code, 0, e.stderr);
  const dead = lines(dl).map((d) => `${d.operator}:${(d.record as { i: number }).i}`).sort();
  t.same(dead, [...badMap.map((i) => `parse:${i}`), ...badReduce.map((i) => `sum:${i}`)].sort(), 'every poison record exactly once');
  t.same(lastValues(out), finalSums(new Set([...badMap, ...badReduce])));
});
