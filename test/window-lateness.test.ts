// Allowed lateness and idle sources. With parallelism 1, one source subtask and
// batchSize 1 the window operator sees each record followed by the watermark it moved,
// so the output is exactly determined: checked against a sequential model
// (test/helpers/lateness-model.ts) on random streams with disorder beyond
// maxOutOfOrdernessMs — updated results re-emitted for records within the lateness,
// later ones dropped and sent to `.late()` (a sliding-window record only when it is
// dropped from all of its windows) — and on hand-made streams. The run summary has no
// per-operator late count, so `.late()` is where dropped records are counted.
// Then an idle source (unioned with an active one) must not hold windows back once
// `idleMs` passed: the active source's windows appear while the run still goes on.
import t from 'tap';
import fc from 'fast-check';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { FixtureRuns, expectNoWindowState, readJsonl, sets, sleep } from './helpers/window-runs.js';
import { modelLateness } from './helpers/lateness-model.js';
import { multiset, sessionArb, slidingArb, tumblingArb, type Ev, type K, type WindowCase, type WindowOp } from './helpers/window-model.js';

const runs = new FixtureRuns('tidepool-window-lateness-');
t.teardown(() => runs.remove());

interface Outputs { out: (c: number, op: string) => unknown[]; late: (c: number, op: string) => unknown[] }

/** Runs the windows fixture deterministically (parallelism 1, batchSize 1, inline). */
async function runCases(cases: WindowCase[], chaining = true): Promise<Outputs> {
  const out = runs.fresh('late');
  mkdirSync(out, { recursive: true });
  const specPath = join(out, 'spec.json');
  writeFileSync(specPath, JSON.stringify({ out, cases: cases.map((c) => ({ ...c, sessionExtraD: 0, union: false })) }));
  const summary = join(out, 'summary.json');
  const r = await runs.run('model.ts', [...sets({ parallelism: 1, batchSize: 1, chaining, execution: 'inline', 'state.storage': 'memory' }), '--summary', summary], { TP_SPEC: specPath });
  if (r.code !== 0) throw new Error(`run failed: ${r.stderr.trim()}`);
  expectNoWindowState(summary, 'lateness run'); // late cells are kept for the lateness, then cleaned up
  return {
    out: (c, op) => readJsonl(join(out, `c${c}-${op}.jsonl`)),
    late: (c, op) => readJsonl(join(out, `c${c}-${op}-late.jsonl`)),
  };
}

/** Events whose disorder often exceeds D (by up to `beyond` ms): some are late. */
const lateEventsArb = fc
  .record({
    D: fc.integer({ min: 0, max: 15 }),
    beyond: fc.integer({ min: 5, max: 60 }),
    steps: fc.array(fc.record({ step: fc.integer({ min: 0, max: 10 }), back: fc.double({ min: 0, max: 1, noNaN: true }), k: fc.constantFrom<K>('a', ['u', 1], 3) }), { minLength: 1, maxLength: 120, size: 'max' }),
  })
  .map(({ D, beyond, steps }) => {
    let c = 0;
    return { D, events: steps.map((s, id): Ev => ({ id, k: s.k, t: (c += s.step) - Math.round(s.back * (D + beyond)) })) };
  });

const withLateness = (a: fc.Arbitrary<Omit<WindowOp, 'name'>>) => fc.tuple(a, fc.integer({ min: 0, max: 40 })).map(([o, lateness]) => ({ ...o, lateness }));

const lateCaseArb: fc.Arbitrary<WindowCase> = fc
  .record({
    ev: lateEventsArb,
    ops: fc.tuple(withLateness(tumblingArb), withLateness(slidingArb), withLateness(sessionArb), withLateness(fc.oneof(slidingArb, sessionArb))),
  })
  .map(({ ev, ops }) => ({ events: ev.events, D: ev.D, union: false, ops: ops.map((o, i) => ({ ...o, name: `w${i}-${o.kind}` })) }));

function compare(cases: WindowCase[], got: Outputs): { late: number; reemitted: number } {
  let late = 0;
  let reemitted = 0;
  cases.forEach((cs, c) => {
    for (const op of cs.ops) {
      const what = `c${c}-${op.name} ${JSON.stringify({ ...op, name: undefined })} (D ${cs.D})`;
      const want = modelLateness(cs.events, cs.D, op);
      const out = multiset(got.out(c, op.name));
      if (JSON.stringify(out) !== JSON.stringify(multiset(want.out))) {
        throw new Error(`${what}: output ${JSON.stringify(out.slice(0, 40))} model ${JSON.stringify(multiset(want.out).slice(0, 40))}`);
      }
      const lateOut = multiset(got.late(c, op.name));
      if (JSON.stringify(lateOut) !== JSON.stringify(multiset(want.late))) {
        throw new Error(`${what}: late ${JSON.stringify(lateOut)} model ${JSON.stringify(multiset(want.late))}`);
      }
      late += want.late.length;
      reemitted += want.out.length - new Set(want.out.map((r) => JSON.stringify([(r as { key: unknown }).key, (r as { start?: number }).start ?? (r as { window: { start: number } }).window.start]))).size;
    }
  });
  return { late, reemitted };
}

t.test('lateness: output and .late() equal the sequential model', async (t) => {
  let late = 0;
  let reemitted = 0;
  await fc.assert(
    fc.asyncProperty(fc.array(lateCaseArb, { minLength: 3, maxLength: 3 }), fc.boolean(), async (cases, chaining) => {
      const n = compare(cases, await runCases(cases, chaining));
      late += n.late;
      reemitted += n.reemitted;
    }),
    { numRuns: 6, endOnFailure: true, includeErrorInReport: true },
  );
  t.ok(late > 0 && reemitted > 0, `6 runs of 3 cases agree with the model (${late} late records, ${reemitted} windows emitted again)`);
});

t.test('lateness by hand: re-emission, dropping, sliding records late only for all windows, sessions', async (t) => {
  const ev = (id: number, tm: number, k = 'a'): Ev => ({ id, k, t: tm });
  // D 0. Watermarks before each record: −∞, 5, 12, 12, 30, 30, 30.
  const events = [ev(0, 5), ev(1, 12), ev(2, 8), ev(3, 30), ev(4, 9), ev(5, 25), ev(6, 1)];
  const tumbling: WindowOp = { name: 'tum', kind: 'tumbling', sizeMs: 10, mode: 'agg', result: true, lateness: 20 };
  const sliding: WindowOp = { name: 'sli', kind: 'sliding', sizeMs: 20, slideMs: 10, mode: 'agg-merge', result: true, lateness: 0 };
  const session: WindowOp = { name: 'ses', kind: 'session', gapMs: 10, mode: 'agg-merge', result: true, lateness: 0 };
  const session20: WindowOp = { ...session, name: 'ses20', lateness: 20 };
  // Session [0, 40) is open at watermark 30; record 4 (t 10) belongs to it: its own
  // [10, 20) ended before the watermark, but it merges into the open session.
  const sesEvents = [ev(0, 0), ev(1, 10), ev(2, 20), ev(3, 30), ev(4, 10), ev(5, 45)];
  // [70, 80) fires at watermark 90 (its cleanup at 100 is also [90, 100)'s firing
  // time); record 2 (t 75) updates it within the lateness; [90, 100) must still fire.
  const ses20Events = [ev(0, 70), ev(1, 90), ev(2, 75)];
  const got = await runCases([
    { events, D: 0, union: false, ops: [tumbling, sliding] },
    { events: sesEvents, D: 0, union: false, ops: [session] },
    { events: ses20Events, D: 0, union: false, ops: [session20] },
  ]);
  const w = (start: number, end: number, ids: number[]) => ({ key: 'a', start, end, ids });
  t.same(multiset(got.out(0, 'tum')), multiset([
    w(0, 10, [0]), // fires at watermark 12
    w(0, 10, [0, 2]), // record 2 (t 8) at watermark 12: late, within 20 ms → emitted again
    w(10, 20, [1]), // fires at 30
    w(20, 30, [5]), // record 5 (t 25) at watermark 30: its window closed without data, within lateness
    w(30, 40, [3]), // end of input
  ]), 'tumbling with lateness 20: an updated result is emitted again');
  t.same(multiset(got.late(0, 'tum')), multiset([ev(4, 9), ev(6, 1)]), 'tumbling: records for [0, 10) at watermark 30 (10 + 20 ≤ 30) are dropped to .late()');
  t.same(multiset(got.out(0, 'sli')), multiset([
    w(-10, 10, [0]), w(0, 20, [0, 1, 2]), w(10, 30, [1]), w(20, 40, [3, 5]), w(30, 50, [3]),
  ]), 'sliding: record 2 (t 8, watermark 12) is late for [−10, 10) but counts in [0, 20); record 5 likewise');
  t.same(multiset(got.late(0, 'sli')), multiset([ev(4, 9), ev(6, 1)]), 'sliding: a record goes to .late() only when dropped from both its windows');
  t.same(multiset(got.out(1, 'ses')), multiset([w(0, 40, [0, 1, 2, 3, 4]), w(45, 55, [5])]), 'session: a record inside an open session joins it');
  t.same(got.late(1, 'ses'), [], 'session: … and is not late');
  t.same(multiset(got.out(2, 'ses20')), multiset([w(70, 80, [0]), w(70, 85, [0, 2]), w(90, 100, [1])]), 'session with lateness: the updated session again, and the other session still fires');
  t.same(got.late(2, 'ses20'), [], 'session with lateness: nothing late');
});

t.test('an idle source does not hold windows back once idleMs passed', async (t) => {
  for (const execution of ['inline', 'workers']) {
    const dir = runs.fresh('idle');
    mkdirSync(dir, { recursive: true });
    const out = join(dir, 'counts.jsonl');
    const run = runs.start('idle.ts', ['--state', join(dir, 'state'), ...sets({ parallelism: 1, execution, 'checkpoint.intervalMs': 200 })], { TP_OUT: out, TP_ACTIVE: '3000' });
    // The active source makes 10 ms windows at 1 record/ms of event time; the other one
    // emitted 3 records at t 0…2 and then nothing, without ending.
    let windows: { window: { start: number } }[] = [];
    const until = Date.now() + 20_000;
    while (windows.length < 5 && Date.now() < until && run.child.exitCode === null) {
      await sleep(100);
      windows = readJsonl<{ window: { start: number } }>(out);
    }
    const alive = run.child.exitCode === null;
    run.child.kill('SIGKILL');
    const exit = await run.done;
    t.ok(alive, `${execution}: the run was still going (it has an unbounded idle source) ${exit.stderr.trim()}`);
    t.ok(windows.length >= 5, `${execution}: ${windows.length} windows of the active source published while the idle one says nothing`);
    t.ok(windows.some((w) => w.window.start >= 100), `${execution}: windows well past the idle source's last record`);
  }
});
