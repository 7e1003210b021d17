// The I/O worker's half of a lazy remote restore: copies the restored checkpoint's
// pages from the remote store into the local LMDB environment.
//
// Two ways in, both writing the same page versions (so racing them is harmless):
// - on demand: an operator whose page read found nothing asks for that page (it waits,
//   see IoAttachment.fetchPageSync); the page's pack is found from the plan's page
//   ranges, its index read once (cached) and the page fetched with one ranged read;
// - in the background: every pack, newest chain link first (its versions supersede
//   older ones), fetched whole and checked against its CRC, one ahead of the write.
// A page is written only if no version ≤ the restored flush is local yet. When every
// pack is done and durable the plan is removed; until then the caller defers GC.
import type { Database } from 'lmdb';
import type { ObjectStore } from './object-store.js';
import { decodePack, decodePackIndex, findPage, type PackIndex } from './packs.js';
import { removeRestorePlan, type RestorePlan } from './restore-plan.js';

const QUIET_MS = 200;
const MAX_YIELD_MS = 2000;
const START_WAIT_MS = 3000;

export interface HydrationTarget {
  dir: string;
  pages: Database<Buffer, [string, number, number]>;
  /** Resolves once every committed write is on disk. */
  durable(): Promise<void>;
  /**
   * Whether a retained local checkpoint still names the partition. One that none does
   * (the old partitions after a rescale) is not copied in: its remote objects may
   * already be collected, and the next run drops it locally.
   */
  needed(stateId: string): boolean;
}

export interface HydrationStats {
  pagesFetched: number;
  pagesCopied: number;
  bytes: number;
}

export class Hydration {
  readonly stats: HydrationStats = { pagesFetched: 0, pagesCopied: 0, bytes: 0 };
  /** Settles when every page is local and the plan is gone (rejects if the copy failed). */
  readonly done: Promise<void>;
  private stopped = false;
  /** When the last on-demand fetch started or ended, and how many there were. */
  private demandAt = performance.now();
  private demands = 0;
  private readonly indexes = new Map<string, Promise<PackIndex>>();

  constructor(private readonly target: HydrationTarget, private readonly store: Promise<ObjectStore>, private readonly plan: RestorePlan, readonly background: boolean) {
    this.done = background ? this.copyAll() : new Promise<void>(() => undefined);
    this.done.catch(() => undefined); // reported by whoever waits on it
  }

  /**
   * The process is exiting: the background copy stops after the pack it is writing (the
   * plan stays, the next run resumes). `done` rejects once it has stopped.
   */
  stop(): void {
    this.stopped = true;
  }

  /**
   * Fetches page `pageId` of `stateId` — the newest version the restored checkpoint has —
   * and stores it (`stored` settles when LMDB has committed it).
   */
  async fetchPage(stateId: string, pageId: number): Promise<{ version: number; bytes: Buffer; stored: Promise<unknown> }> {
    this.demandAt = performance.now();
    this.demands++;
    try {
      return await this.fetchNewest(stateId, pageId);
    } finally {
      this.demandAt = performance.now();
    }
  }

  private async fetchNewest(stateId: string, pageId: number): Promise<{ version: number; bytes: Buffer; stored: Promise<unknown> }> {
    const s = this.plan.states[stateId];
    if (!s) throw new Error(`state '${stateId}' is not part of remote checkpoint ${this.plan.id}`);
    const store = await this.store;
    for (let i = s.objects.length - 1; i >= 0; i--) {
      const [first, last, headBytes] = s.ranges[i]!;
      if (pageId < first || pageId > last) continue;
      const object = s.objects[i]!;
      const index = await this.index(store, object, headBytes);
      const e = findPage(index, pageId);
      if (!e) continue;
      const [, version, offset, length] = e;
      const bytes = await store.getRange(object, headBytes + offset, length);
      if (!bytes || bytes.length !== length) throw new Error(`${store.where}: ${object} is truncated (page ${pageId})`);
      const stored = this.isLocal(stateId, pageId, s.version) ? Promise.resolve() : this.target.pages.put([stateId, pageId, version], bytes);
      this.stats.pagesFetched++;
      this.stats.bytes += length;
      return { version, bytes, stored };
    }
    throw new Error(`page ${pageId} of state '${stateId}' is in none of remote checkpoint ${this.plan.id}'s packs`);
  }

  private index(store: ObjectStore, object: string, headBytes: number): Promise<PackIndex> {
    let p = this.indexes.get(object);
    if (!p) {
      p = store.getRange(object, 0, headBytes).then((head) => {
        if (!head) throw new Error(`${store.where}: ${object} is missing`);
        this.stats.bytes += head.length;
        return decodePackIndex(head, `${store.where}, ${object}`);
      });
      p.catch(() => this.indexes.delete(object)); // a failed read is tried again next time
      this.indexes.set(object, p);
    }
    return p;
  }

  private isLocal(stateId: string, pageId: number, version: number): boolean {
    for (const _ of this.target.pages.getKeys({ start: [stateId, pageId, version], end: [stateId, pageId, -1], reverse: true, limit: 1 })) return true;
    return false;
  }

  /**
   * On-demand fetches go first: a reader is blocked on each. Before each pack the
   * background copy waits until none has been asked for in QUIET_MS (at most
   * MAX_YIELD_MS, so it always progresses); before the first one, also until the run's
   * first reads came (or START_WAIT_MS passed) — a restored run's first record needs a
   * handful of pages, and the copy must not be the queue they wait in.
   */
  private async yieldToReaders(first: boolean): Promise<void> {
    const t0 = performance.now();
    const limit = first ? START_WAIT_MS : MAX_YIELD_MS;
    while (!this.stopped && performance.now() - t0 < limit) {
      const quiet = performance.now() - this.demandAt >= QUIET_MS;
      if (quiet && (!first || this.demands > 0)) return;
      await new Promise((r) => setTimeout(r, 20).unref());
    }
  }

  private async copyAll(): Promise<void> {
    const store = await this.store;
    await this.yieldToReaders(true);
    const jobs: { stateId: string; version: number; object: string; seen: Set<number> }[] = [];
    for (const [stateId, s] of Object.entries(this.plan.states)) {
      const seen = new Set<number>(); // pages a newer link of this chain already had
      for (let i = s.objects.length - 1; i >= 0; i--) jobs.push({ stateId, version: s.version, object: s.objects[i]!, seen });
    }
    // An unreachable store is waited out (the run goes on; pages it needs meanwhile
    // fail their own reads); a missing object is an error at once.
    const fetch = async (j: (typeof jobs)[number]): Promise<Buffer> => {
      for (let backoff = 500; ; backoff = Math.min(backoff * 2, 30_000)) {
        let body: Buffer | undefined;
        try {
          body = await store.get(j.object);
        } catch (e) {
          if (this.stopped) throw e;
          await new Promise((r) => setTimeout(r, backoff).unref());
          continue;
        }
        if (!body) throw new Error(`${store.where}: ${j.object} is missing`);
        return body;
      }
    };
    let next = jobs.length ? fetch(jobs[0]!) : undefined;
    for (let k = 0; k < jobs.length; k++) {
      if (k > 0) await this.yieldToReaders(false);
      if (this.stopped) throw new Error('stopped: the process is exiting');
      const j = jobs[k]!;
      const body = await next!.catch((e: unknown) => {
        if (this.target.needed(j.stateId)) throw e;
        return undefined;
      });
      if (!body) {
        next = k + 1 < jobs.length ? fetch(jobs[k + 1]!) : undefined;
        next?.catch(() => undefined);
        continue; // a partition nothing needs any more
      }
      next = k + 1 < jobs.length ? fetch(jobs[k + 1]!) : undefined; // one pack ahead
      next?.catch(() => undefined); // awaited at the next step
      const p = decodePack(body, `${store.where}, ${j.object}`);
      let last: Promise<unknown> | undefined;
      for (const [pageId, version, page] of p.pages) {
        if (j.seen.has(pageId)) continue;
        j.seen.add(pageId);
        if (this.isLocal(j.stateId, pageId, j.version)) continue;
        last = this.target.pages.put([j.stateId, pageId, version], Buffer.from(page.buffer, page.byteOffset, page.byteLength));
        this.stats.pagesCopied++;
      }
      this.stats.bytes += body.length;
      await last;
    }
    await this.target.durable();
    removeRestorePlan(this.target.dir);
  }
}
