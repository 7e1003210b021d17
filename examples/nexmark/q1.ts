// Nexmark q1 — currency conversion: every bid with its price in euros,
// { auction, bidder, price, dateTime, extra }. The suite's `0.908 * price` is a
// DECIMAL(23, 3): exactly price · 908 / 1000, written here as the nearest double.
import { flow } from 'tidepool';
import { isBid, nexmarkEvents, output, type NexmarkBid } from './common.js';

const f = flow('nexmark-q1');
nexmarkEvents(f)
  .filter('bids', isBid)
  .map('q1', (b: NexmarkBid) => ({
    auction: b.auction,
    bidder: b.bidder,
    price: Math.round(b.price * 908) / 1000,
    dateTime: b.dateTime,
    extra: b.extra,
  }))
  .sink('out', output('q1'));
export default f;
