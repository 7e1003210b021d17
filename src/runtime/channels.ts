// Record channels between task instances, over SPSC rings.
//
// Frames (one ring per (producer instance, consumer instance) pair):
//   DATA | u8 1 | msgpack array of records |
//   EOI  | u8 2 |                           end of input from this producer
//   BAR  | u8 3 | 7 pad | f64 checkpoint id | barrier: records before it belong to the checkpoint
// Barriers are in-band, so order holds: a consumer sees every record of epoch N
// before barrier N, and none after it.
//
// An Output buffers records per target and sends a batch when it reaches `batchSize`
// or when the task finishes a unit of work (`flush`). Writes are async: a full ring
// parks the producer (backpressure) without blocking its event loop, so inline mode —
// every instance on one thread — cannot deadlock.
import { Packr } from 'msgpackr';
import { RingReader, RingWriter } from '../transport/ring.js';
import { waitWord } from '../transport/doorbell.js';
import { keyGroupOf } from './partition.js';
import { subtaskForKeyGroup, type Partitioning } from '../flow/plan.js';

export const FRAME_DATA = 1;
export const FRAME_EOI = 2;
export const FRAME_BARRIER = 3;

export function barrierFrame(id: number): Uint8Array {
  const f = new Uint8Array(16);
  f[0] = FRAME_BARRIER;
  new DataView(f.buffer).setFloat64(8, id, true);
  return f;
}

export function barrierId(frame: Uint8Array): number {
  return new DataView(frame.buffer, frame.byteOffset, frame.byteLength).getFloat64(8, true);
}

// Plain msgpack maps. msgpackr's records mode decodes ~1.6× faster, but its
// structure table is per instance state; under restarts and several producers per
// consumer it produced undecodable frames here, so it stays off until that is
// understood (see perf/RESULTS.md).
const PACK_OPTIONS = { useRecords: false, moreTypes: false, mapsAsObjects: true, useBigInt64: true, int64AsType: 'bigint', useBigIntExtension: true } as ConstructorParameters<typeof Packr>[0];
const packr = new Packr(PACK_OPTIONS);
const unpackr = new Packr(PACK_OPTIONS);
const EOI = new Uint8Array([FRAME_EOI]);

/**
 * A consumer's doorbell: Int32 [SEQ, SLEEPING] on a SharedArrayBuffer of its own.
 * Every producer that writes a frame to any of the consumer's input rings bumps SEQ and
 * notifies only if the consumer announced it is asleep, so an idle task instance with
 * many inputs parks on one word instead of polling each ring.
 *   consumer: SLEEPING=1; s=load(SEQ); poll rings; if nothing: waitAsync(SEQ, s); SLEEPING=0
 *   producer: write frame; add(SEQ, 1); if load(SLEEPING): notify(SEQ)
 */
export function createBell(): SharedArrayBuffer {
  return new SharedArrayBuffer(8);
}

function ring(bell: Int32Array): void {
  Atomics.add(bell, 0, 1);
  if (Atomics.load(bell, 1) !== 0) Atomics.notify(bell, 0);
}

export function encodeBatch(records: unknown[]): Uint8Array {
  const body = packr.pack(records);
  const frame = new Uint8Array(body.length + 1);
  frame[0] = FRAME_DATA;
  frame.set(body, 1);
  return frame;
}

export function decodeBatch(frame: Uint8Array): unknown[] {
  return unpackr.unpack(frame.subarray(1)) as unknown[];
}

export interface OutputStats {
  records: number;
  batches: number;
}

export class Output {
  private readonly buffers: unknown[][];
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
    private readonly producerSubtask: number,
  ) {
    this.buffers = writers.map(() => []);
    this.bells = bells.map((b) => new Int32Array(b));
    this.next = producerSubtask % writers.length;
  }

  /** Routes one record; may leave it buffered. Returns true when a batch is full. */
  push(record: unknown): boolean {
    let target: number;
    if (this.writers.length === 1) target = 0;
    else if (this.partitioning === 'hash') {
      target = subtaskForKeyGroup(keyGroupOf(this.keyFn!(record as never), this.keyGroups), this.writers.length, this.keyGroups);
    } else {
      target = this.next; // rebalance: round robin per batch
    }
    const buf = this.buffers[target]!;
    buf.push(record);
    this.stats.records++;
    if (buf.length >= this.batchSize) {
      if (this.partitioning === 'rebalance') this.next = (this.next + 1) % this.writers.length;
      return true;
    }
    return false;
  }

  /** Sends every non-empty buffer (only the full ones with `fullOnly`). */
  async flush(fullOnly = false): Promise<void> {
    for (let i = 0; i < this.writers.length; i++) {
      const buf = this.buffers[i]!;
      if (buf.length === 0 || (fullOnly && buf.length < this.batchSize)) continue;
      this.buffers[i] = [];
      const frame = encodeBatch(buf);
      this.stats.batches++;
      const w = this.writers[i]!;
      if (!w.tryWrite(frame)) {
        ring(this.bells[i]!); // the consumer must be awake to make room
        const t0 = performance.now();
        await w.writeAsync(frame);
        this.blockedMs += performance.now() - t0;
      }
      ring(this.bells[i]!);
    }
  }

  /** Flushes, then sends barrier `id` to every consumer. */
  async barrier(id: number): Promise<void> {
    await this.flush();
    const f = barrierFrame(id);
    for (let i = 0; i < this.writers.length; i++) {
      await this.writers[i]!.writeAsync(f);
      ring(this.bells[i]!);
    }
  }

  /** Flushes, then tells every consumer this producer is done. */
  async end(): Promise<void> {
    await this.flush();
    for (let i = 0; i < this.writers.length; i++) {
      await this.writers[i]!.writeAsync(EOI);
      ring(this.bells[i]!);
    }
  }
}

/**
 * The inputs of a task instance: one ring per upstream instance, with barrier
 * alignment. Once barrier N arrived on an input, that input is not read again until N
 * arrived on every input still open (an input that ended counts as arrived).
 */
export class Inputs {
  private readonly open: { reader: RingReader; blocked: boolean }[];
  private turn = 0;
  private readonly bell: Int32Array;
  /** The barrier being aligned, if any. */
  private aligning: number | undefined;
  /** When its first copy arrived (performance.now()). */
  private alignStart = 0;
  /** How long the last aligned barrier held its first input blocked, in ms. */
  lastAlignMs = 0;

  constructor(readers: RingReader[], bell: SharedArrayBuffer) {
    this.open = readers.map((reader) => ({ reader, blocked: false }));
    this.bell = new Int32Array(bell);
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
    for (let k = 0; k < this.open.length; k++) {
      const i = (this.turn + k) % this.open.length;
      const input = this.open[i]!;
      if (input.blocked) continue;
      const f = input.reader.read();
      if (f === null) continue;
      if (f[0] === FRAME_EOI) {
        this.open.splice(i, 1);
        this.turn = this.open.length ? i % this.open.length : 0;
        const aligned = this.checkAligned();
        return aligned ?? f;
      }
      this.turn = (i + 1) % this.open.length;
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
      return f;
    }
    return null;
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
   * Parks on the doorbell until a producer writes to any input. Returns the frame that
   * was found while announcing sleep, if any (it must not be lost).
   */
  async wait(): Promise<Uint8Array | null> {
    if (this.open.length === 0) return null;
    Atomics.store(this.bell, 1, 1);
    const seq = Atomics.load(this.bell, 0);
    const f = this.poll(); // re-check after announcing: a write may have raced the announcement
    if (f === null) await waitWord(this.bell, 0, seq, 1000);
    Atomics.store(this.bell, 1, 0);
    return f;
  }
}
