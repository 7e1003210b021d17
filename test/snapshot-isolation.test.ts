// A checkpoint's snapshot is taken in a short synchronous call and encoded afterwards,
// page by page, while the owner goes on mutating the tree (DESIGN: "the instance
// resumes processing at once while the I/O worker writes"). Property: whatever the
// mutations after `checkpoint()` returns — overwrites, deletes that merge pages,
// inserts that split them, evictions that drop frozen pages and read them back — the
// durable version holds exactly the contents at the moment of the call.
import t from 'tap';
import fc from 'fast-check';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openStore } from '../src/index.js';
import { SnapshotReader } from '../src/storage/snapshot-reader.js';
import { CODEC_NONE, codecById, codecResolver } from '../src/state/codecs.js';
import type { StoredValue } from '../src/state/values.js';
import type { StateEngine } from '../src/state/engine.js';
import { engineOf } from './helpers/model.js';

const tmp = mkdtempSync(join(tmpdir(), 'tidepool-snapshot-'));
t.teardown(() => rmSync(tmp, { recursive: true, force: true }));
let dirs = 0;

type Mut = { k: number; v: string | null };
const mutArb = fc.record({ k: fc.integer({ min: 0, max: 600 }), v: fc.option(fc.string({ minLength: 0, maxLength: 90 }), { freq: 3 }) });

const key = (k: number) => `key/${String(k).padStart(4, '0')}`;

type Table = { set(k: string, v: StoredValue): boolean; delete(k: string): boolean };

function apply(engine: StateEngine, table: Table, model: Map<string, string>, m: Mut): void {
  engine.mutations++; // as the store and keyed state do: a checkpoint without mutations is skipped
  if (m.v === null) {
    table.delete(key(m.k));
    model.delete(key(m.k));
  } else {
    table.set(key(m.k), m.v);
    model.set(key(m.k), m.v);
  }
}

t.test('mutations after checkpoint() do not leak into the durable snapshot', async (t) => {
  const codec = codecById(CODEC_NONE)!;
  await fc.assert(
    fc.asyncProperty(
      fc.array(mutArb, { minLength: 50, maxLength: 400 }),
      fc.array(fc.array(mutArb, { maxLength: 80 }), { minLength: 1, maxLength: 6 }),
      fc.integer({ min: 2, max: 12 }),
      async (before, afterGroups, cachePages) => {
        const path = join(tmp, `s${dirs++}`);
        const store = await openStore({ path, name: 'snap', pageSize: 256, cachePages });
        const engine = engineOf(store);
        const table = engine.table('t');
        const model = new Map<string, string>();
        try {
          for (const m of before) apply(engine, table, model, m);
          engine.pager.evict();
          const expected = new Map(model);
          const durable = engine.checkpoint();
          // Mutate in several turns: some pages get encoded between them, others only
          // after all the mutations; eviction may drop a frozen page and reload it.
          for (const group of afterGroups) {
            for (const m of group) apply(engine, table, model, m);
            engine.pager.evict();
            await new Promise<void>((resolve) => setImmediate(resolve));
          }
          const info = await durable;
          const reader = new SnapshotReader(path, 'snap', info.version, codec, codecResolver(codec), 4);
          try {
            const got = new Map<string, unknown>();
            for (const [k, v] of reader.table('t').entries()) {
              got.set(k, v);
              reader.evict();
            }
            if (got.size !== expected.size) throw new Error(`snapshot has ${got.size} keys, expected ${expected.size}`);
            for (const [k, v] of expected) {
              if (got.get(k) !== v) throw new Error(`snapshot ${k} = ${JSON.stringify(got.get(k))}, expected ${JSON.stringify(v)}`);
            }
          } finally {
            await reader.close();
          }
          // The live tree kept every later mutation.
          for (const [k, v] of model) if (table.get(k) !== v) throw new Error(`live ${k} lost its later value`);
          if (table.size !== model.size) throw new Error(`live size ${table.size}, expected ${model.size}`);
        } finally {
          await store.close();
        }
      },
    ),
    { numRuns: 40 },
  );
  t.pass('40 random snapshot/mutation interleavings');
});
