// Restoring a remote checkpoint into a local state directory: its packs are written
// back into the LMDB environment (page versions and commit records, bytes unchanged),
// then its manifest, so the usual restore path takes it from there. Packs are applied
// one at a time, each in one write transaction: memory stays bounded by a pack.
//
// The manifest is written last: until it exists the local directory has no checkpoint
// and a killed restore simply starts over.
import { mkdirSync, rmSync } from 'node:fs';
import { lmdb, loadLmdb } from '../lmdb-lib.js';
import { backLmdbMap } from '../lmdb-file.js';
import { COMMITS_DB, PAGES_DB, envOptions } from '../io-protocol.js';
import { writeManifestFile } from '../../runtime/checkpoints.js';
import { errors } from '../../errors.js';
import type { ObjectStore } from './object-store.js';
import { checkpointName, decodeCheckpoint, decodePack } from './packs.js';

export interface RemoteRestore {
  id: number;
  objects: number;
  bytes: number;
  ms: number;
}

/**
 * Replaces `stateDir` (one flow's state) with remote checkpoint `id`. The caller holds
 * the state directory's run lock.
 */
export async function restoreRemoteCheckpoint(store: ObjectStore, prefix: string, stateDir: string, id: number): Promise<RemoteRestore> {
  const t0 = performance.now();
  const name = prefix + checkpointName(id);
  const raw = await store.get(name);
  if (!raw) throw errors.remote(store.where, `checkpoint ${id} is not there (${name})`);
  const c = decodeCheckpoint(raw, `${store.where}, ${name}`);
  rmSync(stateDir, { recursive: true, force: true });
  mkdirSync(stateDir, { recursive: true });
  await loadLmdb();
  backLmdbMap(stateDir);
  const root = lmdb().open(envOptions(stateDir, false));
  let objects = 0;
  let bytes = 0;
  try {
    const pages = root.openDB<Buffer, [string, number, number]>({ name: PAGES_DB, encoding: 'binary', keyEncoding: 'ordered-binary' });
    const commits = root.openDB<Buffer, [string, number]>({ name: COMMITS_DB, encoding: 'binary', keyEncoding: 'ordered-binary' });
    for (const [stateId, s] of Object.entries(c.states)) {
      for (const object of s.objects) {
        const body = await store.get(object);
        if (!body) throw errors.remote(store.where, `checkpoint ${id} names ${object}, which is missing`);
        const p = decodePack(body, `${store.where}, ${object}`);
        if (p.stateId !== stateId) throw errors.corruptState('remote pack', `${store.where}, ${object}`, `holds state '${p.stateId}', expected '${stateId}'`);
        root.transactionSync(() => {
          for (const [pageId, v, page] of p.pages) pages.putSync([stateId, pageId, v], Buffer.from(page));
          for (const [v, record] of p.commits) commits.putSync([stateId, v], Buffer.from(record));
        });
        objects++;
        bytes += body.length;
      }
    }
    await root.flushed;
  } finally {
    await root.close();
  }
  writeManifestFile(stateDir, c.manifest);
  return { id, objects, bytes, ms: Math.round(performance.now() - t0) };
}
