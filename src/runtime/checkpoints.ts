// Checkpoints: the coordinator's state machine and the manifests it writes.
//
//   idle ──trigger(N)──> in flight N ──all acks──> write manifest N ──> complete N
//     ▲                      │ timeout                                   │ commit N → sinks,
//     └──────────────────────┴─ aborted (ignored; N+1 is next) ──────────┘ old manifests removed
//
// Rules:
// - Never two checkpoints at once; at least `minPauseMs` between the end of one and
//   the start of the next.
// - An instance acks N once its part is durable: sources with their position,
//   stateful instances with the state flush version holding their snapshot, sinks
//   once the epoch is prepared (durable, invisible).
// - Checkpoint N exists if and only if its manifest exists. The manifest is written
//   to a temporary file, fsynced, renamed into place and the directory fsynced.
// - Sinks publish N only after its manifest exists.
import { closeSync, fsyncSync, mkdirSync, openSync, readdirSync, readFileSync, renameSync, rmSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { crc32c } from '@node-rs/crc32';
import { errors } from '../errors.js';
import { writeFileDurably } from '../storage/durable-file.js';
import type { PhysicalPlan } from '../flow/plan.js';
import type { CheckpointAck } from './task.js';
import { Samples, type Distribution } from '../observe/samples.js';

export interface ManifestInstance {
  subtask: number;
  stateId?: string;
  version?: number;
  position?: unknown;
  /** Sources: the largest timestamp emitted before the barrier; operators: their watermark. */
  watermark?: number;
}

export interface Manifest {
  format: 1;
  id: number;
  flow: string;
  time: number;
  durationMs: number;
  /** The checkpoint taken at end of input: the run is complete. */
  final: boolean;
  keyGroups: number;
  stateHash: string;
  bytesWritten: number;
  tasks: { index: number; operators: string[]; kinds: string[]; shapes?: string[]; parallelism: number; stateful: boolean; instances: ManifestInstance[] }[];
}

const NAME = /^chk-(\d+)\.json$/;

export function checkpointDir(stateDir: string): string {
  return join(stateDir, 'checkpoints');
}

export function listManifests(stateDir: string): number[] {
  let names: string[];
  try {
    names = readdirSync(checkpointDir(stateDir));
  } catch {
    return [];
  }
  return names.map((n) => NAME.exec(n)).filter((m): m is RegExpExecArray => m !== null).map((m) => Number(m[1])).sort((a, b) => a - b);
}

export function readManifest(stateDir: string, id: number): Manifest {
  const path = join(checkpointDir(stateDir), `chk-${String(id).padStart(10, '0')}.json`);
  let m: Manifest;
  try {
    m = JSON.parse(readFileSync(path, 'utf8')) as Manifest;
  } catch (e) {
    throw errors.input(`checkpoint manifest ${path}`, `unreadable or corrupted (${(e as Error).message.split('\n')[0]})`);
  }
  if (m?.format !== 1 || m.id !== id || !Array.isArray(m.tasks)) throw errors.corruptState('checkpoint manifest', path, 'unexpected content');
  // Manifests carry a CRC-32C of their JSON without it (older ones have none): a changed
  // digit (a source position, a version) must be an error, never a silently wrong restore.
  const { crc, ...body } = m as Manifest & { crc?: number };
  if (crc !== undefined && crc !== manifestCrc(body as Manifest)) throw errors.corruptState('checkpoint manifest', path, 'its checksum does not match');
  return m;
}

/** Writes a manifest as read elsewhere (a remote checkpoint's copy), checksum included, durably. */
export function writeManifestFile(stateDir: string, m: Manifest & { crc?: number }): void {
  mkdirSync(checkpointDir(stateDir), { recursive: true });
  writeFileDurably(checkpointDir(stateDir), `chk-${String(m.id).padStart(10, '0')}.json`, JSON.stringify(m));
}

function manifestCrc(m: Manifest): number {
  return crc32c(Buffer.from(JSON.stringify(m)));
}

export interface CheckpointOptions {
  intervalMs: number;
  timeoutMs: number;
  retain: number;
  tolerableFailures: number;
  minPauseMs: number;
}

export interface CheckpointStats {
  completed: number;
  aborted: number;
  lastDurationMs: number;
  maxPauseMs: number;
  /** Trigger to manifest written, per completed checkpoint. */
  durationMs: Distribution;
  /** Records stopped per instance and checkpoint (see CheckpointAck.pauseMs). */
  pauseMs: Distribution;
  /** Barrier alignment per instance and checkpoint, instances with several inputs only. */
  alignMs: Distribution;
  /** State bytes written by completed checkpoints. */
  bytesWritten: number;
  /** With state.remote: how long the newest checkpoint has waited for its upload at the end (0: uploaded). */
  remoteLagMs?: number;
}

interface InFlight {
  id: number;
  final: boolean;
  started: number;
  waiting: Set<string>;
  acks: CheckpointAck[];
  /** The timeout; armed only once every instance is up (start-up does not count). */
  timer: NodeJS.Timeout | undefined;
}

export class CheckpointCoordinator {
  private nextId: number;
  private inflight: InFlight | undefined;
  private lastEnd = -Infinity;
  private stopped = false;
  private running = false;
  private consecutiveFailures = 0;
  private finalRequested = false;
  private exhaustedSources = new Set<string>();
  private interval: NodeJS.Timeout | undefined;
  private readonly counts = { completed: 0, aborted: 0, lastDurationMs: 0, maxPauseMs: 0, bytesWritten: 0 };
  private readonly durations = new Samples();
  private readonly pauses = new Samples();
  private readonly aligns = new Samples();
  /** Called after each complete checkpoint (manifest written, sinks told to publish). */
  onComplete?: (id: number, final: boolean) => void;
  /**
   * checkpoint.remoteRequired: awaited once every instance is durable and before the
   * local manifest is written (so a crash meanwhile restores the previous checkpoint,
   * as for one in flight). The checkpoint stays in flight until it resolves: no next
   * one starts, so at most one snapshot waits without a manifest. It retries on its own
   * and rejects only when the run is stopping.
   */
  beforePublish?: (id: number, manifest: Manifest & { crc: number }) => Promise<void>;
  /** Resolves when the final checkpoint is complete. */
  readonly finished: Promise<void>;
  private resolveFinished!: () => void;
  private rejectFinished!: (e: Error) => void;

  constructor(
    private readonly plan: PhysicalPlan,
    private readonly stateDir: string,
    private readonly opts: CheckpointOptions,
    lastCompleted: number,
    private readonly send: {
      checkpoint(task: number, subtask: number, id: number, final: boolean): void;
      commit(task: number, subtask: number, id: number): void;
    },
  ) {
    this.nextId = lastCompleted + 1;
    this.finished = new Promise((resolve, reject) => {
      this.resolveFinished = resolve;
      this.rejectFinished = reject;
    });
    this.finished.catch(() => undefined);
    mkdirSync(checkpointDir(stateDir), { recursive: true });
  }

  get stats(): CheckpointStats {
    return { ...this.counts, durationMs: this.durations.distribution(), pauseMs: this.pauses.distribution(), alignMs: this.aligns.distribution() };
  }

  /**
   * Requests the first checkpoint as the instances start: sources inject its barrier
   * before or right after their first records, while the rings are empty, so it passes
   * in microseconds and publishes the first records (a restored run's first output) —
   * a barrier injected later may queue behind full rings under backpressure. Its
   * timeout is armed only by start().
   */
  begin(): void {
    if (this.opts.intervalMs > 0) this.maybeTrigger(false);
  }

  /** Every instance is up: arm timeouts, then one checkpoint per interval. */
  start(): void {
    if (this.stopped) return; // the run ended before every instance was up
    this.running = true;
    if (this.inflight) this.arm(this.inflight);
    if (this.opts.intervalMs > 0) this.interval = setInterval(() => this.maybeTrigger(false), Math.min(this.opts.intervalMs, 50));
  }

  private arm(f: InFlight): void {
    f.timer = setTimeout(() => this.abort(f.id, `timed out after ${this.opts.timeoutMs} ms, waiting for ${this.describeWaiting(f)}`), this.opts.timeoutMs);
    f.timer.unref();
  }

  /** The instances a checkpoint still waits for, by operator name: what a timeout names. */
  private describeWaiting(f: InFlight): string {
    const names = [...f.waiting].map((k) => {
      const [t, sub] = k.split('/').map(Number) as [number, number];
      return `${this.plan.tasks[t]?.operators.join('→') ?? `task ${t}`}/${sub}`;
    });
    return names.length > 4 ? `${names.slice(0, 4).join(', ')} and ${names.length - 4} more` : names.join(', ');
  }

  stop(): void {
    this.stopped = true;
    if (this.interval) clearInterval(this.interval);
    if (this.inflight) clearTimeout(this.inflight.timer);
  }

  private instances(): string[] {
    const out: string[] = [];
    for (const t of this.plan.tasks) for (let s = 0; s < t.parallelism; s++) out.push(`${t.index}/${s}`);
    return out;
  }

  private sources(): [number, number][] {
    const out: [number, number][] = [];
    for (const t of this.plan.tasks) if (t.kinds[0] === 'source') for (let s = 0; s < t.parallelism; s++) out.push([t.index, s]);
    return out;
  }

  /** A source instance ran out of input; when all have, the final checkpoint starts. */
  sourceExhausted(task: number, subtask: number): void {
    this.exhaustedSources.add(`${task}/${subtask}`);
    if (this.exhaustedSources.size === this.sources().length) {
      this.finalRequested = true;
      this.maybeTrigger(true);
    }
  }

  private maybeTrigger(final: boolean): void {
    if (this.inflight) return;
    const now = performance.now();
    if (!final && !this.finalRequested) {
      if (now - this.lastEnd < this.opts.minPauseMs) return;
      if (now - this.lastEnd < this.opts.intervalMs) return;
    }
    const isFinal = final || this.finalRequested;
    const id = this.nextId++;
    this.inflight = { id, final: isFinal, started: now, waiting: new Set(this.instances()), acks: [], timer: undefined };
    if (this.running) this.arm(this.inflight);
    for (const [t, s] of this.sources()) this.send.checkpoint(t, s, id, isFinal);
  }

  ack(a: CheckpointAck): void {
    const f = this.inflight;
    if (!f || f.id !== a.id) return; // an aborted checkpoint's late ack
    f.acks.push(a);
    f.waiting.delete(`${a.task}/${a.subtask}`);
    this.counts.maxPauseMs = Math.max(this.counts.maxPauseMs, a.pauseMs);
    this.pauses.add(a.pauseMs);
    if (a.alignMs !== undefined) this.aligns.add(a.alignMs);
    if (f.waiting.size === 0) this.complete(f);
  }

  private abort(id: number, why: string): void {
    const f = this.inflight;
    if (!f || f.id !== id) return;
    this.inflight = undefined;
    this.lastEnd = performance.now();
    this.counts.aborted++;
    if (++this.consecutiveFailures > this.opts.tolerableFailures) {
      this.rejectFinished(errors.worker(`checkpoint ${id}`, `${why} (${this.consecutiveFailures} consecutive failures, checkpoint.tolerableFailures is ${this.opts.tolerableFailures})`));
      return;
    }
    // The final checkpoint must happen: ask again with a new id. Sources that already
    // injected the aborted final barrier are gone, so this only helps periodic ones.
    if (f.final) this.rejectFinished(errors.worker(`final checkpoint ${id}`, why));
  }

  private complete(f: InFlight): void {
    clearTimeout(f.timer);
    const durationMs = performance.now() - f.started;
    const manifest: Manifest = {
      format: 1,
      id: f.id,
      flow: this.plan.flow,
      time: Date.now(),
      durationMs: Math.round(durationMs),
      final: f.final,
      keyGroups: this.plan.keyGroups,
      stateHash: this.plan.stateHash,
      bytesWritten: f.acks.reduce((a, x) => a + (x.bytes ?? 0), 0),
      tasks: this.plan.tasks.map((t) => ({
        index: t.index,
        operators: t.operators,
        kinds: t.kinds,
        shapes: t.shapes,
        parallelism: t.parallelism,
        stateful: t.stateful,
        instances: f.acks
          .filter((a) => a.task === t.index)
          .sort((a, b) => a.subtask - b.subtask)
          .map((a) => ({ subtask: a.subtask, stateId: a.stateId, version: a.version, position: a.position, watermark: a.watermark })),
      })),
    };
    const sealed = { ...manifest, crc: manifestCrc(manifest) };
    if (!this.beforePublish) return this.published(f, sealed, durationMs);
    this.beforePublish(f.id, sealed).then(
      () => {
        if (!this.stopped) this.published(f, sealed, performance.now() - f.started);
      },
      () => undefined, // stopping: the checkpoint never existed
    );
  }

  private published(f: InFlight, sealed: Manifest & { crc: number }, durationMs: number): void {
    const { crc: _, ...manifest } = sealed;
    try {
      writeFileDurably(checkpointDir(this.stateDir), `chk-${String(f.id).padStart(10, '0')}.json`, JSON.stringify(sealed));
    } catch (e) {
      this.rejectFinished(errors.io(`writing checkpoint manifest ${f.id}`, e));
      return;
    }
    this.inflight = undefined;
    this.lastEnd = performance.now();
    this.consecutiveFailures = 0;
    this.counts.completed++;
    this.counts.lastDurationMs = durationMs;
    this.counts.bytesWritten += manifest.bytesWritten;
    this.durations.add(durationMs);
    // Publish, then forget manifests no longer retained.
    for (const t of this.plan.tasks) {
      if (t.kinds[t.kinds.length - 1] === 'sink') for (let s = 0; s < t.parallelism; s++) this.send.commit(t.index, s, f.id);
    }
    const ids = listManifests(this.stateDir);
    for (const old of ids.slice(0, Math.max(0, ids.length - this.opts.retain))) {
      rmSync(join(checkpointDir(this.stateDir), `chk-${String(old).padStart(10, '0')}.json`), { force: true });
    }
    this.onComplete?.(f.id, f.final);
    if (f.final) this.resolveFinished();
    else if (this.finalRequested) this.maybeTrigger(true);
  }
}
