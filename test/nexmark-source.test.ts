// sources.nexmark on its own: the suite's proportions, ids, field types and skew;
// determinism per seed; the same events whatever the parallelism; exact resume from
// positions; event-time spacing and wall-clock pacing by `rate`.
import t from 'tap';
import fc from 'fast-check';
import { sources } from '../src/connectors/index.js';
import {
  NEXMARK_BASE_TIME,
  nexmarkEventFor,
  nexmarkEvents,
  nexmarkSeedKey,
  type NexmarkAuction,
  type NexmarkBid,
  type NexmarkEvent,
  type NexmarkPerson,
} from '../src/connectors/nexmark-events.js';
import type { InstanceContext, SourceReader } from '../src/flow/types.js';

const ctx = (subtask: number, parallelism: number): InstanceContext => ({ flow: 'f', operator: 'events', subtask, parallelism });

async function drain<T>(r: SourceReader<T>, max = 1000): Promise<T[]> {
  const out: T[] = [];
  for (;;) {
    const b = await r.next(max);
    if (b === null) return out;
    if (b.length > max) throw new Error(`next(${max}) returned ${b.length} records`);
    for (const x of b) out.push(x);
  }
}

/** Every subtask's events merged back into index order (subtask s has i ≡ s mod p). */
async function readSplit(opts: { events: number; seed?: number }, p: number, max: number): Promise<NexmarkEvent[]> {
  const spec = sources.nexmark(opts);
  const parts: NexmarkEvent[][] = [];
  for (let s = 0; s < p; s++) parts.push(await drain(await spec.open(ctx(s, p)), max));
  const out: NexmarkEvent[] = [];
  for (let i = 0; i < opts.events; i++) {
    const e = parts[i % p]![Math.floor(i / p)];
    if (e === undefined) throw new Error(`p=${p}: subtask ${i % p} has no event for index ${i}`);
    out.push(e);
  }
  const total = parts.reduce((n, a) => n + a.length, 0);
  if (total !== opts.events) throw new Error(`p=${p}: ${total} events, expected ${opts.events}`);
  return out;
}

const sortedJson = (xs: unknown[]) => xs.map((x) => JSON.stringify(x)).sort();

t.test('the spec: registered in sources, bounded, options checked', async (t) => {
  const spec = sources.nexmark({ events: 10 });
  t.equal(spec.type, 'nexmark');
  t.equal(spec.kind, 'source');
  t.equal(spec.bounded, true);
  t.equal(spec.maxParallelism, 10);
  t.equal(spec.eventRate, 10_000, 'the suite default: 10,000 events/s of event time');
  t.equal(spec.pace, undefined, 'unpaced without rate');
  t.equal(sources.nexmark({ events: 0 }).maxParallelism, 1);
  t.same(await drain(await sources.nexmark({ events: 0 }).open(ctx(0, 1))), []);
  for (const bad of [{}, { events: -1 }, { events: 1.5 }, { events: '10' }, { events: 10, rate: 0 }, { events: 10, rate: Infinity },
    { events: 10, seed: 0.5 }, { events: 10, seeds: 1 }, null]) {
    t.throws(() => sources.nexmark(bad as never), { code: 'TIDEPOOL_BAD_OPTION' }, JSON.stringify(bad));
  }
});

t.test('proportions: exactly 1 person, 3 auctions, 46 bids in every block of 50', async (t) => {
  const key = nexmarkSeedKey(7);
  for (const base of [0, 50 * 1234, 50 * 987_654_321]) {
    for (let block = 0; block < 40; block++) {
      const kinds = { person: 0, auction: 0, bid: 0 };
      for (let k = 0; k < 50; k++) kinds[nexmarkEventFor(key, base + block * 50 + k, 10_000).type]++;
      if (kinds.person !== 1 || kinds.auction !== 3 || kinds.bid !== 46) {
        t.fail(`block ${block} after ${base}: ${JSON.stringify(kinds)}`);
        return;
      }
    }
  }
  const all = [...nexmarkEvents({ events: 5000 })];
  t.equal(all.filter((e) => e.type === 'person').length, 100);
  t.equal(all.filter((e) => e.type === 'auction').length, 300);
  t.equal(all.filter((e) => e.type === 'bid').length, 4600);
});

t.test('ids, times and field types', async (t) => {
  const n = 20_000;
  const events = [...nexmarkEvents({ events: n, seed: 3 })];
  let prevTime = -Infinity;
  let problems = 0;
  const bad = (i: number, why: string) => {
    if (problems++ < 5) t.fail(`event ${i}: ${why}: ${JSON.stringify(events[i])}`);
  };
  const isInt = (x: unknown) => typeof x === 'number' && Number.isSafeInteger(x);
  for (let i = 0; i < n; i++) {
    const e = events[i]!;
    const epoch = Math.floor(i / 50);
    const offset = i % 50;
    const newestPerson = 1000 + epoch;
    const newestAuction = 1000 + (offset === 0 ? 3 * epoch - 1 : 3 * epoch + Math.min(offset - 1, 2));
    if (e.dateTime !== NEXMARK_BASE_TIME + Math.floor(i / 10)) bad(i, 'dateTime is not base + i / 10 ms');
    if (e.dateTime < prevTime) bad(i, 'time went back');
    prevTime = e.dateTime;
    if (e.type === 'person') {
      const p = e as NexmarkPerson;
      if (i === 0) t.same(Object.keys(p), ['type', 'id', 'name', 'emailAddress', 'creditCard', 'city', 'state', 'dateTime', 'extra']);
      if (p.id !== newestPerson) bad(i, 'person id');
      if (!/^[A-Z][a-z]+ [A-Z][a-z]+$/.test(p.name)) bad(i, 'name');
      if (!/^([a-z][a-z ]{0,4})?[a-z]?@([a-z][a-z ]{0,2})?[a-z]?\.com$/.test(p.emailAddress)) bad(i, 'emailAddress');
      if (!/^\d{4} \d{4} \d{4} \d{4}$/.test(p.creditCard)) bad(i, 'creditCard');
      if (!['AZ', 'CA', 'ID', 'OR', 'WA', 'WY'].includes(p.state)) bad(i, 'state');
      if (typeof p.city !== 'string' || p.city === '') bad(i, 'city');
    } else if (e.type === 'auction') {
      const a = e as NexmarkAuction;
      if (i === 1) t.same(Object.keys(a), ['type', 'id', 'itemName', 'description', 'initialBid', 'reserve', 'dateTime', 'expires', 'seller', 'category', 'extra']);
      if (a.id !== newestAuction) bad(i, 'auction id');
      if (!isInt(a.seller) || a.seller < 1000 || a.seller > newestPerson + 10) bad(i, 'seller out of range');
      if (!isInt(a.category) || a.category < 10 || a.category > 14) bad(i, 'category');
      if (!isInt(a.initialBid) || a.initialBid < 100 || a.initialBid > 1e8) bad(i, 'initialBid');
      if (!isInt(a.reserve) || a.reserve < a.initialBid + 100) bad(i, 'reserve');
      // At 10,000 events/s the horizon is 1666 events ≈ 167 ms: 1 ≤ length ≤ 2 · 167 ms.
      if (!isInt(a.expires) || a.expires <= a.dateTime || a.expires > a.dateTime + 334) bad(i, 'expires');
      if (a.itemName.length > 19 || a.description.length > 99 || /^ | $/.test(a.itemName) || /^ | $/.test(a.description)) bad(i, 'strings');
    } else {
      const b = e as NexmarkBid;
      if (i === 4) t.same(Object.keys(b), ['type', 'auction', 'bidder', 'price', 'channel', 'url', 'dateTime', 'extra']);
      if (!isInt(b.auction) || b.auction < 1000 || b.auction > newestAuction + 10) bad(i, 'auction out of range');
      if (!isInt(b.bidder) || b.bidder < 1000 || b.bidder > newestPerson + 10) bad(i, 'bidder out of range');
      if (!isInt(b.price) || b.price < 100 || b.price > 1e8) bad(i, 'price');
      if (typeof b.channel !== 'string' || !/^https:\/\/www\.nexmark\.com\/[a-z_]{3,4}\/[a-z_]{3,4}\/[a-z_]{3,4}\/item\.htm\?query=1(&channel_id=\d+)?$/.test(b.url)) {
        bad(i, 'channel/url');
      }
      if (b.extra.length < 54 || b.extra.length >= 82 || !/^[a-z]+$/.test(b.extra)) bad(i, 'extra: 68 ± 20% letters');
    }
  }
  t.equal(problems, 0, 'every event has its fields in range');
  // Sizes as the suite counts them: person ≈ 200 bytes, auction ≈ 500, bid ≈ 100.
  const size = (e: NexmarkEvent) =>
    e.type === 'person' ? 8 + e.name.length + e.emailAddress.length + e.creditCard.length + e.city.length + e.state.length + e.extra.length
    : e.type === 'auction' ? 48 + e.itemName.length + e.description.length + e.extra.length
    : 32 + e.extra.length;
  for (const [type, want] of [['person', 200], ['auction', 500], ['bid', 100]] as const) {
    const of = events.filter((e) => e.type === type);
    const avg = of.reduce((n, e) => n + size(e), 0) / of.length;
    t.ok(Math.abs(avg - want) < want * 0.02, `${type}: average size ${avg.toFixed(1)} ≈ ${want}`);
  }
});

t.test('skew: hot auctions, bidders and sellers as in the suite', async (t) => {
  const events = [...nexmarkEvents({ events: 200_000, seed: 11 })];
  let bids = 0, hotAuction = 0, hotBidder = 0, hotChannel = 0, auctions = 0, hotSeller = 0;
  events.forEach((e, i) => {
    const epoch = Math.floor(i / 50);
    if (e.type === 'bid') {
      bids++;
      if (e.auction === 1000 + Math.floor((3 * epoch + 2) / 100) * 100) hotAuction++;
      if (e.bidder === 1000 + Math.floor(epoch / 100) * 100 + 1) hotBidder++;
      if (['Google', 'Facebook', 'Baidu', 'Apple'].includes(e.channel)) hotChannel++;
    } else if (e.type === 'auction') {
      auctions++;
      if (e.seller === 1000 + Math.floor(epoch / 100) * 100) hotSeller++;
    }
  });
  // P(hot) = 1 − 1/ratio, plus the chance that a uniform pick lands on the hot id.
  const near = (x: number, p: number, tol: number, what: string) => t.ok(Math.abs(x - p) < tol, `${what}: ${x.toFixed(3)} ≈ ${p}`);
  near(hotAuction / bids, 0.5, 0.02, 'bids on the hot auction');
  near(hotBidder / bids, 0.75, 0.02, 'bids by the hot bidder');
  near(hotSeller / auctions, 0.75, 0.03, 'auctions by the hot seller');
  near(hotChannel / bids, 0.5, 0.02, 'bids on the four hot channels');
  // The most-bid auction of the whole stream gets far more than a uniform share.
  const perAuction = new Map<number, number>();
  for (const e of events) if (e.type === 'bid') perAuction.set(e.auction, (perAuction.get(e.auction) ?? 0) + 1);
  const top = Math.max(...perAuction.values());
  t.ok(top > (20 * bids) / perAuction.size, `top auction has ${top} of ${bids} bids over ${perAuction.size} auctions`);
  // Some bids name auctions and persons not created yet (the suite's "leads").
  const aheadAuction = events.some((e, i) => e.type === 'bid' && e.auction > 1000 + 3 * Math.floor(i / 50) + 2);
  t.ok(aheadAuction, 'some bids are for auctions created later');
});

t.test('determinism: a pure function of (seed, index)', async (t) => {
  const a = await drain(await sources.nexmark({ events: 3000, seed: 42 }).open(ctx(0, 1)), 97);
  const b = [...nexmarkEvents({ events: 3000, seed: 42 })];
  t.equal(JSON.stringify(a), JSON.stringify(b), 'the source and the plain iterator agree');
  const key = nexmarkSeedKey(42);
  t.same(nexmarkEventFor(key, 2999, 10_000), b[2999], 'any index alone, out of order');
  t.same(nexmarkEventFor(key, 5, 10_000), b[5]);
  const c = [...nexmarkEvents({ events: 3000, seed: 43 })];
  const skeleton = (es: NexmarkEvent[]) => JSON.stringify(es.map((e) => [e.type, e.dateTime, e.type === 'bid' ? 0 : e.id]));
  t.equal(skeleton(c), skeleton(b), 'another seed: same types, times and new ids');
  const differ = c.filter((e, i) => JSON.stringify(e) !== JSON.stringify(b[i])).length;
  t.ok(differ > 2900, `another seed: other values (${differ} of 3000 differ)`);
  const big = [...nexmarkEvents({ events: 200, seed: 2 ** 40 + 1 })];
  t.not(JSON.stringify(big), JSON.stringify([...nexmarkEvents({ events: 200, seed: 1 })]), 'the seed high bits matter');
  t.same(nexmarkEventFor(nexmarkSeedKey(1), 2 ** 40 + 4, 10_000), nexmarkEventFor(nexmarkSeedKey(1), 2 ** 40 + 4, 10_000));
  t.notSame(nexmarkEventFor(key, 2 ** 33 + 4, 10_000).extra, nexmarkEventFor(key, 4, 10_000).extra, 'index high bits matter');
});

t.test('parallelism: every p gives the same events, split by index stride', async (t) => {
  await fc.assert(
    fc.asyncProperty(fc.integer({ min: 0, max: 700 }), fc.integer({ min: 1, max: 6 }), fc.integer({ min: 1, max: 50 }), fc.integer(), async (n, p, max, seed) => {
      const whole = [...nexmarkEvents({ events: n, seed })];
      const split = await readSplit({ events: n, seed }, p, max);
      if (JSON.stringify(split) !== JSON.stringify(whole)) throw new Error(`p=${p} differs`);
    }),
    { numRuns: 60 },
  );
  // And as multisets, read without regard to order.
  const spec = sources.nexmark({ events: 999, seed: 5 });
  const three: NexmarkEvent[] = [];
  for (let s = 0; s < 3; s++) three.push(...(await drain(await spec.open(ctx(s, 3)), 64)));
  t.same(sortedJson(three), sortedJson([...nexmarkEvents({ events: 999, seed: 5 })]));
  t.same(await drain(await sources.nexmark({ events: 2 }).open(ctx(3, 4))), [], 'a subtask past the end gets nothing');
});

t.test('positions: seek resumes exactly where position() was taken', async (t) => {
  await fc.assert(
    fc.asyncProperty(
      fc.integer({ min: 1, max: 500 }),
      fc.integer({ min: 1, max: 4 }),
      fc.array(fc.integer({ min: 1, max: 40 }), { minLength: 1, maxLength: 8 }),
      async (n, p, steps) => {
        const spec = sources.nexmark({ events: n, seed: 9 });
        for (let s = 0; s < p; s++) {
          const want = await drain(await spec.open(ctx(s, p)));
          // Read in steps, restarting from the position after each step.
          const got: NexmarkEvent[] = [];
          let pos: unknown = s;
          for (const step of steps) {
            const r = await spec.open(ctx(s, p));
            await r.seek(pos);
            const b = await r.next(step);
            if (b === null) break;
            got.push(...b);
            pos = r.position();
            if (typeof pos !== 'number' || JSON.parse(JSON.stringify(pos)) !== pos) throw new Error('position is not a plain number');
          }
          const r = await spec.open(ctx(s, p));
          await r.seek(pos);
          got.push(...(await drain(r, 7)));
          if (JSON.stringify(got) !== JSON.stringify(want)) throw new Error(`subtask ${s}/${p}: resumed stream differs`);
        }
      },
    ),
    { numRuns: 40 },
  );
  const r = await sources.nexmark({ events: 100 }).open(ctx(1, 3));
  t.equal(r.position(), 1, 'a fresh reader is at its first index');
  await r.next(4);
  t.equal(r.position(), 13);
  t.throws(() => r.seek(12), { code: 'TIDEPOOL_INPUT' }, "another subtask's index is refused");
  t.throws(() => r.seek(-2), { code: 'TIDEPOOL_INPUT' });
  t.throws(() => r.seek('13'), { code: 'TIDEPOOL_INPUT' });
  r.seek(100);
  t.equal(await r.next(5), null, 'past the end: end of input');
});

t.test('rate: event-time spacing and wall-clock pacing', async (t) => {
  const spaced = [...nexmarkEvents({ events: 50, rate: 1000 })];
  t.same(spaced.map((e) => e.dateTime - NEXMARK_BASE_TIME), Array.from({ length: 50 }, (_, i) => i), '1000/s: one ms apart');
  const spec = sources.nexmark({ events: 400, rate: 2000, seed: 1 });
  t.equal(spec.eventRate, 2000);
  t.equal(spec.pace, 2000);
  // Two subtasks at 1000/s each: 200 events each take ≈ 200 ms, not less.
  const t0 = performance.now();
  const parts = await Promise.all([0, 1].map(async (s) => drain(await spec.open(ctx(s, 2)), 64)));
  const ms = performance.now() - t0;
  t.ok(ms >= 190, `paced: 400 events at 2000/s took ${ms.toFixed(0)} ms (≥ 190)`);
  t.ok(ms < 2000, `and not much more (${ms.toFixed(0)} ms)`);
  t.same(sortedJson(parts.flat()), sortedJson([...nexmarkEvents({ events: 400, rate: 2000, seed: 1 })]), 'pacing changes no event');
  // A paced reader gives a partial batch rather than waiting for a full one.
  const r = await spec.open(ctx(0, 1));
  const first = await r.next(1000);
  t.ok(first !== null && first.length >= 1 && first.length < 50, `first batch is what is due (${first?.length})`);
  // Unpaced: 20,000 events come at once.
  const u0 = performance.now();
  t.equal((await drain(await sources.nexmark({ events: 20_000 }).open(ctx(0, 1)), 512)).length, 20_000);
  t.ok(performance.now() - u0 < 2000, 'unpaced without rate');
});
