// The objects remote checkpoints are made of.
//
// Under `state.remote.prefix`, one folder per flow (`<prefix><flow>/`, as a --state root
// has one directory per flow), holding:
//   checkpoints/chk-<id>.json              one per checkpoint, written last, conditionally:
//                                          the local manifest, and per state partition the
//                                          flush version and the pack objects holding it
//   state/<stateId>/<v>-<run>-<n>.pack
//                                          page versions and commit records of one state
//                                          partition, many pages per object (a 16 KiB page
//                                          per blob would make uploads request-bound)
//
// A pack is msgpack { format, stateId, pages: [pageId, version, bytes][], commits:
// [version, bytes][] } followed by a CRC-32C of those bytes. Pages and commit records
// are stored exactly as in LMDB (their own envelopes and checksums), so a restore
// writes them back unchanged and the usual page checks apply on first read.
import { crc32c } from '@node-rs/crc32';
import { pack, unpack } from 'msgpackr';
import { errors } from '../../errors.js';
import type { Manifest } from '../../runtime/checkpoints.js';

export interface Pack {
  format: 1;
  stateId: string;
  pages: [pageId: number, version: number, bytes: Uint8Array][];
  commits: [version: number, bytes: Uint8Array][];
}

/** Per state partition: the flush a checkpoint restores and the objects that hold its pages. */
export interface RemoteState {
  version: number;
  /** Pack objects, base first: together they hold the newest version ≤ `version` of every page. */
  objects: string[];
  /** Incremental uploads since the last full one (a full upload resets it). */
  increments: number;
}

export interface RemoteCheckpoint {
  format: 1;
  id: number;
  time: number;
  /** The manifest as written locally, checksum included. */
  manifest: Manifest & { crc?: number };
  states: Record<string, RemoteState>;
  /** Bytes uploaded for this checkpoint (its new packs). */
  bytesUploaded: number;
  crc?: number;
}

export const CHECKPOINTS = 'checkpoints/';
export const STATE = 'state/';
export const checkpointName = (id: number) => `${CHECKPOINTS}chk-${String(id).padStart(10, '0')}.json`;
const CHECKPOINT_NAME = /chk-(\d+)\.json$/;
export const checkpointIdOf = (name: string): number | undefined => {
  const m = CHECKPOINT_NAME.exec(name);
  return m ? Number(m[1]) : undefined;
};

export function encodePack(p: Pack): Buffer {
  const body = pack(p);
  const out = Buffer.allocUnsafe(body.length + 4);
  body.copy(out, 0);
  out.writeUInt32LE(crc32c(body), body.length);
  return out;
}

export function decodePack(bytes: Buffer, where: string): Pack {
  if (bytes.length < 4) throw errors.corruptState('remote pack', where, 'truncated');
  const body = bytes.subarray(0, bytes.length - 4);
  if (crc32c(body) !== bytes.readUInt32LE(bytes.length - 4)) throw errors.corruptState('remote pack', where, 'its checksum does not match');
  const p = unpack(body) as Pack;
  if (p?.format !== 1 || !Array.isArray(p.pages) || !Array.isArray(p.commits)) throw errors.corruptState('remote pack', where, 'unexpected content');
  return p;
}

export function encodeCheckpoint(c: RemoteCheckpoint): Buffer {
  const { crc: _, ...body } = c;
  return Buffer.from(JSON.stringify({ ...body, crc: crc32c(Buffer.from(JSON.stringify(body))) }));
}

export function decodeCheckpoint(bytes: Buffer, where: string): RemoteCheckpoint {
  let c: RemoteCheckpoint;
  try {
    c = JSON.parse(bytes.toString('utf8')) as RemoteCheckpoint;
  } catch (e) {
    throw errors.corruptState('remote checkpoint', where, (e as Error).message);
  }
  const { crc, ...body } = c;
  if (c?.format !== 1 || typeof c.states !== 'object' || crc !== crc32c(Buffer.from(JSON.stringify(body)))) {
    throw errors.corruptState('remote checkpoint', where, 'unexpected content or checksum mismatch');
  }
  return c;
}
