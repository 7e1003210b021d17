// The I/O worker: the only LMDB writer of its process.
//
// Every attached state (an embedded store, or one operator instance of a flow) has an
// SPSC page ring and a MessagePort. The worker drains each ring in order: PAGE frames
// become versioned puts `(stateId, pageId, version)`, FREE frames are remembered for
// GC, and a COMMIT frame writes the commit record; once LMDB reports it flushed to
// disk the state is told `durable`. Then versions no retained flush needs are deleted.
//
// Recovery: an `attempts` record names the version being written. If it is newer
// than the last commit record at attach, a flush was cut off: its pages are deleted
// before anything new is written, so they can never be mistaken for a later flush.
import { parentPort, type MessagePort } from 'node:worker_threads';
import { open, type Database, type RootDatabase } from 'lmdb';
import { RingReader } from '../src/transport/ring.js';
import {
  ATTEMPTS_DB, COMMITS_DB, FRAME_COMMIT, FRAME_FREE, FRAME_HEADER, FRAME_PAGE, PAGES_DB,
  envOptions, readFrameHeader, type AttachRequest, type IoReply,
} from '../src/storage/io-protocol.js';
import { packr } from '../src/state/values.js';
import type { CommitRecord } from '../src/storage/backend.js';

interface Env {
  root: RootDatabase;
  pages: Database<Buffer, [string, number, number]>;
  commits: Database<CommitRecord, [string, number]>;
  attempts: Database<number, string>;
  users: number;
}

interface GcEntry {
  version: number;
  written: number[];
  freed: number[];
}

interface AttachedState {
  stateId: string;
  env: Env;
  envKey: string;
  reader: RingReader;
  port: MessagePort;
  retain: number;
  attempt: number;
  written: number[];
  freed: number[];
  gc: GcEntry[];
  detaching: boolean;
  unawaitedBytes: number;
  /** Replaced by a newer attachment of the same state: write nothing more. */
  abandoned: boolean;
}

const envs = new Map<string, Env>();
/** Attached states by directory and id: a re-attach (a restarted flow) abandons the old one. */
const attached = new Map<string, AttachedState>();

function openEnv(dir: string, noSync: boolean): { env: Env; key: string } {
  const key = `${dir}\0${noSync}`;
  let env = envs.get(key);
  if (!env) {
    const root = open(envOptions(dir, noSync));
    env = {
      root,
      pages: root.openDB({ name: PAGES_DB, encoding: 'binary', keyEncoding: 'ordered-binary' }) as never,
      commits: root.openDB({ name: COMMITS_DB, encoding: 'msgpack', keyEncoding: 'ordered-binary' }) as never,
      attempts: root.openDB({ name: ATTEMPTS_DB, encoding: 'msgpack', keyEncoding: 'ordered-binary' }) as never,
      users: 0,
    };
    envs.set(key, env);
  }
  env.users++;
  return { env, key };
}

function reply(port: MessagePort, msg: IoReply): void {
  port.postMessage(msg);
}

export function lastCommitOf(env: Env, stateId: string): CommitRecord | undefined {
  for (const { value } of env.commits.getRange({ start: [stateId, Number.MAX_SAFE_INTEGER], end: [stateId, -1], reverse: true, limit: 1 })) {
    return value;
  }
  return undefined;
}

/** Deletes page versions in [from, to] of one state; returns how many. */
function deleteVersions(env: Env, stateId: string, from: number, to: number): number {
  let n = 0;
  for (const key of env.pages.getKeys({ start: [stateId, -1, 0], end: [stateId, Number.MAX_SAFE_INTEGER, 0] })) {
    const v = (key as [string, number, number])[2];
    if (v >= from && v <= to) {
      env.pages.remove(key);
      n++;
    }
  }
  return n;
}

async function attach(req: AttachRequest): Promise<void> {
  const stateKey = `${req.dir}\0${req.stateId}`;
  const previous = attached.get(stateKey);
  if (previous) {
    // The owner of the previous attachment is gone (its worker was stopped for a
    // restart): drop whatever it left in its ring, and let its queued writes land
    // before the cleanup below looks at what is stored.
    previous.abandoned = true;
    await previous.env.root.flushed;
  }
  const { env, key } = openEnv(req.dir, req.noSync);
  let last = lastCommitOf(env, req.stateId);
  let cleaned = 0;
  if (req.restoreVersion !== undefined && req.restoreVersion !== (last?.version ?? 0)) {
    // Restoring an older checkpoint: drop everything written after it.
    const target = req.restoreVersion === 0 ? undefined : env.commits.get([req.stateId, req.restoreVersion]);
    if (req.restoreVersion !== 0 && target === undefined) {
      env.users--;
      throw new Error(`state '${req.stateId}' has no flush ${req.restoreVersion} to restore (it was collected or never completed)`);
    }
    const newest = Math.max(last?.version ?? 0, env.attempts.get(req.stateId) ?? 0);
    cleaned = deleteVersions(env, req.stateId, req.restoreVersion + 1, newest);
    for (const k of env.commits.getKeys({ start: [req.stateId, req.restoreVersion + 1], end: [req.stateId, Number.MAX_SAFE_INTEGER] })) {
      await env.commits.remove(k);
    }
    await env.attempts.put(req.stateId, req.restoreVersion);
    last = target;
  }
  const lastVersion = last?.version ?? 0;
  const attempt = env.attempts.get(req.stateId) ?? 0;
  if (attempt > lastVersion) {
    cleaned += deleteVersions(env, req.stateId, lastVersion + 1, attempt);
    await env.attempts.put(req.stateId, lastVersion);
  }
  const st: AttachedState = {
    stateId: req.stateId, env, envKey: key, reader: new RingReader(req.ring), port: req.port,
    retain: req.retain, attempt: lastVersion, written: [], freed: [], gc: [], detaching: false, unawaitedBytes: 0,
    abandoned: false,
  };
  attached.set(stateKey, st);
  for (const { value } of env.commits.getRange({ start: [req.stateId, 0], end: [req.stateId, Number.MAX_SAFE_INTEGER] })) {
    st.gc.push({ version: value.version, written: value.gcWritten ?? [], freed: value.gcFreed ?? [] });
  }
  if (last) collect(st, lastVersion);
  req.port.on('message', (m: { type: string }) => {
    if (m.type === 'detach') st.detaching = true;
  });
  if (last) {
    last = { ...last };
    delete last.gcWritten;
    delete last.gcFreed;
  }
  reply(req.port, { type: 'attached', lastCommit: last, cleaned });
  void pump(st);
}

async function pump(st: AttachedState): Promise<void> {
  try {
    for (;;) {
      if (st.abandoned) {
        st.env.users--;
        return;
      }
      const frame = st.reader.read();
      if (frame) {
        await handle(st, frame);
        continue;
      }
      if (st.reader.closed) break;
      await st.reader.waitReadable(50);
    }
    // Everything written before close is handled; wait for outstanding writes.
    await st.env.root.flushed;
    detachDone(st);
  } catch (e) {
    reply(st.port, { type: 'error', message: (e as Error).message });
  }
}

function detachDone(st: AttachedState): void {
  for (const [k, v] of attached) if (v === st) attached.delete(k);
  reply(st.port, { type: 'detached' });
  st.port.close();
  if (--st.env.users === 0) {
    envs.delete(st.envKey);
    void st.env.root.close();
  }
}

async function handle(st: AttachedState, frame: Uint8Array): Promise<void> {
  const { type, version, dv } = readFrameHeader(frame);
  if (type === FRAME_PAGE) {
    if (st.attempt < version) {
      st.attempt = version;
      void st.env.attempts.put(st.stateId, version); // ordered before the page puts below
    }
    const pageId = dv.getFloat64(FRAME_HEADER, true);
    const put = st.env.pages.put([st.stateId, pageId, version], Buffer.from(frame.buffer, frame.byteOffset + FRAME_HEADER + 8, frame.byteLength - FRAME_HEADER - 8));
    st.written.push(pageId);
    // Bound what lmdb-js queues in memory: wait for a commit every ~16 MiB.
    st.unawaitedBytes += frame.byteLength;
    if (st.unawaitedBytes >= 16 << 20) {
      st.unawaitedBytes = 0;
      await put;
    }
  } else if (type === FRAME_FREE) {
    for (let off = FRAME_HEADER; off + 8 <= frame.byteLength; off += 8) st.freed.push(dv.getFloat64(off, true));
  } else if (type === FRAME_COMMIT) {
    // The GC lists travel in the commit record, so GC interrupted by a crash is
    // replayed from the retained records at the next attach.
    const record = packr.unpack(frame.subarray(FRAME_HEADER)) as CommitRecord;
    const entry: GcEntry = { version, written: st.written, freed: st.freed };
    record.gcWritten = entry.written;
    record.gcFreed = entry.freed;
    st.written = [];
    st.freed = [];
    try {
      await st.env.commits.put([st.stateId, version], record);
      await st.env.root.flushed;
    } catch (e) {
      reply(st.port, { type: 'failed', version, message: (e as Error).message });
      return;
    }
    reply(st.port, { type: 'durable', version });
    st.gc.push(entry);
    collect(st, version);
  } else {
    throw new Error(`unknown frame type ${type} on the page ring of '${st.stateId}'`);
  }
}

/**
 * Deletes what no retained flush needs once `version` is durable. With retain r, the
 * retained flushes are the r newest; versions a page had before flush W are needed
 * only by flushes older than W, so W's entry is collected when W is the oldest retained.
 */
function collect(st: AttachedState, version: number): void {
  const oldestRetained = version - st.retain + 1;
  const { pages, commits } = st.env;
  while (st.gc.length && st.gc[0]!.version <= oldestRetained) {
    const e = st.gc.shift()!;
    for (const id of e.written) {
      for (const key of pages.getKeys({ start: [st.stateId, id, 0], end: [st.stateId, id, e.version] })) pages.remove(key);
    }
    for (const id of e.freed) {
      for (const key of pages.getKeys({ start: [st.stateId, id, 0], end: [st.stateId, id, e.version + 1] })) pages.remove(key);
    }
  }
  for (const key of commits.getKeys({ start: [st.stateId, 0], end: [st.stateId, oldestRetained] })) commits.remove(key);
}

/** Deletes every trace of a state (a partition no retained checkpoint names any more). */
async function dropState(dir: string, noSync: boolean, stateId: string): Promise<number> {
  const { env } = openEnv(dir, noSync);
  try {
    let n = 0;
    for (const k of env.pages.getKeys({ start: [stateId, -1, 0], end: [stateId, Number.MAX_SAFE_INTEGER, 0] })) {
      env.pages.remove(k);
      n++;
    }
    for (const k of env.commits.getKeys({ start: [stateId, 0], end: [stateId, Number.MAX_SAFE_INTEGER] })) env.commits.remove(k);
    env.attempts.remove(stateId);
    await env.root.flushed;
    return n;
  } finally {
    env.users--;
  }
}

type DropRequest = { type: 'drop'; dir: string; noSync: boolean; stateId: string; port: MessagePort };

parentPort!.on('message', (msg: AttachRequest | DropRequest) => {
  if (msg.type === 'attach') {
    attach(msg).catch((e: Error) => reply(msg.port, { type: 'error', message: e.message }));
  } else if (msg.type === 'drop') {
    dropState(msg.dir, msg.noSync, msg.stateId).then(
      (n) => {
        msg.port.postMessage({ type: 'dropped', pages: n });
        msg.port.close();
      },
      (e: Error) => {
        msg.port.postMessage({ type: 'error', message: e.message });
        msg.port.close();
      },
    );
  }
});
