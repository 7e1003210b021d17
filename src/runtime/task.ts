// One task instance: a chain of operators with its inputs, outputs and state
// partition. The same class runs in a worker thread (workers/operator.ts) and, in
// inline mode, on the coordinator's thread.
//
//   inputs (rings) ─> decode batch ─> operator (a step chain, a keyed operator, mapAsync) ─┬─> Outputs, one per out edge
//   or a source reader + its watermarks                                                    └─> or a sink writer
//
// In stream order per input: records, watermarks (the operator fires what they trigger,
// then they are forwarded), barriers (aligned across inputs: snapshot, then forward).
import type { MessagePort } from 'node:worker_threads';
import type { Flow } from '../flow/builder.js';
import type { PhysicalPlan } from '../flow/plan.js';
import type { InstanceContext, LogicalOperator, SinkWriter, SourceReader } from '../flow/types.js';
import { statelessInstance } from '../operators/steps.js';
import { makeReduce } from '../operators/reduce.js';
import type { Emit, OperatorInstance, StepEnv } from '../operators/keyed.js';
import { makeProcess } from '../operators/keyed.js';
import { makeWindow } from '../operators/windows.js';
import { makeIntervalJoin, makeJoin, makeWindowJoin, type JoinEnv } from '../operators/joins.js';
import { AsyncStage } from '../operators/async.js';
import { RingReader, RingWriter } from '../transport/ring.js';
import { Inputs, Output, decodeBatch, barrierId, watermarkOf, FRAME_BARRIER, FRAME_DATA, FRAME_WATERMARK } from '../transport/channels.js';
import { SourceWatermarks } from '../time/watermarks.js';
import type { StateEngine } from '../state/engine.js';
import type { CompressionSpec } from '../state/codecs.js';
import type { CommitRecord } from '../storage/backend.js';
import { openEngine, takeOverKeyGroups } from './task-state.js';
import { RecordFailures, resolveOperator } from './dead-letters.js';
import { chainEmit, fanOut, isStep, outputEmit } from './task-chain.js';

export interface StateSetup {
  storage: 'lmdb' | 'temp' | 'memory';
  dir?: string;
  stateId: string;
  pageSize: number;
  cachePages: number;
  cacheBytes?: number;
  compression: CompressionSpec;
  /** Size of the process's codec pool (codecPoolFor: 0 or `none` compress on the instance's thread). */
  codecThreads: number;
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
  /** The state directory is being restored lazily from remote storage (restore-plan.ts). */
  lazyRemote?: boolean;
}

/** The rings of one out edge: one per downstream subtask (one, for forward). */
export interface OutputSetup {
  edge: number;
  rings: SharedArrayBuffer[];
  bells: SharedArrayBuffer[];
}

export interface TaskSetup {
  taskIndex: number;
  subtask: number;
  inputs: SharedArrayBuffer[];
  /** Per input ring: the side of the consuming operator it feeds (0, or 1 for a right input). */
  inputSides: (0 | 1)[];
  outputs: OutputSetup[];
  /** This instance's doorbell (its producers ring it). */
  bell: SharedArrayBuffer;
  batchSize: number;
  /** checkpoint.alignmentTargetMs: input rings hold about this long of records (0: no limit). */
  queueTargetMs?: number;
  state?: StateSetup;
  /** Restored from this checkpoint: sources seek, sinks re-commit it first. */
  restoredCheckpoint?: number;
  /** The source position recorded by the restored checkpoint. */
  sourcePosition?: unknown;
  /** The watermark (operators) or largest timestamp (sources) the restored checkpoint recorded. */
  restoredWatermark?: number;
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
  /** Sources: the largest timestamp emitted; operators: their watermark (finite only). */
  watermark?: number;
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
  /** The instance's event-time watermark (null before the first, Infinity after end of input; sources: their own). */
  watermark: number | null;
  lateRecords: number;
  pendingTimers: number;
  /** Entries of window state (panes, windows, sessions) and of join state (both sides). */
  windowState?: number;
  joinState?: number;
  /** Bytes queued in the instance's input rings (written, not yet read). */
  queuedBytes?: number;
  /** Σ of the input rings' limits: what they may hold (checkpoint.alignmentTargetMs). */
  queueLimitBytes?: number;
  /** Records that made user code throw, dropped (errors.onRecord 'skip') or dead-lettered. */
  skippedRecords: number;
  deadLetters: number;
  done: boolean;
}

const finite = (x: number | undefined) => (x !== undefined && Number.isFinite(x) ? x : undefined);

export class TaskRunner {
  /** The task's first operator: what its input (a ring's records, a source's batches) is pushed into. */
  private op!: OperatorInstance;
  /** Its stateful operator when it has one (the first, or a reduce fused after it), else the first. */
  private stateOp!: OperatorInstance;
  private outputs: Output[] = [];
  private sink?: SinkWriter;
  private sinkBuffer: unknown[] = [];
  private source?: SourceReader;
  private sourceOp?: LogicalOperator;
  private watermarks?: SourceWatermarks;
  private stage?: AsyncStage;
  private inputs?: Inputs;
  private failures!: RecordFailures;
  /** The first operator's failed records are skipped or dead-lettered at the task loop (keyed, async). */
  private guardFirst: string | undefined;
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
    const ops = task.operators.map((n) => resolveOperator(this.flow, n, this.plan.deadLetterPath));
    const ctx: InstanceContext = { flow: this.flow.name, operator: '', subtask: this.setup.subtask, parallelism: task.parallelism, checkpointing: this.setup.checkpointing ?? true };
    if (this.setup.state) {
      this.engine = await openEngine(this.setup.state);
      if (this.setup.state.rescaleFrom) await takeOverKeyGroups(this.engine, this.setup.state);
    }
    const env: JoinEnv = {
      subtask: this.setup.subtask,
      parallelism: task.parallelism,
      keyGroups: this.plan.keyGroups,
      engine: this.engine,
      afterState: this.engine ? () => this.engine!.pager.evict() : undefined,
      restoredWatermark: ops[0]!.kind === 'source' ? undefined : this.setup.restoredWatermark,
      epoch: this.setup.restoredCheckpoint ?? 0,
    };
    // Tail first: the sink, or the outputs toward the next tasks (per port; main outputs
    // per producing operator, since a task can be a tree of chained steps).
    const last = ops[ops.length - 1]!;
    let sinkTail: Emit = () => undefined;
    let lateTail: Emit = () => undefined;
    let deadTail: Emit = () => undefined;
    const mainFrom = new Map<string, Output[]>();
    if (last.kind === 'sink') {
      this.sink = await last.sink!.open({ ...ctx, operator: last.name });
      sinkTail = (r) => {
        this.sinkBuffer.push(r);
      };
    }
    // A task ending in its sink has no main outputs, but may still dead-letter.
    const byPort = { late: [] as Output[], dead: [] as Output[] };
    for (const o of this.setup.outputs) {
      const edge = this.plan.edges[o.edge]!;
      const keyFn = edge.keyOperator ? this.flow.operator(edge.keyOperator)!.inputs[edge.input]!.keyBy : undefined;
      const out = new Output(o.rings.map((s) => new RingWriter(s)), o.bells, edge.partitioning, keyFn, this.plan.keyGroups, this.setup.batchSize, this.setup.subtask);
      this.outputs.push(out);
      if (edge.port === 'main') mainFrom.set(edge.fromOperator, [...(mainFrom.get(edge.fromOperator) ?? []), out]);
      else byPort[edge.port].push(out);
    }
    if (byPort.late.length) lateTail = fanOut(byPort.late.map(outputEmit));
    if (byPort.dead.length) deadTail = fanOut(byPort.dead.map(outputEmit));
    const policies = new Map(ops.flatMap((o) => (this.plan.onRecord[o.name] ? [[o.name, this.plan.onRecord[o.name]!] as const] : [])));
    this.failures = new RecordFailures(policies, this.setup.subtask, deadTail);
    if (this.failures.active) {
      const f = this.failures;
      env.recordFailed = (op, record, e) => f.handle(op.name, record, e);
    }
    const first = ops[0]!;
    let fused: OperatorInstance | undefined;
    const emit = chainEmit(ops, mainFrom, sinkTail, env, (op, next) => (fused = this.makeOperator(op, env, next, lateTail)));
    this.op = this.makeOperator(first, env, emit, lateTail);
    this.stateOp = fused ?? this.op;
    if (!isStep(first) && first.kind !== 'source' && first.kind !== 'sink' && this.failures.policy(first.name) !== 'fail') this.guardFirst = first.name;
    if (this.sink && this.setup.restoredCheckpoint !== undefined) {
      // Publish what the restored checkpoint prepared (idempotent), drop anything later.
      await this.sink.commit(this.setup.restoredCheckpoint);
      this.committed = this.setup.restoredCheckpoint;
    }
    if (first.kind === 'source') {
      this.sourceOp = first;
      this.source = await first.source!.open({ ...ctx, operator: first.name });
      if (this.setup.sourcePosition !== undefined) await this.source.seek(this.setup.sourcePosition);
      const so = first.sourceOptions;
      if (so?.eventTime) {
        this.watermarks = new SourceWatermarks(first.name, this.setup.subtask, so.eventTime as (r: never) => number, so.watermark?.maxOutOfOrdernessMs ?? 0, so.watermark?.idleMs, this.setup.restoredWatermark);
      }
    } else {
      this.inputs = new Inputs(this.setup.inputs.map((s) => new RingReader(s)), this.setup.bell, this.setup.inputSides, this.setup.restoredWatermark, this.setup.queueTargetMs);
    }
  }

  private makeOperator(first: LogicalOperator, env: JoinEnv, emit: Emit, late: Emit): OperatorInstance {
    switch (first.kind) {
      case 'reduce':
        return makeReduce(first, env as StepEnv, emit);
      case 'process':
      case 'coProcess':
        return makeProcess(first, env, emit);
      case 'window':
        return makeWindow(first, env, emit, late);
      case 'join':
        return makeJoin(first, env, emit);
      case 'intervalJoin':
        return makeIntervalJoin(first, env, emit, late);
      case 'windowJoin':
        return makeWindowJoin(first, env, emit, late);
      case 'mapAsync': {
        const stage = (this.stage = new AsyncStage(first, env, emit));
        return statelessInstance((r, ts) => stage.push(r, ts));
      }
      default:
        return statelessInstance(emit); // source, a step chain, or a sink
    }
  }

  /** Runs to the end of input; rejects with the first error (user code, I/O). */
  async run(): Promise<void> {
    if (this.source) return this.runSource(this.source);
    const inputs = this.inputs!;
    const ts: number[] = [];
    while (!inputs.done) {
      if (this.failure) throw this.failure;
      let frame = inputs.poll();
      if (frame === null) {
        await this.afterUnit(true); // idle: send partial batches before parking
        frame = await inputs.wait(this.idleWaitMs(), this.stage?.pending ? this.stage.progress() : undefined);
        this.processingTime();
        if (frame === null) continue;
      }
      const kind = frame[0];
      if (kind === FRAME_DATA) {
        const batch = decodeBatch(frame, ts);
        const side = inputs.lastSide;
        const op = this.op;
        const stage = this.stage;
        const guard = this.guardFirst;
        for (let i = 0; i < batch.length; i++) {
          if (guard === undefined) op.push(batch[i], ts[i]!, side);
          else {
            try {
              op.push(batch[i], ts[i]!, side);
            } catch (e) {
              if ((e as { code?: string }).code !== 'TIDEPOOL_USER_CODE' || !this.failures.handle(guard, batch[i], e)) throw e;
            }
          }
          if (stage?.full) await stage.waitSlot();
        }
        if (stage?.failure) throw stage.failure;
        this.recordsIn += batch.length;
        this.processingTime();
        await this.afterUnit(false);
        await this.yieldSometimes();
      } else if (kind === FRAME_WATERMARK) {
        await this.onWatermark(frame);
      } else if (kind === FRAME_BARRIER) {
        await this.onBarrier(barrierId(frame), undefined);
      } // EOI: Inputs dropped that input
    }
    await this.finish();
  }

  private async runSource(src: SourceReader): Promise<void> {
    const op = this.op;
    const wms = this.watermarks;
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
      let unit = this.setup.batchSize;
      for (const o of this.outputs) unit = Math.min(unit, o.unitRecords()); // limited rings: smaller units (channels.ts)
      const batch = await src.next(unit);
      if (batch === null) {
        exhausted = true;
        await this.afterUnit(true);
        // End of input: this subtask's watermark is Infinity, every window closes.
        await this.sourceWatermark(Infinity);
        if (wms) wms.finish();
        this.control.exhausted(this.setup.taskIndex, this.setup.subtask);
        continue;
      }
      if (wms) {
        for (let i = 0; i < batch.length; i++) op.push(batch[i], wms.timestamp(batch[i]), 0);
        wms.observed(batch.length);
      } else {
        for (let i = 0; i < batch.length; i++) op.push(batch[i], NaN, 0);
      }
      this.recordsIn += batch.length;
      await this.afterUnit(batch.length === 0);
      if (wms) {
        const wm = wms.advance();
        if (wm !== undefined) await this.sourceWatermark(wm);
        else if (batch.length === 0 && wms.becameIdle()) for (const o of this.outputs) await o.idle();
      }
      await this.yieldSometimes();
    }
  }

  /** A source task's watermark advanced: a reduce fused behind the source sees it first, then the outputs. */
  private async sourceWatermark(wm: number): Promise<void> {
    if (this.stateOp !== this.op) {
      this.stateOp.onWatermark(wm);
      await this.afterUnit(true);
    }
    for (const o of this.outputs) await o.watermark(wm);
  }

  /** How long an idle instance may sleep: until its next processing-time timer, at most 1 s. */
  private idleWaitMs(): number {
    const next = this.stateOp.nextProcessingTime();
    if (next === Infinity) return 1000;
    return Math.min(1000, Math.max(0, next - Date.now()));
  }

  private processingTime(): void {
    const next = this.stateOp.nextProcessingTime();
    if (next === Infinity) return;
    const now = Date.now();
    if (next <= now) this.stateOp.onProcessingTime(now);
  }

  /** The combined input watermark advanced (or every input went idle): fire, then forward. */
  private async onWatermark(frame: Uint8Array): Promise<void> {
    const { watermark, idle } = watermarkOf(frame);
    if (idle) {
      await this.afterUnit(true);
      for (const o of this.outputs) await o.idle();
      return;
    }
    if (this.stage) await this.stage.drain(); // results before the watermark go out before it
    this.stateOp.onWatermark(watermark);
    await this.afterUnit(true);
    for (const o of this.outputs) await o.watermark(watermark);
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
   * (dirty pages frozen); the write to LMDB goes on while processing resumes.
   */
  private async onBarrier(id: number, position: unknown): Promise<void> {
    const t0 = performance.now();
    if (this.stage) await this.stage.drain(); // a barrier waits for the calls before it
    await this.afterUnit(true); // records before the barrier go out before it
    const ack: CheckpointAck = { id, task: this.setup.taskIndex, subtask: this.setup.subtask, pauseMs: 0 };
    if (this.setup.inputs.length > 1) ack.alignMs = this.inputs!.lastAlignMs;
    if (position !== undefined) ack.position = position;
    const wm = this.watermarks ? this.watermarks.maxTimestamp : this.inputs?.watermark;
    if (finite(wm) !== undefined) ack.watermark = wm;
    let durable: Promise<unknown> | undefined;
    if (this.engine) {
      await this.engine.idle(); // the previous checkpoint's pages are durable
      this.stateOp.beforeSnapshot();
      durable = this.engine.checkpoint().then((info) => {
        ack.version = info.version;
        ack.stateId = this.setup.state!.stateId;
        ack.bytes = info.bytes;
      });
      this.engine.pager.evict(); // pages the hooks wrote are clean now: dropped, not spilled
    }
    if (this.sink) await this.sink.prepare(id);
    this.lastBarrier = id;
    for (const o of this.outputs) await o.barrier(id);
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
    for (const o of this.outputs) await o.flush(!idle);
    if (this.sinkBuffer.length) {
      const b = this.sinkBuffer;
      this.sinkBuffer = [];
      this.sinkOut += b.length;
      await this.sink!.write(b);
    }
  }

  private async finish(): Promise<void> {
    if (this.stage) await this.stage.drain();
    await this.afterUnit(true);
    for (const o of this.outputs) await o.end();
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
    const s = this.stateOp?.stats() ?? { lateRecords: 0, pendingTimers: 0 };
    const wm = this.watermarks ? this.watermarks.maxTimestamp - (this.sourceOp?.sourceOptions?.watermark?.maxOutOfOrdernessMs ?? 0) : this.inputs?.watermark;
    return {
      task: this.setup.taskIndex,
      subtask: this.setup.subtask,
      label: this.label,
      recordsIn: this.recordsIn,
      recordsOut: this.outputs.length ? this.outputs.reduce((a, o) => a + o.stats.records, 0) : this.sinkOut,
      blockedMs: this.outputs.reduce((a, o) => a + o.blockedMs, 0),
      statePages: p ? p.livePages : 0,
      stateSpilled: p?.stats.spillWrites ?? 0,
      cacheHits: p?.stats.hits ?? 0,
      cacheMisses: p?.stats.misses ?? 0,
      watermark: wm === undefined || wm === -Infinity ? null : wm,
      lateRecords: s.lateRecords,
      pendingTimers: s.pendingTimers,
      windowState: s.windowState ?? 0,
      joinState: s.joinState ?? 0,
      queuedBytes: this.inputs?.queuedBytes ?? 0,
      queueLimitBytes: this.inputs?.queueLimitBytes ?? 0,
      skippedRecords: this.failures?.skipped ?? 0,
      deadLetters: this.failures?.deadLetters ?? 0,
      done: this.done,
    };
  }
}

/** One emitter feeding every output of a port (a stream used twice gets every record twice). */
