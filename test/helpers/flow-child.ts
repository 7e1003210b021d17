// Child `tidepool run` processes of the checkpoint fixtures (real CLI, real SIGKILLs)
// and the checkpoint manifests they leave, shared by the checkpoint test files.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { isAbsolute, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const FIX = fileURLToPath(new URL('../../../test-fixtures/flows/checkpoint/', import.meta.url));
const CLI = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));


export interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
  stderr: string;
  ms: number;
}

export interface Running {
  child: ChildProcess;
  started: number;
  exited: boolean;
  done: Promise<Exit>;
}

/**
 * Runs fixtures from a temporary directory of its own (`dir`, removed by `remove()`),
 * caching compiled flow modules in it. `start` and `runToEnd` are bound: destructure them.
 */
export class FlowChildren {
  readonly dir: string;
  private readonly moduleCache: string;

  constructor(prefix: string) {
    this.dir = mkdtempSync(join(tmpdir(), prefix));
    this.moduleCache = join(this.dir, 'module-cache');
  }

  remove(): void {
    rmSync(this.dir, { recursive: true, force: true });
  }

  /**
   * `node main.js run <fixture> --state <state> <args…>` with the fixture's environment;
   * `flowFile` is a name under FIX, or an absolute path (e.g. an example flow).
   */
  readonly start = (flowFile: string, state: string, args: string[], env: Record<string, string>): Running => {
    const started = performance.now();
    const flowPath = isAbsolute(flowFile) ? flowFile : join(FIX, flowFile);
    const child = spawn(process.execPath, [CLI, 'run', flowPath, '--state', state, ...args], {
      cwd: this.dir,
      env: { ...process.env, TIDEPOOL_MODULE_CACHE: this.moduleCache, ...env },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let stderr = '';
    child.stderr!.on('data', (d: Buffer) => (stderr += d));
    const r: Running = { child, started, exited: false, done: undefined as never };
    r.done = new Promise((resolve, reject) => {
      child.on('error', reject);
      child.on('close', (code, signal) => {
        r.exited = true;
        resolve({ code, signal, stderr, ms: Math.round(performance.now() - started) });
      });
    });
    return r;
  };

  /** Runs to the end (SIGKILL after `timeoutMs`, reported as a failure by the caller). */
  readonly runToEnd = async (flowFile: string, state: string, args: string[], env: Record<string, string>, timeoutMs = 150_000): Promise<Exit> => {
    const r = this.start(flowFile, state, args, env);
    const timer = setTimeout(() => r.child.kill('SIGKILL'), timeoutMs);
    try {
      return await r.done;
    } finally {
      clearTimeout(timer);
    }
  };
}

const MANIFEST = /^chk-(\d+)\.json$/;

/** Ids of the complete checkpoints (manifests) of a flow's state directory, ascending. */
export function manifestIds(flowState: string): number[] {
  let names: string[];
  try {
    names = readdirSync(join(flowState, 'checkpoints'));
  } catch {
    return [];
  }
  return names.map((n) => MANIFEST.exec(n)).filter((m): m is RegExpExecArray => m !== null).map((m) => Number(m[1])).sort((a, b) => a - b);
}

export const newestManifest = (flowState: string): number => manifestIds(flowState).at(-1) ?? 0;
