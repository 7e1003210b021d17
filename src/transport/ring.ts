// Single-producer single-consumer byte ring over a SharedArrayBuffer.
//
// One RingWriter (in one thread) and one RingReader (usually another thread) share
// the SAB returned by createRingBuffer(). The layout, in bytes:
//
//    0  ┌ line 0: MAGIC, CAPACITY ─────────── written once by createRingBuffer
//   64  ├ line 1: HEAD, W_WAIT, W_WANT ────── written by the writer only
//  128  ├ line 2: TAIL, R_WAIT ────────────── written by the reader only
//  192  ├ data: CAPACITY bytes (a power of two, 64 .. 2^30)
//       │   tail            head
//       │    v               v
//       │ [..|len|payload|pad|len|payload|pad|.............]   one record per chunk
//       └──────────────────────────────────────────────────
//
// Positions. HEAD and TAIL are byte counters that only grow and wrap modulo 2^32
// (they start 64 KiB below 2^31 so the int32 overflow is exercised early); a record
// lives at data[pos & (CAPACITY - 1)]. Every record starts on a 4-byte
// boundary, so the two low bits of a position are always 0 and the words use bit 0
// as a flag: HEAD|1 = the writer closed the stream, TAIL|1 = the reader cancelled.
// Setting the flag changes the word, so a peer parked on it wakes (see Signalling).
//
// Invariants (all arithmetic `| 0`, i.e. wrap-safe int32):
//   used = (head - tail) | 0,     0 <= used <= CAPACITY
//   empty  <=>  head === tail     full  <=>  used + (next record size) > CAPACITY
//   Bytes in [tail, head) belong to the reader, bytes in [head, tail + CAPACITY) to
//   the writer. Only the writer stores HEAD, W_WAIT and W_WANT; only the reader
//   stores TAIL (R_WAIT: see Signalling).
//
// Records. A 4-byte length word (Int32, never straddles the end because CAPACITY and
// positions are multiples of 4) holds the payload length in bits 0..30 and MORE in
// bit 31: "more chunks of this frame follow". The payload may straddle the end of the
// buffer (copied in two parts) and is padded to 4 bytes. A frame longer than
// MAX_CHUNK = CAPACITY/2 - 4 is cut into chunks of MAX_CHUNK bytes, all but the last
// with MORE set; the reader reassembles them. So every record fits in half the ring,
// and the writer can fill one half while the reader empties the other.
//
// Memory ordering. Payload and length words are plain stores; publication is the
// Atomics.store of HEAD (writer) or TAIL (reader). Atomics are sequentially consistent,
// so a thread that Atomics.load()s a position sees every plain store made before it
// was stored: the reader never sees a record before its bytes, the writer never reuses
// bytes the reader still reads.
//
// Signalling (Dekker style, no lost wake-ups under SC atomics):
//   reader parks:  R_WAIT = 1; w = load(HEAD); if w still says "empty": wait(HEAD, w)
//   writer:        store(HEAD, h); if exchange(R_WAIT, 0) != 0: notify(HEAD)
//   writer parks:  W_WANT = tail it needs; W_WAIT = 1; w = load(TAIL); if short: wait(TAIL, w)
//   reader:        store(TAIL, t); if load(W_WAIT) != 0 and t >= W_WANT: notify(TAIL)
// Either the parking side sees the new position, or the other side sees the flag.
// Nobody calls Atomics.notify while the peer is awake, so a small frame costs one
// atomic store and one load. R_WAIT is the one word both sides write: the reader
// arms it, the writer disarms it when it rings (one notify per park, not one per
// frame published before the parked reader gets to run). A blocked writer asks to
// be woken when half the ring is free (hysteresis), not per freed record. Both sides
// poll a little (SPIN) before parking, as parking and waking cost microseconds.

import { errors } from '../errors.js';
import { waitWord } from './doorbell.js';

const MAGIC = 0x52494e47; // 'RING'
const I_MAGIC = 0;
const I_CAPACITY = 1;
const I_HEAD = 16;
const I_W_WAIT = 17;
const I_W_WANT = 18;
const I_TAIL = 32;
const I_R_WAIT = 33;
const HEADER_BYTES = 192;
const MIN_CAPACITY = 64;
const MAX_CAPACITY = 1 << 30;
const MORE = 0x80000000 | 0;
const LEN_MASK = 0x7fffffff;
const FLAG = 1;
const POS_MASK = ~3;
/** First position: 64 KiB below int32 overflow, so every ring soon exercises the wrap. */
const START = 0x7fff0000;
/** Copies shorter than this are done byte by byte: cheaper than a TypedArray.set call. */
const SMALL_COPY = 16;
/** Polls of the peer's position before parking: parking and waking cost microseconds. */
const SPIN = 16384;

const pad4 = (n: number) => (n + 3) & ~3;

/** Allocate a ring with `capacityBytes` of data space (a power of two, 64 B .. 1 GiB). */
export function createRingBuffer(capacityBytes: number): SharedArrayBuffer {
  if (
    !Number.isInteger(capacityBytes) ||
    capacityBytes < MIN_CAPACITY ||
    capacityBytes > MAX_CAPACITY ||
    (capacityBytes & (capacityBytes - 1)) !== 0
  ) {
    throw errors.badOption('capacityBytes', `must be a power of two from ${MIN_CAPACITY} to ${MAX_CAPACITY}, got ${capacityBytes}`);
  }
  const sab = new SharedArrayBuffer(HEADER_BYTES + capacityBytes);
  const i32 = new Int32Array(sab, 0, HEADER_BYTES >> 2);
  i32[I_CAPACITY] = capacityBytes;
  i32[I_HEAD] = START;
  i32[I_TAIL] = START;
  Atomics.store(i32, I_MAGIC, MAGIC);
  return sab;
}

/** Bytes of ring space a frame of `length` bytes takes, chunk headers and padding included. */
export function encodedFrameSize(length: number, capacity: number): number {
  const maxChunk = (capacity >> 1) - 4;
  if (length <= maxChunk) return 4 + pad4(length);
  const chunks = Math.ceil(length / maxChunk);
  return chunks * 4 + (chunks - 1) * maxChunk + pad4(length - (chunks - 1) * maxChunk);
}

/** State common to both ends: views over one ring SAB. */
abstract class RingEnd {
  protected readonly i32: Int32Array;
  protected readonly words: Int32Array;
  protected readonly data: Uint8Array;
  readonly capacity: number;
  protected readonly mask: number;
  protected readonly maxChunk: number;

  constructor(sab: SharedArrayBuffer) {
    if (!(sab instanceof SharedArrayBuffer) || sab.byteLength < HEADER_BYTES + MIN_CAPACITY) {
      throw errors.badOption('sab', 'not a tidepool ring (use createRingBuffer)');
    }
    this.i32 = new Int32Array(sab, 0, HEADER_BYTES >> 2);
    const cap = this.i32[I_CAPACITY]!;
    if (Atomics.load(this.i32, I_MAGIC) !== MAGIC || sab.byteLength !== HEADER_BYTES + cap) {
      throw errors.badOption('sab', 'not a tidepool ring (use createRingBuffer)');
    }
    this.capacity = cap;
    this.mask = cap - 1;
    this.maxChunk = (cap >> 1) - 4;
    this.words = new Int32Array(sab, HEADER_BYTES, cap >> 2);
    this.data = new Uint8Array(sab, HEADER_BYTES, cap);
  }

  /** Bytes currently in the ring (written, not yet consumed), headers included. */
  get used(): number {
    const head = Atomics.load(this.i32, I_HEAD) & POS_MASK;
    const tail = Atomics.load(this.i32, I_TAIL) & POS_MASK;
    return (head - tail) | 0;
  }
}

export class RingWriter extends RingEnd {
  #head: number; // local head position; published by #publish()
  #tail: number; // last tail position seen (stale is safe: it only under-reports space)
  #closed = false;
  #pending = 0; // writeAsync calls not settled yet
  #queue: Promise<void> = Promise.resolve();
  #bytes = 0;
  #frames = 0;
  #blocked = 0;
  #blockedMs = 0;
  #notifies = 0;

  constructor(sab: SharedArrayBuffer) {
    super(sab);
    this.#head = Atomics.load(this.i32, I_HEAD) & POS_MASK;
    this.#tail = Atomics.load(this.i32, I_TAIL) & POS_MASK;
  }

  /** Payload bytes accepted so far (frames, not headers). */
  get bytesWritten(): number { return this.#bytes; }
  get framesWritten(): number { return this.#frames; }
  /** Times write/writeMany/writeAsync found the ring full and had to wait. */
  get blockedCount(): number { return this.#blocked; }
  /** Total milliseconds spent waiting for space. */
  get blockedMs(): number { return this.#blockedMs; }
  /** Times the writer woke a parked reader. */
  get notifyCount(): number { return this.#notifies; }
  get closed(): boolean { return this.#closed; }

  /** Write one frame, blocking the thread (Atomics.wait) while the ring is full. */
  write(frame: Uint8Array): void {
    this.#checkSync();
    this.#putSync(frame);
    this.#publish();
  }

  /** Write several frames and publish them once; blocks like write() when full. */
  writeMany(frames: readonly Uint8Array[]): void {
    this.#checkSync();
    for (let i = 0; i < frames.length; i++) this.#putSync(frames[i]!);
    this.#publish();
  }

  /**
   * Write one frame if the ring has room for all of it now; never waits. Throws if
   * the frame could never fit (its encoded size exceeds the capacity).
   */
  tryWrite(frame: Uint8Array): boolean {
    if (this.#closed) throw errors.ringClosed();
    if (this.#pending !== 0) return false;
    const len = frame.length;
    const need = len <= this.maxChunk ? 4 + pad4(len) : encodedFrameSize(len, this.capacity);
    if (need > this.capacity) {
      throw errors.ringMisuse(`a ${len}-byte frame never fits a ${this.capacity}-byte ring at once; use write() or writeAsync()`);
    }
    if (!this.#hasRoom(need)) return false;
    if (len <= this.maxChunk) this.#put(frame, 0, len, false);
    else this.#putChunks(frame);
    this.#frames++;
    this.#bytes += len;
    this.#publish();
    return true;
  }

  /**
   * Write one frame, waiting with Atomics.waitAsync while the ring is full, so the
   * thread's event loop keeps running. Calls are queued in order.
   */
  writeAsync(frame: Uint8Array): Promise<void> {
    if (this.#closed) return Promise.reject(errors.ringClosed());
    if (this.#pending === 0 && frame.length <= this.maxChunk) {
      try {
        if (this.#hasRoom(4 + pad4(frame.length))) {
          this.#put(frame, 0, frame.length, false);
          this.#frames++;
          this.#bytes += frame.length;
          this.#publish();
          return Promise.resolve();
        }
      } catch (err) {
        return Promise.reject(err);
      }
    }
    this.#pending++;
    const p = this.#queue.then(() => this.#putAsync(frame));
    const settle = () => { this.#pending--; };
    this.#queue = p.then(settle, (err: unknown) => { settle(); throw err; });
    // The queue carries the failure to later calls; don't report it unhandled there.
    this.#queue.catch(() => {});
    return p;
  }

  /**
   * End of stream. The reader sees `closed` once it has consumed every frame written
   * before; later writes throw TIDEPOOL_RING_CLOSED. Pending writeAsync calls finish first.
   */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    const publishClose = () => {
      Atomics.store(this.i32, I_HEAD, this.#head | FLAG);
      Atomics.notify(this.i32, I_HEAD);
    };
    if (this.#pending === 0) publishClose();
    else this.#queue.then(publishClose, publishClose);
  }

  #checkSync(): void {
    if (this.#closed) throw errors.ringClosed();
    if (this.#pending !== 0) throw errors.ringMisuse('write() while writeAsync() calls are pending would reorder frames');
  }

  #putSync(frame: Uint8Array): void {
    const len = frame.length;
    if (len <= this.maxChunk) {
      const need = 4 + pad4(len);
      if (!this.#hasRoom(need)) this.#waitRoomSync(need);
      this.#put(frame, 0, len, false);
    } else {
      for (let start = 0; start < len; start += this.maxChunk) {
        const n = Math.min(this.maxChunk, len - start);
        const need = 4 + pad4(n);
        if (!this.#hasRoom(need)) this.#waitRoomSync(need);
        this.#put(frame, start, n, start + n < len);
      }
    }
    this.#frames++;
    this.#bytes += len;
  }

  async #putAsync(frame: Uint8Array): Promise<void> {
    const len = frame.length;
    let start = 0;
    do {
      const n = Math.min(this.maxChunk, len - start);
      const need = 4 + pad4(n);
      while (!this.#hasRoom(need)) await this.#waitRoomAsync();
      this.#put(frame, start, n, start + n < len);
      start += n;
    } while (start < len);
    this.#frames++;
    this.#bytes += len;
    this.#publish();
  }

  /** Chunks of a frame that is known to fit in the free space. */
  #putChunks(frame: Uint8Array): void {
    const len = frame.length;
    for (let start = 0; start < len; start += this.maxChunk) {
      const n = Math.min(this.maxChunk, len - start);
      this.#put(frame, start, n, start + n < len);
    }
  }

  #hasRoom(need: number): boolean {
    if (this.capacity - ((this.#head - this.#tail) | 0) >= need) return true;
    const w = Atomics.load(this.i32, I_TAIL);
    if ((w & FLAG) !== 0) throw errors.ringClosed();
    this.#tail = w & POS_MASK;
    return this.capacity - ((this.#head - this.#tail) | 0) >= need;
  }

  /** Copy one record at the local head; does not publish. Caller checked the space. */
  #put(src: Uint8Array, start: number, len: number, more: boolean): void {
    const mask = this.mask;
    const off = this.#head & mask;
    this.words[off >> 2] = more ? len | MORE : len;
    const p = (off + 4) & mask;
    const first = this.capacity - p;
    const data = this.data;
    if (len <= first) {
      if (len < SMALL_COPY) {
        for (let i = 0; i < len; i++) data[p + i] = src[start + i]!;
      } else {
        data.set(start === 0 && len === src.length ? src : src.subarray(start, start + len), p);
      }
    } else {
      data.set(src.subarray(start, start + first), p);
      data.set(src.subarray(start + first, start + len), 0);
    }
    this.#head = (this.#head + 4 + pad4(len)) | 0;
  }

  #publish(): void {
    Atomics.store(this.i32, I_HEAD, this.#head);
    // Ring once per park: the reader re-arms R_WAIT before it parks again.
    if (Atomics.load(this.i32, I_R_WAIT) !== 0 && Atomics.exchange(this.i32, I_R_WAIT, 0) !== 0) {
      Atomics.notify(this.i32, I_HEAD);
      this.#notifies++;
    }
  }

  /** Announce the tail position we need (half the ring free) before parking. */
  #announce(): number {
    const want = (this.#head - (this.capacity >> 1)) | 0;
    Atomics.store(this.i32, I_W_WANT, want);
    Atomics.store(this.i32, I_W_WAIT, 1);
    return want;
  }

  /** Publish, then park until the reader has freed half the ring (every record needs at most half). */
  #waitRoomSync(need: number): void {
    this.#publish();
    for (let i = 0; i < SPIN; i++) if (this.#hasRoom(need)) return;
    const t0 = performance.now();
    this.#blocked++;
    const want = this.#announce();
    try {
      for (;;) {
        const w = Atomics.load(this.i32, I_TAIL);
        if ((w & FLAG) !== 0) throw errors.ringClosed();
        this.#tail = w & POS_MASK;
        if (((this.#tail - want) | 0) >= 0) break;
        Atomics.wait(this.i32, I_TAIL, w);
      }
    } finally {
      Atomics.store(this.i32, I_W_WAIT, 0);
      this.#blockedMs += performance.now() - t0;
    }
  }

  /** Async twin of #waitRoomSync; the caller re-checks the room afterwards. */
  async #waitRoomAsync(): Promise<void> {
    this.#publish();
    const t0 = performance.now();
    this.#blocked++;
    const want = this.#announce();
    try {
      for (;;) {
        const w = Atomics.load(this.i32, I_TAIL);
        if ((w & FLAG) !== 0) throw errors.ringClosed();
        this.#tail = w & POS_MASK;
        if (((this.#tail - want) | 0) >= 0) break;
        await waitWord(this.i32, I_TAIL, w);
      }
    } finally {
      Atomics.store(this.i32, I_W_WAIT, 0);
      this.#blockedMs += performance.now() - t0;
    }
  }
}

export class RingReader extends RingEnd {
  #tail: number; // local tail position; published by #release()
  #head: number; // last head position seen
  #eos = false; // the writer's close flag was seen
  #cancelled = false;
  #asm: Uint8Array = new Uint8Array(0); // reassembly of a chunked frame
  #asmLen = 0;
  #straddle: Uint8Array | null = null; // scratch for drain() views of wrapped records
  #parked = 0;
  #bytes = 0;
  #frames = 0;
  #waits = 0;

  constructor(sab: SharedArrayBuffer) {
    super(sab);
    this.#tail = Atomics.load(this.i32, I_TAIL) & POS_MASK;
    this.#head = this.#tail;
  }

  get bytesRead(): number { return this.#bytes; }
  get framesRead(): number { return this.#frames; }
  /** Times waitReadable() actually parked on the doorbell. */
  get waitCount(): number { return this.#waits; }

  /** True once the writer closed and every frame written before close() was consumed. */
  get closed(): boolean {
    if (this.#tail === this.#head) this.#refresh();
    return this.#eos && this.#tail === this.#head && this.#asmLen === 0;
  }

  /** The next frame as a fresh copy, or null if none is complete yet (or closed). */
  read(): Uint8Array | null {
    if (this.#cancelled) return null;
    for (;;) {
      if (this.#tail === this.#head && !this.#refresh()) return null;
      const off = this.#tail & this.mask;
      const word = this.words[off >> 2]!;
      const len = word & LEN_MASK;
      const p = (off + 4) & this.mask;
      let out: Uint8Array | null = null;
      if (word >= 0 && this.#asmLen === 0) {
        out = p + len <= this.capacity ? this.data.slice(p, p + len) : this.#copyWrapped(p, len, new Uint8Array(len));
      } else {
        this.#append(p, len);
        if (word >= 0) {
          out = this.#asm.slice(0, this.#asmLen);
          this.#asmLen = 0;
        }
      }
      this.#tail = (this.#tail + 4 + pad4(len)) | 0;
      this.#release();
      if (out !== null) {
        this.#frames++;
        this.#bytes += out.length;
        return out;
      }
    }
  }

  /**
   * Pass up to `max` complete frames to `fn` as views into the ring (or into a scratch
   * buffer for wrapped and chunked frames). A view is valid only during its callback.
   * The tail is published once per batch of frames seen, not per frame. A frame whose
   * callback throws counts as consumed. Returns the number of frames passed.
   */
  drain(fn: (view: Uint8Array) => void, max = Infinity): number {
    if (this.#cancelled) return 0;
    let n = 0;
    let pos = this.#tail;
    if (pos === this.#head) this.#refresh();
    let end = this.#head;
    const mask = this.mask;
    try {
      while (n < max) {
        if (pos === end) {
          if (pos !== this.#tail) {
            this.#tail = pos;
            this.#release();
          }
          if (!this.#refresh()) break;
          end = this.#head;
        }
        const off = pos & mask;
        const word = this.words[off >> 2]!;
        const len = word & LEN_MASK;
        const p = (off + 4) & mask;
        pos = (pos + 4 + pad4(len)) | 0;
        let view: Uint8Array;
        if (word >= 0 && this.#asmLen === 0) {
          if (p + len <= this.capacity) view = this.data.subarray(p, p + len);
          else view = this.#copyWrapped(p, len, (this.#straddle ??= new Uint8Array(this.maxChunk)));
        } else {
          this.#append(p, len);
          if (word < 0) continue;
          view = this.#asm.subarray(0, this.#asmLen);
          this.#asmLen = 0;
        }
        n++;
        this.#frames++;
        this.#bytes += view.length;
        fn(view);
      }
    } finally {
      if (pos !== this.#tail) {
        this.#tail = pos;
        this.#release();
      }
    }
    return n;
  }

  /**
   * Resolve true when a record is readable or the writer closed, false when
   * `timeoutMs` passes first. Parks with Atomics.waitAsync: the event loop keeps
   * running, and a ref'd timer keeps the thread alive meanwhile.
   */
  waitReadable(timeoutMs = Infinity): Promise<boolean> {
    if (this.#cancelled) return Promise.resolve(false);
    if (this.#tail !== this.#head || this.#refresh() || this.#eos) return Promise.resolve(true);
    for (let i = 0; i < SPIN; i++) if (this.#refresh() || this.#eos) return Promise.resolve(true);
    if (timeoutMs <= 0) return Promise.resolve(false);
    return this.#park(timeoutMs);
  }

  /** Tell the writer nobody will read any more: its blocked and later waits throw TIDEPOOL_RING_CLOSED. */
  cancel(): void {
    if (this.#cancelled) return;
    this.#cancelled = true;
    Atomics.store(this.i32, I_TAIL, this.#tail | FLAG);
    Atomics.notify(this.i32, I_TAIL);
  }

  async #park(timeoutMs: number): Promise<boolean> {
    const deadline = performance.now() + timeoutMs;
    this.#parked++;
    try {
      for (;;) {
        Atomics.store(this.i32, I_R_WAIT, 1); // (re-)arm: the writer clears it when it rings
        const w = Atomics.load(this.i32, I_HEAD);
        if ((w & POS_MASK) !== this.#tail || (w & FLAG) !== 0) break;
        const left = deadline - performance.now();
        if (left <= 0) break;
        this.#waits++;
        await waitWord(this.i32, I_HEAD, w, left === Infinity ? Infinity : Math.ceil(left));
        if (this.#cancelled) return false;
      }
    } finally {
      if (--this.#parked === 0) Atomics.store(this.i32, I_R_WAIT, 0);
    }
    return this.#refresh() || this.#eos;
  }

  /** Load HEAD; true if there are unread records. */
  #refresh(): boolean {
    const w = Atomics.load(this.i32, I_HEAD);
    this.#head = w & POS_MASK;
    if ((w & FLAG) !== 0) this.#eos = true;
    return this.#head !== this.#tail;
  }

  #release(): void {
    const tail = this.#tail;
    Atomics.store(this.i32, I_TAIL, tail);
    if (Atomics.load(this.i32, I_W_WAIT) !== 0 && ((tail - Atomics.load(this.i32, I_W_WANT)) | 0) >= 0) {
      Atomics.notify(this.i32, I_TAIL);
    }
  }

  #copyWrapped(p: number, len: number, into: Uint8Array): Uint8Array {
    const first = this.capacity - p;
    into.set(this.data.subarray(p, this.capacity), 0);
    into.set(this.data.subarray(0, len - first), first);
    return into.length === len ? into : into.subarray(0, len);
  }

  #append(p: number, len: number): void {
    const need = this.#asmLen + len;
    if (need > this.#asm.length) {
      const grown = new Uint8Array(Math.max(need, this.#asm.length * 2, 1024));
      grown.set(this.#asm.subarray(0, this.#asmLen));
      this.#asm = grown;
    }
    if (p + len <= this.capacity) this.#asm.set(this.data.subarray(p, p + len), this.#asmLen);
    else this.#copyWrapped(p, len, this.#asm.subarray(this.#asmLen, need));
    this.#asmLen = need;
  }
}
