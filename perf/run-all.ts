// Runs every benchmark in perf/ in sequence, each in its own child process, and
// prints their output.
//
//   npm run build && node dist/perf/run-all.js [--quick] [--only store,flush]
//
// --quick passes smaller sizes through (each bench's own --quick; ring.bench takes a
// scale and a repetition count). Benches are the compiled dist/perf/*.bench.js files,
// so one added later (ring.bench.js, written separately) is picked up when it exists.
import { spawn } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { fmtMs, machineLine, parseFlags } from './bench-util.js';

const flags = parseFlags(process.argv.slice(2), { quick: false, only: '' });
const here = dirname(fileURLToPath(import.meta.url));

/** Arguments per bench for --quick; benches not listed get none (they are quick already). */
const QUICK_ARGS: Record<string, string[]> = {
  store: ['--quick'],
  flush: ['--quick'],
  ring: ['0.1', '1'], // scale, reps
  flow: ['--quick'],
  nexmark: ['--quick'],
  sliding: ['--quick'],
  backpressure: ['--quick'],
};
/** Preferred order; any other *.bench.js runs after these, alphabetically. */
const ORDER = ['store', 'flush', 'ring', 'keys', 'flow'];

function benches(): string[] {
  const names = readdirSync(here).filter((f) => f.endsWith('.bench.js')).map((f) => f.slice(0, -'.bench.js'.length));
  const rank = (n: string) => (ORDER.includes(n) ? ORDER.indexOf(n) : ORDER.length);
  names.sort((a, b) => rank(a) - rank(b) || a.localeCompare(b));
  const only = flags.only ? new Set(flags.only.split(',').map((s) => s.trim())) : undefined;
  return only ? names.filter((n) => only.has(n)) : names;
}

function run(name: string): Promise<{ code: number | null; ms: number }> {
  const args = flags.quick ? QUICK_ARGS[name] ?? [] : [];
  const t0 = performance.now();
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [join(here, `${name}.bench.js`), ...args], { stdio: 'inherit' });
    child.on('error', (e) => {
      console.error(`cannot start ${name}.bench.js: ${e.message}`);
      resolve({ code: -1, ms: performance.now() - t0 });
    });
    child.on('close', (code) => resolve({ code, ms: performance.now() - t0 }));
  });
}

const list = benches();
if (list.length === 0) {
  console.error(`no *.bench.js in ${here}${flags.only ? ` matching --only ${flags.only}` : ''} (run \`npm run build\` first)`);
  process.exit(1);
}
console.log(`# tidepool benchmarks${flags.quick ? ' (--quick)' : ''}\n`);
console.log(machineLine());
console.log(`Benches: ${list.map((n) => `${n}.bench.js`).join(', ')}\n`);
const started = performance.now();
const summary: [string, string, string][] = [];
for (const name of list) {
  const args = flags.quick ? QUICK_ARGS[name] ?? [] : [];
  console.log(`\n---\n\n<!-- node dist/perf/${name}.bench.js ${args.join(' ')} -->\n`);
  const { code, ms } = await run(name);
  summary.push([name, code === 0 ? 'ok' : `FAILED (exit ${code})`, fmtMs(ms)]);
}
console.log('\n---\n');
for (const [name, status, time] of summary) console.log(`${name.padEnd(8)} ${status.padEnd(18)} ${time}`);
console.log(`total    ${fmtMs(performance.now() - started)}`);
if (summary.some(([, s]) => s !== 'ok')) process.exitCode = 1;
