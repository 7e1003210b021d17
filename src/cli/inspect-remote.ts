// `tidepool inspect --remote '<state.remote JSON>'`: the checkpoints a remote store
// holds — id, time, bytes and objects each one needs (its packs, shared ones included),
// and the objects no retained checkpoint names (a torn upload, GC not run yet).
import { parseConfig } from '../config/schema.js';
import { errors } from '../errors.js';
import { openObjectStore } from '../storage/remote/object-store.js';
import { CHECKPOINTS, STATE, checkpointIdOf, decodeCheckpoint } from '../storage/remote/packs.js';

export interface RemoteCheckpointReport {
  id: number;
  time: string;
  final: boolean;
  /** Objects this checkpoint needs (packs of every partition, plus itself) and their bytes. */
  objects: number;
  bytes: number;
  partitions: number;
}

export interface RemoteFlowReport {
  flow: string;
  checkpoints: RemoteCheckpointReport[];
  /** Pack objects no checkpoint names (a torn upload; deleted after the next upload). */
  unreferenced: { objects: number; bytes: number };
}

export interface RemoteReport {
  where: string;
  prefix: string;
  flows: RemoteFlowReport[];
}

const CHECKPOINT = new RegExp(`^(.+)/${CHECKPOINTS}`);

export async function inspectRemote(json: string): Promise<RemoteReport> {
  let raw: unknown;
  try {
    raw = JSON.parse(json);
  } catch (e) {
    throw errors.input('--remote', `expected the JSON of state.remote (${(e as Error).message})`);
  }
  const spec = parseConfig({ state: { remote: raw } }).state.remote!;
  const store = await openObjectStore(spec);
  const all = await store.list(spec.prefix);
  const sizes = new Map(all.map((o) => [o.name, o.bytes]));
  // One folder per flow: <prefix><flow>/checkpoints/… and <prefix><flow>/state/….
  const flows = [...new Set(all.map((o) => CHECKPOINT.exec(o.name.slice(spec.prefix.length))?.[1]).filter((f): f is string => f !== undefined))].sort();
  const reports: RemoteFlowReport[] = [];
  for (const flow of flows) {
    const base = `${spec.prefix}${flow}/`;
    const named = new Set<string>();
    const checkpoints: RemoteCheckpointReport[] = [];
    for (const o of all.filter((x) => x.name.startsWith(base + CHECKPOINTS))) {
      const id = checkpointIdOf(o.name);
      if (id === undefined) continue;
      const body = await store.get(o.name);
      if (!body) continue; // deleted meanwhile
      const c = decodeCheckpoint(body, `${store.where}, ${o.name}`);
      const objs = new Set(Object.values(c.states).flatMap((st) => st.objects));
      for (const x of objs) named.add(x);
      const bytes = [...objs].reduce((a, x) => a + (sizes.get(x) ?? 0), o.bytes);
      checkpoints.push({ id, time: new Date(c.time).toISOString(), final: c.manifest.final, objects: objs.size + 1, bytes, partitions: Object.keys(c.states).length });
    }
    checkpoints.sort((a, b) => a.id - b.id);
    let objects = 0;
    let bytes = 0;
    for (const o of all) {
      if (!o.name.startsWith(base + STATE) || named.has(o.name)) continue;
      objects++;
      bytes += o.bytes;
    }
    reports.push({ flow, checkpoints, unreferenced: { objects, bytes } });
  }
  return { where: store.where, prefix: spec.prefix, flows: reports };
}

export function formatRemoteReport(r: RemoteReport): string {
  const lines = [`remote checkpoints in ${r.where}${r.prefix ? `, prefix ${r.prefix}` : ''}: ${r.flows.length} flow(s)`];
  for (const f of r.flows) {
    lines.push(`flow ${f.flow}: ${f.checkpoints.length} checkpoint(s)`);
    for (const c of f.checkpoints) {
      lines.push(`  checkpoint ${c.id}${c.final ? ' (final)' : ''}  ${c.time}  ${(c.bytes / 1e6).toFixed(1)} MB in ${c.objects} objects, ${c.partitions} partitions`);
    }
    if (f.unreferenced.objects > 0) lines.push(`  not named by any checkpoint: ${f.unreferenced.objects} objects, ${(f.unreferenced.bytes / 1e6).toFixed(1)} MB (deleted after the next upload)`);
  }
  return lines.join('\n');
}
