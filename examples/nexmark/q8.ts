// Nexmark q8 — monitor new users: persons who opened an auction in the same tumbling
// 10 s window in which they registered, { id, name, stime } (stime: the window's start).
//
// The suite groups auctions by (seller, window) before joining, so a person with several
// auctions in the window is one row: stage 1 reduces auctions to one record per seller
// and window (timestamp end − 1, still inside it), stage 2 window-joins persons by id
// with those sellers in the same tumbling windows.
import { flow, windows } from 'tidepool';
import { isAuction, isPerson, nexmarkEvents, output, type NexmarkAuction, type NexmarkPerson } from './common.js';

interface Seller { seller: number }

const f = flow('nexmark-q8');
const events = nexmarkEvents(f);
const persons = events.filter('persons', isPerson).keyBy((p: NexmarkPerson) => p.id);
const sellers = events
  .filter('auctions', isAuction)
  .keyBy((a: NexmarkAuction) => a.seller)
  .window(windows.tumbling({ sizeMs: 10_000 }))
  .aggregate('q8-sellers', {
    create: () => 0,
    add: (n: number) => n + 1,
    result: (_n: number, _window: { start: number; end: number }, seller: number): Seller => ({ seller }),
  })
  .keyBy((s: Seller) => s.seller);
persons
  .windowJoin('q8-join', sellers, windows.tumbling({ sizeMs: 10_000 }), (p: NexmarkPerson, _s: Seller, window: { start: number; end: number }) => ({
    id: p.id,
    name: p.name,
    stime: window.start,
  }))
  .sink('out', output('q8'));
export default f;
