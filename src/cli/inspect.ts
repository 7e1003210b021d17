// `tidepool inspect <state-dir>`: what a state directory holds, read without a lock
// (LMDB readers never block the writer, so this is safe against a live process).
import { existsSync } from 'node:fs';
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
