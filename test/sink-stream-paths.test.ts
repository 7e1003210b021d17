// sinks.file on paths that are not regular files, on real paths: /dev/null, a FIFO made
// with mkfifo, /dev/stdout, a symlink to a device, a directory (refused). Full
// `tidepool run`s as child processes (helpers/stream-runs.ts); after each, the path is
// what it was (the same device node, still a FIFO, still a link) and nothing appeared
// beside it. The regular-file protocol is tested in connectors.test.ts.
import t, { type Test } from 'tap';
import { lstatSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, readlinkSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { resetFileSink } from '../src/connectors/index.js';
import { sinkTarget } from '../src/connectors/sink-target.js';
import { StreamSinkWriter, type StreamOutput } from '../src/connectors/stream-sink.js';
import { lines, mkfifo, readFifo, runToEnd as runIn } from './helpers/stream-runs.js';

const tmp = mkdtempSync(join(tmpdir(), 'tidepool-sink-paths-'));
t.teardown(() => rmSync(tmp, { recursive: true, force: true }));
let dirs = 0;
const freshDir = (): string => {
  const d = join(tmp, `d${dirs++}`);
  mkdirSync(d);
  return d;
};
const runToEnd = (output: string, count: number | undefined, args: string[]) => runIn(tmp, output, count, args);

/** What identifies a device node: if any of it changes, the node was replaced. */
function nodeOf(path: string) {
  const st = lstatSync(path);
  return { char: st.isCharacterDevice(), fifo: st.isFIFO(), ino: st.ino, rdev: st.rdev, mode: st.mode };
}

/** Entries of /dev an old file sink wrote beside /dev/null (`null.committed`, `null.epoch-3`, `null-0`). */
const besideDevNull = () => readdirSync('/dev').filter((n) => n.startsWith('null.') || n.startsWith('null-'));

// ---- path classification and reset --------------------------------------------------

t.test('sinkTarget: files, devices, FIFOs, descriptor paths, directories, sockets', async (t) => {
  const dir = freshDir();
  writeFileSync(join(dir, 'file'), 'x');
  mkfifo(join(dir, 'fifo'));
  symlinkSync('/dev/null', join(dir, 'to-null'));
  symlinkSync('/dev/stdout', join(dir, 'to-stdout'));
  symlinkSync(join(dir, 'file'), join(dir, 'to-file'));
  t.same(sinkTarget(join(dir, 'file')), { kind: 'file' });
  t.same(sinkTarget(join(dir, 'missing')), { kind: 'file' });
  t.same(sinkTarget(join(dir, 'to-file')), { kind: 'file' });
  t.same(sinkTarget('/dev/null'), { kind: 'stream', what: 'character device' });
  t.same(sinkTarget(join(dir, 'to-null')), { kind: 'stream', what: 'character device' });
  t.same(sinkTarget(join(dir, 'fifo')), { kind: 'stream', what: 'FIFO' });
  t.same(sinkTarget('/dev/stdout'), { kind: 'descriptor', fd: 1 });
  t.same(sinkTarget(join(dir, 'to-stdout')), { kind: 'descriptor', fd: 1 });
  t.same(sinkTarget('/dev/stderr'), { kind: 'descriptor', fd: 2 });
  t.same(sinkTarget('/proc/self/fd/2'), { kind: 'descriptor', fd: 2 });
  t.same(sinkTarget(`/proc/${process.pid}/fd/1`), { kind: 'descriptor', fd: 1 });
  t.match(sinkTarget('/dev/fd/987'), { kind: 'refuse', why: /descriptor 987/ });
  t.match(sinkTarget(dir), { kind: 'refuse', why: /directory/ });
  const sockPath = join(dir, 'sock');
  const server = net.createServer();
  await new Promise<void>((r) => server.listen(sockPath, r));
  t.match(sinkTarget(sockPath), { kind: 'refuse', why: /socket/ });
  await new Promise((r) => server.close(r));
});

t.test('resetFileSink deletes regular files only', async (t) => {
  const dir = freshDir();
  const path = join(dir, 'out.jsonl');
  writeFileSync(path, 'old\n');
  writeFileSync(`${path}.committed`, '{"epoch":1,"length":4}\n');
  // Finals of the p = 2 layout that are a FIFO and a symlink, each with a stale artifact.
  mkfifo(join(dir, 'out-0.jsonl'));
  writeFileSync(join(dir, 'out-0.jsonl.committed'), '{"epoch":1,"length":0}\n');
  symlinkSync('/dev/null', join(dir, 'out-1.jsonl'));
  writeFileSync(join(dir, 'out-1.jsonl.epoch-3'), 'stale\n');
  const fifoBefore = nodeOf(join(dir, 'out-0.jsonl'));
  await resetFileSink(path, 1);
  t.same(readdirSync(dir).sort(), ['out-0.jsonl', 'out-1.jsonl'], 'the FIFO and the symlink stay, the regular files go');
  t.same(nodeOf(join(dir, 'out-0.jsonl')), fifoBefore, 'the same FIFO');
  t.equal(readlinkSync(join(dir, 'out-1.jsonl')), '/dev/null', 'the same link');
  // A sink on /dev/null itself: nothing to reset, and /dev/null is left alone.
  const devNull = nodeOf('/dev/null');
  await resetFileSink('/dev/null', 1);
  await resetFileSink('/dev/null', 2);
  t.same(nodeOf('/dev/null'), devNull);
  t.same(besideDevNull(), []);
  // A directory where a final file would go is refused, and nothing is deleted first.
  writeFileSync(path, 'keep\n');
  mkdirSync(join(dir, 'sub.jsonl'));
  await t.rejects(resetFileSink(join(dir, 'sub.jsonl'), 1), { code: 'TIDEPOOL_INPUT', message: /sub\.jsonl.*directory/ });
  mkdirSync(join(dir, 'p-1.jsonl'));
  writeFileSync(join(dir, 'p.jsonl'), 'old layout\n');
  await t.rejects(resetFileSink(join(dir, 'p.jsonl'), 2), { code: 'TIDEPOOL_INPUT', message: /p-1\.jsonl.*directory/ });
  t.equal(readFileSync(join(dir, 'p.jsonl'), 'utf8'), 'old layout\n', 'refused before deleting anything');
});

// ---- the stream writer's protocol ---------------------------------------------------

/** A StreamOutput that records what reached it. */
function memoryOutput(): StreamOutput & { got: string } {
  const out = {
    name: 'memory',
    got: '',
    write: async (chunk: string) => {
      await new Promise((r) => setImmediate(r));
      out.got += chunk;
    },
    close: async () => {},
  };
  return out;
}

t.test('stream writer with checkpoints: lines reach the stream at commit, in epoch order', async (t) => {
  const out = memoryOutput();
  const w = new StreamSinkWriter(out, false);
  await w.write([{ a: 1 }, 'b']);
  await w.prepare(1);
  await w.write([{ big: 2n }]);
  t.equal(out.got, '', 'nothing before a commit');
  await w.prepare(2);
  await w.write(['dropped']);
  w.abort();
  await w.commit(1);
  t.equal(out.got, '{"a":1}\n"b"\n');
  await w.prepare(3);
  await w.commit(3);
  t.equal(out.got, '{"a":1}\n"b"\n{"big":"2"}\n', 'epoch 2 with epoch 3; the aborted record never');
  await w.commit(3);
  t.equal(out.got, '{"a":1}\n"b"\n{"big":"2"}\n', 'a repeated commit writes nothing');
  await w.write(['uncommitted']);
  await w.prepare(4);
  await w.close();
  t.equal(out.got, '{"a":1}\n"b"\n{"big":"2"}\n', 'close drops what no commit covered');
  t.throws(() => w.write(['late']), { code: 'TIDEPOOL_IO' });
});

t.test('stream writer without checkpoints: lines reach the stream as they are written', async (t) => {
  const out = memoryOutput();
  const w = new StreamSinkWriter(out, true);
  await w.write([1, 2]);
  t.equal(out.got, '1\n2\n', 'written before any prepare');
  await w.write([3]);
  await w.prepare(1);
  await w.commit(1);
  t.equal(out.got, '1\n2\n3\n', 'prepare and commit add nothing');
  const failing: StreamOutput = { name: '/dev/broken', write: async () => Promise.reject(Object.assign(new Error('EPIPE: broken pipe'), { code: 'EPIPE' })), close: async () => {} };
  const f = new StreamSinkWriter(failing, true);
  await t.rejects(f.write([1]) as Promise<void>, { code: 'TIDEPOOL_IO', message: /\/dev\/broken.*EPIPE/ });
  await t.rejects(f.prepare(1), { code: 'TIDEPOOL_IO' }, 'a failure fails what follows');
  await f.close();
});

// ---- full runs ------------------------------------------------------------------------

t.test('/dev/null stays the same character device through full runs', async (t) => {
  const before = nodeOf('/dev/null');
  t.ok(before.char, '/dev/null is a character device to begin with');
  const state = join(freshDir(), 'state');
  const summary = join(tmp, 'null-summary.json');
  const n = 5000;
  // parallelism 2 everywhere: the sink still gets one writer (no /dev/null-0, -1).
  const args = ['--state', state, '--set', 'checkpoint.intervalMs=20', '--set', 'parallelism=2', '--set', 'operators.out.parallelism=2', '--summary', summary];
  let r = await runToEnd('/dev/null', n, args);
  t.equal(r.code, 0, r.stderr);
  t.equal((JSON.parse(readFileSync(summary, 'utf8')) as { recordsOut: number }).recordsOut, n, 'every record reached the sink');
  t.same(nodeOf('/dev/null'), before, 'the same device node');
  t.same(besideDevNull(), [], 'no sidecar, epoch or pending file in /dev');
  r = await runToEnd('/dev/null', n, args.slice(0, -2));
  t.equal(r.code, 0, `a run after the final checkpoint ${r.stderr}`);
  r = await runToEnd('/dev/null', n, ['--set', 'state.storage=memory']);
  t.equal(r.code, 0, `memory state ${r.stderr}`);
  t.same(nodeOf('/dev/null'), before, 'still the same device node');
  t.same(besideDevNull(), []);
});

t.test('a symlink to /dev/null: the link stays, nothing is written beside it', async (t) => {
  const dir = freshDir();
  const link = join(dir, 'out.jsonl');
  symlinkSync('/dev/null', link);
  const state = join(freshDir(), 'state');
  const r = await runToEnd(link, 5000, ['--state', state, '--set', 'checkpoint.intervalMs=20']);
  t.equal(r.code, 0, r.stderr);
  t.same(readdirSync(dir), ['out.jsonl'], 'no .committed, .epoch-N or .pending file');
  t.ok(lstatSync(link).isSymbolicLink(), 'still a symlink');
  t.equal(readlinkSync(link), '/dev/null');
});

t.test('a FIFO receives exactly the lines, in order, and stays a FIFO', async (t) => {
  const dir = freshDir();
  const fifo = join(dir, 'out.jsonl');
  mkfifo(fifo);
  const before = nodeOf(fifo);
  const n = 5000;
  const reader = readFifo(fifo);
  const r = await runToEnd(fifo, n, ['--state', join(freshDir(), 'state'), '--set', 'checkpoint.intervalMs=20', '--set', 'parallelism=1']);
  const text = await reader.finish();
  t.equal(r.code, 0, r.stderr);
  t.ok(text === lines(n), `every line once, in order (${text.split('\n').length - 1} lines)`);
  t.same(readdirSync(dir), ['out.jsonl'], 'nothing beside the FIFO');
  t.same(nodeOf(fifo), before, 'the same FIFO');

  // A source at parallelism 2 and a sink asked for 3: one writer still, every line once.
  const again = readFifo(fifo);
  const r2 = await runToEnd(fifo, n, ['--state', join(freshDir(), 'state'), '--set', 'checkpoint.intervalMs=20', '--set', 'parallelism=2', '--set', 'operators.out.parallelism=3']);
  const text2 = await again.finish();
  t.equal(r2.code, 0, r2.stderr);
  t.ok(text2.split('\n').sort().join('\n') === lines(n).split('\n').sort().join('\n'), 'every line once');
  t.same(readdirSync(dir), ['out.jsonl'], 'no out-0.jsonl, out-1.jsonl, …');
});

t.test('/dev/stdout as the file sink path: the lines go to the process stdout', async (t) => {
  const n = 3000;
  // The child's stdout is a socket here (Node's piped stdio), which open(2) refuses:
  // the sink writes to descriptor 1 itself.
  const r = await runToEnd('/dev/stdout', n, ['--state', join(freshDir(), 'state'), '--set', 'checkpoint.intervalMs=20', '--set', 'parallelism=1']);
  t.equal(r.code, 0, r.stderr);
  t.ok(r.stdout === lines(n), `every line once, in order (${r.stdout.split('\n').length - 1} lines)`);
  t.ok(lstatSync('/dev/stdout').isSymbolicLink(), '/dev/stdout is still a symlink');
  t.same(readdirSync('/dev').filter((x) => x.startsWith('stdout.')), []);
});

/** Asserts a failed run: non-zero exit, exactly one `tidepool: …` line on stderr. */
function oneLineError(t: Test, r: { code: number | null; stderr: string }, ...fragments: RegExp[]): void {
  t.ok(r.code !== 0 && r.code !== null, `non-zero exit (${r.code})`);
  const ls = r.stderr.replace(/\n$/, '').split('\n');
  t.equal(ls.length, 1, `one line on stderr: ${JSON.stringify(r.stderr)}`);
  t.match(ls[0], /^tidepool: \S/);
  for (const f of fragments) t.match(ls[0], f);
}

t.test('a directory is refused with one line, and no file is created', async (t) => {
  const dir = freshDir();
  const state = join(tmp, 'refused-state');
  oneLineError(t, await runToEnd(dir, 100, ['--state', state]), /is a directory/, new RegExp(`${dir}\\b`));
  t.same(readdirSync(dir), [], 'the directory is untouched');
  t.throws(() => statSync(state), { code: 'ENOENT' }, 'no state directory either');

  // At p = 2 the second subtask's file is a directory: refused before the first writes.
  const out = join(dir, 'out.jsonl');
  mkdirSync(join(dir, 'out-1.jsonl'));
  oneLineError(t, await runToEnd(out, 100, ['--state', state, '--set', 'operators.out.parallelism=2']), /out-1\.jsonl/, /directory/);
  t.same(readdirSync(dir), ['out-1.jsonl'], 'no out-0.jsonl, no sidecar');
  t.same(readdirSync(join(dir, 'out-1.jsonl')), []);
});
