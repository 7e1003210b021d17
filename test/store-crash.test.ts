// Crash consistency of the embedded store under real SIGKILLs.
//
// A child (fixtures/crash-writer) runs a deterministic workload on one store directory
// and flushes after every batch, announcing "begin N" before and "done N" after each
// flush. The parent kills it at a random moment — during startup and recovery, between
// flushes, or right inside a flush — reopens the store and checks that it holds exactly
// the state after the last completed flush or after the one in flight: every key,
// value, `size`, has/get and the iteration order both ways. The next round continues
// from whichever state was found, on the same directory, with another workload seed. At the end the directory
// must hold one version of every live page and nothing unreachable (GC works), one
// commit record and no spill file; rewriting the live set 40 more times on it must not
// grow data.mdb.
import t from 'tap';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { isDeepStrictEqual } from 'node:util';
import { open, type Database, type RootDatabase } from 'lmdb';
import { openStore, type Key, type Store } from '../src/index.js';
import { isDeltaEnvelope } from '../src/state/page-format.js';
import { DELTA_CHAIN_MAX, decodeStoredPage } from '../src/state/page-delta.js';
import { headsOf, openPageDbs, readPageChain } from '../src/storage/page-chain.js';
import { BRANCH } from '../src/state/node.js';
import { codecResolver, loadCodec } from '../src/state/codecs.js';
import { KEYSPACE, applyToModel, batchOps, keyOf, mix, rng, type Model } from './fixtures/crash-writer.js';

const FIXTURE = fileURLToPath(new URL('./fixtures/crash-writer.js', import.meta.url));
const SEED = Number(process.env.TIDEPOOL_CRASH_SEED ?? 0x7ea9001);
const ROUNDS = Number(process.env.TIDEPOOL_CRASH_ROUNDS ?? 20); // npm run soak: 200
const NAME = 'crashy';
const PAGE_SIZE = 1024;

// ------------------------------------------------------------- expected order
// An independent statement of the contract's key order (not the encoder's):
// booleans < numbers < bigints < strings (UTF-8 bytes) < byte arrays < tuples.
const rank = (k: Key): number =>
  typeof k === 'boolean' ? 0 : typeof k === 'number' ? 1 : typeof k === 'bigint' ? 2 : typeof k === 'string' ? 3 : k instanceof Uint8Array ? 4 : 5;
function compareKeys(a: Key, b: Key): number {
  const ra = rank(a), rb = rank(b);
  if (ra !== rb) return ra - rb;
  if (typeof a === 'number' || typeof a === 'bigint' || typeof a === 'boolean') return a < (b as typeof a) ? -1 : a > (b as typeof a) ? 1 : 0;
  if (typeof a === 'string') return Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b as string, 'utf8'));
  if (a instanceof Uint8Array) return Buffer.compare(a, b as Uint8Array);
  const x = a as readonly Key[], y = b as readonly Key[];
  for (let i = 0; i < Math.min(x.length, y.length); i++) {
    const c = compareKeys(x[i]!, y[i]!);
    if (c !== 0) return c;
  }
  return x.length - y.length;
}
const ORDER = Array.from({ length: KEYSPACE }, (_, i) => i).sort((a, b) => compareKeys(keyOf(a), keyOf(b)));

/** null if the store holds exactly `m`, else a description of the first difference. */
function diff(s: Store, m: Model): string | null {
  if (s.size !== m.size) return `size ${s.size}, expected ${m.size}`;
  const want = ORDER.filter((i) => m.has(i));
  const got = [...s.entries()];
  if (got.length !== want.length) return `entries() yields ${got.length} entries, expected ${want.length}`;
  for (let j = 0; j < want.length; j++) {
    const i = want[j]!;
    if (!isDeepStrictEqual(got[j]![0], keyOf(i))) return `entry #${j}: key ${JSON.stringify(got[j]![0])}, expected ${JSON.stringify(keyOf(i))}`;
    if (!isDeepStrictEqual(got[j]![1], m.get(i))) return `entry #${j} (${JSON.stringify(keyOf(i))}): value ${JSON.stringify(got[j]![1])}, expected ${JSON.stringify(m.get(i))}`;
  }
  const rev = [...s.keys({ reverse: true })];
  if (!isDeepStrictEqual(rev, want.map(keyOf).reverse())) return 'keys({ reverse: true }) is not the reverse key order';
  for (let i = 0; i < KEYSPACE; i++) {
    const k = keyOf(i);
    if (s.has(k) !== m.has(i)) return `has(${JSON.stringify(k)}) is ${s.has(k)}`;
    if (!isDeepStrictEqual(s.get(k), m.get(i))) return `get(${JSON.stringify(k)}) is ${JSON.stringify(s.get(k))}, expected ${JSON.stringify(m.get(i))}`;
  }
  return null;
}

// ------------------------------------------------------------- the child
type Strategy = 'startup' | 'timer' | 'flush';
interface Outcome {
  lastDone: number;
  lastBegin: number;
  ready: boolean;
  code: number | null;
  signal: NodeJS.Signals | null;
  stderr: string;
  killedInFlush: boolean;
}

function runChild(dir: string, seed: number, start: number, compression: string, cachePages: number, strategy: Strategy, r: () => number): Promise<Outcome> {
  const child = spawn(process.execPath, [FIXTURE, dir, NAME, String(seed), String(start), compression, String(cachePages), String(PAGE_SIZE)], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const o: Outcome = { lastDone: start, lastBegin: start, ready: false, code: null, signal: null, stderr: '', killedInFlush: false };
  let killed = false;
  const kill = () => {
    if (killed) return;
    killed = true;
    o.killedInFlush = o.lastBegin > o.lastDone;
    child.kill('SIGKILL');
  };
  const timers: NodeJS.Timeout[] = [];
  const after = (ms: number) => timers.push(setTimeout(kill, ms));
  // Kill in the middle of flush `target`: right when its "begin" arrives, or a few ms
  // later. Mostly a big flush (hundreds of pages, several LMDB transactions), so that
  // the kill can leave a part of it on disk for recovery to discard.
  let target = start + 1 + Math.floor(r() * 4);
  if (r() < 0.9) {
    for (let b = start + 1; b <= start + 20; b++) {
      if (batchOps(seed, b).length > 500) {
        target = b;
        break;
      }
    }
  }
  const flushDelay = r() < 0.3 ? 0 : Math.floor(r() * 10); // a big flush takes ~5-30 ms
  if (strategy === 'startup') after(20 + Math.floor(r() * 150));
  const readyDelay = 20 + Math.floor(r() * 380);
  timers.push(setTimeout(kill, 30_000)); // never hang the suite
  let buf = '';
  child.stdout!.setEncoding('utf8');
  child.stdout!.on('data', (d: string) => {
    buf += d;
    let nl;
    while ((nl = buf.indexOf('\n')) >= 0) {
      const [what, n] = buf.slice(0, nl).split(' ');
      buf = buf.slice(nl + 1);
      if (what === 'ready') {
        o.ready = true;
        if (strategy === 'timer') after(readyDelay);
      } else if (what === 'begin') {
        o.lastBegin = Number(n);
        if (strategy === 'flush' && o.lastBegin >= target) {
          if (flushDelay === 0) kill();
          else after(flushDelay);
        }
      } else if (what === 'done') {
        o.lastDone = Number(n);
      }
    }
  });
  child.stderr!.setEncoding('utf8');
  child.stderr!.on('data', (d: string) => (o.stderr += d));
  return new Promise((resolve) => {
    child.on('close', (code, signal) => {
      for (const tm of timers) clearTimeout(tm);
      o.code = code;
      o.signal = signal;
      resolve(o);
    });
  });
}

/** The dead writer's databases in `dir`: its page keys and newest commit record, closed after `fn`. */
async function withDatabases<T>(dir: string, fn: (db: { env: RootDatabase; pages: Database<Buffer, [string, number, number]>; lastCommit: number; pageKeys: () => Iterable<[string, number, number]> }) => T | Promise<T>): Promise<T> {
  const env = open({ path: dir, maxDbs: 8 });
  try {
    const dbs = openPageDbs(env);
    const { pages } = dbs;
    const commits = env.openDB<unknown, [string, number]>({ name: 'commits', encoding: 'msgpack', keyEncoding: 'ordered-binary' });
    let lastCommit = 0;
    for (const k of commits.getKeys({ start: [NAME, 0], end: [NAME, Number.MAX_SAFE_INTEGER] })) lastCommit = Math.max(lastCommit, k[1]);
    const pageKeys = () => pages.getKeys({ start: [NAME, -1, 0], end: [NAME, Number.MAX_SAFE_INTEGER, 0] }) as Iterable<[string, number, number]>;
    return await fn({ env, pages, lastCommit, pageKeys });
  } finally {
    await env.close();
  }
}

/** Pages stored with a version newer than the last commit record (a cut-off flush). */
async function cutOffPages(dir: string): Promise<number> {
  if (!existsSync(join(dir, 'data.mdb'))) return 0;
  return withDatabases(dir, ({ lastCommit, pageKeys }) => {
    let n = 0;
    for (const k of pageKeys()) if (k[2] > lastCommit) n++;
    return n;
  });
}

/**
 * Makes the state a kill between a flush's page writes and its commit record leaves:
 * the attempts record names a version newer than every stored one (written first, as
 * the I/O worker does), and copies of `count` stored pages are stored under it. A real
 * kill lands in that window only now and then (1 or 2 rounds in 20 on this machine), so
 * one round builds it by hand and recovery must delete it like any other cut-off flush.
 */
function injectCutOffPages(dir: string, count: number): Promise<number> {
  return withDatabases(dir, async ({ env, pages, lastCommit, pageKeys }) => {
    let newest = lastCommit;
    const some: [string, number, number][] = [];
    for (const k of pageKeys()) {
      newest = Math.max(newest, k[2]);
      if (some.length < count) some.push(k);
    }
    const attempts = env.openDB<number, string>({ name: 'attempts', encoding: 'msgpack', keyEncoding: 'ordered-binary' });
    await attempts.put(NAME, newest + 1);
    env.transactionSync(() => {
      for (const k of some) pages.put([NAME, k[1], newest + 1], pages.get(k)!);
    });
    return some.length;
  });
}

// ------------------------------------------------------------- the loop
t.test(`SIGKILL loop: ${ROUNDS} rounds on one directory (seed ${SEED})`, async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'tidepool-crash-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const spillPath = join(dir, `${NAME}.spill`);

  let at = 0; // the batch whose state the store holds
  const model: Model = new Map();
  /** The model after batches at+1..n of workload `seed`, without touching `model`. */
  const modelAt = (seed: number, n: number): Model => {
    const m = new Map(model);
    for (let b = at + 1; b <= n; b++) applyToModel(m, batchOps(seed, b));
    return m;
  };
  const INJECT_ROUND = Math.min(2, ROUNDS - 1);
  const tally = { cutOff: 0, injected: 0, withCutOff: 0, cleaned: 0, inFlush: 0, foundNew: 0, foundOld: 0, beforeReady: 0, spillLeft: 0, batches: 0 };
  const fileSizes: number[] = [];
  const strategies: Strategy[] = ['flush', 'timer', 'flush', 'startup', 'flush', 'flush'];

  for (let round = 0; round < ROUNDS; round++) {
    const r = rng(mix(SEED, 1_000_000 + round));
    // zstd rounds have their pages compressed in the codec pool (codecThreads defaults
    // to the number of cores), so kills inside a flush also land in pooled work; lz4
    // rounds compress on the writer's thread (its default).
    const compression = round % 3 !== 1 ? 'none' : round % 2 ? 'lz4' : 'zstd';
    const cachePages = [16, 8, 32][round % 3]!;
    const strategy = strategies[round % strategies.length]!;
    // Every round runs a different workload from where the last one stopped, so a
    // flush cut off by a crash is redone with other pages and other contents: leftovers
    // of the cut-off attempt cannot hide behind an identical rewrite.
    const seed = mix(SEED, round + 1);
    const o = await runChild(dir, seed, at, compression, cachePages, strategy, r);
    const label = `round ${round} (${strategy}, ${compression}, cache ${cachePages}, from batch ${at}, done ${o.lastDone}, begun ${o.lastBegin})`;
    if (o.signal !== 'SIGKILL') {
      t.fail(`${label}: the writer did not die by SIGKILL (code ${o.code}, signal ${o.signal})`, { stderr: o.stderr });
      return;
    }
    if (o.stderr.trim()) t.fail(`${label}: the writer wrote to stderr`, { stderr: o.stderr });
    if (o.killedInFlush) tally.inFlush++;
    if (!o.ready) tally.beforeReady++;
    tally.batches += o.lastDone - at;
    if (existsSync(spillPath) && statSync(spillPath).size > 0) tally.spillLeft++;

    // Before recovery: did the kill leave pages of a flush that never committed?
    let cutOff = await cutOffPages(dir);
    if (cutOff > 0) tally.cutOff++;
    if (round === INJECT_ROUND) {
      const n = await injectCutOffPages(dir, 5);
      t.ok(n > 0, `${label}: pages of a cut-off flush made by hand (${n})`);
      cutOff += n;
      tally.injected++;
    }
    if (cutOff > 0) tally.withCutOff++;
    fileSizes.push(existsSync(join(dir, 'data.mdb')) ? statSync(join(dir, 'data.mdb')).size : 0);

    // Reopen with other options than the writer used: another cache size and codec.
    let s: Store;
    try {
      s = await openStore({ path: dir, name: NAME, pageSize: PAGE_SIZE, cachePages: 8, compression: compression === 'lz4' ? 'none' : 'lz4' });
    } catch (e) {
      t.fail(`${label}: reopening failed: ${(e as Error).message}`);
      return;
    }
    // A spill file left by the dead writer is scratch: truncated on open, never read.
    t.equal(existsSync(spillPath) ? statSync(spillPath).size : 0, 0, `${label}: spill file is empty after reopening`);
    let found: number | undefined;
    let why = '';
    try {
      const old = modelAt(seed, o.lastDone);
      const d1 = diff(s, old);
      if (d1 === null) {
        found = o.lastDone;
      } else if (o.lastBegin > o.lastDone) {
        const d2 = diff(s, modelAt(seed, o.lastBegin));
        if (d2 === null) found = o.lastBegin;
        else why = `not batch ${o.lastDone} (${d1}) and not batch ${o.lastBegin} (${d2})`;
      } else {
        why = `not batch ${o.lastDone}: ${d1}`;
      }
    } catch (e) {
      why = `reading threw ${(e as Error).stack}`;
    }
    await s.close();
    // Recovery (the attach) deletes every page of the cut-off flush (rule 4), even
    // though this reopen wrote nothing: none may be left for a later flush to expose.
    const left = await cutOffPages(dir);
    if (left !== 0) t.fail(`${label}: ${left} of ${cutOff} pages of the cut-off flush are still stored after recovery`);
    else if (cutOff > 0) tally.cleaned++;
    if (found === undefined) {
      t.fail(`${label}: the store holds neither the last completed nor the in-flight flush: ${why}`);
      return;
    }
    t.ok(true, `${label}: found batch ${found}`);
    if (found > o.lastDone) tally.foundNew++;
    else if (o.lastBegin > o.lastDone) tally.foundOld++;
    for (let b = at + 1; b <= found; b++) applyToModel(model, batchOps(seed, b));
    at = found;
    t.notOk(existsSync(spillPath), `${label}: no spill file after close`);
  }

  t.comment(`tally: ${JSON.stringify(tally)}; final batch ${at}, ${model.size} keys`);
  t.comment(`data.mdb KiB per round: ${fileSizes.map((n) => n >> 10).join(' ')}`);
  // The test must actually have crashed flushes, and made progress.
  t.ok(tally.inFlush >= Math.floor(ROUNDS / 4), `at least a quarter of the kills hit a flush in progress (${tally.inFlush})`);
  t.ok(at >= ROUNDS, `the workload progressed (${at} batches)`);
  // And what the tally counts: rounds that left pages of an unfinished flush on disk
  // (by a kill, how many depends on timing, or by hand in one round), each of them
  // cleaned up by the reopen that followed.
  t.comment(`kills that left pages of a cut-off flush: ${tally.cutOff}`);
  t.ok(tally.injected === 1 || ROUNDS < 1, 'one round had pages of a cut-off flush made by hand');
  t.equal(tally.cleaned, tally.withCutOff, `every round with a cut-off flush was cleaned up by recovery (${tally.cleaned})`);

  // ----------------------------------------------------------- GC: nothing grows
  const env = open({ path: dir, maxDbs: 8 });
  try {
    const dbs = openPageDbs(env);
    const { pages } = dbs;
    const commits = env.openDB<Record<string, unknown>, [string, number]>({ name: 'commits', encoding: 'msgpack', keyEncoding: 'ordered-binary' });
    const commitKeys = [...commits.getKeys({ start: [NAME, 0], end: [NAME, Number.MAX_SAFE_INTEGER] })];
    t.equal(commitKeys.length, 1, 'exactly one commit record is retained (retain 1)');
    const last = commits.get(commitKeys[commitKeys.length - 1]!) as { version: number; tables: Record<string, { root: number; size: number }> };
    const versions = new Map<number, number[]>();
    let storedBytes = 0;
    const newer: string[] = [];
    for (const { key, value } of pages.getRange({ start: [NAME, -1, 0], end: [NAME, Number.MAX_SAFE_INTEGER, 0] })) {
      const [, id, v] = key;
      if (!versions.has(id)) versions.set(id, []);
      versions.get(id)!.push(v);
      storedBytes += value.length;
      if (v > last.version) newer.push(`page ${id} version ${v}`);
    }
    t.same(newer, [], `no page version is newer than the last commit ${last.version}`);
    const multi = [...versions].filter(([, vs]) => vs.length > 1);
    t.same(multi, [], 'every stored page has exactly one whole version (older ones were collected)');
    // Above it, the deltas stored since (src/storage/page-chain.ts): each listed by the
    // page's head, none at or below the whole version, none newer than the last commit.
    const heads = headsOf(dbs, NAME);
    const badDeltas: string[] = [];
    let deltaCount = 0;
    for (const { key, value } of dbs.deltas.getRange({ start: [NAME, -1], end: [NAME, Number.MAX_SAFE_INTEGER] })) {
      const [, v, id] = key as [string, number, number];
      deltaCount++;
      storedBytes += value.length;
      const whole = versions.get(id)?.[0];
      if (!isDeltaEnvelope(value) || whole === undefined || v <= whole || v > last.version || !heads.get(id)?.includes(v)) badDeltas.push(`page ${id} delta ${v} (whole ${whole})`);
    }
    t.same(badDeltas, [], 'every stored delta is above its page\'s whole version, listed in its head, not newer than the last commit');
    const listedAbove = [...heads].reduce((n, [id, vs]) => n + vs.filter((v) => v > (versions.get(id)?.[0] ?? Infinity)).length, 0);
    t.equal(listedAbove, deltaCount, 'the heads list exactly the stored deltas above the whole versions');
    t.ok([...heads.values()].every((vs) => vs.length <= 2 * (DELTA_CHAIN_MAX + 1)), 'heads stay within a chain (and stale entries below the whole version, which the next GC drops)');
    t.comment(`deltas stored above whole versions: ${deltaCount}, on ${heads.size} pages`);

    // Walk the tree from the committed root: stored pages == reachable pages.
    const codec = await loadCodec('none');
    const codecFor = codecResolver(codec);
    const reachable = new Set<number>();
    const stack = Object.values(last.tables).map((tb) => tb.root);
    while (stack.length) {
      const id = stack.pop()!;
      reachable.add(id);
      const vs = versions.get(id);
      if (!vs) continue; // reported below
      const { node } = decodeStoredPage(id, 'data', readPageChain(dbs, NAME, id, last.version)!, codecFor);
      if (node.kind === BRANCH) stack.push(...node.children);
    }
    const stored = new Set(versions.keys());
    t.same([...reachable].filter((id) => !stored.has(id)), [], 'every reachable page is stored');
    t.same([...stored].filter((id) => !reachable.has(id)), [], 'no stored page is unreachable (no leaked pages)');
    t.comment(`${stored.size} pages, ${storedBytes} page bytes, data.mdb ${statSync(join(dir, 'data.mdb')).size} bytes after ${at} batches`);
  } finally {
    await env.close();
  }

  // Steady state on the recovered directory: rewriting the same live set over and over
  // must not grow data.mdb — old versions are deleted and LMDB reuses their space.
  // Without GC every flush would add about the whole live set (~700 KiB) to the file.
  const s = await openStore({ path: dir, name: NAME, pageSize: PAGE_SIZE, cachePages: 8 });
  const sizes: number[] = [];
  for (let f = 1; f <= 40; f++) {
    for (let i = 0; i < KEYSPACE; i++) s.set(keyOf(i), { f, i, pad: 'p'.repeat(150 + (i % 50)) });
    await s.flush();
    sizes.push(statSync(join(dir, 'data.mdb')).size);
  }
  await s.close();
  t.comment(`steady state, data.mdb KiB after each flush: ${sizes.map((n) => n >> 10).join(' ')}`);
  // (GC'd runs: +0–2 MiB over the last 25 rewrites, from freelist fragmentation; no GC: +17 MiB.)
  const growth = sizes[39]! - sizes[14]!;
  t.ok(growth <= Math.max(4 << 20, sizes[14]! / 2), `data.mdb stops growing: ${sizes[14]} bytes after 15 rewrites, ${sizes[39]} after 40`);
  t.notOk(existsSync(spillPath), 'no spill file is left');
});
