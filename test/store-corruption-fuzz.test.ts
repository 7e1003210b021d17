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
// One exception, in the "files" target: a truncation can cut LMDB's own B-tree pages
// too (whatever LMDB wrote last sits at the end of the file). lmdb-file.ts extends the
// file with zeros so the process gets no SIGBUS, but LMDB may then hit a zero page in an
// assertion (`mdb.c: Assertion 'IS_LEAF(mp)' failed`) and abort. Such a case is counted
// as an LMDB abort (reported, not a failure), and the fuzzer goes on from the next case
// in a new child; any other crash, or an abort elsewhere, still fails.
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
  /** Cases where LMDB aborted on a truncated data.mdb (see the header). */
  lmdbAborts: Map<number, string>;
  ended: boolean;
  code: number | null;
  signal: NodeJS.Signals | null;
  stderr: string;
  timedOut: boolean;
}

const LMDB_ASSERT = /^[^\n]*mdb\.c:\d+: Assertion '[^']+' failed[^\n]*(\n\S[^\n]*)?$/m;

/** Runs the target's cases, going on in a new child after an LMDB abort on a truncated data.mdb. */
async function fuzz(target: string, seed: number, cases: number, timeoutMs: number, env: Record<string, string> = {}): Promise<Run> {
  const run: Run = { cases: new Map(), lmdbAborts: new Map(), ended: false, code: null, signal: null, stderr: '', timedOut: false };
  let from = 0;
  for (;;) {
    const part = await fuzzFrom(target, seed, cases, timeoutMs, from, env);
    for (const [i, c] of part.cases) run.cases.set(i, c);
    Object.assign(run, { ended: part.ended, code: part.code, signal: part.signal, timedOut: part.timedOut });
    const last = [...part.cases].at(-1);
    const assertion = LMDB_ASSERT.exec(part.stderr);
    if (part.signal === 'SIGABRT' && assertion && last && last[1].result === undefined && last[1].what.startsWith('data.mdb truncated') && run.lmdbAborts.size < 10) {
      run.lmdbAborts.set(last[0], `${last[1].what}: ${assertion[0].replace(/\s+/g, ' ')}`);
      // Node prints its native stack on abort() from JavaScript (the test's fake abort).
      run.stderr += part.stderr.replace(LMDB_ASSERT, '').replace(/^(\s*\d+: .*|\s*----- (Native|JavaScript) stack trace -----\s*)$/gm, '');
      from = last[0] + 1;
      if (from < cases) continue;
      Object.assign(run, { ended: true, code: 0, signal: null });
    } else {
      run.stderr += part.stderr;
    }
    return run;
  }
}

function fuzzFrom(target: string, seed: number, cases: number, timeoutMs: number, from: number, env: Record<string, string>): Promise<Run> {
  const child = spawn(process.execPath, [CHILD, join(tmp, `${target}-${from}`), target, String(seed), String(cases), ...(from > 0 ? [`-${from}`] : [])], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } });
  const run: Run = { cases: new Map(), lmdbAborts: new Map(), ended: false, code: null, signal: null, stderr: '', timedOut: false };
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
  for (const [i, why] of run.lmdbAborts) t.comment(`${target}: case ${i} aborted in LMDB's own assertion (a truncation cut LMDB's B-tree pages; see the header): ${why}`);
  t.equal(run.stderr.replace(LMDB_PRINTS, '').trim(), '', `${target}: nothing on stderr but LMDB's own prints`);
  const bad: string[] = [];
  let right = 0;
  let detected = 0;
  for (const [i, c] of run.cases) {
    const r = c.result;
    const label = `seed ${seed} case ${i} (${c.what})`;
    if (!r) {
      if (run.lmdbAborts.has(i)) continue;
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

t.test('an LMDB abort on a truncated data.mdb is reported and the fuzzer goes on from the next case', async (t) => {
  // Seed 3's case 1 is a truncation (the child prints each case before reading it).
  const probe = await fuzz('files', 3, 2, 60_000);
  const truncation = [...probe.cases].find(([, c]) => c.what.startsWith('data.mdb truncated'))?.[0];
  t.ok(truncation !== undefined, `seed 3 has a truncation case among its first two (${[...probe.cases.values()].map((c) => c.what).join('; ')})`);
  const run = await fuzz('files', 3, 4, 60_000, { TIDEPOOL_FUZZ_FAKE_LMDB_ABORT: String(truncation) });
  t.same([...run.lmdbAborts.keys()], [truncation], 'the aborted case is counted as an LMDB abort');
  t.ok(run.ended && run.cases.size === 4 && run.signal === null && run.code === 0, `all 4 cases ran, the rest in a new child (${run.cases.size}, signal ${run.signal})`);
  t.equal(run.stderr.replace(LMDB_PRINTS, '').trim(), '', 'the assertion line is not left on stderr');
  const other = await fuzz('files', 3, 4, 60_000, { TIDEPOOL_FUZZ_FAKE_LMDB_ABORT: String(truncation), TIDEPOOL_FUZZ_FAKE_PLAIN: '1' });
  t.ok(other.signal === 'SIGABRT' && other.lmdbAborts.size === 0, `an abort without LMDB's assertion is still a crash (signal ${other.signal})`);
});
