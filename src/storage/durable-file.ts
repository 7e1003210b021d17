// Small files that must be whole or absent after a crash (checkpoint manifests, the
// remote-restore plan, objects of a directory remote store): written to a temporary
// name, fsynced, renamed into place, and the directory fsynced so the rename survives.
import { closeSync, fsyncSync, openSync, renameSync, rmSync, writeSync } from 'node:fs';
import { join } from 'node:path';

/** Writes `body` to a fresh temporary file in `dir` and fsyncs it; returns its path. */
export function writeSyncedTemp(dir: string, name: string, body: string | Uint8Array): string {
  const tmp = join(dir, `.${name}.${process.pid}.${Math.random().toString(36).slice(2, 8)}.tmp`);
  const fd = openSync(tmp, 'w');
  try {
    writeSync(fd, typeof body === 'string' ? Buffer.from(body) : body);
    fsyncSync(fd);
  } catch (e) {
    closeSync(fd);
    rmSync(tmp, { force: true });
    throw e;
  }
  closeSync(fd);
  return tmp;
}

/** `dir/name` holds exactly `body` after this returns, or (after a crash before) the old content. */
export function writeFileDurably(dir: string, name: string, body: string | Uint8Array): void {
  renameSync(writeSyncedTemp(dir, name, body), join(dir, name));
  syncDir(dir);
}

/** Removes `dir/name` so that it stays removed after a crash. */
export function removeFileDurably(dir: string, name: string): void {
  rmSync(join(dir, name), { force: true });
  syncDir(dir);
}

export function syncDir(dir: string): void {
  const dfd = openSync(dir, 'r');
  try {
    fsyncSync(dfd);
  } finally {
    closeSync(dfd);
  }
}
