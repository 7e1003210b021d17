// A --state directory belongs to one run at a time, and a checkpoint restores only into
// the flow that wrote it: a second run on a live state directory, a renamed or added
// source, and a window whose shape changed each exit non-zero with one line naming the
// problem, and change nothing (the first run, or a later run of the right flow, still
// produces exactly the uninterrupted output).
import t from 'tap';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { FlowChildren, newestManifest, sleep } from './helpers/flow-child.js';

const children = new FlowChildren('tidepool-state-guard-');
t.teardown(() => children.remove());
const { start, runToEnd } = children;
const N = 30_000;

/** Last { n } per key of the keyed-count output, and how many lines there were. */
function counts(out: string): { lines: number; total: number } {
  const last = new Map<string, number>();
  let lines = 0;
  for (const l of readFileSync(out, 'utf8').split('\n')) {
    if (!l) continue;
    lines++;
    const r = JSON.parse(l) as { key: string; value: { n: number } };
    last.set(r.key, r.value.n);
  }
  return { lines, total: [...last.values()].reduce((a, b) => a + b, 0) };
}

t.test('a second run on a live state directory exits at once with one line; the first is unharmed', async (t) => {
  const state = join(children.dir, 'live');
  const out = join(children.dir, 'live.jsonl');
  const env = { TP_N: String(N), TP_OUT: out, TP_RATE: '3000' };
  const first = start('keyed-count.ts', state, ['--set', 'checkpoint.intervalMs=100'], env);
  while (!first.exited && newestManifest(join(state, 'chk-count')) < 2) await sleep(10);
  t.notOk(first.exited, 'the first run is still going');
  const t0 = performance.now();
  const second = await runToEnd('keyed-count.ts', state, ['--set', 'checkpoint.intervalMs=100'], { ...env, TP_OUT: join(children.dir, 'other.jsonl') });
  t.not(second.code, 0, 'the second run fails');
  t.match(second.stderr, new RegExp(`^tidepool: state directory ${state.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} is in use by another run; one run at a time per --state directory\\n$`));
  t.ok(performance.now() - t0 < 20_000, 'and does so without waiting for the first');
  const e = await first.done;
  t.equal(e.code, 0, e.stderr);
  t.same(counts(out), { lines: N, total: N }, 'the first run wrote exactly its output');
  const again = await runToEnd('keyed-count.ts', state, [], env);
  t.equal(again.code, 0, `after the first ended the directory is free again: ${again.stderr}`);
});

t.test('a renamed source or a changed window shape is refused on restore', async (t) => {
  const state = join(children.dir, 'changed');
  const out = join(children.dir, 'changed.jsonl');
  const env = { TP_N: String(N), TP_OUT: out, TP_RATE: '3000' };
  const r = start('keyed-count.ts', state, ['--set', 'checkpoint.intervalMs=100'], env);
  while (!r.exited && newestManifest(join(state, 'chk-count')) < 2) await sleep(10);
  r.child.kill('SIGKILL');
  await r.done;
  const renamed = await runToEnd('keyed-count.ts', state, [], { ...env, TP_SOURCE: 'gen2' });
  t.not(renamed.code, 0);
  t.match(renamed.stderr, /^tidepool: source 'gen'.*no such source \(renamed\?\).*--allow-dropped-state.*\n$/, 'names the source that is gone');
  const resumed = await runToEnd('keyed-count.ts', state, [], { ...env, TP_RATE: '0' }); // unpaced: only the result matters now
  t.equal(resumed.code, 0, `the right flow still resumes: ${resumed.stderr}`);
  t.same(counts(out), { lines: N, total: N }, 'exactly once');

  const gstate = join(children.dir, 'graph');
  const gout = join(children.dir, 'graph-out');
  const genv = { TP_OUT: gout, TP_RATE: '1500' };
  const g = start('graph.ts', gstate, ['--set', 'checkpoint.intervalMs=100'], genv);
  while (!g.exited && newestManifest(join(gstate, 'chk-graph')) < 2) await sleep(10);
  g.child.kill('SIGKILL');
  await g.done;
  const reshaped = await runToEnd('graph.ts', gstate, [], { ...genv, TP_SLIDE: '500' });
  t.not(reshaped.code, 0);
  t.match(reshaped.stderr, /^tidepool: operator 'win': changed shape since checkpoint \d+ \(window:.*"slideMs":250.* → window:.*"slideMs":500.*\); its state cannot be restored\n$/);
});
