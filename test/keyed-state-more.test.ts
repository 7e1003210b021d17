// connect().process, list state and TTL state against plain models, through the CLI.
//
// Fixtures in test-fixtures/flows/joins/: connect.ts (two sources of different record
// shapes and key functions, shared per-key value and list state, a timer per key that
// reports the final state), ttl-state.ts (value and map state with ttlMs around a pause
// of the source longer than ttl). Sources run at parallelism 1 so each key's records of
// one source arrive in input order; the keyed operator runs at parallelism 1, 2 or 3.
import t from 'tap';
import fc from 'fast-check';
import { rng } from './helpers/rng.js';
import { FixtureRuns, diff, tableKeys } from './helpers/join-runs.js';

const runs = new FixtureRuns('tidepool-keyed-more-');
t.teardown(() => runs.remove());
const firstLine = (s: string) => s.trim().split('\n')[0] ?? '';

/** JSON with sorted object keys: records compare whatever order fields were emitted in. */
const canon = (o: unknown): string => JSON.stringify(o, (_k, v: unknown) => (v && typeof v === 'object' && !Array.isArray(v) ? Object.fromEntries(Object.entries(v).sort(([a], [b]) => (a < b ? -1 : 1))) : v));

t.test('a keyed process that never registers a timer ends cleanly at end of input', async (t) => {
  // End of input sends watermark Infinity; firing "every timer ≤ Infinity" with none
  // registered must return, not recurse (src/time/timers.ts TimerTable.pop).
  const r = await runs.run('ttl-state.ts', { items: [{ k: 'a', id: 0 }, { k: 'b', id: 1 }], ttlMs: 60_000, pauses: [] }, ['--set', 'execution=inline', '--set', 'parallelism=1']);
  t.equal(r.exit.code, 0, `exit 0 ${firstLine(r.exit.stderr)}`);
  t.equal(r.out.length, 2, 'both records processed');
});

// ---- connect().process -------------------------------------------------------------------

const END = 1e12; // the fixture's timer time
interface L { k: number; id: number; t: number; op: 'add' | 'clear' | 'get' }
interface R { user: { id: number }; rid: number; t: number }

function connectModel(left: L[], right: R[]): string[] {
  const out: unknown[] = [];
  const lists = new Map<number, number[]>();
  const rights = new Map<number, number[]>();
  const n = new Map<number, number>();
  for (const e of left) {
    const list = lists.get(e.k) ?? [];
    if (e.op === 'add') list.push(e.id);
    else if (e.op === 'clear') list.length = 0;
    lists.set(e.k, list);
    n.set(e.k, (n.get(e.k) ?? 0) + 1);
    out.push({ side: 'L', key: e.k, id: e.id, ts: e.t, ...(e.op === 'get' ? { list: [...list] } : {}) });
  }
  for (const e of right) {
    const k = e.user.id;
    rights.set(k, [...(rights.get(k) ?? []), e.rid]);
    n.set(k, (n.get(k) ?? 0) + 1);
    out.push({ side: 'R', key: k, id: e.rid, ts: e.t });
  }
  for (const [k, count] of n) out.push({ side: 'final', key: k, time: END, ts: END, n: count, lefts: lists.get(k) ?? [], rights: rights.get(k) ?? [] });
  return out.map(canon);
}

function connectSpec(seed: number, nl: number, nr: number, keys: number): { left: L[]; right: R[] } {
  const r = rng(seed);
  const ops = ['add', 'add', 'add', 'add', 'add', 'add', 'add', 'clear', 'get', 'get'] as const;
  const left = Array.from({ length: nl }, (_, id): L => ({ k: Math.floor(r() * keys), id, t: Math.floor(r() * 10_000), op: ops[Math.floor(r() * ops.length)]! }));
  const right = Array.from({ length: nr }, (_, i): R => ({ user: { id: Math.floor(r() * keys) }, rid: 10_000 + i, t: Math.floor(r() * 10_000) }));
  return { left, right };
}

async function checkConnect(spec: { left: L[]; right: R[] }, args: string[]): Promise<string[]> {
  const r = await runs.run<unknown>('connect.ts', spec, [...args, '--set', 'operators.left.parallelism=1', '--set', 'operators.right.parallelism=1']);
  if (r.exit.code !== 0) return [`exit ${r.exit.code ?? r.exit.signal}: ${firstLine(r.exit.stderr)}`];
  const d = diff(connectModel(spec.left, spec.right), r.out.map(canon), 3);
  return [...d.missing.map((m) => `missing ${m}`), ...d.extra.map((x) => `unexpected ${x}`)];
}

t.test('connect().process: equal keys of both sides meet in one instance with shared value and list state (model)', async (t) => {
  let n = 0;
  await fc.assert(
    fc.asyncProperty(
      fc.integer({ min: 1, max: 2 ** 31 - 1 }), fc.integer({ min: 0, max: 250 }), fc.integer({ min: 0, max: 250 }), fc.integer({ min: 1, max: 12 }), fc.constantFrom(1, 3),
      async (seed, nl, nr, keys, parallelism) => {
        n++;
        const problems = await checkConnect(connectSpec(seed, nl, nr, keys), ['--set', 'execution=inline', '--set', `parallelism=${parallelism}`]);
        if (problems.length) throw new Error(`p=${parallelism}, ${nl}+${nr} records over ${keys} keys:\n${problems.join('\n')}`);
      },
    ),
    { numRuns: 5, endOnFailure: true },
  );
  t.pass(`${n} random two-sided streams agree with the model`);
});

t.test('connect().process with real workers (parallelism 3)', async (t) => {
  t.same(await checkConnect(connectSpec(31337, 200, 150, 9), ['--set', 'parallelism=3']), []);
});

t.test('one state name for two kinds of state is one line naming the state and the operator', async (t) => {
  // They would share a table whose keys overlap: a map listed the value as an entry with
  // key null, a list took map key 'x' for its last index and added at 'x' + 1 = 'x1'.
  for (const mode of ['value+map', 'map+list', 'list+value']) {
    const [a, b] = mode.split('+');
    const r = await runs.run<unknown>('state-names.ts', {}, ['--set', 'execution=inline', '--set', 'parallelism=1', '--set', 'restart.maxAttempts=0'], { TP_MODE: mode, TP_OUT: runs.path('names.jsonl') });
    t.not(r.exit.code, 0, `${mode}: the run fails`);
    const lines = r.exit.stderr.trim().split('\n');
    t.equal(lines.length, 1, `${mode}: one line: ${lines.slice(0, 2).join(' | ')}`);
    t.match(lines[0], new RegExp(`operator 'p' \\(subtask 0\\) threw TypeError: state 's' of operator 'p' is ${a} state; it cannot also be ${b} state`), `${mode}: names the state, its kinds and the operator`);
  }
});

// ---- TTL state -----------------------------------------------------------------------------

interface Item { k: string; id: number; peek?: true }
interface Seen { k: string; id: number; v: number | null; has: boolean; a: number | null; size: number; entries: [string, number][]; seen: number; peek?: string[]; deleted?: boolean }

t.test('value and map state with ttlMs: entries not written for ttl read as absent, and are removed incrementally', async (t) => {
  const TTL = 2000;
  const PAUSE = TTL + 1500;
  const r = rng(2718);
  // Phase 1: 150 records over keys k0…k99, 3 each for q0…q7 (map keys a, x0, x1, x2).
  // Phase 2: for each q two peeks at the first live map key (none, then z: with
  // expired x0…x2 still stored before it), then 300 records over k0…k19 (written in
  // phase 1: expired now) and n0…n99 (new): their accesses sweep the table, so the
  // expired entries of k20…k99 and q0…q7, never read again, must be removed too.
  const qs = Array.from({ length: 8 }, (_, q) => `q${q}`);
  const p1: Item[] = [
    ...Array.from({ length: 150 }, (_, i) => ({ k: `k${i < 100 ? i : Math.floor(r() * 100)}`, id: i })),
    ...qs.flatMap((k, q) => [0, 1, 2].map((j) => ({ k, id: 500 + 3 * q + j }))),
  ];
  const p2: Item[] = [
    ...qs.flatMap((k, q) => [{ k, id: 900 + 2 * q, peek: true as const }, { k, id: 901 + 2 * q, peek: true as const }]),
    ...Array.from({ length: 300 }, (_, i) => ({ k: r() < 0.2 ? `k${Math.floor(r() * 20)}` : `n${Math.floor(r() * 100)}`, id: 1000 + i })),
  ];
  const items = [...p1, ...p2];
  const res = await runs.run<Seen>('ttl-state.ts', { items, ttlMs: TTL, pauses: [{ at: p1.length, ms: PAUSE }] }, ['--set', 'execution=inline', '--set', 'parallelism=2', '--set', 'operators.items.parallelism=1']);
  t.equal(res.exit.code, 0, `run completes ${firstLine(res.exit.stderr)}`);

  // The model: what each record reads. Within a phase nothing expires; across the pause
  // everything written before it has.
  const expected: string[] = [];
  const vs = new Map<string, { phase: number; v: number }>();
  const ms = new Map<string, Map<string, { phase: number; v: number }>>();
  const seen = new Map<string, number>();
  items.forEach((e, i) => {
    const phase = i < p1.length ? 1 : 2;
    const m = ms.get(e.k) ?? new Map<string, { phase: number; v: number }>();
    ms.set(e.k, m);
    const live = [...m].filter(([, x]) => x.phase === phase).sort(([x], [y]) => (x < y ? -1 : 1)).map(([mk, x]) => [mk, x.v] as [string, number]);
    if (e.peek) {
      expected.push(canon({ k: e.k, id: e.id, peek: live.slice(0, 1).map(([mk]) => mk), deleted: live.some(([mk]) => mk === 'x1') }));
      m.delete('x1');
      m.set('z', { phase, v: e.id });
      return;
    }
    const v = vs.get(e.k);
    const a = live.find(([mk]) => mk === 'a');
    expected.push(canon({ k: e.k, id: e.id, v: v && v.phase === phase ? v.v : null, has: a !== undefined, a: a ? a[1] : null, size: live.length, entries: live, seen: seen.get(e.k) ?? 0 }));
    vs.set(e.k, { phase, v: e.id });
    m.set('a', { phase, v: e.id });
    m.set(`x${e.id % 3}`, { phase, v: e.id });
    seen.set(e.k, (seen.get(e.k) ?? 0) + 1);
  });
  const d = diff(expected, res.out.map(canon), 3);
  t.same(d, { missing: [], extra: [] }, 'every read as the model says (expired: absent; value, has, get, size, entries, keys with a limit)');
  const rereads = res.out.filter((o) => o.id >= 1000 && o.k.startsWith('k') && o.seen > 0 && !p2.some((x) => x.k === o.k && x.id < o.id));
  t.ok(rereads.length > 0 && rereads.every((o) => o.v === null && o.size === 0), `keys written before the pause read as absent after it (${rereads.length} first re-reads)`);
  t.same(res.out.filter((o) => o.peek).map((o) => o.peek), qs.flatMap(() => [[], ['z']]), 'keys({ limit: 1 }) finds the first live key behind expired ones');
  t.same(res.out.filter((o) => o.peek).map((o) => o.deleted), qs.flatMap(() => [false, false]), 'delete of an expired entry reports none was there');

  const keys = tableKeys(res.state);
  const liveV = [...vs.values()].filter((x) => x.phase === 2).length;
  const liveM = [...ms.values()].reduce((n, m) => n + [...m.values()].filter((x) => x.phase === 2).length, 0);
  t.same(
    { v: keys['ttl/v'], m: keys['ttl/m'], seen: keys['ttl/seen'] },
    { v: liveV, m: liveM, seen: seen.size },
    `the expired entries are gone from the tables (${vs.size - liveV} value entries expired); the state without ttl keeps every key`,
  );
});
