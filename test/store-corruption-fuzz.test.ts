// Seeded corruption fuzzing of a closed (or killed, or open) store: flipped bytes,
// truncations, appended, zeroed and random bytes in
//   values      stored page records (through a direct LMDB handle)
//   records     the commit record (its raw msgpack) and the attempts record
//   files       data.mdb on disk (truncated; a stored page's bytes in place), lock.mdb,
//               the .owner file
//   spill       the spill file of an open store with a tiny cache, between flushes;
//               then flush, close, reopen
//   after-kill  the spill file of a store SIGKILLed between flushes
// Every case reopens the store and reads every key (get, has, both iterations, size)
// against a model of what was flushed. It must end in the right result or in one-line
// TIDEPOOL_CORRUPT_* errors naming the damaged page or record — never a wrong value,
// another kind of error, a hang or a native crash. The cases run in child processes
// (fixtures/corruption-fuzz-child) so a hang times out and a crash is a signal here.
//
// Not fuzzed: LMDB's own B-tree pages inside data.mdb (branch/leaf headers, node
// offsets). They carry no checksum and lmdb-js reads them natively; damage there can
// end the process with SIGSEGV or SIGABRT, which tidepool cannot catch. The "files"
// target damages the bytes of our page records inside data.mdb and its length.
//
// Replay one target: TIDEPOOL_FUZZ_SEED=<seed> node dist/test/fixtures/corruption-fuzz-child.js <tmp> <target> <seed> <cases>
import t, { type Test } from 'tap';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const CHILD = fileURLToPath(new URL('./fixtures/corruption-fuzz-child.js', import.meta.url));
const SEED = Number(process.env.TIDEPOOL_FUZZ_SEED ?? 0x5eed0c0);
const tmp = mkdtempSync(join(tmpdir(), 'tidepool-fuzz-'));
t.teardown(() => rmSync(tmp, { recursive: true, force: true }));

/** Native prints of LMDB (fprintf to stderr) that are not failures by themselves. */
const LMDB_PRINTS = /Write error: [^\n]*? size \d+|^(internal error, index points to a 00 page!\?|mdb_\w+ error|do_write error [-\d ]+)$/gm;

interface CaseResult {
  wrong: string[];
  corrupt: { code: string; message: string }[];
  other: string[];
  misnamed: string[];
  flushedOk?: boolean;
  after?: { wrong: string[]; corrupt: unknown[]; other: string[] };
}
interface Run {
  cases: Map<number, { what: string; result?: CaseResult }>;
  ended: boolean;
  code: number | null;
  signal: NodeJS.Signals | null;
  stderr: string;
  timedOut: boolean;
}

function fuzz(target: string, seed: number, cases: number, timeoutMs: number): Promise<Run> {
  const child = spawn(process.execPath, [CHILD, join(tmp, target), target, String(seed), String(cases)], { stdio: ['ignore', 'pipe', 'pipe'] });
  const run: Run = { cases: new Map(), ended: false, code: null, signal: null, stderr: '', timedOut: false };
  let buf = '';
  child.stdout!.setEncoding('utf8');
  child.stdout!.on('data', (d: string) => {
    buf += d;
    for (let nl = buf.indexOf('\n'); nl >= 0; nl = buf.indexOf('\n')) {
      const line = buf.slice(0, nl);
      buf = buf.slice(nl + 1);
      const m = /^(case|result) (\d+) (.*)$/.exec(line);
      if (m && m[1] === 'case') run.cases.set(Number(m[2]), { what: m[3]! });
      else if (m) run.cases.get(Number(m[2]))!.result = JSON.parse(m[3]!) as CaseResult;
      else if (line === 'end') run.ended = true;
    }
  });
  child.stderr!.on('data', (d: Buffer) => (run.stderr += d));
  const timer = setTimeout(() => {
    run.timedOut = true;
    child.kill('SIGKILL');
  }, timeoutMs);
  return new Promise((resolve) => {
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      run.code = code;
      run.signal = signal;
      resolve(run);
    });
  });
}

function judge(t: Test, target: string, seed: number, cases: number, run: Run, expectErrors: boolean): void {
  const last = [...run.cases].at(-1);
  const where = last ? `case ${last[0]} (${last[1].what})` : 'before the first case';
  t.notOk(run.timedOut, `${target}: no hang (a hang was at ${where})`);
  t.equal(run.signal, null, `${target}: no native crash (signal ${run.signal} at ${where})`);
  t.equal(run.code, 0, `${target}: the fuzzer exited 0`);
  t.ok(run.ended && run.cases.size === cases, `${target}: all ${cases} cases ran (${run.cases.size})`);
  t.equal(run.stderr.replace(LMDB_PRINTS, '').trim(), '', `${target}: nothing on stderr but LMDB's own prints`);
  const bad: string[] = [];
  let right = 0;
  let detected = 0;
  for (const [i, c] of run.cases) {
    const r = c.result;
    const label = `seed ${seed} case ${i} (${c.what})`;
    if (!r) {
      bad.push(`${label}: no result`);
      continue;
    }
    for (const w of r.wrong) bad.push(`${label}: WRONG VALUE ${w}`);
    for (const o of r.other) bad.push(`${label}: not a one-line TIDEPOOL_CORRUPT_* error: ${o.split('\n')[0]}`);
    for (const m of r.misnamed) bad.push(`${label}: the error does not name what was damaged: ${m}`);
    if (r.after) {
      for (const w of [...r.after.wrong, ...r.after.other]) bad.push(`${label}: after reopening, ${w.split('\n')[0]}`);
      if (r.after.corrupt.length) bad.push(`${label}: after reopening, the durable state reads as corrupted`);
    }
    if (r.corrupt.length) detected++;
    else if (r.wrong.length + r.other.length === 0) right++;
  }
  t.same(bad.slice(0, 10), [], `${target}: every case is right or a one-line TIDEPOOL_CORRUPT_* error naming the damage (${bad.length} were not)`);
  t.comment(`${target}: ${detected} cases detected damage, ${right} read right`);
  if (expectErrors) t.ok(detected > 0, `${target}: the damage was detected in some cases`);
}

// [target, cases, timeout, must some cases detect damage]
const plan: [string, number, number, boolean][] = [
  ['values', 80, 90_000, true],
  ['records', 60, 90_000, true],
  ['files', 60, 90_000, true],
  ['spill', 40, 90_000, true],
  ['after-kill', 4, 90_000, false], // the spill file is scratch: every case must read right
];

t.test(`corruption fuzzing (seed ${SEED})`, async (t) => {
  // Two fuzzers at a time: the machine has two cores.
  const queue = plan.map((p, k) => ({ p, seed: (SEED + k * 1_000_003) >>> 0 }));
  const runs: Promise<void>[] = [];
  const worker = async () => {
    for (let next = queue.shift(); next; next = queue.shift()) {
      const [target, cases, timeout, expectErrors] = next.p;
      const run = await fuzz(target, next.seed, cases, timeout);
      t.test(target, async (t) => judge(t, target, next.seed, cases, run, expectErrors));
    }
  };
  runs.push(worker(), worker());
  await Promise.all(runs);
});
