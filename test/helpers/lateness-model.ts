// A sequential model of windows with allowed lateness, for a run where the window
// operator sees record 0, watermark 0, record 1, watermark 1, … (parallelism 1, one
// source subtask, batchSize 1: a watermark follows every record that moved it). The
// watermark when record i arrives is max(t0 … t(i−1)) − D.
//
// Rules (the contract's): a window fires when the watermark reaches its end; a record
// for a window that fired but whose end + allowedLatenessMs is still > the watermark
// updates it and the window is emitted again at once; a window whose end + lateness
// ≤ the watermark is gone. A record is dropped — and goes to `.late()` — only when it
// is too late for every window it belongs to. A session record first merges with the
// sessions it touches that are not gone; it is late only if the merged session is.
import type { Ev, K, Win, WindowOp } from './window-model.js';
import { windowRecord } from './window-model.js';

const mod = (a: number, m: number) => ((a % m) + m) % m;

interface Cell extends Win { fired: boolean }

export interface LatenessOutcome {
  /** Every emission of a window (a window emitted again after a late record is there twice). */
  out: unknown[];
  late: Ev[];
}

export function modelLateness(events: Ev[], D: number, op: WindowOp): LatenessOutcome {
  const L = op.lateness ?? 0;
  const out: unknown[] = [];
  const late: Ev[] = [];
  let wm = -Infinity;
  let maxT = -Infinity;
  const emit = (w: Cell) => out.push(windowRecord(w, op));
  // Live windows / sessions of every key (gone ones are removed).
  const cells = new Map<string, Cell[]>(); // by JSON of the key
  const of = (k: K) => {
    let a = cells.get(JSON.stringify(k));
    if (!a) cells.set(JSON.stringify(k), (a = []));
    return a;
  };
  const fireUpTo = (w: number) => {
    for (const list of cells.values()) {
      for (const c of list) {
        if (!c.fired && c.end <= w) {
          c.fired = true;
          emit(c);
        }
      }
    }
    for (const [k, list] of cells) cells.set(k, list.filter((c) => c.end + L > w));
  };
  for (const e of events) {
    const list = of(e.k);
    if (op.kind === 'session') {
      const gap = op.gapMs!;
      let start = e.t;
      let end = e.t + gap;
      const ids = [e.id];
      let fired = false;
      const rest: Cell[] = [];
      for (const s of [...list].sort((a, b) => a.start - b.start)) {
        if (s.start > end || s.end < start) {
          rest.push(s);
          continue;
        }
        start = Math.min(start, s.start);
        end = Math.max(end, s.end);
        ids.push(...s.ids);
      }
      if (end + L <= wm) late.push(e);
      else {
        const merged: Cell = { key: e.k, start, end, ids, fired };
        if (end <= wm) {
          merged.fired = true;
          emit(merged);
        }
        cells.set(JSON.stringify(e.k), [...rest, merged]);
      }
    } else {
      const size = op.sizeMs!;
      const slide = op.kind === 'sliding' ? op.slideMs! : size;
      const offset = op.offsetMs ?? 0;
      let added = false;
      for (let s = e.t - mod(e.t - offset, slide); s > e.t - size; s -= slide) {
        const end = s + size;
        if (end + L <= wm) continue;
        added = true;
        let c = list.find((x) => x.start === s);
        if (!c) list.push((c = { key: e.k, start: s, end, ids: [], fired: end <= wm }));
        c.ids.push(e.id);
        if (end <= wm) emit(c);
      }
      if (!added) late.push(e);
    }
    maxT = Math.max(maxT, e.t);
    if (maxT - D > wm) {
      wm = maxT - D;
      fireUpTo(wm);
    }
  }
  fireUpTo(Infinity);
  return { out, late };
}
