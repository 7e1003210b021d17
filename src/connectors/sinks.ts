// Built-in sink `sinks.stdout()`. `sinks.file` lives in file-sink.ts; the `sinks` object
// is assembled in index.ts.
import { errors, preview } from '../errors.js';
import type { InstanceContext, SinkSpec } from '../flow/types.js';
import { StreamSinkWriter, type StreamOutput } from './stream-sink.js';

export { bigintReplacer, jsonLine, jsonPieces } from './json-lines.js';

export interface StdoutSinkSpec extends SinkSpec<unknown> {
  readonly type: 'stdout';
}

/** process.stdout (in a worker, the stream the main thread prints). */
const stdoutOutput: StreamOutput = {
  name: 'stdout',
  write: (chunk) =>
    new Promise((resolve, reject) => {
      process.stdout.write(chunk, (err) => (err ? reject(errors.io('writing to stdout', err)) : resolve()));
    }),
  close: async () => {},
};

/**
 * Each record as one JSON line on stdout: printed when its checkpoint completes, or as
 * it is written when the run takes no checkpoints (temp or memory state). See
 * stream-sink.ts for what a crash does to those lines.
 */
export function stdoutSink(options?: Record<string, never>): StdoutSinkSpec {
  if (options !== undefined && (typeof options !== 'object' || options === null || Object.keys(options).length > 0)) {
    throw errors.badOption('stdout', `sinks.stdout() takes no options, got ${preview(options)}`);
  }
  return {
    kind: 'sink',
    type: 'stdout',
    maxParallelism: 1,
    open: (ctx: InstanceContext) => new StreamSinkWriter(stdoutOutput, ctx.checkpointing === false),
  };
}
