// Seeded corruption fuzzing of what a flow leaves between runs: the newest checkpoint
// manifest (checkpoints/chk-N.json, src/runtime/checkpoints.ts) and the file sink's
// `.committed` sidecar (src/connectors/file-sink.ts). A keyed count is SIGKILLed after
// a few checkpoints; each case copies that state, damages one of the two files
// (flipped, truncated, appended, zeroed or random bytes, or one digit changed — JSON
// that still parses), and runs the flow again to the end through `run()` from
// dist/src/index.js, in a child process. The case must end in the exact output of an
// uninterrupted run, or in one line with a TIDEPOOL_ code naming the damaged file.
//
// Replay: TIDEPOOL_FUZZ_SEED=<seed> TIDEPOOL_FUZZ_CASES=<n>; TIDEPOOL_FUZZ_TARGET=manifest
// or sidecar damages only that file, TIDEPOOL_FUZZ_DIGITS=1 only changes digits.
import t from 'tap';
import { spawn } from 'node:child_process';
import { cpSync, mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { FIX, FlowChildren, manifestIds, sleep } from './helpers/flow-child.js';
import { damage } from './helpers/corrupt.js';
import { lines } from './helpers/keyed-output.js';
import { rng } from './helpers/rng.js';

const SEED = Number(process.env.TIDEPOOL_FUZZ_SEED ?? 0xf10f);
const CASES = Number(process.env.TIDEPOOL_FUZZ_CASES ?? 6); // npm run soak: 60
const TARGET = process.env.TIDEPOOL_FUZZ_TARGET;
const DIGITS = process.env.TIDEPOOL_FUZZ_DIGITS === '1';
const N = 20_000;
const KEYS = 1000;
const keyOf = (i: number): string => `k${(Math.imul(i, 2654435761) >>> 0) % KEYS}`;
const OPTIONS = { set: ['parallelism=2', 'checkpoint.intervalMs=100', 'checkpoint.retain=2', 'restart.maxAttempts=0'] };

const children = new FlowChildren('tidepool-fuzz-flow-');
t.teardown(() => children.remove());
const tmp = children.dir;
const INDEX_URL = pathToFileURL(new URL('../src/index.js', import.meta.url).pathname).href;
const RUN = join(tmp, 'run-flow.mjs');
writeFileSync(
  RUN,
  `import { run } from ${JSON.stringify(INDEX_URL)};\n` +
    `const [path, options] = process.argv.slice(2);\n` +
    `let result;\n` +
    `try { result = { summary: await run(path, JSON.parse(options)) }; } catch (e) { result = { error: { code: e.code, message: String(e.message) } }; }\n` +
    `process.stdout.write('\\n' + JSON.stringify(result) + '\\n');\n`,
);

interface Result {
  error?: { code?: string; message: string };
  summary?: unknown;
  exit: number | null;
  signal: NodeJS.Signals | null;
  stderr: string;
}

/** `run()` of the keyed count on `root` (state in root/state, output in root/out). */
function runFlow(root: string, rate: string, killWhen?: () => boolean): Promise<Result> {
  const opts = { ...OPTIONS, state: join(root, 'state') };
  const env = { ...process.env, TIDEPOOL_MODULE_CACHE: join(tmp, 'module-cache'), TP_N: String(N), TP_KEYS: String(KEYS), TP_OUT: join(root, 'out', 'counts.jsonl'), TP_RATE: rate };
  const c = spawn(process.execPath, [RUN, join(FIX, 'keyed-count.ts'), JSON.stringify(opts)], { cwd: root, env, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  c.stdout!.on('data', (d: Buffer) => (stdout += d));
  c.stderr!.on('data', (d: Buffer) => (stderr += d));
  const timer = setTimeout(() => c.kill('SIGKILL'), 60_000); // a hang fails the case
  let poll: NodeJS.Timeout | undefined;
  if (killWhen) poll = setInterval(() => killWhen() && c.kill('SIGKILL'), 5);
  return new Promise((resolve) => {
    c.on('close', (exit, signal) => {
      clearTimeout(timer);
      if (poll) clearInterval(poll);
      let parsed: Partial<Result> = {};
      try {
        parsed = JSON.parse(stdout.trimEnd().split('\n').at(-1) ?? '') as Partial<Result>;
      } catch {
        /* killed, or crashed: no result line */
      }
      resolve({ ...parsed, exit, signal, stderr });
    });
  });
}

/** What is wrong with the output compared with an uninterrupted run (empty: nothing). */
function outputProblems(out: string): string[] {
  let ls: ReturnType<typeof lines>;
  try {
    ls = lines(out);
  } catch (e) {
    return [`the output is not JSON lines: ${(e as Error).message}`];
  }
  const problems: string[] = [];
  const seen = new Uint8Array(N);
  const last = new Map<string, { n: number; i: number }>();
  for (const [l, { key, value }] of ls.entries()) {
    if (!(value?.i >= 0 && value.i < N) || seen[value.i]++ || keyOf(value.i) !== key) problems.push(`line ${l + 1}: ${JSON.stringify({ key, value })} is out of range, repeated or under the wrong key`);
    const prev = last.get(key) ?? { n: 0, i: -1 };
    if (value?.n !== prev.n + 1 || value.i <= prev.i) problems.push(`line ${l + 1}: key ${key} update ${value?.n} after ${prev.n}`);
    last.set(key, value);
    if (problems.length >= 3) break;
  }
  if (ls.length !== N) problems.push(`${ls.length} lines, expected ${N}`);
  return problems.slice(0, 4);
}

/** A JSON file with one digit changed: still valid JSON, different content. */
function changeDigit(r: () => number, b: Buffer): { bytes: Buffer; what: string } | undefined {
  const at: number[] = [];
  b.forEach((c, i) => c >= 0x30 && c <= 0x39 && at.push(i));
  if (at.length === 0) return undefined;
  const i = at[Math.floor(r() * at.length)]!;
  const c = Buffer.from(b);
  c[i] = 0x30 + ((c[i]! - 0x30 + 1 + Math.floor(r() * 9)) % 10);
  return { bytes: c, what: `digit at ${i} changed ${String.fromCharCode(b[i]!)}→${String.fromCharCode(c[i]!)}` };
}

t.test(`manifest and sidecar fuzzing (seed ${SEED}, ${CASES} cases)`, async (t) => {
  // The interrupted run every case starts from.
  const base = join(tmp, 'base');
  mkdirSync(join(base, 'out'), { recursive: true });
  const flowState = join(base, 'state', 'chk-count');
  const killed = await runFlow(base, '4000', () => manifestIds(flowState).length >= 2 && manifestIds(flowState).at(-1)! >= 3);
  t.equal(killed.signal, 'SIGKILL', `the first run was killed after checkpoints ${manifestIds(flowState).join(', ')}`);
  await sleep(10);

  const defects: string[] = [];
  let errors = 0;
  let right = 0;
  for (let i = 0; i < CASES; i++) {
    const r = rng((SEED * 31 + i * 7919) >>> 0);
    const root = join(tmp, `case-${i}`);
    cpSync(base, root, { recursive: true });
    const caseState = join(root, 'state', 'chk-count');
    let file: string;
    if (TARGET === 'manifest' || (TARGET !== 'sidecar' && i % 2 === 0)) {
      file = join(caseState, 'checkpoints', `chk-${String(manifestIds(caseState).at(-1)).padStart(10, '0')}.json`);
    } else {
      const sidecars = readdirSync(join(root, 'out')).filter((n) => n.endsWith('.committed'));
      if (sidecars.length === 0) throw new Error('the interrupted run left no .committed sidecar');
      file = join(root, 'out', sidecars[Math.floor(r() * sidecars.length)]!);
    }
    const original = readFileSync(file);
    const d = (DIGITS || r() < 0.4 ? changeDigit(r, original) : undefined) ?? damage(r, original);
    writeFileSync(file, d.bytes);
    const name = file.slice(root.length + 1);
    const label = `case ${i}: ${name} ${d.what}${d.what.startsWith('digit') ? ` (${JSON.stringify(original.toString('latin1').slice(Math.max(0, Number(/at (\d+)/.exec(d.what)![1]) - 30), Number(/at (\d+)/.exec(d.what)![1]) + 5))})` : ''}`;
    const res = await runFlow(root, '0');
    if (res.signal || (res.error === undefined && res.summary === undefined)) {
      defects.push(`${label}: the run ended without a result (${res.signal ?? `exit ${res.exit}`}): ${res.stderr.trim().split('\n').slice(-3).join(' | ')}`);
    } else if (res.error) {
      errors++;
      const { code, message } = res.error;
      const base = file.slice(file.lastIndexOf('/') + 1);
      if (!code?.startsWith('TIDEPOOL_') || message.includes('\n') || !message.includes(base)) {
        defects.push(`${label}: error ${code}: ${message.split('\n')[0]} — not a one-line TIDEPOOL_ error naming ${base}`);
      }
    } else {
      const problems = outputProblems(join(root, 'out', 'counts.jsonl'));
      if (problems.length) defects.push(`${label}: the run succeeded with WRONG OUTPUT: ${problems.join('; ')}`);
      else right++;
    }
    t.comment(`${label}: ${res.error ? `${res.error.code}: ${res.error.message.slice(0, 160)}` : 'completed'}`);
    rmSync(root, { recursive: true, force: true });
  }
  t.comment(`${right} cases ended with the right output, ${errors} with an error`);
  for (const d of defects) t.comment(`DEFECT ${d}`);
  t.same(defects, [], 'every case ends in the exact output or one line with a TIDEPOOL_ code naming the damaged file');
});
