// The `tidepool` command in a child process, as a user runs it: `node dist/src/cli/main.js`,
// with this process's environment minus tap's. Removing tap's variables is not enough:
// @tapjs/processinfo wraps child_process.spawn and writes its --import loader into every
// child's NODE_OPTIONS, whatever env the caller passes, and the child's worker threads
// inherit it (each then runs the loader and a hooks thread). So children start through
// `env -u NODE_OPTIONS`, which takes it out again.
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';

export const CLI = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));
/** test-fixtures/flows/ of the repository. */
export const FLOWS = fileURLToPath(new URL('../../../test-fixtures/flows/', import.meta.url));

export function cleanEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (k !== 'NODE_OPTIONS' && !/^_?TAP/.test(k)) env[k] = v;
  return { ...env, ...extra };
}

/** `command args…` without the NODE_OPTIONS tap's spawn wrapper adds (see the top). */
export function plain(command: string, args: string[]): [string, string[]] {
  return ['env', ['-u', 'NODE_OPTIONS', command, ...args]];
}

export interface CliResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  ms: number;
  timedOut: boolean;
}

export interface CliRun {
  child: ChildProcess;
  /** Everything written to stdout so far. */
  stdout(): string;
  done: Promise<CliResult>;
}

export interface CliOptions {
  cwd: string;
  env?: Record<string, string>;
  /** SIGKILL after this long (the result says timedOut). Default 60 s. */
  timeoutMs?: number;
}

/** Starts `node main.js <args…>`; `done` resolves when it has exited. */
export function startCli(args: string[], opts: CliOptions): CliRun {
  return startProcess(process.execPath, [CLI, ...args], opts);
}

/** Starts any command with the clean environment (the CLI under `script`, for one). */
export function startProcess(command: string, args: string[], opts: CliOptions): CliRun {
  const t0 = performance.now();
  const c = spawn(...plain(command, args), { cwd: opts.cwd, env: cleanEnv(opts.env), stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  let timedOut = false;
  c.stdout!.on('data', (d: Buffer) => (stdout += d));
  c.stderr!.on('data', (d: Buffer) => (stderr += d));
  const timer = setTimeout(() => {
    timedOut = true;
    c.kill('SIGKILL');
  }, opts.timeoutMs ?? 60_000);
  const done = new Promise<CliResult>((resolve, reject) => {
    c.on('error', reject);
    c.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr, ms: performance.now() - t0, timedOut });
    });
  });
  return { child: c, stdout: () => stdout, done };
}

export const cli = (args: string[], opts: CliOptions): Promise<CliResult> => startCli(args, opts).done;

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
