// Remote checkpoints (state.remote) against a real Azure Blob endpoint: azurite, started
// by test/helpers/azurite.ts. Covered: the object-store contract of both
// implementations; a SIGKILL loop where every restart gets an EMPTY local state
// directory (so each one restores from the remote copy), with a rescale 2 → 3 → 1 on
// the way, ending in exactly-once output; remote GC leaves exactly the retained
// checkpoints' objects; azurite stopped mid-run (uploads catch up; with
// checkpoint.remoteRequired checkpoints abort and the run goes on from the last good
// one); wrong key, unreachable endpoint, missing container and bad config as one line.
//
// Fixture: test-fixtures/flows/checkpoint/keyed-count.ts (keyed count → file sink).
import t from 'tap';
import { existsSync, mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { BlobServiceClient } from '@azure/storage-blob';
import { FlowChildren, manifestIds, sleep } from './helpers/flow-child.js';
import { checkExactlyOnce, lines } from './helpers/keyed-output.js';
import { startAzurite, type Azurite } from './helpers/azurite.js';
import { openObjectStore, type ObjectStore } from '../src/storage/remote/object-store.js';
import { checkpointIdOf, decodeCheckpoint } from '../src/storage/remote/packs.js';
import { parseConfig } from '../src/config/schema.js';
import type { RunSummary } from '../src/observe/report.js';
import type { RemoteReport } from '../src/cli/inspect-remote.js';

const CLI = fileURLToPath(new URL('../src/cli/main.js', import.meta.url));

const children = new FlowChildren('tidepool-remote-');
const tmp = children.dir;
const { start, runToEnd } = children;
let az: Azurite;
t.before(async () => {
  az = await startAzurite(join(tmp, 'azurite'));
});
t.teardown(async () => {
  await az?.stop();
  children.remove();
});

const KEYS = 300;
const keyOf = (i: number): string => `k${(Math.imul(i, 2654435761) >>> 0) % KEYS}`;
const remoteSet = (container: string, prefix: string, key?: string) =>
  `state.remote=${JSON.stringify({ kind: 'azure-blob', connectionString: az.connectionString(key), container, prefix })}`;
const container = (name: string) => BlobServiceClient.fromConnectionString(az.connectionString()).getContainerClient(name);

async function blobNames(c: string, prefix = ''): Promise<string[]> {
  const out: string[] = [];
  if (!(await container(c).exists())) return out;
  for await (const b of container(c).listBlobsFlat({ prefix })) out.push(b.name);
  return out.sort();
}

/** The remote checkpoint objects' ids and the pack objects they name. */
async function remoteCheckpoints(c: string, prefix: string): Promise<{ ids: number[]; named: Set<string> }> {
  const ids: number[] = [];
  const named = new Set<string>();
  for (const name of await blobNames(c, `${prefix}checkpoints/`)) {
    const body = await container(c).getBlobClient(name).downloadToBuffer();
    const chk = decodeCheckpoint(body, name);
    ids.push(chk.id);
    for (const s of Object.values(chk.states)) for (const o of s.objects) named.add(o);
  }
  return { ids: ids.sort((a, b) => a - b), named };
}

/** Waits (up to 60 s) until the flow state has checkpoint `id` or the run ended. */
async function untilCheckpoint(flowState: string, id: number, run: { exited: boolean }): Promise<void> {
  const deadline = performance.now() + 60_000;
  while (!run.exited && performance.now() < deadline && (manifestIds(flowState).at(-1) ?? 0) < id) await sleep(50);
}

t.test('object stores: put, get, list, delete and a create that happens once (azure-blob and dir)', async (t) => {
  const stores: ObjectStore[] = [
    await openObjectStore({ kind: 'azure-blob', connectionString: az.connectionString(), container: 'contract', prefix: '' }),
    await openObjectStore({ kind: 'dir', path: join(tmp, 'dir-store'), prefix: '' }),
  ];
  for (const s of stores) {
    await s.put('a/one', Buffer.from('1'));
    await s.put('a/one', Buffer.from('one')); // replaced
    await s.put('b/two', Buffer.alloc(3000, 7));
    t.equal(String(await s.get('a/one')), 'one', `${s.where}: put replaces`);
    t.equal(await s.get('a/none'), undefined, `${s.where}: a missing object is undefined`);
    t.same((await s.list('a/')).map((o) => [o.name, o.bytes]), [['a/one', 3]], `${s.where}: list by prefix with sizes`);
    t.equal(await s.createIfAbsent('c/x', Buffer.from('first')), true, `${s.where}: conditional create`);
    t.equal(await s.createIfAbsent('c/x', Buffer.from('second')), false, `${s.where}: … refused when it exists`);
    t.equal(String(await s.get('c/x')), 'first', `${s.where}: … and the first body stays`);
    await s.delete('a/one');
    await s.delete('a/one'); // gone already: no error
    t.same((await s.list('')).map((o) => o.name).sort(), ['b/two', 'c/x'], `${s.where}: delete`);
  }
});

t.test('config: state.remote and checkpoint.remoteRequired are validated, one line each', async (t) => {
  const bad = (raw: unknown, re: RegExp, what: string) => {
    try {
      parseConfig(raw);
      t.fail(`${what}: accepted`);
    } catch (e) {
      const m = (e as Error).message;
      t.match(m, re, what);
      t.notOk(m.includes('\n'), `${what}: one line`);
    }
  };
  bad({ state: { remote: { kind: 's3', container: 'x' } } }, /config state\.remote.*kind/, 'unknown kind');
  bad({ state: { remote: { kind: 'azure-blob', connectionString: 'x', container: 'Bad_Name' } } }, /config state\.remote\.container: expected a container name/, 'bad container name');
  bad({ state: { remote: { kind: 'azure-blob', container: 'abc' } } }, /config state\.remote.*either connectionString, or accountUrl and sasToken/, 'no credentials');
  bad({ state: { remote: { kind: 'azure-blob', connectionString: 'x', accountUrl: 'https://a.blob.core.windows.net', sasToken: 's', container: 'abc' } } }, /either connectionString/, 'both credentials');
  bad({ checkpoint: { remoteRequired: true } }, /config checkpoint\.remoteRequired: expected state\.remote/, 'remoteRequired without remote');
  bad({ state: { storage: 'memory', remote: { kind: 'dir', path: '/x' } } }, /config state\.remote: expected state\.storage 'lmdb'/, 'remote with memory state');
  const ok = parseConfig({ state: { remote: { kind: 'azure-blob', connectionString: 'x', container: 'abc', prefix: 'jobs/a' } } });
  t.same(ok.state.remote, { kind: 'azure-blob', connectionString: 'x', container: 'abc', prefix: 'jobs/a/', restore: 'lazy' }, 'a prefix gets its trailing slash; restores are lazy by default');
  bad({ state: { remote: { kind: 'dir', path: '/x', restore: 'later' } } }, /config state\.remote\.restore: expected 'lazy' .* or 'eager'/, 'bad restore mode');
});

t.test('SIGKILL loop, each restart on an empty state directory (restored from azurite), rescaled 2 → 3 → 1: exactly once', async (t) => {
  const N = 60_000;
  const out = join(tmp, 'loop', 'out.jsonl');
  mkdirSync(join(tmp, 'loop'), { recursive: true });
  const env = { TP_N: String(N), TP_OUT: out, TP_KEYS: String(KEYS) };
  const remote = remoteSet('loop', 'job/');
  const rounds = [{ p: 2, killMs: 300 }, { p: 3, killMs: 450 }, { p: 1, killMs: 150 }];
  let restoredOnce = 0;
  let state = '';
  for (const [r, round] of rounds.entries()) {
    state = join(tmp, 'loop', `state-${r}`); // a fresh, empty directory every round: a new machine
    const run = start('keyed-count.ts', state, ['--set', remote, '--set', `parallelism=${round.p}`, '--set', 'checkpoint.intervalMs=300'], { ...env, TP_RATE: '6000' });
    // Killed once this run completed two checkpoints of its own and one of them is
    // uploaded, plus a moment: start-up under a loaded test machine takes seconds, and
    // uploads run behind the local checkpoints (waiting for local ones only let a loaded
    // machine kill every round before its first upload).
    const first = (await remoteCheckpoints('loop', 'job/chk-count/')).ids.at(-1) ?? 0; // what this run restores
    const deadline = performance.now() + 60_000;
    const uploaded = async () => ((await remoteCheckpoints('loop', 'job/chk-count/')).ids.at(-1) ?? 0) > first;
    while (!run.exited && performance.now() < deadline && ((manifestIds(join(state, 'chk-count')).at(-1) ?? 0) < first + 2 || !(await uploaded()))) await sleep(50);
    await sleep(round.killMs);
    run.child.kill('SIGKILL');
    const exit = await run.done;
    if (exit.code === 0) t.fail(`round ${r} finished before its kill; raise N`);
    if (manifestIds(join(state, 'chk-count')).length > 0 && r > 0) restoredOnce++;
  }
  t.ok(restoredOnce > 0, `later rounds restored the remote checkpoint into an empty directory (${restoredOnce} of ${rounds.length - 1})`);
  const before = lines(out).length;
  t.ok(before > 0 && before < N, `the killed runs published ${before} of ${N} records`);
  const last = join(tmp, 'loop', 'state-last');
  const summaryPath = join(tmp, 'loop', 'summary.json');
  const end = await runToEnd('keyed-count.ts', last, ['--set', remote, '--set', 'parallelism=2', '--summary', summaryPath], env);
  t.equal(end.code, 0, `the last run completes from the remote checkpoint: ${end.stderr.trim().split('\n').at(-1) ?? ''}`);
  const summary = JSON.parse(readFileSync(summaryPath, 'utf8')) as RunSummary;
  t.ok(summary.remote?.restoredFrom !== undefined && summary.restoredFrom === summary.remote.restoredFrom, `restored remote checkpoint ${summary.remote?.restoredFrom} (${summary.remote?.restoreBytes} bytes in ${summary.remote?.restoreMs} ms)`);
  t.ok(summary.recordsIn < N, `it read only the records after the checkpoint (${summary.recordsIn})`);
  t.equal(summary.checkpoints?.remoteLagMs, 0, 'the final checkpoint is uploaded before the run ends');
  checkExactlyOnce(t, out, N, keyOf, 'after kills and remote restores');

  // GC: exactly the retained checkpoints (retain 2) and the objects they name.
  const { ids, named } = await remoteCheckpoints('loop', 'job/chk-count/');
  t.equal(ids.length, 2, `two checkpoints retained remotely: ${ids.join(', ')}`);
  t.equal(ids.at(-1), manifestIds(join(last, 'chk-count')).at(-1), 'the newest remote checkpoint is the final local one');
  t.same(await blobNames('loop', 'job/chk-count/state/'), [...named].sort(), 'every pack object is named by a retained checkpoint, and every named one exists');

  // tidepool inspect --remote lists the same checkpoints, with their objects and bytes.
  const spec = JSON.stringify({ kind: 'azure-blob', connectionString: az.connectionString(), container: 'loop', prefix: 'job/' });
  const inspected = spawnSync(process.execPath, [CLI, 'inspect', '--remote', spec, '--json'], { encoding: 'utf8' });
  t.equal(inspected.status, 0, `inspect --remote exits 0 ${inspected.stderr}`);
  const report = JSON.parse(inspected.stdout) as RemoteReport;
  t.same(report.flows.map((f) => f.flow), ['chk-count'], 'inspect --remote: one folder per flow under the prefix');
  const flowReport = report.flows[0]!;
  t.same(flowReport.checkpoints.map((c) => c.id), ids, 'inspect --remote: the retained checkpoints');
  t.ok(flowReport.checkpoints.every((c) => c.objects > 1 && c.bytes > 0 && c.partitions >= 1), 'inspect --remote: objects, bytes and partitions per checkpoint');
  t.equal(flowReport.checkpoints.at(-1)!.final, true, 'inspect --remote: the newest is the final checkpoint');
  t.same(flowReport.unreferenced, { objects: 0, bytes: 0 }, 'inspect --remote: nothing unreferenced after GC');
  const text = spawnSync(process.execPath, [CLI, 'inspect', '--remote', spec], { encoding: 'utf8' });
  t.match(text.stdout, new RegExp(`remote checkpoints in azure-blob account devstoreaccount1, container loop, prefix job/: 1 flow\\(s\\)\\nflow chk-count: 2 checkpoint\\(s\\)\\n  checkpoint ${ids[0]} `), 'inspect --remote: the text form');

  // A finished run, on yet another empty directory: already complete, nothing republished.
  const bytes = readFileSync(out).length;
  const again = await runToEnd('keyed-count.ts', join(tmp, 'loop', 'state-again'), ['--set', remote, '--summary', summaryPath], env);
  t.equal(again.code, 0, 'rerun on an empty directory exits 0');
  t.equal(again.stderr.trim(), '', 'and says nothing (the final checkpoint is already remote: no upload, no retry)');
  t.equal((JSON.parse(readFileSync(summaryPath, 'utf8')) as RunSummary).alreadyComplete, true, 'it restores the final checkpoint and has nothing to do');
  t.equal(readFileSync(out).length, bytes, 'the output is unchanged');

  // An older local directory (round 0's, killed early) is replaced by the newer remote
  // checkpoint: the final one, so there is nothing to do.
  const old = join(tmp, 'loop', 'state-0');
  const oldNewest = manifestIds(join(old, 'chk-count')).at(-1)!;
  const replaced = await runToEnd('keyed-count.ts', old, ['--set', remote, '--summary', summaryPath], env);
  const rs = JSON.parse(readFileSync(summaryPath, 'utf8')) as RunSummary;
  t.equal(replaced.code, 0, 'an older local directory: exits 0');
  t.equal(replaced.stderr.trim(), '', 'an older local directory: nothing on stderr');
  t.ok(rs.remote?.restoredFrom === ids.at(-1) && rs.alreadyComplete === true, `the local checkpoint ${oldNewest} gave way to remote ${rs.remote?.restoredFrom}`);
  t.equal(readFileSync(out).length, bytes, 'the output is still unchanged');

  // A newer local directory wins over a remote prefix that is behind (here: empty), and
  // its final checkpoint is uploaded there.
  const behind = remoteSet('loop', 'behind/');
  const wins = await runToEnd('keyed-count.ts', last, ['--set', behind, '--summary', summaryPath], env);
  const ws = JSON.parse(readFileSync(summaryPath, 'utf8')) as RunSummary;
  t.equal(wins.code, 0, 'a newer local directory: exits 0');
  t.equal(wins.stderr.trim(), '', 'a newer local directory: nothing on stderr');
  t.ok(ws.alreadyComplete === true && ws.remote?.restoredFrom === undefined, 'the local state is kept (nothing restored from the remote)');
  t.same((await remoteCheckpoints('loop', 'behind/chk-count/')).ids, [ids.at(-1)], 'the local final checkpoint is uploaded to the remote that was behind');

  // --from-checkpoint names a remote checkpoint the (empty) local directory lacks: the run
  // goes back to it, the newer remote one is dropped, and the output is again exactly once.
  const back = join(tmp, 'loop', 'state-back');
  const going = await runToEnd('keyed-count.ts', back, ['--set', remote, '--from-checkpoint', String(ids[0]), '--summary', summaryPath], env);
  const gs = JSON.parse(readFileSync(summaryPath, 'utf8')) as RunSummary;
  t.equal(going.code, 0, `--from-checkpoint ${ids[0]} (remote only): exits 0 ${going.stderr.trim()}`);
  t.equal(gs.remote?.restoredFrom, ids[0], `restored remote checkpoint ${ids[0]}`);
  checkExactlyOnce(t, out, N, keyOf, `after going back to remote checkpoint ${ids[0]}`);
  const bad = await runToEnd('keyed-count.ts', join(tmp, 'loop', 'state-bad'), ['--set', remote, '--from-checkpoint', '999'], env);
  t.match(bad.stderr, /--from-checkpoint 999: no such checkpoint, locally or in azure-blob account devstoreaccount1, container loop \(retained: /, 'an unknown id: one line naming both places');
});

t.test('lazy restore: only the checkpoint and commit records before the first record, pages fetched on demand (also for a rescale), copied in later', async (t) => {
  const N = 40_000;
  const keys = 20_000; // hundreds of pages, with a small cache: restored runs miss often
  const keyOfN = (i: number): string => `k${(Math.imul(i, 2654435761) >>> 0) % keys}`;
  const dir = join(tmp, 'lazy');
  mkdirSync(dir, { recursive: true });
  const summaryPath = join(dir, 'summary.json');
  const summary = () => JSON.parse(readFileSync(summaryPath, 'utf8')) as RunSummary;
  const small = ['--set', 'state.cachePages=16'];
  /** A run at parallelism 2 killed once two of its checkpoints are remote; returns the newest remote id. */
  const killedRun = async (prefix: string, out: string): Promise<number> => {
    const run = start('keyed-count.ts', join(dir, `state-${prefix}first`), ['--set', remoteSet('lazy', prefix), ...small, '--set', 'operators.counts.parallelism=2', '--set', 'checkpoint.intervalMs=300'], { ...env, TP_OUT: out, TP_RATE: '5000' });
    const deadline = performance.now() + 60_000;
    while (!run.exited && performance.now() < deadline && (await remoteCheckpoints('lazy', `${prefix}chk-count/`)).ids.length < 2) await sleep(100);
    run.child.kill('SIGKILL');
    t.not((await run.done).code, 0, `${prefix}: the first run is killed once two checkpoints are remote`);
    return (await remoteCheckpoints('lazy', `${prefix}chk-count/`)).ids.at(-1)!;
  };

  const out = join(dir, 'out.jsonl');
  // Values with strings: pages full of them take msgpackr's native string path, which a
  // page fetched into shared memory once broke.
  const env = { TP_N: String(N), TP_OUT: out, TP_KEYS: String(keys), TP_PAD: '120' };
  const remote = remoteSet('lazy', 'job/');
  const restoredId = await killedRun('job/', out);
  const uploaded = (await blobNames('lazy', 'job/chk-count/state/')).length;

  // A new machine, background copy off, killed soon: the pages it used were fetched on
  // demand, the rest is still remote.
  const second = join(dir, 'state-second');
  const flowState = join(second, 'chk-count');
  // Slow: a few records per second (each generator batch is cut after its time slice,
  // so barriers still pass every 200 ms).
  const lazyRun = start('keyed-count.ts', second, ['--set', remote, ...small, '--set', 'operators.counts.parallelism=2', '--set', 'checkpoint.intervalMs=200'], { ...env, TP_RATE: '5', TIDEPOOL_TEST_NO_COPY_IN: '1' });
  await untilCheckpoint(flowState, restoredId + 1, lazyRun);
  lazyRun.child.kill('SIGKILL');
  t.not((await lazyRun.done).code, 0, 'the lazily restored run is killed…');
  t.ok(manifestIds(flowState).some((id) => id > restoredId), `…after a checkpoint of its own (${manifestIds(flowState).join(', ')})`);
  t.ok(manifestIds(flowState).includes(restoredId), `it restored remote checkpoint ${restoredId} (${uploaded} pack objects remote)`);
  t.ok(existsSync(join(flowState, 'remote-restore.json')), 'the restore plan stays until every page is local');

  // The plan's directory cannot run without the remote it still needs.
  const without = await runToEnd('keyed-count.ts', second, [...small], env);
  t.not(without.code, 0, 'without state.remote: refused');
  t.match(without.stderr, /--state .*chk-count: is still being restored from remote storage \(remote-restore\.json is there\); run it with the same state\.remote to finish/, 'one line saying why');
  t.equal(without.stderr.trim().split('\n').length, 1, 'exactly one line');
  const inspected = spawnSync(process.execPath, [CLI, 'inspect', second], { encoding: 'utf8' });
  t.equal(inspected.status, 0, `inspect of the directory mid-copy exits 0 ${inspected.stderr}`);
  t.match(inspected.stdout, new RegExp(`restored lazily from remote checkpoint ${restoredId}, pages still being copied in`), 'inspect says the copy-in is not done');

  // With the remote again: the copy-in resumes in the background while the job finishes.
  const done = await runToEnd('keyed-count.ts', second, ['--set', remote, ...small, '--set', 'operators.counts.parallelism=2', '--summary', summaryPath], env);
  t.equal(done.code, 0, `the resumed run completes ${done.stderr.trim()}`);
  const s2 = summary();
  const brought = (s2.remote?.copyIn?.pagesCopied ?? 0) + (s2.remote?.copyIn?.pagesFetched ?? 0);
  t.ok(s2.remote?.copyInDone === true && brought > 0, `the copy-in finished before the run ended (${s2.remote?.copyIn?.pagesCopied} pages copied in the background, ${s2.remote?.copyIn?.pagesFetched} fetched on demand)`);
  t.notOk(existsSync(join(flowState, 'remote-restore.json')), 'and the plan is gone');
  const after = spawnSync(process.execPath, [CLI, 'inspect', second, '--json'], { encoding: 'utf8' });
  t.equal(after.status, 0, `inspect reads every partition's state from local pages ${after.stderr}`);
  t.notMatch(after.stdout, /remoteRestore/, 'inspect: no copy-in pending');
  checkExactlyOnce(t, out, N, keyOfN, 'after a lazy restore, a kill, and a resumed copy-in');
  const bytes = readFileSync(out).length;
  const local = await runToEnd('keyed-count.ts', second, [...small, '--summary', summaryPath], env);
  t.equal(local.code, 0, `without state.remote now: exits 0 ${local.stderr.trim()}`);
  t.equal(summary().alreadyComplete, true, 'the directory stands on its own');
  t.equal(readFileSync(out).length, bytes, 'the output is unchanged');

  // Another job, restored lazily on a new machine with every page fetched on demand and
  // rescaled 2 → 3: the new partitions read their key groups out of the old ones.
  const out2 = join(dir, 'out-rescaled.jsonl');
  await killedRun('resc/', out2);
  const rescaled = await runToEnd('keyed-count.ts', join(dir, 'state-rescaled'), ['--set', remoteSet('lazy', 'resc/'), ...small, '--set', 'operators.counts.parallelism=3', '--summary', summaryPath], { ...env, TP_OUT: out2, TIDEPOOL_TEST_NO_COPY_IN: '1' });
  t.equal(rescaled.code, 0, `a lazy restore rescaled 2 → 3 completes ${rescaled.stderr.trim()}`);
  const s3 = summary();
  t.ok(s3.remote?.restoreLazy === true && s3.remote.copyInDone === false, 'restored lazily, nothing copied in the background');
  t.ok(s3.remote!.restoreBytes! > 0 && s3.remote!.restoreBytes! < 16 * 1024, `before the first record it read only the checkpoint's commit records (${s3.remote!.restoreBytes} bytes)`);
  checkExactlyOnce(t, out2, N, keyOfN, 'after a lazy restore rescaled 2 → 3 (on-demand fetches of the old partitions)');

  // The first job's restore again, eager: every page before the first record, no plan.
  const eager = join(dir, 'state-eager');
  const eagerSet = `state.remote=${JSON.stringify({ kind: 'azure-blob', connectionString: az.connectionString(), container: 'lazy', prefix: 'job/', restore: 'eager' })}`;
  const e = await runToEnd('keyed-count.ts', eager, ['--set', eagerSet, ...small, '--summary', summaryPath], env);
  t.equal(e.code, 0, `eager restore: exits 0 ${e.stderr.trim()}`);
  const s4 = summary();
  t.ok(s4.remote?.restoreLazy === false && s4.remote.restoreBytes! > 100 * 1024 && s4.alreadyComplete === true, `eager: every pack copied first (${s4.remote?.restoreBytes} bytes)`);
  t.notOk(existsSync(join(eager, 'chk-count', 'remote-restore.json')), 'eager: no restore plan');
  t.equal(readFileSync(out).length, bytes, 'the output is unchanged');
});

t.test('lazy restore whose background copy fails (every pack with a bad checksum): on-demand reads go on, the run says why at its end, the next run finishes the copy', async (t) => {
  const N = 40_000;
  const keys = 20_000;
  const keyOfN = (i: number): string => `k${(Math.imul(i, 2654435761) >>> 0) % keys}`;
  const dir = join(tmp, 'lazy-bad');
  mkdirSync(dir, { recursive: true });
  const storeDir = join(dir, 'remote');
  const remote = `state.remote=${JSON.stringify({ kind: 'dir', path: storeDir, prefix: 'job/' })}`;
  const out = join(dir, 'out.jsonl');
  const summaryPath = join(dir, 'summary.json');
  const env = { TP_N: String(N), TP_OUT: out, TP_KEYS: String(keys), TP_PAD: '120' };
  const small = ['--set', 'state.cachePages=16'];
  const chkDir = join(storeDir, 'job', 'chk-count', 'checkpoints');
  const first = start('keyed-count.ts', join(dir, 'state-first'), ['--set', remote, ...small, '--set', 'checkpoint.intervalMs=300'], { ...env, TP_RATE: '5000' });
  const deadline = performance.now() + 60_000;
  while (!first.exited && performance.now() < deadline && (existsSync(chkDir) ? readdirSync(chkDir).length : 0) < 2) await sleep(100);
  first.child.kill('SIGKILL');
  t.not((await first.done).code, 0, 'the first run is killed once two checkpoints are remote');

  // The last byte of a pack is the checksum of the whole object, which the background
  // copy checks; a page fetched on demand is read by range and checked on its own.
  // Only packs a remote checkpoint names: the kill may leave packs of a torn upload,
  // which the next run collects as garbage (and so cannot be mended after it).
  const named = new Set<string>();
  for (const f of readdirSync(chkDir).filter((n) => checkpointIdOf(n) !== undefined)) {
    const chk = decodeCheckpoint(readFileSync(join(chkDir, f)), f);
    for (const s of Object.values(chk.states)) for (const o of s.objects) named.add(o);
  }
  const packs = [...named].map((name) => join(storeDir, ...name.split('/')));
  t.ok(packs.length > 0 && packs.every((f) => f.endsWith('.pack') && existsSync(f)), `the remote checkpoints name ${packs.length} packs, all present`);
  const flip = () => {
    for (const f of packs) {
      const b = readFileSync(f);
      b[b.length - 1]! ^= 0xff;
      writeFileSync(f, b);
    }
  };
  flip();
  const second = join(dir, 'state-second');
  const bad = await runToEnd('keyed-count.ts', second, ['--set', remote, ...small, '--summary', summaryPath], { ...env, TP_RATE: '5000' });
  t.not(bad.code, 0, `with ${packs.length} damaged packs the run fails`);
  const lastLine = bad.stderr.trim().split('\n').at(-1) ?? '';
  t.match(lastLine, /copying in the lazily restored state of .*chk-count: .*\.pack.*checksum does not match/, `…at its end, naming the pack: ${lastLine}`);
  t.notMatch(bad.stderr, /run it with the same state\.remote/, 'on-demand fetches did not give up with the copy');
  checkExactlyOnce(t, out, N, keyOfN, 'every record was processed from pages fetched on demand');
  t.ok(existsSync(join(second, 'chk-count', 'remote-restore.json')), 'the restore plan stays');

  flip(); // mended
  const bytes = readFileSync(out).length;
  const done = await runToEnd('keyed-count.ts', second, ['--set', remote, ...small, '--summary', summaryPath], env);
  t.equal(done.code, 0, `with the packs mended the next run completes ${done.stderr.trim()}`);
  const s = JSON.parse(readFileSync(summaryPath, 'utf8')) as RunSummary;
  t.ok(s.alreadyComplete === true && s.remote?.copyInDone === true, 'it finishes the copy-in of the completed job');
  t.notOk(existsSync(join(second, 'chk-count', 'remote-restore.json')), 'and the plan is gone');
  t.equal(readFileSync(out).length, bytes, 'the output is unchanged');
});

t.test('killed mid-upload: the torn upload is never restored, and the next upload collects its packs', async (t) => {
  const N = 200_000;
  const keys = 100_000; // a few MB of state: a full upload writes several packs' worth of requests
  const keyOfN = (i: number): string => `k${(Math.imul(i, 2654435761) >>> 0) % keys}`;
  const dir = join(tmp, 'torn');
  mkdirSync(dir, { recursive: true });
  const out = join(dir, 'out.jsonl');
  // Values with strings: pages full of them take msgpackr's native string path, which a
  // page fetched into shared memory once broke.
  const env = { TP_N: String(N), TP_OUT: out, TP_KEYS: String(keys), TP_PAD: '120' };
  const remote = remoteSet('torn', '');
  /** Pack objects no remote checkpoint names: an upload in progress, or a torn one. */
  const unnamed = async () => {
    const { named } = await remoteCheckpoints('torn', 'chk-count/');
    return (await blobNames('torn', 'chk-count/state/')).filter((n) => !named.has(n));
  };
  // Each try: a run on a new machine, killed the moment a pack of an unfinished upload
  // shows up. The upload's checkpoint object may still land before the kill does, so a
  // few tries may be needed to catch one torn.
  let torn: string[] = [];
  let state = '';
  for (let attempt = 0; attempt < 6 && torn.length === 0; attempt++) {
    state = join(dir, `state-${attempt}`);
    const run = start('keyed-count.ts', state, ['--set', remote, '--set', 'checkpoint.intervalMs=100'], { ...env, TP_RATE: '40000' });
    const deadline = performance.now() + 60_000;
    while (!run.exited && performance.now() < deadline && (await unnamed()).length === 0) await sleep(5);
    run.child.kill('SIGKILL');
    await run.done;
    await sleep(300); // requests azurite received before the kill finish
    torn = await unnamed();
  }
  t.ok(torn.length > 0, `a kill landed mid-upload: ${torn.length} pack(s) of a checkpoint that never appeared remotely`);
  const { ids } = await remoteCheckpoints('torn', 'chk-count/');
  // A new machine: it restores the newest complete remote checkpoint, not the torn one.
  const summaryPath = join(dir, 'summary.json');
  const end = await runToEnd('keyed-count.ts', join(dir, 'state-end'), ['--set', remote, '--summary', summaryPath], env);
  t.equal(end.code, 0, `the next run completes ${end.stderr.trim()}`);
  const summary = JSON.parse(readFileSync(summaryPath, 'utf8')) as RunSummary;
  t.equal(summary.remote?.restoredFrom, ids.at(-1), `it restored ${ids.at(-1)}, the newest checkpoint whose object exists`);
  checkExactlyOnce(t, out, N, keyOfN, 'after a kill mid-upload');
  const left = await blobNames('torn', 'chk-count/state/');
  t.ok(torn.every((n) => !left.includes(n)), 'the torn upload\'s packs are gone (remote GC)');
  t.same(await unnamed(), [], 'every pack left is named by a retained checkpoint');
});

t.test('azurite stopped mid-run: checkpoints go on locally, uploads retry and catch up', async (t) => {
  const N = 40_000;
  const out = join(tmp, 'outage', 'out.jsonl');
  mkdirSync(join(tmp, 'outage'), { recursive: true });
  const env = { TP_N: String(N), TP_OUT: out, TP_KEYS: String(KEYS), TP_RATE: '8000' };
  const state = join(tmp, 'outage', 'state');
  const summaryPath = join(tmp, 'outage', 'summary.json');
  const run = start('keyed-count.ts', state, ['--set', remoteSet('outage', ''), '--set', 'parallelism=1', '--set', 'checkpoint.intervalMs=200', '--summary', summaryPath], env);
  await untilCheckpoint(join(state, 'chk-count'), 2, run);
  await az.stop();
  const localBefore = manifestIds(join(state, 'chk-count')).at(-1) ?? 0;
  await sleep(2000);
  const localDuring = manifestIds(join(state, 'chk-count')).at(-1) ?? 0;
  await az.restart();
  const exit = await run.done;
  t.equal(exit.code, 0, 'the run completes');
  t.ok(localDuring > localBefore, `local checkpoints went on while the remote was down (${localBefore} → ${localDuring})`);
  t.match(exit.stderr, /tidepool: uploading checkpoint \d+ failed, retrying in \d+ ms: remote checkpoints azure-blob account devstoreaccount1, container outage/, 'one line says the upload failed and is retried, naming account and container');
  const summary = JSON.parse(readFileSync(summaryPath, 'utf8')) as RunSummary;
  t.ok((summary.remote?.failures ?? 0) > 0, `failed attempts counted (${summary.remote?.failures})`);
  t.equal(summary.checkpoints?.remoteLagMs, 0, 'caught up: no lag at the end');
  const { ids } = await remoteCheckpoints('outage', 'chk-count/');
  t.equal(ids.at(-1), manifestIds(join(state, 'chk-count')).at(-1), 'the final checkpoint is remote');
  checkExactlyOnce(t, out, N, keyOf, 'through the outage');
});

t.test('checkpoint.remoteRequired: while azurite is down nothing is published and no checkpoint completes; then it catches up', async (t) => {
  const N = 40_000;
  const out = join(tmp, 'required', 'out.jsonl');
  mkdirSync(join(tmp, 'required'), { recursive: true });
  const env = { TP_N: String(N), TP_OUT: out, TP_KEYS: String(KEYS), TP_RATE: '8000' };
  const state = join(tmp, 'required', 'state');
  const summaryPath = join(tmp, 'required', 'summary.json');
  const args = ['--set', remoteSet('required', ''), '--set', 'checkpoint.remoteRequired=true', '--set', 'parallelism=1', '--set', 'checkpoint.intervalMs=200', '--summary', summaryPath];
  const run = start('keyed-count.ts', state, args, env);
  await untilCheckpoint(join(state, 'chk-count'), 2, run);
  await az.stop();
  await sleep(500); // a checkpoint in flight now waits for its upload
  const published = lines(out).length;
  const local = manifestIds(join(state, 'chk-count')).at(-1) ?? 0;
  await sleep(2000);
  t.equal(lines(out).length, published, `nothing is published while the remote is down (${published} lines)`);
  t.equal(manifestIds(join(state, 'chk-count')).at(-1) ?? 0, local, `no checkpoint completes locally meanwhile (newest ${local})`);
  const remoteNow = (await (async () => {
    await az.restart();
    return remoteCheckpoints('required', 'chk-count/');
  })()).ids;
  t.ok(remoteNow.includes(local), `the newest local checkpoint (${local}) was remote before it existed locally (remote: ${remoteNow.join(', ')})`);
  const exit = await run.done;
  t.equal(exit.code, 0, `the run completes: ${exit.stderr.trim().split('\n').at(-1) ?? ''}`);
  t.match(exit.stderr, /tidepool: uploading checkpoint \d+ failed, retrying \(checkpoint\.remoteRequired: nothing is published until it is uploaded\): remote checkpoints azure-blob account devstoreaccount1, container required/, 'one line says why nothing is published');
  const { ids } = await remoteCheckpoints('required', 'chk-count/');
  const locals = manifestIds(join(state, 'chk-count'));
  t.ok(locals.every((id) => ids.includes(id)), `every local checkpoint is remote too (local ${locals.join(', ')}; remote ${ids.join(', ')})`);
  checkExactlyOnce(t, out, N, keyOf, 'remoteRequired through the outage');
});

t.test('an in-process restart (an operator throws once) with checkpoint.remoteRequired: the next attempt goes on from the remote checkpoint it restored', async (t) => {
  const N = 20_000;
  const dir = join(tmp, 'restart');
  const out = join(dir, 'out.jsonl');
  mkdirSync(dir, { recursive: true });
  const state = join(dir, 'state');
  const summaryPath = join(dir, 'summary.json');
  const env = { TP_N: String(N), TP_OUT: out, TP_BOOM_AT: '12000', TP_MARKER: join(dir, 'boom-marker'), TP_RATE: '8000' };
  const e = await runToEnd('throw-once.ts', state, ['--set', remoteSet('restart', ''), '--set', 'checkpoint.remoteRequired=true', '--set', 'checkpoint.intervalMs=200', '--set', 'parallelism=1', '--summary', summaryPath], env);
  t.equal(e.code, 0, `the run completes after one restart: ${e.stderr.trim().split('\n').at(-1) ?? ''}`);
  t.match(e.stderr, /planned failure at record 12000.* — restarting from the last checkpoint/, 'it restarted once');
  const s = JSON.parse(readFileSync(summaryPath, 'utf8')) as RunSummary;
  t.equal(s.restarts, 1, 'one restart in the summary');
  const { ids } = await remoteCheckpoints('restart', 'chk-throw-once/');
  const local = manifestIds(join(state, 'chk-throw-once'));
  t.ok(local.length > 0 && local.every((id) => ids.includes(id)) && ids.at(-1) === local.at(-1), `every local checkpoint is remote (local ${local.join(', ')}; remote ${ids.join(', ')})`);
  checkExactlyOnce(t, out, N, (i) => `k${i % 100}`, 'restart with remoteRequired');
});

t.test('wrong key, unreachable endpoint, missing container: one line before any record', async (t) => {
  const out = join(tmp, 'errors', 'out.jsonl');
  mkdirSync(join(tmp, 'errors'), { recursive: true });
  const env = { TP_N: '1000', TP_OUT: out, TP_KEYS: String(KEYS) };
  const wrong = await runToEnd('keyed-count.ts', join(tmp, 'errors', 's1'), ['--set', remoteSet('errors', '', 'd3Jvbmcta2V5')], env, 60_000);
  t.not(wrong.code, 0, 'wrong key: the run fails');
  t.match(wrong.stderr, /tidepool: remote checkpoints azure-blob account devstoreaccount1, container errors: cannot open the container: access denied \(403/, `wrong key: one line naming account and container (${wrong.stderr.trim()})`);
  t.equal(wrong.stderr.trim().split('\n').length, 1, 'wrong key: one line');
  t.notOk(existsSync(out), 'wrong key: no record was processed');

  const down = `state.remote=${JSON.stringify({ kind: 'azure-blob', connectionString: az.connectionString().replace(String(az.port), '1'), container: 'errors' })}`;
  const unreachable = await runToEnd('keyed-count.ts', join(tmp, 'errors', 's2'), ['--set', down], env, 90_000);
  t.not(unreachable.code, 0, 'unreachable endpoint: the run fails');
  t.match(unreachable.stderr, /remote checkpoints azure-blob account devstoreaccount1, container errors: cannot open the container: cannot reach the endpoint/, 'unreachable: one line naming it');
  t.notOk(existsSync(out), 'unreachable: no record was processed');

  t.notOk(await container('fresh-container').exists(), 'the container does not exist yet');
  const fresh = await runToEnd('keyed-count.ts', join(tmp, 'errors', 's3'), ['--set', remoteSet('fresh-container', 'p')], env);
  t.equal(fresh.code, 0, 'a missing container is created');
  t.ok((await blobNames('fresh-container', 'p/chk-count/checkpoints/')).length > 0, 'and holds the checkpoints');
  rmSync(out, { force: true });
});
