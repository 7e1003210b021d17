// The I/O worker's side of page deltas (src/storage/page-chain.ts has the layout): a
// delta is put under [state, version, page] and its version joins the page's head; a
// delta deleted (GC, the cleanup of an unfinished flush, a restore to an older
// checkpoint) leaves the head, and an empty head is removed. A head may keep a version
// below its page's whole one for a while (GC's edit raced a later put of the head):
// readers only look above the whole version, and the next GC of the page drops it.
import type { Env } from './io-envs.js';

type Write = (p: Promise<unknown>) => void;

/** Puts a delta of `pageId` at `version` and lists it in the page's head. */
export function putDelta(env: Env, stateId: string, pageId: number, version: number, envelope: Buffer, write: Write): Promise<unknown> {
  const head = env.heads.get([stateId, pageId]) ?? [];
  if (!head.includes(version)) {
    head.push(version);
    head.sort((a, b) => a - b);
    write(env.heads.put([stateId, pageId], head));
  }
  return env.deltas.put([stateId, version, pageId], envelope);
}

/**
 * Deletes the page's deltas whose version `drop` selects, then their head entries (in
 * that order: a crash between the two leaves head entries without deltas below the
 * page's whole version, which readers never look at, rather than deltas nothing lists).
 * Returns how many.
 */
export function dropDeltas(env: Env, stateId: string, pageId: number, drop: (v: number) => boolean, write: Write): number {
  const head = env.heads.get([stateId, pageId]);
  if (head === undefined) return 0;
  const kept = head.filter((v) => !drop(v));
  if (kept.length === head.length) return 0;
  for (const v of head) if (drop(v)) write(env.deltas.remove([stateId, v, pageId]));
  write(kept.length ? env.heads.put([stateId, pageId], kept) : env.heads.remove([stateId, pageId]));
  return head.length - kept.length;
}

/**
 * Deletes every delta of versions [from, to] (one range of the version-first keys) and
 * those versions from every head. Used on versions of an unfinished flush (a crash) and
 * of a checkpoint restored past: a crash may have committed a delta without its head
 * entry or the other way round, so both are looked for, not one through the other.
 * Returns how many deltas it deleted.
 */
export function dropDeltaVersions(env: Env, stateId: string, from: number, to: number, write: Write): number {
  let n = 0;
  for (const key of env.deltas.getKeys({ start: [stateId, from], end: [stateId, to + 1] })) {
    write(env.deltas.remove(key));
    n++;
  }
  for (const { key, value } of env.heads.getRange({ start: [stateId, -1], end: [stateId, Number.MAX_SAFE_INTEGER] })) {
    const kept = value.filter((v) => v < from || v > to);
    if (kept.length !== value.length) write(kept.length ? env.heads.put(key, kept) : env.heads.remove(key));
  }
  return n;
}

/** Deletes every delta and head of a state. */
export function dropAllDeltas(env: Env, stateId: string, write: Write): void {
  for (const k of env.deltas.getKeys({ start: [stateId, -1], end: [stateId, Number.MAX_SAFE_INTEGER] })) write(env.deltas.remove(k));
  for (const k of env.heads.getKeys({ start: [stateId, -1], end: [stateId, Number.MAX_SAFE_INTEGER] })) write(env.heads.remove(k));
}
