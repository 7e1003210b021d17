// Garbage collection of page versions in the I/O worker (storage rule 5), and the
// deletion of a whole state (a partition no retained checkpoint names any more).
//
// Each durable flush leaves a GC entry: the pages it wrote whole and the pages it freed.
// Versions a page had before a whole version at flush W are needed only by flushes older
// than W, so W's entry is collected once W is the oldest retained flush. A page stored as
// a delta (src/state/page-delta.ts) is not in the entry: the versions below it are its
// chain. The entries ride in the retained commit records, so GC cut off by a crash (or
// failed on a full disk) is replayed at the next attach.
import { WriteGroup, mustSucceed, quietly } from '../src/storage/write-failure.js';
import { durable, openEnv, type Env } from './io-envs.js';
import { dropAllDeltas, type DeltaHeads } from './io-deltas.js';

export interface GcEntry {
  version: number;
  written: number[];
  freed: number[];
}

/** What GC needs of an attached state. */
export interface GcState {
  stateId: string;
  env: Env;
  retain: number;
  gc: GcEntry[];
  heads: DeltaHeads;
  /** The newest durable version whose GC waits for a remote restore. */
  gcDeferred?: number;
}

/**
 * Deletes what no retained flush needs once `version` is durable. With retain r, the
 * retained flushes are the r newest; versions a page had before flush W are needed
 * only by flushes older than W, so W's entry is collected when W is the oldest retained.
 */
export function collect(st: GcState, version: number): void {
  if (st.env.restorePending) {
    st.gcDeferred = version;
    return;
  }
  st.gcDeferred = undefined;
  const oldestRetained = version - st.retain + 1;
  const { pages, commits } = st.env;
  while (st.gc.length && st.gc[0]!.version <= oldestRetained) {
    const e = st.gc.shift()!;
    for (const id of e.written) {
      for (const key of pages.getKeys({ start: [st.stateId, id, 0], end: [st.stateId, id, e.version] })) quiet(pages.remove(key));
      st.heads.drop(id, (v) => v < e.version, quiet);
    }
    for (const id of e.freed) {
      for (const key of pages.getKeys({ start: [st.stateId, id, 0], end: [st.stateId, id, e.version + 1] })) quiet(pages.remove(key));
      st.heads.drop(id, (v) => v <= e.version, quiet);
    }
  }
  for (const key of commits.getKeys({ start: [st.stateId, 0], end: [st.stateId, oldestRetained] })) quiet(commits.remove(key));
}

/**
 * GC's writes need no report: the GC lists ride in the retained commit records, so a
 * failed GC (a full disk) is replayed at the next attach.
 */
function quiet(p: Promise<unknown>): void {
  quietly.add(p);
}

/** Deletes every trace of a state (a partition no retained checkpoint names any more). */
export async function dropState(dir: string, noSync: boolean, stateId: string): Promise<number> {
  const { env } = openEnv(dir, noSync);
  try {
    if (env.restorePending) return 0; // the next run drops it (gc.ts finds partitions by listing)
    let n = 0;
    const g = new WriteGroup();
    for (const k of env.pages.getKeys({ start: [stateId, -1, 0], end: [stateId, Number.MAX_SAFE_INTEGER, 0] })) {
      g.add(env.pages.remove(k));
      n++;
    }
    dropAllDeltas(env, stateId, (p) => g.add(p));
    for (const k of env.commits.getKeys({ start: [stateId, 0], end: [stateId, Number.MAX_SAFE_INTEGER] })) g.add(env.commits.remove(k));
    g.add(env.attempts.remove(stateId));
    await mustSucceed(g, `dropping state '${stateId}'`);
    await durable(env);
    return n;
  } finally {
    env.users--;
  }
}

