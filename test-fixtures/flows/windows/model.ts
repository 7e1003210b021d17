// Event-time windows for test/windows-model.test.ts, built from the JSON file TP_SPEC
// (its shape: WindowSpec in test/helpers/window-model.ts). Every case is an independent
// sub-graph of one flow: its own source(s) (one, or two unioned: even and odd ids),
// a map, and per window operator a sink `<out>/<case>-<op>.jsonl`. Session operators
// read a second copy of the events with maxOutOfOrdernessMs D + 1, so their disorder
// is strictly below it (a record exactly at the watermark may or may not meet a
// session ending there, depending on batching: not a deterministic model). With
// `lateness` an operator has allowedLatenessMs and a sink for its `.late()` records
// (test/window-lateness.test.ts, which runs with parallelism 1 and batchSize 1).
import { readFileSync } from 'node:fs';
import { flow, sources, sinks, windows, type DataStream, type WindowAssigner } from 'tidepool';

interface Ev { id: number; k: string | number; t: number }
interface Op {
  name: string;
  kind: 'tumbling' | 'sliding' | 'session';
  sizeMs?: number;
  slideMs?: number;
  offsetMs?: number;
  gapMs?: number;
  /** agg-merge: aggregate with merge; agg: without; reduce: window reduce. */
  mode: 'agg-merge' | 'agg' | 'reduce';
  result: boolean;
  /** Also emit each result with its timestamp (a process after the window). */
  stamp?: boolean;
  /** Also a tumbling window of this size over the results (watermarks forwarded). */
  second?: number;
  /** allowedLatenessMs; when set, `.late()` goes to `<out>/<case>-<op>-late.jsonl`. */
  lateness?: number;
}
/** sessionExtraD: added to D for the session operators' source (default 1). */
interface Case { events: Ev[]; D: number; union: boolean; ops: Op[]; sessionExtraD?: number }
interface Spec { out: string; cases: Case[] }

const specPath = process.env.TP_SPEC;
if (!specPath) throw new Error('windows model fixture: set TP_SPEC');
const spec = JSON.parse(readFileSync(specPath, 'utf8')) as Spec;

interface Stats { n: number; sum: number; sq: number }
const stats = {
  create: (): Stats => ({ n: 0, sum: 0, sq: 0 }),
  add: (a: Stats, e: Ev): Stats => ({ n: a.n + 1, sum: a.sum + e.id, sq: a.sq + e.id * e.id }),
  merge: (a: Stats, b: Stats): Stats => ({ n: a.n + b.n, sum: a.sum + b.sum, sq: a.sq + b.sq }),
};

const f = flow('windows-model');

function input(c: number, cs: Case, D: number, tag: string): DataStream<Ev> {
  const opts = { eventTime: (e: Ev) => e.t, watermark: { maxOutOfOrdernessMs: D } };
  let s: DataStream<Ev>;
  if (cs.union) {
    const a = f.source(`c${c}-${tag}a`, sources.array(cs.events.filter((e) => e.id % 2 === 0)), opts);
    const b = f.source(`c${c}-${tag}b`, sources.array(cs.events.filter((e) => e.id % 2 === 1)), opts);
    s = a.union(b);
  } else {
    s = f.source(`c${c}-${tag}`, sources.array(cs.events), opts);
  }
  return s.map(`c${c}-${tag}parse`, (e) => ({ ...e }));
}

function assigner(o: Op): WindowAssigner {
  if (o.kind === 'tumbling') return windows.tumbling({ sizeMs: o.sizeMs!, ...(o.offsetMs !== undefined ? { offsetMs: o.offsetMs } : {}) });
  if (o.kind === 'sliding') return windows.sliding({ sizeMs: o.sizeMs!, slideMs: o.slideMs!, ...(o.offsetMs !== undefined ? { offsetMs: o.offsetMs } : {}) });
  return windows.session({ gapMs: o.gapMs! });
}

spec.cases.forEach((cs, c) => {
  const aligned = cs.ops.some((o) => o.kind !== 'session') ? input(c, cs, cs.D, 'ev') : undefined;
  const session = cs.ops.some((o) => o.kind === 'session') ? input(c, cs, cs.D + (cs.sessionExtraD ?? 1), 'sev') : undefined;
  for (const o of cs.ops) {
    const name = `c${c}-${o.name}`;
    const w = (o.kind === 'session' ? session! : aligned!).keyBy((e) => e.k).window(assigner(o));
    const late = o.lateness === undefined ? {} : { allowedLatenessMs: o.lateness };
    const res = (() => {
      if (o.mode === 'reduce') return w.reduce(name, (a: Stats | undefined, e: Ev) => stats.add(a ?? stats.create(), e), late);
      if (o.result) {
        // The accumulator is the ids in arrival order; the result sorts them.
        const result = (ids: number[], win: { start: number; end: number }, key: unknown) => ({ key, start: win.start, end: win.end, ids: [...ids].sort((x, y) => x - y) });
        const base = { create: (): number[] => [], add: (a: number[], e: Ev) => [...a, e.id], result };
        return w.aggregate(name, o.mode === 'agg-merge' ? { ...base, merge: (a: number[], b: number[]) => [...a, ...b] } : base, late);
      }
      return w.aggregate(name, o.mode === 'agg-merge' ? stats : { create: stats.create, add: stats.add }, late);
    })();
    const out = res as DataStream<{ key: string | number }>;
    out.sink(`${name}-out`, sinks.file({ path: `${spec.out}/${name}.jsonl` }));
    if (o.lateness !== undefined) res.late().sink(`${name}-late`, sinks.file({ path: `${spec.out}/${name}-late.jsonl` }));
    if (o.stamp) {
      out
        .keyBy((r) => r.key)
        .process(`${name}-stamp`, (r, ctx) => ctx.emit({ r, ts: ctx.timestamp, wm: ctx.watermark }))
        .sink(`${name}-stamp-out`, sinks.file({ path: `${spec.out}/${name}-stamp.jsonl` }));
    }
    if (o.second !== undefined) {
      // Results of the first window as events of a second one (timestamp end − 1).
      out
        .keyBy((r) => r.key)
        .window(windows.tumbling({ sizeMs: o.second }))
        .aggregate(`${name}-second`, {
          create: (): string[] => [],
          add: (a: string[], r) => [...a, JSON.stringify(r)],
          merge: (a: string[], b: string[]) => [...a, ...b],
          result: (a: string[], win, key) => ({ key, start: win.start, end: win.end, inner: [...a].sort() }),
        })
        .sink(`${name}-second-out`, sinks.file({ path: `${spec.out}/${name}-second.jsonl` }));
    }
  }
});

export default f;
