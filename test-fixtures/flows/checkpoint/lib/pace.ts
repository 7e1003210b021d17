// Pacing for the checkpoint fixtures: a crash loop needs runs that make some progress
// before each kill, not runs that finish at once. pacer(r) returns a function to call
// once per record; it sleeps the calling worker (Atomics.wait) whenever that worker is
// ahead of r records per second. r ≤ 0 or NaN: no pacing. After a stall (backpressure,
// a slow checkpoint) it does not burst to catch up.
const sleeper = new Int32Array(new SharedArrayBuffer(4));

export function pacer(perSecond: number): () => void {
  if (!(perSecond > 0)) return () => undefined;
  let start = 0;
  let n = 0;
  return () => {
    const now = performance.now();
    if (n === 0) start = now;
    n++;
    const ahead = (n * 1000) / perSecond - (now - start);
    if (ahead > 2) Atomics.wait(sleeper, 0, 0, ahead);
    else if (ahead < -100) {
      start = now;
      n = 1;
    }
  };
}

/** TP_RATE from the environment: records per second per worker (unset or 0: unpaced). */
export const envRate = (): number => Number(process.env.TP_RATE ?? 0);
