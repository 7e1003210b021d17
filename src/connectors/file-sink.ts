// `sinks.file({ path })`: JSON lines, exactly once — a line becomes visible only when
// the checkpoint (epoch) that covers it commits.
//
// File layout. Each sink subtask owns one final file F:
//   parallelism 1        F = path                                   counts.jsonl
//   parallelism p > 1    F = path with `-<i>` before its extension  counts-0.jsonl, counts-1.jsonl, …
//                        (no extension: `out` → `out-0`; `a.tar.gz` → `a.tar-0.gz`)
// Beside F, in the same directory:
//   F                    published output: the lines of committed epochs, nothing else
//   F.committed          sidecar {"epoch":N,"length":L,"history":[…],"crc":C}: the last committed epoch and F's
//                        length right after it (C: CRC-32C of the record without it, so a damaged
//                        digit is an error, never a wrong cut);
//                        length right after it; replaced atomically (F.committed.tmp +
//                        fsync + rename + directory fsync)
//   F.pending-<subtask>  lines of the epoch being written; never visible, deleted on open
//   F.epoch-<N>          lines of epoch N after prepare(N): fsynced and durable, not visible
//
// Protocol:
//   write(records)  appends JSON lines to F.pending-<subtask> (buffered, ~1 MiB writes)
//   prepare(N)      fsyncs the pending file and renames it to F.epoch-N (+ directory fsync);
//                   an epoch with no records leaves no file
//   commit(N)       appends every prepared epoch ≤ N not yet committed, in epoch order, to
//                   F at the recorded length (first truncating whatever a crash in the
//                   middle of an earlier append left past it), fsyncs F, records the
//                   sidecar, then deletes the epoch files. Epochs ≤ the recorded one are
//                   skipped, so a commit repeated after a crash never duplicates a line.
//   abort()         deletes the pending file (records written since the last prepare)
//
// Opening: F is created, or truncated, only when it has no sidecar (nothing was ever
// committed). With a sidecar, F is cut back to the recorded length. Epoch files left by
// an earlier run stay until the first commit(N) of this writer: those ≤ N are committed
// with it (their checkpoint completed), those > N are deleted (their checkpoint never
// completed, so their records will be produced again). A run that starts from scratch
// calls `resetFileSink(path, parallelism)` first, which deletes all of the above.
// Parent directories are created. Values: JSON.stringify, bigints as decimal strings.
//
// All of this is for regular files only. A path that is a device (/dev/null), a FIFO or
// a descriptor path (/dev/stdout) gets a plain stream writer instead (stream-sink.ts):
// lines written at commit, no files beside it, nothing truncated, renamed or deleted,
// and no exactly-once. A directory or socket is refused with one line by validate(),
// reset() and open(). sink-target.ts tells them apart; reset() deletes regular files
// only.
import { accessSync, constants as fsConstants, lstatSync, statSync } from 'node:fs';
import { mkdir, open, readdir, rename, rm, type FileHandle } from 'node:fs/promises';
import { basename, dirname, extname, join, resolve } from 'node:path';
import { SerialOps } from './serial-ops.js';
import { errors, preview } from '../errors.js';
import type { InstanceContext, SinkSpec, SinkWriter } from '../flow/types.js';
import { crc32c } from '@node-rs/crc32';
import { jsonLine } from './json-lines.js';
import { sinkTarget } from './sink-target.js';
import { StreamSinkWriter, descriptorOutput, pathOutput } from './stream-sink.js';

export interface FileSinkOptions {
  /** Output file; a relative path resolves against process.cwd() when the sink is made. */
  path: string;
}

export interface FileSinkSpec extends SinkSpec<unknown> {
  readonly type: 'file';
  /** The absolute output path (parallelism 1); see fileSinkPath for p > 1. */
  readonly path: string;
  /** Deletes every file of this sink at the given parallelism: see resetFileSink. */
  reset(parallelism: number): Promise<void>;
}

const FLUSH_CHARS = 1 << 20;
const COPY_CHUNK = 1 << 20;

/** The final file of `subtask` when the sink runs with `parallelism` instances. */
export function fileSinkPath(path: string, subtask: number, parallelism: number): string {
  const abs = resolve(path);
  if (parallelism <= 1) return abs;
  const dir = dirname(abs);
  const base = basename(abs);
  const ext = extname(base);
  return join(dir, `${base.slice(0, base.length - ext.length)}-${subtask}${ext}`);
}

/** All final files of a sink at `parallelism`. */
export function fileSinkPaths(path: string, parallelism: number): string[] {
  const n = Math.max(1, parallelism);
  return Array.from({ length: n }, (_, i) => fileSinkPath(path, i, n));
}

const sidecarOf = (final: string) => `${final}.committed`;
const epochFileOf = (final: string, epoch: number) => `${final}.epoch-${epoch}`;

/** Epoch numbers of the `F.epoch-N` files in `names`. */
function epochFiles(final: string, names: readonly string[]): number[] {
  const prefix = `${basename(final)}.epoch-`;
  const out: number[] = [];
  for (const name of names) {
    if (!name.startsWith(prefix)) continue;
    const rest = name.slice(prefix.length);
    if (/^\d+$/.test(rest)) out.push(Number(rest));
  }
  return out;
}

/** Names in `names` that are artifacts of final file F (sidecar, temp, epoch, pending). */
function artifactsOf(final: string, names: readonly string[]): string[] {
  const b = basename(final);
  return names.filter(
    (n) => n === `${b}.committed` || n === `${b}.committed.tmp` || n.startsWith(`${b}.epoch-`) || n.startsWith(`${b}.pending-`),
  );
}

async function listDir(dir: string): Promise<string[]> {
  try {
    return await readdir(dir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw errors.io(`listing ${dir}`, err);
  }
}

/** Makes renames and deletions in `dir` durable (a no-op where directories can't be fsynced). */
async function syncDir(dir: string): Promise<void> {
  let fh: FileHandle | undefined;
  try {
    fh = await open(dir, 'r');
    await fh.sync();
  } catch {
    // Windows and some file systems refuse to fsync a directory.
  } finally {
    await fh?.close().catch(() => {});
  }
}

/**
 * Deletes the files of a file sink so a run can start from scratch: for every subtask
 * at `parallelism`, its final file, sidecar, epoch and pending files. Final files of
 * another parallelism's layout (`counts.jsonl` vs `counts-0.jsonl`, …) are deleted too
 * when a sidecar, epoch or pending file beside them shows this sink wrote them.
 */
export async function resetFileSink(path: string, parallelism: number): Promise<void> {
  const abs = resolve(path);
  // A device, FIFO or descriptor path holds nothing of ours (and /dev is no place to
  // look for our files); a directory is refused before anything is deleted.
  const target = sinkTarget(abs);
  if (target.kind === 'refuse') throw errors.input(abs, target.why);
  if (target.kind !== 'file') return;
  checkFinals(abs, parallelism);
  const dir = dirname(abs);
  const names = await listDir(dir);
  if (names.length === 0) return;
  const base = basename(abs);
  const ext = extname(base);
  const stem = base.slice(0, base.length - ext.length);
  const current = new Set(fileSinkPaths(abs, parallelism).map((f) => basename(f)));
  const layout = new RegExp(`^${escapeRegExp(stem)}-\\d+${escapeRegExp(ext)}$`);
  const finals = new Set<string>(current);
  for (const n of names) {
    if (n === base || layout.test(n)) finals.add(n);
    // A final whose own file is gone may still have artifacts.
    const m = /^(.*)\.(?:committed(?:\.tmp)?|epoch-\d+|pending-\d+)$/.exec(n);
    if (m && (m[1] === base || layout.test(m[1]!))) finals.add(m[1]!);
  }
  const doomed: string[] = [];
  for (const f of finals) {
    const artifacts = artifactsOf(join(dir, f), names);
    if (!current.has(f) && artifacts.length === 0) continue; // not provably ours
    doomed.push(f, ...artifacts);
  }
  try {
    // Only regular files: never a device, FIFO, directory, or a symlink (whose target
    // may be any of those, or someone's file).
    for (const n of doomed) if (isRegularFile(join(dir, n))) await rm(join(dir, n), { force: true });
  } catch (err) {
    throw errors.io(`resetting file sink ${abs}`, err);
  }
  await syncDir(dir);
}

/** Whether `path` itself (not a symlink's target) is a regular file. */
function isRegularFile(path: string): boolean {
  try {
    return lstatSync(path).isFile();
  } catch {
    return false;
  }
}

/** Throws the one-line error of the first final file that cannot be a sink's output. */
function checkFinals(path: string, parallelism: number): void {
  for (const final of fileSinkPaths(path, parallelism)) {
    const target = sinkTarget(final);
    if (target.kind === 'refuse') throw errors.input(final, target.why);
  }
}

function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

interface Committed {
  epoch: number;
  length: number;
  /**
   * (epoch, length after it) of recent commits, so a restore of an older retained
   * checkpoint (--from-checkpoint) can cut F back to what that checkpoint had published.
   */
  history?: { epoch: number; length: number }[];
}

const HISTORY = 64;

class FileSinkWriter implements SinkWriter<unknown> {
  private readonly dir: string;
  private readonly pendingPath: string;
  private pending: FileHandle | null = null;
  /** Encoded lines not yet written to the pending file. */
  private buffer: string[] = [];
  private bufferChars = 0;
  /** Prepared epochs whose files exist (this writer's and an earlier run's). */
  private readonly prepared = new Set<number>();
  /** Epoch files found at open; settled by the first commit. */
  private leftovers: Set<number> | null;
  private ops?: SerialOps;
  private closed = false;

  private constructor(
    private readonly final: string,
    private committed: Committed | null,
    leftovers: number[],
    subtask: number,
  ) {
    this.dir = dirname(final);
    this.pendingPath = `${final}.pending-${subtask}`;
    this.leftovers = new Set(leftovers);
    for (const e of leftovers) this.prepared.add(e);
  }

  static async open(final: string, subtask: number): Promise<FileSinkWriter> {
    const dir = dirname(final);
    try {
      await mkdir(dir, { recursive: true });
    } catch (err) {
      throw errors.io(`file sink ${final}: creating ${dir}`, err);
    }
    const names = await listDir(dir);
    const b = basename(final);
    // Pending files never reached prepare: their records will be written again.
    for (const n of names) {
      if (n.startsWith(`${b}.pending-`) || n === `${b}.committed.tmp`) await rm(join(dir, n), { force: true });
    }
    const committed = await readSidecar(final);
    let fh: FileHandle | undefined;
    try {
      if (committed === null) {
        // Nothing was ever committed: a fresh final file.
        fh = await open(final, 'w');
        await fh.sync();
      } else {
        fh = await open(final, 'r+').catch(async (err: NodeJS.ErrnoException) => {
          if (err.code === 'ENOENT' && committed.length === 0) return open(final, 'w');
          throw err;
        });
        await repair(fh, final, committed.length);
      }
    } catch (err) {
      if ((err as { code?: string }).code === 'TIDEPOOL_INPUT') throw err;
      throw errors.io(`file sink ${final}: opening`, err);
    } finally {
      await fh?.close().catch(() => {});
    }
    await syncDir(dir);
    return new FileSinkWriter(final, committed, epochFiles(final, names), subtask);
  }

  write(records: unknown[]): void | Promise<void> {
    this.usable();
    let s = '';
    for (let i = 0; i < records.length; i++) s += jsonLine(records[i]);
    if (s) {
      this.buffer.push(s);
      this.bufferChars += s.length;
    }
    if (this.bufferChars < FLUSH_CHARS) return;
    const chunk = this.take();
    return this.enqueue(() => this.appendPending(chunk));
  }

  prepare(epoch: number): Promise<void> {
    this.usable();
    checkEpoch(epoch);
    const chunk = this.take();
    return this.enqueue(async () => {
      await this.appendPending(chunk);
      const target = epochFileOf(this.final, epoch);
      if (this.leftovers?.delete(epoch)) {
        // An earlier run's attempt at this epoch never completed: this one replaces it.
        this.prepared.delete(epoch);
      }
      if (this.pending === null) {
        // No records in this epoch: no file, and none left from an attempt that failed.
        if (this.prepared.has(epoch)) return; // prepared twice; the first one stands
        await rm(target, { force: true });
        await syncDir(this.dir);
        return;
      }
      const fh = this.pending;
      this.pending = null;
      try {
        await fh.sync();
      } finally {
        await fh.close();
      }
      if (this.prepared.has(epoch)) {
        // prepare(N) twice in one run: keep both parts, in order.
        await appendFile(this.pendingPath, target, await sizeOf(target));
        await rm(this.pendingPath, { force: true });
      } else {
        await rename(this.pendingPath, target);
        this.prepared.add(epoch);
      }
      await syncDir(this.dir);
    });
  }

  commit(epoch: number): Promise<void> {
    this.usable();
    checkEpoch(epoch);
    return this.enqueue(async () => {
      if (this.leftovers !== null && this.committed !== null && this.committed.epoch > epoch) {
        // Restoring an older checkpoint than the last published one: roll F back.
        const history = this.committed.history ?? [];
        // The history is complete from the start unless it was cut at HISTORY entries.
        if (history.length === 0 || (history.length >= HISTORY && history[0]!.epoch > epoch)) {
          throw errors.input(this.final, `cannot go back to checkpoint ${epoch}: the sink's commit history does not reach back that far`);
        }
        const h = [{ epoch: 0, length: 0 }, ...history].filter((x) => x.epoch <= epoch).pop()!;
        const fh = await open(this.final, 'r+');
        try {
          await fh.truncate(h.length);
          await fh.sync();
        } finally {
          await fh.close();
        }
        const record: Committed = { epoch: h.epoch, length: h.length, history: (this.committed.history ?? []).filter((x) => x.epoch <= epoch) };
        await writeSidecar(this.final, record);
        this.committed = record;
      }
      if (this.leftovers !== null) {
        // The first commit tells which earlier epochs completed: those ≤ epoch.
        for (const e of this.leftovers) {
          if (e > epoch) {
            await rm(epochFileOf(this.final, e), { force: true });
            this.prepared.delete(e);
          }
        }
        this.leftovers = null;
      }
      const due = [...this.prepared].filter((e) => e <= epoch).sort((a, b) => a - b);
      if (due.length === 0) return;
      const last = this.committed?.epoch ?? -Infinity;
      const fresh = due.filter((e) => e > last);
      if (fresh.length > 0) {
        const start = this.committed?.length ?? 0;
        let length = start;
        const fh = await open(this.final, 'r+');
        try {
          await repair(fh, this.final, start);
          for (const e of fresh) length += await copyInto(epochFileOf(this.final, e), fh, length);
          await fh.sync();
        } finally {
          await fh.close();
        }
        const lastEpoch = fresh[fresh.length - 1]!;
        const record: Committed = { epoch: lastEpoch, length, history: [...(this.committed?.history ?? []), { epoch: lastEpoch, length }].slice(-HISTORY) };
        await writeSidecar(this.final, record);
        this.committed = record;
      }
      for (const e of due) {
        await rm(epochFileOf(this.final, e), { force: true });
        this.prepared.delete(e);
      }
    });
  }

  abort(): Promise<void> {
    this.take();
    return this.enqueue(() => this.dropPending(), true);
  }

  close(): Promise<void> {
    if (this.closed) return this.ops?.idle ?? Promise.resolve();
    this.closed = true;
    this.take();
    // Unprepared records are dropped; prepared epochs stay for a later commit.
    return this.enqueue(() => this.dropPending(), true);
  }

  // ---- internals -------------------------------------------------------------------

  private usable(): void {
    if (this.closed) throw errors.io(`file sink ${this.final} is closed`);
  }

  private take(): string {
    const s = this.buffer.join('');
    this.buffer = [];
    this.bufferChars = 0;
    return s;
  }

  /** Runs `op` after every earlier operation; a failure fails every later one. */
  private enqueue(op: () => Promise<void>, evenAfterFailure = false): Promise<void> {
    return (this.ops ??= new SerialOps(`file sink ${this.final}`)).run(op, evenAfterFailure);
  }

  private async appendPending(chunk: string): Promise<void> {
    if (!chunk) return;
    if (this.pending === null) this.pending = await open(this.pendingPath, 'w');
    await this.pending.write(chunk);
  }

  private async dropPending(): Promise<void> {
    const fh = this.pending;
    this.pending = null;
    if (fh) await fh.close();
    await rm(this.pendingPath, { force: true });
  }
}

function checkEpoch(epoch: number): void {
  if (typeof epoch !== 'number' || !Number.isSafeInteger(epoch) || epoch < 0) {
    throw errors.badOption('epoch', `must be a non-negative integer, got ${preview(epoch)}`);
  }
}

/** Cuts F back to its committed length; F shorter than that was changed by someone else. */
async function repair(fh: FileHandle, final: string, length: number): Promise<void> {
  const { size } = await fh.stat();
  if (size < length) {
    throw errors.input(final, `has ${size} bytes but ${length} were committed to it; it was changed outside tidepool (delete it and its .committed file to start over)`);
  }
  if (size > length) {
    await fh.truncate(length);
    await fh.sync();
  }
}

async function sizeOf(path: string): Promise<number> {
  const fh = await open(path, 'r');
  try {
    return (await fh.stat()).size;
  } finally {
    await fh.close();
  }
}

/** Copies all of `src` into `dst` at byte `at`; returns the bytes copied. */
async function copyInto(src: string, dst: FileHandle, at: number): Promise<number> {
  const from = await open(src, 'r');
  try {
    const buf = Buffer.allocUnsafe(COPY_CHUNK);
    let copied = 0;
    for (;;) {
      const { bytesRead } = await from.read(buf, 0, buf.length, copied);
      if (bytesRead === 0) return copied;
      let written = 0;
      while (written < bytesRead) {
        const { bytesWritten } = await dst.write(buf, written, bytesRead - written, at + copied + written);
        written += bytesWritten;
      }
      copied += bytesRead;
    }
  } finally {
    await from.close();
  }
}

/** Appends all of `src` to the file `dst` whose current size is `size`, then fsyncs it. */
async function appendFile(src: string, dst: string, size: number): Promise<void> {
  const fh = await open(dst, 'r+');
  try {
    await copyInto(src, fh, size);
    await fh.sync();
  } finally {
    await fh.close();
  }
}

async function readSidecar(final: string): Promise<Committed | null> {
  const path = sidecarOf(final);
  let text: string;
  try {
    const fh = await open(path, 'r');
    try {
      text = await fh.readFile('utf8');
    } finally {
      await fh.close();
    }
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw errors.io(`file sink ${final}: reading ${path}`, err);
  }
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    v = null;
  }
  const c = v as Partial<Committed> | null;
  if (
    c === null ||
    typeof c !== 'object' ||
    !Number.isSafeInteger(c.epoch) ||
    !Number.isSafeInteger(c.length) ||
    (c.length as number) < 0
  ) {
    throw errors.input(path, `is not a valid commit record (${preview(text)}); delete the output and it to start over`);
  }
  // Records written since the CRC was added carry it; older ones (no crc) are taken as they are.
  const crc = (c as { crc?: unknown }).crc;
  if (crc !== undefined && crc !== sidecarCrc(c.epoch as number, c.length as number, c.history)) {
    throw errors.corruptState('commit record', path, `its checksum does not match (${preview(text, 80)}); delete the output and it to start over`);
  }
  const history = Array.isArray(c.history) ? c.history.filter((h) => Number.isSafeInteger(h?.epoch) && Number.isSafeInteger(h?.length)) : undefined;
  return { epoch: c.epoch as number, length: c.length as number, history };
}

function sidecarCrc(epoch: number, length: number, history: unknown): number {
  return crc32c(Buffer.from(JSON.stringify({ epoch, length, history: history ?? [] })));
}

/** Replaces the sidecar atomically and durably. */
async function writeSidecar(final: string, c: Committed): Promise<void> {
  const path = sidecarOf(final);
  const tmp = `${path}.tmp`;
  const fh = await open(tmp, 'w');
  try {
    const history = c.history ?? [];
    await fh.writeFile(`${JSON.stringify({ epoch: c.epoch, length: c.length, history, crc: sidecarCrc(c.epoch, c.length, history) })}\n`, 'utf8');
    await fh.sync();
  } finally {
    await fh.close();
  }
  await rename(tmp, path);
  await syncDir(dirname(final));
}

/** JSON lines into `path`, published per checkpoint (see the top of this file). */
export function fileSink(options: FileSinkOptions): FileSinkSpec {
  if (typeof options !== 'object' || options === null) {
    throw errors.badOption('options', `sinks.file needs { path }, got ${preview(options)}`);
  }
  for (const key of Object.keys(options)) {
    if (key !== 'path') throw errors.badOption(`file.${key}`, 'unknown option (expected: path)');
  }
  const given = options.path;
  if (typeof given !== 'string' || given === '') throw errors.badOption('path', `must be a non-empty string, got ${preview(given)}`);
  const path = resolve(given);
  const shown = path === given ? path : `${given} (${path})`;
  return {
    kind: 'sink',
    type: 'file',
    path,
    // One output file unless the config asks for more (operators.<name>.parallelism).
    defaultParallelism: 1,
    // A stream takes one writer: several would interleave their lines (and p > 1 would
    // make up names like /dev/null-0).
    get maxParallelism() {
      return sinkTarget(path).kind === 'file' ? undefined : 1;
    },
    validate(): void {
      const target = sinkTarget(path);
      if (target.kind === 'refuse') throw errors.input(shown, target.why);
      if (target.kind === 'descriptor') return;
      if (target.kind === 'stream') {
        try {
          accessSync(path, fsConstants.W_OK);
        } catch {
          throw errors.input(shown, `cannot be written: permission denied (a ${target.what})`);
        }
        return;
      }
      // The nearest existing ancestor must be a directory we can write in.
      let dir = dirname(path);
      for (;;) {
        try {
          const st = statSync(dir);
          if (!st.isDirectory()) throw errors.input(shown, `cannot be created: ${dir} is not a directory`);
          break;
        } catch (err) {
          if ((err as { code?: string }).code === 'TIDEPOOL_INPUT') throw err;
          const up = dirname(dir);
          if (up === dir) break;
          dir = up;
        }
      }
      try {
        accessSync(dir, fsConstants.W_OK);
      } catch {
        throw errors.input(shown, `cannot be written: permission denied in ${dir}`);
      }
    },
    open: (ctx: InstanceContext) => openFileSink(fileSinkPath(path, ctx.subtask, ctx.parallelism), ctx),
    reset: (parallelism: number) => resetFileSink(path, parallelism),
  };
}

/**
 * The writer for one final file: the exactly-once protocol for a regular file, a plain
 * stream for a device, FIFO or descriptor path (see sink-target.ts, stream-sink.ts).
 */
async function openFileSink(final: string, ctx: InstanceContext): Promise<SinkWriter<unknown>> {
  const target = sinkTarget(final);
  const progressive = ctx.checkpointing === false;
  switch (target.kind) {
    case 'file':
      return FileSinkWriter.open(final, ctx.subtask);
    case 'descriptor':
      return new StreamSinkWriter(descriptorOutput(target.fd, final), progressive);
    case 'stream':
      return new StreamSinkWriter(pathOutput(final), progressive);
    case 'refuse':
      throw errors.input(final, target.why);
  }
}
