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
import { FlowChildren } from './helpers/flow-child.js';

const children = new FlowChildren('tidepool-window-restore-');
const tmp = children.dir;
t.teardown(() => children.remove());

interface WindowLine { key: string; window: { start: number; end: number }; value: number }

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

  const lines = readFileSync(out, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as WindowLine);
  const want = reference(n);
  const seen = new Map<string, number>();
  const wrong: string[] = [];
  for (const l of lines) {
    const id = `${l.key}@${l.window.start}`;
    if (seen.has(id)) wrong.push(`${id} twice`);
    seen.set(id, l.value);
    if (want.get(id) !== l.value) wrong.push(`${id}: ${l.value}, expected ${want.get(id)}`);
  }
  for (const id of want.keys()) if (!seen.has(id)) wrong.push(`${id} missing`);
  t.same(wrong.slice(0, 5), [], `${lines.length} windows, ${wrong.length} wrong`);
  t.equal(lines.length, want.size, 'one line per window');
});
