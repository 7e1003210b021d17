// What every Nexmark query flow shares: the event source (with event time and the
// suite's watermark) and the output sink, both set from the environment:
//   NEXMARK_EVENTS  events to generate (default 100,000: 10 s of event time)
//   NEXMARK_SEED    generator seed (default 0)
//   NEXMARK_RATE    events/s: event-time spacing, and wall-clock pacing (default: the
//                   suite's 10,000/s of event time, unpaced)
//   NEXMARK_EVENT_RATE  events/s of event time only, unpaced (e.g. 100: many windows, fast)
//   NEXMARK_OUT     output file (default qN.jsonl in the working directory)
// The plain references of the same queries are in perf/nexmark/reference.ts; each flow
// writes exactly the rows its reference returns.
import { flow, sources, sinks } from 'tidepool';
import type { NexmarkAuction, NexmarkBid, NexmarkEvent, NexmarkPerson } from 'tidepool';

export type { NexmarkAuction, NexmarkBid, NexmarkEvent, NexmarkPerson };
export type Flow = ReturnType<typeof flow>;

/** Fires once every bounded source is exhausted (the watermark becomes Infinity). */
export const END_OF_INPUT = Number.MAX_SAFE_INTEGER;

function envNumber(name: string): number | undefined {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return undefined;
  const n = Number(raw);
  if (!Number.isFinite(n)) throw new Error(`${name}: expected a number, got ${JSON.stringify(raw)}`);
  return n;
}

/** The source 'events': persons, auctions and bids, event time `dateTime`, 4 s out of order allowed (the suite's WATERMARK). */
export function nexmarkEvents(f: Flow) {
  const rate = envNumber('NEXMARK_RATE');
  const spec = sources.nexmark({
    events: envNumber('NEXMARK_EVENTS') ?? 100_000,
    seed: envNumber('NEXMARK_SEED') ?? 0,
    ...(rate === undefined ? {} : { rate }),
    ...(envNumber('NEXMARK_EVENT_RATE') === undefined ? {} : { eventRate: envNumber('NEXMARK_EVENT_RATE') }),
  });
  return f.source('events', spec, {
    eventTime: (e: NexmarkEvent) => e.dateTime,
    watermark: { maxOutOfOrdernessMs: 4000 },
  });
}

/** The query's output file: NEXMARK_OUT, or `<query>.jsonl`. */
export function output(query: string) {
  return sinks.file({ path: process.env.NEXMARK_OUT ?? `${query}.jsonl` });
}

export const isBid = (e: NexmarkEvent): e is NexmarkBid => e.type === 'bid';
export const isAuction = (e: NexmarkEvent): e is NexmarkAuction => e.type === 'auction';
export const isPerson = (e: NexmarkEvent): e is NexmarkPerson => e.type === 'person';
