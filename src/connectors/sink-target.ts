// What a file sink's path is, decided before anything touches it. Only a regular file
// (or a path where nothing exists yet) gets the exactly-once protocol of file-sink.ts,
// with its sidecar, epoch and pending files beside it and its truncations. Anything
// else must never be renamed over, truncated or deleted:
//
//   path                                     target        what the sink does
//   regular file, symlink to one, missing    'file'        exactly once (file-sink.ts)
//   /dev/stdout, /dev/stderr, /dev/fd/N,     'descriptor'  writes to this process's fd N
//     /proc/self/fd/N (or a symlink to one)                (whatever it is: tty, pipe,
//                                                           socket, a redirected file)
//   character or block device (/dev/null),   'stream'      opens it write-only, append,
//     FIFO, or a symlink to one                            no create, no truncate
//   directory, socket                        'refuse'      one-line error
//
// Descriptor paths are matched by name, not by what they point to: /dev/stdout of a
// process whose stdout was redirected to a file stats as a regular file, and treating
// it as one would put sidecars in /dev and truncate the redirect target; a socket
// stdout (a child of Node with piped stdio) cannot be open()ed at all.
import { fstatSync, lstatSync, readlinkSync, statSync } from 'node:fs';
import { dirname, resolve } from 'node:path';

export type SinkTarget =
  | { kind: 'file' }
  | { kind: 'descriptor'; fd: number }
  | { kind: 'stream'; what: string }
  | { kind: 'refuse'; why: string };

const MAX_LINKS = 40;

/** The descriptor a path names directly (`/dev/stdout` → 1), or undefined. */
function descriptorName(path: string): number | undefined {
  if (path === '/dev/stdout') return 1;
  if (path === '/dev/stderr') return 2;
  const m = /^\/(?:dev\/fd|proc\/(?:self|thread-self|(\d+))\/fd)\/(\d+)$/.exec(path);
  if (!m || (m[1] !== undefined && Number(m[1]) !== process.pid)) return undefined;
  return Number(m[2]);
}

/** Follows the last component's symlinks looking for a descriptor path. */
function descriptorOf(path: string): number | undefined {
  let p = path;
  for (let hops = 0; hops <= MAX_LINKS; hops++) {
    const fd = descriptorName(p);
    if (fd !== undefined) return fd;
    try {
      if (!lstatSync(p).isSymbolicLink()) return undefined;
      p = resolve(dirname(p), readlinkSync(p));
    } catch {
      return undefined;
    }
  }
  return undefined;
}

/** Classifies an absolute path (see the table at the top). */
export function sinkTarget(path: string): SinkTarget {
  const fd = descriptorOf(path);
  if (fd !== undefined) {
    try {
      fstatSync(fd);
    } catch {
      return { kind: 'refuse', why: `names descriptor ${fd}, which this process does not have open` };
    }
    return { kind: 'descriptor', fd };
  }
  let st;
  try {
    st = statSync(path); // follows symlinks: a link to /dev/null is a device
  } catch {
    // Missing (or a dangling link): a regular file will be created. Other errors
    // (permissions) surface when the sink checks or opens its directory.
    return { kind: 'file' };
  }
  if (st.isFile()) return { kind: 'file' };
  if (st.isCharacterDevice()) return { kind: 'stream', what: 'character device' };
  if (st.isBlockDevice()) return { kind: 'stream', what: 'block device' };
  if (st.isFIFO()) return { kind: 'stream', what: 'FIFO' };
  if (st.isDirectory()) return { kind: 'refuse', why: 'is a directory, not a file' };
  if (st.isSocket()) return { kind: 'refuse', why: 'is a socket; the file sink writes to files, devices and FIFOs' };
  return { kind: 'refuse', why: 'is neither a file, a device nor a FIFO' };
}
