// The I/O worker's side of page deltas (src/storage/page-chain.ts has the layout): a
// delta is put under [state, version, page] of the deltas' key range and its version
// joins the page's head; a delta deleted (GC, the cleanup of an unfinished flush, a
// restore to an older checkpoint) leaves the head, and an empty head is removed.
//
// An attached state's heads are kept in memory here (DeltaHeads), loaded once at attach:
// a delta put is then two queued writes and no read. Reading each head from LMDB before
// rewriting it was a fifth of the I/O worker's time per delta (perf/RESULTS.md). The
// memory copy is the truth for this worker: every head edit goes through it, in the
// order its writes are queued, so LMDB's heads end up equal to it once they land.
import type { Env } from './io-envs.js';

type Write = (p: Promise<unknown>) => void;
/** The two key ranges a state's deltas use (src/storage/page-chain.ts). */
export type DeltaDbs = Pick<Env, 'heads' | 'deltas'>;

export class DeltaHeads {
  private constructor(
    private readonly env: DeltaDbs,
    private readonly stateId: string,
    private readonly byPage: Map<number, number[]>,
  ) {}

  /** The state's heads as stored. Load only once no write of the state is queued. */
  static load(env: DeltaDbs, stateId: string): DeltaHeads {
    const byPage = new Map<number, number[]>();
    for (const [pageId, head] of storedHeads(env, stateId)) byPage.set(pageId, head);
    return new DeltaHeads(env, stateId, byPage);
  }

  /** Whether the page's head lists a delta at `version`. */
  lists(pageId: number, version: number): boolean {
    return this.byPage.get(pageId)?.includes(version) ?? false;
  }

  /** How many pages have deltas listed (for tests and inspection). */
  get pages(): number {
    return this.byPage.size;
  }

  /** Puts a delta of `pageId` at `version` and lists it in the page's head. */
  put(pageId: number, version: number, envelope: Buffer, write: Write): Promise<unknown> {
    const head = this.byPage.get(pageId) ?? [];
    if (!head.includes(version)) {
      head.push(version);
      head.sort((a, b) => a - b);
      this.byPage.set(pageId, head);
      write(this.env.heads.put([this.stateId, pageId], head));
    }
    return this.env.deltas.put([this.stateId, version, pageId], envelope);
  }

  /**
   * Deletes the page's deltas whose version `drop` selects, then their head entries (in
   * that order: a crash between the two leaves head entries without deltas below the
   * page's whole version, which readers never look at, rather than deltas nothing lists).
   * Returns how many.
   */
  drop(pageId: number, drop: (v: number) => boolean, write: Write): number {
    const head = this.byPage.get(pageId);
    if (head === undefined) return 0;
    const kept = head.filter((v) => !drop(v));
    if (kept.length === head.length) return 0;
    for (const v of head) if (drop(v)) write(this.env.deltas.remove([this.stateId, v, pageId]));
    this.setHead(pageId, kept, write);
    return head.length - kept.length;
  }

  /**
   * A failed flush's deltas at `version`, of the pages it put them for: deleted by the
   * version's key range (whatever of them landed), and the heads of those pages written
   * again without it (whether or not their earlier head write landed).
   */
  dropFailed(version: number, pageIds: readonly number[], write: Write): void {
    for (const key of this.env.deltas.getKeys({ start: [this.stateId, version], end: [this.stateId, version + 1] })) write(this.env.deltas.remove(key));
    for (const id of new Set(pageIds)) {
      const head = this.byPage.get(id);
      if (head) this.setHead(id, head.filter((v) => v !== version), write);
    }
  }

  private setHead(pageId: number, head: number[], write: Write): void {
    if (head.length) {
      this.byPage.set(pageId, head);
      write(this.env.heads.put([this.stateId, pageId], head));
    } else {
      this.byPage.delete(pageId);
      write(this.env.heads.remove([this.stateId, pageId]));
    }
  }
}

/**
 * Deletes every delta of versions [from, to] (one range of the version-first keys) and
 * those versions from every head, as stored. Used at attach, before the heads are loaded,
 * on versions of an unfinished flush (a crash) and of a checkpoint restored past: a crash
 * may have committed a delta without its head entry or the other way round, so both are
 * looked for, not one through the other. Returns how many deltas it deleted.
 */
export function dropDeltaVersions(env: Env, stateId: string, from: number, to: number, write: Write): number {
  let n = 0;
  for (const key of env.deltas.getKeys({ start: [stateId, from], end: [stateId, to + 1] })) {
    write(env.deltas.remove(key));
    n++;
  }
  for (const [pageId, head] of storedHeads(env, stateId)) {
    const kept = head.filter((v) => v < from || v > to);
    if (kept.length !== head.length) write(kept.length ? env.heads.put([stateId, pageId], kept) : env.heads.remove([stateId, pageId]));
  }
  return n;
}

/** Deletes every delta and head of a state. */
export function dropAllDeltas(env: Env, stateId: string, write: Write): void {
  for (const k of env.deltas.getKeys({ start: [stateId, -1], end: [stateId, Number.MAX_SAFE_INTEGER] })) write(env.deltas.remove(k));
  for (const k of env.heads.getKeys({ start: [stateId, -1], end: [stateId, Number.MAX_SAFE_INTEGER] })) write(env.heads.remove(k));
}

/** A state's stored heads, page by page; a damaged one is an error naming it. */
function* storedHeads(env: DeltaDbs, stateId: string): Iterable<[number, number[]]> {
  for (const key of env.heads.getKeys({ start: [stateId, -1], end: [stateId, Number.MAX_SAFE_INTEGER] })) {
    let head: number[];
    try {
      head = env.heads.get(key)!;
    } catch (e) {
      throw new Error(`state '${stateId}': the delta head of page ${key[1]} is damaged (${(e as Error).message}); restore the state directory from a retained or remote checkpoint`);
    }
    yield [key[1]!, head];
  }
}
