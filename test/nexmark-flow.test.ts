// sources.nexmark inside real `tidepool run` processes: two source subtasks feed a
// keyed count of bids per auction; the output equals the plain count over
// nexmarkEvents(), and a run SIGKILLed mid-way and run again on its state ends with
// exactly that output too (each bid counted once: the source resumed at its positions).
import t from 'tap';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { nexmarkEvents } from '../src/connectors/nexmark-events.js';
import { FlowChildren, newestManifest, sleep } from './helpers/flow-child.js';

const children = new FlowChildren('tidepool-nexmark-flow-');
t.teardown(() => children.remove());
const { start, runToEnd } = children;
const FIXTURE = 'nexmark-bids.ts';
const EVENTS = 20_000;
const SEED = 77;

/** Per auction, the counts the reduce emitted, in output order. */
function updates(path: string): Map<number, number[]> {
  const m = new Map<number, number[]>();
  for (const line of readFileSync(path, 'utf8').split('\n')) {
    if (line === '') continue;
    const { key, value } = JSON.parse(line) as { key: number; value: number };
    let a = m.get(key);
    if (!a) m.set(key, (a = []));
    a.push(value);
  }
  return m;
}

/** Differences between an output and the reference: each auction's updates must be 1 … n. */
function check(got: Map<number, number[]>, want: Map<number, number>): string[] {
  const bad: string[] = [];
  for (const [auction, n] of want) {
    const seq = got.get(auction) ?? [];
    if (seq.length !== n || seq.some((v, k) => v !== k + 1)) bad.push(`auction ${auction}: ${n} bids, updates ${JSON.stringify(seq.slice(0, 8))}…(${seq.length})`);
  }
  for (const auction of got.keys()) if (!want.has(auction)) bad.push(`auction ${auction} has no bids`);
  return bad.slice(0, 5);
}

const want = new Map<number, number>();
for (const e of nexmarkEvents({ events: EVENTS, seed: SEED })) if (e.type === 'bid') want.set(e.auction, (want.get(e.auction) ?? 0) + 1);

t.test('two source subtasks: bids per auction equal the plain count', async (t) => {
  const out = join(children.dir, 'plain', 'counts.jsonl');
  const exit = await runToEnd(FIXTURE, join(children.dir, 'plain-state'), ['--set', 'parallelism=2'], {
    TP_EVENTS: String(EVENTS), TP_SEED: String(SEED), TP_OUT: out,
  });
  t.equal(exit.code, 0, exit.stderr);
  t.same(check(updates(out), want), []);
});

t.test('SIGKILL mid-run, run again: the same output, each bid once', async (t) => {
  const state = join(children.dir, 'crash-state');
  const out = join(children.dir, 'crash', 'counts.jsonl');
  // 20,000 events at 5,000/s: about 4 s, checkpoints every 150 ms.
  const env = { TP_EVENTS: String(EVENTS), TP_SEED: String(SEED), TP_OUT: out, TP_RATE: '5000' };
  const args = ['--set', 'parallelism=2', '--set', 'checkpoint.intervalMs=150'];
  const r = start(FIXTURE, state, args, env);
  const deadline = performance.now() + 30_000;
  while (!r.exited && newestManifest(join(state, 'chk-nexmark')) < 3 && performance.now() < deadline) await sleep(20);
  t.notOk(r.exited, 'the run was still going when killed');
  r.child.kill('SIGKILL');
  const killed = await r.done;
  t.equal(killed.signal, 'SIGKILL');
  let before = 0;
  try {
    before = [...updates(out).values()].reduce((n, a) => n + a.length, 0);
  } catch {
    // nothing published yet
  }
  const total = [...want.values()].reduce((n, c) => n + c, 0);
  t.ok(before < total, `killed with ${before} of ${total} updates published`);
  const exit = await runToEnd(FIXTURE, state, args, env);
  t.equal(exit.code, 0, exit.stderr);
  t.same(check(updates(out), want), [], 'exactly the uninterrupted output');
});
