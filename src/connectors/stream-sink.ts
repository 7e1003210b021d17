// Sinks that write to a stream which cannot take anything back: `sinks.stdout()`, and
// `sinks.file({ path })` when the path is a device, a FIFO or a descriptor path
// (sink-target.ts). JSON lines, in order.
//
// With checkpoints (ctx.checkpointing !== false):
//   write(records)  encodes the lines and holds them in memory under the current epoch
//   prepare(N)      sets the held lines aside as epoch N
//   commit(N)       writes every set-aside epoch ≤ N, in epoch order
// Without checkpoints (temp or memory state, ctx.checkpointing === false) there is
// nothing to wait for: write(records) writes the lines at once (its promise resolves
// when they are written: backpressure), and prepare/commit only wait for that.
//
// Not exactly once. A stream has no length to cut back to and no sidecar beside it, so
// a crash or an in-process restart can cut an epoch's lines short, repeat them (a
// restart re-publishes what it replays), or lose the epochs that were prepared but not
// yet written. Without checkpoints, a restart writes everything again from the start.
import { write as fsWrite, constants as fsConstants } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import { SerialOps } from './serial-ops.js';
import { errors } from '../errors.js';
import type { SinkWriter } from '../flow/types.js';
import { jsonPieces } from './json-lines.js';

/** Where a stream writer's bytes go. */
export interface StreamOutput {
  /** Shown in errors: 'stdout', '/dev/null', … */
  readonly name: string;
  write(chunk: string): Promise<void>;
  close(): Promise<void>;
}

export class StreamSinkWriter implements SinkWriter<unknown> {
  /** Encoded lines of the epoch being written (checkpointing only). */
  private current: string[] = [];
  private readonly prepared = new Map<number, string[]>();
  private ops?: SerialOps;
  private closed = false;

  constructor(
    private readonly out: StreamOutput,
    /** Write at once instead of at commit (no checkpoints). */
    private readonly progressive: boolean,
  ) {}

  write(records: unknown[]): void | Promise<void> {
    this.usable();
    const pieces = jsonPieces(records);
    if (pieces.length === 0) return;
    if (!this.progressive) {
      for (const p of pieces) this.current.push(p);
      return;
    }
    return this.enqueue(async () => {
      for (const p of pieces) await this.out.write(p);
    });
  }

  prepare(epoch: number): Promise<void> {
    this.usable();
    if (!this.progressive) {
      const held = this.prepared.get(epoch);
      if (held) for (const p of this.current) held.push(p);
      else if (this.current.length > 0) this.prepared.set(epoch, this.current);
      this.current = [];
    }
    return this.enqueue(async () => {});
  }

  commit(epoch: number): Promise<void> {
    this.usable();
    const due = [...this.prepared.keys()].filter((e) => e <= epoch).sort((a, b) => a - b);
    const pieces: string[] = [];
    for (const e of due) {
      pieces.push(...this.prepared.get(e)!);
      this.prepared.delete(e);
    }
    return this.enqueue(async () => {
      for (const p of pieces) await this.out.write(p);
    });
  }

  abort(): void {
    this.current = [];
  }

  close(): Promise<void> {
    if (this.closed) return this.ops?.idle ?? Promise.resolve();
    this.closed = true;
    // Epochs not committed are dropped: there is nowhere durable to keep them.
    this.current = [];
    this.prepared.clear();
    return this.enqueue(() => this.out.close(), true);
  }

  private usable(): void {
    if (this.closed) throw errors.io(`sink ${this.out.name} is closed`);
  }

  /** Runs `op` after every earlier operation; a failure fails every later one. */
  private enqueue(op: () => Promise<void>, evenAfterFailure = false): Promise<void> {
    return (this.ops ??= new SerialOps(`writing to ${this.out.name}`)).run(op, evenAfterFailure);
  }
}

/**
 * A device or FIFO, opened write-only and append at the first write: never created,
 * never truncated. Opening a FIFO waits for a reader, so a sink that has nothing to
 * write never waits.
 */
export function pathOutput(path: string): StreamOutput {
  let fh: Promise<FileHandle> | null = null;
  return {
    name: path,
    async write(chunk) {
      fh ??= open(path, fsConstants.O_WRONLY | fsConstants.O_APPEND);
      const h = await fh;
      const buf = Buffer.from(chunk, 'utf8');
      for (let at = 0; at < buf.length; ) at += (await h.write(buf, at, buf.length - at)).bytesWritten;
    },
    async close() {
      const h = fh;
      fh = null;
      if (h) await (await h).close();
    },
  };
}

/** This process's descriptor `fd` (stdout, stderr, …), written in place and never closed. */
export function descriptorOutput(fd: number, name: string): StreamOutput {
  return {
    name,
    async write(chunk) {
      const buf = Buffer.from(chunk, 'utf8');
      for (let at = 0; at < buf.length; ) at += await writeSome(fd, buf, at);
    },
    async close() {},
  };
}

/** One write(2) to `fd`; a non-blocking descriptor that is full is retried shortly. */
function writeSome(fd: number, buf: Buffer, at: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const attempt = () =>
      fsWrite(fd, buf, at, buf.length - at, null, (err, n) => {
        if (err?.code === 'EAGAIN') setTimeout(attempt, 2);
        else if (err) reject(err);
        else resolve(n);
      });
    attempt();
  });
}
