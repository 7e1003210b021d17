// What the I/O worker does to a state before attaching it (storage rule 4): a flush cut
// off by a crash, named by the attempts record, has every version it wrote deleted; a
// restore to an older checkpoint deletes everything written after that checkpoint. Each
// removal is committed before the attempts record moves back.
import type { CommitRecord } from '../src/storage/backend.js';
import { decodeAttempt, decodeCommit } from '../src/storage/commit-record.js';
import { WriteGroup, mustSucceed } from '../src/storage/write-failure.js';
import { dropDeltaVersions, type DeltaHeads } from './io-deltas.js';
import { errors } from '../src/errors.js';
import type { Env } from './io-envs.js';

export function lastCommitOf(env: Env, stateId: string): CommitRecord | undefined {
  for (const { key, value } of env.commitsRaw.getRange({ start: [stateId, Number.MAX_SAFE_INTEGER], end: [stateId, -1], reverse: true, limit: 1 })) {
    return decodeCommit(value, stateId, (key as [string, number])[1], env.dir);
  }
  return undefined;
}

/**
 * The version named by the attempts record. A damaged record cannot say how far an
 * unfinished flush got, so it is taken to be any: everything newer than the last
 * commit is deleted at attach, which is always safe.
 */
function attemptOf(env: Env, stateId: string): number {
  const raw = env.attemptsRaw.get(stateId);
  if (raw === undefined) return 0;
  return decodeAttempt(raw) ?? Number.MAX_SAFE_INTEGER;
}

/** Deletes page versions in [from, to] of one state; returns how many. */
function deleteVersions(env: Env, stateId: string, from: number, to: number, g: WriteGroup): number {
  let n = dropDeltaVersions(env, stateId, from, to, (p) => g.add(p));
  for (const key of env.pages.getKeys({ start: [stateId, -1, 0], end: [stateId, Number.MAX_SAFE_INTEGER, 0] })) {
    const v = (key as [string, number, number])[2];
    if (v >= from && v <= to) {
      g.add(env.pages.remove(key));
      n++;
    }
  }
  return n;
}

/**
 * Cleans what a crash or a restore leaves of state `stateId`; returns its last commit as
 * it now stands and how many page versions were deleted.
 */
export async function recoverState(env: Env, stateId: string, restoreVersion: number | undefined): Promise<{ last: CommitRecord | undefined; cleaned: number }> {
  let last = lastCommitOf(env, stateId);
  let cleaned = 0;
  // Every removal is committed before the attempts record moves back: if one
  // failed (a full disk), the record still names the unfinished flush for next time.
  const g = new WriteGroup();
  if (restoreVersion !== undefined && restoreVersion !== (last?.version ?? 0)) {
    // Restoring an older checkpoint: drop everything written after it.
    const stored = restoreVersion === 0 ? undefined : env.commitsRaw.get([stateId, restoreVersion]);
    const target = stored === undefined ? undefined : decodeCommit(stored, stateId, restoreVersion, env.dir);
    if (restoreVersion !== 0 && target === undefined) {
      throw new Error(`state '${stateId}' has no flush ${restoreVersion} to restore (it was collected or never completed)`);
    }
    const newest = Math.max(last?.version ?? 0, attemptOf(env, stateId));
    cleaned = deleteVersions(env, stateId, restoreVersion + 1, newest, g);
    for (const k of env.commits.getKeys({ start: [stateId, restoreVersion + 1], end: [stateId, Number.MAX_SAFE_INTEGER] })) {
      g.add(env.commits.remove(k));
    }
    await mustSucceed(g, `restoring state '${stateId}' to flush ${restoreVersion}`);
    g.add(env.attempts.put(stateId, restoreVersion));
    await mustSucceed(g, `restoring state '${stateId}' to flush ${restoreVersion}`);
    last = target;
  }
  const lastVersion = last?.version ?? 0;
  const attempt = attemptOf(env, stateId);
  if (attempt > lastVersion) {
    cleaned += deleteVersions(env, stateId, lastVersion + 1, attempt, g);
    await mustSucceed(g, `removing the unfinished flush ${attempt} of state '${stateId}'`);
    g.add(env.attempts.put(stateId, lastVersion));
    await mustSucceed(g, `removing the unfinished flush ${attempt} of state '${stateId}'`);
  }
  return { last, cleaned };
}

/**
 * Checks that the page versions the newest flush wrote can all be found: each page it
 * stored whole at its version, and each it stored as a delta listed in its head. LMDB's
 * B-tree pages carry no checksum, and a damaged or truncated data.mdb can make LMDB
 * answer "not found" instead of failing: a lost head would silently read a page without
 * its newest deltas, a lost whole version an older one. Only the newest flush: nothing
 * of it can have been collected, and LMDB writes the pages of its last commits at the
 * end of the file, where a truncation cuts (older flushes' versions may legitimately be
 * gone when a crash cut GC off between their pages and their record). The cost is a
 * lookup per page that flush wrote, not per page of the state.
 */
export function verifyNewest(env: Env, stateId: string, heads: DeltaHeads, last: CommitRecord | undefined): void {
  // A lazily restored directory gets its pages copied in meanwhile (io-copy-in.ts).
  if (!last || env.restorePending) return;
  const { version } = last;
  const lost = (what: string) => errors.corruptState(`state '${stateId}'`, env.dir, `${what} of flush ${version} is missing from storage (LMDB's own pages are damaged); restore from a retained or remote checkpoint`);
  for (const id of last.gcDeltas ?? []) if (!heads.lists(id, version)) throw lost(`the delta of page ${id}`);
  for (const id of last.gcWritten ?? []) if (!env.pages.doesExist([stateId, id, version])) throw lost(`page ${id}`);
}
