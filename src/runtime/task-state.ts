// Opening an instance's state partition: its backend (the I/O worker's page ring, or
// memory) and, on a rescale, copying the key groups it now owns out of the old
// partitions' checkpointed state.
import { errors } from '../errors.js';
import { StateEngine } from '../state/engine.js';
import { codecResolver, loadCodec } from '../state/codecs.js';
import { MemoryBackend } from '../storage/memory-backend.js';
import { LmdbBackend } from '../storage/lmdb-backend.js';
import { IoAttachment, codecPoolFor } from '../storage/io-client.js';
import type { StateBackend } from '../storage/backend.js';
import { SnapshotReader } from '../storage/snapshot-reader.js';
import { loadLmdb } from '../storage/lmdb-lib.js';
import { prefixBounds } from '../state/keys.js';
import type { StateSetup } from './task.js';

export async function openEngine(s: StateSetup): Promise<StateEngine> {
  // Pages written under another compression setting exist only in restored state.
  const older = s.restoreVersion !== undefined || s.rescaleFrom !== undefined || s.lastCommit !== undefined;
  const codec = await loadCodec(s.compression, older);
  let backend: StateBackend;
  if (s.storage === 'memory' || !s.ring || !s.port || !s.dir) {
    backend = new MemoryBackend();
  } else {
    const io = new IoAttachment(undefined, s.stateId, s.ring, s.port, s.lastCommit);
    backend = await LmdbBackend.withAttachment({
      kind: s.storage, dir: s.dir, stateId: s.stateId, retain: s.retain ?? 1, removeOnClose: false, lazyRemote: s.lazyRemote,
      codecPool: codecPoolFor(s.compression, s.codecThreads), // as instances.ts attached it
    }, io);
  }
  if (!backend) throw errors.worker(s.stateId, 'no state backend');
  return new StateEngine({ name: s.stateId.replace(/[^A-Za-z0-9._-]/g, '_'), pageSize: s.pageSize, cachePages: s.cachePages, cacheBytes: s.cacheBytes, codec, codecFor: codecResolver(codec), backend });
}

/**
 * Copies the key groups this instance now owns out of the old partitions' checkpointed
 * state. Every state key starts with its key group (operators/context.ts), so each
 * table's share is one contiguous key range per old partition.
 */
export async function takeOverKeyGroups(engine: StateEngine, s: StateSetup): Promise<void> {
  const [from, to] = s.groups!;
  if (from >= to) return;
  const lo = prefixBounds([from]).gte;
  const hi = prefixBounds([to - 1]).lt;
  const codec = await loadCodec(s.compression);
  await loadLmdb();
  for (const old of s.rescaleFrom!) {
    // Pages of a lazily restored directory not copied in yet come through this
    // instance's backend (it asks the I/O worker to fetch them).
    const backend = engine.backend;
    const readMissing = s.lazyRemote && backend instanceof LmdbBackend ? (pageId: number) => backend.readVersioned(old.stateId, pageId, old.version) : undefined;
    const snap = new SnapshotReader(s.dir!, old.stateId, old.version, codec, codecResolver(codec), Math.max(8, s.cachePages), readMissing);
    try {
      for (const name of snap.tableNames()) {
        const target = engine.table(name);
        for (const [k, v] of snap.table(name).entries({ gte: lo, lt: hi })) {
          target.set(k, v instanceof Uint8Array ? Buffer.from(v) : v);
          engine.mutations++;
          engine.pager.evict();
          snap.evict();
        }
      }
    } finally {
      await snap.close();
    }
  }
}
