// Window assigners of the contract: `windows.tumbling({ sizeMs, offsetMs? })`,
// `windows.sliding({ sizeMs, slideMs, offsetMs? })`, `windows.session({ gapMs })`.
// Windows are half-open [start, end), aligned to the epoch plus offsetMs.
import { TidepoolTypeError } from '../errors.js';
import type { WindowAssigner } from './types.js';

function bad(what: string, why: string): TidepoolTypeError {
  return new TidepoolTypeError('TIDEPOOL_BAD_OPTION', `invalid window ${what}: ${why}`);
}

function positiveInt(what: string, name: string, v: unknown): number {
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v <= 0) throw bad(`${what}.${name}`, `must be a positive integer of ms, got ${String(v)}`);
  return v;
}

function offset(what: string, v: unknown, size: number): number {
  if (v === undefined) return 0;
  if (typeof v !== 'number' || !Number.isSafeInteger(v)) throw bad(`${what}.offsetMs`, `must be an integer of ms, got ${String(v)}`);
  return ((v % size) + size) % size;
}

function known(what: string, o: unknown, keys: string[]): Record<string, unknown> {
  if (typeof o !== 'object' || o === null) throw bad(what, `needs an options object { ${keys.join(', ')} }`);
  for (const k of Object.keys(o)) if (!keys.includes(k)) throw bad(what, `unknown option '${k}' (expected ${keys.join(', ')})`);
  return o as Record<string, unknown>;
}

export const windows = {
  /** Fixed, non-overlapping windows of `sizeMs`. */
  tumbling(options: { sizeMs: number; offsetMs?: number }): WindowAssigner {
    const o = known('windows.tumbling', options, ['sizeMs', 'offsetMs']);
    const sizeMs = positiveInt('windows.tumbling', 'sizeMs', o.sizeMs);
    return { kind: 'tumbling', sizeMs, offsetMs: offset('windows.tumbling', o.offsetMs, sizeMs) };
  },
  /** Windows of `sizeMs` starting every `slideMs` (a record belongs to size/slide of them). */
  sliding(options: { sizeMs: number; slideMs: number; offsetMs?: number }): WindowAssigner {
    const o = known('windows.sliding', options, ['sizeMs', 'slideMs', 'offsetMs']);
    const sizeMs = positiveInt('windows.sliding', 'sizeMs', o.sizeMs);
    const slideMs = positiveInt('windows.sliding', 'slideMs', o.slideMs);
    if (slideMs > sizeMs) throw bad('windows.sliding.slideMs', `slideMs (${slideMs}) is greater than sizeMs (${sizeMs})`);
    return { kind: 'sliding', sizeMs, slideMs, offsetMs: offset('windows.sliding', o.offsetMs, slideMs) };
  },
  /** Per key, records closer than `gapMs` form one session `[first, last + gapMs)`. */
  session(options: { gapMs: number }): WindowAssigner {
    const o = known('windows.session', options, ['gapMs']);
    return { kind: 'session', gapMs: positiveInt('windows.session', 'gapMs', o.gapMs) };
  },
} as const;
