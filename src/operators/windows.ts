// Event-time windows on a keyed stream: `.window(assigner).aggregate(...)` / `.reduce(...)`.
//
// State (keyed like all state, so it is larger than memory, checkpointed with the
// tables and rescaled by key group):
//   panes     [group, key, paneStart]  → accumulator      tumbling, or sliding with merge
//   windows   [group, key, windowEnd]  → accumulator      sliding without merge
//   sessions  [group, key, start]      → [end, acc]       (or [end, records] without merge)
//
// Sliding windows with a merge function keep one partial per pane (gcd(size, slide)
// wide) and combine the panes of a window when it fires, so a record costs one update
// whatever size/slide is (as in Arroyo). Without merge, each record updates each of its
// size/slide windows.
//
// Firing: each key has an event-time timer at the next window end it has data for.
// When it fires (watermark ≥ end) the window is emitted with timestamp end − 1, cells
// that no later window (or the allowed lateness) needs are deleted, and the timer moves
// to the key's next window end or cleanup time. A record for a window that already
// fired but is within allowedLatenessMs updates it and emits it again at once; a record
// too late for every window it belongs to is dropped, counted and sent to `.late()`.
import type { AggregateSpec, LogicalOperator, WindowAssigner } from '../flow/types.js';
import { encodeKey, decodeKey, type Key } from '../state/keys.js';
import { fromStored, toStored } from '../state/values.js';
import type { DueTimer } from '../time/timers.js';
import { SlidingPaneCache } from './sliding-panes.js';
import { KeyedRuntime, userError, type Emit, type OperatorInstance, type StepEnv } from './keyed.js';

const mod = (a: number, m: number) => ((a % m) + m) % m;
const gcd = (a: number, b: number): number => (b === 0 ? a : gcd(b, a % b));

export interface Window {
  start: number;
  end: number;
}

/** Calls into the user's aggregate, each error naming the operator and the record. */
class UserAggregate {
  constructor(private readonly op: LogicalOperator, private readonly env: StepEnv, readonly spec: AggregateSpec) {}
  private guard<T>(record: unknown, f: () => T, what: string): T {
    let v: T;
    try {
      v = f();
      if (v === undefined && what !== 'create') throw new TypeError(`${what} returned undefined`);
    } catch (e) {
      throw userError(this.op, this.env, record, e);
    }
    return v;
  }
  create(record: unknown): unknown {
    return this.guard(record, () => this.spec.create(), 'create');
  }
  add(acc: unknown, record: unknown): unknown {
    return this.guard(record, () => this.spec.add(acc, record), 'add');
  }
  merge(a: unknown, b: unknown): unknown {
    return this.guard('(merging partial aggregates)', () => this.spec.merge!(a, b), 'merge');
  }
  output(acc: unknown, w: Window, key: unknown): unknown {
    if (!this.spec.result) return { key, window: { start: w.start, end: w.end }, value: acc };
    return this.guard(`(result of window [${w.start}, ${w.end}) of key ${JSON.stringify(key) ?? String(key)})`, () => this.spec.result!(acc, { start: w.start, end: w.end }, key), 'result');
  }
}

/** Stores an accumulator; `undefined` (a reduce before its first record) is kept as null-free marker. */
const put = (v: unknown) => toStored([v === undefined ? null : v]);
const take = (s: unknown) => (fromStored(s as never) as [unknown])[0];

export function makeWindow(op: LogicalOperator, env: StepEnv, emit: Emit, emitLate: Emit): OperatorInstance {
  const rt = new KeyedRuntime(op, env, emit);
  const agg = new UserAggregate(op, env, op.options!.aggregate!);
  const a = op.options!.assigner!;
  const lateness = op.options!.allowedLatenessMs ?? 0;
  const body = a.kind === 'session' ? sessionWindows(rt, agg, a, lateness) : alignedWindows(rt, agg, a, lateness, env.recordFailed !== undefined);
  const onTimer = (t: DueTimer) => body.onTimer(t.time);
  return {
    push(record, ts) {
      if (ts !== ts) throw userError(op, env, record, new TypeError('the record has no event time (its source has no eventTime)'));
      rt.setKey(record, 0);
      rt.timestamp = ts;
      if (!body.add(record, ts)) {
        rt.lateRecords++;
        emitLate(record, ts);
      }
      env.afterState?.();
    },
    onWatermark(wm) {
      rt.watermark = wm;
      rt.fireEvent(wm, onTimer);
    },
    onProcessingTime() {},
    nextProcessingTime: () => Infinity,
    beforeSnapshot: () => body.beforeSnapshot?.(),
    stats: () => ({ ...rt.stats(), windowState: body.entries() }),
  };
}

interface WindowBody {
  /** Adds a record of the current key; false when it is too late for all its windows. */
  add(record: unknown, ts: number): boolean;
  /** The current key's timer at `time` fired. */
  onTimer(time: number): void;
  /** Entries of the state table (for the run's metrics). */
  entries(): number;
  /** Writes back what is cached in memory only (before a checkpoint's snapshot). */
  beforeSnapshot?(): void;
}

/** Keys whose current pane is kept decoded (hot panes); the oldest is written back beyond. */
const HOT_PANES = 4096;

/** Tumbling and sliding windows (panes or per-window accumulators). */
function alignedWindows(rt: KeyedRuntime, agg: UserAggregate, a: WindowAssigner & { kind: 'tumbling' | 'sliding' }, lateness: number, recordsMayFail: boolean): WindowBody {
  const size = a.sizeMs;
  const slide = a.kind === 'sliding' ? a.slideMs : a.sizeMs;
  const offset = a.offsetMs;
  const panes = a.kind === 'tumbling' || agg.spec.merge !== undefined;
  const pane = panes ? gcd(size, slide) : 0;
  const table = rt.engine.table(`${rt.op.name}/~${panes ? 'panes' : 'windows'}`);
  const scope = rt.scope;
  const cellKey = (t: number) => scope.open + encodeKey(t) + '\x00';
  const keyEnd = () => scope.open + '\xff';
  /** A cell key's time: the element after the current key's tuple prefix (decoded alone). */
  const cellTime = (k: string) => decodeKey(k.slice(scope.open.length, -1)) as number;
  const lastStart = (t: number) => t - mod(t - offset, slide);
  /** Window ends are starts + size: ≡ offset + size (mod slide), not ≡ offset unless slide divides size. */
  const isEnd = (t: number) => mod(t - offset - size, slide) === 0;
  /** The smallest window end > t (the first window to fire for a record at t). */
  const nextEndAfter = (t: number) => lastStart(t - size) + slide + size;
  /** The last window end that still needs a cell starting (panes) or ending (windows) at `c`. */
  const lastNeed = (c: number) => (panes ? lastStart(c) + size : c);
  /** The key's cells in [from, to) (or the whole key), oldest first. */
  const cellRange = (from: number | undefined, to: number | undefined) =>
    table.entries({ gte: from === undefined ? scope.open : cellKey(from), lt: to === undefined ? keyEnd() : cellKey(to) });
  const timeOf = (k: string | undefined) => (k === undefined ? undefined : cellTime(k));
  /** Reused by every firing: the cells around its time (BTree.neighbors). */
  const around: [string | undefined, string | undefined, string | undefined] = [undefined, undefined, undefined];
  /**
   * The first cell a firing at `time` keeps: every older one has no window left within
   * the lateness. lastNeed(c) + lateness ≤ time holds exactly for c below this bound:
   * for panes lastStart(c) ≤ time − size − lateness, for per-window cells c ≤ time − lateness.
   */
  const keepFrom = (time: number) => (panes ? cellKey(lastStart(time - size - lateness) + slide) : cellKey(time - lateness) + '\x00');
  /** nextEndAfter, with no window end after −∞ but the first one (a watermark before any). */
  const endAfter = (t: number) => (t === -Infinity ? -Infinity : nextEndAfter(t));
  // Sliding panes are combined through the two-stacks cache; tumbling windows are one pane.
  const sliding = panes && size !== pane ? new SlidingPaneCache((x, y) => agg.merge(x, y)) : undefined;
  const readPanes = function* (from: number, to: number): Generator<[number, unknown]> {
    if (to - from === pane) {
      // The usual firing adds one pane to the window (slide = pane): a point lookup.
      const v = table.get(cellKey(from));
      if (v !== undefined) yield [from, take(v)];
      return;
    }
    for (const [k, v] of cellRange(from, to)) yield [cellTime(k), take(v)];
  };
  const emitWindow = (w: Window, acc: unknown) => rt.emit(agg.output(acc, w, scope.key), w.end - 1);
  const windowAcc = (end: number): unknown => {
    if (!panes || size === pane) {
      const v = table.get(cellKey(panes ? end - size : end));
      return v === undefined ? undefined : take(v);
    }
    return sliding!.window(scope.open, end - size, end, readPanes);
  };
  /**
   * Registers the key's next fire or cleanup time after `after`, once the cells no window
   * needs any more were deleted. Only three cells matter: the oldest (its cleanup), the
   * newest at or before `after` (does the next window still hold it?) and the oldest
   * after it (its first window); onTimer has them from the lookups it made anyway.
   */
  const schedule = (after: number, oldest: number | undefined, behind: number | undefined, ahead: number | undefined) => {
    if (oldest === undefined) return;
    let next = Infinity;
    const cleanup = lastNeed(oldest) + lateness;
    if (cleanup > after) next = cleanup;
    if (panes) {
      const fire = nextEndAfter(after);
      if (behind !== undefined && fire <= lastNeed(behind)) next = Math.min(next, fire);
      if (ahead !== undefined) next = Math.min(next, nextEndAfter(ahead));
    } else if (ahead !== undefined) {
      next = Math.min(next, ahead); // a window end: it fires at that time
    }
    if (next < Infinity) rt.registerEventTimer(next);
  };
  const update = (k: string, record: unknown) => {
    const old = table.get(k);
    const acc = agg.add(old === undefined ? agg.create(record) : take(old), record);
    table.set(k, put(acc));
    rt.engine.mutations++;
    return acc;
  };
  // Hot panes: per key, the pane its records go to now, decoded, with updates not yet
  // written back. Records come roughly in time order, so most of a key's records hit the
  // same pane; each then costs one `add` instead of a B+tree get, a decode, an encode and
  // a set (which grew with the state: 3,600 live panes per key at size/slide 3600). The
  // cell itself is written when the pane is first touched (the timer lookups must see it),
  // and its value before anything reads it: the key's firings and late firings, a
  // snapshot, an eviction. Off when records may fail without failing the run (skip,
  // dead letter): a throwing `add` could leave a half-updated cached accumulator.
  type HotPane = { t: number; k: string; acc: unknown; dirty: boolean };
  const hot = panes && !recordsMayFail ? new Map<string, HotPane>() : undefined;
  const writeBack = (e: HotPane) => {
    if (!e.dirty) return;
    table.set(e.k, put(e.acc));
    rt.engine.mutations++;
    e.dirty = false;
  };
  const writeBackKey = () => {
    const e = hot?.get(scope.open);
    if (e !== undefined) writeBack(e);
  };
  const updatePane = (t: number, record: unknown) => {
    if (hot === undefined) return void update(cellKey(t), record);
    const e = hot.get(scope.open);
    if (e !== undefined && e.t === t) { // compared by time: the cell key is built only for a new pane
      e.acc = agg.add(e.acc, record);
      e.dirty = true;
      return;
    }
    if (e !== undefined) {
      writeBack(e);
      hot.delete(scope.open);
    } else if (hot.size >= HOT_PANES) {
      const [key, oldest] = hot.entries().next().value!;
      writeBack(oldest);
      hot.delete(key);
    }
    const k = cellKey(t);
    hot.set(scope.open, { t, k, acc: update(k, record), dirty: false });
  };
  return {
    entries: () => table.size,
    add(record, ts) {
      const wm = rt.watermark;
      const maxEnd = lastStart(ts) + size;
      if (maxEnd + lateness <= wm) return false;
      // The record's windows have ends e with ts < e ≤ maxEnd, every `slide`; of those,
      // the ones with e ≤ wm fired already (re-fired now if within the lateness), and
      // the first with e > wm is the next to fire. With panes that is one update and a
      // walk over the late windows only; per-window accumulators update each window.
      const firstLive = Math.max(nextEndAfter(ts), endAfter(wm - lateness));
      if (panes) {
        const ps = ts - mod(ts - offset, pane);
        updatePane(ps, record);
        sliding?.changed(scope.open, ps);
      } else {
        for (let e = firstLive; e <= maxEnd; e += slide) update(cellKey(e), record);
      }
      if (firstLive <= wm) writeBackKey(); // a late firing reads the panes
      for (let e = firstLive; e <= maxEnd && e <= wm; e += slide) emitWindow({ start: e - size, end: e }, windowAcc(e)); // late firing
      const timer = Math.max(firstLive, endAfter(wm));
      // The next window of the record to fire; or, if all of them fired already (a late
      // record within the lateness), the cleanup of its cell.
      rt.registerEventTimer(timer <= maxEnd ? timer : maxEnd + lateness);
      return true;
    },
    beforeSnapshot() {
      if (hot !== undefined) for (const e of hot.values()) writeBack(e); // and they stay cached, clean
    },
    onTimer(time) {
      writeBackKey(); // the firing reads this key's panes
      // The cells around `time` (one descent) answer whether the window ending here has
      // data and, with the cleanup below, where the key's next timer goes.
      table.neighbors(cellKey(time), scope.open, keyEnd(), around);
      const before = timeOf(around[0]); // newest < time
      const from = timeOf(around[1]); // oldest ≥ time
      const has = panes ? before !== undefined && before >= time - size : from === time;
      // The window ending here fires (if this is a window end and it has data)…
      if (isEnd(time) && has) emitWindow({ start: time - size, end: time }, windowAcc(time));
      // …cells no window within the lateness needs any more go (the oldest ones: lastNeed
      // grows with the cell's time; usually one per firing, each a point seek)…
      const keep = keepFrom(time);
      const hotCell = hot?.get(scope.open)?.k;
      const end = keyEnd();
      let gone = 0;
      let first = table.firstKey(scope.open, end);
      for (; first !== undefined && first < keep; first = table.firstKey(scope.open, end)) {
        table.delete(first);
        if (first === hotCell) hot!.delete(scope.open);
        gone++;
      }
      rt.engine.mutations += gone;
      const oldest = timeOf(first);
      if (gone > 0 && oldest === undefined) sliding?.forget(scope.open);
      // …and the key's next fire or cleanup time is registered. (A deleted `before` adds
      // nothing there: its last window ended at or before `time`.)
      const ahead = from === time ? timeOf(around[2]) : from;
      schedule(time, oldest, from === time ? time : before, ahead);
    },
  };
}

/** Session windows per key: [first, last + gap), merged when they come to touch. */
function sessionWindows(rt: KeyedRuntime, agg: UserAggregate, a: WindowAssigner & { kind: 'session' }, lateness: number): WindowBody {
  const gap = a.gapMs;
  const merging = agg.spec.merge !== undefined;
  const table = rt.engine.table(`${rt.op.name}/~sessions`);
  const scope = rt.scope;
  type Session = { start: number; end: number; k: string; state: unknown };
  const sessions = (): Session[] => {
    const out: Session[] = [];
    for (const [k, v] of table.entries({ gte: scope.open, lt: scope.open + '\xff' })) {
      const [end, state] = fromStored(v) as [number, unknown];
      out.push({ start: (decodeKey(k) as Key[])[2] as number, end, k, state });
    }
    return out;
  };
  const keyOf = (start: number) => scope.open + encodeKey(start) + '\x00';
  const accOf = (s: { state: unknown }, record: unknown) => {
    if (merging) return s.state;
    let acc = agg.create(record);
    for (const r of s.state as unknown[]) acc = agg.add(acc, r);
    return acc;
  };
  const emitSession = (s: { start: number; end: number; state: unknown }) => rt.emit(agg.output(accOf(s, '(session)'), { start: s.start, end: s.end }, scope.key), s.end - 1);
  return {
    entries: () => table.size,
    add(record, ts) {
      const wm = rt.watermark;
      let start = ts;
      let end = ts + gap;
      // A record at or before a session's end joins it; sessions that touch merge. One
      // pass in start order suffices: the key's sessions do not touch one another.
      const joined: Session[] = [];
      const others: Session[] = [];
      for (const s of sessions()) {
        if (s.start > end || s.end < start || s.end + lateness <= wm) {
          others.push(s); // apart, or gone (kept only until its cleanup timer)
          continue;
        }
        start = Math.min(start, s.start);
        end = Math.max(end, s.end);
        joined.push(s);
      }
      // Late only if the session the record ends up in is: a record inside a session
      // that is still open is not late, however far its own [ts, ts + gap) lies behind.
      if (end + lateness <= wm) return false;
      let state: unknown = merging ? agg.add(agg.create(record), record) : [record];
      const k = keyOf(start);
      for (const s of joined) {
        state = merging ? agg.merge(s.state, state) : [...(s.state as unknown[]), ...(state as unknown[])];
        if (s.k !== k) table.delete(s.k); // same start (the usual case: a session grows at its end): overwritten below
        rt.engine.mutations++;
        // A session that grew or merged no longer ends at s.end: its timer goes, unless
        // the new session or another of this key still needs that time (one timer per
        // key and time). A session that fired already keeps its cleanup timer.
        const needed = s.end === end || others.some((o) => o.end === s.end || o.end + lateness === s.end);
        if (s.end > wm && !needed) rt.deleteTimers(s.end);
      }
      table.set(k, toStored([end, state]));
      rt.engine.mutations++;
      if (end > wm) rt.registerEventTimer(end);
      else {
        emitSession({ start, end, state }); // late firing of a session that already closed
        rt.registerEventTimer(end + lateness);
      }
      return true;
    },
    onTimer(time) {
      for (const s of sessions()) {
        if (s.end === time) {
          emitSession(s);
          if (lateness > 0) {
            rt.registerEventTimer(s.end + lateness);
            continue;
          }
        }
        if (s.end + lateness <= time) {
          table.delete(s.k);
          rt.engine.mutations++;
        }
      }
    },
  };
}
