// Shared pieces of the corruption tests: the store's LMDB databases opened directly
// (as the I/O worker opens them), seeded damage to a byte string, and a reader that
// reads every key of a store against a model and sorts what happened into "right",
// "a TIDEPOOL_CORRUPT_* error" and everything else.
import { isDeepStrictEqual } from 'node:util';
import { open, type Database, type RootDatabase } from 'lmdb';
import type { Store } from '../../src/index.js';
import { openPageDbs, type PageDbs } from '../../src/storage/page-chain.js';

export interface StoreDbs extends PageDbs {
  env: RootDatabase;
  /** Commit records as their raw msgpack bytes. */
  commitsRaw: Database<Buffer, [string, number]>;
  attemptsRaw: Database<Buffer, string>;
}

export function openStoreDbs(dir: string): StoreDbs {
  const env = open({ path: dir, maxDbs: 8, noSubdir: false, compression: false });
  return {
    env,
    ...openPageDbs(env),
    commitsRaw: env.openDB<Buffer, [string, number]>({ name: 'commits', encoding: 'binary', keyEncoding: 'ordered-binary' }),
    attemptsRaw: env.openDB<Buffer, string>({ name: 'attempts', encoding: 'binary', keyEncoding: 'ordered-binary' }),
  };
}

const pick = (r: () => number, n: number) => Math.floor(r() * n);

/**
 * A damaged copy of `b` and what was done: bits flipped (1 to 4 bytes), truncated,
 * extended with random bytes, a range zeroed, or replaced by random bytes.
 */
export function damage(r: () => number, b: Uint8Array): { bytes: Buffer; what: string } {
  const c = Buffer.from(b);
  const kind = r();
  if (kind < 0.45 || c.length === 0) {
    if (c.length === 0) return { bytes: Buffer.from([pick(r, 256)]), what: 'one byte instead of none' };
    const n = 1 + pick(r, 4);
    const at: number[] = [];
    for (let i = 0; i < n; i++) {
      const pos = pick(r, c.length);
      c[pos]! ^= 1 + pick(r, 255);
      at.push(pos);
    }
    return { bytes: c, what: `bytes ${at.join(',')} of ${c.length} flipped` };
  }
  if (kind < 0.7) {
    const len = pick(r, c.length);
    return { bytes: c.subarray(0, len), what: `truncated to ${len} of ${c.length}` };
  }
  if (kind < 0.8) {
    const extra = Buffer.from(Array.from({ length: 1 + pick(r, 16) }, () => pick(r, 256)));
    return { bytes: Buffer.concat([c, extra]), what: `${extra.length} bytes appended` };
  }
  if (kind < 0.9) {
    const from = pick(r, c.length);
    const len = 1 + pick(r, Math.min(64, c.length - from));
    c.fill(0, from, from + len);
    return { bytes: c, what: `bytes ${from}..${from + len - 1} zeroed` };
  }
  return { bytes: Buffer.from(Array.from({ length: pick(r, c.length + 8) }, () => pick(r, 256))), what: 'replaced by random bytes' };
}

export interface ReadOutcome {
  /** Reads that returned something other than the model: always a defect. */
  wrong: string[];
  /** TIDEPOOL_CORRUPT_* errors, one line each. */
  corrupt: { code: string; message: string }[];
  /** Any other error, or a multi-line corrupt error: a defect. */
  other: string[];
}

function sort(out: ReadOutcome, e: unknown): void {
  const code = (e as { code?: unknown })?.code;
  const message = String((e as Error)?.message ?? e);
  if (typeof code === 'string' && code.startsWith('TIDEPOOL_CORRUPT_') && !message.includes('\n')) out.corrupt.push({ code, message });
  else out.other.push(`${String(code)}: ${(e as Error)?.stack ?? message}`);
}

/** Runs `f`, sorting a throw into `out`; returns whether it succeeded. */
export function attempt<T>(out: ReadOutcome, f: () => T): { ok: true; value: T } | { ok: false } {
  try {
    return { ok: true, value: f() };
  } catch (e) {
    sort(out, e);
    return { ok: false };
  }
}

export async function attemptAsync(out: ReadOutcome, f: () => Promise<unknown>): Promise<boolean> {
  try {
    await f();
    return true;
  } catch (e) {
    sort(out, e);
    return false;
  }
}

/**
 * Reads every key with get and has, the whole iteration both ways (in key order) and
 * `size`. The model maps string keys (ASCII, so JS order is key order) to values;
 * `keys` are the keys to ask for, also ones the model lacks, which must read as absent.
 */
export function readEverything(s: Store, model: Map<string, unknown>, keys: string[], out: ReadOutcome): void {
  for (const k of keys) {
    const want = model.get(k);
    const got = attempt(out, () => s.get(k));
    if (got.ok && !isDeepStrictEqual(got.value, want)) out.wrong.push(`get(${k}) = ${JSON.stringify(got.value)?.slice(0, 80)}, expected ${JSON.stringify(want)?.slice(0, 80)}`);
    const has = attempt(out, () => s.has(k));
    if (has.ok && has.value !== (want !== undefined)) out.wrong.push(`has(${k}) = ${has.value}`);
  }
  const want = [...model.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  for (const reverse of [false, true]) {
    const got = attempt(out, () => [...s.entries({ reverse })]);
    if (!got.ok) continue;
    if (!isDeepStrictEqual(got.value, reverse ? [...want].reverse() : want)) {
      out.wrong.push(`entries(${reverse ? '{ reverse }' : ''}) differ from the model (${got.value.length} entries, expected ${want.length})`);
    }
  }
  if (s.size !== model.size) out.wrong.push(`size ${s.size}, expected ${model.size}`);
}
