// Nexmark q3 — local item suggestion: who sells in category 10 from OR, ID or CA, and
// which auctions: { name, city, state, id } (id: the auction's). An incremental inner
// join of persons (by id) and auctions (by seller), both sides kept, every match
// emitted once as soon as both are there — whichever arrives first.
import { flow } from 'tidepool';
import { isAuction, isPerson, nexmarkEvents, output, type NexmarkAuction, type NexmarkEvent, type NexmarkPerson } from './common.js';

const STATES = ['OR', 'ID', 'CA'];

const f = flow('nexmark-q3');
const events = nexmarkEvents(f);
const sellers = events
  .filter('persons', (e: NexmarkEvent): e is NexmarkPerson => isPerson(e) && STATES.includes(e.state))
  .keyBy((p: NexmarkPerson) => p.id);
const auctions = events
  .filter('auctions', (e: NexmarkEvent): e is NexmarkAuction => isAuction(e) && e.category === 10)
  .keyBy((a: NexmarkAuction) => a.seller);
sellers
  .join('q3-join', auctions, (p: NexmarkPerson, a: NexmarkAuction) => ({ name: p.name, city: p.city, state: p.state, id: a.id }))
  .sink('out', output('q3'));
export default f;
