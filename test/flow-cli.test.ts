// The `tidepool` command as a user runs it: child processes of `node dist/src/cli/main.js`.
// A run of the example word count; every error is one line on stderr naming what is
// wrong, with a non-zero exit and no stack trace (unless --verbose); --help; and
// `profile cpu`, which writes one .cpuprofile per thread.
import t, { type Test } from 'tap';
import { spawn } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { plain } from './helpers/cli.js';

const REPO = fileURLToPath(new URL('../../', import.meta.url));
const CLI = join(REPO, 'dist/src/cli/main.js');
const FIX = join(REPO, 'test-fixtures/flows/run');

const tmp = mkdtempSync(join(tmpdir(), 'tidepool-flow-cli-'));
t.teardown(() => rmSync(tmp, { recursive: true, force: true }));

// Word count fixture parameters (the fixture reads them from the environment).
const WC_INPUT = join(tmp, 'input.txt');
const WC_ENV = { TP_INPUT: WC_INPUT, TP_OUTPUT: join(tmp, 'wc-out/counts.jsonl') };
writeFileSync(WC_INPUT, 'the quick brown fox\njumps over the lazy dog\nThe end\n');

interface Result {
  code: number | null;
  stdout: string;
  stderr: string;
  ms: number;
}

/** This process's environment without tap's (NODE_OPTIONS would load its loaders in every child). */
function cleanEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (k !== 'NODE_OPTIONS' && !/^_?TAP/.test(k)) env[k] = v;
  return env;
}

function cli(args: string[], opts: { cwd?: string; env?: Record<string, string>; timeoutMs?: number } = {}): Promise<Result> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const c = spawn(...plain(process.execPath, [CLI, ...args]), {
      cwd: opts.cwd ?? tmp,
      // Compiled modules go to a cache under tmp; no TTY, so no progress drawing.
      env: { ...cleanEnv(), TIDEPOOL_MODULE_CACHE: join(tmp, 'module-cache'), ...opts.env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    c.stdout.on('data', (d: Buffer) => (stdout += d));
    c.stderr.on('data', (d: Buffer) => (stderr += d));
    const timer = setTimeout(() => c.kill('SIGKILL'), opts.timeoutMs ?? 60_000);
    c.on('error', reject);
    c.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr, ms: performance.now() - t0 });
    });
  });
}

/** Asserts a failed run: non-zero exit, exactly one `tidepool: …` line on stderr, no stack. */
function oneLineError(t: Test, r: Result, ...fragments: (string | RegExp)[]): void {
  t.ok(r.code !== 0 && r.code !== null, `non-zero exit (${r.code})`);
  const lines = r.stderr.replace(/\n$/, '').split('\n');
  t.equal(lines.length, 1, `one line on stderr: ${JSON.stringify(r.stderr)}`);
  t.match(lines[0], /^tidepool: \S/, 'prefixed with the command name');
  t.notMatch(r.stderr, /^\s+at /m, 'no stack trace');
  for (const f of fragments) t.match(lines[0], f);
}

function countWords(text: string): Map<string, number> {
  const m = new Map<string, number>();
  for (const line of text.split('\n')) for (const w of line.toLowerCase().match(/[a-z']+/g) ?? []) m.set(w, (m.get(w) ?? 0) + 1);
  return m;
}

t.test('run the example word count with --summary', async (t) => {
  const cwd = join(tmp, 'example');
  mkdirSync(join(cwd, 'examples/data'), { recursive: true });
  const text = join(cwd, 'examples/data/sonnets.txt');
  copyFileSync(join(REPO, 'examples/data/sonnets.txt'), text);
  const r = await cli(['run', join(REPO, 'examples/flows/wordcount.ts'), '--summary', 'summary.json'], { cwd });
  t.equal(r.code, 0, `exit 0 ${r.stderr}`);
  t.equal(r.stderr, '', 'nothing on stderr');

  const reference = countWords(readFileSync(text, 'utf8'));
  const out = readFileSync(join(cwd, 'wordcount-out/counts.jsonl'), 'utf8').trimEnd().split('\n').map((l) => JSON.parse(l) as { key: string; value: number });
  t.equal(out.length, [...reference.values()].reduce((a, b) => a + b, 0), 'one line per word occurrence');
  const seen = new Map<string, number>();
  const wrong: string[] = [];
  for (const { key, value } of out) {
    const prev = seen.get(key) ?? 0;
    if (value !== prev + 1) wrong.push(`${key}: ${value} after ${prev}`);
    seen.set(key, value);
  }
  for (const [w, n] of reference) if (seen.get(w) !== n) wrong.push(`${w}: final ${seen.get(w)}, expected ${n}`);
  t.same(wrong.slice(0, 5), [], `counts and per-word order (${wrong.length} wrong)`);

  const summary = JSON.parse(readFileSync(join(cwd, 'summary.json'), 'utf8')) as { flow: string; recordsIn: number; operators: { operators: string[] }[] };
  t.equal(summary.flow, 'wordcount');
  t.equal(summary.recordsIn, readFileSync(text, 'utf8').trimEnd().split('\n').length, 'every line read');
  t.same(summary.operators.map((o) => o.operators).flat(), ['lines', 'words', 'counts', 'out']);
});

t.test('errors: one line on stderr naming what is wrong, non-zero exit, no stack trace', async (t) => {
  const wc = join(FIX, 'wordcount.ts');

  await t.test('missing module file', async (t) => {
    oneLineError(t, await cli(['run', join(tmp, 'nope.ts')]), /nope\.ts/, /no such file/);
  });

  await t.test('default export is not a flow', async (t) => {
    oneLineError(t, await cli(['run', join(FIX, 'not-a-flow.ts')]), /not-a-flow\.ts/, /not a flow/, /sink/);
  });

  await t.test('syntax error in a .ts module names file:line:col', async (t) => {
    const bad = join(tmp, 'bad-syntax.ts');
    writeFileSync(bad, ["import { flow } from 'tidepool';", '', 'const n: number = 1;', 'export default flow(\'bad\').source(\'s\', n +);', ''].join('\n'));
    // Line 4: `export default flow('bad').source('s', n +);` — the ')' at column 43 is unexpected.
    oneLineError(t, await cli(['run', bad]), /bad-syntax\.ts:4:43/, /\)/);
  });

  await t.test('an operator worker that dies or throws while it starts (before its setup)', async (t) => {
    const mod = join(FIX, 'worker-start.ts');
    const args = ['run', mod, '--set', 'state.storage=memory', '--set', 'parallelism=2'];
    oneLineError(t, await cli(args, { env: { TP_MODE: 'exit' } }), /worker /, /exited with code 3/);
    oneLineError(t, await cli(args, { env: { TP_MODE: 'throw' } }), /worker-start\.ts/, /boom in a worker/);
    const ok = await cli(args, { env: { TP_MODE: '' } });
    t.equal(ok.code, 0, `and otherwise it runs ${ok.stderr}`);
    t.same(ok.stdout.trim().split('\n').map(Number).sort(), [2, 3, 4]);
  });

  await t.test('a module that throws while loading', async (t) => {
    oneLineError(t, await cli(['run', wc], { env: { TP_INPUT: '', TP_OUTPUT: '' } }), /wordcount\.ts/, /set TP_INPUT and TP_OUTPUT/);
  });

  await t.test('unknown operator in config', async (t) => {
    oneLineError(t, await cli(['run', wc, '--set', 'operators.nope.parallelism=2'], { env: WC_ENV }), /'nope'/);
  });

  await t.test('invalid config value', async (t) => {
    oneLineError(t, await cli(['run', wc, '--set', 'parallelism=zero'], { env: WC_ENV }), /\bparallelism\b/, /zero/);
  });

  await t.test('unknown key in a config file', async (t) => {
    const file = join(tmp, 'typo.json');
    writeFileSync(file, JSON.stringify({ paralelism: 2 }));
    oneLineError(t, await cli(['run', wc, '--config', file], { env: WC_ENV }), /paralelism/, /parallelism/);
  });

  await t.test('--config pointing at a missing file', async (t) => {
    oneLineError(t, await cli(['run', wc, '--config', join(tmp, 'missing.json')], { env: WC_ENV }), /missing\.json/);
  });

  await t.test('a missing input file for sources.file names the path', async (t) => {
    const missing = join(tmp, 'no-such-input.txt');
    oneLineError(t, await cli(['run', wc], { env: { ...WC_ENV, TP_INPUT: missing } }), missing, /no such file/);
  });

  await t.test('unknown CLI flag', async (t) => {
    oneLineError(t, await cli(['run', wc, '--bogus'], { env: WC_ENV }), /--bogus/);
  });

  await t.test('run without a module, and an unknown command', async (t) => {
    oneLineError(t, await cli(['run']), /usage: tidepool run <flow-module>/);
    oneLineError(t, await cli(['frobnicate']), /'frobnicate'/);
  });
});

t.test('--verbose adds the plan on success and the stack trace on failure', async (t) => {
  const ok = await cli(['run', join(FIX, 'wordcount.ts'), '--verbose', '--set', 'parallelism=2'], { env: WC_ENV });
  t.equal(ok.code, 0, ok.stderr);
  t.match(ok.stderr, /^tidepool: plan \[lines→words\]×2 --hash--> \[counts\]×2 --rebalance--> \[out\]×1$/m, 'the plan');
  t.equal(readFileSync(WC_ENV.TP_OUTPUT, 'utf8').trimEnd().split('\n').length, 11, 'and it ran');

  const bad = await cli(['run', join(tmp, 'nope.ts'), '--verbose']);
  t.not(bad.code, 0);
  t.match(bad.stderr, /^tidepool: .*nope\.ts/);
  t.match(bad.stderr, /^\s+at /m, 'a stack trace');
});

t.test('--help lists the commands', async (t) => {
  for (const args of [['--help'], ['help'], []]) {
    const r = await cli(args);
    t.equal(r.code, 0, `tidepool ${args.join(' ')}`);
    for (const cmd of ['run', 'profile', 'inspect']) t.match(r.stdout, new RegExp(`^\\s+tidepool ${cmd} `, 'm'), `lists ${cmd}`);
  }
  const v = await cli(['--version']);
  t.equal(v.stdout.trim(), (JSON.parse(readFileSync(join(REPO, 'package.json'), 'utf8')) as { version: string }).version);
});

t.test('profile cpu writes one .cpuprofile per thread', async (t) => {
  const cwd = join(tmp, 'profile');
  mkdirSync(cwd);
  const r = await cli(['profile', 'cpu', '--', join(FIX, 'wordcount.ts'), '--set', 'parallelism=2'], { cwd, env: { ...WC_ENV, TP_OUTPUT: join(cwd, 'out.jsonl') } });
  t.equal(r.code, 0, r.stderr);
  const dirs = readdirSync(cwd).filter((d) => d.startsWith('tidepool-profile-'));
  t.equal(dirs.length, 1, 'one profile directory in the cwd');
  const files = readdirSync(join(cwd, dirs[0] ?? '.')).filter((f) => f.endsWith('.cpuprofile'));
  // Main thread, the I/O worker, and 5 task instances: [lines→words]×2, [counts]×2, [out]×1.
  t.equal(files.length, 7, `one profile per thread: ${files.join(' ')}`);
  // Which thread a profile is: Node names it CPU.<date>.<time>.<pid>.<thread id>.<seq>
  // (thread 0 is the main thread), and its call frames name the entry module.
  const kinds: string[] = [];
  for (const f of files) {
    const p = JSON.parse(readFileSync(join(cwd, dirs[0]!, f), 'utf8')) as { nodes?: { callFrame: { url: string } }[] };
    t.ok(Array.isArray(p.nodes) && p.nodes.length > 0, `${f} is a CPU profile`);
    const urls = (p.nodes ?? []).map((n) => n.callFrame.url);
    const has = (path: string) => urls.some((u) => u.endsWith(`/dist/${path}`));
    const thread = Number(/^CPU\.\d+\.\d+\.\d+\.(\d+)\.\d+\.cpuprofile$/.exec(f)?.[1]);
    kinds.push(thread === 0 && has('src/cli/main.js') ? 'main' : has('workers/io.js') ? 'io' : has('workers/operator.js') || has('src/runtime/task.js') ? 'instance' : `unknown (${f})`);
  }
  t.same(kinds.sort(), ['instance', 'instance', 'instance', 'instance', 'instance', 'io', 'main'], 'the coordinator, the I/O worker and the 5 task instances');
  t.match(r.stdout, /\b7 CPU profiles\b/, 'the command says how many and where');
  t.equal(readFileSync(join(cwd, 'out.jsonl'), 'utf8').trimEnd().split('\n').length, 11, 'the flow ran');
});
