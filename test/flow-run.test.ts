// Running flows programmatically with `run(modulePath, options)`: real worker threads,
// real files under a temp directory, results checked against plain JS references.
//
// Fixtures are raw flow modules in test-fixtures/flows/run/ that read their parameters
// from the environment, each always with the same values (FIXTURE_ENV): a coordinator
// imports a module once per process (ESM cache), so changed values would reach the
// workers but not the coordinator's copy. Only values read while records flow
// (TP_EXPLODE_AT) change between runs.
//
// Worker threads inherit this process's flags, and under tap those are its TypeScript,
// mock and process-info loaders: every worker of an in-process run() loads them (2-4×
// the time and memory). So most runs go through runClean(): the same programmatic
// run() in a plain `node` child process (started through `env -u NODE_OPTIONS`: tap's
// spawn wrapper would put its loader back in; see test/helpers/cli.ts); the summary
// test runs in this process.
import t from 'tap';
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { run, type RunOptions, type RunSummary } from '../src/index.js';
import { rng } from './helpers/rng.js';
import { plain, type CliResult } from './helpers/cli.js';

const FIX = fileURLToPath(new URL('../../test-fixtures/flows/run/', import.meta.url));
const CLI = fileURLToPath(new URL('../src/cli/main.js', import.meta.url));
const INDEX_URL = new URL('../src/index.js', import.meta.url).href;

const tmp = mkdtempSync(join(tmpdir(), 'tidepool-flow-run-'));
const prevCache = process.env.TIDEPOOL_MODULE_CACHE;
process.env.TIDEPOOL_MODULE_CACHE = join(tmp, 'module-cache');
t.teardown(() => {
  if (prevCache === undefined) delete process.env.TIDEPOOL_MODULE_CACHE;
  else process.env.TIDEPOOL_MODULE_CACHE = prevCache;
  rmSync(tmp, { recursive: true, force: true });
});

const KEYED_N = 50_000;
const PROCESS_N = 20_000;
const PROCESS_USERS = 97;

/** Each fixture's environment, fixed for the whole file (see the top). */
const FIXTURE_ENV: Record<string, Record<string, string>> = {
  'wordcount.ts': { TP_INPUT: join(tmp, 'words.txt'), TP_OUTPUT: join(tmp, 'wc/counts.jsonl') },
  'keyed-sum.ts': { TP_COUNT: String(KEYED_N), TP_OUTPUT: join(tmp, 'keyed/sums.jsonl') },
  'keyed-process.ts': { TP_COUNT: String(PROCESS_N), TP_USERS: String(PROCESS_USERS), TP_OUTPUT: join(tmp, 'process/out.jsonl') },
  'typed-flow.ts': { TP_OUTPUT: join(tmp, 'typed/out.jsonl') },
  'plain-flow.js': { TP_OUTPUT: join(tmp, 'plain/out.jsonl') },
  'explode.ts': { TP_OUTPUT: join(tmp, 'explode/out.jsonl') },
  'backpressure.ts': { TP_OUTPUT: join(tmp, 'bp/out.jsonl'), TP_PAYLOAD: '4000', TP_SPIN_US: '0', TP_COUNT: '3000' },
};

function useFixture(name: string): { path: string; env: Record<string, string> } {
  const env = FIXTURE_ENV[name]!;
  Object.assign(process.env, env);
  return { path: join(FIX, name), env };
}

function runFixture(name: string, options: RunOptions = {}): Promise<RunSummary> {
  return run(useFixture(name).path, options);
}

function readJsonl<T = Record<string, unknown>>(path: string): T[] {
  const text = readFileSync(path, 'utf8');
  if (text === '') return [];
  if (!text.endsWith('\n')) throw new Error(`${path} does not end with a newline`);
  return text.slice(0, -1).split('\n').map((l) => JSON.parse(l) as T);
}


/** Per key, the values of `{ key, value }` records in output order. */
function updatesByKey<V>(records: { key: unknown; value: V }[]): Map<string, V[]> {
  const m = new Map<string, V[]>();
  for (const r of records) {
    const k = JSON.stringify(r.key);
    let a = m.get(k);
    if (!a) m.set(k, (a = []));
    a.push(r.value);
  }
  return m;
}

type ChildResult = CliResult;

/** This process's environment without tap's (NODE_OPTIONS would load its loaders in every child). */
function cleanEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (k !== 'NODE_OPTIONS' && !/^_?TAP/.test(k)) env[k] = v;
  return { ...env, ...extra };
}

function child(args: string[], opts: { env?: Record<string, string>; cwd?: string; timeoutMs?: number } = {}): Promise<ChildResult> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const c = spawn(...plain(process.execPath, args), { cwd: opts.cwd ?? tmp, env: cleanEnv(opts.env), stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    let timedOut = false;
    c.stdout.on('data', (d: Buffer) => (stdout += d));
    c.stderr.on('data', (d: Buffer) => (stderr += d));
    const timer = setTimeout(() => {
      timedOut = true;
      c.kill('SIGKILL');
    }, opts.timeoutMs ?? 60_000);
    c.on('error', reject);
    c.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr, ms: performance.now() - t0, timedOut });
    });
  });
}

const RUN_CLEAN = join(tmp, 'run-clean.mjs');
writeFileSync(
  RUN_CLEAN,
  `import { run } from ${JSON.stringify(INDEX_URL)};\n` +
    `const [path, options] = process.argv.slice(2);\n` +
    `let result;\n` +
    `try { result = { summary: await run(path, JSON.parse(options)) }; } catch (e) { result = { error: { code: e.code, message: e.message } }; }\n` +
    `process.stdout.write('\\n' + JSON.stringify(result) + '\\n');\n`,
);

/** `run(fixture, options)` in a plain node child process with the fixture's environment. */
async function runClean(name: string, options: RunOptions = {}): Promise<RunSummary> {
  const r = await child([RUN_CLEAN, join(FIX, name), JSON.stringify(options)], { env: FIXTURE_ENV[name], timeoutMs: 120_000 });
  const last = r.stdout.trimEnd().split('\n').at(-1) ?? '';
  let result: { summary?: RunSummary; error?: { code?: string; message: string } };
  try {
    result = JSON.parse(last) as typeof result;
  } catch {
    throw new Error(`run in a child process ended with ${r.code ?? r.signal}: ${r.stderr || r.stdout}`);
  }
  if (result.error) throw Object.assign(new Error(result.error.message), { code: result.error.code });
  return result.summary!;
}

// ---- word count -------------------------------------------------------------------

const VOCAB = (() => {
  const r = rng(7);
  const letters = "abcdefghijklmnopqrstuvwxyz'";
  const words = new Set<string>();
  while (words.size < 400) {
    const len = 1 + Math.floor(r() * 9);
    let w = '';
    for (let i = 0; i < len; i++) w += letters[Math.floor(r() * (i === 0 ? 26 : 27))];
    words.add(w);
  }
  return [...words];
})();

function writeText(path: string, lines: number, seed: number): string[] {
  const r = rng(seed);
  const out: string[] = [];
  const seps = [' ', ' ', ' ', ', ', '. ', '! ', ' — ', ' (', ') ', ' café ', '\t', ' 42 '];
  for (let i = 0; i < lines; i++) {
    if (r() < 0.05) {
      out.push(r() < 0.5 ? '' : '   ');
      continue;
    }
    const n = Math.floor(r() * 14);
    let line = '';
    for (let j = 0; j < n; j++) {
      // Skewed: low indices far more often (a few very common words, a long tail).
      let w = VOCAB[Math.floor(VOCAB.length * r() ** 3)]!;
      if (r() < 0.15) w = w[0]!.toUpperCase() + w.slice(1);
      if (r() < 0.03) w = w.toUpperCase();
      line += (j ? seps[Math.floor(r() * seps.length)] : '') + w;
    }
    out.push(line);
  }
  writeFileSync(path, out.join('\n') + '\n');
  return out;
}

t.test('word count over a generated text file matches a plain JS reference', async (t) => {
  const env = FIXTURE_ENV['wordcount.ts']!;
  const lines = writeText(env.TP_INPUT!, 5000, 2024);
  const reference = new Map<string, number>();
  let occurrences = 0;
  for (const line of lines) {
    for (const w of line.toLowerCase().match(/[a-z']+/g) ?? []) {
      reference.set(w, (reference.get(w) ?? 0) + 1);
      occurrences++;
    }
  }
  t.ok(occurrences > 20_000 && reference.size > 300, `input: ${lines.length} lines, ${occurrences} words, ${reference.size} distinct`);

  const summary = await runClean('wordcount.ts', { overrides: { parallelism: 3 } });
  const out = readJsonl<{ key: string; value: number }>(env.TP_OUTPUT!);
  t.equal(out.length, occurrences, 'one output line per word occurrence');
  const byKey = updatesByKey(out);
  t.equal(byKey.size, reference.size, 'every word has updates');
  const wrong: string[] = [];
  for (const [word, count] of reference) {
    const seq = byKey.get(JSON.stringify(word)) ?? [];
    if (seq.at(-1) !== count) wrong.push(`${word}: final ${seq.at(-1)}, expected ${count}`);
    else if (!seq.every((v, i) => v === i + 1)) wrong.push(`${word}: updates ${seq.slice(0, 10).join(',')}… not 1,2,3…`);
  }
  t.same(wrong.slice(0, 5), [], `final counts and per-word sequences (${wrong.length} wrong)`);
  t.equal(summary.recordsIn, lines.length, 'the source read every line');
  t.equal(summary.recordsOut, occurrences);
  t.equal(summary.operators.find((o) => o.operators.includes('lines'))?.parallelism, 3, 'the file source ran with 3 instances');
});

// ---- keyed sums at every parallelism, chaining on/off, inline ------------------------

interface SumLine { k: string; n: number; sum: number; i: number }
const valueOf = (i: number) => ((i * 7) % 13) + 1;

const KEYED_REFERENCE = (() => {
  const ref = new Map<string, { n: number; sum: number }>();
  for (let i = 0; i < KEYED_N; i++) {
    const k = `k${i % 997}`;
    const a = ref.get(k) ?? { n: 0, sum: 0 };
    ref.set(k, { n: a.n + 1, sum: a.sum + valueOf(i) });
  }
  return ref;
})();

/** Problems with a keyed-sum output (empty when correct). */
function checkKeyedSums(lines: SumLine[], sourceParallelism: number): string[] {
  const problems: string[] = [];
  if (lines.length !== KEYED_N) problems.push(`${lines.length} lines, expected ${KEYED_N}`);
  const seen = new Uint8Array(KEYED_N);
  const state = new Map<string, { n: number; sum: number; lastBySubtask: number[] }>();
  for (const l of lines) {
    if (!Number.isInteger(l.i) || l.i < 0 || l.i >= KEYED_N || seen[l.i]) {
      problems.push(`record ${l.i} is unknown or counted twice`);
      continue;
    }
    seen[l.i] = 1;
    if (l.k !== `k${l.i % 997}`) problems.push(`record ${l.i} updated ${l.k}`);
    const s = state.get(l.k) ?? { n: 0, sum: 0, lastBySubtask: [] };
    if (l.n !== s.n + 1) problems.push(`${l.k}: update n=${l.n} after n=${s.n}`);
    if (l.sum !== s.sum + valueOf(l.i)) problems.push(`${l.k}: sum ${l.sum} after ${s.sum} + ${valueOf(l.i)} (record ${l.i})`);
    // Records of one source instance reach a key in the order that instance made them.
    const sub = l.i % sourceParallelism;
    if ((s.lastBySubtask[sub] ?? -1) >= l.i) problems.push(`${l.k}: record ${l.i} after ${s.lastBySubtask[sub]} from source subtask ${sub}`);
    s.lastBySubtask[sub] = l.i;
    s.n = l.n;
    s.sum = l.sum;
    state.set(l.k, s);
  }
  for (const [k, ref] of KEYED_REFERENCE) {
    const s = state.get(k);
    if (!s || s.n !== ref.n || s.sum !== ref.sum) problems.push(`${k}: final ${JSON.stringify(s && { n: s.n, sum: s.sum })}, expected ${JSON.stringify(ref)}`);
  }
  return problems;
}

t.test('keyed sums: the same per-key results and in-order updates for every parallelism, chaining, execution', async (t) => {
  const env = FIXTURE_ENV['keyed-sum.ts']!;
  const settings: { label: string; p: number; options: RunOptions; tasks: number }[] = [];
  for (const p of [1, 2, 3, 4]) settings.push({ label: `p=${p} chained`, p, options: { overrides: { parallelism: p } }, tasks: p === 1 ? 1 : 3 }); // fmt (and at p=1 out, a file sink: 1 instance) chain behind sums; at p=1 sums is fused into gen's task
  for (const p of [1, 3]) settings.push({ label: `p=${p} unchained`, p, options: { set: [`parallelism=${p}`, 'chaining=false'] }, tasks: 5 });
  settings.push({ label: 'p=1 inline', p: 1, options: { overrides: { parallelism: 1, execution: 'inline' } }, tasks: 1 });
  settings.push({ label: 'p=4 inline unchained', p: 4, options: { set: ['parallelism=4', 'execution=inline', 'chaining=false'] }, tasks: 5 });
  for (const s of settings) {
    const t0 = performance.now();
    const summary = await runClean('keyed-sum.ts', s.options);
    const ms = Math.round(performance.now() - t0);
    const problems = checkKeyedSums(readJsonl<SumLine>(env.TP_OUTPUT!), s.p);
    t.same(problems.slice(0, 5), [], `${s.label} (${ms} ms): ${problems.length} problems`);
    t.equal(summary.parallelism, s.p, `${s.label}: summary parallelism`);
    t.equal(summary.execution, s.options.overrides?.execution ?? (s.options.set?.includes('execution=inline') ? 'inline' : 'workers'), `${s.label}: execution`);
    t.equal(summary.operators.length, s.tasks, `${s.label}: tasks ${summary.operators.map((o) => `${o.task}×${o.parallelism}`).join(' ')}`);
    t.equal(summary.recordsIn, KEYED_N, `${s.label}: records in`);
    t.equal(summary.recordsOut, KEYED_N, `${s.label}: records out`);
  }
});

// ---- process with value and map state, spilling ------------------------------------

interface Ev { u: string; item: string; amount: number }
function event(i: number): Ev {
  return { u: `u${(i * 31) % PROCESS_USERS}`, item: `it-${(i * i + 3 * i) % 211}`, amount: (i % 10) + 1 };
}

/** What the keyed-process flow emits per user, in order. */
const PROCESS_REFERENCE = (() => {
  const users = new Map<string, { total: number; distinct: number; items: Map<string, number>; out: unknown[] }>();
  const user = (u: string) => {
    let s = users.get(u);
    if (!s) users.set(u, (s = { total: 0, distinct: 0, items: new Map(), out: [] }));
    return s;
  };
  for (let i = 0; i < PROCESS_N; i++) {
    const e = event(i);
    const s = user(e.u);
    s.total += e.amount;
    if (e.amount === 10) {
      if (s.items.delete(e.item)) s.distinct--;
    } else {
      const c = s.items.get(e.item);
      if (c === undefined) s.distinct++;
      s.items.set(e.item, (c ?? 0) + 1);
    }
    s.out.push({ kind: 'update', u: e.u, total: s.total, distinct: s.distinct });
  }
  for (let k = 0; k < PROCESS_USERS; k++) {
    const s = user(`u${k}`);
    const items = [...s.items].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    s.out.push({ kind: 'final', u: `u${k}`, total: s.total, distinct: s.distinct, size: items.length, items });
  }
  return users;
})();

for (const storage of ['lmdb', 'memory'] as const) {
  t.test(`process with value and map state, spilling (storage ${storage})`, async (t) => {
    const env = FIXTURE_ENV['keyed-process.ts']!;
    const summary = await runClean('keyed-process.ts', {
      overrides: { parallelism: 2, operators: { events: { parallelism: 1 } }, state: { storage, cachePages: 4, pageSize: 1024 } },
    });
    const out = readJsonl<{ u: string }>(env.TP_OUTPUT!);
    t.equal(out.length, PROCESS_N + PROCESS_USERS, 'one update per event and one final record per user');
    const byUser = new Map<string, unknown[]>();
    for (const r of out) {
      let a = byUser.get(r.u);
      if (!a) byUser.set(r.u, (a = []));
      a.push(r);
    }
    const wrong: string[] = [];
    for (const [u, ref] of PROCESS_REFERENCE) {
      const got = byUser.get(u) ?? [];
      if (JSON.stringify(got) !== JSON.stringify(ref.out)) {
        const at = ref.out.findIndex((r, i) => JSON.stringify(r) !== JSON.stringify(got[i]));
        wrong.push(`${u}: record ${at}: ${JSON.stringify(got[at])?.slice(0, 160)} expected ${JSON.stringify(ref.out[at]).slice(0, 160)}`);
      }
    }
    t.same(wrong.slice(0, 3), [], `every user's updates and final state match the reference (${wrong.length} users differ)`);
    const totals = summary.operators.find((o) => o.operators.includes('totals'))!;
    t.ok(totals, 'the process task is in the summary');
    t.equal(totals.parallelism, 2);
    t.ok(totals.statePages > 2 * 4, `state outgrew the cache: ${totals.statePages} pages for 2 × 4 cached`);
    t.ok(totals.stateSpilledPages > 0, `pages spilled: ${totals.stateSpilledPages}`);
    t.ok(totals.cacheHitRate !== null && totals.cacheHitRate < 1, `cache misses happened: hit rate ${totals.cacheHitRate}`);
  });
}

// ---- TypeScript and JavaScript modules ---------------------------------------------

t.test('a TypeScript flow module (types, interface, .ts helper) and a JavaScript flow module run', async (t) => {
  {
    const env = FIXTURE_ENV['typed-flow.ts']!;
    await runClean('typed-flow.ts', { overrides: { parallelism: 2 } });
    const ref = new Map<string, number>();
    for (let i = 0; i < 200; i++) {
      const c = (i * 13) % 40;
      const band = c < 5 ? 'cold' : c < 25 ? 'mild' : 'hot';
      if (band !== 'mild') ref.set(band, (ref.get(band) ?? 0) + 1);
    }
    const out = readJsonl<{ key: string; value: number }>(env.TP_OUTPUT!);
    t.equal(out.length, [...ref.values()].reduce((a, b) => a + b, 0), 'TS: one update per non-mild reading');
    const final = Object.fromEntries([...updatesByKey(out)].map(([k, v]) => [JSON.parse(k) as string, v.at(-1)]));
    t.same(final, Object.fromEntries(ref), 'TS: counts per band (the helper enum and filter ran)');
  }
  {
    const env = FIXTURE_ENV['plain-flow.js']!;
    await runClean('plain-flow.js', { overrides: { parallelism: 2 } });
    const ref = new Map<number, number>();
    for (let n = 1; n < 1000; n += 2) ref.set(n % 10, (ref.get(n % 10) ?? 0) + n);
    const out = readJsonl<{ key: number; value: number }>(env.TP_OUTPUT!);
    t.equal(out.length, 500, 'JS: one update per odd number');
    const final = Object.fromEntries([...updatesByKey(out)].map(([k, v]) => [k, v.at(-1)]));
    t.same(final, Object.fromEntries([...ref].map(([k, v]) => [String(k), v])), 'JS: sums per last digit');
  }
});

// ---- backpressure and memory ---------------------------------------------------------

t.test('backpressure: a fast source into a slow map parks the source and keeps memory bounded', async (t) => {
  const preload = join(tmp, 'max-rss.mjs');
  writeFileSync(
    preload,
    // VmHWM: this process's peak RSS (getrusage's maxRSS would include the parent's
    // peak, which Linux carries across fork and exec).
    "import { readFileSync, writeFileSync } from 'node:fs';\n" +
      "process.on('exit', () => writeFileSync(process.env.TP_RSS_FILE, String(1024 * Number(/VmHWM:\\s*(\\d+) kB/.exec(readFileSync('/proc/self/status', 'utf8'))[1]))));\n",
  );
  const payload = 2000;
  const runOnce = async (count: number, spinUs: number) => {
    const dir = join(tmp, `bp-${count}`);
    mkdirSync(dir, { recursive: true });
    const env = { TP_COUNT: String(count), TP_PAYLOAD: String(payload), TP_SPIN_US: String(spinUs), TP_OUTPUT: join(dir, 'out.jsonl'), TP_RSS_FILE: join(dir, 'rss') };
    const r = await child(
      ['--import', pathToFileURL(preload).href, CLI, 'run', join(FIX, 'backpressure.ts'), '--set', 'parallelism=1', '--set', 'chaining=false',
        '--set', 'batchSize=128', '--summary', join(dir, 'summary.json')],
      { env, timeoutMs: 60_000 },
    );
    t.equal(r.code, 0, `run of ${count} records exits 0 (${Math.round(r.ms)} ms) ${r.stderr}`);
    return {
      maxRss: Number(readFileSync(env.TP_RSS_FILE, 'utf8')),
      summary: JSON.parse(readFileSync(join(dir, 'summary.json'), 'utf8')) as RunSummary,
      out: readFileSync(env.TP_OUTPUT, 'utf8'),
    };
  };
  const base = await runOnce(1000, 0);
  const N = 300_000;
  const big = await runOnce(N, 3);
  const lines = big.out.split('\n');
  t.equal(lines.length - 1, N, 'every record reached the sink');
  t.same(JSON.parse(lines[N - 1]!), { i: N - 1, n: payload }, 'the last one in order');
  const fast = big.summary.operators.find((o) => o.operators.includes('fast'))!;
  const slow = big.summary.operators.find((o) => o.operators.includes('slow'))!;
  t.same(fast.operators, ['fast'], 'the source is a task of its own');
  // The slow map spins N × 3 µs = 900 ms at least; the source makes records faster
  // than that and a ring holds a few batches, so it waits on the full ring for a good
  // part of the spinning (more on a loaded machine, where the slow map gets less CPU).
  const spinMs = (N * 3) / 1000;
  t.ok(fast.backpressureMs >= 0.25 * spinMs, `the source was parked on full rings for ${fast.backpressureMs} ms (the slow map spun ≥ ${spinMs} ms)`);
  t.ok(fast.backpressureMs <= big.summary.wallMs, `…and no longer than the run (${big.summary.wallMs} ms)`);
  t.equal(big.summary.operators.find((o) => o.operators.includes('out'))!.backpressureMs, 0, 'the sink has no output to wait on');
  t.equal(slow.recordsIn, N);
  const data = N * payload;
  const growth = big.maxRss - base.maxRss;
  t.ok(growth < 0.4 * data, `peak RSS grew by ${(growth / 2 ** 20).toFixed(0)} MiB (base ${(base.maxRss / 2 ** 20).toFixed(0)} MiB) for ${(data / 2 ** 20).toFixed(0)} MiB of records`);
});

t.test('records larger than a ring fit through (a batch bigger than a 256 KiB channel ring)', async (t) => {
  // 3000 records of 4 KB, batches of 512: a 2 MB frame.
  const env = FIXTURE_ENV['backpressure.ts']!;
  const summary = await runClean('backpressure.ts', { overrides: { parallelism: 1, chaining: false } });
  t.equal(summary.recordsOut, 3000);
  t.equal(readJsonl(env.TP_OUTPUT!).length, 3000);
});

// ---- failures ------------------------------------------------------------------------

t.test('a throwing operator rejects run() with TIDEPOOL_USER_CODE naming operator, subtask and record; no worker is left', async (t) => {
  // In a plain child process: a warm-up run, then the failing run (one quick restart),
  // thread counts before and after, then a good run on the failed run's state directory.
  // The script never calls process.exit: the process must end by itself.
  const script = join(tmp, 'explode-in-child.mjs');
  writeFileSync(
    script,
    [
      `import { readdirSync } from 'node:fs';`,
      `import { run } from ${JSON.stringify(INDEX_URL)};`,
      `const [path, state] = process.argv.slice(2);`,
      `const threads = () => readdirSync('/proc/self/task').length;`,
      `const sleep = (ms) => new Promise((r) => setTimeout(r, ms));`,
      `const report = {};`,
      `process.env.TP_EXPLODE_AT = '-1';`,
      `await run(path, { overrides: { parallelism: 2 } }); // module compiled, I/O worker started`,
      `await sleep(300);`,
      `report.before = threads();`,
      `process.env.TP_EXPLODE_AT = '777';`,
      `try {`,
      `  await run(path, { overrides: { parallelism: 2, restart: { maxAttempts: 1, backoffMs: 10 } }, state });`,
      `  report.resolved = true;`,
      `} catch (e) {`,
      `  report.error = { code: e.code, message: e.message, isError: e instanceof Error };`,
      `}`,
      `report.after = threads();`,
      `for (let i = 0; i < 50 && report.after > report.before; i++) { await sleep(100); report.after = threads(); }`,
      `process.env.TP_EXPLODE_AT = '-1';`,
      `try { report.rerun = await run(path, { overrides: { parallelism: 2 }, state }); } catch (e) { report.rerunError = e.message; }`,
      // Runs that end before their first attempt (operator workers are started before the
      // checkpoint is chosen): already complete, and an unknown --from-checkpoint.
      `await sleep(300);`,
      `report.beforeEarly = threads();`,
      `try { report.again = (await run(path, { overrides: { parallelism: 2 }, state })).alreadyComplete; } catch (e) { report.againError = e.message; }`,
      `try { await run(path, { overrides: { parallelism: 2 }, state, fromCheckpoint: 987654 }); } catch (e) { report.unknownCheckpoint = e.code; }`,
      `report.afterEarly = threads();`,
      `for (let i = 0; i < 50 && report.afterEarly > report.beforeEarly; i++) { await sleep(100); report.afterEarly = threads(); }`,
      `process.stdout.write(JSON.stringify(report) + '\\n');`,
    ].join('\n'),
  );
  const env = FIXTURE_ENV['explode.ts']!;
  const r = await child([script, join(FIX, 'explode.ts'), join(tmp, 'explode-state')], { env, timeoutMs: 90_000 });
  t.notOk(r.timedOut, `the process exited by itself (${Math.round(r.ms)} ms)`);
  t.equal(r.code, 0, r.stderr);
  const report = JSON.parse(r.stdout.trim().split('\n').at(-1) || '{}') as {
    before: number; after: number; resolved?: boolean; error?: { code?: string; message: string; isError: boolean };
    rerun?: RunSummary; rerunError?: string;
    beforeEarly: number; afterEarly: number; again?: boolean; againError?: string; unknownCheckpoint?: string;
  };
  const err = report.error;
  t.notOk(report.resolved, 'run() did not resolve');
  t.ok(err?.isError, 'run() rejected with an Error');
  t.equal(err?.code, 'TIDEPOOL_USER_CODE');
  t.match(err?.message, /operator 'explode'/, 'names the operator');
  t.match(err?.message, /subtask 1\b/, 'names the subtask (777 is made by generator subtask 1 of 2)');
  t.match(err?.message, /\{"id":777\}/, 'names the record');
  t.match(err?.message, /RangeError: record 777 is cursed/, 'and what was thrown');
  t.notMatch(err?.message, /\n/, 'one line');
  t.ok(report.after <= report.before, `threads after the failure: ${report.after} (before: ${report.before})`);
  t.match(r.stderr, /restarting from the last checkpoint/, 'the restart was announced');

  // The failed run's state directory, run again with the bug gone: complete, exactly once.
  t.notOk(report.rerunError, report.rerunError ?? 'the rerun succeeded');
  const out = readJsonl<{ key: number; value: number }>(env.TP_OUTPUT!);
  t.equal(out.length, 2000, 'one output line per record');
  const byKey = updatesByKey(out);
  t.same([...byKey.keys()].sort(), ['0', '1', '2', '3', '4']);
  for (const [k, seq] of byKey) t.ok(seq.length === 400 && seq.every((v, i) => v === i + 1), `key ${k}: updates 1…400 in order`);

  // The workers a run starts before it knows whether it has anything to do are ended.
  t.equal(report.again, true, `the finished flow run again is already complete${report.againError ? `: ${report.againError}` : ''}`);
  t.ok(report.unknownCheckpoint, `an unknown checkpoint is refused (${report.unknownCheckpoint})`);
  t.ok(report.afterEarly <= report.beforeEarly, `threads after runs that ended before their first attempt: ${report.afterEarly} (before: ${report.beforeEarly})`);
});

t.test('the CLI with a throwing operator exits non-zero within seconds, one line on stderr', async (t) => {
  const env = { ...FIXTURE_ENV['explode.ts']!, TP_EXPLODE_AT: '777' };
  const ERROR = /^tidepool: operator 'explode' \(subtask 1\) threw RangeError: record 777 is cursed on record \{"id":777\}$/;
  const r = await child([CLI, 'run', join(FIX, 'explode.ts'), '--set', 'parallelism=2', '--set', 'restart.maxAttempts=0'], { env, timeoutMs: 30_000 });
  t.notOk(r.timedOut);
  // About a second on an idle machine; the bound is loose for loaded CI machines.
  t.ok(r.ms < 15_000, `exited after ${Math.round(r.ms)} ms`);
  t.not(r.code, 0, 'non-zero exit');
  const lines = r.stderr.trimEnd().split('\n');
  t.equal(lines.length, 1, `one line on stderr: ${r.stderr}`);
  t.match(lines[0], ERROR);

  // With restarts (quick ones here), each attempt is announced on a line of its own;
  // the last line is the error.
  const r2 = await child([CLI, 'run', join(FIX, 'explode.ts'), '--set', 'parallelism=2', '--set', 'restart.backoffMs=10'], { env, timeoutMs: 30_000 });
  t.not(r2.code, 0);
  const lines2 = r2.stderr.trimEnd().split('\n');
  t.match(lines2.at(-1), ERROR, 'the last line is the error');
  t.ok(lines2.slice(0, -1).every((l) => /restarting from the last checkpoint/.test(l)), `the others announce restarts: ${r2.stderr}`);
});

// ---- summary -------------------------------------------------------------------------

t.test('the summary option writes per-operator counts, wall time, state pages and cache hit rate', async (t) => {
  const file = join(tmp, 'summary/keyed.json');
  mkdirSync(join(tmp, 'summary'), { recursive: true });
  const state = join(tmp, 'summary/state');
  const t0 = performance.now();
  const returned = await runFixture('keyed-sum.ts', { summary: file, state, overrides: { parallelism: 2, state: { cachePages: 8, pageSize: 1024 } } });
  const elapsed = performance.now() - t0;
  t.ok(existsSync(file), 'written');
  const s = JSON.parse(readFileSync(file, 'utf8')) as RunSummary;
  t.same(s, returned, 'the file holds the summary run() returned');
  t.equal(s.flow, 'keyed-sum');
  t.ok(s.wallMs > 0 && s.wallMs <= elapsed + 1, `wallMs ${s.wallMs} (measured ${Math.round(elapsed)})`);
  t.equal(s.parallelism, 2);
  t.equal(s.execution, 'workers');
  t.equal(s.recordsIn, KEYED_N);
  t.equal(s.recordsOut, KEYED_N);
  t.same(s.operators.map((o) => o.operators), [['gen', 'tag'], ['sums', 'fmt'], ['out']]);
  t.same(s.operators.map((o) => o.task), ['gen→tag', 'sums→fmt', 'out']);
  t.same(s.operators.map((o) => o.parallelism), [2, 2, 1]);
  for (const o of s.operators) {
    t.equal(o.recordsIn, KEYED_N, `${o.task}: records in`);
    t.equal(o.recordsOut, KEYED_N, `${o.task}: records out`);
    t.ok(o.recordsInPerSec > 0, `${o.task}: rate`);
    // Milliseconds parked, summed over subtasks: at most every subtask for the whole run.
    t.ok(Number.isInteger(o.backpressureMs) && o.backpressureMs >= 0 && o.backpressureMs <= s.wallMs * o.parallelism, `${o.task}: backpressure ${o.backpressureMs} ms within ${s.wallMs} ms × ${o.parallelism}`);
  }
  // Real backpressure is asserted where a slow step forces it (the backpressure test);
  // here only the sink is certain: it has no output ring to wait for.
  t.equal(s.operators[2]!.backpressureMs, 0, 'out: a sink never waits on an output ring');
  const sums = s.operators[1]!;
  t.ok(sums.statePages > 2 * 8, `the stateful task reports its pages: ${sums.statePages}`);
  t.ok(sums.stateSpilledPages > 0, `…and spills: ${sums.stateSpilledPages}`);
  t.ok(typeof sums.cacheHitRate === 'number' && sums.cacheHitRate > 0 && sums.cacheHitRate < 1, `cache hit rate ${sums.cacheHitRate}`);
  for (const o of [s.operators[0]!, s.operators[2]!]) {
    t.equal(o.statePages, 0, `${o.task}: no state`);
    t.equal(o.cacheHitRate, null, `${o.task}: no cache`);
  }
  t.ok(readdirSync(state).includes('keyed-sum'), 'the state directory holds the flow\'s state');
  t.same(checkKeyedSums(readJsonl<SumLine>(FIXTURE_ENV['keyed-sum.ts']!.TP_OUTPUT!), 2).slice(0, 3), [], 'and the output is right');
});
