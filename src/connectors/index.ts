// The connectors users name in flows: `sources.array/generator/file/nexmark` and
// `sinks.file/stdout`, plus what the runtime needs to manage file sink output.
import { arraySource, generatorSource } from './sources.js';
import { fileSource } from './file-source.js';
import { nexmarkSource } from './nexmark.js';
import { stdoutSink } from './sinks.js';
import { fileSink } from './file-sink.js';

export const sources = {
  /** The items, in order (subtask i of p takes items i, i+p, …). */
  array: arraySource,
  /** Records make(0) … make(count-1); unbounded without `count`. */
  generator: generatorSource,
  /** One record per line of a UTF-8 text file; resumes from a byte offset. */
  file: fileSource,
  /** The Nexmark benchmark's persons, auctions and bids; deterministic for a seed. */
  nexmark: nexmarkSource,
} as const;

export const sinks = {
  /**
   * JSON lines, exactly once: visible when the covering checkpoint completes. A device,
   * FIFO or /dev/stdout is written as a plain stream instead (not exactly once).
   */
  file: fileSink,
  /** Each record as one JSON line on stdout, printed at commit (as it comes without checkpoints). */
  stdout: stdoutSink,
} as const;

export { resetFileSink, fileSinkPath, fileSinkPaths } from './file-sink.js';
export { jsonLine, bigintReplacer } from './json-lines.js';
export type { ArraySourceSpec, GeneratorOptions, GeneratorSourceSpec } from './sources.js';
export type { FileSourceOptions, FileSourceSpec } from './file-source.js';
export type { NexmarkOptions, NexmarkSourceSpec } from './nexmark.js';
export type { NexmarkEvent, NexmarkPerson, NexmarkAuction, NexmarkBid } from './nexmark-events.js';
export type { StdoutSinkSpec } from './sinks.js';
export type { FileSinkOptions, FileSinkSpec } from './file-sink.js';
