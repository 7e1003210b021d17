// Record channels between task instances, over SPSC rings.
//
// Frames (one ring per (producer instance, consumer instance) pair):
//   DATA | u8 1 | msgpack array of records |
//   EOI  | u8 2 |                           end of input from this producer
// Barriers and watermarks will be further in-band frame types, so order holds.
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

// Records are structurally similar within a batch: msgpackr records (structures
// written once per batch) decode about twice as fast as plain maps.
// Separate instances for packing and unpacking: a records-mode Packr keeps structure
// state, and a thread that both sends and receives must not mix the two streams.
const PACK_OPTIONS = { useRecords: true, moreTypes: false, mapsAsObjects: true, useBigInt64: true, int64AsType: 'bigint', useBigIntExtension: true } as ConstructorParameters<typeof Packr>[0];
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

  /** Flushes, then tells every consumer this producer is done. */
  async end(): Promise<void> {
    await this.flush();
    for (let i = 0; i < this.writers.length; i++) {
      await this.writers[i]!.writeAsync(EOI);
      ring(this.bells[i]!);
    }
  }
}

/** The inputs of a task instance: one ring per upstream instance. */
export class Inputs {
  private readonly open: RingReader[];
  private turn = 0;
  private readonly bell: Int32Array;
  constructor(readers: RingReader[], bell: SharedArrayBuffer) {
    this.open = [...readers];
    this.bell = new Int32Array(bell);
  }

  get done(): boolean {
    return this.open.length === 0;
  }

  /**
   * The next frame from any input, round robin; null when none is ready. An EOI
   * frame removes its input. Returns 'eoi' for it so the caller can count.
   */
  poll(): Uint8Array | null {
    for (let k = 0; k < this.open.length; k++) {
      const i = (this.turn + k) % this.open.length;
      const r = this.open[i]!;
      const f = r.read();
      if (f === null) continue;
      if (f[0] === FRAME_EOI) {
        this.open.splice(i, 1);
        this.turn = this.open.length ? i % this.open.length : 0;
        return f;
      }
      this.turn = (i + 1) % this.open.length;
      return f;
    }
    return null;
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
