// Child `tidepool run`s of test-fixtures/flows/streams/numbered.ts (records
// { i, s: `r<i>` } from a generator into sinks.file or sinks.stdout) and a reader for
// FIFOs, shared by the tests of sinks that are streams.
//
// FIFOs are read from the test process without blocking libuv's thread pool: the read
// end is opened O_NONBLOCK and a spare write end is held open, so the reader sees end
// of data only when the test closes that spare end (after the child is gone), and a
// child that never opens the FIFO cannot hang the test.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { closeSync, constants, openSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const REPO = fileURLToPath(new URL('../../../', import.meta.url));
const CLI = join(REPO, 'dist/src/cli/main.js');
const FLOW = join(REPO, 'test-fixtures/flows/streams/numbered.ts');

/** The fixture's lines for records i = 0 … n-1. */
export const line = (i: number) => `${JSON.stringify({ i, s: `r${i}` })}\n`;
export const lines = (n: number) => Array.from({ length: n }, (_, i) => line(i)).join('');

/** This process's environment without tap's (NODE_OPTIONS would load its loaders in every child). */
function cleanEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (k !== 'NODE_OPTIONS' && !/^_?TAP/.test(k)) env[k] = v;
  return env;
}

export interface Child {
  child: ChildProcess;
  stdout: () => string;
  done: Promise<{ code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string }>;
}

/**
 * `node main.js run numbered.ts <args…>` in `cwd` (compiled modules cached there) with
 * TP_OUTPUT, and TP_COUNT unless unbounded; killed after a minute.
 */
export function start(cwd: string, output: string, count: number | undefined, args: string[]): Child {
  const env: NodeJS.ProcessEnv = { ...cleanEnv(), TIDEPOOL_MODULE_CACHE: join(cwd, 'module-cache'), TP_OUTPUT: output };
  if (count !== undefined) env.TP_COUNT = String(count);
  const child = spawn(process.execPath, [CLI, 'run', FLOW, ...args], { cwd, env, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (d: Buffer) => (stdout += d));
  child.stderr!.on('data', (d: Buffer) => (stderr += d));
  const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
  const done = new Promise<{ code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string }>((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr });
    });
  });
  return { child, stdout: () => stdout, done };
}

export const runToEnd = (cwd: string, output: string, count: number | undefined, args: string[]) => start(cwd, output, count, args).done;

/** Resolves once `get()` holds `n` lines; rejects after `ms`. */
export async function waitForLines(get: () => string, n: number, ms: number, what: string): Promise<string[]> {
  const until = Date.now() + ms;
  for (;;) {
    // Only the first n lines: the text keeps growing while the flow runs.
    const s = get();
    let end = -1;
    let k = 0;
    while (k < n && (end = s.indexOf('\n', end + 1)) !== -1) k++;
    if (k === n) return s.slice(0, end).split('\n');
    if (Date.now() > until) throw new Error(`${what}: ${k} lines after ${ms} ms, expected ${n}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

export function mkfifo(path: string): void {
  const r = spawnSync('mkfifo', [path], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`mkfifo ${path}: ${r.stderr}`);
}

/** Reads a FIFO concurrently (see the top of the file). */
export function readFifo(path: string): { text: () => string; finish: () => Promise<string> } {
  const readFd = openSync(path, constants.O_RDONLY | constants.O_NONBLOCK);
  const spare = openSync(path, constants.O_WRONLY | constants.O_NONBLOCK);
  const sock = new net.Socket({ fd: readFd, readable: true, writable: false });
  let text = '';
  sock.on('data', (d: Buffer) => (text += d));
  const ended = new Promise<void>((resolve, reject) => {
    sock.on('end', resolve);
    sock.on('error', reject);
  });
  return {
    text: () => text,
    finish: async () => {
      closeSync(spare);
      await ended;
      sock.destroy();
      return text;
    },
  };
}
