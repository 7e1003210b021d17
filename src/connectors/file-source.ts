// `sources.file({ path })`: one record per line of a text file.
//
// Lines: split at '\n'; a trailing '\r' is dropped (CRLF files), the last line counts
// even without a final '\n', empty lines are records too, an empty file has none, and
// a UTF-8 byte order mark at the start of the file is dropped. Lines are cut from the
// raw bytes and decoded whole, so a multi-byte character split across two chunks
// decodes correctly ('\n' never occurs inside a multi-byte UTF-8 sequence).
//
// Reading: `chunkBytes` (1 MiB by default) at a time through a FileHandle; the file is
// never read whole. A line longer than a chunk grows the buffer until it fits.
//
// Parallelism: the file's size S is taken when a reader opens; subtask i of p owns the
// lines that *start* in the byte range [⌊i·S/p⌋, ⌊(i+1)·S/p⌋). A subtask whose range
// starts in the middle of a line skips to the next line start; the last line it owns
// is read to its end even past its range. So every line goes to exactly one subtask.
//
// Position: the byte offset just after the last line returned (a line start, or the
// end of the file). `seek(offset)` resumes there; an offset that is not a line start
// would be aligned to the next one, exactly like a range start. The input must not
// change between a checkpoint and the run that resumes from it.
import { accessSync, constants as fsConstants, statSync, type Stats } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import { resolve } from 'node:path';
import { errors, preview } from '../errors.js';
import type { InstanceContext, SourceReader, SourceSpec } from '../flow/types.js';
import { checkOptionKeys, checkPosition } from './sources.js';

export interface FileSourceOptions {
  /** The file to read; a relative path resolves against process.cwd() when the source is made. */
  path: string;
  /** 'utf8' (default), or another ASCII-compatible encoding: 'latin1', 'ascii'. */
  encoding?: 'utf8' | 'utf-8' | 'latin1' | 'ascii';
  /** Bytes per read (default 1 MiB). Small values are for tests. */
  chunkBytes?: number;
}

export interface FileSourceSpec extends SourceSpec<string> {
  readonly type: 'file';
  /** The absolute path read. */
  readonly path: string;
}

const DEFAULT_CHUNK = 1 << 20;
const NL = 0x0a;
const CR = 0x0d;
const ENCODINGS: Record<string, BufferEncoding> = { utf8: 'utf8', 'utf-8': 'utf8', latin1: 'latin1', ascii: 'latin1' };

/** Why a file cannot be read, as one short phrase. */
function reason(err: unknown): string {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  switch (code) {
    case 'ENOENT':
    case 'ENOTDIR':
      return 'no such file';
    case 'EACCES':
    case 'EPERM':
      return 'permission denied';
    case 'EISDIR':
      return 'is a directory, not a file';
    default:
      return `cannot be read (${code ?? (err instanceof Error ? err.message : String(err))})`;
  }
}

function checkStats(shown: string, st: Stats): void {
  if (st.isDirectory()) throw errors.input(shown, 'is a directory, not a file');
  if (!st.isFile()) throw errors.input(shown, 'is not a regular file');
}

/** Start of subtask i's byte range: ⌊i·size/p⌋, exact for any size. */
function rangeStart(i: number, size: number, p: number): number {
  return Number((BigInt(i) * BigInt(size)) / BigInt(p));
}

class FileReader implements SourceReader<string> {
  private buf: Buffer;
  /** File offset of buf[0]; buf holds bufLen valid bytes. */
  private bufOff: number;
  private bufLen = 0;
  /** Next line start (or, until aligned, the offset to align from). */
  private cursor: number;
  /** Bytes before this file offset are known to hold no '\n' after the cursor. */
  private scanned: number;
  private aligned = false;
  private done = false;
  private closed = false;

  constructor(
    private fh: FileHandle,
    private size: number,
    private readonly start: number,
    private readonly end: number,
    private readonly chunk: number,
    private readonly encoding: BufferEncoding,
    private readonly ctx: InstanceContext,
    private readonly shown: string,
  ) {
    this.buf = Buffer.allocUnsafe(Math.min(chunk, Math.max(size, 1)));
    this.cursor = start;
    this.bufOff = start;
    this.scanned = start;
  }

  position(): number {
    return this.cursor;
  }

  seek(position: unknown): void {
    const pos = checkPosition(this.ctx, 'file', position);
    if (pos < this.start || pos > this.size) {
      throw errors.input(
        this.shown,
        pos > this.size
          ? `cannot resume at byte ${pos}: the file has only ${this.size} bytes (did it change since the checkpoint?)`
          : `cannot resume at byte ${pos}: subtask ${this.ctx.subtask} of ${this.ctx.parallelism} reads from byte ${this.start} (was the parallelism changed?)`,
      );
    }
    this.cursor = pos;
    this.bufOff = pos;
    this.bufLen = 0;
    this.scanned = pos;
    this.aligned = false;
    this.done = false;
  }

  async next(max: number): Promise<string[] | null> {
    if (this.done || this.closed) return null;
    if (!this.aligned) await this.align();
    const out: string[] = [];
    const want = Math.max(1, max);
    while (out.length < want) {
      if (this.cursor >= this.end || this.cursor >= this.size) {
        this.done = true;
        break;
      }
      const nl = this.findNewline(Math.max(this.cursor, this.scanned) - this.bufOff);
      if (nl >= 0) {
        out.push(this.decode(this.cursor - this.bufOff, nl));
        this.cursor = this.bufOff + nl + 1;
        this.scanned = this.cursor;
        continue;
      }
      this.scanned = this.bufOff + this.bufLen;
      if (!(await this.readMore(this.cursor))) {
        // End of file: the last line has no '\n'.
        const from = this.cursor - this.bufOff;
        if (from < this.bufLen) out.push(this.decode(from, this.bufLen));
        this.cursor = this.bufOff + this.bufLen;
        this.done = true;
        break;
      }
    }
    return out.length === 0 && this.done ? null : out;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.fh.close();
  }

  /** Moves the cursor to the first line start at or after it. */
  private async align(): Promise<void> {
    this.aligned = true;
    if (this.cursor === 0 || this.cursor >= this.size) return;
    // The cursor is a line start iff the byte before it is '\n'.
    this.bufOff = this.cursor - 1;
    this.bufLen = 0;
    if (!(await this.readMore(this.bufOff))) {
      this.cursor = this.size;
      return;
    }
    if (this.buf[0] === NL) {
      this.scanned = this.cursor;
      return;
    }
    let from = 1;
    for (;;) {
      const nl = this.findNewline(from);
      if (nl >= 0) {
        this.cursor = this.bufOff + nl + 1;
        this.scanned = this.cursor;
        return;
      }
      // Nothing here is needed: drop it all and read on.
      const eof = !(await this.readMore(this.bufOff + this.bufLen));
      if (eof) {
        this.cursor = this.size;
        return;
      }
      from = 0;
    }
  }

  /** Index in buf of the first '\n' at or after `from`, or -1. */
  private findNewline(from: number): number {
    if (from >= this.bufLen) return -1;
    const i = this.buf.indexOf(NL, from);
    return i >= 0 && i < this.bufLen ? i : -1;
  }

  private decode(from: number, to: number): string {
    if (to > from && this.buf[to - 1] === CR) to--;
    if (
      this.bufOff + from === 0 &&
      this.encoding === 'utf8' &&
      to - from >= 3 &&
      this.buf[from] === 0xef &&
      this.buf[from + 1] === 0xbb &&
      this.buf[from + 2] === 0xbf
    ) {
      from += 3;
    }
    return this.buf.toString(this.encoding, from, to);
  }

  /**
   * Keeps the buffered bytes from file offset `keepFrom` on and appends the next chunk.
   * Returns false at the end of the file (as it was when the reader opened).
   */
  private async readMore(keepFrom: number): Promise<boolean> {
    const readAt = this.bufOff + this.bufLen;
    if (readAt >= this.size) return false;
    const drop = Math.min(keepFrom - this.bufOff, this.bufLen);
    if (drop > 0) {
      this.buf.copy(this.buf, 0, drop, this.bufLen);
      this.bufLen -= drop;
      this.bufOff += drop;
    }
    const want = Math.min(this.chunk, this.size - readAt);
    if (this.buf.length - this.bufLen < want) {
      const bigger = Buffer.allocUnsafe(Math.max(this.buf.length * 2, this.bufLen + want));
      this.buf.copy(bigger, 0, 0, this.bufLen);
      this.buf = bigger;
    }
    let bytesRead: number;
    try {
      ({ bytesRead } = await this.fh.read(this.buf, this.bufLen, want, readAt));
    } catch (err) {
      throw errors.input(this.shown, reason(err));
    }
    if (bytesRead === 0) {
      this.size = readAt; // the file shrank under us: what we have is all there is
      return false;
    }
    this.bufLen += bytesRead;
    return true;
  }
}

/** One record per line of a text file (see the top of this file). */
export function fileSource(options: FileSourceOptions): FileSourceSpec {
  if (typeof options !== 'object' || options === null) {
    throw errors.badOption('options', `sources.file needs { path }, got ${preview(options)}`);
  }
  checkOptionKeys('file', options, ['path', 'encoding', 'chunkBytes']);
  const { path: given, encoding = 'utf8', chunkBytes = DEFAULT_CHUNK } = options;
  if (typeof given !== 'string' || given === '') throw errors.badOption('path', `must be a non-empty string, got ${preview(given)}`);
  const enc = typeof encoding === 'string' ? ENCODINGS[encoding.toLowerCase()] : undefined;
  if (enc === undefined) throw errors.badOption('encoding', `must be 'utf8', 'latin1' or 'ascii', got ${preview(encoding)}`);
  if (typeof chunkBytes !== 'number' || !Number.isSafeInteger(chunkBytes) || chunkBytes < 1) {
    throw errors.badOption('chunkBytes', `must be a positive integer, got ${preview(chunkBytes)}`);
  }
  const path = resolve(given);
  const shown = path === given ? path : `${given} (${path})`;
  return {
    kind: 'source',
    type: 'file',
    bounded: true,
    path,
    validate(): void {
      let st: Stats;
      try {
        st = statSync(path);
      } catch (err) {
        throw errors.input(shown, reason(err));
      }
      checkStats(shown, st);
      try {
        accessSync(path, fsConstants.R_OK);
      } catch (err) {
        throw errors.input(shown, reason(err));
      }
    },
    async open(ctx: InstanceContext): Promise<FileReader> {
      let fh: FileHandle;
      try {
        fh = await open(path, 'r');
      } catch (err) {
        throw errors.input(shown, reason(err));
      }
      try {
        const st = await fh.stat();
        checkStats(shown, st);
        const p = Math.max(1, ctx.parallelism);
        const start = rangeStart(ctx.subtask, st.size, p);
        const end = rangeStart(ctx.subtask + 1, st.size, p);
        return new FileReader(fh, st.size, start, end, chunkBytes, enc, ctx, shown);
      } catch (err) {
        await fh.close().catch(() => {});
        throw err;
      }
    },
  };
}
