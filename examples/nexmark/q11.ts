// Nexmark q11 — user sessions: per bidder, sessions of bids no more than 10 s apart,
// { bidder, bid_count, starttime, endtime } (a session is [first bid, last bid + 10 s)).
import { flow, windows } from 'tidepool';
import { isBid, nexmarkEvents, output, type NexmarkBid } from './common.js';

const f = flow('nexmark-q11');
nexmarkEvents(f)
  .filter('bids', isBid)
  .keyBy((b: NexmarkBid) => b.bidder)
  .window(windows.session({ gapMs: 10_000 }))
  .aggregate('q11-sessions', {
    create: () => 0,
    add: (n: number) => n + 1,
    merge: (a: number, b: number) => a + b,
    result: (n: number, window: { start: number; end: number }, bidder: number) => ({
      bidder,
      bid_count: n,
      starttime: window.start,
      endtime: window.end,
    }),
  })
  .sink('out', output('q11'));
export default f;
