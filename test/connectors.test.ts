// Sources and sinks on real temp files: striping, line splitting across chunk
// boundaries, resume from positions, and the file sink's two-phase commit.
import t from 'tap';
import fc from 'fast-check';
import { appendFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { sources, sinks, resetFileSink, fileSinkPath, fileSinkPaths } from '../src/connectors/index.js';
import type { InstanceContext, SinkWriter, SourceReader } from '../src/flow/types.js';
import { TidepoolError } from '../src/errors.js';

const here = dirname(fileURLToPath(import.meta.url));
const root = mkdtempSync(join(tmpdir(), 'tidepool-connectors-'));
t.teardown(() => rmSync(root, { recursive: true, force: true }));
let dirs = 0;
const freshDir = () => {
  const d = join(root, `d${dirs++}`);
  mkdirSync(d);
  return d;
};

const ctx = (subtask: number, parallelism: number): InstanceContext => ({ flow: 'f', operator: 'op', subtask, parallelism });

async function drain<T>(r: SourceReader<T>, max = 1000, limit = Infinity): Promise<T[]> {
  const out: T[] = [];
  while (out.length < limit) {
    const b = await r.next(max);
    if (b === null) break;
    if (b.length > max) throw new Error(`next(${max}) returned ${b.length} records`);
    out.push(...b);
  }
  return out;
}

/** What a line reader must return for `content`. */
function refLines(content: string): string[] {
  if (content === '') return [];
  const parts = content.split('\n');
  if (content.endsWith('\n')) parts.pop();
  return parts.map((l) => (l.endsWith('\r') ? l.slice(0, -1) : l));
}

async function readAll(path: string, p: number, chunkBytes?: number): Promise<string[][]> {
  const spec = sources.file(chunkBytes === undefined ? { path } : { path, chunkBytes });
  const out: string[][] = [];
  for (let i = 0; i < p; i++) {
    const r = await spec.open(ctx(i, p));
    out.push(await drain(r, 3));
    await r.close();
  }
  return out;
}

const sameMultiset = (a: string[], b: string[]) => JSON.stringify([...a].sort()) === JSON.stringify([...b].sort());

// ---- array & generator -------------------------------------------------------------

t.test('array: striping covers every item once, in order per subtask', async (t) => {
  const items = Array.from({ length: 10 }, (_, i) => `x${i}`);
  const spec = sources.array(items);
  t.equal(spec.type, 'array');
  t.equal(spec.bounded, true);
  t.equal(spec.maxParallelism, 10);
  t.equal(sources.array([]).maxParallelism, 1);
  for (let p = 1; p <= 3; p++) {
    const seen: string[] = [];
    for (let i = 0; i < p; i++) {
      const got = await drain(await spec.open(ctx(i, p)), 2);
      t.same(got, items.filter((_, k) => k % p === i), `p=${p} subtask ${i}`);
      seen.push(...got);
    }
    t.ok(sameMultiset(seen, items), `p=${p}: union is every item once`);
  }
  t.same(await drain(await sources.array([]).open(ctx(0, 1))), []);
  t.same(await drain(await sources.array([1]).open(ctx(2, 3))), [], 'a subtask past the items gets nothing');
  t.throws(() => sources.array('abc' as unknown as string[]), { code: 'TIDEPOOL_BAD_OPTION' });
});

t.test('array: position counts consumed records; seek skips them', async (t) => {
  const items = Array.from({ length: 9 }, (_, i) => i);
  const spec = sources.array(items);
  const r = await spec.open(ctx(1, 2)); // 1, 3, 5, 7
  t.equal(r.position(), 0);
  t.same(await r.next(2), [1, 3]);
  t.equal(r.position(), 2);
  const r2 = await spec.open(ctx(1, 2));
  await r2.seek(r.position());
  t.same(await drain(r2), [5, 7]);
  t.equal(r2.position(), 4);
  t.throws(() => r2.seek(-1), { code: 'TIDEPOOL_INPUT' });
});

t.test('generator: striping for p = 1..3, positions are next indices', async (t) => {
  const spec = sources.generator({ count: 11, make: (i) => ({ i }) });
  t.equal(spec.type, 'generator');
  t.equal(spec.bounded, true);
  for (let p = 1; p <= 3; p++) {
    const seen: number[] = [];
    for (let s = 0; s < p; s++) {
      const r = await spec.open(ctx(s, p));
      t.equal(r.position(), s);
      const got = (await drain(r, 2)).map((x) => x.i);
      const want = Array.from({ length: 11 }, (_, i) => i).filter((i) => i % p === s);
      t.same(got, want, `p=${p} subtask ${s}`);
      seen.push(...got);
    }
    t.same(seen.sort((a, b) => a - b), Array.from({ length: 11 }, (_, i) => i), `p=${p}: every index once`);
  }
  // Resume.
  const r = await spec.open(ctx(1, 3)); // 1 4 7 10
  t.same((await r.next(2))!.map((x) => x.i), [1, 4]);
  t.equal(r.position(), 7);
  const r2 = await spec.open(ctx(1, 3));
  r2.seek(7);
  t.same((await drain(r2)).map((x) => x.i), [7, 10]);
  t.throws(() => r2.seek(6), { code: 'TIDEPOOL_INPUT' }, 'an index of another subtask is refused');
  t.same(await drain(await sources.generator({ count: 0, make: (i) => i }).open(ctx(0, 1))), []);
});

t.test('generator: unbounded produces as many as asked', async (t) => {
  const spec = sources.generator({ make: (i) => i * 2 });
  t.equal(spec.bounded, false);
  t.equal(spec.maxParallelism, undefined);
  const r = await spec.open(ctx(0, 1));
  const got: number[] = [];
  for (let k = 0; k < 50; k++) got.push(...(await r.next(100))!);
  t.equal(got.length, 5000);
  t.same(got.slice(0, 3), [0, 2, 4]);
  t.equal(got[4999], 9998);
  t.equal(r.position(), 5000);
  const odd = await spec.open(ctx(1, 2));
  t.same(await odd.next(3), [2, 6, 10]);
});

t.test('generator: a slow make ends a batch early, and nothing is skipped or repeated', async (t) => {
  // A make that waits 30 ms (a rate limit): a 512-record batch would hold a barrier for
  // 15 s; cut after its time slice, a batch is one or two records.
  const sleeper = new Int32Array(new SharedArrayBuffer(4));
  const spec = sources.generator({ count: 6, make: (i) => (Atomics.wait(sleeper, 0, 0, 30), i) });
  const r = await spec.open(ctx(0, 1));
  const batches: number[][] = [];
  for (let b; (b = await r.next(512)) !== null; ) batches.push(b);
  t.ok(batches.every((b) => b.length <= 2), `batches of at most 2 (${batches.map((b) => b.length).join(', ')})`);
  t.same(batches.flat(), [0, 1, 2, 3, 4, 5], 'every record once, in order');
  t.equal(r.position(), 6);
  // A fast make still fills the batch.
  const fast = await sources.generator({ count: 1000, make: (i) => i }).open(ctx(0, 1));
  t.equal((await fast.next(512))!.length, 512, 'a fast make fills the batch');
});

t.test('generator: options are validated, make errors name the operator', async (t) => {
  const make = (i: number) => i;
  for (const count of [-1, 1.5, 'x', NaN, Infinity]) {
    t.throws(() => sources.generator({ count: count as number, make }), { code: 'TIDEPOOL_BAD_OPTION', message: /count/ });
  }
  t.throws(() => sources.generator({ count: 3, make: 5 as unknown as typeof make }), { code: 'TIDEPOOL_BAD_OPTION', message: /make/ });
  t.throws(() => sources.generator({ count: 3, make, cnt: 2 } as never), { message: /cnt/ });
  const bad = sources.generator({
    count: 5,
    make: (i) => {
      if (i === 3) throw new Error('boom');
      return i;
    },
  });
  const r = await bad.open(ctx(0, 1));
  await t.rejects(async () => drain(r), { code: 'TIDEPOOL_USER_CODE', message: /operator 'op'.*boom/ });
});

// ---- file source -------------------------------------------------------------------

t.test('file: lines across chunk boundaries, CRLF, empty lines, no final newline', async (t) => {
  const dir = freshDir();
  const cases: Record<string, string> = {
    simple: 'alpha\nbeta\ngamma\n',
    noFinalNewline: 'alpha\nbeta\ngamma',
    crlf: 'one\r\ntwo\r\n\r\nthree\r\n',
    emptyLines: '\n\nx\n\n\ny\n\n',
    onlyNewline: '\n',
    long: `${'a'.repeat(50)}\nb\n${'c'.repeat(23)}`,
    multibyte: 'héllo wörld\n€€€€\n😀😀😀x😀\n日本語のテキスト\nend',
    crNotAtEnd: 'a\rb\nc\r\r\n',
  };
  for (const [name, content] of Object.entries(cases)) {
    const path = join(dir, `${name}.txt`);
    writeFileSync(path, content);
    for (const chunk of [1, 2, 3, 7, 64]) {
      const [got] = await readAll(path, 1, chunk);
      t.same(got, refLines(content), `${name}, chunk ${chunk}`);
    }
  }
  const empty = join(dir, 'empty.txt');
  writeFileSync(empty, '');
  for (let p = 1; p <= 3; p++) t.same((await readAll(empty, p, 7)).flat(), [], `empty file, p=${p}`);
  const bom = join(dir, 'bom.txt');
  writeFileSync(bom, '\ufeffhead\nbody\n');
  t.same((await readAll(bom, 1, 2))[0], ['head', 'body'], 'a UTF-8 BOM is dropped');
  const spec = sources.file({ path: empty });
  t.equal(spec.type, 'file');
  t.equal(spec.bounded, true);
});

t.test('file: random contents, chunk sizes and parallelism — every line exactly once', async (t) => {
  const dir = freshDir();
  const path = join(dir, 'random.txt');
  const piece = fc.constantFrom('a', 'bc', 'defgh', '\n', '\n', '\r\n', '\r', 'é', '€', '😀', ' ', '日本');
  await fc.assert(
    fc.asyncProperty(fc.array(piece, { maxLength: 60 }), fc.integer({ min: 1, max: 9 }), fc.integer({ min: 1, max: 4 }), async (parts, chunk, p) => {
      const content = parts.join('');
      writeFileSync(path, content);
      const per = await readAll(path, p, chunk);
      const want = refLines(content);
      // Concatenating the subtasks in order gives the file's lines in order.
      if (JSON.stringify(per.flat()) !== JSON.stringify(want)) {
        throw new Error(`p=${p} chunk=${chunk} ${JSON.stringify(content)}: got ${JSON.stringify(per)}`);
      }
    }),
    { numRuns: 300 },
  );
  t.pass('300 random files');
});

t.test('file: p = 1..4 split a larger file into disjoint ranges covering every line', async (t) => {
  const dir = freshDir();
  const path = join(dir, 'big.txt');
  const lines = Array.from({ length: 3000 }, (_, i) => `line ${i} ${'x€'.repeat(i % 17)}`);
  writeFileSync(path, `${lines.join('\n')}\n`);
  for (let p = 1; p <= 4; p++) {
    const per = await readAll(path, p, 97);
    t.same(per.flat(), lines, `p=${p}: subtasks in order = the file`);
    if (p > 1) t.ok(per.every((l) => l.length > 0), `p=${p}: every subtask got some lines`);
  }
  // Default chunk size, a file of several MiB.
  const bigPath = join(dir, 'bigger.txt');
  const many = Array.from({ length: 60000 }, (_, i) => `${i}:${'y'.repeat(i % 100)}`);
  writeFileSync(bigPath, many.join('\n'));
  const per = await readAll(bigPath, 3);
  t.equal(per.flat().length, many.length);
  t.same(per.flat(), many, 'default 1 MiB chunks, p=3');
});

t.test('file: position()/seek() resume mid-file with exactly the remaining lines', async (t) => {
  const dir = freshDir();
  const path = join(dir, 'resume.txt');
  const content = 'first\r\nsecond\n\nfourth é€😀\nfifth\nsixth\nseventh\neighth';
  writeFileSync(path, content);
  const all = refLines(content);
  const spec = sources.file({ path, chunkBytes: 5 });
  for (let k = 0; k <= all.length; k++) {
    const r = await spec.open(ctx(0, 1));
    const head = await drain(r, 1, k);
    const pos = r.position() as number;
    t.equal(pos, k === all.length ? Buffer.byteLength(content) : Buffer.byteLength(content.split('\n').slice(0, k).join('\n')) + (k ? 1 : 0), `byte offset after ${k} lines`);
    await r.close();
    const r2 = await spec.open(ctx(0, 1));
    await r2.seek(pos);
    t.same([...head, ...(await drain(r2, 2))], all, `resume after ${k} lines`);
    await r2.close();
  }
  // Resume within a subtask's range at p = 3.
  const lines = Array.from({ length: 200 }, (_, i) => `row-${i}`);
  const p3 = join(dir, 'p3.txt');
  writeFileSync(p3, lines.join('\n'));
  const spec3 = sources.file({ path: p3, chunkBytes: 11 });
  for (let s = 0; s < 3; s++) {
    const wholeReader = await spec3.open(ctx(s, 3));
    const whole = await drain(wholeReader);
    await wholeReader.close();
    const r = await spec3.open(ctx(s, 3));
    const head = await drain(r, 4, 20);
    const r2 = await spec3.open(ctx(s, 3));
    await r2.seek(r.position());
    t.same([...head, ...(await drain(r2, 7))], whole, `p=3 subtask ${s} resumes`);
    t.throws(() => r2.seek(Buffer.byteLength(lines.join('\n')) + 5), { code: 'TIDEPOOL_INPUT' }, 'past the end is refused');
    await r.close();
    await r2.close();
  }
});

t.test('file: missing file, directory, bad options', async (t) => {
  const dir = freshDir();
  const missing = join(dir, 'nope.txt');
  const spec = sources.file({ path: missing });
  let thrown: unknown;
  try {
    spec.validate!();
  } catch (err) {
    thrown = err;
  }
  t.ok(thrown instanceof TidepoolError, 'validate throws a TidepoolError');
  t.equal((thrown as TidepoolError).code, 'TIDEPOOL_INPUT');
  t.equal((thrown as TidepoolError).message, `${missing}: no such file`, 'the message names the path');
  await t.rejects(async () => spec.open(ctx(0, 1)), { code: 'TIDEPOOL_INPUT', message: /no such file/ });
  t.throws(() => sources.file({ path: dir }).validate!(), { code: 'TIDEPOOL_INPUT', message: /directory/ });
  await t.rejects(async () => sources.file({ path: dir }).open(ctx(0, 1)), { code: 'TIDEPOOL_INPUT', message: /directory/ });
  t.throws(() => sources.file({ path: '' }), { code: 'TIDEPOOL_BAD_OPTION', message: /path/ });
  t.throws(() => sources.file({ path: missing, chunkBytes: 0 }), { code: 'TIDEPOOL_BAD_OPTION', message: /chunkBytes/ });
  t.throws(() => sources.file({ path: missing, encoding: 'utf16le' as 'utf8' }), { code: 'TIDEPOOL_BAD_OPTION', message: /encoding/ });
  // Relative paths resolve against the working directory when the source is made.
  const here = process.cwd();
  writeFileSync(join(dir, 'rel.txt'), 'r1\nr2\n');
  process.chdir(dir);
  let rel;
  try {
    rel = sources.file({ path: 'rel.txt' });
    rel.validate!();
  } finally {
    process.chdir(here);
  }
  const relReader = await rel.open(ctx(0, 1));
  t.same(await drain(relReader), ['r1', 'r2']);
  await relReader.close();
  t.throws(() => sources.file({ path: 'surely-missing.txt' }).validate!(), { message: /surely-missing\.txt/ });
});

// ---- file sink ---------------------------------------------------------------------

const read = (path: string) => (existsSync(path) ? readFileSync(path, 'utf8') : undefined);
const jl = (...xs: unknown[]) => xs.map((x) => `${JSON.stringify(x)}\n`).join('');

t.test('file sink: write/prepare/commit publishes exact lines, only at commit', async (t) => {
  const dir = freshDir();
  const path = join(dir, 'sub', 'out.jsonl'); // parent directories are created
  const spec = sinks.file({ path });
  t.equal(spec.type, 'file');
  spec.validate!();
  const w = await spec.open(ctx(0, 1));
  t.equal(read(path), '', 'a fresh run starts with an empty final file');
  await w.write(['a', { n: 1, big: 12345678901234567890n }, [1, 2], null]);
  await w.write([42]);
  t.equal(read(path), '', 'written records are not visible');
  await w.prepare(1);
  t.equal(read(path), '', 'prepared records are not visible');
  t.ok(existsSync(`${path}.epoch-1`), 'prepared epoch file exists');
  t.notOk(existsSync(`${path}.pending-0`), 'pending file was renamed');
  await w.write(['next']); // epoch 2, while epoch 1 awaits its commit
  await w.commit(1);
  const first = jl('a', { n: 1, big: '12345678901234567890' }, [1, 2], null, 42);
  t.equal(read(path), first);
  t.notOk(existsSync(`${path}.epoch-1`), 'epoch file deleted after commit');
  const rec = JSON.parse(read(`${path}.committed`)!) as Record<string, unknown>;
  t.same({ ...rec, crc: undefined }, { epoch: 1, length: Buffer.byteLength(first), history: [{ epoch: 1, length: Buffer.byteLength(first) }], crc: undefined });
  t.type(rec.crc, 'number', 'the commit record carries its checksum');
  await w.prepare(2);
  await w.commit(2);
  t.equal(read(path), first + jl('next'));
  // An empty epoch changes nothing.
  await w.prepare(3);
  await w.commit(3);
  t.equal(read(path), first + jl('next'));
  await w.close();
});

t.test('file sink: commit is idempotent, also across a restart', async (t) => {
  const dir = freshDir();
  const path = join(dir, 'out.jsonl');
  const spec = sinks.file({ path });
  const w = await spec.open(ctx(0, 1));
  await w.write([1, 2, 3]);
  await w.prepare(1);
  await w.commit(1);
  await w.commit(1);
  t.equal(read(path), jl(1, 2, 3));
  await w.close();
  // Crash after the sidecar was written but before the epoch file was deleted.
  writeFileSync(`${path}.epoch-1`, jl(1, 2, 3));
  const w2 = await spec.open(ctx(0, 1));
  t.equal(read(path), jl(1, 2, 3), 'reopening keeps committed output');
  await w2.commit(1);
  t.equal(read(path), jl(1, 2, 3), 're-committing an applied epoch adds nothing');
  t.notOk(existsSync(`${path}.epoch-1`));
  await w2.write([4]);
  await w2.prepare(2);
  await w2.commit(2);
  await w2.commit(2);
  t.equal(read(path), jl(1, 2, 3, 4));
  await w2.close();
});

t.test('file sink: a crash in the middle of an append is repaired on commit', async (t) => {
  const dir = freshDir();
  const path = join(dir, 'out.jsonl');
  const spec = sinks.file({ path });
  const w = await spec.open(ctx(0, 1));
  await w.write(['one', 'two']);
  await w.prepare(1);
  await w.commit(1);
  await w.write(['three', 'four']);
  await w.prepare(2);
  // "Crash": epoch 2 is prepared, its append got half way, the sidecar still says 1.
  appendFileSync(path, '"thr');
  await w.write(['lost']); // never prepared: must not survive the restart
  writeFileSync(`${path}.pending-0`, jl('lost'));
  const restarted = await spec.open(ctx(0, 1));
  t.notOk(existsSync(`${path}.pending-0`), 'pending file of the crashed run deleted on open');
  t.equal(read(path), jl('one', 'two'), 'garbage past the committed length is cut on open');
  appendFileSync(path, 'garbage after the recorded length');
  await restarted.commit(2);
  t.equal(read(path), jl('one', 'two', 'three', 'four'), 'exact lines after repair');
  await restarted.commit(2);
  t.equal(read(path), jl('one', 'two', 'three', 'four'));
  await restarted.close();
  // A final file shorter than its committed length was changed by someone else.
  writeFileSync(path, '"one"\n');
  await t.rejects(async () => spec.open(ctx(0, 1)), { code: 'TIDEPOOL_INPUT', message: /changed outside tidepool/ });
});

t.test('file sink: restart settles epochs an earlier run prepared', async (t) => {
  const dir = freshDir();
  const path = join(dir, 'out.jsonl');
  const spec = sinks.file({ path });
  const w = await spec.open(ctx(0, 1));
  await w.write(['e1']);
  await w.prepare(1);
  await w.write(['e2']);
  await w.prepare(2);
  await w.write(['e3']);
  await w.prepare(3);
  // Crash: checkpoint 2 completed (manifest written), 3 did not; nothing committed yet.
  const r = await spec.open(ctx(0, 1));
  t.equal(read(path), '', 'nothing committed: the final file is empty');
  await r.commit(2); // the runtime re-commits the restored checkpoint
  t.equal(read(path), jl('e1', 'e2'), 'epochs ≤ the restored checkpoint are committed in order');
  t.notOk(existsSync(`${path}.epoch-3`), 'the unfinished epoch is discarded');
  await r.write(['e3 again']);
  await r.prepare(3);
  await r.commit(3);
  t.equal(read(path), jl('e1', 'e2', 'e3 again'));
  await r.close();
  // A run that re-prepares the same epoch id with no records drops the stale file.
  const w2 = await spec.open(ctx(0, 1));
  await w2.write(['stale']);
  await w2.prepare(4);
  const w3 = await spec.open(ctx(0, 1));
  await w3.prepare(4);
  await w3.commit(4);
  t.equal(read(path), jl('e1', 'e2', 'e3 again'), 'stale epoch 4 was replaced by an empty one');
  await w3.close();
});

t.test('file sink: abort, and a commit covering several prepared epochs', async (t) => {
  const dir = freshDir();
  const path = join(dir, 'out.jsonl');
  const w = await sinks.file({ path }).open(ctx(0, 1));
  await w.write(['x']);
  await w.abort!();
  t.notOk(existsSync(`${path}.pending-0`));
  await w.write(['a']);
  await w.prepare(1);
  await w.write(['b']);
  await w.prepare(2); // checkpoint 1's completion never came; 2 subsumes it
  await w.commit(2);
  t.equal(read(path), jl('a', 'b'));
  t.same(JSON.parse(read(`${path}.committed`)!).epoch, 2);
  // Large epochs are written in pieces and copied in chunks.
  const big = Array.from({ length: 40000 }, (_, i) => ({ i, s: 'z'.repeat(40) }));
  for (let k = 0; k < big.length; k += 1000) await w.write(big.slice(k, k + 1000));
  await w.prepare(3);
  await w.commit(3);
  const lines = read(path)!.trimEnd().split('\n');
  t.equal(lines.length, 2 + big.length);
  t.same(JSON.parse(lines[lines.length - 1]!), big[big.length - 1]);
  await w.close();
});

t.test('file sink: p > 1 layout, reset, validation', async (t) => {
  const dir = freshDir();
  const path = join(dir, 'counts.jsonl');
  t.equal(fileSinkPath(path, 0, 1), path);
  t.equal(fileSinkPath(path, 1, 2), join(dir, 'counts-1.jsonl'));
  t.equal(fileSinkPath(join(dir, 'out'), 0, 3), join(dir, 'out-0'));
  t.same(fileSinkPaths(path, 2), [join(dir, 'counts-0.jsonl'), join(dir, 'counts-1.jsonl')]);
  const spec = sinks.file({ path });
  const ws: SinkWriter[] = [];
  for (let i = 0; i < 2; i++) ws.push(await spec.open(ctx(i, 2)));
  await ws[0]!.write(['zero']);
  await ws[1]!.write(['one']);
  for (const w of ws) await w.prepare(1);
  for (const w of ws) await w.commit(1);
  t.equal(read(join(dir, 'counts-0.jsonl')), jl('zero'));
  t.equal(read(join(dir, 'counts-1.jsonl')), jl('one'));
  t.notOk(existsSync(path), 'no unsuffixed file at p=2');
  for (const w of ws) await w.close();
  // A fresh run at p=1 after the p=2 run: reset removes both layouts' files.
  writeFileSync(join(dir, 'counts-1.jsonl.epoch-7'), 'stale');
  writeFileSync(join(dir, 'unrelated-0.jsonl'), 'keep');
  await resetFileSink(path, 1);
  t.same(readdirSync(dir).sort(), ['unrelated-0.jsonl'], 'reset deletes final, sidecar and epoch files of this sink only');
  const w = await spec.open(ctx(0, 1));
  await w.write([{ k: 'v' }]);
  await w.prepare(1);
  await w.commit(1);
  t.equal(read(path), jl({ k: 'v' }));
  await w.close();
  // Without a reset, a new run resumes: the committed epoch is not applied twice.
  const again = await spec.open(ctx(0, 1));
  await again.write([{ k: 'v' }]);
  await again.prepare(1);
  await again.commit(1);
  t.equal(read(path), jl({ k: 'v' }));
  await again.close();
  await resetFileSink(path, 1);
  t.same(readdirSync(dir).sort(), ['unrelated-0.jsonl']);
  await resetFileSink(join(dir, 'nowhere', 'x.jsonl'), 2); // missing directory: nothing to do
  t.throws(() => sinks.file({ path: dir }).validate!(), { code: 'TIDEPOOL_INPUT', message: /directory/ });
  writeFileSync(join(dir, 'afile'), '');
  t.throws(() => sinks.file({ path: join(dir, 'afile', 'x.jsonl') }).validate!(), { code: 'TIDEPOOL_INPUT', message: /not a directory/ });
  t.throws(() => sinks.file({ path: '' }), { code: 'TIDEPOOL_BAD_OPTION', message: /path/ });
  t.equal(sinks.file({ path }).maxParallelism, undefined);
});

// ---- stdout ------------------------------------------------------------------------

t.test('stdout sink: JSON lines at commit, bigints as strings', async (t) => {
  const spec = sinks.stdout();
  t.equal(spec.type, 'stdout');
  t.equal(spec.maxParallelism, 1);
  t.throws(() => sinks.stdout({ x: 1 } as never), { code: 'TIDEPOOL_BAD_OPTION' });
  // Run in a child process: tap itself reports on this process's stdout.
  const script = `
    import { sinks } from ${JSON.stringify(pathToFileURL(join(here, '../src/connectors/index.js')).href)};
    const w = await sinks.stdout().open({ flow: 'f', operator: 'out', subtask: 0, parallelism: 1 });
    await w.write(['hi', { n: 1n }]);
    process.stderr.write('before-commit\\n');
    await w.prepare(1);
    await w.write([3]);
    await w.commit(1);
    process.stderr.write('after-commit-1\\n');
    await w.prepare(2);
    await w.commit(2);
    await w.write(['dropped']);
    await w.abort();
    await w.prepare(3);
    await w.commit(3);
    await w.close();
  `;
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8' });
  t.equal(r.status, 0, r.stderr);
  t.equal(r.stdout, '"hi"\n{"n":"1"}\n3\n');
});
