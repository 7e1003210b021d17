// Lost wake-ups in the data plane's two "notify only on the transition to asleep"
// protocols, with real worker threads and seeded random schedules:
//
//   1. The consumer doorbell (channels.ts): producers bump SEQ and notify only if they
//      are the one to clear SLEEPING; the consumer announces SLEEPING, loads SEQ, polls
//      its rings and parks on SEQ. Three producer workers, each an Output over its own
//      ring, feed one Inputs on this thread, which loops poll() / wait() as
//      TaskRunner.run does.
//   2. The ring's writer wake-up (ring.ts): a writer parked on a full ring is rung only
//      by the release that first reaches its mark. A writer worker fills a small ring
//      through write / writeMany / writeAsync while this thread drains it a few frames at
//      a time with pauses.
//
// Either way the reader must get every frame, in order, and no wait may end only
// because its (large) timeout passed. A lost wake-up would show as exactly that, 30 s
// later; to fail fast a watchdog on this thread looks for its signature instead — the
// reader parked for STALL_MS although the writers never pause for more than a few ms
// (and the frames in the rings, if any, tell whose wake-up was lost) — records it and
// ends the run (notifies the bell; cancels the ring). Both counts must be zero.
// TIDEPOOL_DOORBELL_SEED replays a schedule (thread timing still differs per run).
// It also found that a producer parked on a full ring in the middle of a frame larger
// than the ring never rang the sleeping consumer (RingWriter.onBlocked now does): the
// consumer slept out its 1 s idle wait once per ring-full.
// This test found a lost doorbell wake-up (about one file run in 25 here): a producer
// delayed between its SEQ bump and its exchange cleared a later sleep's flag; see createBell.
import t from 'tap';
import { Worker } from 'node:worker_threads';
import { createRingBuffer, RingReader } from '../src/transport/ring.js';
import { createBell, decodeBatch, FRAME_DATA, Inputs } from '../src/transport/channels.js';
import { rng } from './helpers/rng.js';
import { checkFrame, pause, type DoorbellJob, type JobResult, type Pauses } from './fixtures/doorbell-worker.js';

const FIXTURE = new URL('./fixtures/doorbell-worker.js', import.meta.url);
const SEED = Number(process.env.TIDEPOOL_DOORBELL_SEED ?? 0xd00b);
const WAIT_MS = 30_000; // the timeout of every wait: no correct wait gets near it
const STALL_MS = 1_000; // parked this long with work pending: a lost wake-up
const RUN_MS = 20_000; // one run's limit, so that no failure leaves a loop behind
const FAN_IN_RUNS = Number(process.env.TIDEPOOL_DOORBELL_RUNS ?? 8); // the races are narrow: more schedules catch more (npm run soak: 100)
const DRAIN_RUNS = Math.max(6, Math.round(FAN_IN_RUNS * 0.75));

const live = new Set<Worker>();
t.teardown(() => Promise.all([...live].map((w) => w.terminate())));

/** One fixture job in a worker: `ready` once it runs, `result` with its report (never rejects). */
function spawn(job: DoorbellJob): { ready: Promise<void>; result: Promise<JobResult>; kill: () => void } {
  const worker = new Worker(FIXTURE, { workerData: job, execArgv: [] }); // no test-runner loaders
  live.add(worker);
  let ready!: () => void;
  const readyP = new Promise<void>((resolve) => { ready = resolve; });
  const result = new Promise<JobResult>((resolve) => {
    const fail = (why: string) => { ready(); resolve({ sent: -1, blocked: 0, error: why }); };
    worker.on('message', (m: { ready?: boolean } & JobResult) => (m.ready ? ready() : resolve(m)));
    worker.once('error', (e) => fail(`worker error: ${String(e)}`));
    worker.once('exit', (code) => fail(`worker exited (${code}) without a result`));
  }).finally(() => live.delete(worker));
  return { ready: readyP, result, kill: () => void worker.terminate() };
}

/** Watchdog ticks: `check` runs every 50 ms until stopped. */
function every50(check: () => void): () => void {
  const h = setInterval(check, 50);
  return () => clearInterval(h);
}

interface FanInRun {
  params: string;
  missing: string | null; // the first order or loss error, if any
  waits: number; // Inputs.wait calls
  raced: number; // waits that returned the frame found after announcing sleep
  timeouts: number; // waits that lasted WAIT_MS
  stalls: string[]; // what the watchdog saw
  producers: JobResult[];
}

/** Scenario 1: three producer workers → three rings → one Inputs (one doorbell) here. */
async function fanIn(seed: number): Promise<FanInRun> {
  const rand = rng(seed);
  const P = 3;
  const capacity = rand() < 0.5 ? 1 << 10 : 64 << 10; // 1 KiB: producers also block on full rings
  const batch = [1, 1, 2, 3, 8][Math.floor(rand() * 5)]!;
  const count = 1000 + Math.floor(rand() * 400);
  const pauses: Pauses = { short: 0.1 + rand() * 0.3, long: 0.02 + rand() * 0.08, maxMs: 1 + Math.floor(rand() * 4) };
  const mine: Pauses = { short: rand() * 0.05, long: rand() * 0.01, maxMs: 3 }; // the consumer's own, rare
  // Half the runs send some records larger than the ring (chunked frames): a producer
  // parked on a full ring in the middle of one must have rung the sleeping consumer.
  const big = rand() < 0.5 ? 2 * capacity + 300 : 0;
  const params = `seed ${seed}: ring ${capacity} B, batch ${batch}, ${count} records × ${P}${big ? `, some of ${big} B` : ''}`;

  const bell = createBell();
  const rings = Array.from({ length: P }, () => createRingBuffer(capacity));
  const readers = rings.map((r) => new RingReader(r));
  const inputs = new Inputs(readers, bell); // as TaskRunner.setup wires an instance
  const jobs = rings.map((ring, p) => spawn({ job: 'producer', ring, bell, p, count, batch, seed: seed * 7 + p + 1, pauses, big }));
  await Promise.all(jobs.map((j) => j.ready));

  const next = new Array<number>(P).fill(0);
  let missing: string | null = null;
  let waits = 0, raced = 0, timeouts = 0;
  const stalls: string[] = [];
  let parkedSince = 0, parkedSeq = 0;
  let failed: string | null = null;
  const bell32 = new Int32Array(bell);
  const runDeadline = performance.now() + RUN_MS;
  for (const j of jobs) {
    void j.result.then((r) => {
      if (r.error !== null) {
        failed ??= r.error;
        Atomics.notify(bell32, 0); // don't wait for EOI from a producer that died
      }
    });
  }
  const stop = every50(() => {
    // The consumer parks only while some producer has not sent EOI yet, and producers
    // never pause for more than a few ms: a park this long lost a wake-up. Frames in a
    // ring: the doorbell's (the producer that wrote them should have rung); none: a
    // producer went quiet (parked on a full ring the consumer drained without ringing it).
    const now = performance.now();
    if (now > runDeadline) failed ??= `no end after ${RUN_MS} ms`;
    else if (parkedSince === 0 || now - parkedSince < STALL_MS) return;
    else {
      const what = readers.some((r) => r.used > 0) ? 'consumer parked with frames in its rings' : 'consumer parked, producers silent';
      // Wake the consumer ourselves and end the run: it has failed, and with a broken
      // protocol every later wait would cost STALL_MS again. How many waiters the notify
      // found, SEQ and SLEEPING tell where the wake-up went.
      const seq = Atomics.load(bell32, 0) - parkedSeq, sleeping = Atomics.load(bell32, 1);
      const woke = Atomics.notify(bell32, 0);
      stalls.push(`${what} (${readers.map((r) => r.used).join('/')} B; SEQ +${seq}, SLEEPING ${sleeping}, notify woke ${woke})`);
    }
  });
  try {
    while (!inputs.done && failed === null && missing === null && stalls.length === 0) {
      let f = inputs.poll();
      if (f === null) {
        waits++;
        parkedSince = performance.now();
        parkedSeq = Atomics.load(bell32, 0);
        f = await inputs.wait(WAIT_MS);
        if (f === null && performance.now() - parkedSince >= WAIT_MS - 1) timeouts++;
        parkedSince = 0;
        if (f === null) continue;
        raced++;
      }
      if (f[0] === FRAME_DATA) {
        for (const rec of decodeBatch(f) as { p: number; i: number }[]) {
          if (rec.i !== next[rec.p]) missing ??= `producer ${rec.p}: got record ${rec.i}, expected ${next[rec.p]}`;
          next[rec.p]!++;
        }
      }
      await pause(rand, mine);
    }
  } finally {
    stop();
  }
  const ended = inputs.done && failed === null && missing === null && stalls.length === 0;
  if (!ended) for (const j of jobs) j.kill(); // they may be parked on full rings nobody drains now
  const producers = await Promise.all(jobs.map((j) => j.result));
  if (stalls.length) missing ??= `stopped after a stall at ${next.join('/')} records`;
  if (failed !== null) missing ??= `a producer failed: ${failed}`;
  next.forEach((n, p) => { if (n !== count) missing ??= `producer ${p}: ${n} of ${count} records arrived`; });
  return { params, missing, waits, raced, timeouts, stalls, producers };
}

interface DrainRun {
  params: string;
  error: string | null;
  parks: number; // waitReadable calls that had to wait
  timeouts: number;
  stalls: string[]; // what the watchdog saw
  writer: JobResult;
}

/** Scenario 2: a writer worker on a small ring, drained here a few frames at a time. */
async function drainSlowly(seed: number, mode: 'sync' | 'async' | 'mixed'): Promise<DrainRun> {
  const rand = rng(seed);
  const capacity = rand() < 0.5 ? 256 : 512;
  const big = 2 * capacity + 100; // now and then a frame longer than the ring: chunked waits
  const count = 1200 + Math.floor(rand() * 600);
  const pauses: Pauses = { short: 0.05, long: 0.01, maxMs: 2 }; // the writer: fast, fills the ring
  const mine: Pauses = { short: 0.2 + rand() * 0.2, long: 0.05 + rand() * 0.1, maxMs: 3 };
  const params = `seed ${seed}: ${mode} writer, ring ${capacity} B, ${count} frames`;

  const ring = createRingBuffer(capacity);
  const reader = new RingReader(ring);
  const job = spawn({ job: 'writer', ring, count, big, mode, seed: seed * 7 + 1, pauses });
  await job.ready;

  let seq = 0;
  let error: string | null = null;
  let parks = 0, timeouts = 0;
  let parkedSince = 0;
  const stalls: string[] = [];
  const take = (v: Uint8Array) => { error ??= checkFrame(v, seq++, big); };
  const runDeadline = performance.now() + RUN_MS;
  const stop = every50(() => {
    if (performance.now() > runDeadline) {
      stalls.push(`no end after ${RUN_MS} ms`);
      reader.cancel();
      return;
    }
    // The writer never pauses for more than a few ms, so a park this long means a wake-up
    // was lost: the reader's (frames in the ring) or the writer's (an empty ring and no
    // new frame: it sleeps on a tail that has long passed its mark).
    if (parkedSince === 0 || performance.now() - parkedSince < STALL_MS) return;
    stalls.push(reader.used > 0 ? `reader parked with ${reader.used} B in the ring` : `writer never resumed after frame ${seq}`);
    reader.cancel(); // the writer's wait throws TIDEPOOL_RING_CLOSED
  });
  void job.result.then((r) => { if (r.error !== null) reader.cancel(); }); // nothing more will come
  try {
    while (!reader.closed && error === null && stalls.length === 0) {
      let got: number;
      if (rand() < 0.4) {
        const f = reader.read();
        if (f !== null) take(f);
        got = f === null ? 0 : 1;
      } else {
        got = reader.drain(take, 1 + Math.floor(rand() * 3));
      }
      if (got === 0) {
        parks++;
        parkedSince = performance.now();
        const ready = await reader.waitReadable(WAIT_MS);
        if (!ready && performance.now() - parkedSince >= WAIT_MS - 1) timeouts++;
        parkedSince = 0;
        if (!ready) break; // cancelled (stall, or the writer failed) or timed out
        continue;
      }
      await pause(rand, mine);
    }
  } finally {
    stop();
  }
  const writer = await job.result;
  if (error === null && seq !== count) error = `${seq} of ${count} frames arrived`;
  return { params, error, parks, timeouts, stalls, writer };
}

t.test('doorbell: three producers, one sleeping consumer, no lost wake-up', { timeout: 60_000 }, async (t) => {
  let waits = 0, raced = 0;
  for (let run = 0; run < FAN_IN_RUNS; run++) {
    const r = await fanIn(SEED + run);
    waits += r.waits;
    raced += r.raced;
    t.equal(r.missing, null, `${r.params}: every record, in order per producer`);
    t.same(r.producers.map((p) => p.error), [null, null, null], `${r.params}: producers finished`);
    t.equal(r.timeouts, 0, `${r.params}: no wait ran into its ${WAIT_MS} ms timeout`);
    t.same(r.stalls, [], `${r.params}: no wait parked ${STALL_MS} ms (${r.waits} waits)`);
  }
  // Not per run: on a busy machine one run's producers may finish before the consumer starts.
  t.ok(waits >= 20 * FAN_IN_RUNS, `the consumer went to sleep often (${waits} times; ${raced} caught a frame published while it announced sleep)`);
});

t.test('ring: a writer parked on a full ring always resumes', { timeout: 60_000 }, async (t) => {
  const modes = ['sync', 'async', 'mixed'] as const;
  let blocked = 0;
  for (let run = 0; run < DRAIN_RUNS; run++) {
    const r = await drainSlowly(SEED + 100 + run, modes[run % modes.length]!);
    blocked += r.writer.blocked;
    t.same(r.stalls, [], `${r.params}: no stall (${r.parks} reader parks, writer blocked ${r.writer.blocked} times)`);
    t.equal(r.timeouts, 0, `${r.params}: no wait ran into its ${WAIT_MS} ms timeout`);
    t.equal(r.error, null, `${r.params}: every frame, in order`);
    t.equal(r.writer.error, null, `${r.params}: the writer finished`);
  }
  t.ok(blocked >= 10 * DRAIN_RUNS, `the writers parked on full rings (${blocked} times)`);
});
