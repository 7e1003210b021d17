// A plain model of event-time windows (what test-fixtures/flows/windows/model.ts must
// output when no record is late), and fast-check arbitraries for its inputs: event
// streams with bounded disorder and window operator specs.
//
// Model: windows are half-open [start, end); a tumbling or sliding window starts at
// offset + k·slide; a session is a maximal run of a key's timestamps with gaps ≤ gapMs,
// as [first, last + gapMs). Output per (key, window) with at least one record.
import fc from 'fast-check';

/** A record key: what keyBy returns (a tuple key is an array). */
export type K = string | number | boolean | (string | number)[];
export interface Ev { id: number; k: K; t: number }
export interface WindowOp {
  name: string;
  kind: 'tumbling' | 'sliding' | 'session';
  sizeMs?: number;
  slideMs?: number;
  offsetMs?: number;
  gapMs?: number;
  mode: 'agg-merge' | 'agg' | 'reduce';
  result: boolean;
  stamp?: boolean;
  second?: number;
  lateness?: number;
}
export interface WindowCase { events: Ev[]; D: number; union: boolean; ops: WindowOp[]; sessionExtraD?: number }
export interface WindowSpec { out: string; cases: WindowCase[] }

export interface Win { key: K; start: number; end: number; ids: number[] }

const mod = (a: number, m: number) => ((a % m) + m) % m;

/** The windows of one operator over the events, ids sorted. */
export function modelWindows(events: Ev[], op: WindowOp): Win[] {
  const byKey = new Map<string, Ev[]>();
  for (const e of events) {
    let a = byKey.get(JSON.stringify(e.k));
    if (!a) byKey.set(JSON.stringify(e.k), (a = []));
    a.push(e);
  }
  const out: Win[] = [];
  for (const evs of byKey.values()) {
    const key = evs[0]!.k;
    if (op.kind === 'session') {
      const sorted = [...evs].sort((a, b) => a.t - b.t);
      let cur: Win | undefined;
      let last = -Infinity;
      for (const e of sorted) {
        if (cur && e.t - last <= op.gapMs!) {
          cur.ids.push(e.id);
          last = e.t;
          cur.end = e.t + op.gapMs!;
          continue;
        }
        cur = { key, start: e.t, end: e.t + op.gapMs!, ids: [e.id] };
        last = e.t;
        out.push(cur);
      }
      continue;
    }
    const size = op.sizeMs!;
    const slide = op.kind === 'sliding' ? op.slideMs! : size;
    const offset = op.offsetMs ?? 0;
    const wins = new Map<number, Win>();
    for (const e of evs) {
      // Every start s ≡ offset (mod slide) with s ≤ t < s + size.
      for (let s = e.t - mod(e.t - offset, slide); s > e.t - size; s -= slide) {
        let w = wins.get(s);
        if (!w) wins.set(s, (w = { key, start: s, end: s + size, ids: [] }));
        w.ids.push(e.id);
      }
    }
    out.push(...wins.values());
  }
  for (const w of out) w.ids.sort((a, b) => a - b);
  return out;
}

/** The record the fixture's sink of `op` holds for window `w` (as the file sink writes it). */
export function windowRecord(w: Win, op: WindowOp): unknown {
  if (op.result && op.mode !== 'reduce') return { key: w.key, start: w.start, end: w.end, ids: [...w.ids].sort((a, b) => a - b) };
  let n = 0, sum = 0, sq = 0;
  for (const id of w.ids) {
    n++;
    sum += id;
    sq += id * id;
  }
  return { key: w.key, window: { start: w.start, end: w.end }, value: { n, sum, sq } };
}

/** What the fixture's sink of `op` holds for these events. */
export const modelRecords = (events: Ev[], op: WindowOp): unknown[] => modelWindows(events, op).map((w) => windowRecord(w, op));

/** The second-level tumbling window over an operator's results (timestamp end − 1). */
export function modelSecond(events: Ev[], op: WindowOp): unknown[] {
  const size = op.second!;
  const firsts = modelWindows(events, op);
  const recs = modelRecords(events, op);
  const groups = new Map<string, { key: K; start: number; inner: string[] }>();
  firsts.forEach((w, i) => {
    const ts = w.end - 1;
    const start = ts - mod(ts, size);
    const g = `${JSON.stringify(w.key)}@${start}`;
    let x = groups.get(g);
    if (!x) groups.set(g, (x = { key: w.key, start, inner: [] }));
    x.inner.push(JSON.stringify(recs[i]));
  });
  return [...groups.values()].map((x) => ({ key: x.key, start: x.start, end: x.start + size, inner: x.inner.sort() }));
}

/** Canonical multiset of records: sorted JSON lines. */
export const multiset = (records: unknown[]): string[] => records.map((r) => JSON.stringify(r)).sort();

// ---- arbitraries ----

const KEYS: K[] = ['a', 'b', 7, -3.5, ['u', 1], true];

/**
 * Events with disorder ≤ D: a non-decreasing clock c (steps 0…maxStep) and t = c − r,
 * r ∈ [0, D]; so every t ≥ (largest earlier t) − D. Ids are 0…n−1 in stream order.
 */
export function eventsArb(opts: { maxEvents: number; maxStep: number; keys?: number }): fc.Arbitrary<{ events: Ev[]; D: number }> {
  const keys = KEYS.slice(0, opts.keys ?? KEYS.length);
  return fc
    .record({
      D: fc.integer({ min: 0, max: 40 }),
      base: fc.integer({ min: -300, max: 300 }),
      steps: fc.array(fc.record({ step: fc.integer({ min: 0, max: opts.maxStep }), back: fc.double({ min: 0, max: 1, noNaN: true }), k: fc.constantFrom(...keys) }), { minLength: 1, maxLength: opts.maxEvents, size: 'max' }),
    })
    .map(({ D, base, steps }) => {
      let c = base;
      const events = steps.map((s, id) => {
        c += s.step;
        return { id, k: s.k, t: c - Math.round(s.back * D) };
      });
      return { D, events };
    });
}

/** A tumbling, sliding or session operator spec (names are filled in by the caller). */
export const tumblingArb: fc.Arbitrary<Omit<WindowOp, 'name'>> = fc.record({
  kind: fc.constant('tumbling' as const),
  sizeMs: fc.integer({ min: 1, max: 60 }),
  offsetMs: fc.option(fc.integer({ min: -100, max: 100 }), { nil: undefined }),
  mode: fc.constantFrom('agg-merge' as const, 'agg' as const, 'reduce' as const),
  result: fc.boolean(),
});

export const slidingArb: fc.Arbitrary<Omit<WindowOp, 'name'>> = fc
  .record({
    slideMs: fc.integer({ min: 1, max: 25 }),
    ratio: fc.integer({ min: 1, max: 6 }),
    // Often a size that is not a multiple of the slide.
    extra: fc.double({ min: 0, max: 1, noNaN: true }),
    offsetMs: fc.option(fc.integer({ min: -60, max: 60 }), { nil: undefined }),
    mode: fc.constantFrom('agg-merge' as const, 'agg' as const, 'reduce' as const),
    result: fc.boolean(),
  })
  .map(({ slideMs, ratio, extra, offsetMs, mode, result }) => ({
    kind: 'sliding' as const,
    slideMs,
    sizeMs: slideMs * ratio + (ratio < 6 ? Math.floor(extra * slideMs) : 0),
    offsetMs,
    mode,
    result,
  }));

export const sessionArb: fc.Arbitrary<Omit<WindowOp, 'name'>> = fc.record({
  kind: fc.constant('session' as const),
  gapMs: fc.integer({ min: 1, max: 40 }),
  mode: fc.constantFrom('agg-merge' as const, 'agg' as const, 'reduce' as const),
  result: fc.boolean(),
});
