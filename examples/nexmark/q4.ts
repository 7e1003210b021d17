// Nexmark q4 — average price per category: an auction's winning price is its highest
// bid with auction.dateTime ≤ bid.dateTime ≤ auction.expires (BETWEEN, inclusive);
// per category, the average winning price, truncated as AVG of a BIGINT is:
// { category, final } (the suite's sink calls the category `id`).
//
// Stage 1, keyed by auction id, auctions on the left and bids on the right: the
// highest qualifying bid so far, emitted as { auction, category, final } by an
// event-time timer at expires + 1 — once the watermark passes `expires`, no bid at or
// before it can still come. A bid can come before its auction (other source subtasks
// run ahead, and bids name auctions a little ahead of the newest); such bids wait in
// `pending` until the auction comes, and go once the watermark passes their own time
// (an auction that opened no later than the bid would have arrived by then).
//
// Stage 2, keyed by category: sum and count; the row is emitted when the input ends
// (the suite's query is an updating aggregate; this is its final value).
import { flow } from 'tidepool';
import { END_OF_INPUT, isAuction, isBid, nexmarkEvents, output, type NexmarkAuction, type NexmarkBid } from './common.js';

interface Open { category: number; dateTime: number; expires: number }
interface Pending { dateTime: number; price: number }
interface Winning { auction: number; category: number; final: number }
interface Sum { sum: number; count: number }

const f = flow('nexmark-q4');
const events = nexmarkEvents(f);
const auctions = events.filter('auctions', isAuction).keyBy((a: NexmarkAuction) => a.id);
const bids = events.filter('bids', isBid).keyBy((b: NexmarkBid) => b.auction);

const winning = auctions.connect(bids).process<Winning>('q4-winning', {
  left(a: NexmarkAuction, ctx) {
    const open: Open = { category: a.category, dateTime: a.dateTime, expires: a.expires };
    ctx.state.value<Open>('auction').set(open);
    const pending = ctx.state.list<Pending>('pending');
    let best = -1;
    for (const b of pending.get()) {
      if (b.dateTime >= open.dateTime && b.dateTime <= open.expires && b.price > best) best = b.price;
    }
    pending.clear();
    if (best >= 0) ctx.state.value<number>('best').set(best);
    ctx.timers.eventTime(open.expires + 1);
  },
  right(b: NexmarkBid, ctx) {
    const open = ctx.state.value<Open>('auction').get();
    if (open === undefined) {
      ctx.state.list<Pending>('pending').add({ dateTime: b.dateTime, price: b.price });
      ctx.timers.eventTime(b.dateTime + 1);
    } else if (b.dateTime >= open.dateTime && b.dateTime <= open.expires) {
      const best = ctx.state.value<number>('best');
      if (b.price > (best.get() ?? -1)) best.set(b.price);
    }
  },
  onTimer(time: number, ctx) {
    const open = ctx.state.value<Open>('auction').get();
    if (open === undefined) {
      // No auction opened before `time` is still to come: older pending bids match none.
      const pending = ctx.state.list<Pending>('pending');
      const keep = pending.get().filter((b) => b.dateTime >= time);
      pending.clear();
      for (const b of keep) pending.add(b);
    } else if (time === open.expires + 1) {
      const best = ctx.state.value<number>('best');
      const price = best.get();
      if (price !== undefined) ctx.emit({ auction: ctx.key, category: open.category, final: price });
      best.clear(); // `auction` stays: later bids for it are recognised as too late
    }
  },
});

winning
  .keyBy((w: Winning) => w.category)
  .process(
    'q4-average',
    (w: Winning, ctx) => {
      const acc = ctx.state.value<Sum>('sum');
      const s = acc.get();
      if (s === undefined) ctx.timers.eventTime(END_OF_INPUT);
      acc.set({ sum: (s?.sum ?? 0) + w.final, count: (s?.count ?? 0) + 1 });
    },
    {
      onTimer(_time: number, ctx) {
        const s = ctx.state.value<Sum>('sum').get();
        if (s !== undefined) ctx.emit({ category: ctx.key, final: (s.sum - (s.sum % s.count)) / s.count });
      },
    },
  )
  .sink('out', output('q4'));
export default f;
