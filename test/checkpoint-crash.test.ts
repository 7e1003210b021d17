// Crash loops: real `tidepool run` child processes, SIGKILLed at chosen moments on one
// state directory, then run to completion. The output must be exactly that of an
// uninterrupted run: one line per input record, each key's updates 1, 2, 3, … in order
// with no gap or duplicate, final values equal to a plain reference. A finished run
// run again changes nothing.
//
// Kills are spread over the phases of a run: while it starts (before any checkpoint),
// at fixed moments (between checkpoints), right after a new manifest appears (the
// sinks are publishing), and while a sink epoch is prepared but not yet committed (a
// checkpoint in flight). Most rounds pace the sources (TP_RATE) so a killed run makes
// some progress but does not finish; a few run unpaced (full rings, backpressure, slow
// barriers). After every kill the published output is checked too: committed bytes
// never change, and every key's updates are contiguous from 1. One more kill is placed
// exactly between the final checkpoint's manifest and its publication (a sink that
// holds commit), where a rerun must publish instead of reporting "already complete".
//
// Fixtures: test-fixtures/flows/checkpoint/{keyed-count,wordcount,slow-sink}.ts.
import t, { type Test } from 'tap';
import { existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { FlowChildren, manifestIds, newestManifest, sleep, type Exit } from './helpers/flow-child.js';
import { rng } from './helpers/rng.js';
import { readManifest } from '../src/runtime/checkpoints.js';

const children = new FlowChildren('tidepool-chk-crash-');
const tmp = children.dir;
t.teardown(() => children.remove());
const { start, runToEnd } = children;

// ---- state and output inspection ---------------------------------------------------

/** Prepared-but-unpublished epoch files of the file sink beside `out`. */
function epochFiles(out: string): string[] {
  try {
    return readdirSync(dirname(out)).filter((n) => n.startsWith(`${basename(out)}.epoch-`));
  } catch {
    return [];
  }
}

/** Epoch files with their inode: a file an earlier run left is not one this run prepared. */
function epochFileIds(out: string): string[] {
  const ids: string[] = [];
  for (const n of epochFiles(out)) {
    try {
      ids.push(`${n}@${statSync(join(dirname(out), n)).ino}`);
    } catch {
      // deleted meanwhile
    }
  }
  return ids;
}

/** The file sink's commit record (epoch, committed length), if any: see src/connectors/file-sink.ts. */
function committedLength(out: string): number {
  try {
    const c = JSON.parse(readFileSync(`${out}.committed`, 'utf8')) as { length: number };
    return c.length;
  } catch {
    return 0;
  }
}

function readOrEmpty(path: string): Buffer {
  try {
    return readFileSync(path);
  } catch {
    return Buffer.alloc(0);
  }
}

interface Update<V> { key: string; value: V }

/** Complete JSON lines of a (possibly torn) output file. */
function completeLines<V>(buf: Buffer): Update<V>[] {
  const text = buf.toString('utf8');
  const end = text.lastIndexOf('\n');
  if (end < 0) return [];
  return text.slice(0, end).split('\n').map((l) => JSON.parse(l) as Update<V>);
}

/**
 * Per key, the updates must count 1, 2, 3, … with nothing skipped or repeated; for the
 * keyed count each update also names its record, whose index must grow. Returns the
 * problems (at most `max`) and the last count per key.
 */
function checkSequences(lines: Update<unknown>[], countOf: (v: unknown) => number, indexOf?: (v: unknown) => number, max = 5): { problems: string[]; last: Map<string, number> } {
  const last = new Map<string, number>();
  const lastIndex = new Map<string, number>();
  const problems: string[] = [];
  for (let l = 0; l < lines.length; l++) {
    const { key, value } = lines[l]!;
    const n = countOf(value);
    const prev = last.get(key) ?? 0;
    if (n !== prev + 1 && problems.length < max) problems.push(`line ${l + 1}: key ${key} has update ${n} after ${prev}`);
    last.set(key, n);
    if (indexOf) {
      const i = indexOf(value);
      const pi = lastIndex.get(key) ?? -1;
      if (i <= pi && problems.length < max) problems.push(`line ${l + 1}: key ${key} record ${i} after record ${pi}`);
      lastIndex.set(key, i);
    }
  }
  return { problems, last };
}

// ---- the crash loop ------------------------------------------------------------------

type KillPlan =
  | { kind: 'at'; ms: number; rate: number } // SIGKILL `ms` after spawn
  | { kind: 'manifest'; nth: number; plusMs: number; rate: number } // after the run's nth new manifest (+ms)
  | { kind: 'prepared'; rate: number }; // as soon as this run prepared a sink epoch (a checkpoint in flight)

interface Round {
  plan: string;
  killedAtMs: number;
  killed: boolean;
  exit: string;
  manifestBefore: number;
  manifestAtKill: number;
  epochFilesAtKill: number;
  committedBefore: number;
  committedAfter: number;
}

function describe(p: KillPlan): string {
  const rate = p.rate > 0 ? `${p.rate}/s` : 'unpaced';
  if (p.kind === 'at') return `at ${p.ms} ms (${rate})`;
  if (p.kind === 'manifest') return `manifest #${p.nth} +${p.plusMs} ms (${rate})`;
  return `epoch prepared (${rate})`;
}

/** One round: start the flow, SIGKILL it as `plan` says (or see it exit), describe what happened. */
async function crashRound(plan: KillPlan, flowFile: string, state: string, flowState: string, out: string, args: string[], env: Record<string, string>): Promise<Round> {
  const manifestBefore = newestManifest(flowState);
  const committedBefore = committedLength(out);
  const leftovers = new Set(epochFileIds(out));
  const r = start(flowFile, state, args, { ...env, TP_RATE: String(plan.rate) });
  const deadline = r.started + 20_000; // fallback: a condition never met still ends in a kill
  for (;;) {
    if (r.exited) break;
    const now = performance.now();
    if (now >= deadline) break;
    if (plan.kind === 'at') {
      if (now - r.started >= plan.ms) break;
    } else if (plan.kind === 'manifest') {
      if (newestManifest(flowState) >= manifestBefore + plan.nth) {
        if (plan.plusMs > 0) await sleep(plan.plusMs);
        break;
      }
    } else if (epochFileIds(out).some((id) => !leftovers.has(id))) {
      break;
    }
    await sleep(plan.kind === 'at' ? 5 : 2);
  }
  const manifestAtKill = newestManifest(flowState);
  const epochFilesAtKill = epochFiles(out).length;
  const killedAtMs = Math.round(performance.now() - r.started);
  const killed = !r.exited && r.child.kill('SIGKILL');
  const e = await r.done;
  return {
    plan: describe(plan),
    killedAtMs,
    killed: killed && e.signal === 'SIGKILL',
    exit: e.signal ?? `code ${e.code}${e.stderr ? `: ${e.stderr.trim().split('\n')[0]}` : ''}`,
    manifestBefore,
    manifestAtKill,
    epochFilesAtKill,
    committedBefore,
    committedAfter: committedLength(out),
  };
}

function roundTable(rounds: Round[]): string {
  return rounds
    .map((r, i) => `#${String(i + 1).padStart(2)} ${r.plan.padEnd(32)} ${r.killed ? 'killed' : 'NOT killed'} at ${r.killedAtMs} ms (${r.exit}); manifest ${r.manifestBefore}→${r.manifestAtKill}, ${r.epochFilesAtKill} epoch file(s) pending, committed bytes ${r.committedBefore}→${r.committedAfter}`)
    .join('\n');
}

/**
 * The crash loop itself (`argsFor(i)`: the run arguments of round i), with checks after
 * every round: committed output bytes never change (the file may only grow past them),
 * complete lines form contiguous per-key sequences, and no more than `retain`
 * manifests are kept.
 */
async function crashLoop(
  t: Test, plans: KillPlan[], flowFile: string, state: string, flowState: string, out: string, retain: number,
  argsFor: (i: number) => string[], env: Record<string, string>, countOf: (v: unknown) => number, indexOf?: (v: unknown) => number,
): Promise<Round[]> {
  const rounds: Round[] = [];
  let committed = Buffer.alloc(0);
  const bad: string[] = [];
  for (let i = 0; i < plans.length; i++) {
    const args = argsFor(i);
    const round = await crashRound(plans[i]!, flowFile, state, flowState, out, args, env);
    const interval = args.find((a) => a.startsWith('checkpoint.intervalMs='));
    if (interval) round.plan += `, ${interval.slice('checkpoint.'.length)}`;
    rounds.push(round);
    if (!round.killed && round.exit !== 'code 0') bad.push(`round ${i + 1} (${round.plan}) failed: ${round.exit}`);
    const now = readOrEmpty(out);
    if (!now.subarray(0, committed.length).equals(committed)) bad.push(`round ${i + 1}: bytes committed before it changed`);
    committed = Buffer.from(now.subarray(0, committedLength(out)));
    const { problems } = checkSequences(completeLines(now), countOf, indexOf, 3);
    if (problems.length) bad.push(`round ${i + 1}: published output not exactly-once: ${problems.join('; ')}`);
    // A kill between writing a manifest and deleting the oldest one leaves one extra.
    const kept = manifestIds(flowState).length;
    if (kept > retain + 1) bad.push(`round ${i + 1}: ${kept} manifests kept (checkpoint.retain is ${retain})`);
  }
  t.comment(`crash loop:\n${roundTable(rounds)}`);
  t.same(bad, [], 'every round: killed or finished cleanly; committed output never changes; published output exactly-once; at most retain + 1 manifests');
  return rounds;
}

// ---- keyed count -----------------------------------------------------------------------

const N = 200_000;
const KEYS = 1000;
const keyOf = (i: number): string => `k${(Math.imul(i, 2654435761) >>> 0) % KEYS}`;

t.test('keyed count survives 14 SIGKILLs at random moments and ends exactly-once', async (t) => {
  const state = join(tmp, 'keyed-state');
  const flowState = join(state, 'chk-count');
  const out = join(tmp, 'keyed-out', 'counts.jsonl');
  const env = { TP_N: String(N), TP_KEYS: String(KEYS), TP_OUT: out };
  const args = ['--set', 'parallelism=2', '--set', 'checkpoint.retain=2'];
  // Interval per round: 50–200 ms. Rates are per source instance (2 instances).
  const r = rng(20240607);
  const ms = (lo: number, hi: number) => Math.round(lo + r() * (hi - lo));
  const plans: KillPlan[] = [
    { kind: 'at', ms: ms(150, 400), rate: 6000 }, // while starting: before the first checkpoint
    { kind: 'at', ms: ms(2500, 3500), rate: 6000 }, // around the first checkpoint
    { kind: 'manifest', nth: 1, plusMs: 0, rate: 6000 }, // right as a manifest lands: sinks publishing
    { kind: 'prepared', rate: 6000 }, // a checkpoint in flight
    { kind: 'at', ms: ms(400, 700), rate: 6000 }, // a restored run starting
    { kind: 'manifest', nth: 3, plusMs: ms(20, 120), rate: 6000 }, // between checkpoints
    { kind: 'at', ms: ms(900, 1400), rate: 0 }, // unpaced: full rings, a barrier queued behind them (it ends within ~2.5 s)
    { kind: 'at', ms: ms(2000, 3000), rate: 6000 },
    { kind: 'prepared', rate: 6000 },
    { kind: 'manifest', nth: 2, plusMs: 1, rate: 6000 },
    { kind: 'at', ms: ms(3000, 4000), rate: 4000 },
    { kind: 'prepared', rate: 4000 },
    { kind: 'manifest', nth: 4, plusMs: ms(0, 60), rate: 4000 },
    { kind: 'at', ms: ms(400, 800), rate: 4000 },
  ];
  const intervals = plans.map(() => ms(50, 200));
  const rounds = await crashLoop(t, plans, 'keyed-count.ts', state, flowState, out, 2, (i) => [...args, '--set', `checkpoint.intervalMs=${intervals[i]}`], env,
    (v) => (v as { n: number }).n, (v) => (v as { i: number }).i);
  t.ok(rounds.filter((x) => x.killed).length >= 12, `at least 12 runs were SIGKILLed (${rounds.filter((x) => x.killed).length} of ${rounds.length})`);
  t.ok(rounds.some((x) => x.killed && x.manifestAtKill === 0), 'a kill landed before the first checkpoint');
  t.ok(rounds.some((x) => x.killed && x.manifestAtKill > x.manifestBefore), 'a killed run had completed checkpoints (it resumes later)');
  t.ok(rounds.filter((x) => x.killed && x.manifestAtKill > 0).length >= 8, 'most kills landed after some checkpoint');
  t.ok(committedLength(out) > 0, 'progress was published during the loop');

  const fin = await runToEnd('keyed-count.ts', state, [...args, '--set', 'checkpoint.intervalMs=100'], { ...env, TP_RATE: '0' });
  t.equal(fin.code, 0, `the last run completes (${fin.ms} ms)${fin.stderr ? `: ${fin.stderr.trim()}` : ''}`);
  const bytes = checkKeyedCount(t, out);

  // Done is done: the same command again exits 0 and changes nothing.
  const manifestsDone = manifestIds(flowState);
  const again = await runToEnd('keyed-count.ts', state, [...args, '--set', 'checkpoint.intervalMs=100'], { ...env, TP_RATE: '0' });
  t.equal(again.code, 0, `running the finished flow again exits 0 (${again.ms} ms)${again.stderr ? `: ${again.stderr.trim()}` : ''}`);
  t.ok(readOrEmpty(out).equals(bytes), 'and leaves the output byte-identical');
  t.same(manifestIds(flowState), manifestsDone, 'and takes no new checkpoint');
});

t.test('fused at p=1 (gen→counts→out is one task): SIGKILLs while switching between fused, rescaled to 2 and unchained runs end exactly-once', async (t) => {
  const state = join(tmp, 'fused-state');
  const flowState = join(state, 'chk-count');
  const out = join(tmp, 'fused-out', 'counts.jsonl');
  const env = { TP_N: String(N), TP_KEYS: String(KEYS), TP_OUT: out };
  const base = ['--set', 'parallelism=1', '--set', 'checkpoint.retain=2'];
  // The state moves between a fused task's partition and a task of its own: same
  // partition (chaining off), new partitions (counts rescaled 1 → 2 and back).
  const shapes = [[], ['--set', 'operators.counts.parallelism=2'], [], ['--set', 'chaining=false'], [], ['--set', 'operators.counts.parallelism=2'], ['--set', 'chaining=false'], []];
  const r = rng(20261202);
  const ms = (lo: number, hi: number) => Math.round(lo + r() * (hi - lo));
  const plans: KillPlan[] = [
    { kind: 'manifest', nth: 2, plusMs: ms(0, 80), rate: 8000 },
    { kind: 'manifest', nth: 1, plusMs: ms(20, 120), rate: 8000 },
    { kind: 'prepared', rate: 8000 },
    { kind: 'manifest', nth: 3, plusMs: ms(0, 50), rate: 8000 },
    { kind: 'at', ms: ms(900, 1400), rate: 0 }, // unpaced
    { kind: 'manifest', nth: 2, plusMs: 1, rate: 8000 },
    { kind: 'prepared', rate: 8000 },
    { kind: 'at', ms: ms(300, 700), rate: 8000 },
  ];
  const intervals = plans.map(() => ms(50, 200));
  const rounds = await crashLoop(t, plans, 'keyed-count.ts', state, flowState, out, 2, (i) => [...base, ...shapes[i]!, '--set', `checkpoint.intervalMs=${intervals[i]}`], env,
    (v) => (v as { n: number }).n, (v) => (v as { i: number }).i);
  // Rounds 1, 2, 4 and 6 (fused, rescaled, unchained, rescaled) are killed only after checkpoints of their own.
  t.ok([0, 1, 3, 5].every((i) => rounds[i]!.killed && rounds[i]!.manifestAtKill > rounds[i]!.manifestBefore), 'runs of every shape completed checkpoints before their kill');
  const fin = await runToEnd('keyed-count.ts', state, [...base, '--set', 'checkpoint.intervalMs=100'], { ...env, TP_RATE: '0' });
  t.equal(fin.code, 0, `the last run (fused) completes (${fin.ms} ms)${fin.stderr ? `: ${fin.stderr.trim()}` : ''}`);
  const m = readManifest(flowState, newestManifest(flowState));
  t.same(m.tasks.map((x) => x.operators.join('→')), ['gen→counts→out'], 'its checkpoints hold one fused task');
  t.match(m.tasks[0]!.instances[0]!.stateId, /^counts#0(\.g\d+)?$/, 'whose state is a partition of counts');
  checkKeyedCount(t, out);
});

/** The keyed count's output file: one line per record, per-key sequences, final counts as a plain reference's. */
function checkKeyedCount(t: Test, out: string): Buffer {
  const bytes = readOrEmpty(out);
  const lines = completeLines<{ n: number; i: number }>(bytes);
  t.equal(bytes.length > 0 && bytes[bytes.length - 1], 0x0a, 'the output ends with a newline');
  t.equal(lines.length, N, 'exactly one output line per input record');
  const seen = new Uint8Array(N);
  let dup = 0;
  let wrongKey = 0;
  for (const l of lines) {
    if (seen[l.value.i]++) dup++;
    if (keyOf(l.value.i) !== l.key) wrongKey++;
  }
  t.equal(dup, 0, 'no record twice');
  t.equal(seen.filter((x) => x === 0).length, 0, 'no record missing');
  t.equal(wrongKey, 0, 'every update under its record key');
  const seq = checkSequences(lines, (v) => (v as { n: number }).n, (v) => (v as { i: number }).i);
  t.same(seq.problems, [], "each key's updates are 1, 2, 3, … in record order");
  const reference = new Map<string, number>();
  for (let i = 0; i < N; i++) reference.set(keyOf(i), (reference.get(keyOf(i)) ?? 0) + 1);
  t.same(Object.fromEntries(seq.last), Object.fromEntries(reference), 'final counts equal a plain reference');
  t.same(epochFiles(out), [], 'no unpublished epoch file left behind');
  return bytes;
}

// ---- word count over a text file ---------------------------------------------------------

function writeText(path: string, lines: number, seed: number): string[] {
  const r = rng(seed);
  const letters = "abcdefghijklmnopqrstuvwxyz'";
  const vocab = new Set<string>();
  while (vocab.size < 600) {
    let w = '';
    const len = 1 + Math.floor(r() * 8);
    for (let i = 0; i < len; i++) w += letters[Math.floor(r() * (i === 0 ? 26 : 27))];
    vocab.add(w);
  }
  const words = [...vocab];
  const seps = [' ', ' ', ', ', '. ', ' — ', '\t', ' 7 ', ' (', ') '];
  const out: string[] = [];
  for (let i = 0; i < lines; i++) {
    const n = Math.floor(r() * 12);
    let line = '';
    for (let j = 0; j < n; j++) {
      let w = words[Math.floor(words.length * r() ** 2)]!;
      if (r() < 0.1) w = w.toUpperCase();
      line += (j ? seps[Math.floor(r() * seps.length)] : '') + w;
    }
    out.push(line);
  }
  mkdirSync(dirname(path), { recursive: true });
  writeFileSync(path, out.join('\n') + '\n');
  return out;
}

t.test('word count over a text file survives a crash loop and ends exactly-once', async (t) => {
  const input = join(tmp, 'wc', 'input.txt');
  const out = join(tmp, 'wc', 'out', 'counts.jsonl');
  const state = join(tmp, 'wc-state');
  const flowState = join(state, 'chk-wordcount');
  const text = writeText(input, 24_000, 99);
  const reference = new Map<string, number>();
  let occurrences = 0;
  for (const line of text) {
    for (const w of line.toLowerCase().match(/[a-z']+/g) ?? []) {
      reference.set(w, (reference.get(w) ?? 0) + 1);
      occurrences++;
    }
  }
  t.ok(occurrences > 90_000 && reference.size > 400, `input: ${text.length} lines, ${occurrences} words, ${reference.size} distinct`);
  const env = { TP_INPUT: input, TP_OUT: out };
  const args = ['--set', 'parallelism=2', '--set', 'checkpoint.intervalMs=80', '--set', 'checkpoint.retain=2'];
  const plans: KillPlan[] = [
    { kind: 'at', ms: 250, rate: 800 }, // before the first checkpoint
    { kind: 'manifest', nth: 2, plusMs: 0, rate: 800 }, // sinks publishing
    { kind: 'prepared', rate: 800 }, // a checkpoint in flight
    { kind: 'at', ms: 3500, rate: 800 },
    { kind: 'manifest', nth: 3, plusMs: 100, rate: 800 }, // between checkpoints
    { kind: 'manifest', nth: 1, plusMs: 200, rate: 1500 },
  ];
  const rounds = await crashLoop(t, plans, 'wordcount.ts', state, flowState, out, 2, () => args, env, (v) => v as number);
  t.ok(rounds.filter((x) => x.killed).length >= 5, 'the runs were SIGKILLed');
  t.ok(rounds.some((x) => x.killed && x.manifestAtKill > 0), 'some after a completed checkpoint');
  t.ok(committedLength(out) > 0, 'progress was published during the loop');

  const fin = await runToEnd('wordcount.ts', state, args, { ...env, TP_RATE: '0' });
  t.equal(fin.code, 0, `the last run completes (${fin.ms} ms)${fin.stderr ? `: ${fin.stderr.trim()}` : ''}`);
  const bytes = readOrEmpty(out);
  const lines = completeLines<number>(bytes);
  t.equal(lines.length, occurrences, 'one output line per word occurrence');
  const seq = checkSequences(lines, (v) => v as number);
  t.same(seq.problems, [], "each word's counts are 1, 2, 3, … with no gap or duplicate");
  t.same(Object.fromEntries(seq.last), Object.fromEntries(reference), 'final counts equal a plain reference');

  const again = await runToEnd('wordcount.ts', state, args, { ...env, TP_RATE: '0' });
  t.equal(again.code, 0, 'running the finished flow again exits 0');
  t.ok(readOrEmpty(out).equals(bytes), 'and leaves the output byte-identical');
});

// ---- a kill while the final checkpoint publishes -------------------------------------------

t.test('a kill after the final manifest, before the sink published it, loses no output', async (t) => {
  const out = join(tmp, 'slow', 'out.jsonl');
  const marker = join(tmp, 'slow', 'committing');
  const state = join(tmp, 'slow-state');
  const flowState = join(state, 'chk-slow-sink');
  const n = 5000;
  const env = { TP_N: String(n), TP_OUT: out, TP_MARKER: marker };
  // No periodic checkpoint: the only one is the final one, and its commit is held 5 s.
  const args = ['--set', 'parallelism=2', '--set', 'checkpoint.intervalMs=0'];
  mkdirSync(dirname(out), { recursive: true });
  const r = start('slow-sink.ts', state, args, { ...env, TP_SLOW_PHASE: 'commit', TP_SLOW_MS: '5000' });
  const deadline = performance.now() + 60_000;
  while (!existsSync(marker) && !r.exited && performance.now() < deadline) await sleep(2);
  const killed = !r.exited && r.child.kill('SIGKILL');
  const e = await r.done;
  t.ok(killed && e.signal === 'SIGKILL', `killed while publishing (${e.signal ?? `code ${e.code}`})`);
  const ids = manifestIds(flowState);
  const m = JSON.parse(readFileSync(join(flowState, 'checkpoints', `chk-${String(ids.at(-1)).padStart(10, '0')}.json`), 'utf8')) as { final: boolean };
  t.ok(m.final, 'the final checkpoint was complete when the run died');
  t.equal(completeLines(readOrEmpty(out)).length, 0, 'nothing was published yet');

  const fin = await runToEnd('slow-sink.ts', state, args, env);
  t.equal(fin.code, 0, `the rerun exits 0${fin.stderr ? `: ${fin.stderr.trim()}` : ''}`);
  const lines = completeLines<{ n: number; i: number }>(readOrEmpty(out));
  t.equal(lines.length, n, 'the rerun publishes the final checkpoint: one line per record');
  const seq = checkSequences(lines, (v) => (v as { n: number }).n, (v) => (v as { i: number }).i);
  t.same(seq.problems, [], 'exactly once, in order');
  t.same(epochFiles(out), [], 'no unpublished epoch file left behind');
});
