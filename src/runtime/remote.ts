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
import { hasRestorePlan, readRestorePlan } from '../storage/remote/restore-plan.js';
import type { HydrationStats } from '../storage/remote/hydration.js';
import { IoClient } from '../storage/io-client.js';
import { listManifests } from './checkpoints.js';

export interface RemoteRun {
  uploader: CheckpointUploader;
  /** The remote checkpoint restored into the local directory before the run, if any. */
  restored?: RemoteRestore;
  required: boolean;
  /** A lazy restore (this run's or an earlier one's) still copying pages in. */
  copyIn?: { done: () => Promise<HydrationStats | undefined>; finished: () => boolean };
  copied?: HydrationStats;
}

/**
 * Background copy-in of lazily restored pages is on unless TIDEPOOL_TEST_NO_COPY_IN=1
 * (tests: every page then comes through an on-demand fetch).
 */
const backgroundCopy = () => process.env.TIDEPOOL_TEST_NO_COPY_IN !== '1';

/**
 * Before an attempt: a state directory restored lazily (its restore plan is there) has
 * its pages copied in by the I/O worker, which fetches missing pages on demand too.
 * Without state.remote such a directory cannot be run: one line, nothing touched.
 */
export function continueCopyIn(remote: RemoteRun | undefined, config: TidepoolConfig, stateDir: string): void {
  if (!hasRestorePlan(stateDir)) return;
  if (!remote || config.state.remote === undefined) {
    throw errors.input(`--state ${stateDir}`, 'is still being restored from remote storage (remote-restore.json is there); run it with the same state.remote to finish');
  }
  if (remote.copyIn) return; // already started by an earlier attempt of this run
  const planned = new Set(Object.keys(readRestorePlan(stateDir)?.states ?? {}));
  const copyIn = IoClient.shared().hydrate(stateDir, config.state.remote, backgroundCopy());
  remote.copyIn = copyIn;
  // Only the restored partitions have pages that may not be local yet — until the copy
  // succeeded: after a failed one they are still missing, and a full upload must wait
  // (its failure is the copy's, retried and visible in the lag), not skip them.
  let copied = false;
  remote.uploader.restoring = {
    pending: (stateId) => !copied && planned.has(stateId),
    done: () => copyIn.done().then((stats) => void (remote.copied = stats)),
  };
  // Count what it did once it is done, without keeping the process alive for it.
  void copyIn.done().then((stats) => {
    copied = true;
    remote.copied = stats;
  }, () => undefined);
}

export type { RemoteStats };

/** Opens the remote store and restores from it where it is newer; one-line errors before any record. */
export async function openRemoteRun(config: TidepoolConfig, stateDir: string, fromCheckpoint: number | undefined, warn: (line: string) => void): Promise<RemoteRun | undefined> {
  const spec = config.state.remote;
  if (spec === undefined || config.state.storage !== 'lmdb') return undefined;
  // The I/O worker loads the store's SDK meanwhile: a lazy restore's first page fetch needs it.
  if (spec.restore !== 'eager') IoClient.shared().preloadRemote(spec);
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
  const restored = pick === undefined ? undefined : await restoreRemoteCheckpoint(store, prefix, stateDir, pick, spec.restore ?? 'lazy');
  return { uploader, restored, required: config.checkpoint.remoteRequired };
}

/** Waits for the copy-in of a lazy restore to finish (not when the background copy is off). */
export async function finishCopyIn(remote: RemoteRun | undefined): Promise<void> {
  if (remote?.copyIn && backgroundCopy()) remote.copied = await remote.copyIn.done();
}

/** The run summary's `remote`: this run's uploads, and the remote checkpoint it restored from, if any. */
export function remoteSummary(remote: RemoteRun): RemoteSummary {
  const r = remote.restored;
  const copy = remote.copyIn ? { copyInDone: remote.copyIn.finished() && remote.copied !== undefined, ...(remote.copied ? { copyIn: remote.copied } : {}) } : {};
  return { ...remote.uploader.stats, ...(r ? { restoredFrom: r.id, restoreMs: r.ms, restoreBytes: r.bytes, restoreLazy: r.lazy } : {}), ...copy };
}

export type RemoteSummary = RemoteStats & {
  restoredFrom?: number;
  /** Time and bytes before the first record (a lazy restore: the checkpoint and commit records only). */
  restoreMs?: number;
  restoreBytes?: number;
  restoreLazy?: boolean;
  /** The copy-in of a lazy restore finished during this run. */
  copyInDone?: boolean;
  /** Pages fetched on demand and copied in the background, and the bytes read. */
  copyIn?: HydrationStats;
};
