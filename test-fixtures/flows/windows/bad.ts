// Bad event-time set-ups for test/windows-model.test.ts, one per TP_BAD (see `cases`).
// The source writes TP_MARK when it is first read, so a test can tell an error raised
// before any record flowed from one raised while records flow.
import { writeFileSync } from 'node:fs';
import { flow, sinks, windows, type SourceSpec, type WindowAssigner } from 'tidepool';

interface Rec { id: number; k: string; t: unknown }
const bad = process.env.TP_BAD ?? '';
const mark = process.env.TP_MARK;
const out = process.env.TP_OUT;
if (!mark || !out) throw new Error('bad fixture: set TP_BAD, TP_MARK and TP_OUT');

function marked(records: Rec[]): SourceSpec<Rec> {
  return {
    kind: 'source',
    type: 'fixture-marked',
    bounded: true,
    maxParallelism: 1,
    open() {
      let i = 0;
      return {
        next(max: number) {
          writeFileSync(mark!, 'read');
          if (i >= records.length) return null;
          const b = records.slice(i, i + max);
          i += b.length;
          return b;
        },
        position: () => i,
        seek: (p: unknown) => void (i = p as number),
        close: () => undefined,
      };
    },
  };
}

const recs = (t3: unknown): Rec[] => [0, 1, 2, 3, 4].map((id) => ({ id, k: 'a', t: id === 3 ? t3 : id * 10 }));
const eventTime = (r: Rec) => r.t as number;

const assigners: Record<string, () => WindowAssigner> = {
  'tumbling-zero': () => windows.tumbling({ sizeMs: 0 }),
  'tumbling-fraction': () => windows.tumbling({ sizeMs: 2.5 }),
  'tumbling-string': () => windows.tumbling({ sizeMs: '10' as unknown as number }),
  'tumbling-offset-fraction': () => windows.tumbling({ sizeMs: 10, offsetMs: 0.5 }),
  'sliding-slide-over-size': () => windows.sliding({ sizeMs: 10, slideMs: 20 }),
  'sliding-slide-zero': () => windows.sliding({ sizeMs: 10, slideMs: 0 }),
  'sliding-size-infinite': () => windows.sliding({ sizeMs: Infinity, slideMs: 10 }),
  'session-zero': () => windows.session({ gapMs: 0 }),
  'session-negative': () => windows.session({ gapMs: -5 }),
};

const f = flow('bad-event-time');
const withTime = (name: string, t3: unknown = 30) => f.source(name, marked(recs(t3)), { eventTime });
let input;
let assigner = () => windows.tumbling({ sizeMs: 10 });
let lateness = 0;
if (bad in assigners) {
  assigner = assigners[bad]!;
  input = withTime('events');
} else if (bad === 'lateness-negative') {
  lateness = -1;
  input = withTime('events');
} else if (bad === 'no-event-time') {
  input = f.source('events', marked(recs(30)));
} else if (bad === 'union-one-without') {
  input = withTime('events').union(f.source('plain', marked(recs(30))));
} else if (bad === 'event-time-nan') {
  input = withTime('events', NaN);
} else if (bad === 'event-time-infinite') {
  input = withTime('events', Infinity);
} else if (bad === 'event-time-string') {
  input = withTime('events', '2024-05-01T10:00:00Z');
} else {
  throw new Error(`bad fixture: unknown TP_BAD ${bad}`);
}
input
  .keyBy((r) => r.k)
  .window(assigner())
  .aggregate('w', { create: () => 0, add: (n: number) => n + 1 }, { allowedLatenessMs: lateness })
  .sink('out', sinks.file({ path: out }));
export default f;
