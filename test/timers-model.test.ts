// Timers in `process` against a model (test-fixtures/flows/windows/timers.ts): random
// records register and delete event-time timers of their key; a timer at a multiple
// of 5 registers two more while firing (one already due). The output of each key, in
// the order the operator produced it, is replayed against a model of the key's pending
// timers:
//   - a fired timer was pending (registered, not deleted, not fired yet): each fires
//     exactly once, under its own key, with ctx.timestamp = its time;
//   - it fires at or after the watermark passed it (time ≤ ctx.watermark), earliest
//     pending first (time order per key);
//   - when a record is processed at watermark W no pending timer ≤ W is left (due
//     timers, also ones registered while firing, fired in that advance);
//   - at the end nothing is pending (end of input: watermark Infinity fires all).
// Then processing-time timers on a slow source, and bad timer times.
import t from 'tap';
import fc from 'fast-check';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { FixtureRuns, readJsonl, sets, sleep } from './helpers/window-runs.js';

const runs = new FixtureRuns('tidepool-timers-model-');
t.teardown(() => runs.remove());

type K = string | number | boolean | (string | number)[];
interface Ev { id: number; k: K; t: number; reg: number[]; del: number[] }
type Out =
  | { kind: 'rec'; id: number; key: K; ts: number; wm: string }
  | { kind: 'fire'; key: K; time: number; ts: number; wm: string };

// Keys of several types, also a tuple: onTimer's ctx.key is decoded from the timer table.
const KEYS: K[] = ['a', 'b', 7, -3.5, ['u', 1], true];

/**
 * Records with disorder ≤ D; each registers and deletes times after its own (rounded
 * to multiples of 3 so records of a key often name the same times).
 */
const eventsArb = fc
  .record({
    D: fc.integer({ min: 0, max: 30 }),
    steps: fc.array(
      fc.record({
        step: fc.integer({ min: 0, max: 8 }),
        back: fc.double({ min: 0, max: 1, noNaN: true }),
        k: fc.constantFrom(...KEYS),
        reg: fc.array(fc.integer({ min: 1, max: 40 }), { maxLength: 3 }),
        del: fc.array(fc.integer({ min: 1, max: 40 }), { maxLength: 1 }),
      }),
      { minLength: 1, maxLength: 150, size: 'max' },
    ),
  })
  .map(({ D, steps }) => {
    let c = 0;
    const up3 = (x: number) => Math.ceil(x / 3) * 3;
    const events: Ev[] = steps.map((s, id) => {
      c += s.step;
      const ts = c - Math.round(s.back * D);
      // Times after the record's own, so never already due when it is processed.
      const after = (d: number) => Math.max(ts + 1, up3(ts + d));
      return { id, k: s.k, t: ts, reg: s.reg.map(after), del: s.del.map(after) };
    });
    return { D, events };
  });

const wmOf = (s: string) => Number(s); // 'Infinity', '-Infinity' or a number

interface Counts { fires: number; deleted: number }

/** Replays each key's output against the pending-timer model; returns what it saw. */
function checkTimers(events: Ev[], out: Out[]): Counts {
  const byId = new Map(events.map((e) => [e.id, e]));
  const pending = new Map<string, Set<number>>();
  const seenRecs = new Set<number>();
  let fires = 0;
  let deleted = 0;
  const min = (s: Set<number>) => Math.min(...s);
  for (const [n, o] of out.entries()) {
    const at = `output line ${n + 1} ${JSON.stringify(o)}`;
    const key = JSON.stringify(o.key);
    let p = pending.get(key);
    if (!p) pending.set(key, (p = new Set()));
    const wm = wmOf(o.wm);
    if (o.kind === 'rec') {
      const e = byId.get(o.id);
      if (!e || seenRecs.has(o.id)) throw new Error(`${at}: unknown or repeated record`);
      seenRecs.add(o.id);
      if (key !== JSON.stringify(e.k) || o.ts !== e.t) throw new Error(`${at}: ctx.key / ctx.timestamp are not the record's (${e.k}, ${e.t})`);
      if (p.size && min(p) <= wm) throw new Error(`${at}: timer ${min(p)} of key ${o.key} is due at watermark ${wm} but has not fired`);
      for (const x of e.reg) p.add(x);
      for (const x of e.del) if (p.delete(x)) deleted++;
      continue;
    }
    fires++;
    if (o.ts !== o.time) throw new Error(`${at}: ctx.timestamp in onTimer is not the timer's time`);
    if (!p.has(o.time)) throw new Error(`${at}: no such pending timer of key ${o.key} (pending: ${[...p].sort((a, b) => a - b).join(', ')})`);
    if (o.time > wm) throw new Error(`${at}: fired before the watermark reached it`);
    if (min(p) < o.time) throw new Error(`${at}: timer ${min(p)} of the key is earlier and still pending`);
    p.delete(o.time);
    if (o.time % 5 === 0) {
      p.add(o.time - 2);
      p.add(o.time + 3);
    }
  }
  if (seenRecs.size !== events.length) throw new Error(`${seenRecs.size} records processed, ${events.length} in the input`);
  for (const [k, p] of pending) if (p.size) throw new Error(`key ${k}: timers ${[...p].join(', ')} never fired`);
  return { fires, deleted };
}

type Case = { events: Ev[]; D: number };

async function runTimers(cases: Case[], set: Record<string, string | number | boolean>, bad?: string) {
  const out = runs.fresh('timers');
  mkdirSync(out, { recursive: true });
  const specPath = join(out, 'spec.json');
  writeFileSync(specPath, JSON.stringify({ out, cases, bad }));
  const r = await runs.run('timers.ts', sets({ 'state.storage': 'memory', ...set }), { TP_SPEC: specPath });
  return { r, records: (c: number) => readJsonl<Out>(join(out, `c${c}.jsonl`)) };
}

/** Runs the cases; throws on a failed run or the first case that disagrees with the model. */
async function check(cases: Case[], set: Record<string, string | number | boolean>): Promise<Counts> {
  const { r, records } = await runTimers(cases, set);
  if (r.code !== 0) throw new Error(`run failed (${JSON.stringify(set)}): ${r.stderr.trim()}`);
  const n = { fires: 0, deleted: 0 };
  cases.forEach((cs, c) => {
    try {
      const x = checkTimers(cs.events, records(c));
      n.fires += x.fires;
      n.deleted += x.deleted;
    } catch (e) {
      throw new Error(`case ${c} (D ${cs.D}, ${JSON.stringify(set)}): ${(e as Error).message}`);
    }
  });
  return n;
}

const sourceSets = (n: number, p: number) => Object.fromEntries(Array.from({ length: n }, (_, c) => [`operators.c${c}-events.parallelism`, p]));

t.test('event-time timers fire as the model says (inline; 1 or 3 subtasks, 1 or 3 source subtasks)', async (t) => {
  let fires = 0;
  let deleted = 0;
  await fc.assert(
    fc.asyncProperty(fc.array(eventsArb, { minLength: 3, maxLength: 3 }), fc.constantFrom(1, 3), fc.constantFrom(1, 3), fc.integer({ min: 1, max: 20 }), async (cases, p, sp, batchSize) => {
      const n = await check(cases, { parallelism: p, ...sourceSets(cases.length, sp), execution: 'inline', batchSize });
      fires += n.fires;
      deleted += n.deleted;
    }),
    { numRuns: 7, endOnFailure: true, includeErrorInReport: true },
  );
  t.ok(fires > 100 && deleted > 0, `7 runs of 3 cases agree with the model (${fires} timers fired, ${deleted} deleted before firing)`);
});

t.test('event-time timers with real workers', async (t) => {
  await fc.assert(
    fc.asyncProperty(fc.array(eventsArb, { minLength: 2, maxLength: 2 }), async (cases) => {
      await check(cases, { parallelism: 3, execution: 'workers', batchSize: 5 });
    }),
    { numRuns: 1, endOnFailure: true, includeErrorInReport: true },
  );
  t.pass('a run with worker threads agrees with the model');
});

t.test('processing-time timers fire on a slow, unbounded source', async (t) => {
  for (const execution of ['inline', 'workers']) {
    const run = runs.start('proc-timers.ts', sets({ 'state.storage': 'memory', parallelism: 2, execution }), { TP_RECORDS: '25' });
    type P = { kind: string; key: string; due?: number; time?: number; now?: number };
    const parse = (): P[] => run.stdout().split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as P);
    // Until all 25 records are in and every timer they registered fired (or 20 s).
    const until = Date.now() + 20_000;
    let recs = parse();
    const complete = (rs: P[]) => {
      const due = new Set(rs.filter((x) => x.kind === 'rec').map((x) => `${x.key}@${x.due}`));
      const fired = new Set(rs.filter((x) => x.kind === 'fire').map((x) => `${x.key}@${x.time}`));
      return rs.filter((x) => x.kind === 'rec').length === 25 && [...due].every((d) => fired.has(d));
    };
    while (!complete(recs) && Date.now() < until) {
      await sleep(50);
      recs = parse();
    }
    await sleep(300); // a timer firing twice would show by now
    recs = parse();
    run.child.kill('SIGKILL');
    const exit = await run.done;
    t.equal(exit.code, null, `${execution}: the unbounded run was still going ${exit.stderr.trim()}`);
    const due = new Set(recs.filter((x) => x.kind === 'rec').map((x) => `${x.key}@${x.due}`));
    const fired = recs.filter((x) => x.kind === 'fire');
    t.equal(recs.filter((x) => x.kind === 'rec').length, 25, `${execution}: every record was processed`);
    t.same([...new Set(fired.map((x) => `${x.key}@${x.time}`))].sort(), [...due].sort(), `${execution}: every processing-time timer fired`);
    t.equal(fired.length, due.size, `${execution}: each once`);
    t.same(fired.filter((x) => x.now! < x.time!), [], `${execution}: none before its time`);
  }
});

t.test('a timer at NaN or at a non-number is a one-line error naming the operator', async (t) => {
  const events: Ev[] = [{ id: 0, k: 'a', t: 5, reg: [], del: [] }];
  for (const bad of ['nan', 'string']) {
    const { r } = await runTimers([{ events, D: 0 }], { parallelism: 1, execution: 'inline' }, bad);
    t.not(r.code, 0, `${bad}: the run fails`);
    const lines = r.stderr.trim().split('\n');
    t.equal(lines.length, 1, `${bad}: one line: ${r.stderr.trim()}`);
    t.match(lines[0], /operator 'c0-timers'/, `${bad}: names the operator`);
    t.match(lines[0], /event timer time must be a finite number/, `${bad}: says what is wrong`);
  }
});
