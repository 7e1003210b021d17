// Where a run's configuration comes from, in order (later wins):
//
//   defaults  <  --config file.json  <  --set path=value …  <  programmatic overrides
//
// - `--set` paths are dotted (`state.compression=lz4`, `operators.counts.parallelism=4`);
//   the value is JSON when it parses as JSON (`4`, `true`, `{"module":"./c.js"}`), else
//   the raw string (`lz4`, `./c.js`).
// - Objects merge key by key; anything else (strings, numbers, arrays) replaces.
//   `undefined` in overrides means "not set".
// - A `{ "module": "./codec.js" }` compression in a config file is relative to that
//   file, as paths in config files usually are; one from `--set` is relative to the cwd.
// - Validation (and its one-line errors naming the key) is parseConfig's.
import { readFileSync } from 'node:fs';
import { dirname, isAbsolute, resolve } from 'node:path';
import { errors } from '../errors.js';
import { parseConfig, type TidepoolConfig, type TidepoolConfigInput } from './schema.js';

export interface LoadConfigOptions {
  /** A JSON config file (`--config`). */
  file?: string;
  /** `path=value` assignments (`--set`), applied in order after the file. */
  sets?: readonly string[];
  /** Programmatic overrides, applied last. */
  overrides?: TidepoolConfigInput | Record<string, unknown>;
}

type Obj = Record<string, unknown>;

const FORBIDDEN = new Set(['__proto__', 'prototype', 'constructor']);

function isPlainObject(v: unknown): v is Obj {
  if (v === null || typeof v !== 'object' || Array.isArray(v)) return false;
  const proto = Object.getPrototypeOf(v);
  return proto === Object.prototype || proto === null;
}

/** One line, at most `max` characters. */
function oneLine(s: string, max = 200): string {
  const t = s.replace(/\s+/g, ' ').trim();
  return t.length > max ? `${t.slice(0, max)}…` : t;
}

/** Reads and parses a config file; errors name `--config` and the file. */
export function readConfigFile(file: string): Obj {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException)?.code;
    if (code === 'ENOENT') throw errors.config('--config', `no such file ${file}`);
    if (code === 'EISDIR') throw errors.config('--config', `${file} is a directory, expected a JSON file`);
    throw errors.config('--config', `cannot read ${file}: ${oneLine((err as Error)?.message ?? String(err))}`);
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text.charCodeAt(0) === 0xfeff ? text.slice(1) : text);
  } catch (err) {
    const msg = oneLine((err as Error)?.message ?? String(err));
    const pos = /at position (\d+)/.exec(msg);
    let where = file;
    if (pos) {
      const before = text.slice(0, Number(pos[1]));
      const line = before.split('\n').length;
      where = `${file}:${line}:${before.length - before.lastIndexOf('\n')}`;
    }
    throw errors.config('--config', `${where}: invalid JSON: ${msg}`);
  }
  if (!isPlainObject(raw)) {
    const got = Array.isArray(raw) ? 'an array' : raw === null ? 'null' : `a ${typeof raw}`;
    throw errors.config('--config', `${file}: expected a JSON object at the top level, got ${got}`);
  }
  // A codec module named in the file is relative to the file.
  const state = raw.state;
  if (isPlainObject(state) && isPlainObject(state.compression)) {
    const m = state.compression.module;
    if (typeof m === 'string' && m !== '' && !m.startsWith('file:') && !isAbsolute(m)) {
      state.compression = { ...state.compression, module: resolve(dirname(resolve(file)), m) };
    }
  }
  return raw;
}

/** Splits `a.b.c=value` into a path and a value (JSON when it parses, else the string). */
export function parseSet(assignment: string): { path: string[]; value: unknown } {
  const eq = assignment.indexOf('=');
  if (eq < 0) throw errors.config('--set', `'${oneLine(assignment, 80)}' is not path=value (e.g. --set state.compression=lz4)`);
  const key = assignment.slice(0, eq).trim();
  const text = assignment.slice(eq + 1);
  let path = key.split('.');
  if (key === '' || path.some((p) => p === '')) {
    throw errors.config('--set', `'${oneLine(assignment, 80)}' has an empty key path (e.g. --set checkpoint.intervalMs=200)`);
  }
  // Operator names may contain dots: operators.<name…>.parallelism, operators.<name…>.errors.onRecord.
  if (path[0] === 'operators') {
    const leaf = path.length >= 4 && path.at(-2) === 'errors' ? 2 : 1;
    if (path.length > 2 + leaf) path = ['operators', path.slice(1, -leaf).join('.'), ...path.slice(-leaf)];
  }
  const bad = path.find((p) => FORBIDDEN.has(p));
  if (bad !== undefined) throw errors.config(key, `'${bad}' is not a config key`);
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    value = text;
  }
  return { path, value };
}

function setPath(target: Obj, path: readonly string[], value: unknown): void {
  let obj = target;
  for (const k of path.slice(0, -1)) {
    const next = Object.hasOwn(obj, k) ? obj[k] : undefined;
    if (!isPlainObject(next)) obj[k] = {};
    obj = obj[k] as Obj;
  }
  obj[path.at(-1)!] = value;
}

/** Deep copy of `over` into `base`: plain objects merge, everything else replaces; undefined is skipped. */
function merge(base: Obj, over: Obj): Obj {
  for (const [k, v] of Object.entries(over)) {
    if (v === undefined || FORBIDDEN.has(k)) continue;
    if (isPlainObject(v)) {
      const cur = Object.hasOwn(base, k) ? base[k] : undefined;
      base[k] = merge(isPlainObject(cur) ? cur : {}, v);
    } else {
      base[k] = v;
    }
  }
  return base;
}

/** The raw (unvalidated) configuration: file, then sets, then overrides. */
export function assembleConfig(opts: LoadConfigOptions = {}): Obj {
  const raw: Obj = opts.file !== undefined ? merge({}, readConfigFile(opts.file)) : {};
  for (const s of opts.sets ?? []) {
    const { path, value } = parseSet(s);
    setPath(raw, path, value);
  }
  if (opts.overrides !== undefined) {
    if (!isPlainObject(opts.overrides)) throw errors.config('overrides', 'expected a plain object');
    merge(raw, opts.overrides);
  }
  return raw;
}

/** Reads, merges and validates the configuration of a run. Errors are one line naming the key. */
export function loadConfig(opts: LoadConfigOptions = {}): TidepoolConfig {
  return parseConfig(assembleConfig(opts));
}
