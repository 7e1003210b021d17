// Loading a flow module: the coordinator calls loadFlowModule(path) once; it returns
// the flow and a file URL of plain JavaScript that every worker import()s with
// importFlow(url) to find its operators' functions.
//
//   flow.js / flow.mjs / flow.cjs ─────────────────────> url = the file itself
//   flow.ts / flow.mts / flow.cts ──esbuild bundle──> <cache>/flow-<hash>.mjs?sha256=…
//
// The TypeScript bundle:
// - holds the module and the local files it imports (.ts or .js, `./x.js` finds `./x.ts`);
// - leaves packages (anything resolved inside node_modules) and Node builtins as imports,
//   rewritten to absolute file URLs, because the bundle lives in a cache directory from
//   which the user's node_modules would not be found;
// - imports 'tidepool' from THIS running package (dist/src/index.js), so the coordinator,
//   the workers and the user's module share one copy of tidepool's classes;
// - keeps `import.meta.url` / `.filename` / `.dirname` of each source file pointing at
//   that file, not at the bundle (flows locate their input files that way);
// - is named by the hash of its content: a changed module (or helper) gets a new file,
//   so a worker never imports a stale one, and an unchanged module is not rewritten.
//   Nothing is deleted from the cache: a long run may restart workers that import its
//   file weeks later (the files are small).
// - lives in a per-user cache that only its user can write, and is checked against its
//   hash before every import (module-cache.ts has the rules);
// - carries an inline source map (stack traces map back with --enable-source-maps).
//
// Errors are one line: `flow module <path>: <why>`, a syntax error as `file:line:col: message`
// (1-based column, like tsc), for .js modules too; a name imported from 'tidepool' that
// it does not export is named, with the list of what it exports.
import { readFileSync, realpathSync, statSync } from 'node:fs';
import { isBuiltin } from 'node:module';
import { basename, dirname, extname, relative, resolve, sep } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import type * as Esbuild from 'esbuild';
import { editDistance, errors } from '../errors.js';
import { isFlow, type Flow } from './builder.js';
import { isBundleUrl, moduleCacheDir, openCacheDir, storeBundle, verifyBundle } from './module-cache.js';

export { moduleCacheDir };

const TS_EXTS = new Set(['.ts', '.mts', '.cts']);
const JS_EXTS = new Set(['.js', '.mjs', '.cjs']);

/** This package's entry point, which 'tidepool' imports in user modules resolve to. */
export const TIDEPOOL_ENTRY = fileURLToPath(new URL('../index.js', import.meta.url));

const HINT = "(export default flow('name')…)";

export interface LoadedFlowModule {
  flow: Flow;
  /** File URL of JavaScript that workers can import() (see importFlow). */
  url: string;
}

/**
 * Loads a flow module (.ts, .mts, .cts, .js, .mjs, .cjs): compiles TypeScript, imports
 * it and checks that its default export is a flow. `path` is relative to the cwd.
 */
export async function loadFlowModule(path: string): Promise<LoadedFlowModule> {
  const file = resolve(path.startsWith('file:') ? fileURLToPath(path) : path);
  let isFile: boolean;
  try {
    isFile = statSync(file).isFile();
  } catch {
    throw errors.flowModule(path, 'no such file');
  }
  if (!isFile) throw errors.flowModule(path, 'is not a file (expected a .ts or .js flow module)');
  const ext = extname(file).toLowerCase();
  let url: string;
  if (TS_EXTS.has(ext)) {
    url = await compile(path, file);
  } else if (JS_EXTS.has(ext)) {
    url = pathToFileURL(file).href;
  } else {
    throw errors.flowModule(path, `unsupported extension '${ext}' (expected .ts, .mts, .cts, .js, .mjs or .cjs)`);
  }
  const flow = await importFlow(url, path);
  return { flow, url };
}

/**
 * esbuild, loaded on first use: operator workers import compiled flows through this
 * module and never bundle, so they should not pay for loading esbuild at start-up.
 */
let esbuildModule: Promise<typeof Esbuild> | undefined;
function loadEsbuild(): Promise<typeof Esbuild> {
  esbuildModule ??= import('esbuild');
  return esbuildModule;
}

/**
 * Imports a module loadFlowModule returned the url of (a worker does this) and returns
 * its default export, checked to be a flow. `source` names the module in errors.
 */
export async function importFlow(url: string, source?: string): Promise<Flow> {
  const name = source ?? (url.startsWith('file:') ? fileURLToPath(url) : url);
  const compiled = isBundleUrl(url);
  if (compiled) verifyBundle(url); // never import a bundle someone changed or could have
  let mod: Record<string, unknown>;
  try {
    mod = (await import(url)) as Record<string, unknown>;
  } catch (err) {
    throw await importFailure(name, url, err, compiled);
  }
  if (!('default' in mod)) throw errors.flowModule(name, `has no default export ${HINT}`);
  const f = mod.default;
  if (!isFlow(f)) throw errors.flowModule(name, `the default export is not a flow ${HINT}, got ${describeValue(f)}`);
  return f;
}

function describeValue(v: unknown): string {
  if (v === null) return 'null';
  if (typeof v === 'function') return 'a function';
  if (typeof v !== 'object') return `${typeof v} ${String(v).slice(0, 40)}`;
  const ctor = (v as object).constructor?.name;
  if (ctor === 'DataStream' || ctor === 'KeyedStream' || ctor === 'FlowBuilder') {
    return `a ${ctor}; a flow starts with .source(…) and ends with .sink(name, sink)`;
  }
  if (typeof (v as { then?: unknown }).then === 'function') return 'a Promise';
  return ctor && ctor !== 'Object' ? `a ${ctor}` : 'an object';
}

function oneLine(s: string): string {
  return s.replace(/\s+/g, ' ').trim();
}

/** The message of an error thrown while importing; a JS syntax error gets its location. */
async function importFailure(name: string, url: string, err: unknown, compiled: boolean): Promise<Error> {
  let why: string | undefined;
  if (err instanceof SyntaxError) {
    why = await missingExport(err, compiled);
    // Node's SyntaxError message has no location; esbuild finds it (in any imported file).
    // Not in a bundle: esbuild made it, and cannot resolve the file URLs it imports.
    if (!why && !compiled && url.startsWith('file:')) why = await syntaxErrorOf(fileURLToPath(url));
    if (why) return errors.flowModule(name, why);
  }
  const msg = err instanceof Error ? (err.message || err.name) : String(err);
  const e = errors.flowModule(name, oneLine(msg));
  (e as { cause?: unknown }).cause = err;
  return e;
}

const TIDEPOOL_URL = pathToFileURL(TIDEPOOL_ENTRY).href;

/**
 * Node's "The requested module 'x' does not provide an export named 'y'" said plainly:
 * for 'tidepool' with what it does export (in a bundle, the module is named by the file
 * URL it was rewritten to, which says nothing to the user).
 */
async function missingExport(err: SyntaxError, compiled: boolean): Promise<string | undefined> {
  const m = /The requested module '([^']+)' does not provide an export named '([^']+)'/.exec(err.message);
  if (!m) return undefined;
  const [, spec, name] = m as unknown as [string, string, string];
  // The stack starts with the importing file ("file:///…/flow.mjs:3"); in a bundle
  // that is the bundle's line, of no use to the user.
  const at = compiled ? null : /^(file:\/\/[^\n]+?):(\d+)\r?\n/.exec(err.stack ?? '');
  const importer = at ? fileURLToPath(at[1]!) : undefined;
  const where = at ? `${relative(process.cwd(), importer!)}:${at[2]}: ` : '';
  if (!isTidepool(spec, importer)) {
    return compiled ? `${where}module '${spec.startsWith('file:') ? fileURLToPath(spec) : spec}' has no export named '${name}'` : undefined;
  }
  const names = Object.keys((await import(TIDEPOOL_URL)) as object).filter((k) => k !== 'default').sort();
  const near = closest(name, names);
  return `${where}'tidepool' has no export named '${name}'${near ? ` (did you mean '${near}'?)` : ''}; it exports ${names.join(', ')}`;
}

function isTidepool(spec: string, importer: string | undefined): boolean {
  if (spec === 'tidepool' || spec === TIDEPOOL_URL) return true;
  let file: string | undefined;
  if (spec.startsWith('file:')) file = fileURLToPath(spec);
  else if (importer && (spec.startsWith('.') || spec.startsWith('/'))) file = resolve(dirname(importer), spec);
  if (!file) return false;
  if (file === TIDEPOOL_ENTRY) return true;
  try {
    return realpathSync(file) === realpathSync(TIDEPOOL_ENTRY);
  } catch {
    return false;
  }
}

/** The export most like a mistyped `name` (at most 2 edits away, or other case), if any. */
function closest(name: string, names: string[]): string | undefined {
  let best: string | undefined;
  let bestD = 3;
  for (const n of names) {
    const d = n.toLowerCase() === name.toLowerCase() ? 0 : editDistance(name, n);
    if (d < bestD) [best, bestD] = [n, d];
  }
  return best;
}


async function syntaxErrorOf(file: string): Promise<string | undefined> {
  try {
    await (await loadEsbuild()).build(buildOptions(file, false));
    return undefined;
  } catch (err) {
    return formatBuildFailure(err);
  }
}

/** `file:line:col: message` of the first esbuild error (1-based column). */
function formatBuildFailure(err: unknown): string | undefined {
  const first = (err as Esbuild.BuildFailure)?.errors?.[0];
  if (!first) return undefined;
  const loc = first.location;
  const where = loc ? `${loc.file}:${loc.line}:${loc.column + 1}: ` : '';
  return oneLine(`${where}${first.text}`);
}

/** Bundles a TypeScript module into the cache; returns the bundle's file URL. */
async function compile(path: string, file: string): Promise<string> {
  let out: Esbuild.BuildResult<{ write: false }>;
  try {
    out = (await (await loadEsbuild()).build(buildOptions(file, true))) as Esbuild.BuildResult<{ write: false }>;
  } catch (err) {
    throw errors.flowModule(path, formatBuildFailure(err) ?? oneLine((err as Error)?.message ?? String(err)));
  }
  const code = out.outputFiles[0]!.contents;
  const stem = basename(file).replace(/\.[^.]+$/, '').replace(/[^A-Za-z0-9_-]/g, '_');
  return storeBundle(openCacheDir(moduleCacheDir(file)), stem, code);
}

const SKIP = Symbol('tidepool.resolving');

function buildOptions(entry: string, write: boolean): Esbuild.BuildOptions & { write: false } {
  return {
    entryPoints: [entry],
    bundle: true,
    write: false,
    format: 'esm',
    platform: 'node',
    target: 'node20',
    sourcemap: write ? 'inline' : false,
    keepNames: true,
    // Node's resolution: no "module" condition, no "module" main field.
    conditions: [],
    mainFields: ['main'],
    logLevel: 'silent',
    plugins: [tidepoolPlugin()],
  };
}

function tidepoolPlugin(): Esbuild.Plugin {
  return {
    name: 'tidepool-flow-module',
    setup(build) {
      // 'tidepool' is the running package, never a bundled copy.
      build.onResolve({ filter: /^tidepool$/ }, () => ({ path: pathToFileURL(TIDEPOOL_ENTRY).href, external: true }));

      // Packages stay imports, by absolute URL (the bundle lives elsewhere); a bare
      // specifier that resolves outside node_modules (tsconfig paths) is bundled.
      build.onResolve({ filter: /^[^./#]/ }, async (args) => {
        if ((args.pluginData as { [SKIP]?: boolean } | undefined)?.[SKIP]) return undefined;
        if (isBuiltin(args.path) || args.path.startsWith('file:') || /^[A-Za-z]:[\\/]/.test(args.path)) return undefined;
        const r = await build.resolve(args.path, {
          kind: args.kind,
          importer: args.importer,
          resolveDir: args.resolveDir,
          pluginData: { [SKIP]: true },
        });
        if (r.errors.length > 0 || r.external || !r.path) return undefined; // esbuild reports it, with a location
        if (!r.path.split(sep).includes('node_modules')) return { path: r.path };
        return { path: pathToFileURL(r.path).href, external: true };
      });

      // import.meta.url of a bundled file is that file's URL, not the bundle's.
      build.onLoad({ filter: /\.[cm]?[jt]sx?$/ }, async (args) => {
        if (args.path.split(sep).includes('node_modules')) return undefined;
        const text = readFileSync(args.path, 'utf8');
        if (!text.includes('import.meta')) return undefined;
        const url = pathToFileURL(args.path).href;
        const ext = extname(args.path).toLowerCase();
        const loader: Esbuild.Loader = ext.endsWith('x') ? (ext.includes('t') ? 'tsx' : 'jsx') : ext.includes('t') ? 'ts' : 'js';
        try {
          const t = await (await loadEsbuild()).transform(text, {
            loader,
            sourcefile: relative(process.cwd(), args.path),
            sourcemap: 'inline',
            target: 'esnext',
            define: {
              'import.meta.url': JSON.stringify(url),
              'import.meta.filename': JSON.stringify(args.path),
              'import.meta.dirname': JSON.stringify(dirname(args.path)),
            },
          });
          return { contents: t.code, loader: 'js', resolveDir: dirname(args.path) };
        } catch {
          return undefined; // a syntax error: let the bundler report it from the source
        }
      });
    },
  };
}
