// ObjectStore on a directory (a mounted network share, a second disk, or tests):
// objects are files, written to a temporary name, fsynced and renamed; createIfAbsent
// links the temporary file to its name, which fails atomically if the name exists.
import { closeSync, linkSync, mkdirSync, openSync, readdirSync, readFileSync, readSync, renameSync, rmSync, statSync } from 'node:fs';
import { basename, dirname, join, relative, sep } from 'node:path';
import { syncDir, writeSyncedTemp } from '../durable-file.js';
import { errors } from '../../errors.js';
import type { ObjectStore, StoredObject } from './object-store.js';

export class DirStore implements ObjectStore {
  readonly where: string;
  constructor(private readonly root: string) {
    this.where = `dir ${root}`;
  }

  async open(): Promise<void> {
    try {
      mkdirSync(this.root, { recursive: true });
      if (!statSync(this.root).isDirectory()) throw new Error('not a directory');
    } catch (e) {
      throw errors.remote(this.where, `cannot use the directory (${(e as Error).message})`);
    }
  }

  private path(name: string): string {
    if (name.split('/').some((p) => p === '' || p === '.' || p === '..')) throw errors.remote(this.where, `bad object name '${name}'`);
    return join(this.root, ...name.split('/'));
  }

  private writeTemp(path: string, body: Uint8Array): string {
    mkdirSync(dirname(path), { recursive: true });
    return writeSyncedTemp(dirname(path), basename(path), body);
  }

  async put(name: string, body: Uint8Array): Promise<void> {
    const path = this.path(name);
    renameSync(this.writeTemp(path, body), path);
    syncDir(dirname(path));
  }

  async createIfAbsent(name: string, body: Uint8Array): Promise<boolean> {
    const path = this.path(name);
    const tmp = this.writeTemp(path, body);
    try {
      linkSync(tmp, path);
      syncDir(dirname(path));
      return true;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'EEXIST') return false;
      throw e;
    } finally {
      rmSync(tmp, { force: true });
    }
  }

  async get(name: string): Promise<Buffer | undefined> {
    try {
      return readFileSync(this.path(name));
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw e;
    }
  }

  async getRange(name: string, offset: number, length: number): Promise<Buffer | undefined> {
    let fd: number;
    try {
      fd = openSync(this.path(name), 'r');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw e;
    }
    try {
      const out = Buffer.allocUnsafe(length);
      let got = 0;
      while (got < length) {
        const n = readSync(fd, out, got, length - got, offset + got);
        if (n === 0) break;
        got += n;
      }
      return out.subarray(0, got);
    } finally {
      closeSync(fd);
    }
  }

  async list(prefix: string): Promise<StoredObject[]> {
    const out: StoredObject[] = [];
    const walk = (dir: string) => {
      let names: string[];
      try {
        names = readdirSync(dir);
      } catch {
        return;
      }
      for (const n of names) {
        const p = join(dir, n);
        const st = statSync(p, { throwIfNoEntry: false });
        if (st === undefined) continue;
        if (st.isDirectory()) walk(p);
        else if (!n.endsWith('.tmp')) {
          const name = relative(this.root, p).split(sep).join('/');
          if (name.startsWith(prefix)) out.push({ name, bytes: st.size });
        }
      }
    };
    walk(this.root);
    return out;
  }

  async delete(name: string): Promise<void> {
    rmSync(this.path(name), { force: true });
  }
}
