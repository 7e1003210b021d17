// The shared part of the fail-once fixtures (throw-once.ts, window-throw-once.ts): their
// environment, and a map that throws on record TP_BOOM_AT unless the marker file TP_MARKER
// exists — it creates the marker first, so a restarted attempt (in-process restart, or a
// rerun) gets past it.
import { existsSync, writeFileSync } from 'node:fs';

export interface ThrowOnceEnv { n: number; boomAt: number; marker: string; out: string }

/** TP_N, TP_BOOM_AT, TP_MARKER and TP_OUT; a fixture missing one fails to load, naming them. */
export function throwOnceEnv(fixture: string): ThrowOnceEnv {
  const n = Number(process.env.TP_N);
  const boomAt = Number(process.env.TP_BOOM_AT);
  const marker = process.env.TP_MARKER;
  const out = process.env.TP_OUT;
  if (!Number.isSafeInteger(n) || !Number.isSafeInteger(boomAt) || !marker || !out) {
    throw new Error(`${fixture} fixture: set TP_N, TP_BOOM_AT, TP_MARKER and TP_OUT`);
  }
  return { n, boomAt, marker, out };
}

/** The map step: passes records on, and throws once at record `boomAt`. */
export function boomOnce<R extends { i: number }>(boomAt: number, marker: string): (r: R) => R {
  return (r) => {
    if (r.i === boomAt && !existsSync(marker)) {
      writeFileSync(marker, `failed once at record ${r.i}\n`);
      throw new Error(`planned failure at record ${r.i}`);
    }
    return r;
  };
}
