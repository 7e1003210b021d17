// Remote checkpoints against azurite (the test suite's endpoint, test/helpers/azurite.ts):
//
//   npm run build && node dist/perf/remote.bench.js [--sizes 100,1000] [--value-bytes 100] [--count-n 2000000] [--reps 2] [--quick]
//   (--count-n 0 skips the keyed-count part)
//
// Per state size (MB of keyed values, perf/flows/remote-state.ts run to its final
// checkpoint locally):
//   upload    the uploader's full upload of that checkpoint (packs + checkpoint object),
//             MB/s, vs the same number of bytes put with @azure/storage-blob directly, in
//             8 MiB block blobs, two at a time (the uploader's object size and
//             concurrency) — the goal is ≥ 80%; best of --reps, alternating
//   restore   copying the whole remote checkpoint into an empty local directory (an
//             eager restore, state.remote.restore 'eager'; the default lazy restore
//             copies in the background — perf/remote-restore.bench.ts times it)
// Then the keyed count (perf/flows/keyed-count.ts, 1k keys) with a checkpoint every 1 s,
// local only vs with state.remote: wall and CPU — the goal is ≤ 5% slower.
// azurite writes to a temp directory on this machine's disk: these are loopback figures,
// not Azure's.
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { BlobServiceClient } from '@azure/storage-blob';
import { run } from '../src/index.js';
import { startAzurite } from '../test/helpers/azurite.js';
import { openObjectStore } from '../src/storage/remote/object-store.js';
import { CheckpointUploader } from '../src/storage/remote/uploader.js';
import { restoreRemoteCheckpoint } from '../src/storage/remote/remote-restore.js';
import { listManifests, readManifest } from '../src/runtime/checkpoints.js';
import { fmtMB, fmtMs, fmtRatio, machineLine, parseFlags, progress, removeDir, table, tempDir } from './bench-util.js';

const flags = parseFlags(process.argv.slice(2), { sizes: '100,1000', 'value-bytes': 100, 'count-n': 2_000_000, reps: 2, quick: false }, { sizes: '20', 'count-n': 300_000, reps: 1 });
const flowPath = (name: string) => fileURLToPath(new URL(`./flows/${name}.js`, import.meta.url));
const mbps = (bytes: number, ms: number) => bytes / 1e6 / (ms / 1000);

async function main(): Promise<void> {
  console.log(machineLine());
  const work = tempDir('remote');
  const az = await startAzurite(join(work, 'azurite'));
  try {
    const spec = { kind: 'azure-blob' as const, connectionString: az.connectionString(), container: 'bench', prefix: '' };
    const store = await openObjectStore(spec);
    const raw = BlobServiceClient.fromConnectionString(az.connectionString()).getContainerClient('bench');
    const rows: (string | number)[][] = [];
    for (const mb of flags.sizes.split(',').map(Number)) {
      const keys = Math.round((mb * 1e6) / flags['value-bytes']);
      const state = join(work, `state-${mb}`);
      progress(`${mb} MB: building ${keys} keys locally`);
      process.env.TIDEPOOL_BENCH_KEYS = String(keys);
      process.env.TIDEPOOL_BENCH_VALUE_BYTES = String(flags['value-bytes']);
      await run(flowPath('remote-state'), { state, overrides: { checkpoint: { intervalMs: 0 } } });
      const flowState = join(state, 'bench-remote-state');
      const id = listManifests(flowState).at(-1)!;
      // Best of `reps` for each side, alternating, so both see the same machine.
      let uploadMs = Infinity;
      let rawMs = Infinity;
      let bytes = 0;
      let prefix = '';
      const chunk = Buffer.alloc(8 << 20, 0x5a);
      for (let rep = 0; rep < flags.reps; rep++) {
        prefix = `size-${mb}-${rep}/`;
        progress(`${mb} MB: uploading checkpoint ${id} (rep ${rep + 1})`);
        const uploader = new CheckpointUploader(store, prefix, flowState, 2, (l) => progress(l));
        await uploader.init(readManifest(flowState, id));
        const t0 = performance.now();
        uploader.enqueue(id);
        if (!(await uploader.drain(600_000))) throw new Error('upload did not finish');
        uploadMs = Math.min(uploadMs, performance.now() - t0);
        bytes = uploader.stats.bytesUploaded;
        await uploader.close();
        progress(`${mb} MB: raw SDK upload of ${fmtMB(bytes)} (rep ${rep + 1})`);
        // The same bytes in 8 MiB block blobs, two puts in flight: the uploader's object
        // size and concurrency, without reading or packing anything.
        const r0 = performance.now();
        const inFlight: Promise<unknown>[] = [];
        for (let off = 0, n = 0; off < bytes; off += chunk.length, n++) {
          if (inFlight.length >= 2) await inFlight.shift();
          inFlight.push(raw.getBlockBlobClient(`raw-${mb}-${rep}/${n}`).uploadData(chunk.subarray(0, Math.min(chunk.length, bytes - off))));
        }
        await Promise.all(inFlight);
        rawMs = Math.min(rawMs, performance.now() - r0);
      }
      progress(`${mb} MB: restoring into an empty directory`);
      const restored = await restoreRemoteCheckpoint(store, prefix, join(work, `restored-${mb}`, 'bench-remote-state'), id, 'eager');
      rows.push([mb, fmtMB(bytes), fmtMs(uploadMs), mbps(bytes, uploadMs).toFixed(0), fmtMs(rawMs), mbps(bytes, rawMs).toFixed(0), fmtRatio(rawMs / uploadMs), fmtMs(restored.ms), mbps(restored.bytes, restored.ms).toFixed(0)]);
      removeDir(state);
      removeDir(join(work, `restored-${mb}`));
    }
    console.log(`\nFull upload of a final checkpoint (value ${flags['value-bytes']} B per key) and its restore, azurite on loopback\n`);
    console.log(table(['state MB', 'uploaded', 'upload', 'MB/s', 'raw SDK', 'raw MB/s', 'upload vs raw', 'restore', 'restore MB/s'], rows));

    if (flags['count-n'] === 0) return;
    // Throughput cost of remote checkpoints on the keyed count.
    process.env.TIDEPOOL_BENCH_N = String(flags['count-n']);
    process.env.TIDEPOOL_BENCH_KEYS = '1000';
    const count = async (remote: boolean) => {
      const state = join(work, `count-${remote}`);
      const cpu0 = process.cpuUsage();
      const t0 = performance.now();
      const s = await run(flowPath('keyed-count'), { state, overrides: { parallelism: 1, checkpoint: { intervalMs: 1000 }, ...(remote ? { state: { remote: { ...spec, prefix: `count-${Date.now()}/` } } } : {}) } });
      const wall = performance.now() - t0;
      const cpu = process.cpuUsage(cpu0);
      removeDir(state);
      return { wall, cpu: (cpu.user + cpu.system) / 1000, checkpoints: s.checkpoints?.completed ?? 0, uploaded: s.remote?.uploaded ?? 0 };
    };
    const cost: (string | number)[][] = [];
    for (let rep = 0; rep < 2; rep++) {
      progress(`keyed count rep ${rep + 1}: local only, then remote`);
      const local = await count(false);
      const remote = await count(true);
      cost.push([rep + 1, fmtMs(local.wall), fmtMs(remote.wall), fmtRatio(remote.wall / local.wall), fmtMs(local.cpu), fmtMs(remote.cpu), fmtRatio(remote.cpu / local.cpu), `${remote.uploaded} of ${remote.checkpoints}`]);
    }
    console.log(`\nKeyed count, ${flags['count-n']} records, 1,000 keys, p=1, checkpoint every 1 s: local only vs state.remote (in-process CPU: coordinator, workers, I/O worker)\n`);
    console.log(table(['rep', 'local wall', 'remote wall', 'wall ratio', 'local CPU', 'remote CPU', 'CPU ratio', 'uploaded'], cost));
  } finally {
    await az.stop();
    removeDir(work);
  }
}

await main();
