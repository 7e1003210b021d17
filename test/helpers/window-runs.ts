// Child `tidepool run`s of the event-time fixtures in test-fixtures/flows/windows/,
// shared by the window, timer and lateness tests: a temp directory per test file
// (compiled modules cached in it), a clean environment (tap's NODE_OPTIONS would load
// its loaders into every worker), JSON-lines readers.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { RunSummary } from '../../src/observe/report.js';
import { fileURLToPath } from 'node:url';

export const WIN_FIX = fileURLToPath(new URL('../../../test-fixtures/flows/windows/', import.meta.url));
const CLI = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function cleanEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (k !== 'NODE_OPTIONS' && !/^_?TAP/.test(k)) env[k] = v;
  return env;
}

export interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
  stderr: string;
  stdout: string;
  ms: number;
}

export interface Started {
  child: ChildProcess;
  done: Promise<Exit>;
  stdout: () => string;
}

export class FixtureRuns {
  readonly dir: string;
  private n = 0;

  constructor(prefix: string) {
    this.dir = mkdtempSync(join(tmpdir(), prefix));
  }

  /** A fresh sub-directory name under the temp directory. */
  fresh(what: string): string {
    return join(this.dir, `${what}-${this.n++}`);
  }

  remove(): void {
    rmSync(this.dir, { recursive: true, force: true });
  }

  /** `node main.js run <fixture> <args…>` with `env`; SIGKILLed after `timeoutMs`. */
  start(fixture: string, args: string[], env: Record<string, string>, timeoutMs = 60_000): Started {
    const t0 = performance.now();
    const child = spawn(process.execPath, [CLI, 'run', join(WIN_FIX, fixture), ...args], {
      cwd: this.dir,
      env: { ...cleanEnv(), TIDEPOOL_MODULE_CACHE: join(this.dir, 'module-cache'), ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stderr = '';
    let stdout = '';
    child.stdout!.on('data', (d: Buffer) => (stdout += d));
    child.stderr!.on('data', (d: Buffer) => (stderr += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    const done = new Promise<Exit>((resolve, reject) => {
      child.on('error', reject);
      child.on('close', (code, signal) => {
        clearTimeout(timer);
        resolve({ code, signal, stderr, stdout, ms: Math.round(performance.now() - t0) });
      });
    });
    return { child, done, stdout: () => stdout };
  }

  run(fixture: string, args: string[], env: Record<string, string>, timeoutMs?: number): Promise<Exit> {
    return this.start(fixture, args, env, timeoutMs).done;
  }
}

/** The records of a JSON-lines file ([] if it does not exist); a cut last line is an error. */
export function readJsonl<T = unknown>(path: string): T[] {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch {
    return [];
  }
  if (text === '') return [];
  if (!text.endsWith('\n')) throw new Error(`${path} does not end with a newline`);
  return text.slice(0, -1).split('\n').map((l) => JSON.parse(l) as T);
}

/** `--set` arguments from pairs. */
export const sets = (o: Record<string, string | number | boolean>): string[] => Object.entries(o).flatMap(([k, v]) => ['--set', `${k}=${String(v)}`]);

/**
 * Throws naming the instances a finished run left window state in (read from its
 * `--summary` file): at the end of input the watermark is +∞, every window fired and
 * every cell's cleanup timer ran, so a leftover entry is a cleanup bound that is off.
 */
export function expectNoWindowState(summaryPath: string, what: string): void {
  const summary = JSON.parse(readFileSync(summaryPath, 'utf8')) as RunSummary;
  const left = summary.operators.filter((o) => o.windowStateEntries !== 0).map((o) => `${o.operators.join('→')}: ${o.windowStateEntries}`);
  if (left.length > 0) throw new Error(`${what}: window state left after the end of input (${left.join(', ')})`);
}

