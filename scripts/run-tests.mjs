// Runs the compiled tap suite and prints the plain "N passed, N failed" line CI reads.
// tap's own summary is not recognised by CI, so we count the per-file subtest results
// from the raw TAP stream ourselves ("    ok 3 - name" / "    not ok 3 - name").
// CI keeps only the tail of the output, so the end repeats what failed and the slowest
// files: a red run then says which test it was without the whole log.
//
// Lanes: tap runs its files in alphabetical order whatever order they are given in, so
// with `--jobs=2` the longest files (remote-checkpoints, the crash loops) started last
// and ran alone at the end: 704 s of wall time for 1295 s of file time on 2 cores. So the
// files are split into TIDEPOOL_TEST_JOBS lanes (default 2), longest first onto the
// least loaded lane, by the file times in scripts/test-times.json (a file not listed
// counts as 10 s), and each lane is one tap process with `--jobs=1`. After a full run
// the measured times are written to dist/test-times.json; copy it over
// scripts/test-times.json when the suite's shape has changed.
import { spawn } from 'node:child_process';
import { createRequire } from 'node:module';
import { existsSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const require = createRequire(import.meta.url);
const tapBin = join(dirname(require.resolve('tap/package.json')), 'dist/esm/run.mjs');
const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const given = process.argv.slice(2);
const all = given.length === 0;
const files = all
  ? readdirSync('dist/test').filter((f) => f.endsWith('.test.js')).map((f) => `dist/test/${f}`)
  : given;
const jobs = Math.max(1, Number(process.env.TIDEPOOL_TEST_JOBS ?? 2) || 2);

const timesFile = join(root, 'scripts/test-times.json');
const known = existsSync(timesFile) ? JSON.parse(readFileSync(timesFile, 'utf8')) : {};
const lanes = Array.from({ length: Math.min(jobs, files.length) }, () => ({ files: [], load: 0 }));
for (const f of [...files].sort((a, b) => (known[b] ?? 10) - (known[a] ?? 10))) {
  const lane = lanes.reduce((m, l) => (l.load < m.load ? l : m));
  lane.files.push(f);
  lane.load += known[f] ?? 10;
}

// 480 s per file: the crash-loop files (nexmark-crash, checkpoint-restore) take 120–220 s
// on 2 cores and once took over 300 s when they ran beside the remote-checkpoint tests
// (azurite plus two flows); a real hang still ends the file.
const tapArgs = (list) => [tapBin, '--reporter=tap', '--disable-coverage', '--allow-empty-coverage', '--timeout=480', '--jobs=1', ...list];
const started = Date.now();
let passed = 0, failed = 0, skipped = 0;
const failures = [];
const fileTimes = [];

/** A TAP stream's counter (one per lane: their lines interleave on stdout). */
function counter() {
  let failedInFile = 0;
  let subtest = '';
  return (line) => {
    // A file that failed without a failing subtest (it crashed, timed out, or found no
    // tests) still counts as one failure.
    const top = /^(not )?ok \d+ - (\S+)(?:.*# time=([\d.]+)ms)?/.exec(line);
    if (top) {
      if (top[1]) failures.push(`${top[2]}${failedInFile === 0 ? ' (the file itself failed)' : ''}`);
      if (top[1] && failedInFile === 0) failed++;
      if (top[3]) fileTimes.push([top[2], Number(top[3])]);
      failedInFile = 0;
      return;
    }
    const name = /^ {4}# Subtest: (.*)$/.exec(line);
    if (name) subtest = name[1];
    const inner = /^ {8}not ok \d+ - (.*)$/.exec(line);
    if (inner) failures.push(`  ${subtest}: ${inner[1]}`);
    const m = /^ {4}(not )?ok \d+(.*)$/.exec(line);
    if (!m) return;
    if (m[1]) failedInFile++;
    if (/#\s*(SKIP|TODO)/i.test(m[2])) skipped++;
    else if (m[1]) failed++;
    else passed++;
  };
}

function runLane(list) {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, tapArgs(list), { stdio: ['ignore', 'pipe', 'inherit']});
    const count = counter();
    let buf = '';
    child.stdout.on('data', (d) => {
      buf += d;
      let i;
      // Whole lines only, so two lanes' output interleaves line by line.
      while ((i = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, i);
        buf = buf.slice(i + 1);
        process.stdout.write(`${line}\n`);
        count(line);
      }
    });
    child.on('close', (code) => {
      if (buf) {
        process.stdout.write(`${buf}\n`);
        count(buf);
      }
      resolve(code);
    });
  });
}

const codes = await Promise.all(lanes.map(async (l) => {
  const before = failed;
  const code = await runLane(l.files);
  // tap failed without a failing test to show for it (no such file, a crash of tap itself).
  // `failed` is shared by the lanes, so this misses a lane that crashed while another
  // lane failed a test: the run is red either way.
  if (code !== 0 && failed === before) {
    failed++;
    failures.push(`tap exited with code ${code} running ${l.files.join(' ')}`);
  }
  return code;
}));
const slow = [...fileTimes].sort((a, b) => b[1] - a[1]).slice(0, 8)
  .map(([f, ms]) => `  ${(ms / 1000).toFixed(0).padStart(4)} s  ${f}`);
console.log(`\nslowest files:\n${slow.join('\n')}`);
if (failures.length) console.log(`\nfailed:\n${failures.slice(0, 30).map((f) => `  ${f}`).join('\n')}`);
const fileSeconds = fileTimes.reduce((s, [, ms]) => s + ms, 0) / 1000;
console.log(`\nwall time ${((Date.now() - started) / 1000).toFixed(0)} s (${fileSeconds.toFixed(0)} s of file time in ${lanes.length} lane${lanes.length === 1 ? '' : 's'})`);
if (all && fileTimes.length) {
  writeFileSync('dist/test-times.json', `${JSON.stringify(Object.fromEntries(fileTimes.map(([f, ms]) => [f, Math.round(ms / 1000)]).sort()), null, 2)}\n`);
}
console.log(`\n${passed} passed, ${failed} failed${skipped ? `, ${skipped} skipped` : ''}`);
process.exit(codes.every((c) => c === 0) && failed === 0 && passed > 0 ? 0 : 1);
