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

export interface RemoteReport {
  where: string;
  prefix: string;
  checkpoints: RemoteCheckpointReport[];
  unreferenced: { objects: number; bytes: number };
}

export async function inspectRemote(json: string): Promise<RemoteReport> {
  let raw: unknown;
  try {
    raw = JSON.parse(json);
  } catch (e) {
    throw errors.input('--remote', `expected the JSON of state.remote (${(e as Error).message})`);
  }
  const spec = parseConfig({ state: { remote: raw } }).state.remote!;
  const store = await openObjectStore(spec);
  const sizes = new Map((await store.list(spec.prefix + STATE)).map((o) => [o.name, o.bytes]));
  const named = new Set<string>();
  const checkpoints: RemoteCheckpointReport[] = [];
  for (const o of await store.list(spec.prefix + CHECKPOINTS)) {
    const id = checkpointIdOf(o.name);
    if (id === undefined) continue;
    const body = await store.get(o.name);
    if (!body) continue; // deleted meanwhile
    const c = decodeCheckpoint(body, `${store.where}, ${o.name}`);
    const objs = new Set(Object.values(c.states).flatMap((s) => s.objects));
    for (const x of objs) named.add(x);
    const bytes = [...objs].reduce((a, x) => a + (sizes.get(x) ?? 0), o.bytes);
    checkpoints.push({ id, time: new Date(c.time).toISOString(), final: c.manifest.final, objects: objs.size + 1, bytes, partitions: Object.keys(c.states).length });
  }
  checkpoints.sort((a, b) => a.id - b.id);
  let objects = 0;
  let bytes = 0;
  for (const [name, size] of sizes) {
    if (named.has(name)) continue;
    objects++;
    bytes += size;
  }
  return { where: store.where, prefix: spec.prefix, checkpoints, unreferenced: { objects, bytes } };
}

export function formatRemoteReport(r: RemoteReport): string {
  const lines = [`remote checkpoints in ${r.where}${r.prefix ? `, prefix ${r.prefix}` : ''}: ${r.checkpoints.length}`];
  for (const c of r.checkpoints) {
    lines.push(`  checkpoint ${c.id}${c.final ? ' (final)' : ''}  ${c.time}  ${(c.bytes / 1e6).toFixed(1)} MB in ${c.objects} objects, ${c.partitions} partitions`);
  }
  if (r.unreferenced.objects > 0) lines.push(`  not named by any checkpoint: ${r.unreferenced.objects} objects, ${(r.unreferenced.bytes / 1e6).toFixed(1)} MB (deleted after the next upload)`);
  return lines.join('\n');
}
