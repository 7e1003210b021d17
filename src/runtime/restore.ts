// Which checkpoint a run restores, and whether it may: the manifest is checked against
// the plan (key groups, stateful operators' kinds and shapes, sources) before anything
// is read or changed; each mismatch is one line naming the operator or source.
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { errors } from '../errors.js';
import type { PhysicalPlan } from '../flow/plan.js';
import { STATEFUL, type OperatorKind } from '../flow/types.js';
import { checkpointDir, listManifests, readManifest, type Manifest } from './checkpoints.js';
import { syncDir } from '../storage/durable-file.js';

/** The checkpoint to restore, checked against the plan; undefined for a fresh start. */
export function chooseCheckpoint(stateDir: string, plan: PhysicalPlan, fromCheckpoint: number | undefined, first: boolean, allowDropped: boolean): Manifest | undefined {
  const ids = listManifests(stateDir);
  if (fromCheckpoint !== undefined && first) {
    if (!ids.includes(fromCheckpoint)) {
      throw errors.input(`--from-checkpoint ${fromCheckpoint}`, ids.length ? `no such checkpoint (retained: ${ids.join(', ')})` : 'no checkpoint in this state directory');
    }
  }
  const id = first && fromCheckpoint !== undefined ? fromCheckpoint : ids[ids.length - 1];
  if (id === undefined) return undefined;
  const m = readManifest(stateDir, id);
  // Going back to an older checkpoint: the newer ones stop existing (their state
  // versions are dropped at attach), so their manifests go first, durably.
  const newer = ids.filter((x) => x > id);
  if (newer.length) {
    for (const x of newer) rmSync(join(checkpointDir(stateDir), `chk-${String(x).padStart(10, '0')}.json`), { force: true });
    syncDir(checkpointDir(stateDir));
  }
  if (m.keyGroups !== plan.keyGroups) {
    throw errors.config('keyGroups', `the state in ${stateDir} was written with ${m.keyGroups} key groups, this run has ${plan.keyGroups}; keyGroups cannot change`);
  }
  // Every stateful operator of the checkpoint must exist with the same kind and shape
  // (window assigner, join bounds), and every source must still be there: a renamed or
  // new source would read from the beginning into restored state (double counting).
  for (const t of m.tasks) {
    t.operators.forEach((name, i) => {
      const kind = t.kinds[i] as OperatorKind;
      if (kind === 'source') {
        if (allowDropped || plan.tasks.some((x) => x.operators[0] === name && x.kinds[0] === 'source')) return;
        throw errors.input(`source '${name}'`, `its position is in checkpoint ${m.id} but the flow has no such source (renamed?); restoring would reread every source from a mix of positions (--allow-dropped-state to accept)`);
      }
      if (!STATEFUL.has(kind)) return;
      const now = plan.tasks.find((x) => x.operators.includes(name));
      if (!now) {
        if (allowDropped) return;
        throw errors.input(`operator '${name}'`, `its state is in checkpoint ${m.id} but the flow has no such operator; restoring would drop it (--allow-dropped-state to accept)`);
      }
      const j = now.operators.indexOf(name);
      const nowKind = now.kinds[j];
      if (nowKind !== kind) throw errors.input(`operator '${name}'`, `was a ${kind} in checkpoint ${m.id}, is now a ${nowKind}; its state cannot be restored`);
      const was = t.shapes?.[i];
      if (was !== undefined && was !== now.shapes[j]) {
        throw errors.input(`operator '${name}'`, `changed shape since checkpoint ${m.id} (${was} → ${now.shapes[j]}); its state cannot be restored`);
      }
    });
  }
  for (const t of plan.tasks) {
    if (t.kinds[0] !== 'source') continue;
    const old = m.tasks.find((x) => x.operators[0] === t.operators[0] && x.kinds[0] === 'source');
    if (!old) {
      if (allowDropped) continue;
      throw errors.input(`source '${t.operators[0]}'`, `is not in checkpoint ${m.id}; a new source would start from its beginning into restored state (--allow-dropped-state to accept)`);
    }
    if (old.parallelism !== t.parallelism) {
      throw errors.input(`source '${t.operators[0]}'`, `checkpoint ${m.id} has parallelism ${old.parallelism}, this run ${t.parallelism}; source positions cannot be split differently`);
    }
  }
  return m;
}
