// The plan of a lazy remote restore, kept in the state directory until every page is
// local: which remote checkpoint was restored and, per partition, the pack objects
// (with their page ranges) holding its pages. While it exists, the I/O worker copies
// pages in (hydration.ts), defers local GC and partition drops (a page copied in after
// GC ran could never be collected), and a run without state.remote is refused.
//
// Removed (durably) once every page is local; a crash before that leaves it, and the
// next run resumes the copy — pages already local are skipped.
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { errors } from '../../errors.js';
import { removeFileDurably, writeFileDurably } from '../durable-file.js';
import type { PackRange } from './packs.js';

export const RESTORE_PLAN = 'remote-restore.json';

export interface RestorePlan {
  format: 1;
  /** The remote checkpoint restored. */
  id: number;
  /** The flow's folder in the remote store. */
  prefix: string;
  states: Record<string, { version: number; objects: string[]; ranges: PackRange[] }>;
}

export function writeRestorePlan(stateDir: string, plan: RestorePlan): void {
  writeFileDurably(stateDir, RESTORE_PLAN, JSON.stringify(plan));
}

export function hasRestorePlan(stateDir: string): boolean {
  return existsSync(join(stateDir, RESTORE_PLAN));
}

export function readRestorePlan(stateDir: string): RestorePlan | undefined {
  const path = join(stateDir, RESTORE_PLAN);
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw e;
  }
  let plan: RestorePlan;
  try {
    plan = JSON.parse(text) as RestorePlan;
  } catch (e) {
    throw errors.corruptState('remote restore plan', path, (e as Error).message);
  }
  if (plan?.format !== 1 || typeof plan.states !== 'object' || typeof plan.prefix !== 'string') throw errors.corruptState('remote restore plan', path, 'unexpected content');
  return plan;
}

export function removeRestorePlan(stateDir: string): void {
  removeFileDurably(stateDir, RESTORE_PLAN);
}
