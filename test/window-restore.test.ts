// A sliding-window count restored from a checkpoint by an in-process restart: every
// window's count equals a plain count, exactly once. The window operator keeps each key's
// current pane decoded in memory ("hot panes", src/operators/windows.ts) and writes it back
// before a snapshot; without that write-back the restored panes miss the updates made since
// the pane was last written, and the counts of the windows fired after the restart come out
// short. (The fixture gives each key 100 records per pane and windows that end every 500
// records, and the run uses small batches, so nearly every barrier finds every key's pane
// changed since it was written; removing the write-back makes this test fail.)
//
// Fixture: test-fixtures/flows/checkpoint/window-throw-once.ts.
import t from 'tap';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { FlowChildren, newestManifest, sleep } from './helpers/flow-child.js';
import { rng } from './helpers/rng.js';

const children = new FlowChildren('tidepool-window-restore-');
const tmp = children.dir;
t.teardown(() => children.remove());

interface WindowLine { key: string; window: { start: number; end: number }; value: number }

/** Problems of a published window output against the plain count: wrong, twice, missing. */
function checkWindows(out: string, want: Map<string, number>): { lines: number; wrong: string[] } {
  const text = existsSync(out) ? readFileSync(out, 'utf8').trim() : '';
  const lines = text === '' ? [] : text.split('\n').map((l) => JSON.parse(l) as WindowLine);
  const seen = new Map<string, number>();
  const wrong: string[] = [];
  for (const l of lines) {
    const id = `${l.key}@${l.window.start}`;
    if (seen.has(id)) wrong.push(`${id} twice`);
    seen.set(id, l.value);
    if (want.get(id) !== l.value) wrong.push(`${id}: ${l.value}, expected ${want.get(id)}`);
  }
  for (const id of want.keys()) if (!seen.has(id)) wrong.push(`${id} missing`);
  return { lines: lines.length, wrong };
}

const T0 = 1_700_000_000_000; // as in the fixture
const SIZE = 20_000, SLIDE = 5_000, KEYS = 5, STEP = 10;

/** The plain count: per key and window start, the records of that key in [start, start + SIZE). */
function reference(n: number): Map<string, number> {
  const m = new Map<string, number>();
  for (let i = 0; i < n; i++) {
    const ts = T0 + i * STEP;
    const k = `k${i % KEYS}`;
    for (let s = ts - (((ts % SLIDE) + SLIDE) % SLIDE); s > ts - SIZE; s -= SLIDE) m.set(`${k}@${s}`, (m.get(`${k}@${s}`) ?? 0) + 1);
  }
  return m;
}

t.test('a sliding-window count restarted from a checkpoint: every window once, with its full count', async (t) => {
  const n = 12_000;
  const out = join(tmp, 'out', 'windows.jsonl');
  const marker = join(tmp, 'out', 'failed-once');
  const summary = join(tmp, 'out', 'summary.json');
  mkdirSync(dirname(out), { recursive: true });
  // Record 7000 comes ~3.5 s into the run (2000 records/s): after several checkpoints.
  const e = await children.runToEnd('window-throw-once.ts', join(tmp, 'state'), [
    // Batches of 16 records (160 ms of event time): with the default 512 (5 s), nearly every
    // batch's watermark fires each key, which writes its pane back before the barrier.
    '--set', 'parallelism=1', '--set', 'batchSize=16', '--set', 'checkpoint.intervalMs=100', '--set', 'restart.maxAttempts=2', '--set', 'restart.backoffMs=50', '--summary', summary,
  ], { TP_N: String(n), TP_BOOM_AT: '7000', TP_RATE: '2000', TP_OUT: out, TP_MARKER: marker });
  t.equal(e.code, 0, `the run completes after one restart (${e.ms} ms)${e.stderr ? `: ${e.stderr.trim()}` : ''}`);
  t.ok(existsSync(marker), 'the map did fail once');
  const s = JSON.parse(readFileSync(summary, 'utf8')) as { restarts: number; restoredFrom?: number };
  t.equal(s.restarts, 1, 'one restart');
  t.ok((s.restoredFrom ?? 0) >= 2, `restored from checkpoint ${s.restoredFrom}, not from scratch`);

  const want = reference(n);
  const { lines, wrong } = checkWindows(out, want);
  t.same(wrong.slice(0, 5), [], `${lines} windows, ${wrong.length} wrong`);
  t.equal(lines, want.size, 'one line per window');
});

t.test('the same flow under SIGKILLs: the window operator and its sink in one task (fused), exactly once', async (t) => {
  const n = 12_000;
  const state = join(tmp, 'kill-state');
  const out = join(tmp, 'kill', 'windows.jsonl');
  mkdirSync(dirname(out), { recursive: true });
  const env = { TP_N: String(n), TP_BOOM_AT: '-1', TP_RATE: '2000', TP_OUT: out, TP_MARKER: join(tmp, 'kill', 'never') };
  const args = ['--set', 'parallelism=1', '--set', 'batchSize=16', '--set', 'checkpoint.intervalMs=100', '--set', 'restart.maxAttempts=0'];
  const flowState = join(state, 'chk-window-throw-once');
  const r = rng(0x51d3);
  let killed = 0;
  for (let round = 0; round < 4; round++) {
    const before = newestManifest(flowState);
    const run = children.start('window-throw-once.ts', state, args, env);
    // Each run is killed 0–300 ms after it completed a checkpoint of its own: between
    // checkpoints, with panes changed since the last snapshot and windows in flight.
    const deadline = performance.now() + 30_000;
    while (!run.exited && newestManifest(flowState) <= before && performance.now() < deadline) await sleep(10);
    await Promise.race([run.done, sleep(Math.floor(r() * 300))]);
    if (!run.exited && run.child.kill('SIGKILL')) killed++;
    const e = await run.done;
    if (e.signal !== 'SIGKILL' && e.code !== 0) t.fail(`round ${round + 1}: exit ${e.code}: ${e.stderr.trim()}`);
    t.comment(`round ${round + 1}: ${e.signal ?? `exit ${e.code}`} after ${e.ms} ms, manifests ${before} → ${newestManifest(join(state, 'chk-window-throw-once'))}`);
  }
  t.ok(killed >= 3, `${killed} of 4 runs were SIGKILLed`);
  t.ok(newestManifest(flowState) >= 4, `each killed run completed a checkpoint first (newest ${newestManifest(flowState)})`);
  const summary = join(tmp, 'kill', 'summary.json');
  const fin = await children.runToEnd('window-throw-once.ts', state, [...args, '--summary', summary], { ...env, TP_RATE: '0' });
  t.equal(fin.code, 0, `the last run completes${fin.stderr ? `: ${fin.stderr.trim()}` : ''}`);
  const s = JSON.parse(readFileSync(summary, 'utf8')) as { operators: { task: string }[]; restoredFrom?: number };
  t.ok(s.operators.some((o) => o.task === 'counts→out'), `the window and its sink share a task: ${s.operators.map((o) => o.task).join(', ')}`);
  t.ok((s.restoredFrom ?? 0) > 0, `the last run restored checkpoint ${s.restoredFrom}`);
  const want = reference(n);
  const { lines, wrong } = checkWindows(out, want);
  t.same(wrong.slice(0, 5), [], `${lines} windows, ${wrong.length} wrong`);
  t.equal(lines, want.size, 'one line per window');
});
