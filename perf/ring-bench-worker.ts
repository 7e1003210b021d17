// Worker side of perf/ring.bench.ts: one producer or consumer per worker.
// Producers wait for 'go' from the parent; consumers report { frames, bytes } when done.
import { parentPort, workerData, type MessagePort } from 'node:worker_threads';
import { RingReader, RingWriter } from '../src/transport/ring.js';

export type BenchJob =
  | { role: 'ring-produce'; sab: SharedArrayBuffer; size: number; count: number; batch: number; pack: boolean }
  | { role: 'ring-consume'; sab: SharedArrayBuffer; copy: boolean; unpack: number }
  | { role: 'pm-produce'; port: MessagePort; size: number; count: number; batch: number; kind: PmKind }
  | { role: 'pm-consume'; port: MessagePort; size: number };

/**
 * clone: each message a structured-clone copy (one frame, or an array of `batch` frames);
 * packed: `batch` frames concatenated in one buffer, cloned;
 * transfer: a fresh ArrayBuffer per frame, transferred.
 */
export type PmKind = 'clone' | 'packed' | 'transfer';
export interface BenchDone { frames: number; bytes: number; sink: number; parked?: number }
export interface BenchProduced { blocked?: number; notifies?: number }

const job = workerData as BenchJob;
const port = parentPort!;

/** A stand-in for serialization: stamp the sequence number into the frame. */
function stamp(frame: Uint8Array, seq: number): void {
  frame[0] = seq & 255;
  frame[1] = (seq >>> 8) & 255;
}

function ringProduce(j: Extract<BenchJob, { role: 'ring-produce' }>): BenchProduced {
  const w = new RingWriter(j.sab);
  if (j.batch <= 1) {
    const frame = new Uint8Array(j.size).fill(1);
    for (let i = 0; i < j.count; i++) {
      stamp(frame, i);
      w.write(frame);
    }
  } else {
    const frames = Array.from({ length: j.batch }, () => new Uint8Array(j.size).fill(1));
    const packed = new Uint8Array(j.pack ? j.size * j.batch : 0);
    for (let i = 0; i < j.count; i += j.batch) {
      for (let k = 0; k < frames.length; k++) stamp(frames[k]!, i + k);
      if (!j.pack) {
        w.writeMany(frames);
        continue;
      }
      for (let k = 0; k < frames.length; k++) packed.set(frames[k]!, k * j.size);
      w.write(packed);
    }
  }
  w.close();
  return { blocked: w.blockedCount, notifies: w.notifyCount };
}

async function ringConsume(j: Extract<BenchJob, { role: 'ring-consume' }>): Promise<BenchDone> {
  const r = new RingReader(j.sab);
  let frames = 0;
  let sink = 0;
  const touch = (v: Uint8Array) => {
    sink = (sink + v[0]! + v[v.length - 1]!) | 0;
    frames++;
  };
  const size = j.unpack;
  const each = size === 0 ? touch : (v: Uint8Array) => {
    for (let off = 0; off < v.length; off += size) touch(v.subarray(off, off + size));
  };
  for (;;) {
    let n: number;
    if (j.copy) {
      const f = r.read();
      n = f === null ? 0 : 1;
      if (f !== null) each(f);
    } else {
      n = r.drain(each);
    }
    if (n === 0) {
      if (r.closed) break;
      await r.waitReadable();
    }
  }
  return { frames, bytes: r.bytesRead, sink, parked: r.waitCount };
}

function pmProduce(j: Extract<BenchJob, { role: 'pm-produce' }>): void {
  const p = j.port;
  if (j.kind === 'transfer') {
    const page = new Uint8Array(j.size).fill(1);
    for (let i = 0; i < j.count; i++) {
      const buf = new Uint8Array(j.size); // as if serialized into a fresh buffer
      buf.set(page);
      stamp(buf, i);
      p.postMessage(buf.buffer, [buf.buffer]);
    }
  } else if (j.kind === 'packed') {
    // Fair to the ring: copy each frame into the batch buffer, as writeMany() does.
    const frames = Array.from({ length: j.batch }, () => new Uint8Array(j.size).fill(1));
    const packed = new Uint8Array(j.size * j.batch);
    for (let i = 0; i < j.count; i += j.batch) {
      for (let k = 0; k < frames.length; k++) {
        stamp(frames[k]!, i + k);
        packed.set(frames[k]!, k * j.size);
      }
      p.postMessage(packed);
    }
  } else if (j.batch <= 1) {
    const frame = new Uint8Array(j.size).fill(1);
    for (let i = 0; i < j.count; i++) {
      stamp(frame, i);
      p.postMessage(frame);
    }
  } else {
    const frames = Array.from({ length: j.batch }, () => new Uint8Array(j.size).fill(1));
    for (let i = 0; i < j.count; i += j.batch) {
      for (let k = 0; k < frames.length; k++) stamp(frames[k]!, i + k);
      p.postMessage(frames);
    }
  }
  p.postMessage('end');
}

function pmConsume(j: Extract<BenchJob, { role: 'pm-consume' }>): Promise<BenchDone> {
  return new Promise((resolve) => {
    let frames = 0;
    let bytes = 0;
    let sink = 0;
    const touch = (v: Uint8Array) => {
      sink = (sink + v[0]! + v[v.length - 1]!) | 0;
      bytes += v.length;
    };
    j.port.on('message', (m: unknown) => {
      if (m === 'end') {
        j.port.close();
        resolve({ frames, bytes, sink });
      } else if (Array.isArray(m)) {
        for (const f of m as Uint8Array[]) touch(f);
        frames += m.length;
      } else if (m instanceof ArrayBuffer) {
        touch(new Uint8Array(m));
        frames++;
      } else {
        // A packed batch: visit each frame through its own view, as drain() hands them out.
        const v = m as Uint8Array;
        for (let off = 0; off < v.length; off += j.size) touch(v.subarray(off, off + j.size));
        frames += v.length / j.size;
      }
    });
  });
}

if (job.role === 'ring-produce' || job.role === 'pm-produce') {
  port.once('message', () => {
    let stats: BenchProduced = {};
    if (job.role === 'ring-produce') stats = ringProduce(job);
    else pmProduce(job);
    port.postMessage(stats);
  });
  port.postMessage('ready');
} else {
  const done = job.role === 'ring-consume' ? ringConsume(job) : pmConsume(job);
  port.postMessage('ready');
  done.then((d) => port.postMessage(d));
}
