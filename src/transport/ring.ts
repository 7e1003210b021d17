// Single-producer single-consumer byte ring over a SharedArrayBuffer.
//
// One RingWriter (in one thread) and one RingReader (usually another thread) share
// the SAB returned by createRingBuffer(). The layout, in bytes:
//
//    0  ┌ line 0: MAGIC, CAPACITY ─────────── written once by createRingBuffer
//   64  ├ line 1: HEAD, W_WAIT, W_WANT ────── written by the writer only
//  128  ├ line 2: TAIL, R_WAIT, LIMIT ─────── TAIL, LIMIT by the reader only (R_WAIT: below)
//  192  ├ data: CAPACITY bytes (a power of two, 64 B .. 1 GiB)
//       │      tail                               head
//       │       v                                  v
//       │ [....|len|total|payload..|pad|len|total|payload|pad|......]
//       └────────────────────────────────────────────────────────────
//
// Positions. HEAD and TAIL are byte counters that only grow, wrapping as int32 (they
// start 64 KiB below 2^31, so every ring soon crosses the overflow); a record lives
// at data[pos & (CAPACITY - 1)]. Records start on 8-byte boundaries, so the low three
// bits of a position are 0 and bit 0 of the words serves as a flag: HEAD|1 = the
// writer closed the stream, TAIL|1 = the reader cancelled. Setting a flag changes the
// word, so a peer parked on it wakes.
//
// Invariants (all arithmetic `| 0`, wrap-safe):
//   used = (head - tail) | 0,   0 <= used <= CAPACITY
//   empty <=> head === tail;    full <=> used + size of the next record > CAPACITY
//   [tail, head) belongs to the reader, [head, tail + CAPACITY) to the writer.
//   Only the writer stores HEAD, W_WAIT, W_WANT; only the reader stores TAIL.
//
// Records. An 8-byte header (never split by the end: CAPACITY and positions are
// multiples of 8): Int32 `len` = payload bytes in bits 0..30 plus MORE in bit 31
// ("more chunks of this frame follow"), then Int32 `total` = length of the whole
// frame, so the reader allocates a reassembly buffer once. The payload may straddle
// the end of the buffer (copied in two parts) and is padded to 8 bytes; 8-byte
// alignment lets V8 copy to and from shared memory by words instead of by bytes.
// A frame longer than MAX_CHUNK = CAPACITY/2 - 8 is cut into MAX_CHUNK pieces, so
// every record fits in half the ring: the writer fills one half while the reader
// empties the other.
//
// Memory ordering. Payload and headers are plain stores; publication is the
// Atomics.store of HEAD (writer) or TAIL (reader). Atomics are sequentially consistent:
// a thread that Atomics.load()s a position sees every plain store made before it was
// stored, so the reader never sees a record before its bytes and the writer never
// reuses bytes the reader may still read.
//
// Signalling (Dekker style, no lost wake-ups under SC atomics):
//   reader parks:  R_WAIT = 1; w = load(HEAD); if w still says "empty": wait(HEAD, w)
//   writer:        store(HEAD, h); if exchange(R_WAIT, 0) != 0: notify(HEAD)
//   writer parks:  W_WANT = tail it needs; W_WAIT = 1; w = load(TAIL); if short: wait(TAIL, w)
//   reader:        store(TAIL, t); if load(W_WAIT) != 0 and t >= W_WANT: notify(TAIL)
// Either the parking side sees the new position, or the other side sees the flag, so
// nobody notifies an awake peer: a small frame costs one atomic store and one load.
// R_WAIT is the one word both sides write: the reader arms it, the writer disarms it
// when it rings (one notify per park, not one per frame published before the woken
// reader runs). A blocked writer asks to wake when half the ring is free, not per
// freed record. Both sides poll briefly (SPIN) first: parking costs microseconds.
//
// Limit (buffer debloating). LIMIT ≤ CAPACITY is how many bytes the reader wants queued
// at most; the writer treats the ring as full past it, and as half free at half of it.
// A record that does not fit under LIMIT still goes into an empty ring, so a limit
// below one record slows the writer to a record at a time but never stops it. The
// reader may change LIMIT at any time: a writer parked on an older one wakes a little
// late or early, never not at all (its mark is at most its own head, which a reader
// that reads reaches).

import { errors } from '../errors.js';
import { waitWord } from './doorbell.js';

const MAGIC = 0x52494e47; // 'RING'
// Int32 indexes of the header words (one 64-byte line per writer):
const I_MAGIC = 0, I_CAPACITY = 1, I_HEAD = 16, I_W_WAIT = 17, I_W_WANT = 18, I_TAIL = 32, I_R_WAIT = 33, I_LIMIT = 34;
const HEADER_BYTES = 192;
const REC = 8; // record header bytes
const MIN_CAPACITY = 64, MAX_CAPACITY = 1 << 30;
const MORE = 0x80000000 | 0, LEN_MASK = 0x7fffffff;
const FLAG = 1, POS_MASK = ~7;
const START = 0x7fff0000;
const SPIN = 1024;

const pad8 = (n: number) => (n + 7) & ~7;

/** Allocate a ring with `capacityBytes` of data space (a power of two, 64 B .. 1 GiB). */
export function createRingBuffer(capacityBytes: number): SharedArrayBuffer {
  const pow2 = Number.isInteger(capacityBytes) && (capacityBytes & (capacityBytes - 1)) === 0;
  if (!pow2 || capacityBytes < MIN_CAPACITY || capacityBytes > MAX_CAPACITY) {
    throw errors.badOption('capacityBytes', `must be a power of two from ${MIN_CAPACITY} to ${MAX_CAPACITY}, got ${capacityBytes}`);
  }
  const sab = new SharedArrayBuffer(HEADER_BYTES + capacityBytes);
  const i32 = new Int32Array(sab, 0, HEADER_BYTES >> 2);
  i32[I_CAPACITY] = capacityBytes;
  i32[I_HEAD] = START;
  i32[I_TAIL] = START;
  i32[I_LIMIT] = capacityBytes;
  Atomics.store(i32, I_MAGIC, MAGIC);
  return sab;
}

/** Ring bytes a frame of `length` bytes occupies (headers and padding included). */
export function encodedFrameSize(length: number, capacity: number): number {
  const maxChunk = (capacity >> 1) - REC;
  if (length <= maxChunk) return REC + pad8(length);
  const chunks = Math.ceil(length / maxChunk);
  return chunks * REC + (chunks - 1) * maxChunk + pad8(length - (chunks - 1) * maxChunk);
}

/** Views over one ring SAB, shared by both ends. */
abstract class RingEnd {
  protected readonly i32: Int32Array;
  protected readonly words: Int32Array;
  protected readonly data: Uint8Array;
  readonly capacity: number;
  protected readonly mask: number;
  protected readonly maxChunk: number;

  constructor(sab: SharedArrayBuffer) {
    const bad = () => errors.badOption('sab', 'not a tidepool ring (use createRingBuffer)');
    if (!(sab instanceof SharedArrayBuffer) || sab.byteLength < HEADER_BYTES + MIN_CAPACITY) throw bad();
    this.i32 = new Int32Array(sab, 0, HEADER_BYTES >> 2);
    const cap = this.i32[I_CAPACITY]!;
    if (Atomics.load(this.i32, I_MAGIC) !== MAGIC || sab.byteLength !== HEADER_BYTES + cap) throw bad();
    this.capacity = cap;
    this.mask = cap - 1;
    this.maxChunk = (cap >> 1) - REC;
    this.words = new Int32Array(sab, HEADER_BYTES, cap >> 2);
    this.data = new Uint8Array(sab, HEADER_BYTES, cap);
  }

  /** Bytes in the ring now (written, not yet consumed), headers included. */
  get used(): number {
    return ((Atomics.load(this.i32, I_HEAD) & POS_MASK) - (Atomics.load(this.i32, I_TAIL) & POS_MASK)) | 0;
  }

  /** Bytes the reader wants queued at most (see "Limit" above); the capacity unless set. */
  get limit(): number {
    return Atomics.load(this.i32, I_LIMIT);
  }
}

export class RingWriter extends RingEnd {
  #head: number; // local head; published by #publish()
  #tail: number; // last tail seen: stale only under-reports the free space
  #closed = false;
  #pending = 0; // writeAsync calls not settled yet
  #queue: Promise<void> = Promise.resolve();
  #bytes = 0;
  #frames = 0;
  #blocked = 0;
  #blockedMs = 0;
  #blockedSince = 0;
  #notifies = 0;
  #need = 0; // ring bytes the chunk #putSome stopped at needs
  #reserved = -1; // length of the frame tryReserve() handed out, until commitReserved()
  /**
   * Called when a write has to wait for room, after publishing what it wrote. A reader
   * that parks on something else than this ring (a doorbell shared by several rings)
   * must be woken here: it may be asleep while the chunks of a frame larger than the
   * free space fill the ring, and nothing else rings it until the frame is complete.
   */
  onBlocked?: () => void;

  constructor(sab: SharedArrayBuffer) {
    super(sab);
    this.#head = Atomics.load(this.i32, I_HEAD) & POS_MASK;
    this.#tail = Atomics.load(this.i32, I_TAIL) & POS_MASK;
  }

  /** Payload bytes accepted (headers not counted). */
  get bytesWritten(): number { return this.#bytes; }
  get framesWritten(): number { return this.#frames; }
  /** Times a write found the ring full and had to wait for the reader. */
  get blockedCount(): number { return this.#blocked; }
  /** Milliseconds spent waiting for space. */
  get blockedMs(): number { return this.#blockedMs; }
  /** Times the writer woke a parked reader. */
  get notifyCount(): number { return this.#notifies; }
  get closed(): boolean { return this.#closed; }

  /** Write one frame; blocks the thread (Atomics.wait) while the ring is full. */
  write(frame: Uint8Array): void {
    this.#checkSync();
    this.#putSync(frame);
    this.#publish();
  }

  /** Write several frames, publishing once (and before any wait); blocks like write(). */
  writeMany(frames: readonly Uint8Array[]): void {
    this.#checkSync();
    for (let i = 0; i < frames.length; i++) this.#putSync(frames[i]!);
    this.#publish();
  }

  /**
   * Write one frame if all of it fits now; never waits. False if not, also for a
   * frame that never fits at once (encodedFrameSize > capacity): write() or
   * writeAsync() stream those through in chunks.
   */
  tryWrite(frame: Uint8Array): boolean {
    if (this.#closed) throw errors.ringClosed();
    if (this.#reserved >= 0) throw errors.ringMisuse('a write between tryReserve() and commitReserved()');
    if (this.#pending !== 0) return false;
    const need = encodedFrameSize(frame.length, this.capacity);
    if (need > this.capacity || !this.#hasRoom(need)) return false;
    this.#putSync(frame); // cannot wait: the whole frame fits
    this.#publish();
    return true;
  }

  /**
   * Write one frame, waiting with Atomics.waitAsync while the ring is full so the
   * event loop keeps running. Calls complete in order; don't modify `frame` until
   * the promise resolves.
   */
  writeAsync(frame: Uint8Array): Promise<void> {
    if (this.#closed) return Promise.reject(errors.ringClosed());
    try {
      if (this.tryWrite(frame)) return Promise.resolve();
    } catch (err) {
      return Promise.reject(err);
    }
    this.#pending++;
    const p = this.#queue.then(() => this.#putAsync(frame));
    const settle = () => { this.#pending--; };
    this.#queue = p.then(settle, (err: unknown) => { settle(); throw err; });
    this.#queue.catch(() => {}); // a failure reaches later calls through their own promises
    return p;
  }

  /**
   * Reserve one frame of `length` bytes in place: a view into the ring's own memory to
   * fill, published by commitReserved(). Saves the frame buffer and its copy when the
   * caller can build the frame where it will be read (a page envelope encoded straight
   * into the page ring). Null when the frame cannot go in as one contiguous record now:
   * too little room (await roomFor() first), the payload would straddle the end of the
   * ring, the frame is larger than a chunk, or writeAsync calls are pending. Then write
   * it the ordinary way. Nothing else may be written between reserve and commit.
   */
  tryReserve(length: number): Uint8Array | null {
    if (this.#closed) throw errors.ringClosed();
    if (this.#pending !== 0 || this.#reserved >= 0 || length > this.maxChunk) return null;
    if (!this.#hasRoom(REC + pad8(length))) return null;
    const off = this.#head & this.mask;
    const p = off + REC; // off is 8-aligned, so the header itself never straddles
    if (p + length > this.capacity) return null;
    this.words[off >> 2] = length;
    this.words[(off >> 2) + 1] = length;
    this.#reserved = length;
    return this.data.subarray(p, p + length);
  }

  /**
   * Completes the frame reserved by tryReserve(). With `publish` false the reader does
   * not see it yet: the next publishing write (or publish(), or a wait for room) shows
   * it with those before it, so a run of frames costs one doorbell instead of one each.
   */
  commitReserved(publish = true): void {
    const len = this.#reserved;
    if (len < 0) throw errors.ringMisuse('commitReserved() without a reservation');
    this.#reserved = -1;
    this.#head = (this.#head + REC + pad8(len)) | 0;
    this.#frames++;
    this.#bytes += len;
    if (publish) this.#publish();
  }

  /** Makes every committed frame visible to the reader (see commitReserved). */
  publish(): void {
    this.#publish();
  }

  /** Gives up the reservation tryReserve() handed out (nothing was published). */
  cancelReserved(): void {
    this.#reserved = -1;
  }

  /**
   * Resolves once a frame of `length` bytes (at most half the ring) fits, waiting with
   * Atomics.waitAsync like writeAsync. Only between frames and with no writeAsync pending.
   */
  async roomFor(length: number): Promise<void> {
    if (this.#pending !== 0) throw errors.ringMisuse('roomFor() while writeAsync() calls are pending');
    const need = REC + pad8(Math.min(length, this.maxChunk));
    while (!this.#hasRoom(need)) {
      this.#need = need;
      await this.#waitRoomAsync();
    }
  }

  /**
   * End of stream: the reader sees `closed` once it consumed every frame written
   * before. Later writes throw TIDEPOOL_RING_CLOSED; pending writeAsync calls finish first.
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
    if (this.#reserved >= 0) throw errors.ringMisuse('a write between tryReserve() and commitReserved()');
  }

  #putSync(frame: Uint8Array): void {
    for (let at = 0; (at = this.#putSome(frame, at)) >= 0; ) this.#waitRoomSync();
  }

  async #putAsync(frame: Uint8Array): Promise<void> {
    for (let at = 0; (at = this.#putSome(frame, at)) >= 0; ) await this.#waitRoomAsync();
    this.#publish();
  }

  /**
   * Copy the chunks of `frame` from byte `at` on while they fit. Returns -1 when the
   * frame is complete, else where to resume (and sets #need to the space required).
   */
  #putSome(frame: Uint8Array, at: number): number {
    const len = frame.length;
    do {
      const n = Math.min(this.maxChunk, len - at);
      if (!this.#hasRoom((this.#need = REC + pad8(n)))) return at;
      this.#put(frame, at, n);
      at += n;
    } while (at < len);
    this.#frames++;
    this.#bytes += len;
    return -1;
  }

  #hasRoom(need: number): boolean {
    const limit = Atomics.load(this.i32, I_LIMIT);
    let used = (this.#head - this.#tail) | 0;
    if (limit - used >= need || used === 0) return true;
    const w = Atomics.load(this.i32, I_TAIL);
    if ((w & FLAG) !== 0) throw errors.ringClosed();
    this.#tail = w & POS_MASK;
    used = (this.#head - this.#tail) | 0;
    return limit - used >= need || used === 0;
  }

  /** Copy bytes [start, start + n) of `src` as one record at the local head (unpublished). */
  #put(src: Uint8Array, start: number, n: number): void {
    const off = this.#head & this.mask;
    const total = src.length;
    this.words[off >> 2] = start + n < total ? n | MORE : n;
    this.words[(off >> 2) + 1] = total;
    const p = (off + REC) & this.mask;
    const first = this.capacity - p;
    if (n <= first) {
      this.data.set(start === 0 && n === total ? src : src.subarray(start, start + n), p);
    } else {
      this.data.set(src.subarray(start, start + first), p);
      this.data.set(src.subarray(start + first, start + n), 0);
    }
    this.#head = (this.#head + REC + pad8(n)) | 0;
  }

  #publish(): void {
    Atomics.store(this.i32, I_HEAD, this.#head);
    if (Atomics.load(this.i32, I_R_WAIT) !== 0 && Atomics.exchange(this.i32, I_R_WAIT, 0) !== 0) {
      Atomics.notify(this.i32, I_HEAD);
      this.#notifies++;
    }
  }

  /** Park until half the ring is free (every record needs at most half), after a short spin. */
  #waitRoomSync(): void {
    this.#publish();
    for (let i = 0; i < SPIN; i++) if (this.#hasRoom(this.#need)) return;
    const want = this.#announce();
    try {
      for (let w = Atomics.load(this.i32, I_TAIL); !this.#reached(want, w); w = Atomics.load(this.i32, I_TAIL)) {
        Atomics.wait(this.i32, I_TAIL, w);
      }
    } finally {
      this.#unannounce();
    }
  }

  async #waitRoomAsync(): Promise<void> {
    const want = this.#announce();
    try {
      for (let w = Atomics.load(this.i32, I_TAIL); !this.#reached(want, w); w = Atomics.load(this.i32, I_TAIL)) {
        await waitWord(this.i32, I_TAIL, w);
      }
    } finally {
      this.#unannounce();
    }
  }

  /**
   * Publish, then tell the reader which tail to ring us at: half the ring (or of its
   * limit) free, or all of it when the record waiting is larger than what that leaves.
   */
  #announce(): number {
    this.#publish();
    this.onBlocked?.();
    this.#blocked++;
    this.#blockedSince = performance.now();
    const limit = Atomics.load(this.i32, I_LIMIT);
    const left = Math.max(0, Math.min(limit >> 1, limit - this.#need)); // bytes that may stay queued
    const want = (this.#head - (left & ~7)) | 0;
    Atomics.store(this.i32, I_W_WANT, want);
    Atomics.store(this.i32, I_W_WAIT, 1);
    return want;
  }

  #unannounce(): void {
    Atomics.store(this.i32, I_W_WAIT, 0);
    this.#blockedMs += performance.now() - this.#blockedSince;
  }

  /** True once the tail reached `want`; throws if the reader cancelled. */
  #reached(want: number, w: number): boolean {
    if ((w & FLAG) !== 0) throw errors.ringClosed();
    this.#tail = w & POS_MASK;
    return ((this.#tail - want) | 0) >= 0;
  }
}

export class RingReader extends RingEnd {
  #tail: number; // published tail: the writer may reuse everything before it
  #pos: number; // consumed up to here; views handed out lie in [#tail, #pos)
  #head: number; // last head seen
  #eos = false; // the writer's close flag was seen
  #cancelled = false;
  #asm = new Uint8Array(0); // reassembly of a chunked frame
  #asmLen = 0;
  #asmGiven = false; // #asm went to a read() caller: allocate a new one
  #straddle: Uint8Array | null = null; // scratch for drain() views of records split by the end
  #parked = 0;
  #bytes = 0;
  #frames = 0;
  #waits = 0;

  constructor(sab: SharedArrayBuffer) {
    super(sab);
    this.#tail = this.#pos = this.#head = Atomics.load(this.i32, I_TAIL) & POS_MASK;
  }

  get bytesRead(): number { return this.#bytes; }
  get framesRead(): number { return this.#frames; }

  /**
   * Asks the writer to keep at most `bytes` queued (rounded down to 8, at least 64, at
   * most the capacity). A lower limit takes effect at the writer's next record; the
   * bytes already queued stay.
   */
  setLimit(bytes: number): void {
    const b = Math.max(MIN_CAPACITY, Math.min(this.capacity, Math.floor(bytes) & ~7));
    // No wake-up here: a writer parked under the old limit keeps its mark (at most its
    // own head), and the releases of this reader ring it there, as always.
    Atomics.store(this.i32, I_LIMIT, b);
  }
  /** Times waitReadable() parked on the doorbell. */
  get waitCount(): number { return this.#waits; }

  /** True once the writer closed and every frame written before close() was consumed. */
  get closed(): boolean {
    if (this.#pos === this.#head) this.#refresh();
    return this.#eos && this.#pos === this.#head && this.#asmLen === 0;
  }

  /** The next frame as a copy the caller owns, or null if no complete frame is there. */
  read(): Uint8Array | null {
    if (this.#cancelled) return null;
    const frame = this.#take(true);
    this.#release();
    return frame;
  }

  /**
   * Pass up to `max` complete frames to `fn` as views into the ring (or into scratch
   * memory for frames split by the end or chunked). A view is valid only during its
   * call. The tail is published once per batch seen, not per frame. A frame whose
   * callback throws counts as consumed. Returns the number of frames passed.
   */
  drain(fn: (view: Uint8Array) => void, max = Infinity): number {
    if (this.#cancelled) return 0;
    let n = 0;
    try {
      for (let view; n < max && (view = this.#take(false)) !== null; n++) fn(view);
    } finally {
      this.#release();
    }
    return n;
  }

  /**
   * Resolve true when a record can be read or the writer closed, false once
   * `timeoutMs` passed. Parks with Atomics.waitAsync, so the event loop keeps
   * serving other work; a ref'd timer keeps the thread alive meanwhile.
   */
  waitReadable(timeoutMs = Infinity): Promise<boolean> {
    if (this.#cancelled) return Promise.resolve(false);
    for (let i = 0; i < SPIN; i++) if (this.#pos !== this.#head || this.#refresh() || this.#eos) return Promise.resolve(true);
    if (timeoutMs <= 0) return Promise.resolve(false);
    return this.#park(timeoutMs);
  }

  /** Nobody will read any more: the writer's waits (and later writes into a full ring) throw TIDEPOOL_RING_CLOSED. */
  cancel(): void {
    if (this.#cancelled) return;
    this.#cancelled = true;
    Atomics.store(this.i32, I_TAIL, this.#tail | FLAG);
    Atomics.notify(this.i32, I_TAIL); // the writer
    Atomics.notify(this.i32, I_HEAD); // our own pending waitReadable() calls: they resolve false
  }

  /**
   * Consume records up to the next complete frame: an owned copy (`give`) or a view
   * valid until the next call. Publishes the tail before looking at the head again.
   */
  #take(give: boolean): Uint8Array | null {
    for (;;) {
      if (this.#pos === this.#head) {
        this.#release();
        if (!this.#refresh()) return null;
      }
      const off = this.#pos & this.mask;
      const word = this.words[off >> 2]!;
      const len = word & LEN_MASK;
      const p = (off + REC) & this.mask;
      this.#pos = (this.#pos + REC + pad8(len)) | 0;
      let frame: Uint8Array;
      if (word >= 0 && this.#asmLen === 0) {
        if (p + len <= this.capacity) frame = give ? this.data.slice(p, p + len) : this.data.subarray(p, p + len);
        else frame = this.#unwrap(p, len, give ? new Uint8Array(len) : (this.#straddle ??= new Uint8Array(this.maxChunk)));
      } else {
        this.#append(p, len, this.words[(off >> 2) + 1]!);
        if (word < 0) continue;
        frame = this.#finish(give);
      }
      this.#frames++;
      this.#bytes += frame.length;
      return frame;
    }
  }

  async #park(timeoutMs: number): Promise<boolean> {
    const deadline = performance.now() + timeoutMs;
    this.#parked++;
    try {
      for (;;) {
        Atomics.store(this.i32, I_R_WAIT, 1); // (re-)arm: the writer disarms it when it rings
        const w = Atomics.load(this.i32, I_HEAD);
        if ((w & POS_MASK) !== this.#pos || (w & FLAG) !== 0) break;
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
    return this.#head !== this.#pos;
  }

  /** Publish the tail (everything consumed so far) and wake the writer if it waits for it. */
  #release(): void {
    const tail = this.#pos;
    if (tail === this.#tail || this.#cancelled) return;
    this.#tail = tail;
    Atomics.store(this.i32, I_TAIL, tail);
    // Only the release that first reaches the writer's mark rings it (the exchange): the
    // writer takes a while to wake, and a notify per release meanwhile is a syscall each.
    if (
      Atomics.load(this.i32, I_W_WAIT) !== 0 && ((tail - Atomics.load(this.i32, I_W_WANT)) | 0) >= 0 &&
      Atomics.exchange(this.i32, I_W_WAIT, 0) !== 0
    ) {
      Atomics.notify(this.i32, I_TAIL);
    }
  }

  /** Copy a payload split by the end of the ring into `into`; returns the filled view. */
  #unwrap(p: number, len: number, into: Uint8Array): Uint8Array {
    const first = this.capacity - p;
    into.set(this.data.subarray(p), 0);
    into.set(this.data.subarray(0, len - first), first);
    return into.length === len ? into : into.subarray(0, len);
  }

  #append(p: number, len: number, total: number): void {
    if (this.#asmLen === 0 && (this.#asmGiven || this.#asm.length < total)) {
      this.#asm = new Uint8Array(total);
      this.#asmGiven = false;
    }
    const at = this.#asmLen;
    if (p + len <= this.capacity) this.#asm.set(this.data.subarray(p, p + len), at);
    else this.#unwrap(p, len, this.#asm.subarray(at, at + len));
    this.#asmLen = at + len;
  }

  /** The reassembled frame: owned by the caller (`give`) or a view into scratch. */
  #finish(give: boolean): Uint8Array {
    const len = this.#asmLen;
    this.#asmLen = 0;
    if (!give) return this.#asm.subarray(0, len);
    if (this.#asm.length !== len) return this.#asm.slice(0, len);
    this.#asmGiven = true;
    return this.#asm;
  }
}
