// The plain Nexmark query references (perf/nexmark/reference.ts): the SQL semantics on
// hand-made events (window edges, BETWEEN, integer AVG, session gaps, ties), the
// windowed queries against brute-force formulations on random bids (fast-check), and
// every query finding rows on the generator's own stream.
import t from 'tap';
import fc from 'fast-check';
import { nexmarkEvents, NEXMARK_BASE_TIME, type NexmarkAuction, type NexmarkBid, type NexmarkEvent, type NexmarkPerson } from '../src/connectors/nexmark-events.js';
import { multiset, q0, q1, q11, q12, q12Totals, q2, q3, q4, q5, q7, q8, toEuro, integerAverage, type Q12Row } from '../perf/nexmark/reference.js';

const person = (id: number, dateTime: number, state = 'OR', name = `p${id}`): NexmarkPerson => ({
  type: 'person', id, name, emailAddress: 'a@b.com', creditCard: '0000 0000 0000 0000', city: 'Bend', state, dateTime, extra: '',
});
const auction = (id: number, seller: number, dateTime: number, expires = dateTime + 1000, category = 10): NexmarkAuction => ({
  type: 'auction', id, itemName: 'i', description: 'd', initialBid: 100, reserve: 200, dateTime, expires, seller, category, extra: '',
});
const bid = (auction: number, price: number, dateTime: number, bidder = 1): NexmarkBid => ({
  type: 'bid', auction, bidder, price, channel: 'Google', url: 'u', dateTime, extra: `x${dateTime}`,
});

t.test('q0, q1, q2: projections of bids', async (t) => {
  const events = [...nexmarkEvents({ events: 5000, seed: 1 })];
  const bids = events.filter((e): e is NexmarkBid => e.type === 'bid');
  const rows0 = q0(events);
  t.equal(rows0.length, 4600);
  t.same(Object.keys(rows0[0]!), ['auction', 'bidder', 'price', 'dateTime', 'extra']);
  t.ok(rows0.every((r, k) => r.auction === bids[k]!.auction && r.price === bids[k]!.price && r.extra === bids[k]!.extra));
  t.equal(toEuro(123), 111.684, 'DECIMAL(23, 3): 0.908 · 123 = 111.684 exactly');
  t.equal(toEuro(1), 0.908);
  t.equal(toEuro(100_000_000), 90_800_000);
  const rows1 = q1(events);
  t.ok(rows1.every((r, k) => Math.round(r.price * 1000) === bids[k]!.price * 908), 'every price is price · 908 / 1000');
  t.ok(rows1.every((r) => String(r.price).split('.')[1] === undefined || String(r.price).split('.')[1]!.length <= 3), 'at most 3 decimals');
  const rows2 = q2([bid(123, 5, 0), bid(124, 6, 0), bid(246, 7, 1), bid(0, 8, 2), ...events]);
  t.same(rows2.slice(0, 3), [{ auction: 123, price: 5 }, { auction: 246, price: 7 }, { auction: 0, price: 8 }]);
  t.ok(rows2.length > 3 && rows2.every((r) => r.auction % 123 === 0), 'the stream has bids on every 123rd auction');
});

t.test('q3: category-10 auctions of sellers in OR, ID, CA, whichever arrives first', async (t) => {
  const rows = q3([
    auction(1, 7, 0), // seller 7 arrives later
    person(7, 5, 'ID', 'Ann'),
    person(8, 5, 'WA'),
    auction(2, 8, 6), // WA: no
    auction(3, 7, 6, 100, 11), // category 11: no
    auction(4, 7, 9),
    auction(5, 9, 9), // seller 9 never appears
  ]);
  t.same(rows, [{ name: 'Ann', city: 'Bend', state: 'ID', id: 1 }, { name: 'Ann', city: 'Bend', state: 'ID', id: 4 }]);
});

t.test('q4: winning bid within [dateTime, expires] inclusive, AVG truncated per category', async (t) => {
  const rows = q4([
    auction(1, 1, 1000, 2000, 10),
    bid(1, 50, 999), // before the auction: no
    bid(1, 10, 1000), // at the start: yes
    bid(1, 11, 2000), // at expiry: yes → winning 11
    bid(1, 99, 2001), // after: no
    auction(2, 1, 1000, 1500, 10),
    bid(2, 10, 1200), // winning 10 → category 10: AVG(11, 10) = 10 (10.5 truncated)
    auction(3, 1, 1000, 1500, 12), // no bids: no winning price, no row for category 12
    auction(4, 1, 3000, 4000, 11),
    bid(4, 7, 3500),
    bid(9, 1000, 3500), // unknown auction
  ]);
  t.same(rows, [{ category: 10, final: 10 }, { category: 11, final: 7 }]);
  t.equal(integerAverage(7, 2), 3);
  t.equal(integerAverage(2 ** 52 + 1, 2), 2 ** 51, 'exact for large sums');
});

/** q5 by enumeration: every 2 s window start from the first to the last bid, counted anew. */
function q5Brute(bids: NexmarkBid[]): string[] {
  if (bids.length === 0) return [];
  const rows: unknown[] = [];
  const lo = Math.min(...bids.map((b) => b.dateTime));
  const hi = Math.max(...bids.map((b) => b.dateTime));
  for (let s = Math.floor((lo - 10_000) / 2000) * 2000; s <= hi; s += 2000) {
    const inWin = bids.filter((b) => b.dateTime >= s && b.dateTime < s + 10_000);
    if (inWin.length === 0) continue;
    const counts = new Map<number, number>();
    for (const b of inWin) counts.set(b.auction, (counts.get(b.auction) ?? 0) + 1);
    const max = Math.max(...counts.values());
    for (const [a, n] of counts) if (n === max) rows.push({ auction: a, num: n });
  }
  return multiset(rows);
}

/** q7 by its SQL: per window, MAX(price) at window_end; join bids with that price and dateTime BETWEEN end − 10 s AND end. */
function q7Brute(bids: NexmarkBid[]): string[] {
  const windows = new Map<number, number>();
  for (const b of bids) {
    const end = Math.floor(b.dateTime / 10_000) * 10_000 + 10_000;
    windows.set(end, Math.max(windows.get(end) ?? -Infinity, b.price));
  }
  const rows: unknown[] = [];
  for (const [end, max] of windows) {
    for (const b of bids) {
      if (b.price === max && b.dateTime >= end - 10_000 && b.dateTime <= end) {
        rows.push({ auction: b.auction, bidder: b.bidder, price: b.price, dateTime: b.dateTime, extra: b.extra });
      }
    }
  }
  return multiset(rows);
}

/** q11 as a merging window assigner: each bid opens [t, t + gap], intersecting windows merge (any input order). */
function q11Brute(bids: NexmarkBid[]): string[] {
  const sessions = new Map<number, { start: number; end: number; n: number }[]>();
  for (const b of bids) {
    let cur = { start: b.dateTime, end: b.dateTime + 10_000, n: 1 };
    const rest: { start: number; end: number; n: number }[] = [];
    for (const s of sessions.get(b.bidder) ?? []) {
      if (s.start <= cur.end && cur.start <= s.end) cur = { start: Math.min(s.start, cur.start), end: Math.max(s.end, cur.end), n: s.n + cur.n };
      else rest.push(s);
    }
    rest.push(cur);
    sessions.set(b.bidder, rest);
  }
  const rows: unknown[] = [];
  for (const [bidder, ss] of sessions) for (const s of ss) rows.push({ bidder, bid_count: s.n, starttime: s.start, endtime: s.end });
  return multiset(rows);
}

// Random bids on few auctions and bidders, times on a coarse grid so that window edges,
// ties and exact gaps are common.
const bidsArb = fc.array(
  fc.record({ auction: fc.integer({ min: 1, max: 4 }), bidder: fc.integer({ min: 1, max: 3 }), price: fc.integer({ min: 1, max: 5 }), slot: fc.integer({ min: 0, max: 60 }) }),
  { maxLength: 60 },
).map((xs) => xs.map((x) => bid(x.auction, x.price, NEXMARK_BASE_TIME + x.slot * 1000, x.bidder)));

t.test('q5: hot items in sliding windows, ties included', async (t) => {
  const base = NEXMARK_BASE_TIME;
  // A bid at a multiple of 2 s is in 5 windows; at base + 1 s also in 5.
  t.same(multiset(q5([bid(1, 1, base)])), multiset(Array.from({ length: 5 }, () => ({ auction: 1, num: 1 }))));
  t.same(
    multiset(q5([bid(1, 1, base + 9000), bid(2, 1, base + 9000), bid(2, 1, base + 10_000)])),
    // 9 s is in the windows starting at base + 0, 2, 4, 6, 8 s; 10 s in those at + 2 … 10 s.
    multiset([
      { auction: 1, num: 1 }, { auction: 2, num: 1 }, // [base, base + 10 s): a tie, both
      { auction: 2, num: 2 }, { auction: 2, num: 2 }, { auction: 2, num: 2 }, { auction: 2, num: 2 }, // + 2 … 8 s
      { auction: 2, num: 1 }, // [base + 10 s, base + 20 s)
    ]),
  );
  fc.assert(fc.property(bidsArb, (bids) => JSON.stringify(multiset(q5(bids))) === JSON.stringify(q5Brute(bids))), { numRuns: 300 });
});

t.test('q7: highest bids per 10 s window, BETWEEN takes the next window\'s first instant too', async (t) => {
  const base = NEXMARK_BASE_TIME;
  const rows = q7([bid(1, 5, base + 100), bid(2, 5, base + 9999), bid(3, 4, base + 200), bid(4, 5, base + 10_000), bid(5, 3, base + 10_001)]);
  // Window 1: max 5 → bids 1, 2 and, at its end instant, 4. Window 2: max 5 → bid 4 again.
  t.same(rows.map((r) => r.auction).sort(), [1, 2, 4, 4]);
  t.same(Object.keys(rows[0]!), ['auction', 'bidder', 'price', 'dateTime', 'extra']);
  fc.assert(fc.property(bidsArb, (bids) => JSON.stringify(multiset(q7(bids))) === JSON.stringify(q7Brute(bids))), { numRuns: 300 });
});

t.test('q8: persons with an auction in their own 10 s window, once per person', async (t) => {
  const base = NEXMARK_BASE_TIME;
  const rows = q8([
    person(1, base + 100, 'WA', 'A'),
    auction(10, 1, base + 200),
    auction(11, 1, base + 9999), // same window again: still one row
    person(2, base + 9999, 'WA', 'B'),
    auction(12, 2, base + 10_000), // the next window: no
    person(3, base + 20_500, 'WA', 'C'),
    auction(13, 3, base + 20_000), // the auction came first, same window: yes
  ]);
  t.same(rows, [{ id: 1, name: 'A', stime: base }, { id: 3, name: 'C', stime: base + 20_000 }]);
});

t.test('q11: sessions with a 10 s gap (exactly 10 s still joins)', async (t) => {
  const base = NEXMARK_BASE_TIME;
  const rows = q11([bid(1, 1, base, 7), bid(1, 1, base + 10_000, 7), bid(1, 1, base + 20_001, 7), bid(1, 1, base + 5, 8)]);
  t.same(multiset(rows), multiset([
    { bidder: 7, bid_count: 2, starttime: base, endtime: base + 20_000 },
    { bidder: 7, bid_count: 1, starttime: base + 20_001, endtime: base + 30_001 },
    { bidder: 8, bid_count: 1, starttime: base + 5, endtime: base + 10_005 },
  ]));
  fc.assert(
    fc.property(bidsArb, fc.integer(), (bids, seed) => {
      const shuffled = bids.map((b, k) => ({ b, r: Math.imul(k + 1, seed | 1) >>> 0 })).sort((x, y) => x.r - y.r).map((x) => x.b);
      return JSON.stringify(multiset(q11(shuffled))) === JSON.stringify(q11Brute(bids));
    }),
    { numRuns: 300 },
  );
});

t.test('q12: per-bidder totals, and the check of windowed rows against them', async (t) => {
  const totals = q12([bid(1, 1, 0, 5), bid(2, 1, 0, 5), bid(1, 1, 0, 6), person(5, 0)]);
  t.same([...totals].sort(), [[5, 2], [6, 1]]);
  const rows: Q12Row[] = [
    { bidder: 5, bid_count: 1, starttime: 20_000, endtime: 30_000 },
    { bidder: 5, bid_count: 1, starttime: 30_000, endtime: 40_000 },
    { bidder: 6, bid_count: 1, starttime: 20_000, endtime: 30_000 },
  ];
  t.same([...q12Totals(rows)].sort(), [...totals].sort());
  t.throws(() => q12Totals([{ bidder: 5, bid_count: 1, starttime: 20_000, endtime: 25_000 }]), /not a 10 s/);
  t.throws(() => q12Totals([{ bidder: 5, bid_count: 0, starttime: 20_000, endtime: 30_000 }]), /not a 10 s/);
});

t.test('on the generator\'s stream every query finds rows', async (t) => {
  const events: NexmarkEvent[] = [...nexmarkEvents({ events: 200_000, seed: 4 })];
  const counts = {
    q2: q2(events).length, q3: q3(events).length, q4: q4(events).length, q5: q5(events).length,
    q7: q7(events).length, q8: q8(events).length, q11: q11(events).length,
  };
  t.comment(JSON.stringify(counts));
  for (const [q, n] of Object.entries(counts)) t.ok(n > 0, `${q}: ${n} rows`);
  t.equal(q4(events).length, 5, 'q4: one row per category (5)');
  // 200,000 events at 10,000/s span 20 s: q5 has windows starting from base − 8 s to base + 18 s.
  const q5Windows = new Set(q5(events).map((r) => r.num)).size;
  t.ok(q5Windows > 1, 'q5: several window maxima');
});
