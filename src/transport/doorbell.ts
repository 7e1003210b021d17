// Doorbell: park on one Int32 word of a SharedArrayBuffer without blocking the event
// loop, and ring it from another thread.
//
// `Atomics.waitAsync` resolves a promise when the word is notified (or on timeout),
// but the pending wait is not a libuv handle: a worker whose only pending work is
// such a wait exits. So while a wait is outstanding we hold a ref'd timer and drop
// it as soon as the wait settles. Node 20 has `Atomics.waitAsync`; TypeScript's
// ES2022 lib does not declare it, hence the local type.

export type WaitResult = 'ok' | 'not-equal' | 'timed-out';

type WaitAsyncFn = (
  i32: Int32Array,
  index: number,
  value: number,
  timeoutMs?: number,
) => { async: false; value: 'not-equal' | 'timed-out' } | { async: true; value: Promise<'ok' | 'timed-out'> };

const waitAsyncImpl = (Atomics as unknown as { waitAsync?: WaitAsyncFn }).waitAsync;
const KEEPALIVE_MS = 0x7fffffff;
const noop = () => {};

/**
 * Sleep until `i32[index]` is notified while it still holds `value`, or until
 * `timeoutMs` passes (Infinity: no timeout). Resolves 'not-equal' at once if the
 * word already differs. Keeps the calling thread's event loop alive meanwhile.
 */
export function waitWord(i32: Int32Array, index: number, value: number, timeoutMs = Infinity): Promise<WaitResult> {
  if (waitAsyncImpl === undefined) {
    return Promise.reject(new Error('Atomics.waitAsync is not available; tidepool needs Node 20 or newer'));
  }
  const res = waitAsyncImpl(i32, index, value, timeoutMs);
  if (!res.async) return Promise.resolve(res.value);
  const keepAlive = setInterval(noop, KEEPALIVE_MS);
  return res.value.then(
    (v) => {
      clearInterval(keepAlive);
      return v;
    },
    (err: unknown) => {
      clearInterval(keepAlive);
      throw err;
    },
  );
}
