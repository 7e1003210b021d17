// `memory` storage: encoded pages in a Map of the owning thread. No files, no I/O
// worker, nothing survives close. Flushes still serialize and checksum pages, so a
// memory store behaves like a durable one apart from durability itself.
import type { CommitRecord, FlushBatch, StateBackend } from './backend.js';

export class MemoryBackend implements StateBackend {
  readonly kind = 'memory' as const;
  readonly lastCommit = undefined;
  readonly spillDir = undefined;
  private readonly pages = new Map<number, { bytes: Uint8Array; version: number }>();
  private commit: CommitRecord | undefined;

  readPage(pageId: number): { bytes: Uint8Array; version: number } | undefined {
    return this.pages.get(pageId);
  }

  async writeFlush(batch: FlushBatch): Promise<void> {
    let bytes = 0;
    for (const page of batch.pages) {
      const b = Buffer.from(batch.read(page));
      this.pages.set(page.pageId, { bytes: b, version: batch.version });
      bytes += b.length;
    }
    for (const id of batch.freed) this.pages.delete(id);
    this.commit = { ...batch.commit, pagesWritten: batch.pages.length, bytesWritten: bytes };
  }

  /** The last commit record written (for inspection in tests). */
  get currentCommit(): CommitRecord | undefined {
    return this.commit;
  }

  async close(): Promise<void> {
    this.pages.clear();
  }
}
