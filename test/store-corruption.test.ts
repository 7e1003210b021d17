// Damaged pages — in LMDB or in the spill file — are TIDEPOOL_CORRUPT_PAGE errors
// naming table, page and version: never a different value, never silence.
//
// Persistent pages are damaged through a direct LMDB handle on the store's directory
// (db 'pages', keys [stateId = store name, pageId, version]); spilled pages by writing
// into `<dir>/<name>.spill` while the store is open. Seeded random damage of these and
// of every other store file: test/store-corruption-fuzz.test.ts.
import t from 'tap';
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync, statSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { isDeepStrictEqual } from 'node:util';
import type { Database, RootDatabase } from 'lmdb';
import { openStoreDbs } from './helpers/corrupt.js';
import { openStore, type CompressionSpec, type Key, type Store } from '../src/index.js';
import { codecResolver, loadCodec } from '../src/state/codecs.js';
import { decodeKey } from '../src/state/keys.js';
import { BRANCH, deserializeNode } from '../src/state/node.js';
import { decodePage, isDeltaEnvelope } from '../src/state/page-format.js';
import { decodeStoredPage } from '../src/state/page-delta.js';
import { readPageChain, type PageDbs } from '../src/storage/page-chain.js';

const NAME = 'orders';
const PAGE_SIZE = 1024;
const N = 400;
const keyOf = (i: number): Key => (i % 2 ? ['order', i] : `order/${String(i).padStart(4, '0')}`);
const valueOf = (i: number, gen: number) => ({ i, gen, note: `order ${i} of generation ${gen} `.repeat(1 + (i % 4)) });

function tempDir(t: { teardown(fn: () => void): void }): string {
  const dir = mkdtempSync(join(tmpdir(), 'tidepool-corrupt-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** The expected contents after writeStore(). */
function expected(): Map<string, unknown> {
  const m = new Map<string, unknown>();
  for (let i = 0; i < N; i++) m.set(JSON.stringify(keyOf(i)), valueOf(i, i % 10 === 0 ? 2 : 1));
  return m;
}

/** Two flushes: every key at version 1, then every 10th rewritten at version 2. */
async function writeStore(dir: string, compression: CompressionSpec): Promise<void> {
  const s = await openStore({ path: dir, name: NAME, pageSize: PAGE_SIZE, cachePages: 8, compression });
  for (let i = 0; i < N; i++) s.set(keyOf(i), valueOf(i, 1));
  await s.flush();
  for (let i = 0; i < N; i += 10) s.set(keyOf(i), valueOf(i, 2));
  await s.close();
}

interface PageInfo {
  id: number;
  version: number;
  bytes: Buffer;
  /** Stores `b` where this version is (the pages database, or the deltas one for a delta). */
  put(b: Buffer): void;
  leaf: boolean;
  codec: number;
  /** Keys held by a leaf, as JSON. */
  keys: string[];
}

function openPages(dir: string): { env: RootDatabase; pages: Database<Buffer, [string, number, number]>; dbs: PageDbs } {
  const dbs = openStoreDbs(dir);
  return { env: dbs.env, pages: dbs.pages, dbs };
}

/** Every stored version of every page: whole ones, and deltas (src/storage/page-chain.ts). */
async function listPages(dbs: PageDbs): Promise<PageInfo[]> {
  const codecFor = codecResolver(await loadCodec('lz4'));
  const out: PageInfo[] = [];
  const info = (id: number, version: number, value: Buffer, put: (b: Buffer) => void): PageInfo => {
    const bytes = Buffer.from(value);
    // A delta version stands for the page as of that version: its whole one below, applied.
    const node = isDeltaEnvelope(bytes)
      ? decodeStoredPage(id, 'data', readPageChain(dbs, NAME, id, version)!, codecFor).node
      : deserializeNode(id, decodePage(bytes, { table: 'data', pageId: id, version }, codecFor));
    return {
      id, version, bytes, put, leaf: node.kind !== BRANCH, codec: bytes[5]!,
      keys: node.kind === BRANCH ? [] : node.keys.map((k) => JSON.stringify(decodeKey(k))),
    };
  };
  for (const { key, value } of dbs.pages.getRange({ start: [NAME, -1, 0], end: [NAME, Number.MAX_SAFE_INTEGER, 0] })) {
    const [, id, version] = key;
    out.push(info(id, version, value, (b) => dbs.pages.putSync([NAME, id, version], b)));
  }
  for (const { key, value } of dbs.deltas.getRange({ start: [NAME, -1], end: [NAME, Number.MAX_SAFE_INTEGER] })) {
    const [, version, id] = key;
    out.push(info(id, version, value, (b) => dbs.deltas.putSync([NAME, version, id], b)));
  }
  return out;
}

const corruptAt = (p: PageInfo) => ({ code: 'TIDEPOOL_CORRUPT_PAGE', message: `table 'data', page ${p.id}, version ${p.version}:` });

/** Reads every key and the whole iteration; returns what happened, checking no value is wrong. */
function readAll(t: Tap, s: Store, want: Map<string, unknown>, label: string): { errors: (Error & { code?: string })[]; failedKeys: Set<string>; wrong: number } {
  const errors: (Error & { code?: string })[] = [];
  const failedKeys = new Set<string>();
  let wrong = 0;
  for (let i = 0; i < N; i++) {
    const k = JSON.stringify(keyOf(i));
    try {
      const v = s.get(keyOf(i));
      if (!isDeepStrictEqual(v, want.get(k))) {
        wrong++;
        t.fail(`${label}: get(${k}) returned ${JSON.stringify(v)}, expected ${JSON.stringify(want.get(k))}`);
      }
    } catch (e) {
      errors.push(e as Error);
      failedKeys.add(k);
    }
  }
  try {
    let j = 0;
    for (const [k, v] of s.entries()) {
      const ks = JSON.stringify(k);
      if (!isDeepStrictEqual(v, want.get(ks))) {
        wrong++;
        t.fail(`${label}: entry #${j} ${ks} has value ${JSON.stringify(v)}, expected ${JSON.stringify(want.get(ks))}`);
      }
      j++;
    }
  } catch (e) {
    errors.push(e as Error);
  }
  return { errors, failedKeys, wrong };
}
type Tap = { fail(msg: string): boolean };

for (const compression of ['none', 'lz4'] as const) {
  t.test(`a damaged persistent page is a corrupt-page error (${compression})`, async (t) => {
    const dir = tempDir(t);
    await writeStore(dir, compression);
    const want = expected();
    const { env, dbs } = openPages(dir);
    t.teardown(() => env.close());
    const all = await listPages(dbs);
    const leaves = all.filter((p) => p.leaf);
    const v2 = leaves.find((p) => p.version === 2 && p.keys.length > 3);
    const v1 = leaves.find((p) => p.version === 1 && p.keys.length > 3);
    const branch = all.find((p) => !p.leaf);
    if (!v2 || !v1 || !branch) throw new Error('store shape: expected leaves at versions 1 and 2 and a branch');
    if (compression === 'lz4') t.ok(all.some((p) => p.codec === 1), 'some pages are stored lz4-compressed');

    for (const page of [v2, v1, branch]) {
      const len = page.bytes.length;
      // header: magic, format version, codec, flags, raw length, stored length, reserved, crc; then payload
      const damages: [string, (b: Buffer) => Buffer][] = [0, 4, 5, 6, 9, 12, 16, 20, 23, 24, 25, len >> 1, len - 1].map(
        (pos, n) => [`byte ${pos} ^ 0x${(1 << (n % 8)).toString(16)}`, (b) => { const c = Buffer.from(b); c[pos]! ^= 1 << (n % 8); return c; }],
      );
      damages.push(['truncated by one byte', (b) => b.subarray(0, b.length - 1)], ['one byte appended', (b) => Buffer.concat([b, Buffer.from([0])])], ['empty', () => Buffer.alloc(0)]);
      for (const [what, damage] of damages) {
        const label = `${page.leaf ? 'leaf' : 'branch'} page ${page.id} v${page.version}, ${what}`;
        page.put(damage(page.bytes));
        const s = await openStore({ path: dir, name: NAME, pageSize: PAGE_SIZE, cachePages: 4 });
        const { errors, failedKeys } = readAll(t, s, want, label);
        t.ok(errors.length > 0, `${label}: reading the store fails`);
        t.match(errors[0], corruptAt(page), `${label}: error names table, page and version`);
        const others = errors.filter((e) => e.code !== 'TIDEPOOL_CORRUPT_PAGE' || e.message !== errors[0]!.message).map((e) => e.message);
        t.same(others, [], `${label}: every failure is that same error`);
        if (page.leaf) {
          t.same([...failedKeys].sort(), [...page.keys].sort(), `${label}: exactly the keys of that page fail`);
        } else {
          t.ok(failedKeys.size >= page.keys.length, `${label}: the keys under that branch fail`);
        }
        await s.close();
        page.put(page.bytes);
      }
    }
    // Nothing the failed reads did damaged the store.
    const s = await openStore({ path: dir, name: NAME, pageSize: PAGE_SIZE, cachePages: 4 });
    const { errors, wrong } = readAll(t, s, want, 'restored');
    t.equal(errors.length + wrong, 0, 'with the bytes restored every read is right again');
    t.equal(s.size, N);
    await s.close();
  });
}

t.test('every single flipped byte of a leaf page is detected, never read as a value', async (t) => {
  const dir = tempDir(t);
  await writeStore(dir, 'none');
  const want = expected();
  const { env, dbs } = openPages(dir);
  t.teardown(() => env.close());
  // Another store in the same directory keeps the environment open in the I/O worker
  // between the many opens below (each would otherwise reopen it).
  const keeper = await openStore({ path: dir, name: 'keeper' });
  t.teardown(() => keeper.close());
  const page = (await listPages(dbs)).filter((p) => p.leaf).sort((a, b) => b.bytes.length - a.bytes.length)[0]!;
  const keys = page.keys.map((k) => JSON.parse(k) as Key);
  let detected = 0;
  const misses: string[] = [];
  for (let pos = 0; pos < page.bytes.length; pos++) {
    const bad = Buffer.from(page.bytes);
    bad[pos]! ^= pos % 3 === 0 ? 0xff : 1 << (pos % 8);
    page.put(bad);
    const s = await openStore({ path: dir, name: NAME, pageSize: PAGE_SIZE, cachePages: 4 });
    for (const k of keys) {
      try {
        const v = s.get(k);
        misses.push(`byte ${pos}: get(${JSON.stringify(k)}) returned ${isDeepStrictEqual(v, want.get(JSON.stringify(k))) ? 'the right' : 'a WRONG'} value`);
      } catch (e) {
        if ((e as { code?: string }).code === 'TIDEPOOL_CORRUPT_PAGE' && (e as Error).message.includes(`page ${page.id}, version ${page.version}`)) detected++;
        else misses.push(`byte ${pos}: ${(e as Error).message}`);
      }
    }
    await s.close();
  }
  page.put(page.bytes);
  t.same(misses.slice(0, 20), [], `no read of the damaged page returned a value (${misses.length} did)`);
  t.equal(detected, page.bytes.length * keys.length, `all ${page.bytes.length} positions × ${keys.length} keys detected`);
});

// ------------------------------------------------------------------ spill file

/** Keys 0..n-1 in a scrambled order, so that spilled pages are reloaded and re-spilled. */
const scrambled = (n: number) => Array.from({ length: n }, (_, i) => (i * 7919) % n);

t.test('a damaged spill file is a corrupt-page error, never a value', async (t) => {
  const dir = tempDir(t);
  const s = await openStore({ path: dir, name: NAME, pageSize: PAGE_SIZE, cachePages: 4 });
  t.teardown(() => s.close().catch(() => undefined));
  for (let i = 0; i < 2000; i++) s.set(['base', i], i); // durable base
  await s.flush();
  const want = new Map<string, unknown>();
  for (const i of scrambled(1500)) {
    s.set(keyOf(i), valueOf(i, 3));
    want.set(JSON.stringify(keyOf(i)), valueOf(i, 3));
  }
  t.ok(s.stats.spilledPages > 20, `pages were spilled (${s.stats.spilledPages})`);
  const spill = join(dir, `${NAME}.spill`);
  const size = statSync(spill).size;
  // Damage every third 4 KiB block (each spilled page starts at a block), in the
  // header or the payload.
  const fd = openSync(spill, 'r+');
  const bytes = readFileSync(spill);
  for (let block = 1; block * 4096 < size; block += 3) {
    const pos = block * 4096 + [0, 8, 12, 20, 30, 100][block % 6]!;
    if (pos >= size) continue;
    writeSync(fd, Buffer.from([bytes[pos]! ^ 0x24]), 0, 1, pos);
  }
  closeSync(fd);

  let errors = 0;
  const wrong: string[] = [];
  const otherErrors: string[] = [];
  for (const i of scrambled(1500)) {
    const k = keyOf(i);
    try {
      const v = s.get(k);
      if (!isDeepStrictEqual(v, want.get(JSON.stringify(k)))) wrong.push(`get(${JSON.stringify(k)}) = ${JSON.stringify(v)}`);
    } catch (e) {
      errors++;
      const m = e as Error & { code?: string };
      if (m.code !== 'TIDEPOOL_CORRUPT_PAGE' || !/table 'data', page \d+, version spill: /.test(m.message)) otherErrors.push(`${m.code}: ${m.message}`);
    }
  }
  t.same(wrong, [], 'no read returned a wrong value');
  t.same(otherErrors.slice(0, 5), [], 'every failure is a corrupt-page error naming table, page and the spill file');
  t.ok(errors > 0, `reads of damaged spilled pages fail (${errors})`);
  // Keys of the durable base are right, or fail if their path runs through a damaged
  // spilled branch page.
  let baseErrors = 0;
  for (let i = 0; i < 2000; i += 7) {
    try {
      if (s.get(['base', i]) !== i) wrong.push(`get(['base', ${i}]) = ${JSON.stringify(s.get(['base', i]))}`);
    } catch (e) {
      baseErrors++;
      if ((e as { code?: string }).code !== 'TIDEPOOL_CORRUPT_PAGE') otherErrors.push((e as Error).message);
    }
  }
  t.same(wrong, [], 'no read of the base returned a wrong value');
  t.same(otherErrors.slice(0, 5), [], 'and failures are corrupt-page errors');
  t.comment(`${errors} of 1500 new keys and ${baseErrors} of 286 base keys failed`);
});

// A damaged spill file must fail the flush (the engine verifies spilled pages before
// persisting them), leaving the last good flush as the durable state.

t.test('flush refuses to persist a damaged spilled page', async (t) => {
  const dir = tempDir(t);
  let s = await openStore({ path: dir, name: NAME, pageSize: PAGE_SIZE, cachePages: 4 });
  for (let i = 0; i < 300; i++) s.set(['base', i], i);
  await s.flush();
  for (const i of scrambled(1500)) s.set(keyOf(i), valueOf(i, 3));
  t.ok(s.stats.spilledPages > 20, 'pages were spilled');
  const spill = join(dir, `${NAME}.spill`);
  const fd = openSync(spill, 'r+');
  for (let block = 0; block * 4096 < statSync(spill).size; block++) writeSync(fd, Buffer.from([0xee]), 0, 1, block * 4096 + 40);
  closeSync(fd);
  const flushed = await s.flush().then(() => undefined, (e: Error) => e);
  t.match(flushed, { code: 'TIDEPOOL_CORRUPT_PAGE', message: /version spill/ }, 'flush fails instead of committing damaged pages');
  await s.close().catch(() => undefined);
  s = await openStore({ path: dir, name: NAME, pageSize: PAGE_SIZE, cachePages: 4 });
  try {
    let ok = 0;
    let error = '';
    try {
      for (let i = 0; i < 300; i++) if (s.get(['base', i]) === i) ok++;
      for (const [k] of s.entries()) if (!Array.isArray(k) || k[0] !== 'base') error = `unexpected key ${JSON.stringify(k)}`;
    } catch (e) {
      error = (e as Error).message;
    }
    t.same({ size: s.size, ok, error }, { size: 300, ok: 300, error: '' }, 'the store reopens at the last good flush, readable');
  } finally {
    await s.close();
  }
});
