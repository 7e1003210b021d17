// Nexmark q7 — highest bid: per tumbling 10 s window [s, e), the bids with the
// window's highest price, { auction, bidder, price, dateTime, extra }. The suite joins
// the maximum back to the bids with `dateTime BETWEEN e − 10 s AND e`: inclusive, so a
// bid at exactly e (the next window's first instant) also matches window [s, e) if its
// price equals that window's highest. (The suite's INSERT swaps price and bidder
// into each other's column; here each value keeps its name.)
//
// Each bid is tagged with its window's start; a bid at exactly a window's start is
// also tagged, as an `edge` candidate, for the window before. Keyed by window start, a
// process keeps the highest price, the bids at that price and the edge candidates, and
// emits when the watermark passes e + 1 (every bid at or before e has arrived).
import { flow } from 'tidepool';
import { isBid, nexmarkEvents, output, type NexmarkBid } from './common.js';

const SIZE = 10_000;

interface Tagged { start: number; edge: boolean; bid: NexmarkBid }

const row = (b: NexmarkBid) => ({ auction: b.auction, bidder: b.bidder, price: b.price, dateTime: b.dateTime, extra: b.extra });

const f = flow('nexmark-q7');
nexmarkEvents(f)
  .filter('bids', isBid)
  .flatMap('q7-windows', (b: NexmarkBid): Tagged[] => {
    const start = b.dateTime - (b.dateTime % SIZE);
    const tags: Tagged[] = [{ start, edge: false, bid: b }];
    if (start === b.dateTime) tags.push({ start: start - SIZE, edge: true, bid: b });
    return tags;
  })
  .keyBy((t: Tagged) => t.start)
  .process(
    'q7-highest',
    (t: Tagged, ctx) => {
      if (t.edge) {
        ctx.state.list<NexmarkBid>('edge').add(t.bid);
      } else {
        const max = ctx.state.value<number>('max');
        const top = ctx.state.list<NexmarkBid>('top');
        const m = max.get();
        if (m === undefined || t.bid.price > m) {
          max.set(t.bid.price);
          top.clear();
          top.add(t.bid);
        } else if (t.bid.price === m) {
          top.add(t.bid);
        }
      }
      ctx.timers.eventTime(t.start + SIZE + 1);
    },
    {
      onTimer(_time: number, ctx) {
        const max = ctx.state.value<number>('max');
        const top = ctx.state.list<NexmarkBid>('top');
        const edge = ctx.state.list<NexmarkBid>('edge');
        const m = max.get();
        if (m !== undefined) {
          for (const b of top.get()) ctx.emit(row(b));
          for (const b of edge.get()) if (b.price === m) ctx.emit(row(b));
        }
        max.clear();
        top.clear();
        edge.clear();
      },
    },
  )
  .sink('out', output('q7'));
export default f;
