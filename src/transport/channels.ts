// Record channels between task instances, over SPSC rings (one ring per (producer
// instance, consumer instance, edge)); the frame layout is in frames.ts.
//
// An Output buffers records per target and sends a batch when it reaches `batchSize`
// or when the task finishes a unit of work (`flush`). Writes are async: a full ring
// parks the producer (backpressure) without blocking its event loop, so inline mode —
// every instance on one thread — cannot deadlock.
//
// Inputs reads all of an instance's rings with barrier alignment, and keeps one
// watermark per ring: the instance's watermark is the minimum over the rings that are
// open and not idle, and only ever moves forward.
import { RingReader, RingWriter } from './ring.js';
import { waitWord } from './doorbell.js';
import { keyGroupOf } from '../runtime/partition.js';
import { subtaskForKeyGroup, type Partitioning } from '../flow/plan.js';
import { QueueLimiter } from './queue-limit.js';
import {
  EOI_FRAME, FRAME_BARRIER, FRAME_EOI, FRAME_WATERMARK, barrierFrame, barrierId, encodeBatch, watermarkFrame, watermarkOf,
} from './frames.js';

export { FRAME_DATA, FRAME_EOI, FRAME_BARRIER, FRAME_WATERMARK, decodeBatch, encodeBatch, barrierFrame, barrierId, watermarkOf } from './frames.js';

/**
 * A consumer's doorbell: Int32 [SEQ, SLEEPING] on a SharedArrayBuffer of its own.
 * A producer that writes a frame to any of the consumer's input rings notifies only if
 * it is the one to clear SLEEPING, so an idle task instance with many inputs parks on
 * one word instead of polling each ring, and a sleep costs one notify, not one per frame.
 *   consumer: SLEEPING=1; s=load(SEQ); poll rings; if nothing and SLEEPING still 1: waitAsync(SEQ, s); SLEEPING=0
 *   producer: write frame; if exchange(SLEEPING, 0): add(SEQ, 1); notify(SEQ)
 * The producer that clears the flag owns the wake-up of whatever sleep the flag belongs
 * to now, which may be a later one than the sleep it saw (it was delayed while the
 * consumer woke, worked and went to sleep again): so it bumps SEQ only after the
 * exchange, and the consumer does not park once the flag is gone. Either the consumer
 * checks the flag after the exchange (and does not park), or it loaded SEQ before the
 * bump (and its waitAsync returns at once or is notified). A frame published before
 * the consumer's poll is found by that poll.
 */
export function createBell(): SharedArrayBuffer {
  return new SharedArrayBuffer(8);
}

function ring(bell: Int32Array): void {
  // The load first: while the consumer is awake, a frame costs one load, not a write to
  // the line the consumer reads.
  if (Atomics.load(bell, 1) !== 0 && Atomics.exchange(bell, 1, 0) !== 0) {
    Atomics.add(bell, 0, 1);
    Atomics.notify(bell, 0);
  }
}

export interface OutputStats {
  records: number;
  batches: number;
}

export class Output {
  private readonly buffers: unknown[][];
  private readonly stamps: number[][];
  /** Whether a buffer holds a record with an event time (its frame carries timestamps). */
  private readonly timed: boolean[];
  /** Encoded bytes per record of the last frame to each consumer (0: none yet). */
  private readonly bytesPerRecord: number[];
  private next = 0;
  readonly stats: OutputStats = { records: 0, batches: 0 };
  /** Ms the producer spent parked on full rings (backpressure). */
  blockedMs = 0;

  private readonly bells: Int32Array[];

  constructor(
    private readonly writers: RingWriter[],
    bells: SharedArrayBuffer[],
    private readonly partitioning: Partitioning,
    private readonly keyFn: ((r: never) => unknown) | undefined,
    private readonly keyGroups: number,
    private readonly batchSize: number,
    producerSubtask: number,
  ) {
    this.buffers = writers.map(() => []);
    this.stamps = writers.map(() => []);
    this.timed = writers.map(() => false);
    this.bytesPerRecord = writers.map(() => 0);
    this.bells = bells.map((b) => new Int32Array(b));
    // A frame bigger than the free space goes in chunks; the consumer sleeps on its
    // doorbell, not on the ring, so every wait for room rings it.
    writers.forEach((w, i) => (w.onBlocked = () => ring(this.bells[i]!)));
    this.next = producerSubtask % writers.length;
  }

  /** Routes one record with its timestamp (NaN: none); may leave it buffered. */
  push(record: unknown, ts: number): void {
    let target: number;
    if (this.writers.length === 1) target = 0;
    else if (this.partitioning === 'hash') {
      target = subtaskForKeyGroup(keyGroupOf(this.keyFn!(record as never), this.keyGroups), this.writers.length, this.keyGroups);
    } else {
      target = this.next; // rebalance: round robin per batch
    }
    const buf = this.buffers[target]!;
    buf.push(record);
    this.stamps[target]!.push(ts);
    if (ts === ts) this.timed[target] = true; // not NaN
    this.stats.records++;
    if (buf.length >= this.batchSize && this.partitioning === 'rebalance') this.next = (this.next + 1) % this.writers.length;
  }

  /**
   * Records per frame to consumer i: batchSize, or fewer while its ring is limited
   * (buffer debloating, queue-limit.ts) — half the limit's worth at the last frame's
   * bytes per record, so the limit holds two frames and a barrier never waits behind
   * one frame of seconds of work.
   */
  private frameRecords(i: number): number {
    const w = this.writers[i]!;
    const limit = w.limit;
    const per = this.bytesPerRecord[i]!;
    if (limit >= w.capacity || per === 0) return this.batchSize;
    return Math.max(1, Math.min(this.batchSize, Math.floor(limit / 2 / per)));
  }

  /**
   * Records a source should read per unit: batchSize, or one limited frame's worth. A
   * source handles barriers between units, so a unit that fills limited rings several
   * times over would hold a barrier back until the consumer worked through it.
   */
  unitRecords(): number {
    let n = this.batchSize;
    for (let i = 0; i < this.writers.length; i++) n = Math.min(n, this.frameRecords(i));
    return n;
  }

  /** Sends every non-empty buffer (only full frames with `fullOnly`). */
  async flush(fullOnly = false): Promise<void> {
    for (let i = 0; i < this.writers.length; i++) {
      const buf = this.buffers[i]!;
      const per = this.frameRecords(i);
      if (buf.length === 0 || (fullOnly && buf.length < per)) continue;
      const stamps = this.stamps[i]!;
      const timed = this.timed[i]!;
      // Unlimited: everything buffered goes as one frame, as batchSize only says when.
      const most = per >= this.batchSize ? Infinity : per;
      const frames: Uint8Array[] = [];
      let from = 0;
      while (buf.length - from >= (fullOnly ? per : 1)) {
        const n = Math.min(most, buf.length - from);
        const whole = from === 0 && n === buf.length;
        const recs = whole ? buf : buf.slice(from, from + n);
        const frame = encodeBatch(recs, timed ? (whole ? stamps : stamps.slice(from, from + n)) : undefined);
        this.bytesPerRecord[i] = frame.length / n;
        frames.push(frame);
        from += n;
      }
      // The buffer is replaced before any await, so records pushed meanwhile (or a flush
      // that overlaps this one) never see the ones being sent. What is left (with
      // fullOnly, less than a frame) stays for the next flush.
      const all = from === buf.length;
      this.buffers[i] = all ? [] : buf.slice(from);
      this.stamps[i] = all ? [] : stamps.slice(from);
      if (all) this.timed[i] = false;
      for (const frame of frames) {
        this.stats.batches++;
        await this.send(i, frame);
      }
    }
  }

  private async send(i: number, frame: Uint8Array): Promise<void> {
    const w = this.writers[i]!;
    if (!w.tryWrite(frame)) {
      // No ring here: the writer rings the consumer itself whenever it has to wait for
      // room (onBlocked, set in the constructor), after publishing what fitted.
      const t0 = performance.now();
      await w.writeAsync(frame);
      this.blockedMs += performance.now() - t0;
    }
    ring(this.bells[i]!);
  }

  private async toAll(frame: Uint8Array): Promise<void> {
    await this.flush();
    for (let i = 0; i < this.writers.length; i++) await this.send(i, frame);
  }

  /** Flushes, then sends barrier `id` to every consumer. */
  barrier(id: number): Promise<void> {
    return this.toAll(barrierFrame(id));
  }

  /** Flushes (the records it covers go first), then sends the watermark to every consumer. */
  watermark(wm: number): Promise<void> {
    return this.toAll(watermarkFrame(wm));
  }

  /** Tells every consumer this producer is idle (left out of their watermark until it speaks again). */
  idle(): Promise<void> {
    return this.toAll(watermarkFrame(-Infinity, true));
  }

  /** Flushes, then tells every consumer this producer is done. */
  end(): Promise<void> {
    return this.toAll(EOI_FRAME);
  }
}

interface OpenInput {
  reader: RingReader;
  side: 0 | 1;
  blocked: boolean;
  watermark: number;
  idle: boolean;
}

/**
 * The inputs of a task instance: one ring per upstream instance and edge, with barrier
 * alignment and watermarks. Once barrier N arrived on an input, that input is not read
 * again until N arrived on every input still open (an input that ended counts as
 * arrived). Watermark frames update their input's watermark; poll() returns a
 * watermark frame only when the combined watermark advances (or all inputs went idle).
 */
export class Inputs {
  private readonly open: OpenInput[];
  private turn = 0;
  private readonly bell: Int32Array;
  /** The barrier being aligned, if any. */
  private aligning: number | undefined;
  /** When its first copy arrived (performance.now()). */
  private alignStart = 0;
  /** How long the last aligned barrier held its first input blocked, in ms. */
  lastAlignMs = 0;
  /** The side (0, 1) of the input the last DATA frame came from. */
  lastSide: 0 | 1 = 0;
  /** The combined watermark forwarded so far (monotone). */
  watermark = -Infinity;
  /** Every open input is idle, and that was reported. */
  private idleReported = false;
  /** Limits each input ring to what this instance consumes in a target time (queue-limit.ts). */
  private readonly limiter: QueueLimiter | undefined;

  constructor(readers: RingReader[], bell: SharedArrayBuffer, sides?: (0 | 1)[], restoredWatermark = -Infinity, queueTargetMs = 0) {
    this.open = readers.map((reader, i) => ({ reader, side: sides?.[i] ?? 0, blocked: false, watermark: -Infinity, idle: false }));
    this.bell = new Int32Array(bell);
    this.watermark = restoredWatermark;
    if (queueTargetMs > 0) this.limiter = new QueueLimiter(queueTargetMs);
  }

  get done(): boolean {
    return this.open.length === 0;
  }

  /**
   * The next frame from any unblocked input, round robin; null when none is ready.
   * EOI removes its input. A barrier frame is returned only once it arrived on every
   * open input (aligned); the copies from the other inputs are swallowed.
   */
  poll(): Uint8Array | null {
    // Once per poll, not per n polls: a poll may follow a frame that took 100 ms.
    if (this.limiter !== undefined) this.limiter.tick(this.open, performance.now());
    // Passes repeat while a pass consumed frames without returning one (a watermark that
    // did not move the minimum, a barrier copy, an idle mark): null must mean "nothing
    // to read", or the caller parks on the doorbell with frames queued, and no producer
    // rings it for frames already written. After a restore the restored watermark is
    // ahead of what inputs send for a while, so a ring of such watermarks cost one idle
    // timeout each: a checkpoint waited 60 s behind them.
    for (;;) {
      const f = this.pollPass();
      if (f !== null || !this.consumedInPass) return f;
    }
  }

  private consumedInPass = false;

  /** One round-robin pass over the unblocked inputs (see poll). */
  private pollPass(): Uint8Array | null {
    this.consumedInPass = false;
    for (let k = 0; k < this.open.length; k++) {
      const i = (this.turn + k) % this.open.length;
      const input = this.open[i]!;
      if (input.blocked) continue;
      const f = input.reader.read();
      if (f === null) continue;
      this.consumedInPass = true;
      if (f[0] === FRAME_EOI) {
        this.open.splice(i, 1);
        this.turn = this.open.length ? i % this.open.length : 0;
        const aligned = this.checkAligned();
        if (aligned) return aligned;
        const wm = this.combine();
        return wm ?? f;
      }
      this.turn = (i + 1) % this.open.length;
      if (f[0] === FRAME_WATERMARK) {
        const w = watermarkOf(f);
        if (w.idle) input.idle = true;
        else {
          input.idle = false;
          if (w.watermark > input.watermark) input.watermark = w.watermark;
        }
        const out = this.combine();
        if (out) return out;
        continue;
      }
      if (f[0] === FRAME_BARRIER) {
        const id = barrierId(f);
        if (this.aligning !== undefined && this.aligning !== id) {
          throw new Error(`barrier ${id} arrived while aligning barrier ${this.aligning}`);
        }
        if (this.aligning === undefined) this.alignStart = performance.now();
        this.aligning = id;
        input.blocked = true;
        const aligned = this.checkAligned();
        if (aligned) return aligned;
        continue;
      }
      // DATA: an idle input that speaks again rejoins the minimum.
      if (input.idle) input.idle = false;
      this.lastSide = input.side;
      return f;
    }
    return null;
  }

  /**
   * A watermark frame when the minimum over the open, active inputs moved past what was
   * forwarded; an idle frame once when every open input is idle; else null.
   * No open input left: the watermark is Infinity (end of input closes every window).
   */
  private combine(): Uint8Array | null {
    let min = Infinity;
    let active = 0;
    for (const x of this.open) {
      if (x.idle) continue;
      active++;
      if (x.watermark < min) min = x.watermark;
    }
    if (active === 0 && this.open.length > 0) {
      if (this.idleReported) return null;
      this.idleReported = true;
      return watermarkFrame(-Infinity, true);
    }
    this.idleReported = false;
    if (min > this.watermark) {
      this.watermark = min;
      return watermarkFrame(min);
    }
    return null;
  }

  /** Bytes written into the input rings and not read yet: what a barrier would queue behind. */
  get queuedBytes(): number {
    let n = 0;
    for (const x of this.open) n += x.reader.used;
    return n;
  }

  /** What the open input rings may hold: Σ of their limits (the capacity where none is set). */
  get queueLimitBytes(): number {
    let n = 0;
    for (const x of this.open) n += x.reader.limit;
    return n;
  }

  /** When every open input delivered the barrier being aligned: unblock and return it. */
  private checkAligned(): Uint8Array | null {
    if (this.aligning === undefined) return null;
    if (this.open.some((x) => !x.blocked)) return null;
    const id = this.aligning;
    this.aligning = undefined;
    this.lastAlignMs = performance.now() - this.alignStart;
    for (const x of this.open) x.blocked = false;
    return barrierFrame(id);
  }

  /**
   * Parks on the doorbell until a producer writes to any input (or `timeoutMs`, or
   * `wake` settles). Returns the frame that was found while announcing sleep, if any
   * (it must not be lost).
   */
  async wait(timeoutMs = 1000, wake?: Promise<unknown>): Promise<Uint8Array | null> {
    if (this.open.length === 0) return null;
    Atomics.store(this.bell, 1, 1);
    const seq = Atomics.load(this.bell, 0);
    const f = this.poll(); // re-check after announcing: a write may have raced the announcement
    // SLEEPING cleared: a producer claimed this sleep and may have notified already, before
    // we park (see createBell); its SEQ bump could even precede our load. Don't park.
    if (f === null && Atomics.load(this.bell, 1) !== 0) {
      const w = waitWord(this.bell, 0, seq, Math.max(0, timeoutMs));
      await (wake ? Promise.race([w, wake]) : w);
    }
    Atomics.store(this.bell, 1, 0);
    return f;
  }
}
