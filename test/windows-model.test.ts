// Event-time windows against a plain model (test/helpers/window-model.ts): random
// event streams with disorder ≤ maxOutOfOrdernessMs (so no record is late and the
// output is determined by the events), several keys, tumbling (with and without
// offset), sliding (panes with merge; per-window accumulators without), sessions (with
// merge; records without), with and without `result`. Each run of the fixture
// (test-fixtures/flows/windows/model.ts) holds several independent cases; runs vary
// parallelism (1, 3), the source's parallelism (several source subtasks: the window's
// watermark is a minimum over channels), a union of two sources, chaining, and
// inline vs. worker execution. The output must be the model's, as a multiset; the
// results' timestamps (end − 1) are checked by a process after the window and by a
// second window over the results. Last, bad window options and event-time set-ups
// (test-fixtures/flows/windows/bad.ts) are one-line errors, before records flow
// where they can be.
import t from 'tap';
import fc from 'fast-check';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { flow, sources, windows } from '../src/index.js';
import { FixtureRuns, expectNoWindowState, readJsonl, sets } from './helpers/window-runs.js';
import {
  eventsArb, modelRecords, modelSecond, multiset, sessionArb, slidingArb, tumblingArb, type WindowCase, type WindowOp, type WindowSpec,
} from './helpers/window-model.js';

const runs = new FixtureRuns('tidepool-windows-model-');
t.teardown(() => runs.remove());

interface RunConfig { parallelism: number; sourceParallelism: number; chaining: boolean; execution: 'inline' | 'workers' }

const opsArb: fc.Arbitrary<WindowOp[]> = fc
  .tuple(tumblingArb, slidingArb, sessionArb, fc.oneof(tumblingArb, slidingArb, sessionArb), fc.integer({ min: 0, max: 3 }), fc.integer({ min: 0, max: 3 }), fc.integer({ min: 1, max: 90 }))
  .map(([a, b, c, d, stampAt, secondAt, second]) =>
    [a, b, c, d].map((o, i) => ({ ...o, name: `w${i}-${o.kind}`, ...(i === stampAt ? { stamp: true } : {}), ...(i === secondAt ? { second } : {}) })),
  );

const caseArb = (maxEvents: number): fc.Arbitrary<WindowCase> =>
  fc.record({ ev: eventsArb({ maxEvents, maxStep: 12 }), union: fc.boolean(), ops: opsArb }).map(({ ev, union, ops }) => ({ events: ev.events, D: ev.D, union, ops }));

function differences(got: string[], want: string[]): string {
  const w = new Map<string, number>();
  for (const x of want) w.set(x, (w.get(x) ?? 0) + 1);
  const extra: string[] = [];
  for (const x of got) {
    const n = w.get(x) ?? 0;
    if (n === 0) extra.push(x);
    else w.set(x, n - 1);
  }
  const missing = [...w].flatMap(([x, n]) => Array(n).fill(x) as string[]);
  return `${got.length} records, model ${want.length}; unexpected: ${extra.slice(0, 3).join(' ')}; missing: ${missing.slice(0, 3).join(' ')}`;
}

/** Runs the fixture on `cases` with `cfg`; throws naming the first operator whose output is not the model's. */
async function check(cases: WindowCase[], cfg: RunConfig): Promise<void> {
  const out = runs.fresh('out');
  mkdirSync(out, { recursive: true });
  const spec: WindowSpec = { out, cases };
  const specPath = join(out, 'spec.json');
  writeFileSync(specPath, JSON.stringify(spec));
  const sourceSets: Record<string, number> = {};
  cases.forEach((cs, c) => {
    for (const tag of ['ev', 'sev']) for (const s of cs.union ? ['a', 'b'] : ['']) sourceSets[`operators.c${c}-${tag}${s}.parallelism`] = cfg.sourceParallelism;
  });
  const args = sets({ parallelism: cfg.parallelism, chaining: cfg.chaining, execution: cfg.execution, 'state.storage': 'memory', batchSize: 7, ...sourceSets });
  const summary = join(out, 'summary.json');
  const r = await runs.run('model.ts', [...args, '--summary', summary], { TP_SPEC: specPath });
  if (r.code !== 0) throw new Error(`run failed (${JSON.stringify(cfg)}): ${r.stderr.trim()}`);
  expectNoWindowState(summary, JSON.stringify(cfg));
  cases.forEach((cs, c) => {
    for (const op of cs.ops) {
      const name = `c${c}-${op.name}`;
      const what = `${name} ${JSON.stringify({ ...op, name: undefined })} (D ${cs.D}, union ${cs.union}, ${JSON.stringify(cfg)})`;
      const want = multiset(modelRecords(cs.events, op));
      const got = multiset(readJsonl(join(out, `${name}.jsonl`)));
      if (JSON.stringify(got) !== JSON.stringify(want)) throw new Error(`${what}: ${differences(got, want)}`);
      if (op.stamp) {
        const stamped = readJsonl<{ r: { end?: number; window?: { end: number } }; ts: number; wm: number | null }>(join(out, `${name}-stamp.jsonl`));
        if (JSON.stringify(multiset(stamped.map((s) => s.r))) !== JSON.stringify(want)) throw new Error(`${what}: the records after the window are not its output`);
        for (const s of stamped) {
          const end = s.r.end ?? s.r.window!.end;
          if (s.ts !== end - 1) throw new Error(`${what}: result ${JSON.stringify(s.r)} has timestamp ${s.ts}, expected end − 1 = ${end - 1}`);
          // JSON turns −Infinity into null. The watermark that fired the window comes after it.
          if (s.wm !== null && s.wm >= end) throw new Error(`${what}: result ${JSON.stringify(s.r)} arrived downstream after watermark ${s.wm} ≥ its end`);
        }
      }
      if (op.second !== undefined) {
        const got2 = multiset(readJsonl(join(out, `${name}-second.jsonl`)));
        const want2 = multiset(modelSecond(cs.events, op));
        if (JSON.stringify(got2) !== JSON.stringify(want2)) throw new Error(`${what}: second window of ${op.second} ms over the results: ${differences(got2, want2)}`);
      }
    }
  });
}

const cfgArb: fc.Arbitrary<RunConfig> = fc.record({
  parallelism: fc.constantFrom(1, 3),
  sourceParallelism: fc.constantFrom(1, 3),
  chaining: fc.boolean(),
  execution: fc.constant('inline' as const),
});

t.test('windows equal the model (inline; parallelism, source subtasks, union and chaining vary)', async (t) => {
  await fc.assert(
    fc.asyncProperty(fc.array(caseArb(120), { minLength: 2, maxLength: 3 }), cfgArb, async (cases, cfg) => check(cases, cfg)),
    { numRuns: 10, endOnFailure: true, includeErrorInReport: true },
  );
  t.pass('10 runs of 2-3 cases with 4 window operators each agree with the model');
});

t.test('windows equal the model with real workers', async (t) => {
  await fc.assert(
    // Fewer operators than inline: every subtask is a worker thread of its own.
    fc.asyncProperty(caseArb(150), fc.boolean(), async (cs, chaining) =>
      check([{ ...cs, ops: cs.ops.filter((o) => o.kind !== 'tumbling').slice(0, 2) }], { parallelism: 3, sourceParallelism: 3, chaining, execution: 'workers' }),
    ),
    { numRuns: 1, endOnFailure: true, includeErrorInReport: true },
  );
  t.pass('2 runs with worker threads at parallelism 3 agree with the model');
});

t.test('bad window options are one-line errors naming the option, thrown while building', async (t) => {
  const cases: [string, () => unknown, RegExp][] = [
    ['tumbling sizeMs 0', () => windows.tumbling({ sizeMs: 0 }), /windows\.tumbling\.sizeMs: must be a positive integer of ms, got 0$/],
    ['tumbling sizeMs 2.5', () => windows.tumbling({ sizeMs: 2.5 }), /windows\.tumbling\.sizeMs: .*got 2\.5$/],
    ['tumbling sizeMs NaN', () => windows.tumbling({ sizeMs: NaN }), /windows\.tumbling\.sizeMs: .*got NaN$/],
    ['tumbling offsetMs 0.5', () => windows.tumbling({ sizeMs: 10, offsetMs: 0.5 }), /windows\.tumbling\.offsetMs: must be an integer/],
    ['sliding slideMs > sizeMs', () => windows.sliding({ sizeMs: 10, slideMs: 20 }), /windows\.sliding\.slideMs: slideMs \(20\) is greater than sizeMs \(10\)$/],
    ['sliding slideMs 0', () => windows.sliding({ sizeMs: 10, slideMs: 0 }), /windows\.sliding\.slideMs: must be a positive integer/],
    ['sliding sizeMs Infinity', () => windows.sliding({ sizeMs: Infinity, slideMs: 10 }), /windows\.sliding\.sizeMs: .*got Infinity$/],
    ['session gapMs 0', () => windows.session({ gapMs: 0 }), /windows\.session\.gapMs: must be a positive integer of ms, got 0$/],
    ['session gapMs -5', () => windows.session({ gapMs: -5 }), /windows\.session\.gapMs: .*got -5$/],
    ['allowedLatenessMs -1', () => {
      const f = flow('bad');
      f.source('s', sources.array([1]), { eventTime: () => 0 }).keyBy((x) => x).window(windows.tumbling({ sizeMs: 10 })).aggregate('w', { create: () => 0, add: (n: number) => n }, { allowedLatenessMs: -1 });
    }, /window 'w' allowedLatenessMs must be an integer ≥ 0, got -1$/],
  ];
  for (const [what, f, re] of cases) {
    let err: (Error & { code?: string }) | undefined;
    try {
      f();
    } catch (e) {
      err = e as Error;
    }
    t.equal(err?.code, 'TIDEPOOL_BAD_OPTION', `${what}: TIDEPOOL_BAD_OPTION`);
    t.match(err?.message ?? '', re, `${what}: ${err?.message}`);
    t.notOk(err?.message.includes('\n'), `${what}: one line`);
  }
});

t.test('bad event time set-ups through the CLI: one line naming operator and option or record', async (t) => {
  const cases: [string, RegExp, boolean][] = [
    // [TP_BAD, the error, whether records may have flowed]
    ['tumbling-zero', /^tidepool: flow module .*bad\.ts: invalid window windows\.tumbling\.sizeMs: must be a positive integer of ms, got 0$/, false],
    ['no-event-time', /^tidepool: invalid flow 'bad-event-time': window 'w' needs event time, but source 'events' has no eventTime$/, false],
    ['union-one-without', /^tidepool: invalid flow 'bad-event-time': window 'w' needs event time, but source 'plain' has no eventTime$/, false],
    ['event-time-nan', /^tidepool: operator 'events' \(subtask 0\) threw TypeError: eventTime returned NaN, expected a finite number of epoch ms on record \{"id":3,/, true],
    ['event-time-infinite', /^tidepool: operator 'events' \(subtask 0\) threw TypeError: eventTime returned Infinity, expected a finite number of epoch ms on record \{"id":3,/, true],
    ['event-time-string', /^tidepool: operator 'events' \(subtask 0\) threw TypeError: eventTime returned "2024-05-01T10:00:00Z", expected a finite number .* on record \{"id":3,/, true],
  ];
  for (const [bad, re, flows] of cases) {
    const dir = runs.fresh('bad');
    const mark = `${dir}-read`;
    const r = await runs.run('bad.ts', sets({ parallelism: 1, execution: 'inline', 'state.storage': 'memory' }), { TP_BAD: bad, TP_MARK: mark, TP_OUT: `${dir}-out.jsonl` });
    const lines = r.stderr.trim().split('\n');
    t.equal(r.code, 1, `${bad}: exits 1`);
    t.equal(lines.length, 1, `${bad}: one line`);
    t.match(lines[0], re, `${bad}: ${lines[0]}`);
    if (!flows) t.notOk(existsSync(mark), `${bad}: before any record was read`);
  }
});
