// Plain single-threaded reference implementations of the Nexmark queries that
// examples/nexmark/ runs as flows, over the events of `sources.nexmark`. Each follows
// the SQL of the Nexmark suite (nexmark-flink/src/main/resources/queries/qN.sql) and
// returns the rows of its final result; the flows write exactly these rows (same fields,
// same order), so a test compares the two as multisets (`multiset()`).
//
// Semantics carried over from the SQL:
//   - windows are half-open [start, end), aligned to the epoch; BETWEEN is inclusive;
//   - AVG of BIGINT is BIGINT: the sum divided by the count, truncated;
//   - 0.908 * price is DECIMAL(23, 3): exactly price·908/1000, here the nearest double;
//   - a session window is [first, last + gap); a bid at most `gap` after the session's
//     last bid (end inclusive) joins it.
// Streaming queries without windows (q3, q4) produce an updating result in Flink; the
// reference gives what that result is once the input ends: for q3 every matching pair
// (an insert-only join), for q4 one row per category.
//
// Deliberate differences from the Flink SQL, both in the reference and in the flows:
//   - q4's sink table calls the category column `id`; here it is `category`;
//   - q7's INSERT lists `B.price, B.bidder` into sink columns (bidder, price), swapping
//     them; here each value is in the column of its name.
import type { NexmarkAuction, NexmarkBid, NexmarkEvent, NexmarkPerson } from '../../src/connectors/nexmark-events.js';

export interface Q0Row { auction: number; bidder: number; price: number; dateTime: number; extra: string }
/** `price` in euros: price · 0.908, three decimals. */
export interface Q1Row { auction: number; bidder: number; price: number; dateTime: number; extra: string }
export interface Q2Row { auction: number; price: number }
/** A seller's name, city and state, and `id` the auction's id. */
export interface Q3Row { name: string; city: string; state: string; id: number }
/** `final`: the average winning price of the category's auctions, truncated. */
export interface Q4Row { category: number; final: number }
export interface Q5Row { auction: number; num: number }
export interface Q7Row { auction: number; bidder: number; price: number; dateTime: number; extra: string }
/** A person who opened an auction in the 10 s window `stime` in which they registered. */
export interface Q8Row { id: number; name: string; stime: number }
export interface Q11Row { bidder: number; bid_count: number; starttime: number; endtime: number }
export interface Q12Row { bidder: number; bid_count: number; starttime: number; endtime: number }

export const Q1_RATE_PER_MILLE = 908;
export const Q2_MODULUS = 123;
export const Q3_STATES: readonly string[] = ['OR', 'ID', 'CA'];
export const Q3_CATEGORY = 10;
export const Q5_SIZE_MS = 10_000;
export const Q5_SLIDE_MS = 2_000;
export const Q7_SIZE_MS = 10_000;
export const Q8_SIZE_MS = 10_000;
export const Q11_GAP_MS = 10_000;
export const Q12_SIZE_MS = 10_000;

/** Dollars to euros as DECIMAL(23, 3): price · 908 is an exact integer, then / 1000. */
export const toEuro = (price: number): number => Math.round(price * Q1_RATE_PER_MILLE) / 1000;

/** AVG of a BIGINT column: sum / count in integer arithmetic (truncated toward zero). */
export const integerAverage = (sum: number, count: number): number => {
  const r = sum % count;
  return (sum - r) / count;
};

/** Start of the epoch-aligned window of `sizeMs` that holds `t`. */
const windowStart = (t: number, sizeMs: number): number => t - (((t % sizeMs) + sizeMs) % sizeMs);

const isBid = (e: NexmarkEvent): e is NexmarkBid => e.type === 'bid';
const isAuction = (e: NexmarkEvent): e is NexmarkAuction => e.type === 'auction';
const isPerson = (e: NexmarkEvent): e is NexmarkPerson => e.type === 'person';

function* bidsOf(events: Iterable<NexmarkEvent>): Generator<NexmarkBid> {
  for (const e of events) if (isBid(e)) yield e;
}

const bidRow = (b: NexmarkBid): Q0Row => ({ auction: b.auction, bidder: b.bidder, price: b.price, dateTime: b.dateTime, extra: b.extra });

/** q0 — pass-through: every bid's auction, bidder, price, dateTime and extra. */
export function q0(events: Iterable<NexmarkEvent>): Q0Row[] {
  const out: Q0Row[] = [];
  for (const b of bidsOf(events)) out.push(bidRow(b));
  return out;
}

/** q1 — currency conversion: q0 with the price in euros. */
export function q1(events: Iterable<NexmarkEvent>): Q1Row[] {
  const out: Q1Row[] = [];
  for (const b of bidsOf(events)) {
    out.push({ auction: b.auction, bidder: b.bidder, price: toEuro(b.price), dateTime: b.dateTime, extra: b.extra });
  }
  return out;
}

/** q2 — selection: auction and price of the bids on every 123rd auction. */
export function q2(events: Iterable<NexmarkEvent>): Q2Row[] {
  const out: Q2Row[] = [];
  for (const b of bidsOf(events)) if (b.auction % Q2_MODULUS === 0) out.push({ auction: b.auction, price: b.price });
  return out;
}

/** q3 — local item suggestion: sellers in OR, ID or CA and their category-10 auctions. */
export function q3(events: Iterable<NexmarkEvent>): Q3Row[] {
  const persons = new Map<number, NexmarkPerson>();
  const auctions: NexmarkAuction[] = [];
  for (const e of events) {
    if (isPerson(e) && Q3_STATES.includes(e.state)) persons.set(e.id, e);
    else if (isAuction(e) && e.category === Q3_CATEGORY) auctions.push(e);
  }
  const out: Q3Row[] = [];
  for (const a of auctions) {
    const p = persons.get(a.seller);
    if (p) out.push({ name: p.name, city: p.city, state: p.state, id: a.id });
  }
  return out;
}

/**
 * q4 — average price per category: an auction's winning price is its highest bid with
 * auction.dateTime ≤ bid.dateTime ≤ auction.expires (auctions without such a bid have
 * none); per category, the truncated average of the winning prices.
 */
export function q4(events: Iterable<NexmarkEvent>): Q4Row[] {
  const auctions = new Map<number, NexmarkAuction>();
  const bids: NexmarkBid[] = [];
  for (const e of events) {
    if (isAuction(e)) auctions.set(e.id, e);
    else if (isBid(e)) bids.push(e);
  }
  const winning = new Map<number, number>();
  for (const b of bids) {
    const a = auctions.get(b.auction);
    if (!a || b.dateTime < a.dateTime || b.dateTime > a.expires) continue;
    const best = winning.get(a.id);
    if (best === undefined || b.price > best) winning.set(a.id, b.price);
  }
  const perCategory = new Map<number, { sum: number; count: number }>();
  for (const [id, price] of winning) {
    const category = auctions.get(id)!.category;
    const acc = perCategory.get(category) ?? { sum: 0, count: 0 };
    acc.sum += price;
    acc.count++;
    perCategory.set(category, acc);
  }
  return [...perCategory]
    .sort((x, y) => x[0] - y[0])
    .map(([category, { sum, count }]) => ({ category, final: integerAverage(sum, count) }));
}

/**
 * q5 — hot items: per sliding window (10 s, every 2 s) the bid count of each auction;
 * the auctions whose count is the window's largest, with that count.
 */
export function q5(events: Iterable<NexmarkEvent>): Q5Row[] {
  const windows = new Map<number, Map<number, number>>(); // start → auction → count
  for (const b of bidsOf(events)) {
    const last = windowStart(b.dateTime, Q5_SLIDE_MS);
    for (let start = last; start > b.dateTime - Q5_SIZE_MS; start -= Q5_SLIDE_MS) {
      let counts = windows.get(start);
      if (!counts) windows.set(start, (counts = new Map()));
      counts.set(b.auction, (counts.get(b.auction) ?? 0) + 1);
    }
  }
  const out: Q5Row[] = [];
  for (const counts of windows.values()) {
    let max = 0;
    for (const n of counts.values()) if (n > max) max = n;
    for (const [auction, num] of counts) if (num === max) out.push({ auction, num });
  }
  return out;
}

/**
 * q7 — highest bid: per tumbling 10 s window [s, e) the highest price; every bid with
 * that price and s ≤ dateTime ≤ e (BETWEEN: a bid at exactly e, the next window's
 * first instant, matches too if its price equals this window's highest).
 */
export function q7(events: Iterable<NexmarkEvent>): Q7Row[] {
  const bids = [...bidsOf(events)];
  const highest = new Map<number, number>(); // window start → max price
  for (const b of bids) {
    const s = windowStart(b.dateTime, Q7_SIZE_MS);
    const m = highest.get(s);
    if (m === undefined || b.price > m) highest.set(s, b.price);
  }
  const out: Q7Row[] = [];
  for (const b of bids) {
    const s = windowStart(b.dateTime, Q7_SIZE_MS);
    if (highest.get(s) === b.price) out.push(bidRow(b));
    if (s === b.dateTime && highest.get(s - Q7_SIZE_MS) === b.price) out.push(bidRow(b));
  }
  return out;
}

/** q8 — new users: persons who opened an auction in the tumbling 10 s window they registered in. */
export function q8(events: Iterable<NexmarkEvent>): Q8Row[] {
  const persons: NexmarkPerson[] = [];
  const sellers = new Set<string>(); // `${seller}@${window start}`
  for (const e of events) {
    if (isPerson(e)) persons.push(e);
    else if (isAuction(e)) sellers.add(`${e.seller}@${windowStart(e.dateTime, Q8_SIZE_MS)}`);
  }
  const out: Q8Row[] = [];
  for (const p of persons) {
    const stime = windowStart(p.dateTime, Q8_SIZE_MS);
    if (sellers.has(`${p.id}@${stime}`)) out.push({ id: p.id, name: p.name, stime });
  }
  return out;
}

/** q11 — user sessions: per bidder, sessions with a 10 s gap, and the bids in each. */
export function q11(events: Iterable<NexmarkEvent>): Q11Row[] {
  const times = new Map<number, number[]>();
  for (const b of bidsOf(events)) {
    let ts = times.get(b.bidder);
    if (!ts) times.set(b.bidder, (ts = []));
    ts.push(b.dateTime);
  }
  const out: Q11Row[] = [];
  for (const [bidder, ts] of times) {
    ts.sort((x, y) => x - y);
    let first = ts[0]!;
    let last = first;
    let count = 0;
    for (const t of ts) {
      if (t > last + Q11_GAP_MS) {
        out.push({ bidder, bid_count: count, starttime: first, endtime: last + Q11_GAP_MS });
        first = t;
        count = 0;
      }
      last = t;
      count++;
    }
    out.push({ bidder, bid_count: count, starttime: first, endtime: last + Q11_GAP_MS });
  }
  return out;
}

/**
 * q12 — bids per bidder in tumbling 10 s windows of processing time. Which window a bid
 * falls in depends on when it is processed, so the reference gives what every run
 * agrees on: each bidder's total over all windows (compare with `q12Totals(rows)`).
 */
export function q12(events: Iterable<NexmarkEvent>): Map<number, number> {
  const totals = new Map<number, number>();
  for (const b of bidsOf(events)) totals.set(b.bidder, (totals.get(b.bidder) ?? 0) + 1);
  return totals;
}

/** Per bidder, the bids of a q12 result summed over its windows (checking each window's shape). */
export function q12Totals(rows: Iterable<Q12Row>): Map<number, number> {
  const totals = new Map<number, number>();
  for (const r of rows) {
    if (r.endtime - r.starttime !== Q12_SIZE_MS || r.starttime % Q12_SIZE_MS !== 0 || !(r.bid_count > 0)) {
      throw new Error(`q12: not a 10 s processing-time window row: ${JSON.stringify(r)}`);
    }
    totals.set(r.bidder, (totals.get(r.bidder) ?? 0) + r.bid_count);
  }
  return totals;
}

/** The windowed and joined queries that have a deterministic reference, by name. */
export const queries = { q0, q1, q2, q3, q4, q5, q7, q8, q11 } as const;
export type QueryName = keyof typeof queries | 'q12';

/** Rows as sorted JSON lines: two results are equal as multisets iff these are equal. */
export function multiset(rows: Iterable<unknown>): string[] {
  return [...rows].map((r) => JSON.stringify(r)).sort();
}
