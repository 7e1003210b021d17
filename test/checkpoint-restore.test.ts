// Restoring checkpoints: in-process restarts after a failure, `--from-checkpoint`,
// damaged state (a garbage manifest, a flipped byte in a stored page), restoring into
// a changed flow, a kill between a durable snapshot and its manifest, and bounded disk
// use (GC of page versions and manifests). Real `tidepool run` child processes and real
// SIGKILLs; the LMDB state is read and damaged directly with lmdb-js.
//
// Fixtures: test-fixtures/flows/checkpoint/{keyed-count,keyed-process-count,throw-once,slow-sink}.ts.
import t, { type Test } from 'tap';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { FlowChildren, manifestIds, newestManifest, sleep, type Exit } from './helpers/flow-child.js';
import { checkExactlyOnce, readOrEmpty } from './helpers/keyed-output.js';
import { open as openLmdb } from 'lmdb';
import { LMDB_PAGE_BYTES } from '../src/storage/io-protocol.js';
import { isDeltaEnvelope } from '../src/state/page-format.js';
import { DELTA_CHAIN_MAX } from '../src/state/page-delta.js';
import { isPageKey, openPageDbs } from '../src/storage/page-chain.js';

const children = new FlowChildren('tidepool-chk-restore-');
const tmp = children.dir;
t.teardown(() => children.remove());
const { start, runToEnd } = children;

/** Starts the flow and SIGKILLs it once `until()` holds (checked every few ms); fails if it exits first. */
async function runAndKill(t: Test, flowFile: string, state: string, args: string[], env: Record<string, string>, until: () => boolean, what: string, plusMs = 0): Promise<void> {
  const r = start(flowFile, state, args, env);
  const deadline = r.started + 60_000;
  while (!r.exited && !until() && performance.now() < deadline) await sleep(3);
  if (plusMs > 0) await sleep(plusMs);
  const killed = !r.exited && r.child.kill('SIGKILL');
  const e = await r.done;
  t.ok(killed && e.signal === 'SIGKILL', `SIGKILLed ${what} after ${e.ms} ms${killed ? '' : ` — it ended first: code ${e.code} ${e.stderr.trim()}`}`);
}

/** The one stderr line of a failed run. */
function oneLine(t: Test, e: Exit, what: string): string {
  const lines = e.stderr.trim().split('\n').filter((l) => l !== '');
  t.not(e.code, 0, `${what}: exits non-zero`);
  t.equal(lines.length, 1, `${what}: one stderr line: ${JSON.stringify(lines[0] ?? '')}${lines.length > 1 ? ` (+${lines.length - 1} more: ${JSON.stringify(lines.slice(1, 4))})` : ''}`);
  return lines[0] ?? '';
}

// ---- state and output inspection ---------------------------------------------------

const manifestPath = (flowState: string, id: number) => join(flowState, 'checkpoints', `chk-${String(id).padStart(10, '0')}.json`);

interface ManifestJson {
  id: number;
  final: boolean;
  bytesWritten: number;
  tasks: { operators: string[]; parallelism: number; instances: { subtask: number; stateId?: string; version?: number }[] }[];
}

const readManifest = (flowState: string, id: number) => JSON.parse(readFileSync(manifestPath(flowState, id), 'utf8')) as ManifestJson;

/** Every file under `dirs`: path, size and content hash, sorted. */
function listing(...dirs: string[]): string[] {
  const out: string[] = [];
  const walk = (root: string, dir: string) => {
    let names: string[];
    try {
      names = readdirSync(dir);
    } catch {
      return;
    }
    for (const n of names) {
      const p = join(dir, n);
      const st = statSync(p);
      if (st.isDirectory()) walk(root, p);
      else out.push(`${relative(dirname(root), p)} ${st.size} ${createHash('sha1').update(readFileSync(p)).digest('hex').slice(0, 12)}`);
    }
  };
  for (const d of dirs) walk(d, d);
  return out.sort();
}

/** The LMDB environment of a flow's state, opened as the I/O worker opens it. */
function openState(flowState: string) {
  const root = openLmdb({ path: flowState, maxDbs: 8, noSubdir: false, compression: false });
  const { pages, deltas } = openPageDbs(root);
  const commits = root.openDB<{ version: number }, [string, number]>({ name: 'commits', encoding: 'msgpack', keyEncoding: 'ordered-binary' });
  return { root, pages, deltas, commits };
}

const KEYS = 1000;
const keyOfCount = (i: number): string => `k${(Math.imul(i, 2654435761) >>> 0) % KEYS}`;

// ---- in-process restart ----------------------------------------------------------------

t.test('a map that throws once: an in-process restart completes exactly-once; without restarts the run fails naming the operator', async (t) => {
  const n = 16_000;
  const keyOf = (i: number) => `k${i % 100}`;
  // Record 8000 comes ~2.7 s into the run (2 × 1500 records/s): after some checkpoints.
  const base = { TP_N: String(n), TP_BOOM_AT: '8000', TP_RATE: '1500' };
  const args = ['--set', 'parallelism=2', '--set', 'checkpoint.intervalMs=100'];

  const out = join(tmp, 'restart', 'out.jsonl');
  const marker = join(tmp, 'restart', 'failed-once');
  const summary = join(tmp, 'restart', 'summary.json');
  mkdirSync(dirname(out), { recursive: true });
  const ok = await runToEnd('throw-once.ts', join(tmp, 'restart-state'), [...args, '--set', 'restart.maxAttempts=2', '--set', 'restart.backoffMs=50', '--summary', summary], { ...base, TP_OUT: out, TP_MARKER: marker });
  t.equal(ok.code, 0, `with restart.maxAttempts=2 the run completes (${ok.ms} ms)`);
  t.ok(existsSync(marker), 'the map did fail once');
  const notes = ok.stderr.trim().split('\n').filter((l) => l !== '');
  t.equal(notes.length, 1, `one restart notice: ${JSON.stringify(notes)}`);
  t.match(notes[0] ?? '', /boom/, 'naming the operator that failed');
  const s = JSON.parse(readFileSync(summary, 'utf8')) as { restarts: number; restoredFrom?: number };
  t.equal(s.restarts, 1, 'the summary counts one restart');
  t.ok((s.restoredFrom ?? 0) >= 1, `the restart resumed from a checkpoint (${s.restoredFrom}), not from scratch`);
  checkExactlyOnce(t, out, n, keyOf, 'after the restart');

  // A failure before the first checkpoint restarts from scratch.
  const outEarly = join(tmp, 'early', 'out.jsonl');
  mkdirSync(dirname(outEarly), { recursive: true });
  const early = await runToEnd('throw-once.ts', join(tmp, 'early-state'), [...args, '--set', 'restart.maxAttempts=1', '--set', 'restart.backoffMs=50'],
    { TP_N: '5000', TP_BOOM_AT: '50', TP_OUT: outEarly, TP_MARKER: join(tmp, 'early', 'failed-once') });
  t.equal(early.code, 0, `a failure at record 50 (before any checkpoint) restarts from scratch and completes${early.stderr ? `: ${early.stderr.trim()}` : ''}`);
  checkExactlyOnce(t, outEarly, 5000, keyOf, 'after a restart from scratch');

  const out0 = join(tmp, 'no-restart', 'out.jsonl');
  const marker0 = join(tmp, 'no-restart', 'failed-once');
  mkdirSync(dirname(out0), { recursive: true });
  const failed = await runToEnd('throw-once.ts', join(tmp, 'no-restart-state'), [...args, '--set', 'restart.maxAttempts=0'], { ...base, TP_RATE: '0', TP_OUT: out0, TP_MARKER: marker0 });
  const line = oneLine(t, failed, 'restart.maxAttempts=0');
  t.match(line, /boom/, 'the line names the operator');
  t.match(line, /planned failure at record 8000/, 'and the error');
});

// ---- --from-checkpoint -----------------------------------------------------------------

t.test('--from-checkpoint restores an older retained checkpoint; an unknown id is a one-line error', async (t) => {
  const n = 60_000;
  const state = join(tmp, 'from-state');
  const flowState = join(state, 'chk-count');
  const out = join(tmp, 'from', 'counts.jsonl');
  const env = { TP_N: String(n), TP_OUT: out };
  const args = ['--set', 'parallelism=2', '--set', 'checkpoint.intervalMs=100', '--set', 'checkpoint.retain=3'];
  await runAndKill(t, 'keyed-count.ts', state, args, { ...env, TP_RATE: '4000' }, () => newestManifest(flowState) >= 5, 'after 5 checkpoints', 100);
  const ids = manifestIds(flowState);
  t.ok(ids.length >= 3, `retained: ${ids.join(', ')}`);
  const old = ids[ids.length - 3]!;

  const before = listing(state, dirname(out));
  const unknown = await runToEnd('keyed-count.ts', state, [...args, '--from-checkpoint', '999'], env);
  t.match(oneLine(t, unknown, '--from-checkpoint 999'), /999/, 'the line names the id');
  t.same(listing(state, dirname(out)), before, 'state and output unchanged');

  const summary = join(tmp, 'from', 'summary.json');
  const e = await runToEnd('keyed-count.ts', state, [...args, '--from-checkpoint', String(old), '--summary', summary], { ...env, TP_RATE: '0' });
  t.equal(e.code, 0, `--from-checkpoint ${old} completes (${e.ms} ms)${e.stderr ? `: ${e.stderr.trim()}` : ''}`);
  if (e.code === 0) t.equal((JSON.parse(readFileSync(summary, 'utf8')) as { restoredFrom?: number }).restoredFrom, old, `restored from ${old}`);
  checkExactlyOnce(t, out, n, keyOfCount, `from checkpoint ${old} of ${ids.join(', ')}`);
});

t.test('after --from-checkpoint and a crash, the next rerun resumes and ends exactly-once', async (t) => {
  const n = 60_000;
  const state = join(tmp, 'from2-state');
  const flowState = join(state, 'chk-count');
  const out = join(tmp, 'from2', 'counts.jsonl');
  const env = { TP_N: String(n), TP_OUT: out };
  const args = ['--set', 'parallelism=2', '--set', 'checkpoint.intervalMs=100', '--set', 'checkpoint.retain=3'];
  await runAndKill(t, 'keyed-count.ts', state, args, { ...env, TP_RATE: '4000' }, () => newestManifest(flowState) >= 5, 'after 5 checkpoints', 100);
  const ids = manifestIds(flowState);
  const old = ids[ids.length - 3]!;
  // Restore the oldest retained checkpoint and crash once that run completed its first
  // checkpoint (it rewrites manifest old+1; manifests of the abandoned run may remain).
  const next = manifestPath(flowState, old + 1);
  const stamp = () => (existsSync(next) ? `${statSync(next).mtimeMs} ${createHash('sha1').update(readOrEmpty(next)).digest('hex')}` : '');
  const was = stamp();
  await runAndKill(t, 'keyed-count.ts', state, [...args, '--from-checkpoint', String(old)], { ...env, TP_RATE: '3000' }, () => stamp() !== was && stamp() !== '', `the run from checkpoint ${old} once it wrote checkpoint ${old + 1}`);
  t.comment(`retained before: ${ids.join(', ')}; after: ${manifestIds(flowState).join(', ')}`);
  const e = await runToEnd('keyed-count.ts', state, [...args, '--set', 'restart.maxAttempts=0'], { ...env, TP_RATE: '0' });
  t.equal(e.code, 0, `the plain rerun completes (${e.ms} ms)${e.stderr ? `: ${e.stderr.trim()}` : ''}`);
  checkExactlyOnce(t, out, n, keyOfCount, 'after --from-checkpoint, a crash and a rerun');
});

// ---- damaged state -----------------------------------------------------------------------

t.test('a corrupted manifest: one line naming it, exit non-zero, state unchanged', async (t) => {
  const state = join(tmp, 'badmanifest-state');
  const flowState = join(state, 'chk-count');
  const out = join(tmp, 'badmanifest', 'counts.jsonl');
  const env = { TP_N: '60000', TP_OUT: out };
  const args = ['--set', 'parallelism=2', '--set', 'checkpoint.intervalMs=100'];
  await runAndKill(t, 'keyed-count.ts', state, args, { ...env, TP_RATE: '4000' }, () => newestManifest(flowState) >= 2, 'after 2 checkpoints', 100);
  const newest = newestManifest(flowState);
  const path = manifestPath(flowState, newest);
  writeFileSync(path, '{"format":1,"id":' + newest + ',"tasks":[{"oper\u0000\u0007 garbage');
  const before = listing(state, dirname(out));
  const e = await runToEnd('keyed-count.ts', state, args, env);
  const line = oneLine(t, e, 'garbage manifest');
  t.ok(line.includes(`chk-${String(newest).padStart(10, '0')}.json`), 'the line names the manifest file');
  t.match(line, /corrupt/, 'and says it is corrupted');
  t.same(listing(state, dirname(out)), before, 'state directory and output unchanged');
  // Valid JSON that is not a manifest of this checkpoint is refused the same way.
  writeFileSync(path, JSON.stringify({ format: 1, id: newest + 1, tasks: [] }));
  const before2 = listing(state, dirname(out));
  const e2 = await runToEnd('keyed-count.ts', state, args, env);
  t.ok(oneLine(t, e2, 'manifest with the wrong id').includes(`chk-${String(newest).padStart(10, '0')}.json`), 'the line names the manifest file');
  t.same(listing(state, dirname(out)), before2, 'state directory and output unchanged');
});

t.test("a flipped byte in a stored page: one line with 'corrupted page', exit non-zero", async (t) => {
  const state = join(tmp, 'badpage-state');
  const flowState = join(state, 'chk-count');
  const out = join(tmp, 'badpage', 'counts.jsonl');
  const env = { TP_N: '60000', TP_OUT: out };
  const args = ['--set', 'parallelism=2', '--set', 'checkpoint.intervalMs=100'];
  await runAndKill(t, 'keyed-count.ts', state, args, { ...env, TP_RATE: '4000' }, () => newestManifest(flowState) >= 2, 'after 2 checkpoints', 100);
  const m = readManifest(flowState, newestManifest(flowState));
  const inst = m.tasks.find((x) => x.operators.includes('counts'))!.instances.find((i) => i.subtask === 0)!;
  t.ok(inst.stateId && inst.version, `the checkpoint holds ${inst.stateId} at version ${inst.version}`);
  // Flip one payload byte in each page version the restored state reads: per page, the
  // newest version ≤ the checkpoint's.
  const { root, pages } = openState(flowState);
  const live = new Map<number, [string, number, number]>();
  for (const key of pages.getKeys({ start: [inst.stateId!, -1, 0], end: [inst.stateId!, Number.MAX_SAFE_INTEGER, 0] })) {
    const k = key as [string, number, number];
    if (k[0] === inst.stateId && k[2] <= inst.version!) live.set(k[1], k);
  }
  let flipped = 0;
  for (const key of live.values()) {
    const page = Buffer.from(pages.get(key)!);
    if (page.length <= 32) continue;
    const at = 24 + ((page.length - 24) >> 1);
    page[at] = page[at]! ^ 0x5a;
    await pages.put(key, page);
    flipped++;
  }
  await root.close();
  t.ok(flipped > 0, `flipped a byte in ${flipped} page(s) of ${inst.stateId}`);
  const e = await runToEnd('keyed-count.ts', state, args, env);
  const line = oneLine(t, e, 'corrupted page');
  t.match(line, /corrupted page/, "the line says 'corrupted page'");
  t.match(line, /counts/, 'and names the table');
});

// ---- restoring into a changed flow ----------------------------------------------------------

t.test('restoring into a changed flow: a renamed stateful operator or a re-split source is a one-line error; a reduce rescaled 1 → 3 → 2 restores exactly-once', async (t) => {
  const state = join(tmp, 'changed-state');
  const flowState = join(state, 'chk-count');
  const out = join(tmp, 'changed', 'counts.jsonl');
  const n = 40_000;
  const env = { TP_N: String(n), TP_OUT: out };
  const base = ['--set', 'parallelism=2', '--set', 'checkpoint.intervalMs=100', '--set', 'checkpoint.retain=2'];
  const args = [...base, '--set', 'operators.counts.parallelism=1'];
  await runAndKill(t, 'keyed-count.ts', state, args, { ...env, TP_RATE: '4000' }, () => newestManifest(flowState) >= 2, 'after 2 checkpoints', 100);
  const before = listing(state, dirname(out));

  const renamed = await runToEnd('keyed-count.ts', state, base, { ...env, TP_REDUCE: 'tally' }); // no settings for an operator it lacks
  t.match(oneLine(t, renamed, 'reduce renamed counts → tally'), /'counts'/, 'the line names the operator whose state would be lost');
  t.same(listing(state, dirname(out)), before, 'state and output unchanged');

  const resplit = await runToEnd('keyed-count.ts', state, [...args, '--set', 'operators.gen.parallelism=1'], env);
  const line = oneLine(t, resplit, 'source gen at parallelism 1 instead of 2');
  t.match(line, /'gen'/, 'the line names the source');
  t.match(line, /parallelism/, 'and what changed');
  t.same(listing(state, dirname(out)), before, 'state and output unchanged');

  // The stateful operator at another parallelism: its key groups move to new partitions,
  // 1 → 3, then 3 → 2. Each rescaled run dies after one new checkpoint, before `retain`
  // of them exist (older partitions are still restorable then); the last run must
  // collect every partition no retained checkpoint names.
  const p3 = [...base, '--set', 'operators.counts.parallelism=3'];
  let last = newestManifest(flowState);
  await runAndKill(t, 'keyed-count.ts', state, p3, { ...env, TP_RATE: '4000' }, () => newestManifest(flowState) > last, 'after 1 checkpoint rescaled 1 → 3', 0);
  const p2 = [...base, '--set', 'operators.counts.parallelism=2'];
  last = newestManifest(flowState);
  await runAndKill(t, 'keyed-count.ts', state, p2, { ...env, TP_RATE: '4000' }, () => newestManifest(flowState) > last, 'after 1 checkpoint rescaled 3 → 2', 0);
  const rescaled = await runToEnd('keyed-count.ts', state, p2, env);
  t.equal(rescaled.code, 0, `counts at parallelism 2 completes${rescaled.stderr ? `: ${rescaled.stderr.trim()}` : ''}`);
  const m = readManifest(flowState, newestManifest(flowState));
  t.equal(m.tasks.find((x) => x.operators[0] === 'counts')?.parallelism, 2, 'the last checkpoint has counts at parallelism 2');
  checkExactlyOnce(t, out, n, keyOfCount, 'after the refused restores and rescales 1 → 3 → 2');

  // Once no retained checkpoint names the old partitions, their pages are garbage.
  const named = new Set(manifestIds(flowState).flatMap((id) => readManifest(flowState, id).tasks.flatMap((x) => x.instances.map((i) => i.stateId)).filter((x) => x)));
  const { root, pages } = openState(flowState);
  const stored = new Map<string, number>();
  for (const key of pages.getKeys({})) {
    const id = (key as [string, number, number])[0];
    stored.set(id, (stored.get(id) ?? 0) + 1);
  }
  await root.close();
  const orphans = [...stored].filter(([id]) => !named.has(id)).map(([id, c]) => `${id}: ${c} page versions`);
  t.same(orphans, [], `no pages of partitions no retained checkpoint names (named: ${[...named].join(', ')})`);
});

t.test('rescaling a checkpoint whose partitions never flushed (no record reached them): they are empty, not read', async (t) => {
  // One key: one counts instance of three gets every record; the other two never create
  // their state (a process operator's table appears with its first record), so they
  // never flush and the manifest names them at version 0. Rescaling from it
  // failed with 'flush 0 named by the checkpoint is missing' (fixed in 97a790d; this
  // test makes that case certain instead of a race of worker start-up against the
  // first checkpoint).
  const state = join(tmp, 'v0-state');
  const flowState = join(state, 'chk-count');
  const out = join(tmp, 'v0', 'counts.jsonl');
  const n = 6000;
  const env = { TP_N: String(n), TP_OUT: out, TP_KEYS: '1' };
  const base = ['--set', 'parallelism=1', '--set', 'checkpoint.intervalMs=100', '--set', 'checkpoint.retain=2'];
  await runAndKill(t, 'keyed-process-count.ts', state, [...base, '--set', 'operators.counts.parallelism=3'], { ...env, TP_RATE: '2000' }, () => newestManifest(flowState) >= 2, 'after 2 checkpoints at counts ×3', 0);
  const m = readManifest(flowState, newestManifest(flowState));
  const counts = m.tasks.find((x) => x.operators.includes('counts'));
  const versions = (counts?.instances ?? []).map((i) => i.version ?? 0).sort((a, b) => a - b);
  t.equal(counts?.parallelism, 3, 'the checkpoint has counts at parallelism 3');
  t.same(versions.slice(0, 2), [0, 0], `two of its partitions never flushed (versions ${versions.join(', ')})`);
  t.ok((versions[2] ?? 0) > 0, 'the one with the key did');
  const rescaled = await runToEnd('keyed-process-count.ts', state, [...base, '--set', 'operators.counts.parallelism=2'], env);
  t.equal(rescaled.code, 0, `counts rescaled 3 → 2 completes${rescaled.stderr ? `: ${rescaled.stderr.trim()}` : ''}`);
  checkExactlyOnce(t, out, n, () => 'k0', 'after a rescale from partitions at version 0');
});

// ---- GC and the manifests it must keep -------------------------------------------------------

t.test('a kill after a snapshot is durable but before its manifest: the previous checkpoint still restores (retain=1)', async (t) => {
  const state = join(tmp, 'gcwindow-state');
  const flowState = join(state, 'chk-slow-sink');
  const out = join(tmp, 'gcwindow', 'out.jsonl');
  const marker = join(tmp, 'gcwindow', 'marker');
  const n = 20_000;
  mkdirSync(dirname(out), { recursive: true });
  const env = { TP_N: String(n), TP_OUT: out, TP_MARKER: marker };
  const args = ['--set', 'parallelism=2', '--set', 'checkpoint.intervalMs=100', '--set', 'checkpoint.retain=1'];
  // The sink holds prepare(3) for 10 s: the reduce's snapshot 3 becomes durable, manifest 3 is not written.
  await runAndKill(t, 'slow-sink.ts', state, args, { ...env, TP_RATE: '2000', TP_SLOW_PHASE: 'prepare', TP_SLOW_EPOCH: '3', TP_SLOW_MS: '10000' },
    () => existsSync(marker), 'while the sink prepares checkpoint 3', 500);
  t.same(manifestIds(flowState), [2], 'checkpoint 2 is the last complete one');
  const { root, commits } = openState(flowState);
  const versions = [...commits.getKeys({})].map((k) => (k as [string, number]).join('@'));
  await root.close();
  t.comment(`state flushes kept: ${versions.join(', ')}`);
  const m = readManifest(flowState, 2);
  const needed = m.tasks.flatMap((x) => x.instances).filter((i) => i.stateId).map((i) => `${i.stateId}@${i.version}`);
  t.same(needed.filter((v) => !versions.includes(v)), [], `the flushes manifest 2 needs are kept (${needed.join(', ')})`);
  const e = await runToEnd('slow-sink.ts', state, [...args, '--set', 'restart.maxAttempts=0'], env);
  t.equal(e.code, 0, `the rerun resumes from checkpoint 2 and completes${e.stderr ? `: ${e.stderr.trim()}` : ''}`);
  checkExactlyOnce(t, out, n, (i) => `k${i % 50}`, 'after the kill');
});

t.test('disk use stays bounded: retain manifests, at most retain + 1 whole versions per page', async (t) => {
  const state = join(tmp, 'gc-state');
  const flowState = join(state, 'chk-count');
  const out = join(tmp, 'gc', 'counts.jsonl');
  const summaryPath = join(tmp, 'gc', 'summary.json');
  const n = 80_000;
  const retain = 2;
  mkdirSync(dirname(out), { recursive: true });
  // ~8 s at 2 × 5000 records/s with a checkpoint every 20 ms.
  const e = await runToEnd('keyed-count.ts', state, ['--set', 'parallelism=2', '--set', 'checkpoint.intervalMs=20', '--set', `checkpoint.retain=${retain}`, '--summary', summaryPath],
    { TP_N: String(n), TP_OUT: out, TP_RATE: '5000' });
  t.equal(e.code, 0, `the run completes (${e.ms} ms)${e.stderr ? `: ${e.stderr.trim()}` : ''}`);
  type Dist = { count: number; p50: number; p99: number; max: number };
  const summary = JSON.parse(readFileSync(summaryPath, 'utf8')) as {
    checkpoints: { completed: number; bytesWritten: number; durationMs: Dist; pauseMs: Dist; alignMs: Dist };
  };
  const completed = summary.checkpoints.completed;
  t.ok(completed >= 20, `${completed} checkpoints completed`);
  // Statistics of the run: every completed checkpoint timed; every instance's pause; the
  // keyed instances read two source instances each, so they align every barrier.
  const { durationMs, pauseMs, alignMs, bytesWritten } = summary.checkpoints;
  t.equal(durationMs.count, completed, 'one duration per completed checkpoint');
  t.ok(durationMs.p50 > 0 && durationMs.p50 <= durationMs.p99 && durationMs.p99 <= durationMs.max, `durations ${JSON.stringify(durationMs)}`);
  t.ok(pauseMs.count >= completed * 4, `pauses of every instance (${pauseMs.count})`);
  t.ok(alignMs.count >= completed * 2, `alignments of the two keyed instances (${alignMs.count})`);
  t.ok(alignMs.p99 <= alignMs.max && alignMs.max > 0, `alignments ${JSON.stringify(alignMs)}`);
  t.ok(bytesWritten > 0, `${bytesWritten} bytes written by checkpoints`);
  const ids = manifestIds(flowState);
  t.equal(ids.length, retain, `${retain} manifests kept (${ids.join(', ')})`);

  const { root, pages, deltas, commits } = openState(flowState);
  const versions = new Map<string, number[]>();
  /** Per page, which of its versions are whole (not deltas, src/storage/page-chain.ts), in version order. */
  const whole = new Map<string, boolean[]>();
  let stored = 0;
  const all: [string, number, boolean][] = [];
  for (const { key, value } of pages.getRange({})) {
    if (!isPageKey(key)) continue; // the deltas' records, read below
    const [stateId, pageId, version] = key;
    all.push([`${stateId} page ${pageId}`, version, !isDeltaEnvelope(value)]);
    stored += value.length;
  }
  for (const { key, value } of deltas.getRange({})) {
    const [stateId, version, pageId] = key as [string, number, number];
    all.push([`${stateId} page ${pageId}`, version, !isDeltaEnvelope(value)]);
    stored += value.length;
  }
  all.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : a[1] - b[1]));
  for (const [k, version, w] of all) {
    versions.set(k, [...(versions.get(k) ?? []), version]);
    whole.set(k, [...(whole.get(k) ?? []), w]);
  }
  const flushes = new Map<string, number>();
  for (const key of commits.getKeys({})) {
    const s = (key as [string, number])[0];
    flushes.set(s, (flushes.get(s) ?? 0) + 1);
  }
  await root.close();
  t.ok(versions.size > 0, `${versions.size} pages stored, ${stored} bytes`);
  // State keeps one whole version more than manifests: a snapshot is durable before its
  // manifest exists, and the oldest retained checkpoint must stay restorable meanwhile.
  // Above the oldest whole version kept, a page may have deltas (its chain), at most
  // DELTA_CHAIN_MAX per whole version; nothing below it survives GC.
  const wholes = [...whole].map(([k, w]) => [k, w.filter(Boolean).length] as const).sort((a, b) => b[1] - a[1]);
  t.ok(wholes[0]![1] <= retain + 1, `at most ${retain + 1} whole versions per page (most: ${wholes[0]![0]} with ${wholes[0]![1]})`);
  const longest = [...versions].sort((a, b) => b[1].length - a[1].length)[0]!;
  t.ok(longest[1].length <= (retain + 1) * (DELTA_CHAIN_MAX + 1), `at most ${(retain + 1) * (DELTA_CHAIN_MAX + 1)} versions per page (most: ${longest[0]} with ${longest[1].length})`);
  t.same([...whole].filter(([, w]) => !w[0]).map(([k]) => k), [], "every page's oldest stored version is whole");
  t.comment(`deltas stored: ${[...whole.values()].reduce((n, w) => n + w.filter((x) => !x).length, 0)} (of ${[...versions.values()].reduce((n, v) => n + v.length, 0)} page versions)`);
  t.ok([...flushes.values()].every((c) => c <= retain + 1), `at most ${retain + 1} flush records per state (${JSON.stringify(Object.fromEntries(flushes))})`);
  // LMDB reuses the pages GC freed: the file stays near what is stored, whatever the
  // number of checkpoints (without reuse it grows by every checkpoint's pages).
  const written = bytesWritten;
  const dataMdb = statSync(join(flowState, 'data.mdb')).size;
  t.comment(`${completed} checkpoints wrote ~${written} bytes; ${stored} bytes stored; data.mdb ${dataMdb} bytes`);
  // The slack is in LMDB pages (LMDB_PAGE_BYTES): a tiny state still takes a few dozen of
  // them (its trees, free list and meta pages), however few bytes it stores.
  const slack = 64 * LMDB_PAGE_BYTES;
  // Without reuse the file would grow by every LMDB page a checkpoint copies, not only by
  // its envelope bytes (page deltas make those small): at least a leaf of the attempts
  // database (committed on its own, before any page) and, in the next commit, a leaf of the
  // pages database and one of the commits database — three LMDB pages per checkpoint.
  const grownWithoutReuse = Math.max(written, completed * 3 * LMDB_PAGE_BYTES);
  t.ok(grownWithoutReuse > 4 * stored + slack, `the run wrote enough (~${grownWithoutReuse} bytes at least, ${written} of them envelopes) for the bound to catch a file that never reuses pages`);
  t.ok(dataMdb <= 4 * stored + slack, `data.mdb (${dataMdb} bytes) stays near the stored pages (${stored} bytes), far below what ${completed} checkpoints wrote (~${grownWithoutReuse} bytes)`);
  checkExactlyOnce(t, out, n, keyOfCount, 'the steady run');
});
