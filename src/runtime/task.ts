// One task instance: a chain of operators (source/steps/sink) with its inputs,
// outputs and state partition. The same class runs in a worker thread
// (workers/operator.ts) and, in inline mode, on the coordinator's thread.
//
//   inputs (rings) ─> decode batch ─> step → step → … ─┬─> Output (rings, by partitioning)
//   or a source reader                                   └─> or a sink writer
import type { MessagePort } from 'node:worker_threads';
import { errors } from '../errors.js';
import type { Flow } from '../flow/builder.js';
import type { PhysicalPlan } from '../flow/plan.js';
import type { InstanceContext, SinkWriter, SourceReader } from '../flow/types.js';
import { makeStep, type Emit, type StepEnv } from '../operators/steps.js';
import { RingReader, RingWriter } from '../transport/ring.js';
import { Inputs, Output, decodeBatch, barrierId, FRAME_BARRIER, FRAME_DATA } from './channels.js';
import { StateEngine } from '../state/engine.js';
import { codecResolver, loadCodec, type CompressionSpec } from '../state/codecs.js';
import { MemoryBackend } from '../storage/memory-backend.js';
import { LmdbBackend } from '../storage/lmdb-backend.js';
import { IoAttachment } from '../storage/io-client.js';
import type { CommitRecord, StateBackend } from '../storage/backend.js';
import { SnapshotReader } from '../storage/snapshot-reader.js';
import { prefixBounds } from '../state/keys.js';

export interface StateSetup {
  storage: 'lmdb' | 'temp' | 'memory';
  dir?: string;
  stateId: string;
  pageSize: number;
  cachePages: number;
  compression: CompressionSpec;
  /** The page ring and port of this instance's attachment to the I/O worker. */
  ring?: SharedArrayBuffer;
  port?: MessagePort;
  lastCommit?: CommitRecord;
  /** Restore the state as of this flush version (from the checkpoint manifest). */
  restoreVersion?: number;
  /**
   * Rescaling: this instance owns key groups [groups[0], groups[1]) and copies them from
   * these old partitions (at their checkpoint versions) before processing anything.
   */
  rescaleFrom?: { stateId: string; version: number }[];
  groups?: [number, number];
  retain?: number;
}

export interface TaskSetup {
  taskIndex: number;
  subtask: number;
  inputs: SharedArrayBuffer[];
  /** One ring per downstream subtask. */
  outputs: SharedArrayBuffer[];
  /** This instance's doorbell (its producers ring it), and the doorbell of each output's consumer. */
  bell: SharedArrayBuffer;
  outputBells: SharedArrayBuffer[];
  batchSize: number;
  state?: StateSetup;
  /** Restored from this checkpoint: sources seek, sinks re-commit it first. */
  restoredCheckpoint?: number;
  /** The source position recorded by the restored checkpoint. */
  sourcePosition?: unknown;
  /** Checkpoints are taken (lmdb state): sinks hold records until their epoch commits. */
  checkpointing?: boolean;
}

/** What an instance reports when it has taken its part of checkpoint `id`. */
export interface CheckpointAck {
  id: number;
  task: number;
  subtask: number;
  /** The state flush version that holds this instance's snapshot (stateful tasks). */
  version?: number;
  stateId?: string;
  /** The source position after the last record before the barrier (source tasks). */
  position?: unknown;
  bytes?: number;
  /** Records stopped for this barrier: output flush, waiting for the previous snapshot, taking this one. */
  pauseMs: number;
  /** Time from the barrier's first copy to its last across the inputs (instances with several inputs). */
  alignMs?: number;
}

/** How a task instance talks to the coordinator (a worker's port, or direct calls inline). */
export interface TaskControl {
  ack(a: CheckpointAck): void;
  /** A source instance has no more input and waits for the final checkpoint. */
  exhausted(task: number, subtask: number): void;
}

export interface TaskMetrics {
  task: number;
  subtask: number;
  label: string;
  recordsIn: number;
  recordsOut: number;
  blockedMs: number;
  statePages: number;
  stateSpilled: number;
  cacheHits: number;
  cacheMisses: number;
  done: boolean;
}

export class TaskRunner {
  private head!: Emit;
  private output?: Output;
  private sink?: SinkWriter;
  private sinkBuffer: unknown[] = [];
  private source?: SourceReader;
  private inputs?: Inputs;
  private engine?: StateEngine;
  private recordsIn = 0;
  private sinkOut = 0;
  private done = false;
  private readonly label: string;

  /** Checkpoints the coordinator asked this source instance to inject. */
  private readonly requested: { id: number; final: boolean }[] = [];
  private wakeSource?: () => void;
  /** Commits the coordinator sent (sink tasks), and the one the final barrier waits for. */
  private committed = 0;
  private lastBarrier = 0;
  private commitWaiter?: { id: number; resolve: () => void };
  private failure?: Error;
  private readonly beforeSnapshot: (() => void)[] = [];

  constructor(
    private readonly flow: Flow,
    private readonly plan: PhysicalPlan,
    private readonly setup: TaskSetup,
    private readonly control: TaskControl,
  ) {
    this.label = plan.tasks[setup.taskIndex]!.label;
  }

  /** Coordinator → source: inject barrier `id` (the last one when `final`). */
  requestCheckpoint(id: number, final: boolean): void {
    this.requested.push({ id, final });
    this.wakeSource?.();
  }

  /** Coordinator → sink: checkpoint `id` is complete; publish its epoch. */
  commit(id: number): void {
    if (!this.sink) return;
    const sink = this.sink;
    void Promise.resolve(sink.commit(id)).then(
      () => {
        this.committed = Math.max(this.committed, id);
        if (this.commitWaiter && this.committed >= this.commitWaiter.id) this.commitWaiter.resolve();
      },
      (e: Error) => (this.failure = e),
    );
  }

  async init(): Promise<void> {
    const task = this.plan.tasks[this.setup.taskIndex]!;
    const ops = task.operators.map((n) => this.flow.operator(n)!);
    const ctx: InstanceContext = { flow: this.flow.name, operator: '', subtask: this.setup.subtask, parallelism: task.parallelism, checkpointing: this.setup.checkpointing ?? true };
    if (this.setup.state) {
      this.engine = await openEngine(this.setup.state);
      if (this.setup.state.rescaleFrom) await takeOverKeyGroups(this.engine, this.setup.state);
    }
    const env: StepEnv = {
      subtask: this.setup.subtask,
      keyGroups: this.plan.keyGroups,
      engine: this.engine,
      afterState: this.engine ? () => this.engine!.pager.evict() : undefined,
      beforeSnapshot: this.beforeSnapshot,
    };
    // Tail first: the sink, or the output toward the next task.
    const last = ops[ops.length - 1]!;
    let tail: Emit;
    if (last.kind === 'sink') {
      this.sink = await last.sink!.open({ ...ctx, operator: last.name });
      tail = (r) => {
        this.sinkBuffer.push(r);
      };
    } else {
      const edge = this.plan.edges.find((e) => e.from === task.index)!;
      const keyFn = edge.keyOperator ? this.flow.operator(edge.keyOperator)!.keyBy : undefined;
      this.output = new Output(this.setup.outputs.map((s) => new RingWriter(s)), this.setup.outputBells, edge.partitioning, keyFn, this.plan.keyGroups, this.setup.batchSize, this.setup.subtask);
      const out = this.output;
      tail = (r) => {
        out.push(r);
      };
    }
    let emit = tail;
    for (let i = ops.length - 1; i >= 0; i--) {
      const op = ops[i]!;
      if (op.kind === 'source' || op.kind === 'sink') continue;
      emit = makeStep(op, emit, env);
    }
    this.head = emit;
    if (this.sink && this.setup.restoredCheckpoint !== undefined) {
      // Publish what the restored checkpoint prepared (idempotent), drop anything later.
      await this.sink.commit(this.setup.restoredCheckpoint);
      this.committed = this.setup.restoredCheckpoint;
    }
    if (ops[0]!.kind === 'source') {
      this.source = await ops[0]!.source!.open({ ...ctx, operator: ops[0]!.name });
      if (this.setup.sourcePosition !== undefined) await this.source.seek(this.setup.sourcePosition);
    } else {
      this.inputs = new Inputs(this.setup.inputs.map((s) => new RingReader(s)), this.setup.bell);
    }
  }

  /** Runs to the end of input; rejects with the first error (user code, I/O). */
  async run(): Promise<void> {
    const head = this.head;
    if (this.source) {
      const src = this.source;
      let exhausted = false;
      for (;;) {
        while (this.requested.length) {
          const req = this.requested.shift()!;
          await this.onBarrier(req.id, src.position());
          if (req.final) {
            await src.close();
            return this.finish();
          }
        }
        if (exhausted) {
          // Wait for the coordinator's final checkpoint (or a regular one first).
          await new Promise<void>((resolve) => {
            this.wakeSource = resolve;
            if (this.requested.length) resolve();
          });
          this.wakeSource = undefined;
          continue;
        }
        const batch = await src.next(this.setup.batchSize);
        if (batch === null) {
          exhausted = true;
          await this.afterUnit(true);
          this.control.exhausted(this.setup.taskIndex, this.setup.subtask);
          continue;
        }
        for (let i = 0; i < batch.length; i++) head(batch[i]);
        this.recordsIn += batch.length;
        await this.afterUnit(batch.length === 0);
        await this.yieldSometimes();
      }
    }
    const inputs = this.inputs!;
    while (!inputs.done) {
      if (this.failure) throw this.failure;
      let frame = inputs.poll();
      if (frame === null) {
        await this.afterUnit(true); // idle: send partial batches before parking
        frame = await inputs.wait();
        if (frame === null) continue;
      }
      if (frame[0] === FRAME_BARRIER) {
        await this.onBarrier(barrierId(frame), undefined);
        continue;
      }
      if (frame[0] !== FRAME_DATA) continue; // EOI: Inputs dropped that input
      const batch = decodeBatch(frame);
      for (let i = 0; i < batch.length; i++) head(batch[i]);
      this.recordsIn += batch.length;
      await this.afterUnit(false);
      await this.yieldSometimes();
    }
    await this.finish();
  }

  private lastYield = performance.now();

  /**
   * While records flow, every await resolves as a microtask and the event loop never
   * gets to control messages (checkpoint requests, commits). Give it a turn every few
   * milliseconds.
   */
  private async yieldSometimes(): Promise<void> {
    const now = performance.now();
    if (now - this.lastYield < 5) return;
    this.lastYield = now;
    await new Promise<void>((resolve) => setImmediate(resolve));
  }

  /**
   * Barrier `id` is aligned here: snapshot this instance's part of the checkpoint and
   * forward the barrier. Records stop only for the synchronous part of the snapshot
   * (dirty pages serialized); the write to LMDB goes on while processing resumes.
   */
  private async onBarrier(id: number, position: unknown): Promise<void> {
    const t0 = performance.now();
    await this.afterUnit(true); // records before the barrier go out before it
    const ack: CheckpointAck = { id, task: this.setup.taskIndex, subtask: this.setup.subtask, pauseMs: 0 };
    if (this.setup.inputs.length > 1) ack.alignMs = this.inputs!.lastAlignMs;
    if (position !== undefined) ack.position = position;
    let durable: Promise<unknown> | undefined;
    if (this.engine) {
      await this.engine.idle(); // the previous checkpoint's pages are durable
      for (const f of this.beforeSnapshot) f();
      durable = this.engine.checkpoint().then((info) => {
        ack.version = info.version;
        ack.stateId = this.setup.state!.stateId;
        ack.bytes = info.bytes;
      });
      this.engine.pager.evict(); // pages the hooks wrote are clean now: dropped, not spilled
    }
    if (this.sink) await this.sink.prepare(id);
    this.lastBarrier = id;
    if (this.output) await this.output.barrier(id);
    ack.pauseMs = performance.now() - t0;
    if (durable) {
      durable.then(
        () => this.control.ack(ack),
        (e: Error) => (this.failure = e),
      );
    } else {
      this.control.ack(ack);
    }
  }

  private async afterUnit(idle: boolean): Promise<void> {
    if (this.output) await this.output.flush(!idle);
    else if (this.sinkBuffer.length) {
      const b = this.sinkBuffer;
      this.sinkBuffer = [];
      this.sinkOut += b.length;
      await this.sink!.write(b);
    }
  }

  private async finish(): Promise<void> {
    await this.afterUnit(true);
    if (this.output) await this.output.end();
    if (this.engine) await this.engine.idle();
    if (this.sink) {
      // The final barrier preceded end of input: wait until its checkpoint completes
      // and the coordinator says publish, then close.
      if (this.committed < this.lastBarrier) {
        await new Promise<void>((resolve) => (this.commitWaiter = { id: this.lastBarrier, resolve }));
      }
      if (this.failure) throw this.failure;
      await this.sink.close();
    }
    if (this.failure) throw this.failure;
    this.done = true;
  }

  /** Releases state; called after run() (or after a failure). */
  async close(): Promise<void> {
    if (this.engine) await this.engine.close();
  }

  metrics(): TaskMetrics {
    const p = this.engine?.pager;
    return {
      task: this.setup.taskIndex,
      subtask: this.setup.subtask,
      label: this.label,
      recordsIn: this.recordsIn,
      recordsOut: this.output ? this.output.stats.records : this.sinkOut,
      blockedMs: this.output?.blockedMs ?? 0,
      statePages: p ? p.livePages : 0,
      stateSpilled: p?.stats.spillWrites ?? 0,
      cacheHits: p?.stats.hits ?? 0,
      cacheMisses: p?.stats.misses ?? 0,
      done: this.done,
    };
  }
}

async function openEngine(s: StateSetup): Promise<StateEngine> {
  const codec = await loadCodec(s.compression);
  let backend: StateBackend;
  if (s.storage === 'memory' || !s.ring || !s.port || !s.dir) {
    backend = new MemoryBackend();
  } else {
    const io = new IoAttachment(undefined, s.stateId, s.ring, s.port, s.lastCommit);
    backend = await LmdbBackend.withAttachment({ kind: s.storage, dir: s.dir, stateId: s.stateId, retain: s.retain ?? 1, removeOnClose: false }, io);
  }
  if (!backend) throw errors.worker(s.stateId, 'no state backend');
  return new StateEngine({ name: s.stateId.replace(/[^A-Za-z0-9._-]/g, '_'), pageSize: s.pageSize, cachePages: s.cachePages, codec, codecFor: codecResolver(codec), backend });
}

/**
 * Copies the key groups this instance now owns out of the old partitions' checkpointed
 * state. Every state key starts with its key group (operators/context.ts), so each
 * table's share is one contiguous key range per old partition.
 */
async function takeOverKeyGroups(engine: StateEngine, s: StateSetup): Promise<void> {
  const [from, to] = s.groups!;
  if (from >= to) return;
  const lo = prefixBounds([from]).gte;
  const hi = prefixBounds([to - 1]).lt;
  const codec = await loadCodec(s.compression);
  for (const old of s.rescaleFrom!) {
    const snap = new SnapshotReader(s.dir!, old.stateId, old.version, codec, codecResolver(codec), Math.max(8, s.cachePages));
    try {
      for (const name of snap.tableNames()) {
        const target = engine.table(name);
        for (const [k, v] of snap.table(name).entries({ gte: lo, lt: hi })) {
          target.set(k, v instanceof Uint8Array ? Buffer.from(v) : v);
          engine.mutations++;
          engine.pager.evict();
          snap.evict();
        }
      }
    } finally {
      await snap.close();
    }
  }
}
