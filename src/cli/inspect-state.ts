// `tidepool inspect`: what one operator instance's keyed state holds, by kind — timers,
// window state, join state, user state — read from the tables of the state version its
// checkpoint names.
//
// Tables of an operator `op` (the layouts are the operators' own; see the files named):
//   op/~timers/event, op/~timers/processing  [group, time, key]                 time/timers.ts
//   op/~panes      [group, key, paneStart] → acc  window: tumbling, sliding with merge
//   op/~windows    [group, key, windowEnd] → acc  window: sliding without merge   operators/windows.ts
//   op/~sessions   [group, key, start] → [end, acc]  window: session
//   op/~left, op/~right                           join, intervalJoin             operators/joins.ts
//   op/~windows    [group, key, end, side, epoch, seq] → record   windowJoin
//   op, op/<name>                                 reduce; value, map, list state (operators/context.ts)
// `~windows` is a sliding window's table and a window join's: the operator's kind in the
// manifest tells which. The kind of a user state (value, map or list) is not stored.
//
// Counts come from the commit record, for free. The rest needs the tables: the next
// timer is the smallest first entry over the key groups (one seek per group, the table
// is ordered by group, then time); open windows and their ends need one pass over the
// window table, skipped (null) for a table of more than `scanLimit` entries.
//
// "Open" is "not fired yet": a window whose end is above the instance's watermark at the
// checkpoint. A window at or below it has fired; its cells stay only for allowedLatenessMs
// (and a sliding window's panes for the later windows that still need them).
import { decodeKey, encodeKey, prefixBounds, type Key } from '../state/keys.js';
import { fromStored } from '../state/values.js';
import type { BTree } from '../state/btree.js';
import type { CommitTables } from '../storage/snapshot-reader.js';

export interface TimerDomainReport {
  count: number;
  /** The earliest registered time (the next to fire), ms; null: none (or unreadable). */
  next: number | null;
}

export interface WindowStateReport {
  operator: string;
  /** What the table holds per key: panes (partial aggregates), windows, or sessions. */
  cells: 'panes' | 'windows' | 'sessions';
  entries: number;
  /** Distinct (key, window) not fired yet, and their earliest and latest end (ms). */
  open: number | null;
  firstEnd: number | null;
  lastEnd: number | null;
}

export interface JoinStateReport {
  operator: string;
  kind: 'join' | 'intervalJoin' | 'windowJoin';
  /** Stored records per side (a window join: one per record and window). */
  left: number | null;
  right: number | null;
  /** Window joins: distinct (key, window) not closed yet and their ends (ms). */
  open?: number | null;
  firstEnd?: number | null;
  lastEnd?: number | null;
}

export interface InstanceStateReport {
  timers: { event: TimerDomainReport; processing: TimerDomainReport };
  windows: WindowStateReport[];
  joins: JoinStateReport[];
  /** Reduce, value, map and list state: keys per table. */
  user: Record<string, number>;
  /** Why times or open windows could not be read (counts are still right); absent: all read. */
  unreadable?: string;
}

export interface OperatorInfo {
  name: string;
  kind: string;
  /** plan.ts operatorShape(): a window's assigner is in it. */
  shape?: string;
}

export const SCAN_LIMIT = 1_000_000;
/** Scans evict the read cache back to its bound this often (entries). */
const EVICT_EVERY = 256;

const TUPLE = '\x09';
const mod = (a: number, m: number) => ((a % m) + m) % m;

/** The operator a table belongs to: its own name, or a name it starts with then `/`. */
function ownerOf(table: string, ops: OperatorInfo[]): OperatorInfo | undefined {
  let best: OperatorInfo | undefined;
  for (const o of ops) {
    if ((table === o.name || table.startsWith(`${o.name}/`)) && o.name.length > (best?.name.length ?? -1)) best = o;
  }
  return best;
}

/** A window operator's assigner, from its shape `window:<assigner JSON>:<mode>`. */
function assignerOf(shape: string | undefined): { sizeMs: number; slideMs: number; offsetMs: number } | undefined {
  if (!shape?.startsWith('window:')) return undefined;
  try {
    const a = JSON.parse(shape.slice('window:'.length, shape.lastIndexOf(':'))) as { kind: string; sizeMs: number; slideMs?: number; offsetMs: number };
    if (a.kind !== 'tumbling' && a.kind !== 'sliding') return undefined;
    return { sizeMs: a.sizeMs, slideMs: a.kind === 'sliding' ? a.slideMs! : a.sizeMs, offsetMs: a.offsetMs ?? 0 };
  } catch {
    return undefined;
  }
}

/** The earliest time of a timer table: the minimum over the groups' first entries. */
function nextTimer(t: BTree): number | null {
  let min = Infinity;
  let from: string | undefined;
  for (;;) {
    let first: string | undefined;
    for (const [k] of t.entries(from === undefined ? { limit: 1 } : { gte: from, limit: 1 })) first = k;
    if (first === undefined) break;
    const [group, time] = decodeKey(first) as [number, number];
    if (time < min) min = time;
    from = prefixBounds([group]).lt;
  }
  return min === Infinity ? null : min;
}

/** Open (key, window) pairs and their end range, fed one window end at a time per key. */
class OpenWindows {
  open = 0;
  firstEnd = Infinity;
  lastEnd = -Infinity;
  private prefix = '';
  private ends = new Set<number>();
  constructor(private readonly watermark: number) {}
  /** A window of the key whose encoded prefix is `prefix` ends at `end`. */
  add(prefix: string, end: number): void {
    if (prefix !== this.prefix) this.nextKey(prefix);
    if (end <= this.watermark || this.ends.has(end)) return;
    this.ends.add(end);
    if (end < this.firstEnd) this.firstEnd = end;
    if (end > this.lastEnd) this.lastEnd = end;
  }
  private nextKey(prefix: string): void {
    this.open += this.ends.size;
    this.ends.clear();
    this.prefix = prefix;
  }
  result(): { open: number; firstEnd: number | null; lastEnd: number | null } {
    this.nextKey('');
    return { open: this.open, firstEnd: this.open ? this.firstEnd : null, lastEnd: this.open ? this.lastEnd : null };
  }
}

/** [group, key] of a decoded state key as the encoded prefix its table sorts it under. */
const keyPrefix = (parts: Key[]) => TUPLE + encodeKey(parts[0]) + encodeKey(parts[1], Infinity);

function scan(tables: CommitTables, t: BTree, each: (k: string, v: unknown) => void): void {
  let n = 0;
  for (const [k, v] of t.entries()) {
    each(k, v);
    if (++n % EVICT_EVERY === 0) tables.evict();
  }
  tables.evict();
}

function scanWindows(tables: CommitTables, t: BTree, cells: WindowStateReport['cells'], op: OperatorInfo, watermark: number) {
  const w = new OpenWindows(watermark);
  const a = assignerOf(op.shape);
  if (cells === 'panes' && !a) return undefined; // a manifest without shapes: pane → windows unknown
  scan(tables, t, (k, v) => {
    const parts = decodeKey(k) as Key[];
    const p = keyPrefix(parts);
    if (cells === 'windows') w.add(p, parts[2] as number);
    else if (cells === 'sessions') w.add(p + encodeKey(parts[2]!), (fromStored(v as never) as [number])[0]);
    else {
      // Every window containing the pane: starts aligned to the slide, within one size before it.
      const pane = parts[2] as number;
      for (let s = pane - mod(pane - a!.offsetMs, a!.slideMs); s > pane - a!.sizeMs; s -= a!.slideMs) w.add(p, s + a!.sizeMs);
    }
  });
  return w.result();
}

function scanWindowJoin(tables: CommitTables, t: BTree, watermark: number) {
  const w = new OpenWindows(watermark);
  const sides = [0, 0];
  scan(tables, t, (k) => {
    const parts = decodeKey(k) as Key[];
    sides[parts[3] as number]!++;
    w.add(keyPrefix(parts), parts[2] as number);
  });
  return { left: sides[0]!, right: sides[1]!, ...w.result() };
}

const CELLS: Record<string, WindowStateReport['cells']> = { '~panes': 'panes', '~windows': 'windows', '~sessions': 'sessions' };

/**
 * The state of one instance by kind. `ops`: the instance's operators (manifest names,
 * kinds, shapes); `watermark`: its watermark at the checkpoint.
 */
export function describeInstanceState(tables: CommitTables, ops: OperatorInfo[], watermark: number, scanLimit = SCAN_LIMIT): InstanceStateReport {
  const r: InstanceStateReport = { timers: { event: { count: 0, next: null }, processing: { count: 0, next: null } }, windows: [], joins: [], user: {} };
  const joins = new Map<string, JoinStateReport>();
  const failed = (name: string, e: unknown) => {
    r.unreadable ??= `table ${name}: ${String((e as Error)?.message ?? e).split('\n')[0]}`;
  };
  const read = <T>(name: string, f: () => T): T | undefined => {
    try {
      return f();
    } catch (e) {
      failed(name, e);
      return undefined;
    }
  };
  for (const name of tables.tableNames().sort()) {
    const t = tables.table(name);
    const op = ownerOf(name, ops);
    const rest = op && name !== op.name ? name.slice(op.name.length + 1) : '';
    if (rest === '~timers/event' || rest === '~timers/processing') {
      const d = r.timers[rest === '~timers/event' ? 'event' : 'processing'];
      d.count += t.size;
      const next = t.size ? read(name, () => nextTimer(t)) ?? null : null;
      if (next !== null && (d.next === null || next < d.next)) d.next = next;
    } else if (op?.kind === 'window' && CELLS[rest]) {
      const cells = CELLS[rest]!;
      const s = t.size <= scanLimit ? read(name, () => scanWindows(tables, t, cells, op, watermark)) : undefined;
      r.windows.push({ operator: op.name, cells, entries: t.size, open: s?.open ?? null, firstEnd: s?.firstEnd ?? null, lastEnd: s?.lastEnd ?? null });
    } else if ((op?.kind === 'join' || op?.kind === 'intervalJoin') && (rest === '~left' || rest === '~right')) {
      let j = joins.get(op.name);
      if (!j) joins.set(op.name, (j = { operator: op.name, kind: op.kind, left: 0, right: 0 }));
      j[rest === '~left' ? 'left' : 'right'] = t.size;
    } else if (op?.kind === 'windowJoin' && rest === '~windows') {
      const s = t.size <= scanLimit ? read(name, () => scanWindowJoin(tables, t, watermark)) : undefined;
      joins.set(op.name, { operator: op.name, kind: 'windowJoin', left: s?.left ?? null, right: s?.right ?? null, open: s?.open ?? null, firstEnd: s?.firstEnd ?? null, lastEnd: s?.lastEnd ?? null });
    } else {
      r.user[name] = t.size;
    }
  }
  r.joins = [...joins.values()];
  return r;
}

/** A time as the text report prints it: ISO-8601 UTC, or ms where Date cannot show it. */
export function formatTime(ms: number): string {
  return Math.abs(ms) <= 8.64e15 ? new Date(ms).toISOString() : `${ms} ms`;
}

const q = (n: number | null | undefined) => (n === null || n === undefined ? '?' : String(n));
const ends = (a: number | null | undefined, b: number | null | undefined) => (a === null || a === undefined || b === null || b === undefined ? '' : ` (ends ${formatTime(a)}..${formatTime(b)})`);

/** One line: `subtask 0: watermark …; timers event 12 (next …) processing 0; windows …; keys …`. */
export function formatInstanceState(subtask: number, s: InstanceStateReport, watermark?: number): string {
  const parts: string[] = [];
  if (watermark !== undefined) parts.push(`watermark ${formatTime(watermark)}`);
  const timer = (d: TimerDomainReport) => `${d.count}${d.next !== null ? ` (next ${formatTime(d.next)})` : ''}`;
  parts.push(`timers event ${timer(s.timers.event)} processing ${timer(s.timers.processing)}`);
  for (const w of s.windows) parts.push(`windows ${w.operator} ${q(w.open)} open${ends(w.firstEnd, w.lastEnd)} in ${w.entries} ${w.cells}`);
  for (const j of s.joins) {
    const win = j.kind === 'windowJoin' ? `, ${q(j.open)} windows open${ends(j.firstEnd, j.lastEnd)}` : '';
    parts.push(`join ${j.operator} left ${q(j.left)} right ${q(j.right)}${win}`);
  }
  const user = Object.entries(s.user);
  if (user.length) parts.push(`keys ${user.map(([t, n]) => `${t} ${n}`).join(', ')}`);
  if (s.unreadable) parts.push(`unreadable: ${s.unreadable}`);
  return `subtask ${subtask}: ${parts.join('; ')}`;
}
