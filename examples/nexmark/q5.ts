// Nexmark q5 — hot items: per sliding window of 10 s every 2 s, the auctions with the
// most bids, { auction, num } (ties: every auction with the window's largest count).
//
// Stage 1 counts bids per auction and window; each count leaves with timestamp
// end − 1. Stage 2 keys the counts by their window's end and collects them in a 2 s
// tumbling window — [end − 2 s, end) holds end − 1 and no other sliding window's
// counts — which closes once every count of that sliding window has arrived.
import { flow, windows } from 'tidepool';
import { isBid, nexmarkEvents, output, type NexmarkBid } from './common.js';

interface Count { auction: number; num: number; end: number }
interface Hottest { num: number; auctions: number[] }

const f = flow('nexmark-q5');
nexmarkEvents(f)
  .filter('bids', isBid)
  .keyBy((b: NexmarkBid) => b.auction)
  .window(windows.sliding({ sizeMs: 10_000, slideMs: 2_000 }))
  .aggregate('q5-counts', {
    create: () => 0,
    add: (n: number) => n + 1,
    merge: (a: number, b: number) => a + b,
    result: (num: number, window: { start: number; end: number }, auction: number): Count => ({ auction, num, end: window.end }),
  })
  .keyBy((c: Count) => c.end)
  .window(windows.tumbling({ sizeMs: 2_000 }))
  .aggregate('q5-hottest', {
    create: (): Hottest => ({ num: 0, auctions: [] }),
    add: (acc: Hottest, c: Count): Hottest => {
      if (c.num > acc.num) return { num: c.num, auctions: [c.auction] };
      if (c.num === acc.num) acc.auctions.push(c.auction);
      return acc;
    },
    result: (acc: Hottest) => acc,
  })
  .flatMap('q5', (h: Hottest) => h.auctions.map((auction) => ({ auction, num: h.num })))
  .sink('out', output('q5'));
export default f;
