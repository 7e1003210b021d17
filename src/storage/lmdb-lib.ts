// lmdb-js, loaded on first use rather than at import. Every operator worker imports the
// storage layer, but only instances with lmdb or temp state read LMDB: a stateless
// source or map skips loading the native addon (about 60 ms of a worker's start-up,
// which every run and every restore pays).
type Lmdb = typeof import('lmdb');
let lib: Lmdb | undefined;

/** Loads lmdb-js in this thread (once). */
export async function loadLmdb(): Promise<Lmdb> {
  return (lib ??= await import('lmdb'));
}

/** lmdb-js, after loadLmdb() resolved in this thread. */
export function lmdb(): Lmdb {
  if (lib === undefined) throw new Error('lmdb-js is not loaded in this thread: await loadLmdb() first');
  return lib;
}
