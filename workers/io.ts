// The I/O worker: the only LMDB writer of its process.
//
// Every attached state (an embedded store, or one operator instance of a flow) has an
// SPSC page ring and a MessagePort. The worker drains each ring in order: PAGE frames
// become versioned puts `(stateId, pageId, version)`, FREE frames are remembered for
// GC, and a COMMIT frame writes the commit record; once LMDB has synced it to disk
// the state is told `durable`. Then versions no retained flush needs are deleted.
//
// Recovery: an `attempts` record names the version being written; it is committed
// before the first page of that version is put. If it is newer than the last commit
// record at attach, a flush was cut off: its pages are deleted before anything new is
// written, so they can never be mistaken for a later flush (io-recovery.ts).
//
// A lazily restored state directory (io-copy-in.ts) has its pages copied in from
// remote storage meanwhile; until that is done its GC and partition drops wait.
//
// A failed write (a full disk, see src/storage/write-failure.ts) fails its flush: no
// further page of it is put, its commit record is not written, the owner is told
// `failed` (and may retry), and the pages it did store are deleted before the next
// flush of that state writes anything.
import { parentPort, type MessagePort } from 'node:worker_threads';
import { RingReader } from '../src/transport/ring.js';
import { isDeltaEnvelope } from '../src/state/page-format.js';
import { DeltaHeads } from './io-deltas.js';
import { recoverState, verifyNewest } from './io-recovery.js';
import { FRAME_BODY, FRAME_COMMIT, FRAME_FREE, FRAME_HEADER, FRAME_PAGE, readFrameHeader, type AttachRequest, type IoReply } from '../src/storage/io-protocol.js';
import { packr } from '../src/state/values.js';
import type { CommitRecord } from '../src/storage/backend.js';
import { decodeCommit, sealCommit } from '../src/storage/commit-record.js';
import { WriteGroup, attachErrorCode, isDiskFull, guardLmdbFailures, quietly } from '../src/storage/write-failure.js';
import { closeAllEnvs, closeEnvsOf, durable, openEnv, releaseEnv, type Env } from './io-envs.js';
import { fetchPage, hydrate, stopCopyIns, storeFor, type FetchRequest, type HydrateRequest } from './io-copy-in.js';
import { Staging } from './io-staging.js';
import { PooledPages, closeCodecPool, loadCodecPool } from './io-codec-pool.js';
import { collect, dropState, type GcEntry } from './io-gc.js';
import type { RemoteSpec } from '../src/storage/remote/object-store.js';

guardLmdbFailures();



interface AttachedState {
  stateId: string;
  env: Env;
  reader: RingReader;
  port: MessagePort;
  retain: number;
  attempt: number;
  /** The state's delta heads (io-deltas.ts): loaded at attach, kept here. */
  heads: DeltaHeads;
  /** Pages of the flush being written, stored whole (their GC list) and as deltas. */
  written: number[];
  deltas: number[];
  freed: number[];
  gc: GcEntry[];
  detaching: boolean;
  /** Replaced by a newer attachment of the same state: write nothing more. */
  abandoned: boolean;
  /** The flush whose frames are being handled (its attempts record is written). */
  begun: number;
  /** A flush has begun and its commit is not handled yet. */
  writing?: boolean;
  /** Bytes of page frames in the flush being handled (for the disk-full check). */
  flushBytes: number;
  /** Envelope bytes put for the flush being handled (its commit record's bytesWritten). */
  stored: number;
  /** BODY frames go to the codec pool (attached with `codecPool`). */
  pooled?: PooledPages;
  /** The writes of the flush being handled (its failure fails the flush). */
  writes: WriteGroup;
  /** Pages that failed flushes stored: deleted before the next flush writes (rule 4). */
  leftovers: { version: number; pageIds: number[]; deltaIds: number[] }[];
  /** The newest durable version whose GC waits for a remote restore. */
  gcDeferred?: number;
  /** The pump, until it returned. */
  pumping?: Promise<void>;
}

const noop = () => undefined;
/** Page bytes between the rings and LMDB's asynchronous puts (io-staging.ts). */
const staging = new Staging();
/** Attached states by directory and id: a re-attach (a restarted flow) abandons the old one. */
const attached = new Map<string, AttachedState>();



function reply(port: MessagePort, msg: IoReply): void {
  port.postMessage(msg);
}

async function attach(req: AttachRequest): Promise<void> {
  const stateKey = `${req.dir}\0${req.stateId}`;
  const previous = attached.get(stateKey);
  if (previous) {
    // The owner of the previous attachment is gone (its worker was stopped for a
    // restart): drop whatever it left in its ring, and let its queued writes land
    // before the cleanup below looks at what is stored.
    previous.abandoned = true;
    await previous.pooled?.settled();
    await previous.writes.settled();
    await quietly.settled(); // its GC too: the heads are read below
    await durable(previous.env).catch(noop);
  }
  if (req.codecPool) await loadCodecPool();
  const { env } = openEnv(req.dir, req.noSync);
  let last: CommitRecord | undefined;
  let cleaned = 0;
  let heads: DeltaHeads;
  try {
    ({ last, cleaned } = await recoverState(env, req.stateId, req.restoreVersion));
    heads = DeltaHeads.load(env, req.stateId);
    verifyNewest(env, req.stateId, heads, last);
  } catch (e) {
    env.users--;
    throw e;
  }
  const lastVersion = last?.version ?? 0;
  const st: AttachedState = {
    stateId: req.stateId, env, reader: new RingReader(req.ring), port: req.port,
    retain: req.retain, attempt: lastVersion, written: [], deltas: [], freed: [], gc: [], detaching: false,
    heads,
    abandoned: false, begun: lastVersion, flushBytes: 0, stored: 0, writes: new WriteGroup(), leftovers: [],
  };
  if (req.codecPool) {
    st.pooled = new PooledPages(req.codecPool, {
      put: (pageId, version, envelope) => (st.writes.failure || st.abandoned ? undefined : putPage(st, pageId, version, envelope)),
      fail: (e) => st.writes.fail(e),
    });
  }
  attached.set(stateKey, st);
  for (const { key, value } of env.commitsRaw.getRange({ start: [req.stateId, 0], end: [req.stateId, Number.MAX_SAFE_INTEGER] })) {
    // A damaged older record only loses its GC replay (its pages stay until the state is dropped).
    let r: CommitRecord;
    try {
      r = decodeCommit(value, req.stateId, (key as [string, number])[1], env.dir);
    } catch {
      continue;
    }
    st.gc.push({ version: r.version, written: r.gcWritten ?? [], freed: r.gcFreed ?? [] });
  }
  if (last) collect(st, lastVersion);
  req.port.on('message', (m: { type: string }) => {
    if (m.type === 'detach') st.detaching = true;
    else if (m.type === 'fetch') fetchPage(st.env, m as unknown as FetchRequest);
  });
  if (last) {
    last = { ...last };
    delete last.gcWritten;
    delete last.gcFreed;
    delete last.gcDeltas;
  }
  reply(req.port, { type: 'attached', lastCommit: last, cleaned });
  st.pumping = pump(st);
}

async function pump(st: AttachedState): Promise<void> {
  try {
    for (;;) {
      if (st.abandoned) {
        st.env.users--;
        return;
      }
      const room = staging.ready();
      if (room) await room;
      // A page frame is copied from the ring into the staging slab (lmdb-js reads it
      // later), a BODY frame into its codec-pool task; the rest are small and copied on their own.
      let frame: Uint8Array | null = null;
      st.reader.drain((view) => {
        frame = view[0] === FRAME_PAGE ? staging.copy(view) : view[0] === FRAME_BODY && st.pooled ? st.pooled.stage(view) : view.slice();
      }, 1);
      if (frame) {
        let put: { put: Promise<unknown> } | undefined;
        try {
          put = await handle(st, frame);
        } finally {
          staging.settle(frame, put?.put);
        }
        continue;
      }
      if (st.reader.closed) break;
      st.pooled?.dispatch(); // the ring ran dry: let the pool work on what it has meanwhile
      await st.reader.waitReadable(50);
    }
    // Everything written before close is handled; wait for outstanding writes.
    await st.pooled?.settled();
    await st.writes.settled();
    await quietly.settled();
    await durable(st.env).catch(noop); // what is not durable here is GC, replayed at the next attach
    detachDone(st);
  } catch (e) {
    reply(st.port, { type: 'error', message: (e as Error).message });
  }
}

function detachDone(st: AttachedState): void {
  for (const [k, v] of attached) if (v === st) attached.delete(k);
  reply(st.port, { type: 'detached' });
  st.port.close();
  releaseEnv(st.env);
}

/**
 * Before the first frame of flush `version` is handled: the pages of failed flushes
 * are deleted, then the attempts record names `version` — both committed before any
 * page of it is put, so after a crash nothing of an unfinished flush can be read.
 */
async function begin(st: AttachedState, version: number): Promise<void> {
  if (st.begun === version) return;
  st.begun = version;
  st.writing = true;
  st.flushBytes = 0;
  st.stored = 0;
  const { pages, commits, attempts } = st.env;
  const w = st.writes;
  if (st.leftovers.length) {
    for (const { version: v, pageIds, deltaIds } of st.leftovers) {
      w.add(commits.remove([st.stateId, v])); // written, but its flush failed after
      for (const id of pageIds) w.add(pages.remove([st.stateId, id, v]));
      // Looked for both ways, as after a crash: a failed flush may have stored a delta
      // without its head entry, or the other way round.
      if (deltaIds.length) st.heads.dropFailed(v, deltaIds, (p) => w.add(p));
    }
    await w.settled();
    if (w.failure) return;
    st.leftovers = [];
  }
  if (st.attempt < version) {
    w.add(attempts.put(st.stateId, version));
    await w.settled();
    if (!w.failure) st.attempt = version;
  }
}

/**
 * Handles one frame; for a PAGE frame returns its put, boxed (an async function would
 * wait for a returned promise), as the frame's bytes must live until it settles.
 */
async function handle(st: AttachedState, frame: Uint8Array): Promise<{ put: Promise<unknown> } | undefined> {
  const { type, version, dv } = readFrameHeader(frame);
  if (type !== FRAME_PAGE && type !== FRAME_BODY && type !== FRAME_FREE && type !== FRAME_COMMIT) {
    throw new Error(`unknown frame type ${type} on the page ring of '${st.stateId}'`);
  }
  if (st.begun !== version) await begin(st, version);
  if (type === FRAME_PAGE) {
    st.flushBytes += frame.byteLength;
    if (st.writes.failure) return; // the flush has failed: put nothing more of it
    const pageId = dv.getFloat64(FRAME_HEADER, true);
    const put = putPage(st, pageId, version, Buffer.from(frame.buffer, frame.byteOffset + FRAME_HEADER + 8, frame.byteLength - FRAME_HEADER - 8));
    return { put }; // what lmdb-js queues is bounded by the staging slabs
  } else if (type === FRAME_BODY) {
    st.flushBytes += frame.byteLength;
    if (st.writes.failure) return;
    if (!st.pooled) throw new Error(`a BODY frame on the page ring of '${st.stateId}', which has no codec pool`);
    await st.pooled.room();
    st.pooled.add(frame, dv.getFloat64(FRAME_HEADER, true), version);
  } else if (type === FRAME_FREE) {
    for (let off = FRAME_HEADER; off + 8 <= frame.byteLength; off += 8) st.freed.push(dv.getFloat64(off, true));
  } else {
    // The GC lists travel in the commit record, so GC interrupted by a crash is
    // replayed from the retained records at the next attach.
    await st.pooled?.settled(); // every page before the COMMIT is put (or the flush failed)
    const record = packr.unpack(frame.subarray(FRAME_HEADER)) as CommitRecord;
    record.bytesWritten = st.stored;
    const entry: GcEntry = { version, written: st.written, freed: st.freed };
    record.gcWritten = entry.written;
    record.gcFreed = entry.freed;
    const deltas = st.deltas;
    record.gcDeltas = deltas;
    st.written = [];
    st.deltas = [];
    st.freed = [];
    const w = st.writes;
    if (!w.failure) w.add(st.env.commits.put([st.stateId, version], sealCommit(record)));
    await w.settled();
    if (!w.failure) {
      try {
        await durable(st.env);
      } catch (e) {
        w.fail(e);
      }
    }
    const f = await w.take();
    st.writing = false;
    if (f) {
      st.leftovers.push({ version, pageIds: entry.written, deltaIds: deltas });
      st.begun = -1; // a retry of this version begins again (and deletes the leftovers first)
      const diskFull = isDiskFull(f, st.env.dir, st.flushBytes);
      const codec = f.codec ? st.pooled?.name : undefined;
      reply(st.port, { type: 'failed', version, message: f.message.replace(/\s+/g, ' '), diskFull: diskFull && !codec, dir: st.env.dir, codec });
      return;
    }
    reply(st.port, { type: 'durable', version, bytes: record.bytesWritten });
    st.gc.push(entry);
    collect(st, version);
  }
}

/** Puts one page envelope of `version` (a PAGE frame's, or one the codec pool returned). */
function putPage(st: AttachedState, pageId: number, version: number, envelope: Buffer): Promise<unknown> {
  st.stored += envelope.length;
  // A delta's older versions are its chain: only a whole version makes them garbage.
  if (isDeltaEnvelope(envelope)) {
    st.deltas.push(pageId);
    return st.writes.add(st.heads.put(pageId, version, envelope, (p) => st.writes.add(p)));
  }
  st.written.push(pageId);
  return st.writes.add(st.env.pages.put([st.stateId, pageId, version], envelope));
}

type DropRequest = { type: 'drop'; dir: string; noSync: boolean; stateId: string; port: MessagePort };
type ForgetRequest = { type: 'forget'; dir: string; port: MessagePort };

/**
 * A run starts afresh in `dir` and deletes it: attachments an earlier attempt in this
 * process left (its workers were stopped, never detached) stop, their queued writes
 * land, and the directory's environments close — or the next attach would read the
 * deleted files' last flush through the still-open environment.
 */
async function forgetDir(dir: string): Promise<void> {
  const mine = [...attached].filter(([, st]) => st.env.dir === dir);
  for (const [k, st] of mine) {
    st.abandoned = true;
    attached.delete(k);
  }
  await Promise.all(mine.map(async ([, st]) => {
    await st.pumping;
    await st.pooled?.settled();
    await st.writes.settled();
  }));
  await quietly.settled();
  await closeEnvsOf(dir);
}
/**
 * The process is about to exit (IoClient.shutdown): stop background copies at a pack
 * boundary, let every queued LMDB write finish, close the environments, then end this
 * thread — so that process.exit never tears it down inside an lmdb-js call.
 */
async function shutdown(): Promise<void> {
  await stopCopyIns(2000);
  await Promise.all([...attached.values()].map(async (st) => {
    await st.pooled?.settled();
    await st.writes.settled();
  }));
  await quietly.settled();
  await closeCodecPool();
  await closeAllEnvs();
  process.exit(0); // in a worker: ends this thread only
}

parentPort!.on('message', (msg: AttachRequest | DropRequest | ForgetRequest | HydrateRequest | { type: 'shutdown' } | { type: 'preload'; spec: RemoteSpec }) => {
  if (msg.type === 'forget') {
    answer(msg.port, forgetDir(msg.dir).then(() => ({ type: 'forgotten' })));
  } else if (msg.type === 'preload') {
    storeFor(msg.spec).catch(() => undefined); // errors surface when a copy-in uses it
  } else if (msg.type === 'shutdown') {
    void shutdown().catch(() => process.exit(0));
  } else if (msg.type === 'hydrate') {
    try {
      hydrate(msg, (env) => {
        // Not while a flush is being written, so GC's deletes never interleave with a
        // flush's puts (the heads' edits are ordered by DeltaHeads either way). Such a
        // state collects at that flush's end (collect takes every pending entry).
        for (const st of attached.values()) if (st.env === env && st.gcDeferred !== undefined && !st.writing) collect(st, st.gcDeferred);
      });
    } catch (e) {
      msg.port.postMessage({ type: 'error', message: (e as Error).message.replace(/\s+/g, ' ') });
      msg.port.close();
    }
  } else if (msg.type === 'attach') {
    attach(msg).catch((e: Error) => reply(msg.port, { type: 'error', message: e.message.replace(/\s+/g, ' '), code: attachErrorCode(e, msg.dir) }));
  } else if (msg.type === 'drop') {
    answer(msg.port, dropState(msg.dir, msg.noSync, msg.stateId).then((n) => ({ type: 'dropped', pages: n })));
  }
});

/** The one reply to a request on its own port: what `work` resolves to, or its error. */
function answer(port: MessagePort, work: Promise<Record<string, unknown>>): void {
  work.then(
    (m) => port.postMessage(m),
    (e: Error) => port.postMessage({ type: 'error', message: e.message }),
  ).finally(() => port.close());
}
