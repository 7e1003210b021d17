// `tidepool inspect <state-dir>`: what a state directory holds, read without a lock
// (LMDB readers never block the writer, so this is safe against a live process).
//
// A directory is one of: an embedded store directory (data.mdb, one or more stores by
// name), a flow's state directory (`<state>/<flow>`: checkpoints/ and data.mdb), or a
// `--state` root (one subfolder per flow). For a flow, the checkpoint is the truth:
// an instance's key counts are those of the state version its checkpoint names, and
// page versions newer than that belong to an unfinished checkpoint (a commit record
// can exist for a checkpoint whose manifest was never written).
//
// Each stateful instance of the newest checkpoint also gets its state by kind (timers,
// windows, joins, user state: inspect-state.ts), read from the tables of its version in
// the same read transaction as everything else.
import { existsSync, readdirSync } from 'node:fs';
import { basename, join } from 'node:path';
import { open, type Database, type Transaction } from 'lmdb';
import { listManifests, readManifest, checkpointDir, type Manifest } from '../runtime/checkpoints.js';
import { COMMITS_DB, envOptions } from '../storage/io-protocol.js';
import type { CommitRecord } from '../storage/backend.js';
import { CommitTables } from '../storage/snapshot-reader.js';
import { openPageDbs, readPageChain, type PageDbs } from '../storage/page-chain.js';
import { CODEC_NONE, codecById } from '../state/codecs.js';
import { TidepoolError, errors } from '../errors.js';
import { backLmdbMap, checkNamedDbs } from '../storage/lmdb-file.js';
import { attachErrorCode } from '../storage/write-failure.js';
import { readRestorePlan } from '../storage/remote/restore-plan.js';
import { describeInstanceState, formatInstanceState, type InstanceStateReport, type OperatorInfo } from './inspect-state.js';

export interface FlushReport {
  version: number;
  time: string;
  pagesWritten: number;
  bytesWritten: number;
  /** Keys per table in this version. */
  keys: Record<string, number>;
}

export interface StateReport {
  /** The store's name (embedded store) or the partition's state id (flow). */
  stateId: string;
  /** Retained flushes (checkpoint versions), oldest first. */
  flushes: FlushReport[];
  /** Tables of the current version: the newest flush, or for a flow the version its newest checkpoint names. */
  tables: Record<string, { keys: number }>;
  storedPages: number;
  storedVersions: number;
  storedBytes: number;
  /** Page versions newer than the current version (a flush or checkpoint cut off by a crash; ignored, removed at next open). */
  unfinishedVersions: number;
  /** Flows only: the newest state version a retained checkpoint names (absent: no retained checkpoint names this partition). */
  checkpointVersion?: number;
}

export interface InstanceReport {
  subtask: number;
  stateId?: string;
  stateVersion?: number;
  sourcePosition?: unknown;
  /** Keys per table at the checkpoint's state version. */
  keys?: Record<string, number>;
  /** The instance's event-time watermark at the checkpoint, ms (absent: none yet, or Infinity after end of input). */
  watermark?: number;
  /** Stateful instances: their state by kind at the checkpoint's version (inspect-state.ts). */
  state?: InstanceStateReport;
}

export interface FlowReport {
  flow: string;
  dir: string;
  checkpoints: { id: number; time: string; durationMs: number; bytesWritten: number; final: boolean; complete: true }[];
  /** From the newest checkpoint: tasks, instances, state versions, source positions. */
  operators: { operators: string[]; parallelism: number; stateful: boolean; instances: InstanceReport[] }[];
  /** Per state partition: stored pages, versions and bytes, and versions of unfinished checkpoints. */
  states: StateReport[];
  /**
   * Restored lazily from a remote checkpoint and still copying pages in: these
   * partitions' pages may not all be local, so their state is not described.
   */
  remoteRestore?: { checkpoint: number; partitions: string[] };
}

export interface DirReport {
  stores: StateReport[];
  flows: FlowReport[];
}

const isFlowDir = (dir: string) => existsSync(checkpointDir(dir));

/** A store directory, a flow's state directory, or a --state root holding flows. */
export function inspectDir(dir: string): DirReport {
  if (!existsSync(dir)) throw errors.badOption('state-dir', `${dir} does not exist`);
  if (isFlowDir(dir)) return { stores: [], flows: [inspectFlowDir(dir)] };
  const stores = existsSync(join(dir, 'data.mdb')) ? inspectStateDir(dir) : [];
  const flows: FlowReport[] = [];
  for (const name of readdirSync(dir).sort()) {
    const sub = join(dir, name);
    if (isFlowDir(sub)) flows.push(inspectFlowDir(sub));
  }
  if (stores.length === 0 && flows.length === 0) throw errors.badOption('state-dir', `${dir} holds no tidepool state (no data.mdb, no flow checkpoints)`);
  return { stores, flows };
}

/** Manifests in id order; one deleted while we read (retain, on a live run) is skipped. */
function readManifests(dir: string): Manifest[] {
  const out: Manifest[] = [];
  for (const id of listManifests(dir)) {
    try {
      out.push(readManifest(dir, id));
    } catch (e) {
      if (listManifests(dir).includes(id)) throw e;
    }
  }
  return out;
}

export function inspectFlowDir(dir: string): FlowReport {
  const manifests = readManifests(dir);
  const newest = manifests[manifests.length - 1];
  // The version each partition is at: the newest one a retained checkpoint names.
  const named = new Map<string, number>();
  for (const m of manifests) {
    for (const t of m.tasks) for (const i of t.instances) if (i.stateId !== undefined && i.version !== undefined) named.set(i.stateId, Math.max(named.get(i.stateId) ?? 0, i.version));
  }
  // What the newest checkpoint's stateful instances need to describe their state.
  const wanted = new Map<string, { version: number; ops: OperatorInfo[]; watermark: number }>();
  for (const t of newest?.tasks ?? []) {
    const ops = t.operators.map((name, j) => ({ name, kind: t.kinds?.[j] ?? '', shape: t.shapes?.[j] }));
    // Watermarks are recorded when finite: none is −∞ (before the first) or +∞ (after end of input).
    for (const i of t.instances) if (i.stateId !== undefined && i.version !== undefined) wanted.set(i.stateId, { version: i.version, ops, watermark: i.watermark ?? (newest!.final ? Infinity : -Infinity) });
  }
  const described = new Map<string, InstanceStateReport>();
  const plan = readRestorePlan(dir);
  const describe = (stateId: string, version: number, tables: CommitTables) => {
    if (plan?.states[stateId]) return; // pages not copied in yet would read as missing
    const w = wanted.get(stateId);
    if (w && w.version === version) described.set(stateId, describeInstanceState(tables, w.ops, w.watermark));
  };
  const states = existsSync(join(dir, 'data.mdb')) ? inspectStateDir(dir, (id) => named.get(id) ?? 0, describe) : [];
  for (const s of states) if (named.has(s.stateId)) s.checkpointVersion = named.get(s.stateId);
  return {
    flow: newest?.flow ?? basename(dir),
    dir,
    checkpoints: manifests.map((m) => ({ id: m.id, time: new Date(m.time).toISOString(), durationMs: m.durationMs, bytesWritten: m.bytesWritten, final: m.final, complete: true as const })),
    operators: (newest?.tasks ?? []).map((t) => ({
      operators: t.operators,
      parallelism: t.parallelism,
      stateful: t.stateful,
      instances: t.instances.map((i) => {
        const r: InstanceReport = { subtask: i.subtask };
        if (i.stateId !== undefined) r.stateId = i.stateId;
        if (i.version !== undefined) r.stateVersion = i.version;
        if (i.position !== undefined) r.sourcePosition = i.position;
        const flush = states.find((s) => s.stateId === i.stateId)?.flushes.find((f) => f.version === i.version);
        if (flush) r.keys = flush.keys;
        if (i.watermark !== undefined && i.stateId !== undefined) r.watermark = i.watermark;
        const st = i.stateId === undefined ? undefined : described.get(i.stateId);
        if (st) r.state = st;
        return r;
      }),
    })),
    states,
    ...(plan ? { remoteRestore: { checkpoint: plan.id, partitions: Object.keys(plan.states) } } : {}),
  };
}

/** Called with each state's tables at its current version, inside the read transaction. */
export type StateVisitor = (stateId: string, version: number, tables: CommitTables) => void;

/**
 * Every store (or partition) in one LMDB environment, read in one read transaction so
 * commits and pages agree on a live directory. `current(id)`: the version to report
 * tables at and count unfinished versions from (0: the newest flush).
 */
export function inspectStateDir(dir: string, current: (stateId: string) => number = () => 0, visit?: StateVisitor): StateReport[] {
  if (!existsSync(join(dir, 'data.mdb'))) throw errors.badOption('state-dir', `${dir} holds no tidepool state (no data.mdb)`);
  // As every other open does: a data.mdb cut short is extended with zeros (which LMDB
  // rejects as corrupted) rather than read through the map past its end, a SIGBUS that
  // killed inspect; and a damaged list of databases is refused before openDB.
  backLmdbMap(dir);
  const root = open({ ...envOptions(dir, false), readOnly: true });
  try {
    checkNamedDbs(dir, root);
    // The databases first: opening one renews lmdb-js's read transaction.
    const commits = root.openDB({ name: COMMITS_DB, encoding: 'msgpack', keyEncoding: 'ordered-binary' });
    const dbs = openPageDbs(root);
    const txn = root.useReadTransaction();
    try {
      return readStates(commits, dbs, txn, current, visit);
    } finally {
      txn.done();
    }
  } catch (e) {
    // LMDB's own structures are damaged (checkNamedDbs, or lmdb-js's MDB_CORRUPTED…):
    // classified as the I/O worker classifies a damaged environment at attach.
    if (!(e instanceof TidepoolError) && e instanceof Error && attachErrorCode(e, dir) === 'TIDEPOOL_CORRUPT_STATE') throw errors.corruptState('LMDB environment', dir, e.message);
    throw e;
  } finally {
    void root.close();
  }
}

function readStates(commits: Database, dbs: PageDbs, txn: Transaction, current: (stateId: string) => number, visit?: StateVisitor): StateReport[] {
  const byState = new Map<string, StateReport>();
  const records = new Map<string, CommitRecord>();
  for (const { key, value } of commits.getRange({ transaction: txn })) {
    const [stateId] = key as [string, number];
    const c = value as CommitRecord;
    if (visit) records.set(`${stateId}\0${c.version}`, c);
    let r = byState.get(stateId);
    if (!r) byState.set(stateId, (r = { stateId, flushes: [], tables: {}, storedPages: 0, storedVersions: 0, storedBytes: 0, unfinishedVersions: 0 }));
    const keys = Object.fromEntries(Object.entries(c.tables).map(([name, t]) => [name, t.size]));
    r.flushes.push({ version: c.version, time: new Date(c.time).toISOString(), pagesWritten: c.pagesWritten, bytesWritten: c.bytesWritten, keys });
  }
  for (const r of byState.values()) {
    const at = current(r.stateId) || r.flushes[r.flushes.length - 1]!.version;
    const flush = r.flushes.find((f) => f.version === at);
    r.tables = flush ? Object.fromEntries(Object.entries(flush.keys).map(([name, keys]) => [name, { keys }])) : {};
    let lastPage = -1;
    for (const { key, value } of dbs.pages.getRange({ start: [r.stateId, -1, 0], end: [r.stateId, Number.MAX_SAFE_INTEGER, 0], transaction: txn })) {
      const [, pageId, version] = key as [string, number, number];
      r.storedVersions++;
      r.storedBytes += (value as Buffer).length;
      if (pageId !== lastPage) r.storedPages++;
      lastPage = pageId;
      if (version > at) r.unfinishedVersions++;
    }
    // Page deltas are versions of pages counted above (src/storage/page-chain.ts).
    for (const { key, value } of dbs.deltas.getRange({ start: [r.stateId, -1], end: [r.stateId, Number.MAX_SAFE_INTEGER], transaction: txn })) {
      r.storedVersions++;
      r.storedBytes += (value as Buffer).length;
      if ((key as [string, number, number])[1] > at) r.unfinishedVersions++;
    }
    const c = records.get(`${r.stateId}\0${at}`);
    if (visit && c) visit(r.stateId, at, tablesAt(dbs, txn, r.stateId, c));
  }
  return [...byState.values()];
}

/**
 * The tables of a commit, read in `txn`. Pages decode with the built-in codecs (main.ts
 * readies zstd first); a page of a custom codec cannot be read here, and the describer
 * reports that instead of the times.
 */
function tablesAt(dbs: PageDbs, txn: Transaction, stateId: string, c: CommitRecord): CommitTables {
  const readPage = (pageId: number) => readPageChain(dbs, stateId, pageId, c.version, txn);
  return new CommitTables(c, readPage, codecById(CODEC_NONE)!, (id) => codecById(id), 64);
}

const mib = (bytes: number) => `${(bytes / 2 ** 20).toFixed(2)} MiB`;

export function formatDirReport(r: DirReport): string {
  const out: string[] = [];
  if (r.stores.length) out.push(formatReport(r.stores));
  for (const f of r.flows) {
    out.push(`flow ${f.flow} (${f.dir})`);
    if (f.checkpoints.length === 0) out.push('  no complete checkpoint');
    if (f.remoteRestore) out.push(`  restored lazily from remote checkpoint ${f.remoteRestore.checkpoint}, pages still being copied in (the next run with state.remote goes on): state of ${f.remoteRestore.partitions.length} partition(s) not described`);
    for (const c of f.checkpoints) out.push(`  checkpoint ${c.id}: ${c.time}, ${c.durationMs} ms, ${c.bytesWritten} bytes written${c.final ? ', final (run complete)' : ''}`);
    for (const o of f.operators) {
      out.push(`  [${o.operators.join('→')}] ×${o.parallelism}${o.stateful ? ' (stateful)' : ''}`);
      for (const i of o.instances) {
        const parts = [`#${i.subtask}`];
        if (i.stateId !== undefined) parts.push(`state ${i.stateId}`);
        if (i.stateVersion !== undefined) parts.push(`version ${i.stateVersion}`);
        if (i.keys) parts.push(...Object.entries(i.keys).map(([t, n]) => `${t}: ${n} keys`));
        if (i.sourcePosition !== undefined) parts.push(`source position ${JSON.stringify(i.sourcePosition)}`);
        out.push(`    ${parts.join(', ')}`);
        if (i.state) out.push(`      ${formatInstanceState(i.subtask, i.state, i.watermark)}`);
      }
    }
    for (const st of f.states) {
      const notes = [];
      if (st.checkpointVersion === undefined) notes.push('named by no retained checkpoint (deleted by the next run)');
      if (st.unfinishedVersions) notes.push(`${st.unfinishedVersions} page versions of an unfinished checkpoint (ignored)`);
      out.push(`  state ${st.stateId}: ${st.storedPages} pages, ${st.storedVersions} page versions, ${mib(st.storedBytes)}${notes.map((n) => `, ${n}`).join('')}`);
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
    lines.push(`  stored: ${r.storedPages} pages, ${r.storedVersions} page versions, ${mib(r.storedBytes)}`);
    if (r.unfinishedVersions) lines.push(`  ${r.unfinishedVersions} page versions of an unfinished flush (ignored; removed at next open)`);
    for (const f of r.flushes) lines.push(`  flush ${f.version}: ${f.time}, ${f.pagesWritten} pages, ${f.bytesWritten} bytes written`);
  }
  return lines.join('\n');
}
