// Nexmark q0 — pass-through: every bid as { auction, bidder, price, dateTime, extra }.
// Measures the cost of the source and the sink alone.
import { flow } from 'tidepool';
import { isBid, nexmarkEvents, output, type NexmarkBid } from './common.js';

const f = flow('nexmark-q0');
nexmarkEvents(f)
  .filter('bids', isBid)
  .map('q0', (b: NexmarkBid) => ({ auction: b.auction, bidder: b.bidder, price: b.price, dateTime: b.dateTime, extra: b.extra }))
  .sink('out', output('q0'));
export default f;
