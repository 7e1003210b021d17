// The records and functions of the flow benchmarks (perf/flow.bench.ts), shared by the
// flow modules in this directory and by the bench's plain-loop baselines, so that both
// sides run exactly the same code per record.
//
// Flow modules read their sizes from the environment (workers inherit it):
//   TIDEPOOL_BENCH_N     records the generator makes (default 1000)
//   TIDEPOOL_BENCH_KEYS  distinct keys (default 1000)
import type { SinkSpec, SinkWriter } from '../../src/index.js';

export interface Event {
  user: string;
  amount: number;
}

/** A positive integer from the environment. */
export function envInt(name: string, fallback: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  const n = Number(raw);
  if (!Number.isSafeInteger(n) || n < 0) throw new Error(`${name}: expected a non-negative integer, got ${JSON.stringify(raw)}`);
  return n;
}

// 999_983 is prime and coprime with 10^k, so k ↦ k·P mod keys is a permutation of
// 0..keys-1 for the key counts used here: every pass of `keys` records touches every
// key exactly once, in a scattered order (no sequential runs through the B+tree).
const SCATTER = 999_983;

/** Record i: key `user-<k>` with k scattered over `keys` distinct values. */
export function makeEvents(keys: number): (i: number) => Event {
  if (keys * SCATTER > Number.MAX_SAFE_INTEGER) throw new Error(`too many keys: ${keys}`);
  return (i) => ({ user: `user-${((i % keys) * SCATTER) % keys}`, amount: i & 1023 });
}

export const userOf = (e: Event): string => e.user;

export const count = (acc: number | undefined, _e: Event): number => (acc ?? 0) + 1;

// The stateless pipeline: map → filter → map.
export interface Priced {
  user: string;
  amount: number;
  cents: number;
}
export const price = (e: Event): Priced => ({ user: e.user, amount: e.amount, cents: e.amount * 100 + 99 });
export const large = (p: Priced): boolean => p.amount >= 256; // keeps 3 records in 4
export const project = (p: Priced): { u: string; c: number } => ({ u: p.user, c: p.cents });

/** A sink that drops every record (it only counts them): the flow's cost without output I/O. */
export function discardSink<T>(): SinkSpec<T> {
  return {
    kind: 'sink',
    type: 'discard',
    open(): SinkWriter<T> {
      let seen = 0;
      return {
        write(records: T[]): void {
          seen += records.length;
        },
        prepare(): void {},
        commit(): void {},
        close(): void {
          if (seen < 0) throw new Error('unreachable');
        },
      };
    },
  };
}

// The sliding-window count (sliding-count.ts).
export interface Tick { k: number; t: number }

/** Record i: a key out of `keys` (each once per `keys` records, scattered), event time i·step. */
export const slidingRecord = (keys: number, stepMs: number) => (i: number): Tick => ({ k: (i * 7919) % keys, t: i * stepMs });

/** What the window operator emits without a `result` function. */
export interface WindowCount { key: number; window: { start: number; end: number }; value: number }
