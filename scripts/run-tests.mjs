// Runs the compiled tap suite and prints the plain "N passed, N failed" line CI reads.
// tap's own summary is not recognised by CI, so we count the per-file subtest results
// from the raw TAP stream ourselves ("    ok 3 - name" / "    not ok 3 - name").
// CI keeps only the tail of the output, so the end repeats what failed and the slowest
// files: a red run then says which test it was without the whole log.
import { spawn } from 'node:child_process';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';

const require = createRequire(import.meta.url);
const tapBin = join(dirname(require.resolve('tap/package.json')), 'dist/esm/run.mjs');
const files = process.argv.slice(2);
// 480 s per file: the crash-loop files (nexmark-crash, checkpoint-restore) take 120–220 s
// on 2 cores and once took over 300 s when they ran beside the remote-checkpoint tests
// (azurite plus two flows); a real hang still ends the file.
const args = [tapBin, '--reporter=tap', '--disable-coverage', '--allow-empty-coverage',
  '--timeout=480', `--jobs=${process.env.TIDEPOOL_TEST_JOBS ?? 2}`, ...(files.length ? files : ['dist/test/**/*.test.js'])];
const started = Date.now();
const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'inherit'] });
let passed = 0, failed = 0, skipped = 0, buf = '', failedInFile = 0;
let subtest = '';
const failures = [];
const fileTimes = [];
const count = (line) => {
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
child.stdout.on('data', (d) => {
  process.stdout.write(d);
  buf += d;
  let i;
  while ((i = buf.indexOf('\n')) >= 0) { count(buf.slice(0, i)); buf = buf.slice(i + 1); }
});
child.on('close', (code) => {
  if (buf) count(buf);
  const slow = fileTimes.sort((a, b) => b[1] - a[1]).slice(0, 8)
    .map(([f, ms]) => `  ${(ms / 1000).toFixed(0).padStart(4)} s  ${f}`);
  console.log(`\nslowest files:\n${slow.join('\n')}`);
  if (failures.length) console.log(`\nfailed:\n${failures.slice(0, 30).map((f) => `  ${f}`).join('\n')}`);
  console.log(`\nwall time ${((Date.now() - started) / 1000).toFixed(0)} s`);
  console.log(`\n${passed} passed, ${failed} failed${skipped ? `, ${skipped} skipped` : ''}`);
  process.exit(code === 0 && failed === 0 && passed > 0 ? 0 : 1);
});
