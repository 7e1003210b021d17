// Nexmark q12 — processing-time windows: per bidder, bids counted in tumbling 10 s
// windows of wall-clock time, { bidder, bid_count, starttime, endtime }. Which window a
// bid lands in depends on when it is processed, so only the per-bidder sums over all
// windows are deterministic (the reference checks those).
//
// A keyed process keeps the current window's start and count; a processing-time timer
// at the window's end emits it. When the input ends, an event-time timer flushes the
// window still open (processing-time timers would not fire after the last record).
import { flow } from 'tidepool';
import { END_OF_INPUT, isBid, nexmarkEvents, output, type NexmarkBid } from './common.js';

const SIZE = 10_000;

interface Open { start: number; count: number }

const row = (bidder: number, w: Open) => ({ bidder, bid_count: w.count, starttime: w.start, endtime: w.start + SIZE });

const f = flow('nexmark-q12');
nexmarkEvents(f)
  .filter('bids', isBid)
  .keyBy((b: NexmarkBid) => b.bidder)
  .process(
    'q12-windows',
    (_b: NexmarkBid, ctx) => {
      const now = Date.now();
      const start = now - (now % SIZE);
      const open = ctx.state.value<Open>('window');
      const w = open.get();
      if (w !== undefined && w.start !== start) ctx.emit(row(ctx.key, w)); // its timer is late
      if (w === undefined) ctx.timers.eventTime(END_OF_INPUT);
      open.set(w !== undefined && w.start === start ? { start, count: w.count + 1 } : { start, count: 1 });
      ctx.timers.processingTime(start + SIZE);
    },
    {
      onTimer(time: number, ctx) {
        const open = ctx.state.value<Open>('window');
        const w = open.get();
        if (w === undefined) return;
        if (time === END_OF_INPUT || time >= w.start + SIZE) {
          ctx.emit(row(ctx.key, w));
          open.clear();
        }
      },
    },
  )
  .sink('out', output('q12'));
export default f;
