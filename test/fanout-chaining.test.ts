// Fan-out chaining: stateless steps chain into their producer's task even when it has
// several consumers (Flink's rule: the consumer has one input), so a task is a tree. The
// plan: which operators share a task, where a sink must stay alone. The run: a branch
// that changes its record in place gets its own copy, so the filter branch and the ring
// consumer see the records as the source made them (real workers and file sinks).
import t from 'tap';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { flow, sources, run } from '../src/index.js';
import { anySink } from './helpers/any-sink.js';
import { planFlow, describePlan } from '../src/flow/plan.js';

const opts = { parallelism: 1, keyGroups: 128, chaining: true, operators: {} };

t.test('plan: fanned-out steps join the producer; sinks stay at the end of an unbranched task', async (t) => {
  const f = flow('tree');
  const src = f.source('src', sources.generator({ count: 10, make: (i) => i }));
  src.filter('a', (x: number) => x > 1).map('a2', (x: number) => x * 2).sink('a-out', anySink<number>());
  src.map('b', (x: number) => x + 1).keyBy((x: number) => x % 3).reduce('r', (acc: number | undefined, x: number) => (acc ?? 0) + x).sink('r-out', anySink());
  src.sink('raw', anySink<number>());
  const plan = planFlow(f, opts);
  t.same(plan.tasks.map((x) => x.label), ['src→(a→a2|b)', 'a-out', 'r→r-out', 'raw']);
  t.same(plan.edges.map((e) => `${e.fromOperator}-${e.partitioning}->${e.toOperator}`), ['a2-forward->a-out', 'b-hash->r', 'src-forward->raw']);
  t.match(describePlan(plan), /^\[src→\(a→a2\|b\)\]×1 /);
  // Without fan-out nothing changes: a linear chain still takes its sink.
  const line = flow('line');
  line.source('s', sources.generator({ count: 10, make: (i) => i })).map('m', (x: number) => x).sink('o', anySink<number>());
  t.same(planFlow(line, opts).tasks.map((x) => x.label), ['s→m→o']);
  // chaining=false keeps every operator alone.
  t.same(planFlow(f, { ...opts, chaining: false }).tasks.length, 8);
});

t.test('run: a mutating branch cannot change what its siblings and ring consumers see', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'tidepool-fanout-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  process.env.TIDEPOOL_MODULE_CACHE = join(dir, 'cache');
  for (const execution of ['workers', 'inline']) {
    const out = join(dir, execution);
    mkdirSync(out);
    process.env.TP_OUT = out;
    const fixture = join(process.cwd(), 'test-fixtures/flows/fanout/branches.ts');
    const state = join(dir, `state-${execution}`);
    let tasks: string[];
    if (execution === 'workers') {
      tasks = (await run(fixture, { state, overrides: { parallelism: 1, execution } })).operators.map((o) => o.task);
    } else {
      // A child process: this one has the fixture module (and its TP_OUT) cached already.
      const summaryFile = join(dir, 'inline-summary.json');
      execFileSync(process.execPath, ['dist/src/cli/main.js', 'run', fixture, '--state', state, '--set', 'execution=inline', '--set', 'parallelism=1', '--summary', summaryFile], { env: process.env, stdio: 'pipe' });
      tasks = (JSON.parse(readFileSync(summaryFile, 'utf8')) as { operators: { task: string }[] }).operators.map((o) => o.task);
    }
    t.same(tasks, ['src→(mutate|evens)', 'mutated', 'evens-out', 'copy'], `${execution}: the branches run in the source's task`);
    const lines = (name: string) => readFileSync(join(out, `${name}.jsonl`), 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l) as { id: number; tag: string; nested: { n: number } });
    const mutated = lines('mutated');
    const evens = lines('evens');
    const copy = lines('copy');
    t.equal(mutated.length, 5000, `${execution}: every record through the map`);
    t.ok(mutated.every((r) => r.tag === 'changed' && r.nested.n === -1), `${execution}: the map's changes are in its own output`);
    t.equal(evens.length, 2500, `${execution}: the filter keeps the even ids`);
    t.ok(evens.every((r) => r.tag === 'orig' && r.nested.n === r.id), `${execution}: the filter branch sees the records unchanged`);
    t.equal(copy.length, 5000, `${execution}: every record through the ring`);
    t.ok(copy.every((r) => r.tag === 'orig' && r.nested.n === r.id), `${execution}: the ring consumer sees the records unchanged`);
  }
});
