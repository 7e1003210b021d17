// The reduce's write-back cache of accumulators (src/operators/reduce.ts) against a
// model (fast-check): random records of keys of every kind (strings and numbers, cached
// by the key itself; -0 next to 0, tuples, bigints and booleans, cached by encoding) with
// accumulators switching between primitives (cached) and objects (always in the tree),
// a cache of 1–6 entries over a 4-page cache (so CLOCK sweeps and page evictions
// interleave), a bound of 0–6 changed entries (so write-backs while records flow
// interleave with both, or never happen), and snapshots. Checked:
//   - every emitted `{ key, value }` is the key's count so far, in the record's shape;
//   - after each snapshot the tree holds exactly the model (nothing dirty left behind);
//   - a new instance on the same state after a snapshot (a restore) counts on from there.
import t from 'tap';
import fc from 'fast-check';
import { flow, sources } from '../src/index.js';
import { anySink } from './helpers/any-sink.js';
import { makeReduce } from '../src/operators/reduce.js';
import { StateEngine } from '../src/state/engine.js';
import { MemoryBackend } from '../src/storage/memory-backend.js';
import { codecResolver, loadCodec } from '../src/state/codecs.js';
import { encodeKey, type Key } from '../src/state/keys.js';
import { fromStored } from '../src/state/values.js';
import { stateKeyOf } from '../src/operators/context.js';
import { hashEncoded } from '../src/runtime/partition.js';
import type { StepEnv } from '../src/operators/keyed.js';

type Mode = 'num' | 'str' | 'obj' | 'big';
interface Rec { k: Key; mode: Mode }
type Op = { push: Rec } | { snapshot: true; restart: boolean };

const KEY_GROUPS = 16;
const countOf = (acc: unknown): number =>
  acc === undefined ? 0 : typeof acc === 'number' ? acc : typeof acc === 'string' ? acc.length : typeof acc === 'bigint' ? Number(acc) : (acc as { n: number }).n;
const shaped = (n: number, mode: Mode): unknown => (mode === 'num' ? n : mode === 'str' ? 'x'.repeat(n) : mode === 'big' ? BigInt(n) : { n });
const shapeOf = (v: unknown): Mode => (typeof v === 'number' ? 'num' : typeof v === 'string' ? 'str' : typeof v === 'bigint' ? 'big' : 'obj');

const keyArb: fc.Arbitrary<Key> = fc.oneof(
  fc.constantFrom<Key>('a', 'b', 1, 2, 0, -0, 2.5, ['t', 1], ['t', 2], 5n, true, false),
  fc.integer({ min: 0, max: 400 }).map((i) => `k${i}`), // more keys than a few pages hold
  fc.integer({ min: -50, max: 50 }),
);
const opArb: fc.Arbitrary<Op> = fc.oneof(
  { weight: 20, arbitrary: fc.record({ push: fc.record({ k: keyArb, mode: fc.constantFrom<Mode>('num', 'num', 'str', 'obj', 'big') }) }) },
  { weight: 1, arbitrary: fc.record({ snapshot: fc.constant(true as const), restart: fc.boolean() }) },
);

t.test('reduce cache: emitted counts, snapshots and restores match a model', async (t) => {
  const codec = await loadCodec('none');
  const reduceOp = flow('cache')
    .source('s', sources.array<Rec>([]))
    .keyBy((r: Rec) => r.k)
    .reduce('r', (acc: unknown, r: Rec) => shaped(countOf(acc) + 1, r.mode))
    .sink('out', anySink())
    .operator('r')!;
  const stateKey = (k: Key) => {
    const enc = encodeKey(k, Infinity);
    return stateKeyOf(hashEncoded(enc) % KEY_GROUPS, enc);
  };
  let runs = 0;
  await fc.assert(
    fc.asyncProperty(fc.array(opArb, { minLength: 1, maxLength: 400 }), fc.integer({ min: 1, max: 6 }), fc.constantFrom(0, 1, 2, 3, 6, 4096), async (ops, capacity, maxDirty) => {
      runs++;
      const engine = new StateEngine({ name: 'cache', pageSize: 4096, cachePages: 4, codec, codecFor: codecResolver(codec), backend: new MemoryBackend() });
      const env: StepEnv = { subtask: 0, parallelism: 1, keyGroups: KEY_GROUPS, engine, afterState: () => engine.pager.evict() };
      const model = new Map<string, { n: number; mode: Mode }>();
      let emitted: { key: unknown; value: unknown } | undefined;
      const open = () => makeReduce(reduceOp, env, (r) => (emitted = r as { key: unknown; value: unknown }), capacity, maxDirty);
      let inst = open();
      for (const op of ops) {
        if ('push' in op) {
          const { k, mode } = op.push;
          const sk = stateKey(k);
          const n = (model.get(sk)?.n ?? 0) + 1;
          model.set(sk, { n, mode });
          emitted = undefined;
          inst.push(op.push, NaN, 0);
          if (!emitted) throw new Error(`nothing emitted for ${String(k)}`);
          const e = emitted as { key: unknown; value: unknown };
          if (!Object.is(e.key, k) && !(Array.isArray(k) && JSON.stringify(e.key) === JSON.stringify(k))) throw new Error(`emitted key ${String(e.key)} for ${String(k)}`);
          if (countOf(e.value) !== n || shapeOf(e.value) !== mode) throw new Error(`key ${String(k)}: emitted ${String(e.value)} (${shapeOf(e.value)}), model ${n} (${mode})`);
        } else {
          inst.beforeSnapshot();
          await engine.checkpoint();
          engine.pager.evict();
          const tree = new Map<string, unknown>();
          for (const [sk, v] of engine.table('r').entries()) tree.set(sk, fromStored(v));
          if (tree.size !== model.size) throw new Error(`after a snapshot the tree has ${tree.size} keys, the model ${model.size}`);
          for (const [sk, m] of model) {
            const v = tree.get(sk);
            if (countOf(v) !== m.n || shapeOf(v) !== m.mode) throw new Error(`after a snapshot: tree ${String(v)}, model ${m.n} (${m.mode})`);
          }
          if (op.restart) inst = open(); // a restored instance: empty cache, the tree as snapshotted
        }
      }
    }),
    { numRuns: 150, seed: 20261202 },
  );
  t.equal(runs, 150, 'every generated case ran');
});

t.test('reduce cache: entries stay cached across snapshots (no tree reads for hot keys after one)', async (t) => {
  const codec = await loadCodec('none');
  const engine = new StateEngine({ name: 'hot', pageSize: 4096, cachePages: 64, codec, codecFor: codecResolver(codec), backend: new MemoryBackend() });
  const op = flow('hot').source('s', sources.array<string>([])).keyBy((k: string) => k).reduce('r', (acc: number | undefined) => (acc ?? 0) + 1).sink('out', anySink()).operator('r')!;
  const inst = makeReduce(op, { subtask: 0, parallelism: 1, keyGroups: KEY_GROUPS, engine }, () => undefined, 100);
  const table = engine.table('r');
  let reads = 0;
  const get = table.get.bind(table);
  table.get = (k) => (reads++, get(k));
  for (let i = 0; i < 50; i++) inst.push(`k${i}`, NaN, 0);
  t.equal(reads, 50, 'each key read once, on its first record');
  inst.beforeSnapshot();
  await engine.checkpoint();
  for (let i = 0; i < 50; i++) inst.push(`k${i}`, NaN, 0);
  t.equal(reads, 50, 'after the snapshot every key is still cached');
  t.equal(fromStored(get(stateKeyOf(hashEncoded(encodeKey('k7', Infinity)) % KEY_GROUPS, encodeKey('k7', Infinity)))!), 1, 'the tree has the snapshot\'s value until the next one');
  inst.beforeSnapshot();
  t.equal(fromStored(get(stateKeyOf(hashEncoded(encodeKey('k7', Infinity)) % KEY_GROUPS, encodeKey('k7', Infinity)))!), 2, 'and the new one after it');
});

t.test('reduce cache: at most maxDirty changes wait for a barrier; older ones are written back as records flow', async (t) => {
  const codec = await loadCodec('none');
  const engine = new StateEngine({ name: 'dirty', pageSize: 4096, cachePages: 64, codec, codecFor: codecResolver(codec), backend: new MemoryBackend() });
  const op = flow('dirty').source('s', sources.array<string>([])).keyBy((k: string) => k).reduce('r', (acc: number | undefined) => (acc ?? 0) + 1).sink('out', anySink()).operator('r')!;
  const inst = makeReduce(op, { subtask: 0, parallelism: 1, keyGroups: KEY_GROUPS, engine }, () => undefined, 100, 10);
  const table = engine.table('r');
  const written: string[] = [];
  const set = table.set.bind(table);
  table.set = (k, v) => (written.push(k), set(k, v));
  const sk = (k: string) => stateKeyOf(hashEncoded(encodeKey(k, Infinity)) % KEY_GROUPS, encodeKey(k, Infinity));
  let over = 0;
  for (let i = 0; i < 50; i++) {
    inst.push(`k${i}`, NaN, 0);
    if (i + 1 - written.length > 10) over++;
  }
  t.equal(over, 0, 'never more than 10 changes waiting');
  t.ok(written.length >= 40, `${written.length} of 50 changes written back before any barrier`);
  t.same(written, Array.from({ length: written.length }, (_, i) => sk(`k${i}`)), 'oldest change first');
  const waiting = 50 - written.length;
  written.length = 0;
  for (let i = 0; i < 5; i++) inst.push('k49', NaN, 0); // a waiting change changed again: still one change
  t.equal(written.length, 0, 'changing a key whose change waits writes nothing');
  inst.beforeSnapshot();
  t.equal(written.length, waiting, `the barrier writes back the ${waiting} waiting`);
  t.equal(fromStored(table.get(sk('k49'))!), 6, 'with their newest values');
  written.length = 0;
  inst.push('k0', NaN, 0); // written back, still cached: one change again
  t.equal(written.length, 0, 'a cached key changed again waits for the barrier');
  inst.beforeSnapshot();
  t.same(written, [sk('k0')], 'and only it is written at the next barrier');
  t.equal(fromStored(table.get(sk('k0'))!), 2, 'with its new value');
});
