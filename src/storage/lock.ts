// Exclusive ownership of one (directory, name) state across processes.
//
// LMDB itself allows many processes, but a page space's cache, spill file and
// version counter do not: two writers would interleave flushes. The lock is a listening
// Unix socket. On Linux it lives in the abstract namespace (no file), which the
// kernel releases the instant the owning process dies — SIGKILL included — so a crash
// never leaves a stale lock behind. Elsewhere it is a socket file in the state
// directory; a leftover file nobody listens on is stale and is replaced.
// Inside one process a registry refuses a second open before the socket is tried.
import { createHash } from 'node:crypto';
import { createServer, connect, type Server } from 'node:net';
import { readFileSync, realpathSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { errors } from '../errors.js';

const heldInProcess = new Set<string>();

export interface StoreLock {
  release(): Promise<void>;
}

function listen(server: Server, path: string): Promise<NodeJS.ErrnoException | undefined> {
  return new Promise((resolve) => {
    server.once('error', (e) => resolve(e as NodeJS.ErrnoException));
    server.listen({ path, exclusive: true }, () => resolve(undefined));
  });
}

function isLive(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect({ path });
    s.once('connect', () => { s.destroy(); resolve(true); });
    s.once('error', () => resolve(false));
  });
}

/**
 * `ownerFile: false` writes no `<name>.owner` file (a flow's state directory must stay
 * byte for byte unchanged by a run that is refused); the holder is then unnamed.
 */
export async function acquireStoreLock(dir: string, name: string, opts: { ownerFile?: boolean } = {}): Promise<StoreLock> {
  const writeOwner = opts.ownerFile ?? true;
  const real = realpathSync(dir);
  const id = createHash('sha256').update(`${real}\0${name}`).digest('hex').slice(0, 40);
  if (heldInProcess.has(id)) throw errors.storeLocked(dir, name, `this process (pid ${process.pid})`);
  const ownerFile = join(real, `${name}.owner`);
  const abstract = process.platform === 'linux';
  const path = abstract ? `\0tidepool-${id}` : join(real, `${name}.lock`);
  const server = createServer((c) => c.destroy());
  let err = await listen(server, path);
  if (err?.code === 'EADDRINUSE' && !abstract && !(await isLive(path))) {
    rmSync(path, { force: true }); // stale socket file from a crashed process
    err = await listen(server, path);
  }
  if (err) {
    if (err.code !== 'EADDRINUSE') throw errors.io(`cannot lock store '${name}' at ${dir}`, err);
    let holder = 'another process';
    if (writeOwner) try {
      holder = `another process (pid ${readFileSync(ownerFile, 'utf8').trim()})`;
    } catch {
      /* the owner file is informational only */
    }
    throw errors.storeLocked(dir, name, holder);
  }
  server.unref(); // the lock must not keep the process alive
  heldInProcess.add(id);
  try {
    if (writeOwner) writeFileSync(ownerFile, `${process.pid}\n`);
  } catch {
    /* informational */
  }
  let released = false;
  return {
    async release() {
      if (released) return;
      released = true;
      heldInProcess.delete(id);
      if (writeOwner) rmSync(ownerFile, { force: true });
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
