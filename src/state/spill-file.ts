// Tier 2: dirty pages evicted from the cache between flushes.
//
// A spill file is a scratch area owned by exactly one page space (one thread). Space
// is handed out in 4 KiB blocks; a page takes ceil(len / 4096) contiguous blocks.
// Freed extents go to a free list keyed by their block count and are reused first
// (exact size, then any larger extent, split). When nothing is live any more — after a
// flush made every spilled page durable — the file is truncated to zero, so it never
// outgrows one flush interval's worth of evicted dirty pages.
//
// The bytes written are complete page envelopes (page-format.ts) with their CRC, so a
// damaged spill file is detected on read like a damaged persistent page.
import { closeSync, ftruncateSync, openSync, readSync, writeSync, rmSync } from 'node:fs';
import { errors } from '../errors.js';

export const SPILL_BLOCK = 4096;

export interface SpillSlot {
  readonly offset: number; // in blocks
  readonly blocks: number;
  readonly length: number; // bytes of the page
}

export interface SpillStore {
  write(page: Uint8Array): SpillSlot;
  read(slot: SpillSlot): Buffer;
  /** Reads the page into `dest` (slot.length bytes); returns the bytes read (short only for a damaged file). */
  readInto(slot: SpillSlot, dest: Uint8Array): number;
  free(slot: SpillSlot): void;
  /** Bytes in live slots. */
  readonly liveBytes: number;
  /** Truncates the backing file when nothing is live; returns whether it did. */
  compact(): boolean;
  close(): void;
}

/** Spill store backed by a file (lmdb and temp storage). */
export class SpillFile implements SpillStore {
  private fd: number;
  private endBlock = 0;
  private readonly freeBySize = new Map<number, number[]>();
  private live = 0;
  liveBytes = 0;

  constructor(private readonly path: string) {
    // 'w+' truncates: a spill file never carries anything across opens (its pages
    // were either made durable by a flush or belong to a crashed, abandoned epoch).
    this.fd = openSync(path, 'w+');
  }

  private alloc(blocks: number): number {
    const exact = this.freeBySize.get(blocks);
    if (exact && exact.length) return exact.pop()!;
    // Any larger free extent: take its head, return the rest to the free list.
    for (const [size, list] of this.freeBySize) {
      if (size > blocks && list.length) {
        const off = list.pop()!;
        this.pushFree(off + blocks, size - blocks);
        return off;
      }
    }
    const off = this.endBlock;
    this.endBlock += blocks;
    return off;
  }

  private pushFree(offset: number, blocks: number): void {
    let list = this.freeBySize.get(blocks);
    if (!list) this.freeBySize.set(blocks, (list = []));
    list.push(offset);
  }

  write(page: Uint8Array): SpillSlot {
    const blocks = Math.max(1, Math.ceil(page.length / SPILL_BLOCK));
    const offset = this.alloc(blocks);
    let done = 0;
    try {
      while (done < page.length) {
        done += writeSync(this.fd, page, done, page.length - done, offset * SPILL_BLOCK + done);
      }
    } catch (e) {
      // The extent is free again (what was written into it is never read); the page
      // stays where the caller has it.
      if (offset + blocks === this.endBlock) this.endBlock = offset;
      else this.pushFree(offset, blocks);
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'ENOSPC' || code === 'EDQUOT') throw errors.diskFull('the spill file could not take an evicted page', this.path);
      throw errors.io(`cannot write the spill file ${this.path}`, e);
    }
    this.live++;
    this.liveBytes += page.length;
    return { offset, blocks, length: page.length };
  }

  read(slot: SpillSlot): Buffer {
    const buf = Buffer.allocUnsafe(slot.length);
    const done = this.readInto(slot, buf);
    return done === slot.length ? buf : buf.subarray(0, done);
  }

  readInto(slot: SpillSlot, dest: Uint8Array): number {
    let done = 0;
    while (done < slot.length) {
      const n = readSync(this.fd, dest, done, slot.length - done, slot.offset * SPILL_BLOCK + done);
      if (n === 0) break; // short file: the page envelope check reports it as truncated
      done += n;
    }
    return done;
  }

  free(slot: SpillSlot): void {
    this.pushFree(slot.offset, slot.blocks);
    this.live--;
    this.liveBytes -= slot.length;
  }

  compact(): boolean {
    if (this.live !== 0 || this.endBlock === 0) return false;
    ftruncateSync(this.fd, 0);
    this.endBlock = 0;
    this.freeBySize.clear();
    return true;
  }

  /** Size of the file in bytes (for metrics and tests). */
  get fileBytes(): number {
    return this.endBlock * SPILL_BLOCK;
  }

  close(): void {
    if (this.fd < 0) return;
    closeSync(this.fd);
    this.fd = -1;
    rmSync(this.path, { force: true });
  }
}

/** Spill store for `memory` storage: encoded pages kept in a Map, no files. */
export class MemorySpill implements SpillStore {
  private next = 0;
  private readonly pages = new Map<number, Buffer>();
  liveBytes = 0;
  write(page: Uint8Array): SpillSlot {
    const offset = this.next++;
    this.pages.set(offset, Buffer.from(page));
    this.liveBytes += page.length;
    return { offset, blocks: 1, length: page.length };
  }
  read(slot: SpillSlot): Buffer {
    return this.pages.get(slot.offset) ?? Buffer.alloc(0);
  }
  readInto(slot: SpillSlot, dest: Uint8Array): number {
    const page = this.read(slot);
    dest.set(page.subarray(0, dest.length));
    return Math.min(page.length, dest.length);
  }
  free(slot: SpillSlot): void {
    if (this.pages.delete(slot.offset)) this.liveBytes -= slot.length;
  }
  compact(): boolean {
    return false;
  }
  close(): void {
    this.pages.clear();
  }
}
