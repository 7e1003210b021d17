// Runs of the fixtures in test-fixtures/flows/joins/ as real `tidepool run` child
// processes (each run a fresh process, so each may read its own spec file), their JSON
// lines output, and the key counts `tidepool inspect --json` reports per operator.
import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { FlowChildren, type Exit, type Running } from './flow-child.js';

const CLI = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));
/** FlowChildren resolves fixture names against the checkpoint folder. */
const JOINS = '../joins/';

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

export interface SpecRun<T> {
  exit: Exit;
  out: T[];
}

/** One temporary directory per test file; `run` numbers its runs. */
export class JoinRuns {
  readonly children: FlowChildren;
  private n = 0;

  constructor(prefix: string) {
    this.children = new FlowChildren(prefix);
  }

  get dir(): string {
    return this.children.dir;
  }

  remove(): void {
    this.children.remove();
  }

  /** A fresh path in the temporary directory. */
  path(name: string): string {
    return join(this.dir, `${++this.n}-${name}`);
  }

  /** Writes `spec` (with `out` filled in) and starts the fixture on it. */
  start(fixture: string, spec: object, args: string[], env: Record<string, string> = {}, state = this.path('state')): { running: Running; out: string; state: string } {
    const out = this.path('out.jsonl');
    const specFile = this.path('spec.json');
    writeFileSync(specFile, JSON.stringify({ ...spec, out }));
    return { running: this.children.start(JOINS + fixture, state, args, { TP_SPEC: specFile, ...env }), out, state };
  }

  /** Runs the fixture to its end; the output lines (empty if it failed). */
  async run<T>(fixture: string, spec: object, args: string[], env: Record<string, string> = {}): Promise<SpecRun<T> & { state: string }> {
    const { running, out, state } = this.start(fixture, spec, args, env);
    const timer = setTimeout(() => running.child.kill('SIGKILL'), 120_000);
    try {
      const exit = await running.done;
      return { exit, out: readJsonl<T>(out), state };
    } finally {
      clearTimeout(timer);
    }
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
  const json = JSON.parse(execFileSync(process.execPath, [CLI, 'inspect', state, '--json'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] })) as InspectJson;
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
