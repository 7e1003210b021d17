// Time to first record on a new machine, from remote checkpoints in azurite:
//
//   npm run build && node dist/perf/remote-restore.bench.js [--sizes 100,1000] [--value-bytes 100] [--quick]
//
// Per state size (MB of keyed values): a CLI run of perf/flows/remote-resume.ts writes the
// state, then a paced tail of updates, with remote checkpoints; it is SIGKILLed once a
// checkpoint taken in the tail is remote. Then three restarts, each a new CLI process:
//   local   on a copy of the killed run's own state directory (the baseline: no remote)
//   lazy    on an empty directory, state.remote.restore 'lazy' (the default)
//   on-demand  the same with the background copy off (TIDEPOOL_TEST_NO_COPY_IN=1): what
//           the copy costs the first record
//   eager   on an empty directory, state.remote.restore 'eager' (every page first)
// measuring from spawn to the first tail record through the reduce (a read of restored
// state; a stderr marker of the flow) and to the first line in the file sink (published
// with the checkpoint after it: every record before that checkpoint's barrier is
// processed first, so lazy restores pay one remote read per page those records miss).
// Ratios are of the first-record times. The goal: lazy ≤ 2 s and flat in state size. azurite runs on this machine: loopback figures, not Azure's.
import { spawn } from 'node:child_process';
import { cpSync, existsSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startAzurite } from '../test/helpers/azurite.js';
import { openObjectStore } from '../src/storage/remote/object-store.js';
import { checkpointIdOf } from '../src/storage/remote/packs.js';
import { fmtMs, fmtRatio, machineLine, parseFlags, progress, removeDir, table, tempDir } from './bench-util.js';

const flags = parseFlags(process.argv.slice(2), { sizes: '100,1000', 'value-bytes': 100, quick: false }, { sizes: '20' });
const CLI = fileURLToPath(new URL('../src/cli/main.js', import.meta.url));
const FLOW = fileURLToPath(new URL('./flows/remote-resume.js', import.meta.url));
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function startRun(state: string, out: string, remote: object | undefined, env: Record<string, string>) {
  const args = [CLI, 'run', FLOW, '--state', state, '--set', 'checkpoint.intervalMs=200', ...(remote ? ['--set', `state.remote=${JSON.stringify(remote)}`] : [])];
  const child = spawn(process.execPath, args, { env: { ...process.env, ...env, TIDEPOOL_BENCH_OUT: out }, stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const done = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  return { child, done, stderr: () => stderr };
}

const hasLine = (path: string) => existsSync(path) && statSync(path).size > 0;

/** Spawn to the first tail record through the reduce (its stderr marker) and to the first sink line, in ms; the run is killed then. */
async function timeToFirstRecord(state: string, out: string, remote: object | undefined, env: Record<string, string>): Promise<{ first: number; published: number }> {
  const t0 = performance.now();
  const r = startRun(state, out, remote, env);
  let first: number | undefined;
  r.child.stderr.on('data', (d: Buffer) => {
    if (first === undefined && d.toString().includes('tidepool-bench: first record')) first = performance.now() - t0;
  });
  let exited = false;
  void r.done.then(() => (exited = true));
  while (!hasLine(out)) {
    if (exited) throw new Error(`the restarted run exited before its first record: ${r.stderr().trim()}`);
    if (performance.now() - t0 > 600_000) throw new Error('no first record in 10 minutes');
    await sleep(5);
  }
  const published = performance.now() - t0;
  r.child.kill('SIGKILL');
  await r.done;
  return { first: first ?? NaN, published };
}

async function main(): Promise<void> {
  console.log(machineLine());
  const work = tempDir('remote-restore');
  const az = await startAzurite(join(work, 'azurite'));
  try {
    const rows: (string | number)[][] = [];
    for (const mb of flags.sizes.split(',').map(Number)) {
      const keys = Math.round((mb * 1e6) / flags['value-bytes']);
      const env = { TIDEPOOL_BENCH_KEYS: String(keys), TIDEPOOL_BENCH_VALUE_BYTES: String(flags['value-bytes']), TIDEPOOL_BENCH_TAIL: '1000000', TIDEPOOL_BENCH_TAIL_RATE: '2000' };
      const remote = { kind: 'azure-blob', connectionString: az.connectionString(), container: 'restore', prefix: `size-${mb}/` };
      const store = await openObjectStore({ ...remote, kind: 'azure-blob', restore: 'lazy' });
      const remoteIds = async () => (await store.list(`size-${mb}/bench-remote-resume/checkpoints/`)).map((o) => checkpointIdOf(o.name)!).sort((a, b) => a - b);
      progress(`${mb} MB: writing ${keys} keys, then the tail, with remote checkpoints`);
      const built = join(work, `built-${mb}`);
      const buildOut = join(work, `build-${mb}.jsonl`);
      const build = startRun(built, buildOut, remote, env);
      // In the tail (its first line is out), then two more remote checkpoints: the newest covers every key.
      while (!hasLine(buildOut)) await sleep(100);
      const first = (await remoteIds()).at(-1) ?? 0;
      while (((await remoteIds()).at(-1) ?? 0) < first + 2) await sleep(100);
      build.child.kill('SIGKILL');
      await build.done;
      const id = (await remoteIds()).at(-1)!;
      const localCopy = join(work, `local-${mb}`);
      const times: Record<string, { first: number; published: number }> = {};
      for (const mode of ['local', 'lazy', 'on-demand', 'eager'] as const) {
        progress(`${mb} MB: restart (${mode}) from checkpoint ${id}`);
        const state = join(work, `${mode}-${mb}`);
        if (mode === 'local') cpSync(built, state, { recursive: true });
        const spec = mode === 'local' ? undefined : { ...remote, restore: mode === 'eager' ? 'eager' : 'lazy' };
        // on-demand: lazy with the background copy off (TIDEPOOL_TEST_NO_COPY_IN), to see what the copy costs the first record
        times[mode] = await timeToFirstRecord(state, join(work, `${mode}-${mb}.jsonl`), spec, mode === 'on-demand' ? { ...env, TIDEPOOL_TEST_NO_COPY_IN: '1' } : env);
        removeDir(state);
      }
      removeDir(localCopy);
      removeDir(built);
      const both = (x: { first: number; published: number }) => `${fmtMs(x.first)} / ${fmtMs(x.published)}`;
      rows.push([mb, id, both(times.local!), both(times.lazy!), both(times['on-demand']!), both(times.eager!), fmtRatio(times.lazy!.first / times.local!.first), fmtRatio(times.eager!.first / times.local!.first)]);
    }
    console.log(`\nRestart to first record: spawn → first tail record through the reduce / → first sink line (published with a checkpoint), value ${flags['value-bytes']} B per key, azurite on loopback\n`);
    console.log(table(['state MB', 'checkpoint', 'local dir', 'remote lazy', 'lazy, no background copy', 'remote eager', 'lazy vs local', 'eager vs local'], rows));
  } finally {
    await az.stop();
    removeDir(work);
  }
}

await main();
