// A small filesystem of its own for disk-full tests: a tmpfs of a few MiB mounted on
// a fresh temp directory (root only), and a filler file that takes every free byte.
//
// tmpfs is what we run on because it behaves like a full local disk for everything
// tidepool writes: LMDB writes its pages with pwrite (no writemap, a read-only map),
// so a full device is ENOSPC or a short write (EIO), never a SIGBUS; the spill file
// is written with pwrite too. (A loop-mounted ext4 image, tried by hand with the same
// scenarios, behaves the same: ENOSPC from pwrite, the same errors and recovery.)
import { execFileSync } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, rmSync, statfsSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface SmallDisk {
  dir: string;
  unmount(): void;
}

/** Mounts a tmpfs of `mib` MiB; throws with the reason if this machine does not let us. */
export function mountSmallDisk(mib: number): SmallDisk {
  const dir = mkdtempSync(join(tmpdir(), 'tidepool-small-disk-'));
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${mib}m`, 'tmpfs', dir], { stdio: ['ignore', 'ignore', 'pipe'] });
  } catch (e) {
    rmSync(dir, { recursive: true, force: true });
    throw new Error(`cannot mount a ${mib} MiB tmpfs (the disk-full tests need root): ${String((e as { stderr?: Buffer }).stderr ?? e).trim()}`);
  }
  return {
    dir,
    unmount() {
      execFileSync('umount', ['-l', dir]);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Free bytes on the filesystem of `path`. */
export function freeBytes(path: string): number {
  const s = statfsSync(path);
  return s.bavail * s.bsize;
}

/** Writes `path` until the device is full (ENOSPC); returns its size. */
export function fillDisk(path: string): number {
  const fd = openSync(path, 'w');
  let size = 0;
  try {
    for (const chunk of [1 << 16, 4096, 512, 1]) {
      const buf = Buffer.alloc(chunk, 0x5a);
      for (;;) {
        try {
          size += writeSync(fd, buf);
        } catch (e) {
          if ((e as NodeJS.ErrnoException).code !== 'ENOSPC') throw e;
          break;
        }
      }
    }
  } finally {
    closeSync(fd);
  }
  return size;
}
