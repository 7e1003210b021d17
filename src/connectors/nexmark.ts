// `sources.nexmark({ events, rate?, seed? })`: the Nexmark benchmark's persons,
// auctions and bids (nexmark-events.ts makes them) as a bounded, parallel source.
//
// Split: like the generator, by index stride — subtask s of p makes the events
// i ≡ s (mod p), in increasing i. Event i depends on nothing but (seed, i, rate), so the
// union over subtasks is the same stream whatever p, and every subtask's event times
// rise together (a contiguous split would leave the watermark held by the subtask with
// the oldest range). Position: the next index this subtask makes.
//
// `rate` (events per second, all subtasks together):
//   omitted  event time advances at the suite's default 10,000 events/s (0.1 ms
//            apart), and the source emits as fast as it is pulled (unpaced);
//   given    event time advances at `rate` events/s, and the source is also paced to it
//            in wall-clock time (each subtask rate/p events/s from when it starts or
//            resumes), so event time keeps step with the clock, as the suite's generator
//            does when not at "max emit speed".
import { errors, preview } from '../errors.js';
import type { InstanceContext, SourceReader, SourceSpec } from '../flow/types.js';
import { checkOptionKeys, checkPosition } from './sources.js';
import { NEXMARK_DEFAULT_RATE, nexmarkEventFor, nexmarkSeedKey, type NexmarkEvent } from './nexmark-events.js';

export interface NexmarkOptions {
  /** How many events (indices 0 … events−1). */
  events: number;
  /** Events per second: event-time spacing, and wall-clock pacing when given. */
  rate?: number;
  /** Any safe integer; the same seed gives the same events (default 0). */
  seed?: number;
  /**
   * Event-time spacing only (events per second of event time), unpaced: a slow event
   * time (e.g. 100/s) spans many windows without waiting for the clock. Overrides `rate`
   * for event time; `rate` still paces when both are given.
   */
  eventRate?: number;
}

export interface NexmarkSourceSpec extends SourceSpec<NexmarkEvent> {
  readonly type: 'nexmark';
  readonly events: number;
  /** Event-time rate actually used (events/s). */
  readonly eventRate: number;
  /** Wall-clock pacing (events/s, all subtasks), or undefined: unpaced. */
  readonly pace: number | undefined;
  readonly seed: number;
}

/** Longest single sleep of a paced reader: barriers are served between `next` calls. */
const MAX_SLEEP_MS = 20;

class NexmarkReader implements SourceReader<NexmarkEvent> {
  /** The next index this subtask makes. */
  private index: number;
  private readonly seedKey: number;
  /** Pacing origin: wall time and index when pacing (re)started; -1: not yet. */
  private paceStartMs = -1;
  private paceStartIndex = 0;

  constructor(private readonly spec: NexmarkSourceSpec, private readonly ctx: InstanceContext) {
    this.index = ctx.subtask;
    this.seedKey = nexmarkSeedKey(spec.seed);
  }

  next(max: number): NexmarkEvent[] | null | Promise<NexmarkEvent[]> {
    if (this.index >= this.spec.events) return null;
    const left = Math.ceil((this.spec.events - this.index) / this.ctx.parallelism);
    let n = Math.min(Math.max(1, max), left);
    if (this.spec.pace !== undefined) {
      const due = this.due();
      if (due <= 0) return this.sleep().then(() => this.make(Math.min(n, Math.max(0, this.due()))));
      n = Math.min(n, due);
    }
    return this.make(n);
  }

  /** How many more events this subtask may emit now to stay within its pace. */
  private due(): number {
    const now = performance.now();
    if (this.paceStartMs < 0) {
      this.paceStartMs = now;
      this.paceStartIndex = this.index;
    }
    const perSubtask = this.spec.pace! / this.ctx.parallelism;
    const emitted = (this.index - this.paceStartIndex) / this.ctx.parallelism;
    return Math.floor(((now - this.paceStartMs) * perSubtask) / 1000) + 1 - emitted;
  }

  /** Until the next event is due (at most MAX_SLEEP_MS). */
  private sleep(): Promise<void> {
    const perSubtask = this.spec.pace! / this.ctx.parallelism;
    const emitted = (this.index - this.paceStartIndex) / this.ctx.parallelism;
    const dueAt = this.paceStartMs + (emitted * 1000) / perSubtask;
    const ms = Math.min(MAX_SLEEP_MS, Math.max(1, Math.ceil(dueAt - performance.now())));
    return new Promise((resolve) => setTimeout(resolve, ms));
  }

  private make(n: number): NexmarkEvent[] {
    const out = new Array<NexmarkEvent>(n);
    const { parallelism } = this.ctx;
    const { eventRate } = this.spec;
    let i = this.index;
    for (let k = 0; k < n; k++, i += parallelism) out[k] = nexmarkEventFor(this.seedKey, i, eventRate);
    this.index = i;
    return out;
  }

  position(): number {
    return this.index;
  }

  seek(position: unknown): void {
    const pos = checkPosition(this.ctx, 'nexmark', position);
    const { subtask, parallelism } = this.ctx;
    if (pos % parallelism !== subtask % parallelism) {
      throw errors.input(
        `nexmark source '${this.ctx.operator}' (subtask ${subtask} of ${parallelism})`,
        `cannot resume from index ${pos}: it belongs to another subtask (was the parallelism changed?)`,
      );
    }
    this.index = pos;
    this.paceStartMs = -1; // pacing restarts from here
  }

  close(): void {}
}

function positiveNumber(name: string, v: unknown): number {
  if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0) {
    throw errors.badOption(name, `must be a positive number of events per second, got ${preview(v)}`);
  }
  return v;
}

/** The Nexmark suite's events: persons, auctions and bids, deterministic for a seed. */
export function nexmarkSource(options: NexmarkOptions): NexmarkSourceSpec {
  if (typeof options !== 'object' || options === null) {
    throw errors.badOption('options', `sources.nexmark needs { events, rate?, seed? }, got ${preview(options)}`);
  }
  checkOptionKeys('nexmark', options, ['events', 'rate', 'seed', 'eventRate']);
  const { events, rate, seed = 0, eventRate } = options;
  if (typeof events !== 'number' || !Number.isSafeInteger(events) || events < 0) {
    throw errors.badOption('nexmark.events', `must be a non-negative integer, got ${preview(events)}`);
  }
  if (typeof seed !== 'number' || !Number.isSafeInteger(seed)) {
    throw errors.badOption('nexmark.seed', `must be an integer, got ${preview(seed)}`);
  }
  const pace = rate === undefined ? undefined : positiveNumber('nexmark.rate', rate);
  const spec: NexmarkSourceSpec = {
    kind: 'source',
    type: 'nexmark',
    bounded: true,
    maxParallelism: events || 1,
    events,
    eventRate: eventRate !== undefined ? positiveNumber('nexmark.eventRate', eventRate) : pace ?? NEXMARK_DEFAULT_RATE,
    pace,
    seed,
    open: (ctx) => new NexmarkReader(spec, ctx),
  };
  return spec;
}
