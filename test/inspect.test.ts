// `tidepool inspect <dir>` (text and --json) on what real runs and real stores leave:
// a flow's --state directory after a complete run, the same after a SIGKILL with a
// checkpoint whose state was committed but whose manifest was never written, and a
// directory of embedded stores. Every number is compared with what was written: key
// counts per instance recomputed from the records the checkpoint covers (source
// positions × the partitioning), checkpoint fields with the manifests on disk, store
// sizes with what the test set.
import t from 'tap';
import { cpSync, mkdtempSync, readFileSync, rmSync, statSync, truncateSync, unlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openStore } from '../src/index.js';
import { keyGroupOf } from '../src/runtime/partition.js';
import { subtaskForKeyGroup } from '../src/flow/plan.js';
import type { DirReport } from '../src/cli/inspect.js';
import { cli, startCli, FLOWS, sleep } from './helpers/cli.js';
import { manifestIds } from './helpers/flow-child.js';

const tmp = mkdtempSync(join(tmpdir(), 'tidepool-inspect-'));
t.teardown(() => rmSync(tmp, { recursive: true, force: true }));
const MODULE_CACHE = join(tmp, 'module-cache');
const KEYED_COUNT = join(FLOWS, 'checkpoint/keyed-count.ts');
const KEY_GROUPS = 128;

/** The keyed-count fixture's key of record i (see test-fixtures/flows/checkpoint/keyed-count.ts). */
const keyOf = (i: number, keys: number) => `k${(Math.imul(i, 2654435761) >>> 0) % keys}`;

/**
 * Distinct keys per reduce subtask after the records a checkpoint covers: generator
 * subtask s of p has made s, s+p, … below its position.
 */
function expectedKeys(positions: number[], keys: number, reduceParallelism: number): number[] {
  const sets = Array.from({ length: reduceParallelism }, () => new Set<string>());
  positions.forEach((pos, s) => {
    for (let i = s; i < pos; i += positions.length) {
      const k = keyOf(i, keys);
      sets[subtaskForKeyGroup(keyGroupOf(k, KEY_GROUPS), reduceParallelism, KEY_GROUPS)]!.add(k);
    }
  });
  return sets.map((s) => s.size);
}

interface ManifestFile {
  id: number;
  time: number;
  durationMs: number;
  bytesWritten: number;
  final: boolean;
  tasks: { operators: string[]; parallelism: number; instances: { subtask: number; stateId?: string; version?: number; position?: number }[] }[];
}
const manifest = (flowDir: string, id: number) =>
  JSON.parse(readFileSync(join(flowDir, 'checkpoints', `chk-${String(id).padStart(10, '0')}.json`), 'utf8')) as ManifestFile;

/** `inspect <dir> --json` and (unless jsonOnly) `inspect <dir>`, both at once. */
async function inspect(dir: string, jsonOnly = false): Promise<{ json: DirReport; text: string }> {
  const [j, x] = await Promise.all([cli(['inspect', dir, '--json'], { cwd: tmp }), jsonOnly ? undefined : cli(['inspect', dir], { cwd: tmp })]);
  if (j.code !== 0 || (x && x.code !== 0)) throw new Error(`inspect ${dir} failed: ${j.stderr}${x?.stderr ?? ''}`);
  return { json: JSON.parse(j.stdout) as DirReport, text: x?.stdout ?? '' };
}

const esc = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

t.test('a flow state directory after a complete run', async (t) => {
  const N = 30_000;
  const KEYS = 5000;
  const state = join(tmp, 'complete');
  const env = { TP_N: String(N), TP_KEYS: String(KEYS), TP_OUT: join(tmp, 'complete-out/counts.jsonl'), TIDEPOOL_MODULE_CACHE: MODULE_CACHE };
  const r = await cli(['run', KEYED_COUNT, '--state', state, '--set', 'parallelism=2', '--set', 'checkpoint.intervalMs=100'], { cwd: tmp, env, timeoutMs: 90_000 });
  t.equal(r.code, 0, `the run completes ${r.stderr}`);
  const flowDir = join(state, 'chk-count');
  const ids = manifestIds(flowDir);
  t.ok(ids.length >= 1, `retained checkpoints ${ids.join(', ')}`);
  const newest = manifest(flowDir, ids.at(-1)!);
  t.ok(newest.final, 'the newest checkpoint is the final one');

  const { json, text } = await inspect(state);
  t.same(json.stores, [], 'no embedded store in a --state root');
  t.equal(json.flows.length, 1);
  const f = json.flows[0]!;
  t.equal(f.flow, 'chk-count');
  t.same(f.checkpoints.map((c) => c.id), ids, 'every retained checkpoint, by id');
  for (const c of f.checkpoints) {
    const m = manifest(flowDir, c.id);
    t.same({ time: Date.parse(c.time), durationMs: c.durationMs, bytesWritten: c.bytesWritten, final: c.final }, { time: m.time, durationMs: m.durationMs, bytesWritten: m.bytesWritten, final: m.final }, `checkpoint ${c.id} as in its manifest`);
    t.ok(c.bytesWritten > 0, `checkpoint ${c.id} wrote state`);
  }
  t.same(f.operators.map((o) => [o.operators, o.parallelism, o.stateful]), [[['gen'], 2, false], [['counts'], 2, true], [['out'], 1, false]], 'tasks, parallelism, stateful');

  const gen = f.operators[0]!;
  // Subtask s of 2 made s, s+2, … < N: its next index is the first ≥ N of its parity.
  t.same(gen.instances.map((i) => i.sourcePosition), [0, 1].map((s) => N + ((s - N) % 2 + 2) % 2), 'source positions: every record made');
  const counts = f.operators[1]!;
  const want = expectedKeys(gen.instances.map((i) => i.sourcePosition as number), KEYS, 2);
  t.equal(want[0]! + want[1]!, KEYS, 'every key was seen');
  for (const inst of counts.instances) {
    const m = newest.tasks[1]!.instances[inst.subtask]!;
    t.equal(inst.stateId, m.stateId, `#${inst.subtask}: state id`);
    t.equal(inst.stateVersion, m.version, `#${inst.subtask}: state version of the checkpoint`);
    t.same(inst.keys, { counts: want[inst.subtask] }, `#${inst.subtask}: ${want[inst.subtask]} keys, recomputed from the records`);
    const st = f.states.find((s) => s.stateId === inst.stateId)!;
    t.ok(st, `#${inst.subtask}: its state partition is reported`);
    t.equal(st.checkpointVersion, m.version);
    t.same(st.tables, { counts: { keys: want[inst.subtask] } });
    t.equal(st.unfinishedVersions, 0, 'nothing unfinished after a complete run');
    const last = st.flushes.at(-1)!;
    t.equal(last.version, m.version, 'the newest flush is the final checkpoint\'s');
    t.ok(st.storedPages >= last.pagesWritten && st.storedPages > 0, `stored pages ${st.storedPages} ≥ pages of the last flush ${last.pagesWritten}`);
    t.ok(st.storedBytes >= last.bytesWritten && st.storedVersions >= st.storedPages, `stored bytes ${st.storedBytes}, versions ${st.storedVersions}`);
  }
  t.same(f.operators[2]!.instances, [{ subtask: 0 }], 'the sink: one instance, nothing stored');

  // The text form names the same things.
  for (const c of f.checkpoints) t.match(text, new RegExp(`^  checkpoint ${c.id}: ${esc(c.time)}, ${c.durationMs} ms, ${c.bytesWritten} bytes written${c.final ? ', final \\(run complete\\)' : ''}$`, 'm'));
  t.match(text, /^ {2}\[gen\] ×2$/m);
  t.match(text, /^ {2}\[counts\] ×2 \(stateful\)$/m);
  for (const i of gen.instances) t.match(text, new RegExp(`^    #${i.subtask}, source position ${i.sourcePosition}$`, 'm'));
  for (const i of counts.instances) t.match(text, new RegExp(`^    #${i.subtask}, state ${esc(i.stateId!)}, version ${i.stateVersion}, counts: ${want[i.subtask]} keys$`, 'm'));

  // The flow's own directory gives the same report.
  const direct = await inspect(flowDir, true);
  t.same(direct.json.stores, [], 'a flow directory is not mistaken for an embedded store');
  t.same({ ...direct.json.flows[0], dir: '' }, { ...f, dir: '' }, 'inspect <state>/<flow> = inspect <state>');
});

t.test('after a SIGKILL, with the newest checkpoint committed in state but its manifest missing', async (t) => {
  // Nearly every record has a key of its own, so key counts differ from one checkpoint
  // to the next; the source is paced so that checkpoints come every ~200 ms.
  const KEYS = 1_000_000_000;
  const state = join(tmp, 'killed');
  const flowDir = join(state, 'chk-count');
  const env = { TP_N: '100000000', TP_KEYS: String(KEYS), TP_RATE: '10000', TP_OUT: join(tmp, 'killed-out/counts.jsonl'), TIDEPOOL_MODULE_CACHE: MODULE_CACHE };
  const run = startCli(['run', KEYED_COUNT, '--state', state, '--set', 'parallelism=2', '--set', 'checkpoint.intervalMs=200', '--set', 'checkpoint.retain=3'], { cwd: tmp, env, timeoutMs: 90_000 });
  for (let i = 0; i < 600 && manifestIds(flowDir).length < 3; i++) await sleep(100);
  run.child.kill('SIGKILL');
  const exit = await run.done;
  t.equal(exit.signal, 'SIGKILL', `killed while running ${exit.stderr}`);
  const ids = manifestIds(flowDir);
  t.ok(ids.length >= 3, `checkpoints before the kill: ${ids.join(', ')}`);
  // As if the process had died between the state commits of checkpoint N and manifest N.
  const dropped = ids.at(-1)!;
  unlinkSync(join(flowDir, 'checkpoints', `chk-${String(dropped).padStart(10, '0')}.json`));
  const newest = manifest(flowDir, ids.at(-2)!);

  const { json, text } = await inspect(state);
  const f = json.flows[0]!;
  t.same(f.checkpoints.map((c) => c.id), ids.slice(0, -1), 'checkpoint N is gone: it has no manifest');
  t.notOk(f.checkpoints.at(-1)!.final);
  const positions = f.operators[0]!.instances.map((i) => i.sourcePosition as number);
  t.same(positions, newest.tasks[0]!.instances.map((i) => i.position), 'source positions of checkpoint N-1');
  const want = expectedKeys(positions, KEYS, 2);
  for (const inst of f.operators[1]!.instances) {
    const version = newest.tasks[1]!.instances[inst.subtask]!.version!;
    const st = f.states.find((s) => s.stateId === inst.stateId)!;
    t.ok(st.flushes.at(-1)!.version > version, `#${inst.subtask}: state holds a flush (${st.flushes.at(-1)!.version}) newer than checkpoint N-1's version ${version}`);
    t.equal(inst.stateVersion, version);
    t.same(inst.keys, { counts: want[inst.subtask] }, `#${inst.subtask}: keys at checkpoint N-1 (${want[inst.subtask]}), not at the newer flush (${st.flushes.at(-1)!.keys.counts})`);
    t.same(st.tables, { counts: { keys: want[inst.subtask] } }, `#${inst.subtask}: state tables at the checkpoint version`);
    t.equal(st.checkpointVersion, version);
    t.ok(st.unfinishedVersions > 0, `#${inst.subtask}: ${st.unfinishedVersions} page versions newer than the checkpoint are unfinished`);
    t.match(text, new RegExp(`^  state ${esc(st.stateId)}: .*, ${st.unfinishedVersions} page versions of an unfinished checkpoint \\(ignored\\)$`, 'm'));
  }
});

t.test('a directory of embedded stores', async (t) => {
  const dir = join(tmp, 'stores');
  const a = await openStore({ path: dir });
  for (let i = 0; i < 5000; i++) a.set(['user', i], { i, name: 'x'.repeat(i % 50) });
  await a.flush();
  for (let i = 0; i < 1000; i++) a.delete(['user', i * 5]);
  await a.flush();
  const aVersion = a.stats.version;
  await a.close();
  const b = await openStore({ path: dir, name: 'small-cache', cachePages: 4, pageSize: 1024 });
  for (let i = 0; i < 3000; i++) b.set(i, `value ${i}`);
  await b.flush();
  for (let i = 3000; i < 3100; i++) b.set(i, `value ${i}`);
  const bVersion = b.stats.version + 1;
  await b.close(); // flushes the last 100

  const { json, text } = await inspect(dir);
  t.same(json.flows, []);
  t.same(json.stores.map((s) => s.stateId).sort(), ['default', 'small-cache'], 'both stores, by name');
  const sa = json.stores.find((s) => s.stateId === 'default')!;
  const sb = json.stores.find((s) => s.stateId === 'small-cache')!;
  t.same(Object.values(sa.tables), [{ keys: 4000 }], 'default: 5000 set, 1000 deleted');
  t.same(Object.values(sb.tables), [{ keys: 3100 }], 'small-cache: including what close() flushed');
  t.equal(sa.flushes.at(-1)!.version, aVersion, 'default: the version of the last flush');
  t.equal(sb.flushes.at(-1)!.version, bVersion, 'small-cache: flush() and close()');
  t.same(Object.values(sa.flushes.at(-1)!.keys), [4000]);
  for (const s of [sa, sb]) {
    t.equal(s.unfinishedVersions, 0, `${s.stateId}: nothing unfinished`);
    t.equal(s.checkpointVersion, undefined, `${s.stateId}: a store has no checkpoints`);
    t.ok(s.storedBytes >= s.flushes.at(-1)!.bytesWritten && s.storedPages >= s.flushes.at(-1)!.pagesWritten, `${s.stateId}: ${s.storedPages} pages, ${s.storedBytes} bytes stored`);
  }
  // 3100 values of ~10 bytes in pages of 1 KiB: well over a hundred pages.
  t.ok(sb.storedPages > 30, `small-cache: ${sb.storedPages} pages of 1 KiB`);
  for (const s of [sa, sb]) {
    const keys = Object.values(s.tables)[0]!.keys;
    t.match(text, new RegExp(`^${esc(s.stateId)}: version ${s.flushes.at(-1)!.version} at ${esc(s.flushes.at(-1)!.time)}$`, 'm'));
    t.match(text, new RegExp(`^  table \\S+: ${keys} keys$`, 'm'));
    t.match(text, new RegExp(`^  stored: ${s.storedPages} pages, ${s.storedVersions} page versions, `, 'm'));
  }
});

t.test('a directory without tidepool state is one line and a non-zero exit', async (t) => {
  const dirs = [join(tmp, 'nope'), join(tmp, 'module-cache')];
  const results = await Promise.all(dirs.map((dir) => cli(['inspect', dir], { cwd: tmp })));
  results.forEach((r, i) => {
    t.not(r.code, 0);
    t.match(r.stderr, new RegExp(`^tidepool: .*${esc(dirs[i]!)}.*(does not exist|holds no tidepool state).*\\n$`));
  });
});

t.test('a data.mdb cut short is one line and a non-zero exit, not a crash (it was SIGBUS)', async (t) => {
  const dir = join(tmp, 'cut');
  const s = await openStore({ path: dir });
  for (let i = 0; i < 5000; i++) s.set(`k${i}`, 'v'.repeat(50));
  await s.flush();
  for (let i = 0; i < 5000; i += 3) s.set(`k${i}`, 'w'.repeat(50));
  await s.flush();
  await s.close();
  const size = statSync(join(dir, 'data.mdb')).size;
  // Half the file: the newest pages (LMDB's list of databases among them) are gone.
  const cut = join(tmp, 'cut-half');
  cpSync(dir, cut, { recursive: true });
  truncateSync(join(cut, 'data.mdb'), Math.floor(size / 2 / 4096) * 4096);
  const r = await cli(['inspect', cut], { cwd: tmp });
  t.equal(r.signal ?? null, null, 'not killed by a signal');
  t.equal(r.code, 1, 'exit code 1');
  const last = r.stderr.trim().split('\n').at(-1) ?? '';
  t.match(last, new RegExp(`^tidepool: corrupted LMDB environment in ${esc(cut)}: MDB_`), last);
  const whole = await cli(['inspect', dir], { cwd: tmp });
  t.equal(whole.code, 0, 'the uncut copy still inspects');
});
