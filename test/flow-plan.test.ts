// The physical plan (unit tests, no threads): chaining into tasks, edge partitioning,
// parallelism caps, key group ranges and their inverse, the state hash; and the flow
// builder's one-line TypeErrors for bad flows, and config operators that name no
// operator.
import t, { type Test } from 'tap';
import { flow, sources, sinks, Flow } from '../src/index.js';
import { anySink } from './helpers/any-sink.js';
import { planFlow, keyGroupRange, subtaskForKeyGroup, describePlan, stateOperatorOf, type PlanOptions, type PhysicalPlan } from '../src/flow/plan.js';

const opts = (o: Partial<PlanOptions> = {}): PlanOptions => ({ parallelism: 2, keyGroups: 128, chaining: true, operators: {}, ...o });

/** src → m → f → keyBy → r → m2 → out */
const pipeline = () =>
  flow('pipeline')
    .source('src', sources.generator({ count: 1000, make: (i) => i }))
    .map('m', (x: number) => x + 1)
    .filter('f', (x: number) => x % 3 !== 0)
    .keyBy((x: number) => x % 10)
    .reduce('r', (acc: number | undefined, x: number) => (acc ?? 0) + x)
    .map('m2', (u) => u.value)
    .sink('out', anySink<number>());

const shape = (p: PhysicalPlan) => p.tasks.map((x) => `${x.operators.join('+')}×${x.parallelism}${x.stateful ? '!' : ''}`);
const edges = (p: PhysicalPlan) => p.edges.map((e) => `${e.from}-${e.partitioning}${e.keyOperator ? `(${e.keyOperator})` : ''}->${e.to}`);

t.test('chaining: stateless 1:1 operators share a task, also behind a stateful one; two stateful ones never do; keyBy is a hash edge', async (t) => {
  const plan = planFlow(pipeline(), opts());
  t.same(shape(plan), ['src+m+f×2', 'r+m2+out×2!']);
  t.same(edges(plan), ['0-hash(r)->1']);
  t.same(plan.tasks.map((x) => x.label), ['src→m→f', 'r→m2→out']);
  t.same(plan.tasks.map((x) => x.kinds), [['source', 'map', 'filter'], ['reduce', 'map', 'sink']]);
  t.same(plan.tasks.map((x) => x.index), [0, 1]);
  t.equal(plan.flow, 'pipeline');
  t.equal(plan.keyGroups, 128);
  t.equal(describePlan(plan), '[src→m→f]×2 --hash--> [r→m2→out]×2');

  // Two stateful operators in a row are two tasks (a keyBy between them: hash).
  const two = flow('two')
    .source('s', sources.generator({ count: 10, make: (i) => i }))
    .keyBy((x: number) => x % 2)
    .reduce('a', (acc: number | undefined, x: number) => (acc ?? 0) + x)
    .keyBy((u) => u.key)
    .process('b', (u, ctx) => ctx.emit(u))
    .sink('out', anySink());
  const p2 = planFlow(two, opts({ parallelism: 3 }));
  t.same(shape(p2), ['s×3', 'a×3!', 'b+out×3!']);
  t.same(edges(p2), ['0-hash(a)->1', '1-hash(b)->2']);

  // A keyed sink: a hash edge into the sink, never chained to the stateful task.
  const keyedSink = flow('ks').source('s', sources.generator({ count: 10, make: (i) => i })).keyBy((x: number) => x).sink('out', anySink());
  t.same(edges(planFlow(keyedSink, opts())), ['0-hash(out)->1']);
  t.same(shape(planFlow(keyedSink, opts())), ['s×2', 'out×2']);
});

t.test('fusion at p=1: a reduce joins the stateless task feeding it (no ring), other stateful operators do not', async (t) => {
  const plan = planFlow(pipeline(), opts({ parallelism: 1 }));
  t.same(shape(plan), ['src+m+f+r+m2+out×1!'], 'source, steps, reduce and sink in one stateful task');
  t.same(edges(plan), []);
  t.equal(plan.tasks[0]!.label, 'src→m→f→r→m2→out');
  t.equal(stateOperatorOf(plan.tasks[0]!), 'r', 'its state is the reduce\'s');
  t.same(shape(planFlow(pipeline(), opts({ parallelism: 1, chaining: false }))).length, 6, 'chaining off: nothing fused');
  t.same(shape(planFlow(pipeline(), opts({ parallelism: 1, operators: { r: { parallelism: 2 } } }))), ['src+m+f×1', 'r×2!', 'm2+out×1'], 'not across parallelism 1 → 2');
  t.same(shape(planFlow(pipeline(), opts({ parallelism: 2, operators: { r: { parallelism: 1 } } }))), ['src+m+f×2', 'r×1!', 'm2+out×2'], 'nor 2 → 1');
  t.equal(planFlow(pipeline(), opts({ parallelism: 1 })).stateHash, planFlow(pipeline(), opts()).stateHash, 'the state hash does not change');

  // Two reduces in a row: the second still starts a task (no two stateful operators share one).
  const two = flow('two')
    .source('s', sources.generator({ count: 10, make: (i) => i }))
    .keyBy((x: number) => x % 2)
    .reduce('a', (acc: number | undefined, x: number) => (acc ?? 0) + x)
    .keyBy((u) => u.key)
    .reduce('b', (acc: number | undefined, u) => (acc ?? 0) + u.value)
    .sink('out', anySink());
  t.same(shape(planFlow(two, opts({ parallelism: 1 }))), ['s+a×1!', 'b+out×1!']);
  // A process (timers, watermarks) or a window is not fused; nor a reduce behind a branch or mapAsync.
  const proc = flow('proc').source('s', sources.generator({ count: 10, make: (i) => i })).keyBy((x: number) => x).process('p', (x, ctx) => ctx.emit(x)).sink('out', anySink());
  t.same(shape(planFlow(proc, opts({ parallelism: 1 }))), ['s×1', 'p+out×1!']);
  const g = flow('branch');
  const src = g.source('s', sources.generator({ count: 10, make: (i) => i }));
  src.keyBy((x: number) => x).reduce('r', (acc: number | undefined, x: number) => (acc ?? 0) + x).sink('o1', anySink());
  src.map('m', (x: number) => x).sink('o2', anySink());
  t.same(shape(planFlow(g, opts({ parallelism: 1 }))), ['s+m×1', 'r+o1×1!', 'o2×1'], 'a source feeding two consumers keeps its reduce apart');
  const asyncFlow = flow('async').source('s', sources.generator({ count: 10, make: (i) => i })).mapAsync('a', async (x: number) => x).keyBy((x: number) => x).reduce('r', (acc: number | undefined, x: number) => (acc ?? 0) + x).sink('out', anySink());
  t.same(shape(planFlow(asyncFlow, opts({ parallelism: 1 }))), ['s×1', 'a×1', 'r+out×1!']);
});

t.test('different parallelism → rebalance, and operators.<name>.parallelism', async (t) => {
  const plan = planFlow(pipeline(), opts({ operators: { m: { parallelism: 3 }, m2: { parallelism: 1 } } }));
  t.same(shape(plan), ['src×2', 'm×3', 'f×2', 'r×2!', 'm2×1', 'out×2']);
  t.same(edges(plan), ['0-rebalance->1', '1-rebalance->2', '2-hash(r)->3', '3-rebalance->4', '4-rebalance->5']);

  // Caps: a source's maxParallelism, a sink's default and max, and keyGroups.
  const small = flow('small').source('three', sources.array([1, 2, 3])).map('m', (x: number) => x).sink('out', sinks.stdout());
  t.same(shape(planFlow(small, opts({ parallelism: 8 }))), ['three×3', 'm×8', 'out×1']);
  const file = flow('file').source('s', sources.generator({ count: 100, make: (i) => i })).sink('out', sinks.file({ path: '/tmp/never-written.jsonl' }));
  t.same(shape(planFlow(file, opts({ parallelism: 4 }))), ['s×4', 'out×1'], 'a file sink defaults to one instance');
  t.same(shape(planFlow(file, opts({ parallelism: 4, operators: { out: { parallelism: 3 } } }))), ['s×4', 'out×3'], '…unless configured');
  t.same(shape(planFlow(pipeline(), opts({ parallelism: 8, keyGroups: 4 }))), ['src+m+f×4', 'r+m2+out×4!'], 'parallelism ≤ keyGroups');
});

t.test('chaining off: one task per operator', async (t) => {
  const plan = planFlow(pipeline(), opts({ chaining: false }));
  t.same(shape(plan), ['src×2', 'm×2', 'f×2', 'r×2!', 'm2×2', 'out×2']);
  t.same(edges(plan), ['0-forward->1', '1-forward->2', '2-hash(r)->3', '3-forward->4', '4-forward->5']);
  t.equal(plan.tasks.length, pipeline().operators.length);
});

t.test('the state hash follows the stateful part of the flow only', async (t) => {
  const base = planFlow(pipeline(), opts()).stateHash;
  t.match(base, /^[0-9a-f]{16}$/);
  t.equal(planFlow(pipeline(), opts({ parallelism: 4, chaining: false })).stateHash, base, 'parallelism and chaining do not change it');
  t.not(planFlow(pipeline(), opts({ keyGroups: 256 })).stateHash, base, 'keyGroups does');
  const renamed = flow('pipeline')
    .source('src', sources.generator({ count: 1000, make: (i) => i }))
    .keyBy((x: number) => x % 10)
    .reduce('r2', (acc: number | undefined, x: number) => (acc ?? 0) + x)
    .sink('out', anySink());
  t.not(planFlow(renamed, opts()).stateHash, base, 'renaming a stateful operator does');
});

t.test('key groups: ranges cover 0..G-1 exactly once and subtaskForKeyGroup inverts them', async (t) => {
  const layout: string[] = [];
  const mismatches: string[] = [];
  for (const G of [8, 10, 13, 128, 1000, 32768]) {
    for (let p = 1; p <= 8; p++) {
      let next = 0; // the ranges, in subtask order, must tile [0, G)
      for (let i = 0; i < p; i++) {
        const [start, end] = keyGroupRange(i, p, G);
        if (start !== next || end <= start) layout.push(`G=${G} p=${p}: range ${i} is [${start}, ${end}) after ${next}`);
        next = end;
        for (let g = start; g < end; g++) {
          const back = subtaskForKeyGroup(g, p, G);
          if (back !== i) mismatches.push(`G=${G} p=${p}: group ${g} is in subtask ${i}'s range [${start}, ${end}) but subtaskForKeyGroup says ${back}`);
        }
      }
      if (next !== G) layout.push(`G=${G} p=${p}: ranges end at ${next}`);
    }
  }
  t.same(layout, [], 'the ranges of p subtasks cover every group exactly once, in order');
  t.same(mismatches.slice(0, 5), [], `subtaskForKeyGroup inverts keyGroupRange (${mismatches.length} mismatches)`);
  // The router (subtaskForKeyGroup) alone: every subtask owns ⌊G/p⌋ or ⌈G/p⌉ groups.
  for (const [G, p] of [[128, 3], [10, 4], [1000, 7]] as const) {
    const sizes = new Array<number>(p).fill(0);
    for (let g = 0; g < G; g++) sizes[subtaskForKeyGroup(g, p, G)]!++;
    t.ok(sizes.every((n) => n === Math.floor(G / p) || n === Math.ceil(G / p)), `G=${G} p=${p}: balanced ${sizes.join('/')}`);
  }
});

/** The error fn throws; asserts a one-line TypeError whose message matches every fragment. */
function typeError(t: Test, fn: () => unknown, ...fragments: (string | RegExp)[]): void {
  let err: unknown;
  try {
    fn();
  } catch (e) {
    err = e;
  }
  if (!(err instanceof TypeError)) {
    t.fail(`expected a TypeError matching ${fragments.join(', ')}, got ${err === undefined ? 'no error' : String(err)}`);
    return;
  }
  t.notMatch(err.message, /\n/, `one line: ${err.message}`);
  for (const f of fragments) t.match(err.message, f);
}

t.test('builder errors are one-line TypeErrors naming the problem', async (t) => {
  const src = () => flow('f').source('s', sources.array([1, 2, 3]));
  typeError(t, () => src().map('a', (x: number) => x).filter('a', () => true), "'a'", /twice|unique/);
  typeError(t, () => src().map('s', (x: number) => x), "'s'", /twice|unique/); // a step named like the source
  typeError(t, () => src().keyBy((x: number) => x).reduce('s', (a: number | undefined) => a ?? 0), "'s'", /twice|unique/);
  typeError(t, () => src().sink('s', sinks.stdout()), "'s'", /twice|unique/);
  for (const bad of ['', 'has space', 'a/b', '-leading', 'x'.repeat(101), 'ünïcode']) {
    typeError(t, () => src().map(bad, (x: number) => x), JSON.stringify(bad), /name/);
  }
  typeError(t, () => src().map(42 as unknown as string, (x: number) => x), '42', /name/);
  typeError(t, () => flow('has space'), '"has space"', /flow name/);
  typeError(t, () => flow(''), /flow name/);
  typeError(t, () => flow('f').source('bad name', sources.array([1])), '"bad name"');

  // Missing or wrong connectors.
  typeError(t, () => src().sink('out', undefined as never), "'out'", /sink/);
  typeError(t, () => src().sink('out', sources.array([1]) as never), "'out'", /sink/);
  typeError(t, () => src().keyBy((x: number) => x).sink('out', {} as never), "'out'", /sink/);
  typeError(t, () => flow('f').source('in', sinks.stdout() as never), "'in'", /source/);
  typeError(t, () => flow('f').source('in', undefined as never), "'in'", /source/);

  // Functions.
  typeError(t, () => src().map('m', 5 as never), "'m'", /function/);
  typeError(t, () => src().filter('keep', 'yes' as never), "'keep'", /function/);
  typeError(t, () => src().keyBy('id' as never), /keyBy/, /function/);
  typeError(t, () => src().keyBy((x: number) => x).reduce('r', null as never), "'r'", /function/);

  // A stream used twice fans out within its flow: names stay unique across the graph.
  const base = src().map('a', (x: number) => x * 2);
  const f1 = base.map('b', (x: number) => x).sink('out', sinks.stdout());
  typeError(t, () => base.filter('b', () => true), "'b'", /twice|unique/);
  base.filter('c', () => true).sink('out2', sinks.stdout());
  t.same(f1.operators.map((o) => `${o.kind}:${o.name}`), ['source:s', 'map:a', 'map:b', 'sink:out', 'filter:c', 'sink:out2']);

  // A flow without a sink (only constructible by hand) cannot be planned.
  const noSink = new Flow('nosink', flow('nosink').source('s', sources.array([1])).map('m', (x: number) => x).sink('out', anySink()).operators.slice(0, 2));
  t.throws(() => planFlow(noSink, opts()), { message: /sink/ });
});

t.test('config operators that name no operator are rejected, naming the name', async (t) => {
  let err: (Error & { code?: string }) | undefined;
  try {
    planFlow(pipeline(), opts({ operators: { r: { parallelism: 2 }, nope: { parallelism: 2 } } }));
  } catch (e) {
    err = e as Error & { code?: string };
  }
  t.ok(err, 'rejected');
  t.equal(err?.code, 'TIDEPOOL_CONFIG_INVALID');
  t.match(err?.message, /'nope'/);
  t.match(err?.message, /operators\.nope/);
  t.notMatch(err?.message, /\n/);
  t.doesNotThrow(() => planFlow(pipeline(), opts({ operators: { src: {}, out: { parallelism: 1 } } })), 'known names are fine');
});
