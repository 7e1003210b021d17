// Bids per auction over sources.nexmark, for the Nexmark source's end-to-end test:
// TP_EVENTS events (seed TP_SEED) → bids only → keyBy(auction) → count → file sink
// TP_OUT (lines { key: auction, value: bids so far }). TP_RATE paces the source
// (events/s over all subtasks; unset: unpaced).
import { flow, sources, sinks } from 'tidepool';

interface Event { type: string; auction?: number }

const events = Number(process.env.TP_EVENTS);
const seed = Number(process.env.TP_SEED ?? 0);
const rate = process.env.TP_RATE ? Number(process.env.TP_RATE) : undefined;
const out = process.env.TP_OUT;
if (!Number.isSafeInteger(events) || !out) throw new Error('nexmark-bids fixture: set TP_EVENTS and TP_OUT (and TP_SEED, TP_RATE)');

export default flow('chk-nexmark')
  .source('events', sources.nexmark(rate === undefined ? { events, seed } : { events, seed, rate }))
  .filter('bids', (e: Event) => e.type === 'bid')
  .keyBy((b: Event) => b.auction!)
  .reduce('counts', (n: number | undefined, _b: Event) => (n ?? 0) + 1)
  .sink('out', sinks.file({ path: out }));
