// Where the I/O worker keeps page bytes between the ring and LMDB.
//
// lmdb-js's asynchronous `put` does not copy a Buffer value: it records the value's
// address and reads it when its write thread runs the transaction. So a page cannot
// be put from a view into the page ring (the owner reuses that memory as soon as the
// frame is consumed); it needs bytes of its own until its put has been written.
//
// Instead of a fresh buffer per page (and, before, a pause for a commit every 16 MiB),
// page frames are copied into one of two fixed slabs, filled in turn. A slab is reused
// only once every put into it has settled, so at most two slabs of page bytes exist at
// any time and the ring keeps draining into one slab while LMDB writes the other.
// One staging area serves every attached state of the worker.

/** One slab: a fixed buffer filled from the front, and the puts still reading it. */
interface Slab {
  readonly buf: Buffer;
  used: number;
  pending: number;
  /** Resolves a wait for `pending` to reach 0. */
  drained?: () => void;
}

export class Staging {
  private readonly slabs: [Slab, Slab];
  private current = 0;
  private swapping: Promise<void> | undefined;

  /**
   * @param slabBytes size of each of the two slabs
   * @param minFree   a slab with less room than this is swapped before the next frame
   *                  (frames larger than the room left are copied into a buffer of their own)
   */
  constructor(readonly slabBytes = 8 << 20, private readonly minFree = 64 << 10) {
    this.slabs = [this.slab(), this.slab()];
  }

  private slab(): Slab {
    // An ArrayBuffer of its own (never Buffer's shared pool): settle() finds a copy's slab by it.
    return { buf: Buffer.from(new ArrayBuffer(this.slabBytes)), used: 0, pending: 0 };
  }

  /**
   * Call before taking a frame: undefined if the current slab has room, else a promise
   * that resolves once the other slab's puts have settled and it is current.
   */
  ready(): Promise<void> | undefined {
    const cur = this.slabs[this.current]!;
    if (this.slabBytes - cur.used >= this.minFree) return undefined;
    // Every state's pump may ask at once: they share one swap (two would flip back).
    return (this.swapping ??= this.swap().finally(() => (this.swapping = undefined)));
  }

  private async swap(): Promise<void> {
    const next = this.slabs[1 - this.current]!;
    while (next.pending !== 0) await new Promise<void>((resolve) => (next.drained = resolve));
    next.used = 0;
    this.current = 1 - this.current;
  }

  /** A copy of `view` that stays valid until settle() is called for it. */
  copy(view: Uint8Array): Buffer {
    const cur = this.slabs[this.current]!;
    const at = cur.used;
    if (view.length > this.slabBytes - at) return Buffer.from(view); // larger than the room left
    cur.buf.set(view, at);
    cur.used = (at + view.length + 7) & ~7;
    cur.pending++;
    return cur.buf.subarray(at, at + view.length);
  }

  /** `copy` is no longer needed once `until` settles (at once without it). */
  settle(copy: Uint8Array, until?: Promise<unknown>): void {
    const slab = this.slabs[0].buf.buffer === copy.buffer ? this.slabs[0] : this.slabs[1].buf.buffer === copy.buffer ? this.slabs[1] : undefined;
    if (slab === undefined) return;
    const done = () => {
      if (--slab.pending === 0 && slab.drained) {
        const wake = slab.drained;
        slab.drained = undefined;
        wake();
      }
    };
    if (until) until.then(done, done);
    else done();
  }

  /** Slab bytes in use (for tests). */
  get usedBytes(): number {
    return this.slabs[0].used + this.slabs[1].used;
  }
}
