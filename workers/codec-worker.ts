// One thread of the page-codec pool (piscina; the I/O worker owns the pool, see
// workers/io-codec-pool.ts).
//
// A task is one buffer holding a run of a flush's BODY frames, copied there from the
// page ring by the I/O worker and transferred here without a copy. Each frame is
// `FRAME_HEADER + 8` bytes of frame header and page id, then the page body as the
// owning thread serialized it; that prefix is exactly PAGE_HEADER_BYTES long, so each
// page's envelope (header + payload + CRC-32C, page-format.ts) is written in place over
// its own frame: an envelope is never longer than header + raw body (a page that does
// not shrink is stored raw). The buffer goes back transferred as well, and the I/O
// worker reads each envelope at its frame's offset. This is pure bytes-to-bytes work,
// so a checkpoint with zstd spreads over every pool thread while the owners serialize.
import { move } from 'piscina';
import { loadCodec, type CompressionSpec, type PageCodec } from '../src/state/codecs.js';
import { PAGE_HEADER_BYTES, encodePageInto } from '../src/state/page-format.js';

export interface CodecTask {
  spec: CompressionSpec;
  buf: Uint8Array;
  /** [offset, length] of each BODY frame in `buf`, flattened. */
  frames: number[];
}

const codecs = new Map<string, Promise<PageCodec>>();

function codecFor(spec: CompressionSpec): Promise<PageCodec> {
  const key = JSON.stringify(spec);
  let c = codecs.get(key);
  if (c === undefined) {
    // `older` false: this thread only compresses, with the configured codec.
    c = loadCodec(spec, false);
    c.catch(() => codecs.delete(key)); // a failed load is retried by the next task
    codecs.set(key, c);
  }
  return c;
}

export default async function encodePages(task: CodecTask): Promise<Uint8Array> {
  const codec = await codecFor(task.spec);
  const { buf, frames } = task;
  for (let i = 0; i < frames.length; i += 2) {
    const at = frames[i]!, len = frames[i + 1]!;
    encodePageInto(buf.subarray(at + PAGE_HEADER_BYTES, at + len), codec, (n) => buf.subarray(at, at + n));
  }
  return move(buf) as Uint8Array;
}
