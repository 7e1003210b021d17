// The /metrics endpoint (`metrics.port`) of a real `tidepool run`: scraped twice while a
// paced, unbounded keyed count runs (then SIGKILLed), each body parsed by the strict
// exposition parser of test/helpers/prom-text.ts. The families are exactly the README's
// list, named by the Prometheus conventions; every task instance has its series; the
// counters move between the scrapes and never go down.
import t from 'tap';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseExposition, type Family } from './helpers/prom-text.js';
import { cli, startCli, FLOWS, sleep } from './helpers/cli.js';
import { startMetricsServer } from '../src/observe/metrics.js';
import type { TaskMetrics } from '../src/runtime/task.js';

const tmp = mkdtempSync(join(tmpdir(), 'tidepool-metrics-'));
t.teardown(() => rmSync(tmp, { recursive: true, force: true }));
const README = fileURLToPath(new URL('../../README.md', import.meta.url));
const KEYED_COUNT = join(FLOWS, 'checkpoint/keyed-count.ts');

/** A port nothing listens on right now. */
function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

/** The README's metrics tables: name → type; per task instance, or the per-flow remote ones. */
function documented(which: 'instance' | 'remote' = 'instance'): Map<string, string> {
  const rows = [...readFileSync(README, 'utf8').matchAll(/^\| `(tidepool_[a-z0-9_]+)` \| (counter|gauge) \|/gm)];
  return new Map(rows.filter((m) => m[1]!.startsWith('tidepool_remote_') === (which === 'remote')).map((m) => [m[1]!, m[2]!]));
}

interface Scrape {
  at: number;
  families: Map<string, Family>;
  contentType: string;
}

async function scrape(port: number, path = '/metrics'): Promise<Scrape> {
  const at = performance.now();
  const res = await fetch(`http://127.0.0.1:${port}${path}`);
  if (res.status !== 200) throw new Error(`GET ${path}: ${res.status}`);
  return { at, families: parseExposition(await res.text()), contentType: res.headers.get('content-type') ?? '' };
}

/** `task/subtask` → value of one family. */
function values(s: Scrape, name: string): Map<string, number> {
  return new Map((s.families.get(name)?.samples ?? []).map((x) => [`${x.labels.task}/${x.labels.subtask}`, x.value]));
}

const INSTANCES = ['gen/0', 'gen/1', 'counts/0', 'counts/1', 'out/0'];

t.test('scraped during a run: conventional names, every instance, counters that move', async (t) => {
  const port = await freePort();
  const env = { TP_N: '1000000000', TP_KEYS: '1000', TP_RATE: '5000', TP_OUT: join(tmp, 'out/counts.jsonl'), TIDEPOOL_MODULE_CACHE: join(tmp, 'module-cache') };
  const run = startCli(['run', KEYED_COUNT, '--state', join(tmp, 'state'), '--set', 'parallelism=2', '--set', `metrics.port=${port}`], { cwd: tmp, env, timeoutMs: 90_000 });
  t.teardown(() => run.child.kill('SIGKILL'));
  // Until every instance has reported records (worker start-up can take seconds).
  let first: Scrape | undefined;
  for (let i = 0; i < 300 && run.child.exitCode === null; i++) {
    await sleep(150);
    const s = await scrape(port).catch(() => undefined);
    const recordsIn = s && values(s, 'tidepool_records_in_total');
    if (recordsIn && INSTANCES.every((k) => (recordsIn.get(k) ?? 0) > 0)) {
      first = s;
      break;
    }
  }
  t.ok(first, 'every instance reported records');
  if (!first) return;
  await sleep(1200);
  const second = await scrape(port);
  const notFound = await fetch(`http://127.0.0.1:${port}/other`);
  const posted = await fetch(`http://127.0.0.1:${port}/metrics`, { method: 'POST' });
  run.child.kill('SIGKILL');
  const exit = await run.done;
  t.equal(exit.signal, 'SIGKILL', `ran until killed ${exit.stderr}`);

  t.match(first.contentType, /^text\/plain; version=0\.0\.4/, 'the text exposition format');
  t.equal(notFound.status, 404, 'other paths: 404');
  t.equal(posted.status, 404, 'other methods: 404');

  // Names and types: exactly the README's list, and the conventions.
  const docs = documented();
  t.ok(docs.size >= 5, `the README lists ${docs.size} metrics`);
  t.same([...second.families.values()].map((f) => `${f.name} ${f.type}`).sort(), [...docs].map(([n, ty]) => `${n} ${ty}`).sort(), 'the families served are the README\'s list, with its types');
  for (const f of second.families.values()) {
    t.match(f.name, /^tidepool_[a-z][a-z0-9_]*[a-z0-9]$/, `${f.name}: prefixed, snake case`);
    t.equal(f.name.endsWith('_total'), f.type === 'counter', `${f.name}: _total if and only if a counter`);
    t.notMatch(f.name, /_(ms|millis|milliseconds|us|micros|microseconds|ns|minutes|hours|kb|mb|gb|kib|mib|gib|percent)(_|$)/, `${f.name}: base units only (seconds, bytes)`);
    t.ok(f.help && f.help.length > 10, `${f.name}: has a HELP text`);
    // Every instance of the plan has exactly one series, labelled flow, task and subtask.
    t.same(f.samples.map((s) => Object.keys(s.labels).sort()), f.samples.map(() => ['flow', 'subtask', 'task']), `${f.name}: labels`);
    t.ok(f.samples.every((s) => s.labels.flow === 'chk-count'), `${f.name}: flow label`);
    t.same(f.samples.map((s) => `${s.labels.task}/${s.labels.subtask}`).sort(), [...INSTANCES].sort(), `${f.name}: one series per instance`);
  }

  // Counters never go down; records move through every task between the scrapes.
  for (const [name, f] of second.families) {
    if (f.type !== 'counter') continue;
    const a = values(first, name);
    for (const [k, v] of values(second, name)) t.ok(v >= (a.get(k) ?? 0), `${name}{${k}}: ${a.get(k)} → ${v}`);
  }
  const dt = (second.at - first.at) / 1000;
  const inA = values(first, 'tidepool_records_in_total');
  const inB = values(second, 'tidepool_records_in_total');
  const outA = values(first, 'tidepool_records_out_total');
  const outB = values(second, 'tidepool_records_out_total');
  for (const k of INSTANCES) t.ok(inB.get(k)! > inA.get(k)!, `records in of ${k} grew by ${inB.get(k)! - inA.get(k)!} in ${dt.toFixed(1)} s`);
  for (const k of ['gen/0', 'gen/1', 'counts/0', 'counts/1']) t.ok(outB.get(k)! > outA.get(k)!, `records out of ${k} grew`);
  // The source is paced to 5000 records/s per instance: the increase is at most that.
  for (const k of ['gen/0', 'gen/1']) t.ok(outB.get(k)! - outA.get(k)! <= 5000 * (dt + 0.6), `${k}: ${outB.get(k)! - outA.get(k)!} records in ${dt.toFixed(1)} s, paced at 5000/s`);

  const pages = values(second, 'tidepool_state_pages');
  for (const k of ['counts/0', 'counts/1']) t.ok(pages.get(k)! > 0, `${k} holds state pages: ${pages.get(k)}`);
  for (const k of ['gen/0', 'gen/1', 'out/0']) t.equal(pages.get(k), 0, `${k} has no state`);
  const hits = values(second, 'tidepool_state_cache_hits_total');
  for (const k of ['counts/0', 'counts/1']) t.ok(hits.get(k)! > 0, `${k}: cache hits ${hits.get(k)}`);
});

t.test('with state.remote: per-flow upload lag and totals, the README\'s second list', async (t) => {
  const port = await freePort();
  const env = { TP_N: '1000000000', TP_KEYS: '1000', TP_RATE: '5000', TP_OUT: join(tmp, 'out-remote/counts.jsonl'), TIDEPOOL_MODULE_CACHE: join(tmp, 'module-cache') };
  const remote = `state.remote=${JSON.stringify({ kind: 'dir', path: join(tmp, 'remote') })}`;
  const run = startCli(['run', KEYED_COUNT, '--state', join(tmp, 'state-remote'), '--set', remote, '--set', 'checkpoint.intervalMs=200', '--set', `metrics.port=${port}`], { cwd: tmp, env, timeoutMs: 90_000 });
  t.teardown(() => run.child.kill('SIGKILL'));
  let s: Scrape | undefined;
  for (let i = 0; i < 300 && run.child.exitCode === null; i++) {
    await sleep(150);
    s = await scrape(port).catch(() => undefined);
    if ((s?.families.get('tidepool_remote_checkpoints_uploaded_total')?.samples[0]?.value ?? 0) >= 2) break;
  }
  run.child.kill('SIGKILL');
  await run.done;
  if (!s) return t.fail('no scrape');
  const docs = documented('remote');
  t.equal(docs.size, 4, 'the README lists 4 remote metrics');
  for (const [name, type] of docs) {
    const f = s.families.get(name);
    t.equal(f?.type, type, `${name}: served, a ${type}`);
    t.same(f?.samples.map((x) => x.labels), [{ flow: 'chk-count' }], `${name}: one series, labelled flow`);
  }
  t.ok(s.families.get('tidepool_remote_checkpoints_uploaded_total')!.samples[0]!.value >= 2, 'checkpoints uploaded are counted');
  t.ok(s.families.get('tidepool_remote_upload_bytes_total')!.samples[0]!.value > 0, 'bytes uploaded are counted');
  t.ok(s.families.get('tidepool_remote_lag_seconds')!.samples[0]!.value < 30, 'the lag is a number of seconds');
});

t.test('a port already in use is one line naming metrics.port, before anything runs', async (t) => {
  const blocker = createServer();
  await new Promise<void>((r) => blocker.listen(0, '127.0.0.1', () => r()));
  t.teardown(() => blocker.close());
  const port = (blocker.address() as { port: number }).port;
  const env = { TP_N: '1000', TP_OUT: join(tmp, 'busy/counts.jsonl'), TIDEPOOL_MODULE_CACHE: join(tmp, 'module-cache') };
  const r = await cli(['run', KEYED_COUNT, '--set', `metrics.port=${port}`], { cwd: tmp, env });
  t.not(r.code, 0);
  t.match(r.stderr, new RegExp(`^tidepool: metrics\\.port: cannot serve metrics on 127\\.0\\.0\\.1:${port}: .*EADDRINUSE.*\\n$`));
});

t.test('counters keep growing across an in-process restart; gauges follow the last report', async (t) => {
  const server = await startMetricsServer(0); // 0 here: any free port (the config's 0 means off)
  t.teardown(() => server.close());
  const report = (recordsIn: number, statePages: number): TaskMetrics => ({
    task: 1, subtask: 0, label: 'counts', recordsIn, recordsOut: recordsIn, blockedMs: recordsIn * 10,
    statePages, stateSpilled: 0, cacheHits: recordsIn, cacheMisses: 0, watermark: null, lateRecords: 0, pendingTimers: 0, skippedRecords: 0, deadLetters: 0, done: false,
  });
  const read = async () => {
    const s = await scrape(server.port);
    return { in: values(s, 'tidepool_records_in_total').get('counts/0'), blocked: values(s, 'tidepool_backpressure_seconds_total').get('counts/0'), pages: values(s, 'tidepool_state_pages').get('counts/0') };
  };
  server.update('f', [report(100, 7)]);
  server.update('f', [report(150, 9)]);
  t.same(await read(), { in: 150, blocked: 1.5, pages: 9 }, 'running totals; backpressure in seconds');
  server.update('f', [report(30, 2)]); // a restarted attempt reports from 0 again
  t.same(await read(), { in: 180, blocked: 1.8, pages: 2 }, 'a report below the previous one: a restart, counted in full');
  server.beginAttempt();
  server.update('f', [report(200, 3)]); // already past the previous total
  t.same(await read(), { in: 380, blocked: 3.8, pages: 3 }, 'after beginAttempt() the first report counts in full');
});
