// Nexmark q2 — selection: { auction, price } of the bids on every 123rd auction.
import { flow } from 'tidepool';
import { isBid, nexmarkEvents, output, type NexmarkBid, type NexmarkEvent } from './common.js';

const f = flow('nexmark-q2');
nexmarkEvents(f)
  .filter('bids', (e: NexmarkEvent): e is NexmarkBid => isBid(e) && e.auction % 123 === 0)
  .map('q2', (b: NexmarkBid) => ({ auction: b.auction, price: b.price }))
  .sink('out', output('q2'));
export default f;
