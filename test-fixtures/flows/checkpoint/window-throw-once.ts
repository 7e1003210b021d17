// A sliding-window count whose input fails once, for an in-process restart from a
// checkpoint. TP_N records { k, i, t } (5 keys, 10 ms of event time apart, so each key has
// 100 records per 5 s pane: a key's current pane is updated many times between
// checkpoints, and windows end only every 500 records, so a barrier nearly always finds
// the current panes changed since their last firing), paced by TP_RATE; map 'boom' throws
// once at record TP_BOOM_AT (marker file TP_MARKER); keyBy k → sliding 20 s / 5 s count
// (with merge: panes) → file sink TP_OUT.
import { flow, sources, sinks, windows } from 'tidepool';
import { envRate, pacer } from './lib/pace.js';
import { boomOnce, throwOnceEnv } from './lib/throw-once.js';

interface Rec { k: string; i: number; t: number }

const { n, boomAt, marker, out } = throwOnceEnv('window-throw-once');
const pace = pacer(envRate());
const T0 = 1_700_000_000_000;

export default flow('chk-window-throw-once')
  .source('gen', sources.generator({ count: n, make: (i): Rec => (pace(), { k: `k${i % 5}`, i, t: T0 + i * 10 }) }), { eventTime: (r: Rec) => r.t, watermark: { maxOutOfOrdernessMs: 2000 } })
  .map('boom', boomOnce<Rec>(boomAt, marker))
  .keyBy((r: Rec) => r.k)
  .window(windows.sliding({ sizeMs: 20_000, slideMs: 5_000 }))
  .aggregate('counts', { create: () => 0, add: (c: number) => c + 1, merge: (a: number, b: number) => a + b })
  .sink('out', sinks.file({ path: out }));
