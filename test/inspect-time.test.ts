// `tidepool inspect` on event-time state: timers, windows, joins and user state per
// instance, in the text and --json output, against a model of what the records imply.
//
// A paced run of test-fixtures/flows/inspect/time-state.ts (sliding windows with and
// without panes, session windows, a connect().process with event- and processing-time
// timers and value/list state, an inner join) is SIGKILLed mid-run, after checkpoints
// that covered some thousands of records, so windows are open and timers pending. The
// newest manifest gives the source positions (hence the records each instance has seen:
// key → key group → subtask) and each instance's watermark; from those alone the model
// computes open (key, window) pairs, window ends, session counts, pending timers and
// their next time, join entries per side and user-state keys, and inspect must report
// exactly those. The run is then resumed to the end (under a pseudo-terminal with
// --progress and --summary) and inspected again: every window closed, every event-time
// timer fired, the processing-time timers (year 2100) all still there. The /metrics
// window and join gauges are scraped during the first run, the progress line's and the
// summary's during and after the second.
import t, { type Test } from 'tap';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { keyGroupOf } from '../src/runtime/partition.js';
import { subtaskForKeyGroup } from '../src/flow/plan.js';
import type { DirReport, InstanceReport } from '../src/cli/inspect.js';
import type { RunSummary } from '../src/observe/report.js';
import { CLI, FLOWS, cli, sleep, startCli, startProcess } from './helpers/cli.js';
import { manifestIds } from './helpers/flow-child.js';
import { parseExposition } from './helpers/prom-text.js';

const tmp = mkdtempSync(join(tmpdir(), 'tidepool-inspect-time-'));
t.teardown(() => rmSync(tmp, { recursive: true, force: true }));
const FLOW = join(FLOWS, 'inspect/time-state.ts');
const N = 20_000;
const P = 2;
const KEY_GROUPS = 128;
const FAR = Date.UTC(2100, 0, 1);
const STATE = join(tmp, 'state');
const FLOW_DIR = join(STATE, 'inspect-time');
const ENV = { TP_N: String(N), TIDEPOOL_MODULE_CACHE: join(tmp, 'module-cache') };
const ARGS = ['run', FLOW, '--state', STATE, '--set', `parallelism=${P}`, '--set', 'execution=inline', '--set', 'batchSize=50',
  '--set', 'checkpoint.intervalMs=300', '--set', 'state.compression=zstd'];

// The fixture's records (see its header).
interface Rec { i: number; k: string; j: number; side: number; t: number }
const rec = (i: number): Rec => ({ i, k: `k${(Math.imul(i, 2654435761) >>> 0) % 100}`, j: Math.floor(i / 2) % 2000, side: i % 2, t: 10 * i + 300 * Math.floor(i / 100) });
const subtaskOf = (key: unknown) => subtaskForKeyGroup(keyGroupOf(key, KEY_GROUPS), P, KEY_GROUPS);
const mod = (a: number, m: number) => ((a % m) + m) % m;

interface ManifestFile {
  final: boolean;
  tasks: { operators: string[]; instances: { subtask: number; position?: number; watermark?: number }[] }[];
}
const manifest = (id: number) => JSON.parse(readFileSync(join(FLOW_DIR, 'checkpoints', `chk-${String(id).padStart(10, '0')}.json`), 'utf8')) as ManifestFile;
const task = (m: ManifestFile, op: string) => m.tasks.find((x) => x.operators[0] === op)!;

/** Records the checkpoint covers: source subtask s made s, s + P, … below its position. */
function covered(m: ManifestFile): Rec[] {
  const out: Rec[] = [];
  for (const inst of task(m, 'gen').instances) for (let i = inst.subtask; i < inst.position!; i += P) out.push(rec(i));
  return out;
}

/** An instance's watermark at the checkpoint: recorded when finite, else −∞ (none yet) or +∞ (final). */
const watermarkOf = (m: ManifestFile, op: string, s: number) => task(m, op).instances[s]!.watermark ?? (m.final ? Infinity : -Infinity);

interface Ends { open: number; firstEnd: number | null; lastEnd: number | null }
function endsOf(pairs: Set<string>, endOf: (p: string) => number): Ends {
  const ends = [...pairs].map(endOf);
  return { open: ends.length, firstEnd: ends.length ? Math.min(...ends) : null, lastEnd: ends.length ? Math.max(...ends) : null };
}

/** Sliding windows of size/slide (offset 0): distinct (key, end) of the records, all and open (end > wm). */
function sliding(rs: Rec[], size: number, slide: number, wm: number): { all: number; open: Ends } {
  const all = new Set<string>();
  for (const r of rs) for (let e = r.t - mod(r.t, slide) + size; e > r.t; e -= slide) all.add(`${r.k}|${e}`);
  const end = (p: string) => Number(p.split('|')[1]);
  return { all: all.size, open: endsOf(new Set([...all].filter((p) => end(p) > wm)), end) };
}

/** Panes of 1000 ms kept: a pane goes once every window containing it (last end: start + 3000) fired. */
const panesKept = (rs: Rec[], wm: number) => new Set(rs.map((r) => `${r.k}|${r.t - mod(r.t, 1000)}`).filter((p) => Number(p.split('|')[1]) + 3000 > wm)).size;

/** Sessions of gap 255 per key, [first, last + 255): the open ones (end > wm). */
function sessions(rs: Rec[], wm: number): Ends {
  const byKey = new Map<string, number[]>();
  for (const r of rs) byKey.set(r.k, [...(byKey.get(r.k) ?? []), r.t]);
  const open = new Set<string>();
  for (const [k, ts] of byKey) {
    ts.sort((a, b) => a - b);
    // A record at or before the session's end joins it (and moves the end to its own + gap).
    const ends: number[] = [];
    for (const x of ts) {
      if (ends.length && x <= ends[ends.length - 1]!) ends[ends.length - 1] = x + 255;
      else ends.push(x + 255);
    }
    for (const e of ends) if (e > wm) open.add(`${k}|${e}`);
  }
  return endsOf(open, (p) => Number(p.split('|')[1]));
}

interface Timers { count: number; next: number | null }
const timersOf = (times: Set<string>): Timers => {
  const ts = [...times].map((p) => Number(p.split('|')[1]));
  return { count: ts.length, next: ts.length ? Math.min(...ts) : null };
};

/** What inspect must report for each stateful instance of checkpoint `m`. */
function model(m: ManifestFile) {
  const rs = covered(m);
  const mine = (s: number, key: (r: Rec) => unknown, side?: number) => rs.filter((r) => subtaskOf(key(r)) === s && (side === undefined || r.side === side));
  const per = <T>(f: (s: number) => T) => [0, 1].map(f);
  const none: Timers = { count: 0, next: null };
  return {
    records: rs.length,
    win: per((s) => {
      const wm = watermarkOf(m, 'win', s);
      return { wm, ...sliding(mine(s, (r) => r.k), 4000, 1000, wm) };
    }),
    panes: per((s) => {
      const wm = watermarkOf(m, 'panes', s);
      return { wm, ...sliding(mine(s, (r) => r.k), 3000, 1000, wm), kept: panesKept(mine(s, (r) => r.k), wm) };
    }),
    sess: per((s) => {
      const wm = watermarkOf(m, 'sess', s);
      return { wm, open: sessions(mine(s, (r) => r.k), wm) };
    }),
    timers: per((s) => {
      const wm = watermarkOf(m, 'timers', s);
      const lefts = mine(s, (r) => r.k, 0);
      const rights = mine(s, (r) => r.k, 1);
      const event = new Set(lefts.map((r) => `${r.k}|${Math.ceil(r.t / 1000) * 1000 + 2500 + 10 * (r.i % 7)}`).filter((p) => Number(p.split('|')[1]) > wm));
      const processing = new Set(rights.map((r) => `${r.k}|${FAR + (r.i % 3)}`));
      return { wm, event: timersOf(event), processing: timersOf(processing), user: { 'timers/hist': rights.length, 'timers/seen': new Set(rights.map((r) => r.k)).size }, none };
    }),
    pairs: per((s) => ({ wm: watermarkOf(m, 'pairs', s), left: mine(s, (r) => r.j, 0).length, right: mine(s, (r) => r.j, 1).length })),
  };
}

const iso = (ms: number) => new Date(ms).toISOString();
const fmtTimers = (d: Timers) => `${d.count}${d.next === null ? '' : ` (next ${iso(d.next)})`}`;
const fmtEnds = (e: Ends) => (e.firstEnd === null ? '' : ` (ends ${iso(e.firstEnd)}..${iso(e.lastEnd!)})`);
const head = (s: number, wm: number) => `subtask ${s}: ${Number.isFinite(wm) ? `watermark ${iso(wm)}; ` : ''}`;

async function inspect(): Promise<{ json: DirReport; text: string }> {
  const [j, x] = await Promise.all([cli(['inspect', STATE, '--json'], { cwd: tmp }), cli(['inspect', STATE], { cwd: tmp })]);
  if (j.code !== 0 || x.code !== 0) throw new Error(`inspect failed: ${j.stderr}${x.stderr}`);
  return { json: JSON.parse(j.stdout) as DirReport, text: x.stdout };
}

/** Checks every stateful instance's report (JSON and its text line) against the model. */
function check(t: Test, m: ManifestFile, r: { json: DirReport; text: string }, final: boolean) {
  const want = model(m);
  const f = r.json.flows[0]!;
  const inst = (op: string, s: number): InstanceReport => f.operators.find((o) => o.operators[0] === op)!.instances[s]!;
  const line = (text: string) => t.match(r.text, new RegExp(`^ {6}${text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}$`, 'm'), `text: ${text}`);
  const wmOf = (op: string, s: number) => {
    const wm = task(m, op).instances[s]!.watermark;
    t.equal(inst(op, s).watermark, wm, `${op} #${s}: the manifest's watermark`);
  };
  const noTimers = { event: { count: 0, next: null }, processing: { count: 0, next: null } };
  for (const s of [0, 1]) {
    for (const op of ['win', 'panes', 'sess', 'timers', 'pairs']) wmOf(op, s);

    const w = want.win[s]!;
    const win = inst('win', s).state!;
    t.same(win.windows, [{ operator: 'win', cells: 'windows', entries: w.open.open, ...w.open }], `win #${s}: ${w.open.open} of ${w.all} (key, window) pairs open, one cell each`);
    t.same(win.timers.event.next, w.open.firstEnd, `win #${s}: the next timer is the first open window's end`);
    t.equal(win.timers.processing.count, 0);
    if (!final) t.ok(w.all > w.open.open && w.open.open > 0, `win #${s}: some windows fired (${w.all - w.open.open}), some open`);
    line(`${head(s, w.wm)}timers event ${fmtTimers(win.timers.event)} processing 0; windows win ${w.open.open} open${fmtEnds(w.open)} in ${w.open.open} windows`);

    const p = want.panes[s]!;
    const panes = inst('panes', s).state!;
    t.same(panes.windows, [{ operator: 'panes', cells: 'panes', entries: p.kept, ...p.open }], `panes #${s}: ${p.open.open} open windows over ${p.kept} panes`);
    line(`${head(s, p.wm)}timers event ${fmtTimers(panes.timers.event)} processing 0; windows panes ${p.open.open} open${fmtEnds(p.open)} in ${p.kept} panes`);

    const ss = want.sess[s]!;
    const sess = inst('sess', s).state!;
    t.same(sess.windows, [{ operator: 'sess', cells: 'sessions', entries: ss.open.open, ...ss.open }], `sess #${s}: ${ss.open.open} open sessions`);
    if (!final) t.ok(ss.open.open > 0, 'some sessions open');
    line(`${head(s, ss.wm)}timers event ${fmtTimers(sess.timers.event)} processing 0; windows sess ${ss.open.open} open${fmtEnds(ss.open)} in ${ss.open.open} sessions`);

    const tm = want.timers[s]!;
    const timers = inst('timers', s).state!;
    t.same(timers.timers, { event: tm.event, processing: tm.processing }, `timers #${s}: ${tm.event.count} event-time timers pending, ${tm.processing.count} processing-time`);
    t.same(timers.user, tm.user, `timers #${s}: user state`);
    t.same([timers.windows, timers.joins], [[], []]);
    const keys = `keys timers/hist ${tm.user['timers/hist']}, timers/seen ${tm.user['timers/seen']}`;
    line(`${head(s, tm.wm)}timers event ${fmtTimers(tm.event)} processing ${fmtTimers(tm.processing)}; ${keys}`);

    const pr = want.pairs[s]!;
    const pairs = inst('pairs', s).state!;
    t.same(pairs, { timers: noTimers, windows: [], joins: [{ operator: 'pairs', kind: 'join', left: pr.left, right: pr.right }], user: {} }, `pairs #${s}: ${pr.left} left, ${pr.right} right`);
    line(`${head(s, pr.wm)}timers event 0 processing 0; join pairs left ${pr.left} right ${pr.right}`);
  }
  for (const o of f.operators) if (!['win', 'panes', 'sess', 'timers', 'pairs'].includes(o.operators[0]!)) t.ok(o.instances.every((i) => i.state === undefined && i.watermark === undefined), `${o.operators[0]}: stateless, no state line`);
  return want;
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

t.test('mid-run checkpoint, then the end of the same run', async (t) => {
  // 1. Paced (1000 records/s per source subtask), killed once a checkpoint covers ≥ 3000 records.
  const port = await freePort();
  const run = startCli([...ARGS, '--set', `metrics.port=${port}`], { cwd: tmp, env: { ...ENV, TP_RATE: '1000' }, timeoutMs: 90_000 });
  let scraped: Map<string, number>[] | undefined;
  const coveredBy = (id: number) => task(manifest(id), 'gen').instances.reduce((a, i) => a + (i.position! - i.subtask) / P, 0);
  for (let i = 0; i < 600; i++) {
    const ids = manifestIds(FLOW_DIR);
    if (!scraped && ids.length && coveredBy(ids.at(-1)!) >= 1500) {
      const body = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
      const fam = parseExposition(body);
      scraped = ['tidepool_window_state_entries', 'tidepool_join_state_entries'].map((n) => new Map((fam.get(n)?.samples ?? []).map((x) => [`${x.labels.task}/${x.labels.subtask}`, x.value])));
    }
    if (scraped && ids.length >= 2 && coveredBy(ids.at(-1)!) >= 3000) break;
    await sleep(100);
  }
  run.child.kill('SIGKILL');
  const exit = await run.done;
  t.equal(exit.signal, 'SIGKILL', `killed mid-run ${exit.stderr}`);
  const id = manifestIds(FLOW_DIR).at(-1)!;
  const m = manifest(id);
  t.notOk(m.final, `checkpoint ${id} is not the final one`);

  // The gauges, scraped mid-run: window state in the window tasks only, join state in the join only.
  t.ok(scraped, 'scraped /metrics during the run');
  const [win, joins] = scraped!;
  const windowTasks = ['win', 'panes', 'sess'];
  // The source task runs the two filters it fans out into (chained: `gen→(lefts|rights)`).
  for (const tk of ['gen→(lefts|rights)', ...windowTasks, 'timers', 'pairs', 'out']) for (const s of tk === 'out' ? [0] : [0, 1]) {
    t.ok(win!.has(`${tk}/${s}`) && joins!.has(`${tk}/${s}`), `${tk}/${s} has both gauges`);
    if (!windowTasks.includes(tk)) t.equal(win!.get(`${tk}/${s}`), 0, `${tk}/${s}: no window state`);
    if (tk !== 'pairs') t.equal(joins!.get(`${tk}/${s}`), 0, `${tk}/${s}: no join state`);
  }
  for (const tk of windowTasks) t.ok(win!.get(`${tk}/0`)! + win!.get(`${tk}/1`)! > 0, `${tk}: window state entries`);
  const joinGauge = joins!.get('pairs/0')! + joins!.get('pairs/1')!;
  t.ok(joinGauge > 0 && joinGauge <= N, `pairs: ${joinGauge} join state entries`);

  const mid = check(t, m, await inspect(), false);
  t.ok(mid.records >= 3000 && mid.records < N, `checkpoint ${id} covers ${mid.records} of ${N} records`);
  const restoredJoin = mid.pairs.reduce((a, p) => a + p.left + p.right, 0);

  // 2. The same run resumed to its end, on a pseudo-terminal with --progress, and --summary.
  const summaryPath = join(tmp, 'summary.json');
  const quote = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;
  const command = `exec ${[process.execPath, CLI, ...ARGS, '--progress', '--summary', summaryPath].map(quote).join(' ')}`;
  const resumed = await startProcess('script', ['-qfec', command, '/dev/null'], { cwd: tmp, env: { ...ENV, TP_RATE: '3000' }, timeoutMs: 90_000 }).done;
  const notProgress = () => resumed.stdout.split('\r\x1b[2K').filter((d) => !d.includes('backpressure')).join(' ').slice(-3000);
  t.equal(resumed.code, 0, `the resumed run completes${resumed.code === 0 ? '' : `: ${notProgress()}`}`);
  const parseCount = (x: string) => Number(x.replace(/[kM]$/, '')) * (x.endsWith('M') ? 1e6 : x.endsWith('k') ? 1e3 : 1);
  const draws = resumed.stdout.split('\r\x1b[2K').filter((d) => d.length);
  const joinDraws = draws.map((d) => /\| joins (\S+)/.exec(d)).filter((x): x is RegExpExecArray => x !== null).map((x) => parseCount(x[1]!));
  t.ok(joinDraws.length > 0 && draws.some((d) => /\| windows \d/.test(d)), `the progress line shows window and join state (${draws.at(-1)})`);
  // Join state only grows: from what the checkpoint restored to every record (fmt rounds to 0.1k).
  t.ok(joinDraws.every((n) => n >= restoredJoin - 50 && n <= N + 50), `join state on the progress line within [${restoredJoin}, ${N}]: ${joinDraws.join(' ')}`);

  const summary = JSON.parse(readFileSync(summaryPath, 'utf8')) as RunSummary;
  t.equal(summary.restoredFrom, id, 'restored from the inspected checkpoint');
  const byTask = new Map(summary.operators.map((o) => [o.operators[0]!, o]));
  t.same(summary.operators.map((o) => [o.operators[0], o.windowStateEntries, o.joinStateEntries]),
    summary.operators.map((o) => [o.operators[0], 0, o.operators[0] === 'pairs' ? N : 0]),
    'summary: every window closed and its state gone; the join keeps all N records');
  const farTimers = new Set(Array.from({ length: N / 2 }, (_, m) => rec(2 * m + 1)).map((r) => `${r.k}|${r.i % 3}`)).size;
  t.equal(byTask.get('timers')!.pendingTimers, farTimers, `summary: the ${farTimers} processing-time timers (key, i % 3) of the right side still pending`);

  const end = manifest(manifestIds(FLOW_DIR).at(-1)!);
  t.ok(end.final, 'the newest checkpoint is the final one');
  const final = await inspect();
  const done = check(t, end, final, true);
  t.equal(done.records, N, 'the final checkpoint covers every record');
  const timerInstances = final.json.flows[0]!.operators.find((o) => o.operators[0] === 'timers')!.instances;
  t.same(timerInstances.map((i) => i.state!.timers.event.count), [0, 0], 'inspect: every event-time timer fired');
  t.equal(timerInstances.reduce((a, i) => a + i.state!.timers.processing.count, 0), farTimers, 'inspect: the processing-time timers, as in the summary');
});
