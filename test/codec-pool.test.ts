// Page compression on the I/O worker's piscina pool (workers/io-codec-pool.ts).
//
// - The pool writes exactly the envelopes the owning thread would: the same workload
//   with codecThreads 2 and 0 leaves byte-identical LMDB pages, for every built-in
//   codec and a custom module, with spilled pages (already envelopes) mixed in.
// - A pool thread that dies or a codec that throws fails the flush with one line
//   (TIDEPOOL_CODEC), the previous flush stays the durable state (checked after a real
//   SIGKILL), and a retry succeeds once the codec behaves.
// - A SIGKILL while pages are in the pool leaves the previous flush.
import t, { type Test } from 'tap';
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { mkdtempSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { unpack } from 'msgpackr';
import { openStore, type CompressionSpec } from '../src/index.js';
import { verifyPage } from '../src/state/page-format.js';
import { openStoreDbs } from './helpers/corrupt.js';
import { isPageKey } from '../src/storage/page-chain.js';
import { CODEC, N, NAME, valueOf } from './fixtures/pool-writer.js';
import { markFile } from './fixtures/faulty-pool-codec.js';

const WRITER = fileURLToPath(new URL('./fixtures/pool-writer.js', import.meta.url));
const XOR = fileURLToPath(new URL('./fixtures/xor-codec.js', import.meta.url));

function tempDir(t: { teardown(fn: () => void): void }): string {
  const dir = mkdtempSync(join(tmpdir(), 'tidepool-pool-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** Every stored page version (whole or delta) and commit record of the store in `dir`, read straight from LMDB. */
async function stored(dir: string): Promise<{ pages: Map<string, Buffer>; commits: { version: number; bytesWritten: number }[] }> {
  const dbs = openStoreDbs(dir);
  try {
    const pages = new Map<string, Buffer>();
    for (const { key, value } of dbs.pages.getRange({})) if (isPageKey(key)) pages.set(JSON.stringify(key), Buffer.from(value));
    // Page deltas (src/storage/page-chain.ts): encoded on the owning thread either way.
    for (const { key, value } of dbs.deltas.getRange({})) pages.set(`delta ${JSON.stringify(key)}`, Buffer.from(value));
    const commits = [...dbs.commitsRaw.getRange({})].map(({ value }) => unpack(value) as { version: number; bytesWritten: number });
    return { pages, commits };
  } finally {
    await dbs.env.close();
  }
}

/**
 * Three flushes — fresh keys, a rewrite of every third, deletes and longer values —
 * applied to the store (if given) and to a Map; returns the Map.
 */
async function workload(dir: string | undefined, compression: CompressionSpec, codecThreads: number): Promise<Map<string, unknown>> {
  const m = new Map<string, unknown>();
  const s = dir === undefined ? undefined : await openStore({ path: dir, name: 'w', pageSize: 1024, cachePages: 12, compression, codecThreads });
  const set = (k: string, v: unknown) => (m.set(k, v), s?.set(k, v));
  for (let i = 0; i < 4000; i++) set(`k${i}`, { i, text: `value ${i} `.repeat(1 + (i % 7)) });
  await s?.flush();
  for (let i = 0; i < 4000; i += 3) set(`k${i}`, { i, second: true });
  await s?.flush();
  for (let i = 0; i < 4000; i += 5) (m.delete(`k${i}`), s?.delete(`k${i}`));
  for (let i = 1; i < 4000; i += 11) set(`k${i}`, 'x'.repeat(200 + (i % 50)));
  await s?.close();
  return m;
}

// [label, compression, its codec id, the share of pages it must shrink]: the xor codec
// shrinks only runs of equal bytes.
const specs: [string, CompressionSpec, number, number][] = [
  ['zstd', 'zstd', 2, 0.5],
  ['lz4', 'lz4', 1, 0.5],
  ['deflate', 'deflate', 3, 0.5],
  ['a custom module', { module: XOR }, 128, 0.1],
];
for (const [label, compression, codecId, share] of specs) {
  t.test(`the pool stores exactly what the owning thread would (${label})`, async (t) => {
    const pooled = join(tempDir(t), 'pooled');
    const inline = join(tempDir(t), 'inline');
    await workload(pooled, compression, 2);
    await workload(inline, compression, 0);
    const a = await stored(pooled);
    const b = await stored(inline);
    t.equal(a.pages.size, b.pages.size, 'the same page versions are stored');
    let same = 0, compressed = 0;
    for (const [k, v] of a.pages) {
      if (b.pages.get(k)?.equals(v)) same++;
      const where = { table: 'w', pageId: 0, version: k };
      if (verifyPage(v, where)[5] === codecId) compressed++;
    }
    t.equal(same, a.pages.size, 'every stored page is byte-identical');
    t.ok(compressed > a.pages.size * share, `pages are stored compressed (${compressed} of ${a.pages.size})`);
    t.same(a.commits.map((c) => c.bytesWritten), b.commits.map((c) => c.bytesWritten), 'the commit records count the same bytes');
    // Reopened with another setting (a custom module's pages need the module).
    const other = typeof compression === 'object' ? compression : 'none';
    const s = await openStore({ path: pooled, name: 'w', cachePages: 12, compression: other, codecThreads: 0 });
    t.teardown(() => s.close());
    const want = await workload(undefined, compression, 0);
    t.equal(s.size, want.size);
    t.same(new Map([...s.entries()] as [string, unknown][]), want, 'every entry reads back');
  });
}

t.test('bytesWritten of a pooled flush is what it stored', async (t) => {
  const dir = tempDir(t);
  const s = await openStore({ path: dir, name: 'w', pageSize: 2048, cachePages: 8, compression: 'zstd', codecThreads: 2 });
  for (let i = 0; i < 3000; i++) s.set(i, 'repetitive '.repeat(8));
  await s.close();
  const { pages, commits } = await stored(dir);
  let sum = 0;
  for (const v of pages.values()) sum += v.length;
  t.equal(commits.length, 1);
  t.equal(commits[0]!.bytesWritten, sum, 'the commit record counts the compressed envelopes');
});

/** Runs pool-writer and returns its stdout lines once it ended (or after `kill` on a line). */
function runWriter(dir: string, mode: string, killOn?: { line: string; afterMs: number }): Promise<{ lines: string[]; signal: string | null; stderr: string }> {
  const child = spawn(process.execPath, [WRITER, dir, mode], { stdio: ['ignore', 'pipe', 'pipe'] });
  const lines: string[] = [];
  let stderr = '';
  createInterface({ input: child.stdout }).on('line', (line) => {
    lines.push(line);
    if (killOn && line === killOn.line) setTimeout(() => child.kill('SIGKILL'), killOn.afterMs);
  });
  child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  // 'close', not 'exit': it comes once stdout has ended, so every line is in `lines`.
  return new Promise((resolve) => child.on('close', (_code, signal) => {
    rmSync(markFile(child.pid), { force: true });
    resolve({ lines, signal, stderr });
  }));
}

async function expectGeneration(t: Test, dir: string, gen: number): Promise<void> {
  const s = await openStore({ path: dir, name: NAME, pageSize: 1024, cachePages: 16, compression: { module: CODEC }, codecThreads: 0 });
  try {
    t.equal(s.size, N, 'every key is there');
    let wrong = 0;
    for (let i = 0; i < N; i++) {
      const v = s.get(i) as { gen?: number; pad?: string } | undefined;
      if (v?.gen !== gen || v.pad !== valueOf(i, gen).pad) wrong++;
    }
    t.equal(wrong, 0, `every value is the one of flush ${gen}`);
  } finally {
    await s.close();
  }
}

for (const [mode, why] of [['exit', /worker exited with code: 7/], ['throw', /the faulty codec refused this page/]] as const) {
  t.test(`a pool thread that ${mode === 'exit' ? 'dies' : 'throws'} fails the flush; the previous flush stays durable`, async (t) => {
    const dir = tempDir(t);
    const run = await runWriter(join(dir, 'state'), mode);
    t.equal(run.lines[0], 'done 1', run.stderr);
    const failed = run.lines.find((l) => l.startsWith('failed '));
    t.ok(failed, `flush 2 failed (${run.lines.join(' | ')})`);
    t.match(failed, /^failed TIDEPOOL_CODEC compression '.*faulty-pool-codec\.js': flush 2 of 'pooled' was not written: compressing pages/);
    t.match(failed, why);
    t.equal(run.signal, 'SIGKILL');
    await expectGeneration(t, join(dir, 'state'), 1);
    const { pages } = await stored(join(dir, 'state'));
    t.notOk([...pages.keys()].some((k) => (JSON.parse(k) as number[])[2] === 2), 'nothing of the failed flush is left after reopening');
  });
}

t.test('after a pool failure the same store retries the flush once the codec behaves', async (t) => {
  const dir = tempDir(t);
  const mark = markFile();
  t.teardown(() => rmSync(mark, { force: true }));
  const s = await openStore({ path: join(dir, 'state'), name: NAME, pageSize: 1024, cachePages: 16, compression: { module: CODEC }, codecThreads: 1 });
  for (let i = 0; i < N; i++) s.set(i, valueOf(i, 1));
  await s.flush();
  for (let i = 0; i < N; i++) s.set(i, valueOf(i, 2));
  for (const mode of ['exit', 'throw']) {
    writeFileSync(mark, mode);
    const err = await s.flush().then(() => undefined, (e: Error) => e);
    t.equal((err as { code?: string } | undefined)?.code, 'TIDEPOOL_CODEC', `flush fails while the codec says ${mode}`);
    t.notMatch(err?.message ?? '', /\n/, 'in one line');
  }
  unlinkSync(mark);
  await s.flush();
  t.same(s.get(5), valueOf(5, 2), 'the store still answers from memory');
  await s.close();
  await expectGeneration(t, join(dir, 'state'), 2);
});

t.test('a SIGKILL while pages are in the pool leaves the previous flush', async (t) => {
  for (const afterMs of [5, 60, 150]) {
    const dir = tempDir(t);
    const run = await runWriter(join(dir, 'state'), 'slow 40', { line: 'begin 2', afterMs });
    t.equal(run.signal, 'SIGKILL');
    t.notOk(run.lines.includes('done 2'), `killed ${afterMs} ms into flush 2, before it completed`);
    await expectGeneration(t, join(dir, 'state'), 1);
  }
});

t.test('codecThreads is checked', async (t) => {
  const dir = tempDir(t);
  for (const bad of [-1, 1.5, 257, '2']) {
    await t.rejects(openStore({ path: dir, codecThreads: bad as number }), { code: 'TIDEPOOL_BAD_OPTION', message: /codecThreads/ }, `codecThreads ${JSON.stringify(bad)}`);
  }
});
