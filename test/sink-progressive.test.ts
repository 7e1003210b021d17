// Without checkpoints (memory or temp state) sinks.stdout() and a stream file sink (a
// FIFO) write records as they come: an unbounded flow's first lines arrive while it
// runs. Child `tidepool run`s (helpers/stream-runs.ts), killed once the lines are in.
import t from 'tap';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { line, mkfifo, readFifo, start as startIn, waitForLines } from './helpers/stream-runs.js';

const tmp = mkdtempSync(join(tmpdir(), 'tidepool-sink-progressive-'));
t.teardown(() => rmSync(tmp, { recursive: true, force: true }));
const start = (output: string, count: number | undefined, args: string[]) => startIn(tmp, output, count, args);

for (const storage of ['memory', 'temp']) {
  t.test(`${storage} state: stdout prints records while the unbounded flow runs`, async (t) => {
    const c = start('stdout', undefined, ['--set', `state.storage=${storage}`, '--set', 'parallelism=1']);
    try {
      const first = await waitForLines(c.stdout, 50, 30_000, 'stdout');
      t.equal(c.child.exitCode, null, 'the flow is still running');
      t.same(first.map((l) => `${l}\n`), Array.from({ length: 50 }, (_, i) => line(i)), 'the first records, in order');
    } finally {
      c.child.kill('SIGKILL');
      await c.done;
    }
  });
}

t.test('memory state: a FIFO sink receives records while the unbounded flow runs', async (t) => {
  const dir = join(tmp, 'fifo');
  mkdirSync(dir);
  const fifo = join(dir, 'live.jsonl');
  mkfifo(fifo);
  const reader = readFifo(fifo);
  const c = start(fifo, undefined, ['--set', 'state.storage=memory', '--set', 'parallelism=1']);
  try {
    const first = await waitForLines(reader.text, 50, 30_000, 'FIFO');
    t.equal(c.child.exitCode, null, 'the flow is still running');
    t.same(first.map((l) => `${l}\n`), Array.from({ length: 50 }, (_, i) => line(i)), 'the first records, in order');
  } finally {
    c.child.kill('SIGKILL');
    await c.done;
    await reader.finish();
  }
});
