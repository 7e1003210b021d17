// The I/O worker's side of a lazy remote restore (src/storage/remote/hydration.ts does
// the copying): `hydrate` starts or joins the copy-in of a state directory and answers
// `restored` when every page is local; `fetchPage` serves an operator blocked on a page
// that is not local yet (it waits on the shared `signal`, laid out in
// IoAttachment.fetchPageSync: 1 the page's bytes, 2 an error message, 3 read LMDB again).
import type { MessagePort } from 'node:worker_threads';
import { Hydration } from '../src/storage/remote/hydration.js';
import { readRestorePlan } from '../src/storage/remote/restore-plan.js';
import { openObjectStore, type ObjectStore, type RemoteSpec } from '../src/storage/remote/object-store.js';
import { listManifests, readManifest } from '../src/runtime/checkpoints.js';
import { durable, openEnv, releaseEnv, type Env } from './io-envs.js';
import { FETCH_HEADER } from '../src/storage/io-protocol.js';

export type HydrateRequest = { type: 'hydrate'; dir: string; spec: RemoteSpec; background: boolean; port: MessagePort };
/** From an operator thread that waits (Atomics) on `signal`: see IoAttachment.fetchPageSync. */
export type FetchRequest = { type: 'fetch'; stateId: string; pageId: number; signal: SharedArrayBuffer };

/** Lazy remote restores in progress, by state directory. */
const hydrations = new Map<string, Hydration>();
/**
 * Restores whose background copy failed, by state directory, with the environment it
 * wrote to: the run goes on (its end reports the failure), so on-demand fetches still
 * go through them while that environment is open. The next attempt starts a new one.
 */
const failed = new Map<string, { h: Hydration; env: Env }>();
/** Opened remote stores by spec: loading @azure/storage-blob takes ~0.5 s, so it starts early (preload). */
const stores = new Map<string, Promise<ObjectStore>>();

export function storeFor(spec: RemoteSpec): Promise<ObjectStore> {
  const key = JSON.stringify(spec);
  let p = stores.get(key);
  if (!p) {
    p = openObjectStore(spec);
    p.catch(() => stores.delete(key)); // a later request tries again (and reports the error)
    stores.set(key, p);
  }
  return p;
}

/** Starts (or joins) the copy-in of a lazily restored directory; replies `restored` when it is done. */
export function hydrate(req: HydrateRequest, onDone: (env: Env) => void): void {
  const running = hydrations.get(req.dir);
  const plan = running ? undefined : readRestorePlan(req.dir);
  if (!running && !plan) {
    req.port.postMessage({ type: 'restored' });
    req.port.close();
    return;
  }
  let h = running;
  if (!h) {
    failed.delete(req.dir);
    const { env } = openEnv(req.dir, false);
    const needed = (stateId: string) => listManifests(req.dir).some((id) => readManifest(req.dir, id).tasks.some((t) => t.instances.some((i) => i.stateId === stateId)));
    const created = new Hydration({ dir: req.dir, pages: env.pages, durable: () => durable(env), needed }, storeFor(req.spec), plan!, req.background);
    h = created;
    hydrations.set(req.dir, created);
    void created.done.then(
      () => {
        hydrations.delete(req.dir);
        env.restorePending = false;
        onDone(env);
        releaseEnv(env);
      },
      () => {
        // Reported below; the plan stays and the next run resumes the copy.
        hydrations.delete(req.dir);
        failed.set(req.dir, { h: created, env });
        releaseEnv(env);
      },
    );
  }
  h.done.then(
    () => req.port.postMessage({ type: 'restored', stats: h.stats }),
    (e: Error) => req.port.postMessage({ type: 'error', message: e.message.replace(/\s+/g, ' ') }),
  ).finally(() => req.port.close());
}

export function fetchPage(env: Env, m: FetchRequest): void {
  const flag = new Int32Array(m.signal, 0, 2);
  const answer = (code: 1 | 2 | 3, length = 0) => {
    flag[1] = length;
    Atomics.store(flag, 0, code);
    Atomics.notify(flag, 0);
  };
  const fail = (message: string) => {
    const text = Buffer.from(message.replace(/\s+/g, ' ')).subarray(0, m.signal.byteLength - FETCH_HEADER);
    new Uint8Array(m.signal, FETCH_HEADER).set(text);
    answer(2, text.length);
  };
  const gaveUp = failed.get(env.dir);
  const h = hydrations.get(env.dir) ?? (gaveUp?.env === env ? gaveUp.h : undefined);
  if (!h) {
    // Restored already (read again), or a lazily restored directory without state.remote.
    if (env.restorePending) fail(`${env.dir} is being restored from remote storage; run it with the same state.remote`);
    else answer(3);
    return;
  }
  h.fetchPage(m.stateId, m.pageId).then(async ({ version, bytes, stored }) => {
    stored.catch(() => undefined); // a failed put only means the page is fetched again next time
    if (bytes.length <= m.signal.byteLength - FETCH_HEADER) {
      new Uint8Array(m.signal, FETCH_HEADER).set(bytes);
      new Float64Array(m.signal, 8, 1)[0] = version;
      answer(1, bytes.length); // the reader goes on with these bytes while LMDB commits them
    } else {
      await stored.catch(() => undefined);
      answer(3);
    }
  }, (e: Error) => fail(e.message));
}

/** The process is exiting: stops every background copy at a pack boundary; resolves when they have stopped (or after `timeoutMs`). */
export async function stopCopyIns(timeoutMs: number): Promise<void> {
  const all = [...hydrations.values()].filter((h) => h.background); // without a background copy there is nothing to stop
  for (const h of all) h.stop();
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([Promise.all(all.map((h) => h.done.catch(() => undefined))), new Promise((r) => (timer = setTimeout(r, timeoutMs)))]);
  clearTimeout(timer);
}
