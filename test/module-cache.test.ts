// The cache of compiled flow modules is per user and trusted only when no other user
// can write it: another uid (nobody, switched to with setpriv) plants directories and
// files, and tidepool must refuse them or not use them; a bundle changed after it was
// written (same user) is rebuilt by the coordinator and refused by a worker.
//
// Every load runs in a child process (a fresh ESM module map: a bundle imported once is
// never read again in the same process), with its own cwd, HOME, XDG_CACHE_HOME, TMPDIR.
// The child runs as root; only the planting is done as the other user.
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  chmodSync, chownSync, cpSync, existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync,
  rmSync, statSync, symlinkSync, writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { TIDEPOOL_ENTRY } from '../src/flow/module-loader.js';

const RAW = fileURLToPath(new URL('../../test-fixtures/flows/', import.meta.url));
const LOADER = new URL('../src/flow/module-loader.js', import.meta.url).href;

/** The other user: nobody, or a test user made for it. Undefined when we cannot switch uid. */
function otherUser(): { uid: number; gid: number } | undefined {
  if (process.getuid?.() !== 0) return undefined;
  const id = (name: string, flag: string) => {
    const r = spawnSync('id', [flag, name], { encoding: 'utf8' });
    return r.status === 0 ? Number(r.stdout.trim()) : undefined;
  };
  let name = 'nobody';
  if (id(name, '-u') === undefined) {
    name = 'tidepool-test';
    if (id(name, '-u') === undefined) spawnSync('useradd', ['--system', '--no-create-home', '--shell', '/bin/sh', name]);
  }
  const uid = id(name, '-u');
  const gid = id(name, '-g');
  return uid === undefined || gid === undefined || uid === 0 ? undefined : { uid, gid };
}

const other = otherUser();
const skip = other ? false : 'switching to another uid needs root (setpriv); not running as root here';

const tmp = mkdtempSync(join(tmpdir(), 'tidepool-module-cache-test-'));
chmodSync(tmp, 0o755); // the other user must reach the shared directory below
t.teardown(() => rmSync(tmp, { recursive: true, force: true }));

/** A new writable-by-all sticky directory, like /tmp. */
let sharedDirs = 0;
function sharedDir(): string {
  const dir = join(tmp, `shared-${sharedDirs++}`);
  mkdirSync(dir);
  chmodSync(dir, 0o1777);
  return dir;
}
/** The temp dir (TMPDIR) of the children, and where the other user plants things. */
const shared = sharedDir();

/** Runs `script` (sh) as the other user; fails loudly if it fails. */
function asOther(script: string, args: string[] = [], input?: string): void {
  const r = spawnSync(
    'setpriv',
    [`--reuid=${other!.uid}`, `--regid=${other!.gid}`, '--clear-groups', 'sh', '-c', script, 'sh', ...args],
    { encoding: 'utf8', input },
  );
  if (r.status !== 0) throw new Error(`as uid ${other!.uid}: ${script}: ${r.stderr || r.error}`);
}

let projects = 0;
/** A copy of the fixture flows (typed.ts and its helpers) in a directory of its own. */
function project(under = tmp): string {
  const dir = join(under, `project-${projects++}`);
  mkdirSync(join(dir, 'flows'), { recursive: true });
  cpSync(join(RAW, 'typed.ts'), join(dir, 'flows', 'typed.ts'));
  cpSync(join(RAW, 'lib'), join(dir, 'flows', 'lib'), { recursive: true });
  return dir;
}

/** Code that, if tidepool ever imported it, leaves `marker` behind. */
const planted = (marker: string) =>
  `import { writeFileSync } from 'node:fs';\nwriteFileSync(${JSON.stringify(marker)}, 'planted code ran');\nexport default 1;\n`;

interface Loaded {
  url?: string;
  name?: string;
  sameClass?: boolean;
  code?: string;
  message?: string;
}

// Runs jobs one after the other: refusals import nothing, so they can share a process;
// a load that must read a bundle again after it changed gets a process of its own.
const CHILD = `
const { loadFlowModule, importFlow } = await import(process.env.T_LOADER);
const tidepool = await import(process.env.T_INDEX);
const base = { ...process.env };
const out = [];
for (const job of JSON.parse(process.env.T_JOBS)) {
  for (const k of Object.keys(process.env)) if (!(k in base)) delete process.env[k];
  Object.assign(process.env, base);
  for (const [k, v] of Object.entries(job.env)) if (v === null) delete process.env[k]; else process.env[k] = v;
  process.chdir(job.cwd);
  try {
    const r = job.url ? { url: job.url, flow: await importFlow(job.url) } : await loadFlowModule(job.module);
    out.push({ url: r.url, name: r.flow.name, sameClass: r.flow instanceof tidepool.Flow });
  } catch (e) {
    out.push({ code: e.code, message: e.message });
  }
}
console.log(JSON.stringify(out));`;

interface Job {
  module?: string;
  url?: string;
  cwd?: string;
  /** Set for this job; undefined removes the variable. */
  env?: Record<string, string | undefined>;
}

/**
 * Loads flow modules (or, with `url`, imports a compiled one as a worker does) in one
 * child process, in order; returns what each gave.
 */
function loadAll(jobs: Job[]): Loaded[] {
  const env: Record<string, string> = {
    PATH: process.env.PATH ?? '/usr/bin:/bin',
    HOME: join(tmp, 'home'),
    XDG_CACHE_HOME: join(tmp, 'xdg'),
    TMPDIR: shared,
    T_LOADER: LOADER,
    T_INDEX: pathToFileURL(TIDEPOOL_ENTRY).href,
    T_JOBS: JSON.stringify(jobs.map((j) => {
      const cwd = j.cwd ?? join(tmp, 'cwd');
      mkdirSync(cwd, { recursive: true });
      const jobEnv = Object.fromEntries(Object.entries(j.env ?? {}).map(([k, v]) => [k, v ?? null]));
      return { module: j.module, url: j.url, cwd, env: jobEnv };
    })),
  };
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', CHILD], { cwd: tmp, env, encoding: 'utf8' });
  const line = r.stdout.trim().split('\n').pop() ?? '';
  try {
    return JSON.parse(line) as Loaded[];
  } catch {
    throw new Error(`child failed (${r.status}): ${r.stderr}${r.stdout}`);
  }
}

const load = (job: Job): Loaded => loadAll([job])[0]!;

const fileOf = (url: string) => fileURLToPath(url);
const hashOf = (url: string) => new URL(url).searchParams.get('sha256');
const sha256 = (file: string) => createHash('sha256').update(readFileSync(file)).digest('hex');

t.test('where the cache is: node_modules of the project, else ~/.cache (XDG), never the shared temp dir', { skip }, async (t) => {
  const proj = project(); // has a node_modules
  mkdirSync(join(proj, 'node_modules'));
  const loose = project(); // none above it
  const theirs = project(); // another user's node_modules
  mkdirSync(join(theirs, 'node_modules'));
  chownSync(join(theirs, 'node_modules'), other!.uid, other!.gid);
  const unset = { TIDEPOOL_MODULE_CACHE: undefined };
  const [inProject, fromCwd, xdg, home, passedOver] = loadAll([
    { module: join(proj, 'flows', 'typed.ts'), env: unset },
    { module: join(loose, 'flows', 'typed.ts'), cwd: proj, env: unset },
    { module: join(loose, 'flows', 'typed.ts'), env: unset },
    { module: join(loose, 'flows', 'typed.ts'), env: { ...unset, XDG_CACHE_HOME: undefined } },
    { module: join(theirs, 'flows', 'typed.ts'), env: unset },
  ]) as [Loaded, Loaded, Loaded, Loaded, Loaded];

  // The flow module's project has a node_modules: the cache is in it, created 0700.
  t.equal(inProject.name, 'typed', JSON.stringify(inProject));
  t.equal(inProject.sameClass, true, "'tidepool' in the bundle is the running package");
  const cache = join(proj, 'node_modules', '.cache', 'tidepool');
  t.equal(dirname(fileOf(inProject.url!)), cache, 'in <project>/node_modules/.cache/tidepool');
  t.equal(statSync(cache).mode & 0o777, 0o700, 'the cache directory is created 0700');
  t.equal(statSync(fileOf(inProject.url!)).mode & 0o777, 0o600, 'the bundle is 0600');
  t.equal(hashOf(inProject.url!), sha256(fileOf(inProject.url!)), 'the url carries the hash of the bundle');

  // No node_modules above the module: the one above the cwd; neither: the user's cache.
  t.equal(dirname(fileOf(fromCwd.url!)), cache, `the node_modules above the cwd: ${JSON.stringify(fromCwd)}`);
  t.equal(dirname(fileOf(xdg.url!)), join(tmp, 'xdg', 'tidepool'), '$XDG_CACHE_HOME/tidepool');
  t.equal(xdg.sameClass, true);
  t.equal(dirname(fileOf(home.url!)), join(tmp, 'home', '.cache', 'tidepool'), '~/.cache/tidepool');
  t.equal(statSync(join(tmp, 'home', '.cache', 'tidepool')).mode & 0o777, 0o700);

  // Another user's node_modules is not used: its owner could replace the bundles.
  t.equal(dirname(fileOf(passedOver.url!)), join(tmp, 'xdg', 'tidepool'), "another user's node_modules is passed over");
  t.notOk(existsSync(join(theirs, 'node_modules', '.cache')), 'and nothing is written into it');

  t.same(readdirSync(shared).filter((f) => lstatSync(join(shared, f)).uid === 0), [], 'nothing in the shared temp dir');
});

t.test('a directory another user made in the shared temp dir first is never used', { skip }, async (t) => {
  // The attack on <tmpdir>/tidepool-modules: made first, writable by its maker.
  const tmpDir = sharedDir();
  const theirs = join(tmpDir, 'tidepool-modules');
  asOther('mkdir "$1" && chmod 0777 "$1"', [theirs]);
  const module = join(project(), 'flows', 'typed.ts');
  const env = { TIDEPOOL_MODULE_CACHE: undefined, TMPDIR: tmpDir };
  const first = load({ module, env });
  t.equal(first.name, 'typed', JSON.stringify(first));
  t.notOk(fileOf(first.url!).startsWith(tmpDir), `not in the shared temp dir: ${first.url}`);

  // They replace whatever we wrote there, and plant the name we use now as well.
  const marker = join(tmp, 'marker-shared');
  writeFileSync(join(tmp, 'evil.mjs'), planted(marker));
  asOther('for f in "$1"/*.mjs "$1/$2"; do cp "$3" "$f.new" && mv -f "$f.new" "$f"; done', [
    theirs, fileOf(first.url!).split('/').pop()!, join(tmp, 'evil.mjs'),
  ]);
  const [second, forced] = loadAll([
    { module, env },
    { module, env: { ...env, TIDEPOOL_MODULE_CACHE: theirs } }, // pointed at it explicitly
  ]) as [Loaded, Loaded];
  t.equal(second.name, 'typed', JSON.stringify(second));
  t.equal(second.url, first.url);
  t.equal(forced.code, 'TIDEPOOL_MODULE_CACHE', JSON.stringify(forced));
  t.equal(forced.message, `module cache ${theirs}: is owned by uid ${other!.uid}, not by you (uid 0); refusing to use it (set TIDEPOOL_MODULE_CACHE to a directory only you can write)`);
  t.notOk(existsSync(marker), 'the planted code did not run');
});

t.test('a cache directory others can write, or under one they can, is refused', { skip }, async (t) => {
  const module = join(project(), 'flows', 'typed.ts');
  const cases: [string, string, string][] = []; // cache, reason, what
  for (const [mode, who] of [[0o777, 'group and others'], [0o770, 'group'], [0o703, 'others']] as const) {
    const dir = join(tmp, `mine-${mode.toString(8)}`);
    mkdirSync(dir);
    chmodSync(dir, mode);
    cases.push([dir, `is writable by ${who} (mode 0${mode.toString(8)})`, `mode ${mode.toString(8)}`]);
  }
  // Ours and 0700, but inside a directory another user owns: they could swap it.
  const theirParent = join(shared, 'their-parent');
  asOther('mkdir "$1" && chmod 0755 "$1"', [theirParent]);
  mkdirSync(join(theirParent, 'cache'), { mode: 0o700 });
  cases.push([join(theirParent, 'cache'), `${theirParent}, a directory above it, is owned by uid ${other!.uid}`, 'parent owned by another user']);
  // Under a directory writable by all: refused, unless it is sticky like /tmp.
  const open = join(tmp, 'open');
  mkdirSync(open);
  chmodSync(open, 0o777);
  cases.push([join(open, 'cache'), `${open}, a directory above it, is writable by group and others (mode 0777)`, 'parent writable by all']);
  // A link of ours to a directory of theirs: checked where it leads.
  const theirDir = join(shared, 'their-cache');
  asOther('mkdir "$1" && chmod 0700 "$1"', [theirDir]);
  symlinkSync(theirDir, join(tmp, 'link-to-theirs'));
  cases.push([join(tmp, 'link-to-theirs'), `is owned by uid ${other!.uid}`, 'a link to their directory']);
  const sticky = join(tmp, 'sticky');
  mkdirSync(sticky);
  chmodSync(sticky, 0o1777);

  const results = loadAll([
    ...cases.map(([cache]) => ({ module, env: { TIDEPOOL_MODULE_CACHE: cache } })),
    { module, env: { TIDEPOOL_MODULE_CACHE: join(sticky, 'cache') } },
  ]);
  cases.forEach(([cache, reason, what], i) => {
    const r = results[i]!;
    t.equal(r.code, 'TIDEPOOL_MODULE_CACHE', `${what}: ${JSON.stringify(r)}`);
    t.notMatch(r.message ?? '', /\n/, `${what}: one line`);
    t.ok(r.message?.startsWith(`module cache ${cache}: ${reason}`), `${what}: names the path and why: ${r.message}`);
    t.same(readdirSync(cache), [], `${what}: nothing written into it`);
  });
  const ok = results[cases.length]!;
  t.equal(ok.name, 'typed', `a sticky parent is fine: ${JSON.stringify(ok)}`);
  t.equal(statSync(join(sticky, 'cache')).mode & 0o777, 0o700);
});

t.test('a bundle another user planted in your cache is refused, never imported', { skip }, async (t) => {
  const cache = join(tmp, 'cache-planted');
  const env = { TIDEPOOL_MODULE_CACHE: cache };
  const modules = [project(), project(), project()].map((p) => join(p, 'flows', 'typed.ts'));
  const first = loadAll(modules.map((module) => ({ module, env })));
  t.same(first.map((r) => r.name), ['typed', 'typed', 'typed'], JSON.stringify(first));
  const [theirs, writable, link] = first.map((r) => fileOf(r.url!)) as [string, string, string];
  t.equal(new Set([theirs, writable, link]).size, 3, 'three bundles');
  const marker = join(tmp, 'marker-planted');

  // The directory was open for a while; they put their file under an expected name.
  rmSync(theirs);
  chmodSync(cache, 0o777);
  asOther('cat > "$1"', [theirs], planted(marker));
  chmodSync(cache, 0o700);
  t.equal(statSync(theirs).uid, other!.uid, 'the file is theirs');
  // Ours, but writable by others; ours, but a link.
  rmSync(writable);
  writeFileSync(writable, planted(marker));
  chmodSync(writable, 0o666);
  rmSync(link);
  writeFileSync(join(tmp, 'evil-target.mjs'), planted(marker));
  symlinkSync(join(tmp, 'evil-target.mjs'), link);

  const [again, worker, again2, again3] = loadAll([
    { module: modules[0], env },
    { url: first[0]!.url, env }, // a worker importing the url
    { module: modules[1], env },
    { module: modules[2], env },
  ]) as [Loaded, Loaded, Loaded, Loaded];
  const hint = '(set TIDEPOOL_MODULE_CACHE to a directory only you can write)';
  t.equal(again.code, 'TIDEPOOL_MODULE_CACHE', JSON.stringify(again));
  t.equal(again.message, `module cache ${theirs}: is owned by uid ${other!.uid}, not by you (uid 0); refusing to use it ${hint}`);
  t.equal(worker.code, 'TIDEPOOL_MODULE_CACHE', `a worker refuses it too: ${JSON.stringify(worker)}`);
  t.equal(worker.message, `module cache ${theirs}: is owned by uid ${other!.uid}, not by you (uid 0); refusing to import it ${hint}`);
  t.equal(again2.message, `module cache ${writable}: is writable by group and others (mode 0666); refusing to use it ${hint}`);
  t.equal(again3.message, `module cache ${link}: is a symbolic link; refusing to use it ${hint}`);
  t.notOk(existsSync(marker), 'the planted code did not run');
});

t.test('a bundle changed after it was written is rebuilt by the coordinator, refused by a worker', { skip }, async (t) => {
  const cache = join(tmp, 'cache-changed');
  const module = join(project(), 'flows', 'typed.ts');
  const env = { TIDEPOOL_MODULE_CACHE: cache };
  const first = load({ module, env });
  t.equal(first.name, 'typed', JSON.stringify(first));
  const file = fileOf(first.url!);
  const original = readFileSync(file);

  // Same owner, same mode, other bytes.
  const marker = join(tmp, 'marker-changed');
  writeFileSync(file, planted(marker) + original.toString('utf8'));
  const [worker, again] = loadAll([{ url: first.url!, env }, { module, env }]) as [Loaded, Loaded];
  t.equal(worker.code, 'TIDEPOOL_MODULE_CACHE', `a worker refuses it: ${JSON.stringify(worker)}`);
  t.match(worker.message, `module cache ${file}: was changed after it was written`);
  t.equal(again.name, 'typed', `the coordinator rebuilds it: ${JSON.stringify(again)}`);
  t.equal(again.url, first.url, 'under the same name');
  t.same(readFileSync(file), original, 'with the bytes it had');
  t.notOk(existsSync(marker), 'the changed code did not run');
  t.equal(load({ url: first.url!, env }).name, 'typed', 'and a worker (a fresh process) imports it again');
  t.same(readdirSync(cache), [file.split('/').pop()], 'no temp files left behind');
});
