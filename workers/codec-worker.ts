// One thread of the page-codec pool (piscina; the I/O worker owns the pool, see
// workers/io-codec-pool.ts).
//
// A task is a run of a flush's pages as the owning thread serialized them (BODY
// frames, each with a buffer of its own, transferred here without a copy). Each page
// is compressed and wrapped in its envelope (header + CRC-32C, page-format.ts) exactly
// as the owning thread would have done inline; the envelopes come back back-to-back in
// one transferred buffer, in task order. This is pure bytes-to-bytes work, so a
// checkpoint with zstd spreads over every pool thread while the owners only serialize.
import { move } from 'piscina';
import { loadCodec, type CompressionSpec, type PageCodec } from '../src/state/codecs.js';
import { PAGE_HEADER_BYTES, encodePageInto } from '../src/state/page-format.js';

export interface CodecTask {
  spec: CompressionSpec;
  /** BODY frames: the page body starts at `bodyOffset` of each. */
  frames: Uint8Array[];
  bodyOffset: number;
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
  let bound = 0;
  for (const f of task.frames) bound += PAGE_HEADER_BYTES + f.length - task.bodyOffset;
  // An envelope is never larger than header + raw body (a page that does not shrink is
  // stored raw), so one buffer of the bound takes them all.
  const out = new Uint8Array(new ArrayBuffer(bound));
  let used = 0;
  for (const f of task.frames) {
    const env = encodePageInto(f.subarray(task.bodyOffset), codec, (n) => out.subarray(used, used + n));
    used += env.length;
  }
  return move(out.subarray(0, used)) as Uint8Array;
}
