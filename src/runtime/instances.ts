// The task instances of one attempt: their setup (rings, restored positions and
// watermarks), and for stateful ones the state partition — attached to the I/O worker,
// at the checkpoint's version, or a new generation copying key groups on a rescale.
import type { TransferListItem } from 'node:worker_threads';
import { errors } from '../errors.js';
import type { TidepoolConfig } from '../config/schema.js';
import { keyGroupRange, stateOperatorOf, type PhysicalPlan } from '../flow/plan.js';
import { IoClient, codecPoolFor, defaultCodecThreads } from '../storage/io-client.js';
import { hasRestorePlan } from '../storage/remote/restore-plan.js';
import type { TaskSetup } from './task.js';
import type { Manifest } from './checkpoints.js';
import { wire } from './wiring.js';
import { defaultCachePages } from './cache-budget.js';

export interface Instance {
  task: number;
  subtask: number;
  setup: TaskSetup;
  transfer: TransferListItem[];
}

export async function prepareInstances(plan: PhysicalPlan, config: TidepoolConfig, stateDir: string, restore: Manifest | undefined): Promise<Instance[]> {
  const rings = wire(plan);
  const instances: Instance[] = [];
  const statefulInstances = plan.tasks.reduce((n, t) => n + (t.stateful ? t.parallelism : 0), 0);
  const cachePages = config.state.cachePages ?? defaultCachePages(config.state.pageSize, statefulInstances);
  // Restored lazily from remote storage: pages not copied in yet are fetched on a miss.
  const lazyRemote = config.state.storage === 'lmdb' && hasRestorePlan(stateDir);
  for (const t of plan.tasks) {
    const old = restore?.tasks.find((x) => x.operators[0] === t.operators[0]);
    // State follows its operator, not its task: a reduce fused into its source's task at
    // p=1 (plan.ts) and the same reduce in a task of its own share partitions.
    const stateOp = stateOperatorOf(t);
    const oldState = stateOp === undefined ? undefined : restore?.tasks.find((x) => stateOperatorOf(x) === stateOp);
    for (let s = 0; s < t.parallelism; s++) {
      const { inputs, inputSides, outputs, bell } = rings.get(`${t.index}/${s}`)!;
      const setup: TaskSetup = { taskIndex: t.index, subtask: s, inputs, inputSides, outputs, bell, batchSize: config.batchSize, queueTargetMs: config.checkpoint.alignmentTargetMs, checkpointing: config.state.storage === 'lmdb' };
      const saved = old?.instances.find((i) => i.subtask === s);
      const savedState = oldState?.instances.find((i) => i.subtask === s);
      if (restore) setup.restoredCheckpoint = restore.id;
      // Watermarks do not go back across a restore: a source resumes from its largest
      // timestamp, an operator from its own watermark (rescaled: the old instances' minimum).
      const oldWms = old ? (old.parallelism === t.parallelism ? [saved?.watermark] : old.instances.map((i) => i.watermark)) : [];
      if (oldWms.length && oldWms.every((w) => typeof w === 'number')) setup.restoredWatermark = Math.min(...(oldWms as number[]));
      if (saved?.position !== undefined && t.kinds[0] === 'source') setup.sourcePosition = saved.position;
      const transfer: TransferListItem[] = [];
      if (t.stateful) {
        // Rescaled (restored at another parallelism): a new generation of partitions,
        // each copying its key groups from the old ones it overlaps.
        const rescaled = oldState !== undefined && oldState.parallelism !== t.parallelism;
        const stateId = rescaled ? `${stateOp}#${s}.g${restore!.id}` : savedState?.stateId ?? `${stateOp}#${s}`;
        const st = config.state;
        setup.state = {
          storage: st.storage, stateId, pageSize: st.pageSize, cachePages, cacheBytes: st.cacheBytes, compression: st.compression,
          codecThreads: st.codecThreads ?? defaultCodecThreads(st.compression), retain: flushesToRetain(config),
        };
        if (rescaled) {
          const [a, b] = keyGroupRange(s, t.parallelism, plan.keyGroups);
          setup.state.groups = [a, b];
          setup.state.rescaleFrom = oldState!.instances
            .filter((i) => {
              const [oa, ob] = keyGroupRange(i.subtask, oldState!.parallelism, plan.keyGroups);
              // Version 0: the partition never flushed (no record reached it before the
              // checkpoint), so it is empty and has no flush to read.
              return i.stateId !== undefined && i.version !== undefined && i.version > 0 && oa < b && a < ob;
            })
            .map((i) => ({ stateId: i.stateId!, version: i.version! }));
        }
        if (st.storage !== 'memory') {
          const restoreVersion = restore ? (rescaled ? 0 : savedState?.version ?? 0) : undefined;
          let a;
          try {
            a = await IoClient.shared().attachRaw({
              stateId, dir: stateDir, noSync: st.storage === 'temp', retain: flushesToRetain(config), ringBytes: 8 << 20, restoreVersion,
              codecPool: codecPoolFor(st.compression, setup.state.codecThreads),
            });
          } catch (e) {
            throw errors.input(`state of '${stateOp}' subtask ${s}`, (e as Error).message); // not retriable
          }
          Object.assign(setup.state, { dir: stateDir, ring: a.ring, port: a.port, lastCommit: a.lastCommit, lazyRemote: lazyRemote || undefined });
          transfer.push(a.port as unknown as TransferListItem);
        }
      }
      instances.push({ task: t.index, subtask: s, setup, transfer });
    }
  }
  return instances;
}

/**
 * Flushes of a partition the I/O worker keeps (it collects by count: the r newest).
 * Every checkpoint flushes once, but only completed ones get a manifest: a snapshot is
 * durable before its manifest exists (one more in flight), and a checkpoint aborted
 * after its snapshots were durable (a timeout elsewhere) leaves a flush no manifest
 * names. Up to tolerableFailures of those come between two completed checkpoints, so the
 * oldest retained checkpoint's versions must outlive retain × (tolerableFailures + 1) + 1
 * flushes. (Counting flushes is the I/O worker's rule; GC driven by the retained
 * manifests' versions would keep less when many checkpoints are tolerated to fail.)
 */
export function flushesToRetain(config: TidepoolConfig): number {
  const { retain, tolerableFailures } = config.checkpoint;
  return Math.min(Number.MAX_SAFE_INTEGER, retain * (tolerableFailures + 1) + 1);
}
