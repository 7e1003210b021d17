// Built-in sink `sinks.stdout()` and the JSON-lines encoding every sink shares.
// `sinks.file` lives in file-sink.ts; the `sinks` object is assembled in index.ts.
import { errors, preview } from '../errors.js';
import type { SinkSpec, SinkWriter } from '../flow/types.js';

/** JSON.stringify replacer: bigints become their decimal strings. */
export function bigintReplacer(_key: string, value: unknown): unknown {
  return typeof value === 'bigint' ? value.toString() : value;
}

/** One record as one JSON line (with its '\n'); `undefined` is written as null. */
export function jsonLine(record: unknown): string {
  return `${JSON.stringify(record, bigintReplacer) ?? 'null'}\n`;
}

/** Records as JSON lines, in pieces of about `pieceChars` characters. */
export function jsonPieces(records: readonly unknown[], pieceChars = 1 << 20): string[] {
  const pieces: string[] = [];
  let cur = '';
  for (let i = 0; i < records.length; i++) {
    cur += jsonLine(records[i]);
    if (cur.length >= pieceChars) {
      pieces.push(cur);
      cur = '';
    }
  }
  if (cur) pieces.push(cur);
  return pieces;
}

// ---- stdout ------------------------------------------------------------------------

export interface StdoutSinkSpec extends SinkSpec<unknown> {
  readonly type: 'stdout';
}

/**
 * Buffers the records of the current epoch; `prepare(epoch)` sets them aside under
 * that epoch, `commit(epoch)` prints every prepared epoch up to it, in order. Records
 * are held in memory until their checkpoint completes.
 */
class StdoutWriter implements SinkWriter<unknown> {
  private current: unknown[] = [];
  private readonly prepared = new Map<number, unknown[]>();

  write(records: unknown[]): void {
    for (let i = 0; i < records.length; i++) this.current.push(records[i]);
  }

  prepare(epoch: number): void {
    const held = this.prepared.get(epoch);
    if (held) for (const r of this.current) held.push(r);
    else this.prepared.set(epoch, this.current);
    this.current = [];
  }

  async commit(epoch: number): Promise<void> {
    const due = [...this.prepared.keys()].filter((e) => e <= epoch).sort((a, b) => a - b);
    for (const e of due) {
      const records = this.prepared.get(e)!;
      this.prepared.delete(e);
      for (const piece of jsonPieces(records)) await writeStdout(piece);
    }
  }

  abort(): void {
    this.current = [];
  }

  close(): void {
    this.current = [];
    this.prepared.clear();
  }
}

function writeStdout(chunk: string): Promise<void> {
  return new Promise((resolve, reject) => {
    process.stdout.write(chunk, (err) => (err ? reject(errors.io('writing to stdout', err)) : resolve()));
  });
}

/** Each record as one JSON line on stdout, printed when its checkpoint completes. */
export function stdoutSink(options?: Record<string, never>): StdoutSinkSpec {
  if (options !== undefined && (typeof options !== 'object' || options === null || Object.keys(options).length > 0)) {
    throw errors.badOption('stdout', `sinks.stdout() takes no options, got ${preview(options)}`);
  }
  return {
    kind: 'sink',
    type: 'stdout',
    maxParallelism: 1,
    open: () => new StdoutWriter(),
  };
}
