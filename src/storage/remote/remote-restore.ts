// Restoring a remote checkpoint into a local state directory, lazily or eagerly.
//
// Lazy (the default, state.remote.restore: 'lazy'): only the checkpoint object and each
// partition's commit record are fetched — a few small ranged reads whatever the state
// size — and a restore plan (restore-plan.ts) is written beside the manifest. The I/O
// worker then copies pages in: on demand when an operator misses one, and in the
// background pack by pack (see hydration.ts). Time to first record does not grow
// with the state.
//
// Eager ('eager', or a checkpoint whose packs have no index): every pack is copied into
// the LMDB environment before the run starts, one pack per write transaction, so
// memory stays bounded by a pack.
//
// Either way the manifest is written last: until it exists the local directory has no
// checkpoint and a killed restore simply starts over.
import { mkdirSync, rmSync } from 'node:fs';
import { lmdb, loadLmdb } from '../lmdb-lib.js';
import { backLmdbMap } from '../lmdb-file.js';
import { COMMITS_DB, PAGES_DB, envOptions } from '../io-protocol.js';
import { writeManifestFile } from '../../runtime/checkpoints.js';
import { errors } from '../../errors.js';
import type { ObjectStore } from './object-store.js';
import { checkpointName, decodeCheckpoint, decodePack, decodePackIndex, type RemoteCheckpoint } from './packs.js';
import { writeRestorePlan, type RestorePlan } from './restore-plan.js';

export interface RemoteRestore {
  id: number;
  /** Pages are still being copied in from the remote store (a lazy restore). */
  lazy: boolean;
  objects: number;
  bytes: number;
  ms: number;
}

/**
 * Replaces `stateDir` (one flow's state) with remote checkpoint `id`. The caller holds
 * the state directory's run lock.
 */
export async function restoreRemoteCheckpoint(store: ObjectStore, prefix: string, stateDir: string, id: number, mode: 'lazy' | 'eager'): Promise<RemoteRestore> {
  const t0 = performance.now();
  const name = prefix + checkpointName(id);
  const raw = await store.get(name);
  if (!raw) throw errors.remote(store.where, `checkpoint ${id} is not there (${name})`);
  const c = decodeCheckpoint(raw, `${store.where}, ${name}`);
  const lazy = mode === 'lazy' && Object.values(c.states).every((s) => s.ranges !== undefined && s.ranges.length === s.objects.length);
  rmSync(stateDir, { recursive: true, force: true });
  mkdirSync(stateDir, { recursive: true });
  await loadLmdb();
  backLmdbMap(stateDir);
  const root = lmdb().open(envOptions(stateDir, false));
  let counts: { objects: number; bytes: number };
  try {
    const pages = root.openDB<Buffer, [string, number, number]>({ name: PAGES_DB, encoding: 'binary', keyEncoding: 'ordered-binary' });
    const commits = root.openDB<Buffer, [string, number]>({ name: COMMITS_DB, encoding: 'binary', keyEncoding: 'ordered-binary' });
    counts = lazy ? await copyCommits(store, c, commits) : await copyAll(store, c, root, pages, commits);
    await root.flushed;
  } finally {
    await root.close();
  }
  if (lazy) {
    const plan: RestorePlan = { format: 1, id, prefix, states: {} };
    for (const [stateId, s] of Object.entries(c.states)) plan.states[stateId] = { version: s.version, objects: s.objects, ranges: s.ranges! };
    writeRestorePlan(stateDir, plan); // before the manifest: a checkpoint restored lazily always has its plan
  }
  writeManifestFile(stateDir, c.manifest);
  return { id, lazy, ...counts, ms: Math.round(performance.now() - t0) };
}

/** Lazy: per partition, the commit record of the restored flush (two ranged reads of its newest pack). */
async function copyCommits(store: ObjectStore, c: RemoteCheckpoint, commits: { putSync(k: [string, number], v: Buffer): void }): Promise<{ objects: number; bytes: number }> {
  let bytes = 0;
  const records = await Promise.all(Object.entries(c.states).map(async ([stateId, s]) => {
    const object = s.objects.at(-1)!;
    const headBytes = s.ranges!.at(-1)![2];
    const head = await store.getRange(object, 0, headBytes);
    if (!head) throw errors.remote(store.where, `checkpoint ${c.id} names ${object}, which is missing`);
    const index = decodePackIndex(head, `${store.where}, ${object}`);
    const entry = index.commits.find(([v]) => v === s.version);
    if (index.stateId !== stateId || !entry) throw errors.corruptState('remote pack', `${store.where}, ${object}`, `holds no commit record of '${stateId}' flush ${s.version}`);
    const record = await store.getRange(object, headBytes + entry[1], entry[2]);
    if (!record || record.length !== entry[2]) throw errors.corruptState('remote pack', `${store.where}, ${object}`, 'truncated');
    bytes += head.length + record.length;
    return [stateId, s.version, record] as const;
  }));
  for (const [stateId, version, record] of records) commits.putSync([stateId, version], record);
  return { objects: records.length, bytes };
}

/** Eager: every pack of every partition, one write transaction each. */
async function copyAll(
  store: ObjectStore, c: RemoteCheckpoint, root: { transactionSync(fn: () => void): unknown },
  pages: { putSync(k: [string, number, number], v: Buffer): void }, commits: { putSync(k: [string, number], v: Buffer): void },
): Promise<{ objects: number; bytes: number }> {
  let objects = 0;
  let bytes = 0;
  for (const [stateId, s] of Object.entries(c.states)) {
    for (const object of s.objects) {
      const body = await store.get(object);
      if (!body) throw errors.remote(store.where, `checkpoint ${c.id} names ${object}, which is missing`);
      const p = decodePack(body, `${store.where}, ${object}`);
      if (p.stateId !== stateId) throw errors.corruptState('remote pack', `${store.where}, ${object}`, `holds state '${p.stateId}', expected '${stateId}'`);
      root.transactionSync(() => { // one transaction per pack: a synced commit per page would take minutes
        for (const [pageId, v, page] of p.pages) pages.putSync([stateId, pageId, v], Buffer.from(page));
        for (const [v, record] of p.commits) commits.putSync([stateId, v], Buffer.from(record));
      });
      objects++;
      bytes += body.length;
    }
  }
  return { objects, bytes };
}
