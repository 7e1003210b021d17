// The cache of compiled flow modules. A bundle in it is code tidepool runs as the
// current user, so no other user may be able to put one there or change one.
//
//   $TIDEPOOL_MODULE_CACHE                       if set
//   <dir>/node_modules/.cache/tidepool/          the nearest node_modules above the flow
//                                                module, else above the cwd, if it is yours
//   $XDG_CACHE_HOME/tidepool/, ~/.cache/tidepool/   otherwise
//
//   <stem>-<h[0..20]>.mjs     h = sha256 of the file's bytes; the url a worker gets is
//                             file:///…/<stem>-<h[0..20]>.mjs?sha256=<h>
//
// Rules, checked before every import of a bundle (by the coordinator and by each worker):
// - The cache directory is created 0700; it must be owned by you and not be writable by
//   group or others. Every directory above it must be owned by you or root and not be
//   writable by group or others unless sticky (like /tmp): the owner of a directory
//   above could otherwise swap the cache for one of theirs. Symbolic links are checked
//   where they are and where they lead.
// - A bundle must be a regular file (not a link) owned by you, not writable by group or
//   others, whose bytes hash to h. One that does not hash to h (changed after it was
//   written) is rewritten by the coordinator (temp name, then rename) and refused by a
//   worker; one that breaks the other rules is refused. Refusals are one line,
//   TIDEPOOL_MODULE_CACHE, naming the path and the reason.
// - Where there are no uids (Windows) only the hash is checked.
import { createHash, randomBytes } from 'node:crypto';
import {
  closeSync, constants, fstatSync, lstatSync, mkdirSync, openSync, readFileSync, realpathSync,
  renameSync, rmSync, statSync, writeFileSync, type Stats,
} from 'node:fs';
import { homedir } from 'node:os';
import { dirname, isAbsolute, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { errors } from '../errors.js';

const HINT = 'set TIDEPOOL_MODULE_CACHE to a directory only you can write';

const myUid = (): number | undefined => (typeof process.getuid === 'function' ? process.getuid() : undefined);

const sha256 = (bytes: Uint8Array): string => createHash('sha256').update(bytes).digest('hex');

const why = (err: unknown): string => ((err as Error)?.message ?? String(err)).replace(/\s+/g, ' ').trim();

/** Where compiled TypeScript flow modules are written (for the module at `forModule`). */
export function moduleCacheDir(forModule?: string): string {
  const set = process.env.TIDEPOOL_MODULE_CACHE;
  if (set) return resolve(set);
  const starts = forModule ? [dirname(resolve(forModule)), process.cwd()] : [process.cwd()];
  for (const start of starts) {
    const nm = nearestNodeModules(start);
    // Someone else's node_modules (a project another user installed) is not a place
    // for our bundles: its owner could replace them.
    if (nm && safeProblem(nm) === undefined) return join(nm, '.cache', 'tidepool');
  }
  const xdg = process.env.XDG_CACHE_HOME;
  return join(xdg && isAbsolute(xdg) ? xdg : join(homedir(), '.cache'), 'tidepool');
}

function nearestNodeModules(start: string): string | undefined {
  for (let dir = start; ; dir = dirname(dir)) {
    const nm = join(dir, 'node_modules');
    try {
      if (statSync(nm).isDirectory()) return nm;
    } catch {
      // not here; look further up
    }
    if (dirname(dir) === dir) return undefined;
  }
}

/** Creates the cache directory (0700) if needed; throws unless it is safe to use. */
export function openCacheDir(dir: string): string {
  try {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
  } catch (err) {
    throw errors.moduleCache(dir, `cannot create it: ${why(err)}`);
  }
  const problem = safeProblem(dir);
  if (problem) throw errors.moduleCache(dir, `${problem}; refusing to use it (${HINT})`);
  return dir;
}

/** Why `dir` (a directory) is not safe for our bundles, or undefined. */
function safeProblem(dir: string): string | undefined {
  const uid = myUid();
  try {
    if (!statSync(dir).isDirectory()) return 'is not a directory';
    if (uid === undefined) return undefined;
    const path = resolve(dir);
    const real = realpathSync(path);
    return chainProblem(path, uid, lstatSync) ?? (real === path ? undefined : chainProblem(real, uid, statSync));
  } catch (err) {
    return `cannot check it: ${why(err)}`;
  }
}

function chainProblem(path: string, uid: number, stat: (p: string) => Stats): string | undefined {
  for (let p = path; ; p = dirname(p)) {
    const self = p === path;
    const problem = statProblem(stat(p), uid, self);
    if (problem) return self ? problem : `${p}, a directory above it, ${problem}`;
    if (dirname(p) === p) return undefined;
  }
}

function statProblem(st: Stats, uid: number, self: boolean): string | undefined {
  if (st.uid !== uid && (self || st.uid !== 0)) return `is owned by uid ${st.uid}, not by you (uid ${uid})`;
  if (st.isSymbolicLink()) return undefined; // a link's mode means nothing; where it leads is checked too
  const w = st.mode & 0o022;
  if (w === 0 || (!self && st.isDirectory() && (st.mode & 0o1000) !== 0)) return undefined;
  const who = w === 0o022 ? 'group and others' : w === 0o020 ? 'group' : 'others';
  return `is writable by ${who} (mode ${(st.mode & 0o7777).toString(8).padStart(4, '0')})`;
}

type Found = 'ok' | 'missing' | 'changed' | { refused: string };

/** Reads the bundle at `file` through one descriptor (no link followed) and checks it. */
function inspectBundle(file: string, hash: string): Found {
  let fd: number;
  try {
    // O_NONBLOCK: a FIFO put in place of the file must not hang us.
    fd = openSync(file, constants.O_RDONLY | (constants.O_NOFOLLOW ?? 0) | (constants.O_NONBLOCK ?? 0));
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return 'missing';
    return { refused: code === 'ELOOP' ? 'is a symbolic link' : `cannot be read: ${why(err)}` };
  }
  try {
    const st = fstatSync(fd);
    if (!st.isFile()) return { refused: 'is not a regular file' };
    const uid = myUid();
    const problem = uid === undefined ? undefined : statProblem(st, uid, true);
    if (problem) return { refused: problem };
    return sha256(readFileSync(fd)) === hash ? 'ok' : 'changed';
  } finally {
    closeSync(fd);
  }
}

/**
 * Puts a compiled module into the (opened) cache directory unless an intact copy is
 * there, and returns the url to import it by. `stem` is a file-name-safe name.
 */
export function storeBundle(dir: string, stem: string, code: Uint8Array): string {
  const hash = sha256(code);
  const file = join(dir, `${stem}-${hash.slice(0, 20)}.mjs`);
  const found = inspectBundle(file, hash);
  if (typeof found === 'object') throw errors.moduleCache(file, `${found.refused}; refusing to use it (${HINT})`);
  if (found !== 'ok') {
    // Write then rename: a concurrent reader never sees a half-written module, and a
    // changed file is replaced, never edited.
    const tmp = join(dir, `.${stem}-${hash.slice(0, 20)}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`);
    try {
      writeFileSync(tmp, code, { mode: 0o600, flag: 'wx' });
      renameSync(tmp, file);
    } catch (err) {
      rmSync(tmp, { force: true });
      throw errors.moduleCache(dir, `cannot write the compiled flow module: ${why(err)}`);
    }
  }
  return `${pathToFileURL(file).href}?sha256=${hash}`;
}

/** Whether `url` names a bundle of the cache (a file: URL carrying its hash). */
export function isBundleUrl(url: string): boolean {
  return url.startsWith('file:') && /[?&]sha256=[0-9a-f]{64}(&|#|$)/.test(url);
}

/** Throws unless the bundle `url` names is exactly what was written, in a safe place. */
export function verifyBundle(url: string): void {
  const u = new URL(url);
  const hash = u.searchParams.get('sha256') ?? '';
  const file = fileURLToPath(u);
  const dirProblem = safeProblem(dirname(file));
  if (dirProblem) throw errors.moduleCache(dirname(file), `${dirProblem}; refusing to use it (${HINT})`);
  const found = inspectBundle(file, hash);
  if (found === 'ok') return;
  if (found === 'missing') throw errors.moduleCache(file, 'the compiled flow module is gone (removed while running?)');
  if (found === 'changed') {
    throw errors.moduleCache(file, `was changed after it was written (its bytes no longer hash to ${hash.slice(0, 20)}…); refusing to import it`);
  }
  throw errors.moduleCache(file, `${found.refused}; refusing to import it (${HINT})`);
}
