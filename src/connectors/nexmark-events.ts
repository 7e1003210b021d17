// The Nexmark benchmark's events — persons, auctions and bids — as pure functions of
// (seed, event index). The shape of the stream follows the Nexmark suite's generator
// (github.com/nexmark/nexmark, nexmark-flink `generator/`); the code is ours.
//
//   event i       i mod 50:  0 → person · 1..3 → auction · 4..49 → bid   (1 : 3 : 46)
//   person id     1000 + floor(i / 50)                       (one new person per 50 events)
//   auction id    1000 + 3·floor(i / 50) + (i mod 50 − 1)      (three new auctions per 50)
//   dateTime      BASE_TIME + floor(i · 1000 / eventRate)      (epoch ms; monotone in i)
//
// Skew, as in the suite (the config's hot ratios 2 / 4 / 4 mean "hot" with probability
// 1 − 1/ratio):
//   bid.auction   ½  the hot auction: the newest auction id rounded down to a multiple of 100
//                 ½  uniform over the last 100 auctions plus 10 not yet created
//   bid.bidder    ¾  the hot bidder: newest person id rounded down to 100, plus 1
//                 ¼  uniform over the last 1000 persons plus 10 not yet created
//   auc.seller    ¾  the hot seller: newest person id rounded down to 100
//                 ¼  as for a bidder
// (Ids "not yet created" make some bids and auctions arrive before their person or
// auction, as in the suite.) Categories 10..14; prices round(100 · 10^(6u)), u uniform in
// [0, 1): 100 … 100,000,000 cents, log-uniform. An auction expires 1 … 2·h ms after it
// opens, h being the event time until 100 more auctions exist (≈ 167 ms at 10,000
// events/s). `extra` pads records to the suite's average sizes: person 200, auction 500
// and bid 100 bytes (±20%).
//
// One deliberate difference: the Flink generator adds the first person id to a bidder
// twice (bidders are 2000 + …, never a person); here bidder ids are person ids, as in
// the original Nexmark and Beam's generator.
//
// Speed: each event seeds a small PRNG from hash(seed, i) — no state carries from one
// event to the next, so any subtask can make any event — and strings are slices of
// precomputed random pools (V8 slices share the pool's memory) or table entries, so an
// event costs its record object and a few small strings.

export interface NexmarkPerson {
  type: 'person';
  id: number;
  name: string;
  emailAddress: string;
  creditCard: string;
  city: string;
  state: string;
  dateTime: number;
  extra: string;
}

export interface NexmarkAuction {
  type: 'auction';
  id: number;
  itemName: string;
  description: string;
  initialBid: number;
  reserve: number;
  dateTime: number;
  expires: number;
  seller: number;
  category: number;
  extra: string;
}

export interface NexmarkBid {
  type: 'bid';
  auction: number;
  bidder: number;
  price: number;
  channel: string;
  url: string;
  dateTime: number;
  extra: string;
}

export type NexmarkEvent = NexmarkPerson | NexmarkAuction | NexmarkBid;

/** Event time of event 0: 2015-07-15T00:00:00Z (the base time of Beam's Nexmark), a multiple of 10 s. */
export const NEXMARK_BASE_TIME = Date.UTC(2015, 6, 15);
/** Default events per second of event time: the suite's `firstEventRate` (10,000). */
export const NEXMARK_DEFAULT_RATE = 10_000;
export const FIRST_PERSON_ID = 1000;
export const FIRST_AUCTION_ID = 1000;
export const FIRST_CATEGORY_ID = 10;
export const NUM_CATEGORIES = 5;

const PERSON_PROPORTION = 1;
const AUCTION_PROPORTION = 3;
const TOTAL_PROPORTION = 50; // + 46 bids
const HOT_AUCTION_RATIO = 2;
const HOT_SELLERS_RATIO = 4;
const HOT_BIDDERS_RATIO = 4;
/** Hot ids are the first of each batch of this many. */
const HOT_BATCH = 100;
const NUM_IN_FLIGHT_AUCTIONS = 100;
const NUM_ACTIVE_PEOPLE = 1000;
const PERSON_ID_LEAD = 10;
const AUCTION_ID_LEAD = 10;
const AVG_PERSON_BYTES = 200;
const AVG_AUCTION_BYTES = 500;
const AVG_BID_BYTES = 100;
/** Events until NUM_IN_FLIGHT_AUCTIONS more auctions exist: the auction length's horizon. */
const EVENTS_FOR_AUCTIONS = Math.floor((NUM_IN_FLIGHT_AUCTIONS * TOTAL_PROPORTION) / AUCTION_PROPORTION);
const CHANNELS = 10_000;

const US_STATES = ['AZ', 'CA', 'ID', 'OR', 'WA', 'WY'];
const US_CITIES = ['Phoenix', 'Los Angeles', 'San Francisco', 'Boise', 'Portland', 'Bend', 'Redmond', 'Seattle', 'Kent', 'Cheyenne'];
const FIRST_NAMES = ['Peter', 'Paul', 'Luke', 'John', 'Saul', 'Vicky', 'Kate', 'Julie', 'Sarah', 'Deiter', 'Walter'];
const LAST_NAMES = ['Shultz', 'Abrams', 'Spencer', 'White', 'Bartels', 'Walton', 'Smith', 'Jones', 'Noris'];
const HOT_CHANNELS = ['Google', 'Facebook', 'Baidu', 'Apple'];

// ---- PRNG: mulberry32, reseeded per event ---------------------------------------------

/**
 * The one generator state; every event sets it first (single-threaded per worker). An
 * Int32Array rather than a `let`: a module variable holding 32-bit values outside the
 * small-integer range boxes a heap number on every write (twice as slow here).
 */
const rs = new Int32Array(1);

function next32(): number {
  const s = (rs[0] = (rs[0]! + 0x6d2b79f5) | 0);
  let t = Math.imul(s ^ (s >>> 15), 1 | s);
  t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
  return (t ^ (t >>> 14)) >>> 0;
}

/** Uniform in [0, n) (n a positive integer below 2^53; exact for n ≤ 2^21). */
function nextInt(n: number): number {
  return Math.floor(next32() * 2.3283064365386963e-10 * n); // 2^-32 · n: always < n
}

function fmix32(h: number): number {
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b);
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35);
  return (h ^ (h >>> 16)) >>> 0;
}

/** The per-seed part of the event hash (computed once per source, not per event). */
export function nexmarkSeedKey(seed: number): number {
  const lo = seed >>> 0;
  const hi = Math.floor(seed / 4294967296) >>> 0;
  return fmix32(fmix32(lo ^ 0x9e3779b9) ^ hi);
}

function seedEvent(seedKey: number, i: number): void {
  const lo = i >>> 0;
  const hi = (i / 4294967296) >>> 0;
  rs[0] = fmix32(fmix32(lo ^ seedKey) + Math.imul(hi ^ 0x27d4eb2f, 0x165667b1));
}

// ---- string pools and tables (built once, from a fixed seed) ------------------------

let letters = ''; // 'a'..'z' only: `extra`
let spaced = ''; // 'a'..'z' with ' ' one time in 13: names, descriptions, e-mail parts
let names: string[] = [];
let digits4: string[] = [];
let channelNames: string[] = [];
let channelUrls: string[] = [];
let hotUrls: string[] = [];
let priceHigh = new Float64Array(0); // 10^(6k / 2^8)
let priceMid = new Float64Array(0); // 10^(6k / 2^16)
/** ln 10 · 6 / 2^32: the low 16 bits of r as a natural exponent. */
const PRICE_LOW_SCALE = (6 * Math.LN10) / 4294967296;

/** `length` random lowercase letters, one in 13 replaced by `special` if given. */
function randomChars(length: number, special: string | undefined): string {
  const bytes = Buffer.allocUnsafe(length);
  const sp = special === undefined ? -1 : special.charCodeAt(0);
  for (let k = 0; k < length; k++) {
    const r = next32();
    bytes[k] = sp >= 0 && r % 13 === 0 ? sp : 97 + ((r >>> 8) % 26);
  }
  return bytes.toString('latin1');
}

/** A URL path segment: 3 or 4 characters, letters and '_'. */
function urlSegment(pool: string): string {
  const len = 3 + nextInt(2);
  const off = nextInt(pool.length - len);
  return pool.slice(off, off + len);
}

function baseUrl(pool: string): string {
  return `https://www.nexmark.com/${urlSegment(pool)}/${urlSegment(pool)}/${urlSegment(pool)}/item.htm?query=1`;
}

/** 32-bit bit reversal, as a non-negative number (a stable, scattered id per channel). */
function reverseBits(x: number): number {
  let r = 0;
  for (let b = 0; b < 32; b++) r = (r << 1) | ((x >>> b) & 1);
  return Math.abs(r | 0);
}

function ensureTables(): void {
  if (letters !== '') return;
  const saved = rs[0]!;
  rs[0] = 0x5eed1e55;
  letters = randomChars(1 << 16, undefined);
  spaced = randomChars(1 << 14, ' ');
  const underscored = randomChars(1 << 12, '_');
  priceHigh = Float64Array.from({ length: 256 }, (_, k) => Math.pow(10, (6 * k) / 256));
  priceMid = Float64Array.from({ length: 256 }, (_, k) => Math.pow(10, (6 * k) / 65536));
  names = FIRST_NAMES.flatMap((f) => LAST_NAMES.map((l) => `${f} ${l}`));
  digits4 = Array.from({ length: 10_000 }, (_, k) => String(k).padStart(4, '0'));
  hotUrls = HOT_CHANNELS.map(() => baseUrl(underscored));
  channelNames = Array.from({ length: CHANNELS }, (_, k) => `channel-${k}`);
  channelUrls = Array.from({ length: CHANNELS }, (_, k) => {
    const url = baseUrl(underscored);
    return nextInt(10) > 0 ? `${url}&channel_id=${reverseBits(k)}` : url;
  });
  rs[0] = saved;
}

/** A string of 3 … maxLength−1 characters with occasional spaces, trimmed (the suite's `nextString`). */
function nextString(maxLength: number): string {
  const len = 3 + nextInt(maxLength - 3);
  const off = nextInt(spaced.length - len);
  return spaced.slice(off, off + len).trim();
}

/** Padding so that `currentSize` plus its length averages `averageSize` (±20%). */
function nextExtra(currentSize: number, averageSize: number): string {
  if (currentSize > averageSize) return '';
  const want = averageSize - currentSize;
  const delta = Math.round(want * 0.2);
  const len = want - delta + (delta === 0 ? 0 : nextInt(2 * delta));
  const off = nextInt(letters.length - len);
  return letters.slice(off, off + len);
}

/**
 * round(100 · 10^(6u)) for u = r / 2^32 uniform in [0, 1), cents. `Math.pow` costs more
 * than the rest of a bid, so 10^(6u) is split by the bits of r: the top 8 and the next 8
 * index two 256-entry tables (in L1 cache), and the low 16 bits add 10^y ≈ 1 + z + z²/2
 * for z = y·ln 10 ≤ 2.2·10^-4 (relative error below 10^-11).
 */
function nextPrice(): number {
  const r = next32();
  const z = (r & 0xffff) * PRICE_LOW_SCALE;
  return Math.round(100 * priceHigh[r >>> 24]! * priceMid[(r >>> 16) & 0xff]! * (1 + z + z * z * 0.5));
}

// ---- ids -----------------------------------------------------------------------------
// Event i is in "epoch" floor(i / 50), at offset i mod 50 in it. The newest person and
// auction at event i (base 0) are those the latest person and auction events made —
// event i's own if it makes one.

function newestPerson(epoch: number, offset: number): number {
  return epoch * PERSON_PROPORTION + Math.min(offset, PERSON_PROPORTION - 1);
}

function newestAuction(epoch: number, offset: number): number {
  if (offset < PERSON_PROPORTION) return epoch * AUCTION_PROPORTION - 1; // the previous epoch's last
  return epoch * AUCTION_PROPORTION + Math.min(offset - PERSON_PROPORTION, AUCTION_PROPORTION - 1);
}

/** A person among the active ones, or a few ahead of the newest (base 0). */
function randomPerson(newest: number): number {
  const numPeople = newest + 1;
  const active = Math.min(numPeople, NUM_ACTIVE_PEOPLE);
  return numPeople - active + nextInt(active + PERSON_ID_LEAD);
}

/** An auction among those likely still open, or a few ahead of the newest (base 0). */
function randomAuction(newest: number): number {
  const min = Math.max(newest - NUM_IN_FLIGHT_AUCTIONS, 0);
  return min + nextInt(newest - min + 1 + AUCTION_ID_LEAD);
}

// ---- events --------------------------------------------------------------------------

/** Event time of event `i` (epoch ms) at `eventRate` events per second. */
export function nexmarkTime(i: number, eventRate: number): number {
  return NEXMARK_BASE_TIME + Math.floor((i * 1000) / eventRate);
}

function makePerson(person: number, dateTime: number): NexmarkPerson {
  const name = names[nextInt(names.length)]!;
  const emailAddress = `${nextString(7)}@${nextString(5)}.com`;
  const creditCard = `${digits4[nextInt(10_000)]} ${digits4[nextInt(10_000)]} ${digits4[nextInt(10_000)]} ${digits4[nextInt(10_000)]}`;
  const city = US_CITIES[nextInt(US_CITIES.length)]!;
  const state = US_STATES[nextInt(US_STATES.length)]!;
  const size = 8 + name.length + emailAddress.length + creditCard.length + city.length + state.length;
  return {
    type: 'person',
    id: FIRST_PERSON_ID + person,
    name,
    emailAddress,
    creditCard,
    city,
    state,
    dateTime,
    extra: nextExtra(size, AVG_PERSON_BYTES),
  };
}

function makeAuction(i: number, dateTime: number, eventRate: number, person: number, auction: number): NexmarkAuction {
  const seller =
    FIRST_PERSON_ID + (nextInt(HOT_SELLERS_RATIO) > 0 ? Math.floor(person / HOT_BATCH) * HOT_BATCH : randomPerson(person));
  const category = FIRST_CATEGORY_ID + nextInt(NUM_CATEGORIES);
  const initialBid = nextPrice();
  const horizonMs = nexmarkTime(i + EVENTS_FOR_AUCTIONS, eventRate) - dateTime;
  const expires = dateTime + 1 + nextInt(Math.max(horizonMs * 2, 1));
  const itemName = nextString(20);
  const description = nextString(100);
  const reserve = initialBid + nextPrice();
  return {
    type: 'auction',
    id: FIRST_AUCTION_ID + auction,
    itemName,
    description,
    initialBid,
    reserve,
    dateTime,
    expires,
    seller,
    category,
    extra: nextExtra(48 + itemName.length + description.length, AVG_AUCTION_BYTES),
  };
}

function makeBid(dateTime: number, person: number, newest: number): NexmarkBid {
  const auction =
    FIRST_AUCTION_ID + (nextInt(HOT_AUCTION_RATIO) > 0 ? Math.floor(newest / HOT_BATCH) * HOT_BATCH : randomAuction(newest));
  // The hot bidder is the second person of its batch, so hot bidders are not hot sellers.
  const bidder =
    FIRST_PERSON_ID + (nextInt(HOT_BIDDERS_RATIO) > 0 ? Math.floor(person / HOT_BATCH) * HOT_BATCH + 1 : randomPerson(person));
  const price = nextPrice();
  let channel: string;
  let url: string;
  if (nextInt(2) > 0) {
    const k = nextInt(HOT_CHANNELS.length);
    channel = HOT_CHANNELS[k]!;
    url = hotUrls[k]!;
  } else {
    const k = nextInt(CHANNELS);
    channel = channelNames[k]!;
    url = channelUrls[k]!;
  }
  return { type: 'bid', auction, bidder, price, channel, url, dateTime, extra: nextExtra(32, AVG_BID_BYTES) };
}

/**
 * Event `i` for a seed key (`nexmarkSeedKey(seed)`): the same (seed, i, eventRate)
 * always gives the same event, on any thread, in any order.
 */
export function nexmarkEventFor(seedKey: number, i: number, eventRate: number): NexmarkEvent {
  ensureTables();
  seedEvent(seedKey, i);
  const dateTime = nexmarkTime(i, eventRate);
  const epoch = Math.floor(i / TOTAL_PROPORTION);
  const offset = i - epoch * TOTAL_PROPORTION;
  const person = newestPerson(epoch, offset);
  if (offset < PERSON_PROPORTION) return makePerson(person, dateTime);
  const auction = newestAuction(epoch, offset);
  if (offset < PERSON_PROPORTION + AUCTION_PROPORTION) return makeAuction(i, dateTime, eventRate, person, auction);
  return makeBid(dateTime, person, auction);
}

export interface NexmarkStreamOptions {
  /** How many events: indices 0 … events−1. */
  events: number;
  seed?: number;
  /** Events per second of event time (default 10,000). */
  rate?: number;
}

/** Every event of a Nexmark stream, in index order (what one subtask of one would emit). */
export function* nexmarkEvents(options: NexmarkStreamOptions): Generator<NexmarkEvent> {
  const key = nexmarkSeedKey(options.seed ?? 0);
  const rate = options.rate ?? NEXMARK_DEFAULT_RATE;
  for (let i = 0; i < options.events; i++) yield nexmarkEventFor(key, i, rate);
}
