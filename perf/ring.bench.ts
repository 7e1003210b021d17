// SPSC ring vs postMessage between two worker threads.
//
//   node dist/perf/ring.bench.js [scale] [reps] [filter]
//
// scale multiplies the frame counts (default 1); each row runs reps times (default 3)
// and reports the best run, since other load on a small machine only slows runs down;
// the rows of a scenario take turns, so a noisy moment does not hit one row only.
// filter keeps the scenarios whose name contains it.
// A run starts a fresh producer worker and consumer worker, waits until both are
// up, then times from 'go' to the consumer reporting that it has seen every frame.
// The consumer touches the first and last byte of each frame. Ratios compare each
// ring row with the postMessage-clone row of its scenario and with the fastest
// postMessage row.
import { loadavg } from 'node:os';
import { MessageChannel, Worker } from 'node:worker_threads';
import { createRingBuffer } from '../src/transport/ring.js';
import type { BenchDone, BenchJob, BenchProduced, PmKind } from './ring-bench-worker.js';

const WORKER = new URL('./ring-bench-worker.js', import.meta.url);
const scale = Number(process.argv[2] ?? 1) || 1;
const reps = Math.max(1, Number(process.argv[3] ?? 3) || 3);
const filter = process.argv[4] ?? '';

interface Row {
  label: string;
  count: number;
  size: number;
  batch: number;
  ring?: { capacity: number; copy: boolean; pack?: boolean };
  pm?: PmKind;
}
interface Scenario { name: string; rows: Row[] }

const KiB = 1024;
const scenarios: Scenario[] = [
  {
    name: '64 B frames, one at a time',
    rows: [
      { label: 'ring write() + drain()', count: 3e6, size: 64, batch: 1, ring: { capacity: 256 * KiB, copy: false } },
      { label: 'ring write() + read() copy', count: 3e6, size: 64, batch: 1, ring: { capacity: 256 * KiB, copy: true } },
      { label: 'postMessage clone per frame', count: 2e5, size: 64, batch: 1, pm: 'clone' },
    ],
  },
  {
    name: '64 B frames, batches of 256',
    rows: [
      { label: 'ring writeMany(256) + drain()', count: 8e6, size: 64, batch: 256, ring: { capacity: 256 * KiB, copy: false } },
      { label: 'ring write() 16 KiB packed batch', count: 8e6, size: 64, batch: 256, ring: { capacity: 256 * KiB, copy: false, pack: true } },
      { label: 'postMessage clone [256 frames]', count: 1e6, size: 64, batch: 256, pm: 'clone' },
      { label: 'postMessage 16 KiB packed batch', count: 8e6, size: 64, batch: 256, pm: 'packed' },
    ],
  },
  {
    name: '64 KiB pages',
    rows: [
      { label: 'ring write() + drain()', count: 3e4, size: 64 * KiB, batch: 1, ring: { capacity: 1024 * KiB, copy: false } },
      { label: 'ring write() + read() copy', count: 3e4, size: 64 * KiB, batch: 1, ring: { capacity: 1024 * KiB, copy: true } },
      { label: 'postMessage clone', count: 3e4, size: 64 * KiB, batch: 1, pm: 'clone' },
      { label: 'postMessage transfer', count: 3e4, size: 64 * KiB, batch: 1, pm: 'transfer' },
    ],
  },
];

function start(job: BenchJob, transfer: MessageChannel['port1'][] = []) {
  const w = new Worker(WORKER, { workerData: job, transferList: transfer });
  const messages: unknown[] = [];
  const waiters: ((m: unknown) => void)[] = [];
  w.on('message', (m) => (waiters.length ? waiters.shift()!(m) : messages.push(m)));
  w.on('error', (err) => { console.error(err); process.exit(1); });
  const next = <T>() => new Promise<T>((resolve) => (messages.length ? resolve(messages.shift() as T) : waiters.push(resolve as (m: unknown) => void)));
  return { w, next };
}

interface Measured { row: Row; secs: number; frames: number; bytes: number; note: string }

async function measure(row: Row): Promise<Measured> {
  const count = Math.max(row.batch, Math.round((row.count * scale) / row.batch) * row.batch);
  let producer, consumer;
  if (row.ring) {
    const sab = createRingBuffer(row.ring.capacity);
    const pack = row.ring.pack === true;
    consumer = start({ role: 'ring-consume', sab, copy: row.ring.copy, unpack: pack ? row.size : 0 });
    producer = start({ role: 'ring-produce', sab, size: row.size, count, batch: row.batch, pack });
  } else {
    const { port1, port2 } = new MessageChannel();
    consumer = start({ role: 'pm-consume', port: port2, size: row.size }, [port2]);
    producer = start({ role: 'pm-produce', port: port1, size: row.size, count, batch: row.batch, kind: row.pm! }, [port1]);
  }
  await Promise.all([consumer.next(), producer.next()]); // 'ready'
  const t0 = performance.now();
  producer.w.postMessage('go');
  const done = await consumer.next<BenchDone>();
  const secs = (performance.now() - t0) / 1000;
  const produced = await producer.next<BenchProduced>();
  await Promise.all([producer.w.terminate(), consumer.w.terminate()]);
  if (done.frames !== count) throw new Error(`${row.label}: consumer saw ${done.frames} of ${count} frames`);
  const note = row.ring
    ? `blocked ${produced.blocked}, notifies ${produced.notifies}, reader parked ${done.parked}`
    : '';
  return { row, secs, frames: count, bytes: done.bytes, note };
}

const pad = (s: string, n: number) => s.padEnd(n);
const num = (x: number, digits = 0) => x.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits });

console.log(
  `ring vs postMessage, worker -> worker, Node ${process.version}, scale ${scale}, best of ${reps}, ` +
    `load average ${loadavg().map((x) => x.toFixed(2)).join(' ')}`,
);
console.log(`${pad('scenario / transport', 48)}${'frames/s'.padStart(13)}${'MB/s'.padStart(9)}${'×clone'.padStart(8)}${'×best pm'.padStart(10)}  ring stats`);
for (const sc of scenarios) {
  if (!sc.name.includes(filter)) continue;
  const results: Measured[] = [];
  for (let i = 0; i < reps; i++) {
    for (let k = 0; k < sc.rows.length; k++) {
      const m = await measure(sc.rows[k]!);
      if (results[k] === undefined || m.secs < results[k]!.secs) results[k] = m;
    }
  }
  const rate = (m: Measured) => m.frames / m.secs;
  const pms = results.filter((m) => m.row.pm);
  const clone = pms.find((m) => m.row.pm === 'clone')!;
  const best = Math.max(...pms.map(rate));
  console.log(sc.name);
  for (const m of results) {
    const ratio = m.row.ring ? `${num(rate(m) / rate(clone), 2).padStart(8)}${num(rate(m) / best, 2).padStart(10)}` : ''.padStart(18);
    console.log(
      `  ${pad(m.row.label, 46)}${num(rate(m)).padStart(13)}${num(m.bytes / m.secs / 1e6).padStart(9)}${ratio}  ${m.note}`,
    );
  }
}
