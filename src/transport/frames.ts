// The frames that travel a channel ring between two task instances.
//
//   DATA | u8 1 | u8 flags | 2 pad | u32 n | [n × f64 timestamp if flags&1] | msgpack array of n records |
//   EOI  | u8 2 |                                         end of input from this producer
//   BAR  | u8 3 | 7 pad | f64 checkpoint id |             records before it belong to the checkpoint
//   WM   | u8 5 | u8 idle | 6 pad | f64 watermark |       every later record of this channel has time ≥ it
//                                                        (idle=1: the producer has nothing to say for now)
//
// Frames are in-band, so FIFO order holds: a consumer sees every record of epoch N
// before barrier N, and every record a watermark covers before the watermark.
// Timestamps are event time in epoch ms; a record without one has NaN.
import { Packr } from 'msgpackr';

export const FRAME_DATA = 1;
export const FRAME_EOI = 2;
export const FRAME_BARRIER = 3;
export const FRAME_WATERMARK = 5;

const HEADER = 8;

// msgpackr records mode: a record's keys are written once per frame (a structure
// definition inline, the first time the frame uses that shape), then each record is its
// values. Half the bytes of maps and about twice as fast both ways for the usual batch
// of same-shaped records. No `structures` option is given, so nothing is shared between
// frames: every frame decodes on its own, by any consumer instance, after any restart of
// either side, with frames of several producers interleaved (test/frame-codec.test.ts
// checks exactly that). Shared structures — a table both sides must hold in the same
// state — are what broke an early version under restarts and several producers.
// Frames are decoded from the owned copy `RingReader.read()` makes, never from a view
// into the ring: msgpackr's native string extraction rejects SharedArrayBuffer memory.
const PACK_OPTIONS = { useRecords: true, moreTypes: false, mapsAsObjects: true, useBigInt64: true, int64AsType: 'bigint', useBigIntExtension: true } as ConstructorParameters<typeof Packr>[0];

/** An encoder/decoder pair for DATA frames (one per thread; tests make several). */
export function frameCodec(): { encodeBatch: typeof encodeBatch; decodeBatch: typeof decodeBatch } {
  const packr = new Packr(PACK_OPTIONS);
  const unpackr = new Packr(PACK_OPTIONS);
  return {
    encodeBatch: (records, timestamps) => encodeWith(packr, records, timestamps),
    decodeBatch: (frame, ts) => decodeWith(unpackr, frame, ts),
  };
}
const codec = frameCodec();

export const EOI_FRAME = new Uint8Array([FRAME_EOI]);

export function barrierFrame(id: number): Uint8Array {
  const f = new Uint8Array(16);
  f[0] = FRAME_BARRIER;
  new DataView(f.buffer).setFloat64(8, id, true);
  return f;
}

export function barrierId(frame: Uint8Array): number {
  return new DataView(frame.buffer, frame.byteOffset, frame.byteLength).getFloat64(8, true);
}

export function watermarkFrame(watermark: number, idle = false): Uint8Array {
  const f = new Uint8Array(16);
  f[0] = FRAME_WATERMARK;
  f[1] = idle ? 1 : 0;
  new DataView(f.buffer).setFloat64(8, watermark, true);
  return f;
}

export function watermarkOf(frame: Uint8Array): { watermark: number; idle: boolean } {
  return { watermark: new DataView(frame.buffer, frame.byteOffset, frame.byteLength).getFloat64(8, true), idle: frame[1] === 1 };
}

/** A DATA frame; `timestamps` (one per record) when any record has an event time. */
export function encodeBatch(records: unknown[], timestamps?: number[]): Uint8Array {
  return codec.encodeBatch(records, timestamps);
}

/** The records of a DATA frame, and their timestamps into `ts` (NaN where none). */
export function decodeBatch(frame: Uint8Array, ts?: number[]): unknown[] {
  return codec.decodeBatch(frame, ts);
}

function encodeWith(packr: Packr, records: unknown[], timestamps?: number[]): Uint8Array {
  const body = packr.pack(records);
  const n = records.length;
  const tsBytes = timestamps ? n * 8 : 0;
  const frame = new Uint8Array(HEADER + tsBytes + body.length);
  const dv = new DataView(frame.buffer);
  frame[0] = FRAME_DATA;
  frame[1] = timestamps ? 1 : 0;
  dv.setUint32(4, n, true);
  if (timestamps) for (let i = 0; i < n; i++) dv.setFloat64(HEADER + i * 8, timestamps[i]!, true);
  frame.set(body, HEADER + tsBytes);
  return frame;
}

function decodeWith(unpackr: Packr, frame: Uint8Array, ts?: number[]): unknown[] {
  const dv = new DataView(frame.buffer, frame.byteOffset, frame.byteLength);
  const n = dv.getUint32(4, true);
  const timed = frame[1] === 1;
  if (ts) {
    ts.length = n;
    if (timed) for (let i = 0; i < n; i++) ts[i] = dv.getFloat64(HEADER + i * 8, true);
    else ts.fill(NaN);
  }
  return unpackr.unpack(frame.subarray(HEADER + (timed ? n * 8 : 0))) as unknown[];
}
