// Map state's O(1) size (src/operators/context.ts, KeyedMapState) against a model
// (fast-check): random set/delete/clear/size/entries/ranges over a few keys and map
// keys, a small page cache (evictions), checkpoints with a new state handle after them
// (a restore), and keys whose entries were written before counts were kept (a
// checkpoint of an older build: entries without a count cell). Checked after every
// operation that reads: size, entries in order, ranges and has() match the model; at
// the end, size equals a scan for every key.
import t from 'tap';
import fc from 'fast-check';
import { KeyScope, KeyedMapState } from '../src/operators/context.js';
import { StateEngine } from '../src/state/engine.js';
import { MemoryBackend } from '../src/storage/memory-backend.js';
import { codecResolver, loadCodec } from '../src/state/codecs.js';
import { encodeKey } from '../src/state/keys.js';
import { toStored } from '../src/state/values.js';

const KEYS = ['a', 'b', 7] as const;
type K = (typeof KEYS)[number];
type Op =
  | { op: 'set'; k: K; mk: number; v: number }
  | { op: 'delete'; k: K; mk: number }
  | { op: 'clear'; k: K }
  | { op: 'read'; k: K; gte?: number; lt?: number; reverse: boolean }
  | { op: 'legacy'; k: K; mk: number; v: number }
  | { op: 'checkpoint' };

const keyArb = fc.constantFrom<K>(...KEYS);
const mkArb = fc.integer({ min: 0, max: 30 });
const opArb: fc.Arbitrary<Op> = fc.oneof(
  { weight: 30, arbitrary: fc.record({ op: fc.constant('set' as const), k: keyArb, mk: mkArb, v: fc.integer() }) },
  { weight: 15, arbitrary: fc.record({ op: fc.constant('delete' as const), k: keyArb, mk: mkArb }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('clear' as const), k: keyArb }) },
  { weight: 10, arbitrary: fc.record({ op: fc.constant('read' as const), k: keyArb, gte: fc.option(mkArb, { nil: undefined }), lt: fc.option(mkArb, { nil: undefined }), reverse: fc.boolean() }) },
  { weight: 4, arbitrary: fc.record({ op: fc.constant('legacy' as const), k: keyArb, mk: mkArb, v: fc.integer() }) },
  { weight: 2, arbitrary: fc.record({ op: fc.constant('checkpoint' as const) }) },
);

const GROUPS = 4;
const groupOf = (k: K) => (k === 'a' ? 1 : k === 'b' ? 3 : 1);

t.test('map state size, entries and ranges match a model, across evictions, restores and pre-count state', async (t) => {
  const codec = await loadCodec('none');
  let runs = 0;
  await fc.assert(
    fc.asyncProperty(fc.array(opArb, { minLength: 1, maxLength: 300 }), async (ops) => {
      runs++;
      const engine = new StateEngine({ name: 'map', pageSize: 512, cachePages: 3, codec, codecFor: codecResolver(codec), backend: new MemoryBackend() });
      const table = engine.table('p/m');
      const scope = new KeyScope();
      let state = new KeyedMapState<number, number>(scope, table, engine);
      const model = new Map<K, Map<number, number>>();
      const at = (k: K) => {
        scope.set(k, groupOf(k) % GROUPS);
        let m = model.get(k);
        if (!m) model.set(k, (m = new Map()));
        return m;
      };
      const sorted = (m: Map<number, number>) => [...m].sort((x, y) => x[0] - y[0]);
      for (const op of ops) {
        if (op.op === 'checkpoint') {
          await engine.checkpoint();
          engine.pager.evict();
          state = new KeyedMapState<number, number>(scope, table, engine); // a restored instance's handle
          continue;
        }
        const m = at(op.k);
        if (op.op === 'set') {
          state.set(op.mk, op.v);
          m.set(op.mk, op.v);
        } else if (op.op === 'delete') {
          const existed = state.delete(op.mk);
          if (existed !== m.has(op.mk)) throw new Error(`delete(${op.mk}) of ${String(op.k)} returned ${existed}`);
          m.delete(op.mk);
        } else if (op.op === 'clear') {
          state.clear();
          m.clear();
        } else if (op.op === 'legacy') {
          // As an older build wrote it: the entry alone, no count kept. Only where no count
          // cell exists (an older build's checkpoint never has one).
          if (table.get(scope.encoded) === undefined) {
            table.set(encodeKey([groupOf(op.k) % GROUPS, op.k, op.mk], Infinity), toStored(op.v));
            engine.mutations++;
          } else state.set(op.mk, op.v);
          m.set(op.mk, op.v);
        } else {
          if (state.size !== m.size) throw new Error(`size of ${String(op.k)}: ${state.size}, model ${m.size}`);
          const got = JSON.stringify([...state.entries()]);
          if (got !== JSON.stringify(sorted(m))) throw new Error(`entries of ${String(op.k)}: ${got}, model ${JSON.stringify(sorted(m))}`);
          const range = { gte: op.gte, lt: op.lt, reverse: op.reverse };
          let want = sorted(m).filter(([mk]) => (op.gte === undefined || mk >= op.gte) && (op.lt === undefined || mk < op.lt)).map(([mk]) => mk);
          if (op.reverse) want = want.reverse();
          const keys = [...state.keys(range)];
          if (JSON.stringify(keys) !== JSON.stringify(want)) throw new Error(`keys(${JSON.stringify(range)}) of ${String(op.k)}: ${JSON.stringify(keys)}, model ${JSON.stringify(want)}`);
          for (const mk of [0, 5, 30]) if (state.has(mk) !== m.has(mk)) throw new Error(`has(${mk}) of ${String(op.k)}`);
        }
        engine.pager.evict();
      }
      for (const k of KEYS) {
        const m = at(k);
        if (state.size !== m.size) throw new Error(`final size of ${String(k)}: ${state.size}, model ${m.size}`);
        if ([...state.keys()].length !== m.size) throw new Error(`final scan of ${String(k)}`);
      }
    }),
    { numRuns: 120, seed: 20261203 },
  );
  t.equal(runs, 120, 'every generated case ran');
});

t.test('map state size reads one cell, not the entries', async (t) => {
  const codec = await loadCodec('none');
  const engine = new StateEngine({ name: 'map1', pageSize: 4096, cachePages: 64, codec, codecFor: codecResolver(codec), backend: new MemoryBackend() });
  const table = engine.table('p/m');
  const scope = new KeyScope();
  scope.set('k', 0);
  const state = new KeyedMapState<number, string>(scope, table, engine);
  for (let i = 0; i < 5000; i++) state.set(i, 'v');
  for (let i = 0; i < 5000; i += 2) state.delete(i);
  state.set(1, 'again'); // a replace does not count
  let scanned = 0;
  const entries = table.entries.bind(table);
  table.entries = (r) => (scanned++, entries(r));
  t.equal(state.size, 2500);
  t.equal(scanned, 0, 'no range scan for size');
  state.clear();
  t.equal(state.size, 0);
  t.equal(table.size, 0, 'clear leaves neither entries nor the count behind');
});
