// Runs of the fixtures in test-fixtures/flows/joins/ as real `tidepool run` child
// processes (each run a fresh process, so each may read its own spec file; started
// without tap's loaders, see cli.ts), their JSON lines output, and what
// `tidepool inspect --json` reports (key counts per table, source positions).
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CLI, FLOWS, cleanEnv, plain, startCli, type CliResult } from './cli.js';
import type { ChildProcess } from 'node:child_process';

export function readJsonl<T>(path: string): T[] {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch {
    return [];
  }
  const end = text.lastIndexOf('\n');
  return end < 0 ? [] : text.slice(0, end).split('\n').map((l) => JSON.parse(l) as T);
}

export interface Running {
  child: ChildProcess;
  started: number;
  exited: boolean;
  done: Promise<CliResult>;
}

/** One temporary directory per test file (compiled modules cached in it); `path` numbers files. */
export class FixtureRuns {
  readonly dir: string;
  private n = 0;

  constructor(prefix: string) {
    this.dir = mkdtempSync(join(tmpdir(), prefix));
  }

  remove(): void {
    rmSync(this.dir, { recursive: true, force: true });
  }

  /** A fresh path in the temporary directory. */
  path(name: string): string {
    return join(this.dir, `${++this.n}-${name}`);
  }

  /** `tidepool run joins/<fixture> --state <state> <args…>` with `env`. */
  start(fixture: string, state: string, args: string[], env: Record<string, string> = {}, timeoutMs = 150_000): Running {
    const started = performance.now();
    const run = startCli(['run', join(FLOWS, 'joins', fixture), '--state', state, ...args], {
      cwd: this.dir,
      env: { TIDEPOOL_MODULE_CACHE: join(this.dir, 'module-cache'), ...env },
      timeoutMs,
    });
    const r: Running = { child: run.child, started, exited: false, done: run.done };
    void run.done.then(() => (r.exited = true), () => (r.exited = true));
    return r;
  }

  runToEnd(fixture: string, state: string, args: string[], env: Record<string, string> = {}): Promise<CliResult> {
    return this.start(fixture, state, args, env).done;
  }

  /** Writes `spec` (with `out` filled in) and starts the fixture on it (TP_SPEC). */
  startSpec(fixture: string, spec: object, args: string[], env: Record<string, string> = {}, state = this.path('state')): { running: Running; out: string; state: string } {
    const out = this.path('out.jsonl');
    const specFile = this.path('spec.json');
    writeFileSync(specFile, JSON.stringify({ ...spec, out }));
    return { running: this.start(fixture, state, args, { TP_SPEC: specFile, ...env }), out, state };
  }

  /** Runs the fixture on `spec` to its end; the output lines (empty if it failed). */
  async run<T>(fixture: string, spec: object, args: string[], env: Record<string, string> = {}): Promise<{ exit: CliResult; out: T[]; state: string }> {
    const { running, out, state } = this.startSpec(fixture, spec, args, env);
    const exit = await running.done;
    return { exit, out: readJsonl<T>(out), state };
  }
}

interface InspectJson {
  flows: { operators: { operators: string[]; instances: { keys?: Record<string, number>; sourcePosition?: unknown }[] }[] }[];
}

export interface Inspected {
  /** Keys per state table, summed over instances: { 'iv0/~left': 12, … }. */
  keys: Record<string, number>;
  /** Per source task (its first operator), the positions of its instances in the newest checkpoint. */
  positions: Record<string, unknown[]>;
}

/**
 * What `tidepool inspect --json` reports for the flows under `state`: the key counts of
 * each state partition's last flush, and the newest checkpoint's source positions.
 */
export function inspect(state: string): Inspected {
  const [cmd, args] = plain(process.execPath, [CLI, 'inspect', state, '--json']);
  const json = JSON.parse(execFileSync(cmd, args, { encoding: 'utf8', env: cleanEnv(), stdio: ['ignore', 'pipe', 'pipe'] })) as InspectJson;
  const keys: Record<string, number> = {};
  const positions: Record<string, unknown[]> = {};
  for (const f of json.flows) {
    for (const o of f.operators) {
      for (const i of o.instances) for (const [t, n] of Object.entries(i.keys ?? {})) keys[t] = (keys[t] ?? 0) + n;
      if (o.instances.some((i) => i.sourcePosition !== undefined)) positions[o.operators[0]!] = o.instances.map((i) => i.sourcePosition);
    }
  }
  return { keys, positions };
}

export const tableKeys = (state: string): Record<string, number> => inspect(state).keys;

/** Multiset difference of two lists of strings: what is missing from `got`, what is extra. */
export function diff(expected: string[], got: string[], max = 5): { missing: string[]; extra: string[] } {
  const count = new Map<string, number>();
  for (const e of expected) count.set(e, (count.get(e) ?? 0) + 1);
  for (const g of got) count.set(g, (count.get(g) ?? 0) - 1);
  const missing: string[] = [];
  const extra: string[] = [];
  for (const [k, v] of count) {
    if (v > 0 && missing.length < max) missing.push(`${k}${v > 1 ? ` ×${v}` : ''}`);
    if (v < 0 && extra.length < max) extra.push(`${k}${v < -1 ? ` ×${-v}` : ''}`);
  }
  return { missing, extra };
}
