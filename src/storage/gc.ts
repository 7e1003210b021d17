// Partitions no checkpoint can restore any more: the old partitions of a rescaled
// operator, or the state of an operator dropped with --allow-dropped-state. They are
// found by listing the state ids stored in the flow's LMDB environment rather than by
// remembering what a run replaced, so partitions a crash left behind (the process died
// before `retain` new checkpoints existed) are collected by the next run too.
import { loadLmdb } from './lmdb-lib.js';
import { ATTEMPTS_DB, COMMITS_DB, PAGES_DB, envOptions } from './io-protocol.js';
import { IoClient } from './io-client.js';
import { checkNamedDbs } from './lmdb-file.js';
import { listManifests, readManifest } from '../runtime/checkpoints.js';

/** State ids stored in the environment: in commit records, page keys or crash-cleanup records. */
export async function storedStateIds(stateDir: string): Promise<Set<string>> {
  // lmdb-js loads on first use: the coordinator's thread needs it only here, and a run
  // on a fresh directory never gets here (its first run in a process: ~30 ms less).
  const { open } = await loadLmdb();
  const root = open(envOptions(stateDir, false));
  try {
    checkNamedDbs(stateDir, root); // or openDB below would create them empty
    const ids = new Set<string>();
    const commits = root.openDB({ name: COMMITS_DB, encoding: 'msgpack', keyEncoding: 'ordered-binary' });
    for (const k of commits.getKeys({})) ids.add((k as [string, number])[0]);
    const attempts = root.openDB({ name: ATTEMPTS_DB, encoding: 'msgpack', keyEncoding: 'ordered-binary' });
    for (const k of attempts.getKeys({})) ids.add(k as string);
    // Pages without any commit record (a partition that crashed before its first flush
    // completed): one seek per state id, skipping over the others' pages.
    const pages = root.openDB({ name: PAGES_DB, encoding: 'binary', keyEncoding: 'ordered-binary' });
    let start: unknown[] = [];
    for (;;) {
      let next: string | undefined;
      for (const k of pages.getKeys({ start: start as never, limit: 1 })) next = (k as [string, number, number])[0];
      if (next === undefined) break;
      ids.add(next);
      start = [next, '\uffff']; // past its pages and its deltas' records (src/storage/keyspace.ts)
    }
    return ids;
  } finally {
    await root.close();
  }
}

/**
 * Drops every partition that neither a retained checkpoint nor the running plan
 * (`live`) names. Call only once every retained manifest was written by the running
 * plan's generation of partitions, or at least `retain` checkpoints after a restore.
 */
export async function dropOrphanPartitions(stateDir: string, live: Iterable<string>): Promise<string[]> {
  const keep = new Set(live);
  for (const id of listManifests(stateDir)) {
    for (const t of readManifest(stateDir, id).tasks) for (const i of t.instances) if (i.stateId) keep.add(i.stateId);
  }
  const dropped: string[] = [];
  for (const id of await storedStateIds(stateDir)) {
    if (keep.has(id)) continue;
    await IoClient.shared().dropState(stateDir, false, id);
    dropped.push(id);
  }
  return dropped;
}
