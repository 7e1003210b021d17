// `tidepool run --progress` on a real terminal: the CLI runs under `script` (util-linux),
// which gives it a pseudo-terminal and copies everything written to it. The progress
// line is redrawn in place (\r, erase line) with elapsed time, records in and out,
// backpressure per task and state pages, never wraps or scrolls, and is erased at the
// end. The flow is the backpressure fixture (a fast source into a slow map), so the
// source's backpressure shows.
import t, { type Test } from 'tap';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CLI, FLOWS, cli, startProcess } from './helpers/cli.js';

const tmp = mkdtempSync(join(tmpdir(), 'tidepool-progress-'));
t.teardown(() => rmSync(tmp, { recursive: true, force: true }));

const N = 40_000;
const SPIN_US = 40; // the slow map: ≥ 1.6 s of spinning, several redraws
const ENV = { TP_COUNT: String(N), TP_PAYLOAD: '200', TP_SPIN_US: String(SPIN_US), TP_OUTPUT: join(tmp, 'out.jsonl'), TIDEPOOL_MODULE_CACHE: join(tmp, 'module-cache') };
const ARGS = ['run', join(FLOWS, 'run/backpressure.ts'), '--set', 'parallelism=1', '--set', 'chaining=false', '--set', 'batchSize=64'];
const ERASE = '\r\x1b[2K';
const LINE = /^(\d+\.\d)s in (\S+) \((\S+)\/s\) out (\S+) \((\S+)\/s\) \| backpressure fast (\d+)% slow (\d+)% out (\d+)% \| state (\d+) pages$/;

const quote = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;

/** The command under a pty of `columns` columns (0: a pty nobody sized); what the terminal received. */
async function onTerminal(args: string[], columns: number, env: Record<string, string> = ENV): Promise<{ code: number | null; screen: string }> {
  const command = `${columns ? `stty cols ${columns} rows 24 && ` : ''}exec ${[process.execPath, CLI, ...args].map(quote).join(' ')}`;
  const r = await startProcess('script', ['-qfec', command, '/dev/null'], { cwd: tmp, env, timeoutMs: 90_000 }).done;
  return { code: r.code, screen: r.stdout };
}

const parseCount = (s: string) => Number(s.replace(/[kM]$/, '')) * (s.endsWith('M') ? 1e6 : s.endsWith('k') ? 1e3 : 1);

/** What a terminal shows at the end: per row, \r moves to column 0, ESC[2K erases the row. */
function visible(screen: string): string[] {
  return screen.replace(/\r\n/g, '\n').split('\n').map((row) => {
    let cells: string[] = [];
    let col = 0;
    for (let i = 0; i < row.length; i++) {
      if (row[i] === '\r') col = 0;
      else if (row.startsWith('\x1b[2K', i)) {
        cells = [];
        i += 3;
      } else cells[col++] = row[i]!;
    }
    return Array.from(cells, (c) => c ?? ' ').join('').trimEnd();
  });
}

function checkDraws(t: Test, screen: string, columns: number): string[] {
  t.notMatch(screen, /\n/, 'nothing but the progress line: no line feed, no scrolling');
  t.ok(screen.startsWith(ERASE), 'every draw starts with \\r and erase-line');
  t.ok(screen.endsWith(ERASE), 'the line is erased at the end');
  const draws = screen.split(ERASE).slice(1, -1);
  t.ok(draws.length >= 4, `${draws.length} redraws`);
  if (columns) t.ok(draws.every((d) => d.length <= columns - 1), `every draw fits in ${columns - 1} of ${columns} columns`);
  return draws;
}

t.test('--progress on a terminal: a line redrawn in place with counts, then erased', async (t) => {
  const { code, screen } = await onTerminal([...ARGS, '--progress'], 0);
  t.equal(code, 0, 'exit 0');
  const draws = checkDraws(t, screen, 0);
  const parsed = draws.map((d) => LINE.exec(d));
  t.same(draws.filter((_, i) => !parsed[i]), [], 'every draw is the whole progress line');
  const rows = parsed.filter((m): m is RegExpExecArray => m !== null).map((m) => ({
    s: Number(m[1]), in: parseCount(m[2]!), out: parseCount(m[4]!), fast: Number(m[6]), slow: Number(m[7]), sink: Number(m[8]), pages: Number(m[9]),
  }));
  t.ok(rows.every((r, i) => i === 0 || (r.s >= rows[i - 1]!.s && r.in >= rows[i - 1]!.in && r.out >= rows[i - 1]!.out)), 'time and counts never go back');
  const last = rows.at(-1)!;
  t.ok(last.in > 0 && last.in <= N && last.out > 0 && last.out <= N, `records in and out counted: last draw in ${last.in}, out ${last.out} of ${N}`);
  t.ok(rows.some((r) => r.in > 0 && r.in < N), 'a draw in the middle of the run');
  // The source outruns the slow map by far: it spends most of its time parked.
  t.ok(rows.some((r) => r.fast >= 50), `the source's backpressure shows: ${rows.map((r) => r.fast).join(' ')}%`);
  t.ok(rows.every((r) => r.sink === 0 && r.pages === 0), 'the sink never waits for an output, nothing keeps state');
  t.same(visible(screen), [''], 'the terminal is left blank');
  t.equal(readFileSync(ENV.TP_OUTPUT, 'utf8').split('\n').length - 1, N, 'and the flow ran');
});

t.test('--progress on a narrow terminal: cut to the width, never wrapped', async (t) => {
  const { code, screen } = await onTerminal([...ARGS, '--progress'], 40);
  t.equal(code, 0, 'exit 0');
  const draws = checkDraws(t, screen, 40);
  t.ok(draws.every((d) => /^\d+\.\ds in \S+ \(\S+\/s\) out/.test(d)), 'each starts with the time and the counts');
  t.same(visible(screen), ['']);
});

t.test('no drawing without --progress, and none with --progress when stderr is not a terminal', async (t) => {
  // Shorter runs: the line is drawn from the start (worker start-up included), so any
  // run of a second shows it when it is on.
  const env = { ...ENV, TP_COUNT: '5000' };
  const plain = await onTerminal(ARGS, 0, env);
  t.equal(plain.code, 0);
  t.equal(plain.screen, '', 'a terminal without --progress gets nothing');
  const piped = await cli([...ARGS, '--progress'], { cwd: tmp, env, timeoutMs: 90_000 });
  t.equal(piped.code, 0);
  t.equal(piped.stderr, '', 'stderr to a pipe: no progress line');
});
