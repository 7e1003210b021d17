// The default size of each stateful instance's page cache, when `state.cachePages` is not
// set. A fixed 1024 pages (16 MiB of pages) thrashes at a million keys — 50,000 pages
// spilled and read back in one keyed count (perf/RESULTS.md, issue 10) — while the machine
// has gigabytes free; and a fixed larger number would overcommit with many instances.
// So: a share of the memory this process may use, split over the flow's stateful
// instances, counted at a decoded page's size in the heap (about 4× its bytes on disk:
// keys and values as JS objects), within [MIN, MAX] pages per instance. MAX keeps one
// instance's cache well inside a worker's default V8 heap limit.
import { totalmem } from 'node:os';

export const CACHE_MEMORY_SHARE = 1 / 16;
export const DECODED_PAGE_FACTOR = 4;
export const MIN_AUTO_CACHE_PAGES = 1024;
export const MAX_AUTO_CACHE_PAGES = 16384;

/** Bytes this process may use: the cgroup limit when there is one, else physical memory. */
export function usableMemoryBytes(): number {
  const limit = (process as { constrainedMemory?: () => number | undefined }).constrainedMemory?.();
  const total = totalmem();
  return limit !== undefined && limit > 0 ? Math.min(limit, total) : total;
}

/** Pages per stateful instance when the config leaves `state.cachePages` unset. */
export function defaultCachePages(pageSize: number, statefulInstances: number, memoryBytes = usableMemoryBytes()): number {
  const perInstance = (memoryBytes * CACHE_MEMORY_SHARE) / Math.max(1, statefulInstances);
  const pages = Math.floor(perInstance / (pageSize * DECODED_PAGE_FACTOR));
  return Math.min(MAX_AUTO_CACHE_PAGES, Math.max(MIN_AUTO_CACHE_PAGES, pages));
}
