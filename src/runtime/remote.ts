// The run's side of remote checkpoints (state.remote): before the first attempt, pick
// what to restore — a remote checkpoint newer than the local directory's newest (or the
// one --from-checkpoint names, when only the remote has it) replaces the local state —
// then upload each checkpoint the run completes. See storage/remote/ for the layout.
import { basename } from 'node:path';
import { errors } from '../errors.js';
import type { TidepoolConfig } from '../config/schema.js';
import { openObjectStore } from '../storage/remote/object-store.js';
import { CheckpointUploader, type RemoteStats } from '../storage/remote/uploader.js';
import { restoreRemoteCheckpoint, type RemoteRestore } from '../storage/remote/remote-restore.js';
import { listManifests } from './checkpoints.js';

export interface RemoteRun {
  uploader: CheckpointUploader;
  /** The remote checkpoint copied into the local directory before the run, if any. */
  restored?: RemoteRestore;
  required: boolean;
}

export type { RemoteStats };

/** Opens the remote store and restores from it where it is newer; one-line errors before any record. */
export async function openRemoteRun(config: TidepoolConfig, stateDir: string, fromCheckpoint: number | undefined, warn: (line: string) => void): Promise<RemoteRun | undefined> {
  const spec = config.state.remote;
  if (spec === undefined || config.state.storage !== 'lmdb') return undefined;
  const store = await openObjectStore(spec);
  // One folder per flow under the prefix, as a --state root has one directory per flow.
  const prefix = `${spec.prefix}${basename(stateDir)}/`;
  const uploader = new CheckpointUploader(store, prefix, stateDir, config.checkpoint.retain, warn);
  const remoteIds = await uploader.remoteIds();
  const localIds = listManifests(stateDir);
  let pick: number | undefined;
  if (fromCheckpoint !== undefined) {
    if (!localIds.includes(fromCheckpoint)) {
      if (!remoteIds.includes(fromCheckpoint)) {
        const all = [...new Set([...localIds, ...remoteIds])].sort((a, b) => a - b);
        throw errors.input(`--from-checkpoint ${fromCheckpoint}`, all.length ? `no such checkpoint, locally or in ${store.where} (retained: ${all.join(', ')})` : `no checkpoint locally or in ${store.where}`);
      }
      pick = fromCheckpoint;
    }
  } else if (remoteIds.length > 0 && remoteIds.at(-1)! > (localIds.at(-1) ?? 0)) {
    pick = remoteIds.at(-1)!; // the local directory is empty or older: it is replaced
  }
  const restored = pick === undefined ? undefined : await restoreRemoteCheckpoint(store, prefix, stateDir, pick);
  return { uploader, restored, required: config.checkpoint.remoteRequired };
}

/** The run summary's `remote`: this run's uploads, and the remote checkpoint it restored from, if any. */
export function remoteSummary(remote: RemoteRun): RemoteStats & { restoredFrom?: number; restoreMs?: number; restoreBytes?: number } {
  const r = remote.restored;
  return { ...remote.uploader.stats, ...(r ? { restoredFrom: r.id, restoreMs: r.ms, restoreBytes: r.bytes } : {}) };
}
