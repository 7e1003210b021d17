// The joins against a plain model: random two-sided event streams with bounded disorder
// (≤ maxOutOfOrdernessMs, so no record is ever late and every output is determined by
// the events), run through test-fixtures/flows/joins/joins.ts by the real CLI.
//
//   join          every pair of equal keys exactly once, timestamp max(x.t, y.t)
//   intervalJoin  pairs with x.t + lower ≤ y.t ≤ x.t + upper (inclusive; negative lower,
//                 lower == upper, both negative), timestamp max(x.t, y.t)
//   windowJoin    pairs in the same tumbling / sliding window, once per window, with
//                 the window and timestamp end − 1
// Timestamps are observed through the keyed process 'stamp' (ctx.timestamp). State:
// after a run, interval and window tables and timers are empty, inner-join tables hold
// every record; during a pause of both sources a checkpoint's key counts are exactly
// what the watermark leaves; join ttlMs: records older than ttl (processing time) no
// longer match, and their entries are purged.
import t from 'tap';
import fc from 'fast-check';
import { rng } from './helpers/rng.js';
import { sleep } from './helpers/cli.js';
import { FixtureRuns, diff, inspect, tableKeys, type Inspected } from './helpers/join-runs.js';

const runs = new FixtureRuns('tidepool-joins-model-');
t.teardown(() => runs.remove());

interface Ev { k: number; t: number; id: number }
interface Out { op: string; x: number; y: number; w?: { start: number; end: number }; ts: number }
interface Spec {
  a: Ev[];
  b: Ev[];
  ooo: number;
  intervals: [number, number][];
  tumbling: { sizeMs: number; offsetMs: number };
  sliding: { sizeMs: number; slideMs: number; offsetMs: number };
  pauses?: { a: { at: number; ms: number }[]; b: { at: number; ms: number }[] };
}

const mod = (a: number, m: number) => ((a % m) + m) % m;

/**
 * n events over `keys` keys, each side chosen at random; base times never decrease
 * (steps 0…maxStep) and each event is up to `ooo` before its base, so any earlier event
 * is at most `ooo` later than a given one: never late for watermark max − ooo.
 */
function events(seed: number, n: number, keys: number, ooo: number, maxStep: number, start: number, firstId = 0): { a: Ev[]; b: Ev[]; base: number } {
  const r = rng(seed);
  const a: Ev[] = [];
  const b: Ev[] = [];
  let base = start;
  for (let i = 0; i < n; i++) {
    base += Math.floor(r() * (maxStep + 1));
    const e = { k: Math.floor(r() * keys), t: base - Math.floor(r() * (ooo + 1)), id: firstId + i };
    (r() < 0.5 ? a : b).push(e);
  }
  return { a, b, base };
}

const show = (o: Omit<Out, 'ts'> & { ts: number }) => `${o.op} ${o.x}×${o.y}${o.w ? ` [${o.w.start},${o.w.end})` : ''} @${o.ts}`;

/** Start of every sliding window [s, s + size) holding both times. */
function slidingStarts(s: Spec['sliding'], t1: number, t2: number): number[] {
  const out: number[] = [];
  const lo = Math.max(t1, t2) - s.sizeMs + 1;
  for (let st = lo + mod(s.offsetMs - lo, s.slideMs); st <= Math.min(t1, t2); st += s.slideMs) out.push(st);
  return out;
}

function model(spec: Spec): string[] {
  const out: string[] = [];
  const T = spec.tumbling;
  for (const x of spec.a) {
    for (const y of spec.b) {
      if (x.k !== y.k) continue;
      const ts = Math.max(x.t, y.t);
      out.push(show({ op: 'inner', x: x.id, y: y.id, ts }));
      spec.intervals.forEach(([lo, hi], i) => {
        if (x.t + lo <= y.t && y.t <= x.t + hi) out.push(show({ op: `iv${i}`, x: x.id, y: y.id, ts }));
      });
      const s1 = x.t - mod(x.t - T.offsetMs, T.sizeMs);
      if (s1 === y.t - mod(y.t - T.offsetMs, T.sizeMs)) out.push(show({ op: 'wt', x: x.id, y: y.id, w: { start: s1, end: s1 + T.sizeMs }, ts: s1 + T.sizeMs - 1 }));
      for (const st of slidingStarts(spec.sliding, x.t, y.t)) {
        out.push(show({ op: 'ws', x: x.id, y: y.id, w: { start: st, end: st + spec.sliding.sizeMs }, ts: st + spec.sliding.sizeMs - 1 }));
      }
    }
  }
  return out;
}

interface Params {
  seed: number;
  n: number;
  keys: number;
  ooo: number;
  maxStep: number;
  start: number;
  iv: [number, number];
  eq: number;
  neg: [number, number];
  tSize: number;
  tOff: number;
  sSize: number;
  sSlide: number;
  sOff: number;
}

function specOf(p: Params): Spec {
  const { a, b } = events(p.seed, p.n, p.keys, p.ooo, p.maxStep, p.start);
  return {
    a, b, ooo: p.ooo,
    intervals: [[p.iv[0], p.iv[0] + p.iv[1]], [p.eq, p.eq], [p.neg[0], p.neg[0] + p.neg[1]]],
    tumbling: { sizeMs: p.tSize, offsetMs: p.tOff },
    sliding: { sizeMs: p.sSize, slideMs: Math.min(p.sSlide, p.sSize), offsetMs: p.sOff },
  };
}

const params: fc.Arbitrary<Params> = fc.record({
  seed: fc.integer({ min: 1, max: 2 ** 31 - 1 }),
  n: fc.integer({ min: 20, max: 240 }),
  keys: fc.integer({ min: 2, max: 7 }),
  ooo: fc.integer({ min: 0, max: 25 }),
  maxStep: fc.integer({ min: 0, max: 6 }),
  start: fc.integer({ min: -200, max: 200 }),
  iv: fc.tuple(fc.integer({ min: -15, max: 10 }), fc.integer({ min: 0, max: 15 })),
  eq: fc.integer({ min: -6, max: 6 }),
  neg: fc.tuple(fc.integer({ min: -20, max: -3 }), fc.integer({ min: 0, max: 2 })),
  tSize: fc.integer({ min: 1, max: 30 }),
  tOff: fc.integer({ min: -40, max: 40 }),
  sSize: fc.integer({ min: 2, max: 30 }),
  sSlide: fc.integer({ min: 1, max: 30 }),
  sOff: fc.integer({ min: -40, max: 40 }),
});

const EMPTIED = (s: Spec) => [...s.intervals.flatMap((_, i) => [`iv${i}/~left`, `iv${i}/~right`, `iv${i}/~timers/event`]), 'wt/~windows', 'wt/~timers/event', 'ws/~windows', 'ws/~timers/event'];

/** Runs the joins fixture on `spec` and checks output and final state against the model. */
async function checkRun(spec: Spec, args: string[], what: string): Promise<string[]> {
  const r = await runs.run<Out>('joins.ts', spec, args);
  const problems: string[] = [];
  if (r.exit.code !== 0) return [`${what}: exit ${r.exit.code ?? r.exit.signal}: ${r.exit.stderr.trim().split('\n')[0]}`];
  const d = diff(model(spec), r.out.map(show));
  if (d.missing.length) problems.push(`${what}: missing ${d.missing.join('; ')}`);
  if (d.extra.length) problems.push(`${what}: unexpected ${d.extra.join('; ')}`);
  const keys = tableKeys(r.state);
  const left = EMPTIED(spec).filter((k) => (keys[k] ?? 0) !== 0).map((k) => `${k}: ${keys[k]}`);
  if (left.length) problems.push(`${what}: state left after the final watermark: ${left.join(', ')}`);
  if (keys['inner/~left'] !== spec.a.length || keys['inner/~right'] !== spec.b.length) {
    problems.push(`${what}: inner join keeps ${keys['inner/~left']}/${keys['inner/~right']} entries, expected ${spec.a.length}/${spec.b.length}`);
  }
  return problems;
}

t.test('the model agrees with itself on a hand-checked case', async (t) => {
  // x at 10, y at 12, same key: inner; [-3, 4] (12 ∈ [7, 14]); [2, 2] (12 = 10 + 2);
  // not [-10, -8] (12 ∉ [0, 2]). Tumbling 5: [10, 15) holds both. Sliding 6/3: the only
  // window holding 10 and 12 starts at 9 (a multiple of 3 in [7, 10]).
  const spec: Spec = {
    a: [{ k: 1, t: 10, id: 0 }], b: [{ k: 1, t: 12, id: 1 }], ooo: 0,
    intervals: [[-3, 4], [2, 2], [-10, -8]],
    tumbling: { sizeMs: 5, offsetMs: 0 }, sliding: { sizeMs: 6, slideMs: 3, offsetMs: 0 },
  };
  t.same(model(spec).sort(), ['inner 0×1 @12', 'iv0 0×1 @12', 'iv1 0×1 @12', 'wt 0×1 [10,15) @14', 'ws 0×1 [9,15) @14'].sort());
});

t.test('join, intervalJoin, windowJoin equal the model (inline, parallelism 1 and 3)', async (t) => {
  let i = 0;
  const seen: string[] = [];
  await fc.assert(
    fc.asyncProperty(params, fc.constantFrom(1, 3), fc.constantFrom(1, 5, 64), async (p, parallelism, batchSize) => {
      const spec = specOf(p);
      const what = `run ${++i} (p=${parallelism}, batch ${batchSize}, ${spec.a.length}+${spec.b.length} events, ooo ${spec.ooo}, intervals ${JSON.stringify(spec.intervals)})`;
      seen.push(what);
      const problems = await checkRun(spec, ['--set', 'execution=inline', '--set', `parallelism=${parallelism}`, '--set', `batchSize=${batchSize}`], what);
      if (problems.length) throw new Error(problems.join('\n'));
    }),
    { numRuns: 6, endOnFailure: true },
  );
  t.pass(`${seen.length} random two-sided streams agree with the model`);
});

t.test('the same with real workers (parallelism 2)', async (t) => {
  // One interval join only: every operator instance is a worker of its own.
  const spec = { ...specOf({ seed: 4242, n: 200, keys: 5, ooo: 12, maxStep: 4, start: -37, iv: [-5, 9], eq: 3, neg: [-9, 2], tSize: 7, tOff: 2, sSize: 12, sSlide: 5, sOff: -3 }), intervals: [[-5, 4]] as [number, number][] };
  t.same(await checkRun(spec, ['--set', 'parallelism=2', '--set', 'batchSize=16'], 'workers'), []);
});

t.test('while both sources pause, a checkpoint holds exactly the interval and window state the watermark leaves', async (t) => {
  // Phase 1, a pause of both sources (checkpoints go on), phase 2. Parallelism 1, so the
  // join's watermark in the pause is min(max a.t, max b.t) − ooo of phase 1.
  const PAUSE_MS = 6000;
  const ooo = 6;
  const p1 = events(77, 240, 4, ooo, 3, 0);
  const p2 = events(78, 60, 4, ooo, 3, p1.base, 1000);
  const spec: Spec = {
    a: [...p1.a, ...p2.a], b: [...p1.b, ...p2.b], ooo,
    intervals: [[-4, 9], [3, 3], [-12, -5]],
    tumbling: { sizeMs: 10, offsetMs: 4 }, sliding: { sizeMs: 12, slideMs: 4, offsetMs: 1 },
    pauses: { a: [{ at: p1.a.length, ms: PAUSE_MS }], b: [{ at: p1.b.length, ms: PAUSE_MS }] },
  };
  const { running, state } = runs.startSpec('joins.ts', spec, ['--set', 'execution=inline', '--set', 'parallelism=1', '--set', 'checkpoint.intervalMs=100']);
  // The newest checkpoint has both sources at the end of phase 1, and the inner join
  // (which keeps every record) holds exactly phase 1: a snapshot taken in the pause.
  const inPause = (i: Inspected) =>
    JSON.stringify(i.positions) === JSON.stringify({ a: [p1.a.length], b: [p1.b.length] }) && i.keys['inner/~left'] === p1.a.length && i.keys['inner/~right'] === p1.b.length;
  let snap: Inspected | undefined;
  let last: Inspected | undefined;
  while (!running.exited && !snap) {
    await sleep(100);
    try {
      last = inspect(state);
    } catch {
      continue; // no checkpoint yet
    }
    if (inPause(last)) snap = last;
  }
  const exit = await running.done;
  t.equal(exit.code, 0, `run completes (${exit.stderr.trim().split('\n')[0] ?? ''})`);
  if (!snap) {
    t.fail(`no checkpoint taken during the pause was seen (last: ${JSON.stringify(last)})`);
    return;
  }
  const keys = snap.keys;

  const wm = Math.min(Math.max(...p1.a.map((e) => e.t)), Math.max(...p1.b.map((e) => e.t))) - ooo;
  const expected: Record<string, number> = { 'inner/~left': p1.a.length, 'inner/~right': p1.b.length };
  // Operators that never register a timer keep no timer table at all.
  t.same([keys['inner/~timers/event'], keys['stamp/~timers/event']], [undefined, undefined], 'no timer tables where no timer was registered');
  spec.intervals.forEach(([lo, hi], i) => {
    const l = p1.a.filter((x) => x.t + hi + 1 > wm);
    const r = p1.b.filter((y) => y.t - lo + 1 > wm);
    expected[`iv${i}/~left`] = l.length;
    expected[`iv${i}/~right`] = r.length;
    expected[`iv${i}/~timers/event`] = new Set([...l.map((x) => `${x.k}@${x.t + hi + 1}`), ...r.map((y) => `${y.k}@${y.t - lo + 1}`)]).size;
  });
  const all = [...p1.a, ...p1.b];
  const T = spec.tumbling;
  const tEnds = all.map((e) => ({ k: e.k, end: e.t - mod(e.t - T.offsetMs, T.sizeMs) + T.sizeMs })).filter((w) => w.end > wm);
  expected['wt/~windows'] = tEnds.length;
  expected['wt/~timers/event'] = new Set(tEnds.map((w) => `${w.k}@${w.end}`)).size;
  const sEnds = all.flatMap((e) => slidingStarts(spec.sliding, e.t, e.t).map((s) => ({ k: e.k, end: s + spec.sliding.sizeMs }))).filter((w) => w.end > wm);
  expected['ws/~windows'] = sEnds.length;
  expected['ws/~timers/event'] = new Set(sEnds.map((w) => `${w.k}@${w.end}`)).size;
  const got = Object.fromEntries(Object.keys(expected).map((k) => [k, keys[k]]));
  t.same(got, expected, `key counts at watermark ${wm} (phase 1: ${p1.a.length}+${p1.b.length} records)`);
  t.ok(expected['iv0/~left']! < p1.a.length / 4, 'the interval join keeps only a small tail of phase 1');
});

t.test('join ttlMs: records older than ttl (processing time) no longer match, and are purged', async (t) => {
  // 30+30 records, a pause longer than ttlMs (plus the purge timer's 1 s granularity),
  // 30+30 more with the same keys: pairs only within a phase.
  const TTL = 2000;
  const PAUSE = TTL + 2000;
  const r = rng(5);
  const mk = (n: number, first: number) => Array.from({ length: n }, (_, i) => ({ k: Math.floor(r() * 5), id: first + i }));
  const a1 = mk(30, 0), b1 = mk(30, 100), a2 = mk(30, 200), b2 = mk(30, 300);
  const spec = { a: [...a1, ...a2], b: [...b1, ...b2], ttlMs: TTL, pauses: { a: [{ at: a1.length, ms: PAUSE }], b: [{ at: b1.length, ms: PAUSE }] } };
  const res = await runs.run<{ x: number; y: number }>('ttl-join.ts', spec, ['--set', 'execution=inline', '--set', 'parallelism=2']);
  t.equal(res.exit.code, 0, `run completes (${res.exit.stderr.trim().split('\n')[0] ?? ''})`);
  const expected: string[] = [];
  for (const [as, bs] of [[a1, b1], [a2, b2]] as const) for (const x of as) for (const y of bs) if (x.k === y.k) expected.push(`${x.id}×${y.id}`);
  const d = diff(expected, res.out.map((o) => `${o.x}×${o.y}`));
  t.same(d, { missing: [], extra: [] }, `pairs within a phase only (${expected.length})`);
  const keys = tableKeys(res.state);
  t.ok((keys['inner/~left'] ?? 0) <= a2.length && (keys['inner/~right'] ?? 0) <= b2.length, `phase-1 entries purged (left ${keys['inner/~left']}, right ${keys['inner/~right']}; phase 2 has ${a2.length}/${b2.length})`);
});
