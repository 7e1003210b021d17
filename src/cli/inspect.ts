// `tidepool inspect <state-dir>`: what a state directory holds, read without a lock
// (LMDB readers never block the writer, so this is safe against a live process).
import { existsSync, readdirSync } from 'node:fs';
import { listManifests, readManifest } from '../runtime/checkpoints.js';
import { join } from 'node:path';
import { open } from 'lmdb';
import { COMMITS_DB, PAGES_DB, envOptions } from '../storage/io-protocol.js';
import type { CommitRecord } from '../storage/backend.js';
import { errors } from '../errors.js';

export interface StateReport {
  stateId: string;
  flushes: { version: number; time: string; pagesWritten: number; bytesWritten: number }[];
  tables: Record<string, { keys: number }>;
  storedPages: number;
  storedVersions: number;
  storedBytes: number;
  /** Page versions newer than the last complete flush (a flush cut off by a crash). */
  unfinishedVersions: number;
}

export interface FlowReport {
  flow: string;
  dir: string;
  checkpoints: { id: number; time: string; durationMs: number; bytesWritten: number; final: boolean; complete: true }[];
  /** From the newest checkpoint: tasks, instances, state versions, source positions. */
  operators: { operators: string[]; parallelism: number; stateful: boolean; instances: { subtask: number; stateVersion?: number; sourcePosition?: unknown; keys?: Record<string, number> }[] }[];
  /** Per state partition: stored pages, versions and bytes, and versions of unfinished checkpoints. */
  states: StateReport[];
}

export interface DirReport {
  stores: StateReport[];
  flows: FlowReport[];
}

/** A directory of embedded stores (data.mdb) and/or flows run with --state (one subfolder per flow). */
export function inspectDir(dir: string): DirReport {
  if (!existsSync(dir)) throw errors.badOption('state-dir', `${dir} does not exist`);
  const stores = existsSync(join(dir, 'data.mdb')) ? inspectStateDir(dir) : [];
  const flows: FlowReport[] = [];
  for (const name of readdirSync(dir)) {
    const sub = join(dir, name);
    if (!existsSync(join(sub, 'checkpoints'))) continue;
    const ids = listManifests(sub);
    const manifests = ids.map((id) => readManifest(sub, id));
    const newest = manifests[manifests.length - 1];
    const states = existsSync(join(sub, 'data.mdb')) ? inspectStateDir(sub) : [];
    flows.push({
      flow: newest?.flow ?? name,
      dir: sub,
      checkpoints: manifests.map((m) => ({ id: m.id, time: new Date(m.time).toISOString(), durationMs: m.durationMs, bytesWritten: m.bytesWritten, final: m.final, complete: true as const })),
      operators: (newest?.tasks ?? []).map((t) => ({
        operators: t.operators,
        parallelism: t.parallelism,
        stateful: t.stateful,
        instances: t.instances.map((i) => ({
          subtask: i.subtask,
          stateVersion: i.version,
          sourcePosition: i.position,
          keys: i.stateId ? states.find((x) => x.stateId === i.stateId)?.tables && Object.fromEntries(Object.entries(states.find((x) => x.stateId === i.stateId)!.tables).map(([k, v]) => [k, v.keys])) : undefined,
        })),
      })),
      states,
    });
  }
  if (stores.length === 0 && flows.length === 0) throw errors.badOption('state-dir', `${dir} holds no tidepool state (no data.mdb, no flow checkpoints)`);
  return { stores, flows };
}

export function inspectStateDir(dir: string): StateReport[] {
  if (!existsSync(join(dir, 'data.mdb'))) throw errors.badOption('state-dir', `${dir} holds no tidepool state (no data.mdb)`);
  const root = open({ ...envOptions(dir, false), readOnly: true });
  try {
    const commits = root.openDB({ name: COMMITS_DB, encoding: 'msgpack', keyEncoding: 'ordered-binary' });
    const pages = root.openDB({ name: PAGES_DB, encoding: 'binary', keyEncoding: 'ordered-binary' });
    const byState = new Map<string, StateReport>();
    for (const { key, value } of commits.getRange({})) {
      const [stateId] = key as [string, number];
      const c = value as CommitRecord;
      let r = byState.get(stateId);
      if (!r) {
        r = { stateId, flushes: [], tables: {}, storedPages: 0, storedVersions: 0, storedBytes: 0, unfinishedVersions: 0 };
        byState.set(stateId, r);
      }
      r.flushes.push({ version: c.version, time: new Date(c.time).toISOString(), pagesWritten: c.pagesWritten, bytesWritten: c.bytesWritten });
      r.tables = Object.fromEntries(Object.entries(c.tables).map(([name, t]) => [name, { keys: t.size }]));
    }
    for (const r of byState.values()) {
      const last = r.flushes[r.flushes.length - 1]?.version ?? 0;
      let lastPage = -1;
      for (const { key, value } of pages.getRange({ start: [r.stateId, -1, 0], end: [r.stateId, Number.MAX_SAFE_INTEGER, 0] })) {
        const [, pageId, version] = key as [string, number, number];
        r.storedVersions++;
        r.storedBytes += (value as Buffer).length;
        if (pageId !== lastPage) r.storedPages++;
        lastPage = pageId;
        if (version > last) r.unfinishedVersions++;
      }
    }
    return [...byState.values()];
  } finally {
    void root.close();
  }
}

export function formatDirReport(r: DirReport): string {
  const out: string[] = [];
  if (r.stores.length) out.push(formatReport(r.stores));
  for (const f of r.flows) {
    out.push(`flow ${f.flow} (${f.dir})`);
    if (f.checkpoints.length === 0) out.push('  no complete checkpoint');
    for (const c of f.checkpoints) out.push(`  checkpoint ${c.id}: ${c.time}, ${c.durationMs} ms, ${c.bytesWritten} bytes written${c.final ? ', final (run complete)' : ''}`);
    for (const o of f.operators) {
      out.push(`  [${o.operators.join('→')}] ×${o.parallelism}${o.stateful ? ' (stateful)' : ''}`);
      for (const i of o.instances) {
        const parts = [`#${i.subtask}`];
        if (i.stateVersion !== undefined) parts.push(`state version ${i.stateVersion}`);
        if (i.keys) parts.push(Object.entries(i.keys).map(([t, n]) => `${t}: ${n} keys`).join(', '));
        if (i.sourcePosition !== undefined) parts.push(`source position ${JSON.stringify(i.sourcePosition)}`);
        out.push(`    ${parts.join(', ')}`);
      }
    }
    for (const st of f.states) {
      out.push(`  state ${st.stateId}: ${st.storedPages} pages, ${st.storedVersions} page versions, ${(st.storedBytes / 2 ** 20).toFixed(2)} MiB${st.unfinishedVersions ? `, ${st.unfinishedVersions} versions of an unfinished checkpoint (ignored)` : ''}`);
    }
  }
  return out.join('\n');
}

export function formatReport(reports: StateReport[]): string {
  if (reports.length === 0) return 'no complete flush or checkpoint in this directory';
  const lines: string[] = [];
  for (const r of reports) {
    const last = r.flushes[r.flushes.length - 1]!;
    lines.push(`${r.stateId}: version ${last.version} at ${last.time}`);
    for (const [name, t] of Object.entries(r.tables)) lines.push(`  table ${name}: ${t.keys} keys`);
    lines.push(`  stored: ${r.storedPages} pages, ${r.storedVersions} page versions, ${(r.storedBytes / 2 ** 20).toFixed(2)} MiB`);
    if (r.unfinishedVersions) lines.push(`  ${r.unfinishedVersions} page versions of an unfinished flush (ignored; removed at next open)`);
    for (const f of r.flushes) lines.push(`  flush ${f.version}: ${f.time}, ${f.pagesWritten} pages, ${f.bytesWritten} bytes written`);
  }
  return lines.join('\n');
}
