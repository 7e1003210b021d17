// Built-in sources `sources.array(items)` and `sources.generator({ count, make })`,
// and the helpers every source shares. `sources.file` lives in file-source.ts; the
// `sources` object is assembled in index.ts.
//
// Parallel instances split the input by striping: subtask i of p takes the items (or
// generator indices) i, i+p, i+2p, … — every record goes to exactly one subtask, and
// each subtask sees its records in input order.
//
// Positions (what a checkpoint stores and `seek` resumes from):
//   array      the number of items this subtask has returned
//   generator  the next index this subtask will make
//   file       the byte offset just after the last returned line
import { errors, preview } from '../errors.js';
import type { InstanceContext, SourceReader, SourceSpec } from '../flow/types.js';

/** Rejects option keys a source does not know (a typo would otherwise be ignored). */
export function checkOptionKeys(what: string, opts: object, known: readonly string[]): void {
  for (const key of Object.keys(opts)) {
    if (!known.includes(key)) {
      throw errors.badOption(`${what}.${key}`, `unknown option (expected one of: ${known.join(', ')})`);
    }
  }
}

/** A resume position must be a non-negative integer; anything else is a bad checkpoint. */
export function checkPosition(ctx: InstanceContext, type: string, pos: unknown): number {
  if (typeof pos !== 'number' || !Number.isSafeInteger(pos) || pos < 0) {
    throw errors.input(
      `${type} source '${ctx.operator}' (subtask ${ctx.subtask})`,
      `cannot resume from position ${preview(pos)}: expected a non-negative integer`,
    );
  }
  return pos;
}

// ---- array -------------------------------------------------------------------------

export interface ArraySourceSpec<T> extends SourceSpec<T> {
  readonly type: 'array';
}

class ArrayReader<T> implements SourceReader<T> {
  /** Records this subtask has returned. */
  private taken = 0;
  private readonly total: number;

  constructor(private readonly items: readonly T[], private readonly ctx: InstanceContext) {
    const { subtask, parallelism } = ctx;
    this.total = subtask < items.length ? Math.ceil((items.length - subtask) / parallelism) : 0;
  }

  next(max: number): T[] | null {
    if (this.taken >= this.total) return null;
    const n = Math.min(Math.max(1, max), this.total - this.taken);
    const out = new Array<T>(n);
    const { subtask, parallelism } = this.ctx;
    for (let k = 0; k < n; k++) out[k] = this.items[subtask + (this.taken + k) * parallelism]!;
    this.taken += n;
    return out;
  }

  position(): number {
    return this.taken;
  }

  seek(position: unknown): void {
    this.taken = Math.min(checkPosition(this.ctx, 'array', position), this.total);
  }

  close(): void {}
}

/** The items, in order; subtask i of p takes items i, i+p, … . */
export function arraySource<T>(items: readonly T[]): ArraySourceSpec<T> {
  if (!Array.isArray(items)) throw errors.badOption('items', `sources.array needs an array, got ${preview(items)}`);
  const copy: readonly T[] = items.slice();
  return {
    kind: 'source',
    type: 'array',
    bounded: true,
    maxParallelism: copy.length || 1,
    open: (ctx) => new ArrayReader(copy, ctx),
  };
}

// ---- generator ---------------------------------------------------------------------

export interface GeneratorOptions<T> {
  /** How many records; omitted → unbounded. */
  count?: number;
  /** Makes record i (called with 0, 1, 2, …). */
  make: (i: number) => T;
}

export interface GeneratorSourceSpec<T> extends SourceSpec<T> {
  readonly type: 'generator';
  readonly count: number | undefined;
}

/** How long one generator batch may take before it is cut short. */
const GENERATOR_SLICE_MS = 20;

class GeneratorReader<T> implements SourceReader<T> {
  /** The next index this subtask makes. */
  private index: number;

  constructor(
    private readonly make: (i: number) => T,
    private readonly count: number,
    private readonly ctx: InstanceContext,
  ) {
    this.index = ctx.subtask;
  }

  next(max: number): T[] | null {
    const { parallelism } = this.ctx;
    if (this.index >= this.count) return null;
    const out: T[] = [];
    const n = Math.max(1, max);
    let i = this.index;
    const started = performance.now();
    try {
      while (out.length < n && i < this.count) {
        out.push(this.make(i));
        i += parallelism;
        // A slow `make` (one that waits on a rate limit, say) ends the batch early: a
        // barrier or watermark waits behind at most one slice, not a whole batch.
        if ((out.length & 7) === 0 || out.length < 8) {
          if (performance.now() - started >= GENERATOR_SLICE_MS) break;
        }
      }
    } catch (err) {
      this.index = i; // records before the failing one were made; the caller fails anyway
      throw errors.userCode(this.ctx.operator, this.ctx.subtask, i, err);
    }
    this.index = i;
    return out;
  }

  position(): number {
    return this.index;
  }

  seek(position: unknown): void {
    const pos = checkPosition(this.ctx, 'generator', position);
    const { subtask, parallelism } = this.ctx;
    if (pos % parallelism !== subtask % parallelism) {
      throw errors.input(
        `generator source '${this.ctx.operator}' (subtask ${subtask} of ${parallelism})`,
        `cannot resume from index ${pos}: it belongs to another subtask (was the parallelism changed?)`,
      );
    }
    this.index = pos;
  }

  close(): void {}
}

/** Records make(0) … make(count-1) in order; unbounded without `count`. */
export function generatorSource<T>(options: GeneratorOptions<T>): GeneratorSourceSpec<T> {
  if (typeof options !== 'object' || options === null) {
    throw errors.badOption('options', `sources.generator needs { count?, make }, got ${preview(options)}`);
  }
  checkOptionKeys('generator', options, ['count', 'make']);
  const { count, make } = options;
  if (typeof make !== 'function') throw errors.badOption('make', `must be a function (i) => record, got ${preview(make)}`);
  if (count !== undefined && (typeof count !== 'number' || !Number.isSafeInteger(count) || count < 0)) {
    throw errors.badOption('count', `must be a non-negative integer, got ${preview(count)}`);
  }
  const limit = count ?? Infinity;
  return {
    kind: 'source',
    type: 'generator',
    bounded: count !== undefined,
    count,
    ...(count !== undefined ? { maxParallelism: count || 1 } : {}),
    open: (ctx) => new GeneratorReader(make, limit, ctx),
  };
}
