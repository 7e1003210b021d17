// Joins of two keyed streams, on keyed state (checkpointed and rescaled with the tables).
//
//   join          [group, key, epoch, seq]       → [ts, record(, insertedAt)]   per side
//                 inner join: a record meets every stored record of the other side with
//                 its key, then is stored; with ttlMs an entry expires ttlMs of
//                 processing time after it was stored (skipped on reads, purged by a
//                 processing-time timer of its key).
//   intervalJoin  [group, key, ts, epoch, seq]   → record                       per side
//                 left x meets right y when x.ts + lowerMs ≤ y.ts ≤ x.ts + upperMs; an
//                 entry goes once the watermark passes the last time it can match
//                 (an event-time timer of its key); records behind the watermark are late.
//   windowJoin    [group, key, end, side, epoch, seq] → record
//                 pairs of the same window, emitted when it closes (timestamp end − 1).
//
// `epoch` is the checkpoint the run restored (0 for a fresh start) and `seq` counts
// records of this run: entries written after the restored checkpoint were discarded
// with its state, so (epoch, seq) never collides with a stored entry.
// Output timestamp of join and intervalJoin: the larger of the pair's.
import type { LogicalOperator, WindowAssigner } from '../flow/types.js';
import { encodeKey, decodeKey, prefixBounds, type Key } from '../state/keys.js';
import { fromStored, toStored } from '../state/values.js';
import type { DueTimer } from '../time/timers.js';
import { KeyedRuntime, notAsync, userError, type Emit, type OperatorInstance, type StepEnv } from './keyed.js';

const mod = (a: number, m: number) => ((a % m) + m) % m;
const TTL_GRANULARITY_MS = 1000;

export interface JoinEnv extends StepEnv {
  /** The checkpoint this run restored (0: a fresh start): the first part of entry ids. */
  epoch: number;
}

type PairFn = (x: unknown, y: unknown, w?: { start: number; end: number }) => unknown;

function pairCaller(op: LogicalOperator, env: StepEnv, rt: KeyedRuntime) {
  const fn = op.fn as PairFn;
  return (x: unknown, y: unknown, ts: number, w?: { start: number; end: number }) => {
    let out: unknown;
    try {
      out = w ? fn(x, y, w) : fn(x, y);
      notAsync(op, out);
    } catch (e) {
      throw userError(op, env, [x, y], e);
    }
    rt.emit(out, ts);
  };
}

/** `entries()`: the join's state size, both sides (for the run's metrics). */
function base(rt: KeyedRuntime, env: StepEnv, entries: () => number, push: (r: unknown, ts: number, side: 0 | 1) => void, onTimer: (t: DueTimer) => void, processing?: (t: DueTimer) => void): OperatorInstance {
  return {
    push(record, ts, side) {
      rt.setKey(record, side);
      rt.timestamp = ts;
      push(record, ts, side);
      env.afterState?.();
    },
    onWatermark(wm) {
      rt.watermark = wm;
      rt.fireEvent(wm, onTimer);
    },
    onProcessingTime(now) {
      if (processing) rt.fireProcessing(now, processing);
    },
    nextProcessingTime: () => (processing ? rt.nextProcessingTime() : Infinity),
    beforeSnapshot() {},
    stats: () => ({ ...rt.stats(), joinState: entries() }),
  };
}

export function makeJoin(op: LogicalOperator, env: JoinEnv, emit: Emit): OperatorInstance {
  const rt = new KeyedRuntime(op, env, emit);
  const tables = [rt.engine.table(`${op.name}/~left`), rt.engine.table(`${op.name}/~right`)] as const;
  const ttl = op.options?.ttlMs;
  const pair = pairCaller(op, env, rt);
  let seq = 0;
  const live = (v: [number, unknown, number?], now: number) => ttl === undefined || now - v[2]! < ttl;
  const purge = (side: 0 | 1, now: number) => {
    const dead: string[] = [];
    for (const [k, v] of tables[side].entries(prefixBounds([rt.scope.group, rt.scope.key as Key]))) {
      if (!live(fromStored(v) as [number, unknown, number], now)) dead.push(k);
    }
    for (const k of dead) tables[side].delete(k);
    if (dead.length) rt.engine.mutations++;
  };
  return base(
    rt,
    env,
    () => tables[0].size + tables[1].size,
    (record, ts, side) => {
      const now = Date.now();
      const other = (1 - side) as 0 | 1;
      for (const [, v] of tables[other].entries(prefixBounds([rt.scope.group, rt.scope.key as Key]))) {
        const e = fromStored(v) as [number, unknown, number?];
        if (!live(e, now)) continue;
        const t = e[0] === e[0] && ts === ts ? Math.max(ts, e[0]) : ts === ts ? ts : e[0];
        if (side === 0) pair(record, e[1], t);
        else pair(e[1], record, t);
      }
      const k = rt.scope.open + encodeKey(env.epoch) + encodeKey(seq++) + '\x00';
      tables[side].set(k, toStored(ttl === undefined ? [ts, record] : [ts, record, now]));
      rt.engine.mutations++;
      if (ttl !== undefined) rt.registerProcessingTimer(Math.ceil((now + ttl) / TTL_GRANULARITY_MS) * TTL_GRANULARITY_MS);
    },
    () => undefined,
    ttl === undefined ? undefined : () => {
      const now = Date.now();
      purge(0, now);
      purge(1, now);
    },
  );
}

export function makeIntervalJoin(op: LogicalOperator, env: JoinEnv, emit: Emit, emitLate: Emit): OperatorInstance {
  const rt = new KeyedRuntime(op, env, emit);
  const tables = [rt.engine.table(`${op.name}/~left`), rt.engine.table(`${op.name}/~right`)] as const;
  const lower = op.options!.lowerMs!;
  const upper = op.options!.upperMs!;
  const pair = pairCaller(op, env, rt);
  let seq = 0;
  const keyPrefix = () => rt.scope.open;
  const tsKey = (t: number) => keyPrefix() + encodeKey(t);
  return base(
    rt,
    env,
    () => tables[0].size + tables[1].size,
    (record, ts, side) => {
      if (ts !== ts) throw userError(op, env, record, new TypeError('the record has no event time (its source has no eventTime)'));
      if (ts < rt.watermark) {
        rt.lateRecords++;
        emitLate(record, ts);
        return;
      }
      // The other side's matching time range, inclusive at both ends.
      const [lo, hi] = side === 0 ? [ts + lower, ts + upper] : [ts - upper, ts - lower];
      const other = tables[(1 - side) as 0 | 1];
      const end = prefixBounds([rt.scope.group, rt.scope.key as Key]).lt;
      for (const [k, v] of other.entries({ gte: tsKey(lo), lt: end })) {
        const t = (decodeKey(k) as Key[])[2] as number;
        if (t > hi) break;
        const y = fromStored(v);
        if (side === 0) pair(record, y, Math.max(ts, t));
        else pair(y, record, Math.max(ts, t));
      }
      tables[side].set(tsKey(ts) + encodeKey(env.epoch) + encodeKey(seq++) + '\x00', toStored(record));
      rt.engine.mutations++;
      // Kept until no record of the other side can match it any more.
      rt.registerEventTimer(side === 0 ? ts + upper + 1 : ts - lower + 1);
    },
    (t) => {
      // Left entries with ts + upper < time, right entries with ts − lower < time can go.
      const end = prefixBounds([rt.scope.group, rt.scope.key as Key]).lt;
      const limits = [t.time - upper, t.time + lower];
      for (const side of [0, 1] as const) {
        const dead: string[] = [];
        for (const [k] of tables[side].entries({ gte: prefixBounds([rt.scope.group, rt.scope.key as Key]).gte, lt: end })) {
          if (((decodeKey(k) as Key[])[2] as number) >= limits[side]!) break;
          dead.push(k);
        }
        for (const k of dead) tables[side].delete(k);
        if (dead.length) rt.engine.mutations++;
      }
    },
  );
}

export function makeWindowJoin(op: LogicalOperator, env: JoinEnv, emit: Emit, emitLate: Emit): OperatorInstance {
  const rt = new KeyedRuntime(op, env, emit);
  const table = rt.engine.table(`${op.name}/~windows`);
  const a = op.options!.assigner! as WindowAssigner & { kind: 'tumbling' | 'sliding' };
  const size = a.sizeMs;
  const slide = a.kind === 'sliding' ? a.slideMs : a.sizeMs;
  const offset = a.offsetMs;
  const pair = pairCaller(op, env, rt);
  let seq = 0;
  return base(
    rt,
    env,
    () => table.size,
    (record, ts, side) => {
      if (ts !== ts) throw userError(op, env, record, new TypeError('the record has no event time (its source has no eventTime)'));
      const maxEnd = ts - mod(ts - offset, slide) + size;
      let kept = false;
      for (let e = maxEnd; e > ts; e -= slide) {
        if (e <= rt.watermark) continue; // that window closed
        table.set(rt.scope.open + encodeKey(e) + encodeKey(side) + encodeKey(env.epoch) + encodeKey(seq++) + '\x00', toStored(record));
        rt.registerEventTimer(e);
        kept = true;
      }
      if (kept) rt.engine.mutations++;
      else {
        rt.lateRecords++;
        emitLate(record, ts);
      }
    },
    (t) => {
      const end = t.time;
      const w = { start: end - size, end };
      const sides: unknown[][] = [[], []];
      const keys: string[] = [];
      for (const [k, v] of table.entries(prefixBounds([rt.scope.group, rt.scope.key as Key, end]))) {
        sides[(decodeKey(k) as Key[])[3] as 0 | 1]!.push(fromStored(v));
        keys.push(k);
      }
      for (const x of sides[0]!) for (const y of sides[1]!) pair(x, y, end - 1, w);
      for (const k of keys) table.delete(k);
      if (keys.length) rt.engine.mutations++;
    },
  );
}
