// The I/O worker's LMDB environments: one per state directory (and sync mode), shared
// by every state attached there and by a lazy restore's copy-in, closed when the last
// user lets go.
import { open, type Database, type RootDatabase } from 'lmdb';
import { ATTEMPTS_DB, COMMITS_DB, envOptions } from '../src/storage/io-protocol.js';
import type { CommitRecord } from '../src/storage/backend.js';
import { backLmdbMap, checkNamedDbs } from '../src/storage/lmdb-file.js';
import { hasRestorePlan } from '../src/storage/remote/restore-plan.js';
import { openPageDbs, type PageDbs } from '../src/storage/page-chain.js';

const envs = new Map<string, Env>();

export interface Env {
  dir: string;
  noSync: boolean;
  root: RootDatabase;
  pages: Database<Buffer, [string, number, number]>;
  /** Page deltas and the heads listing them (src/storage/page-chain.ts). */
  deltas: PageDbs['deltas'];
  heads: PageDbs['heads'];
  commits: Database<CommitRecord, [string, number]>;
  attempts: Database<number, string>;
  /** The same two databases, read as stored bytes (commit-record.ts says why). */
  commitsRaw: Database<Buffer, [string, number]>;
  attemptsRaw: Database<Buffer, string>;
  users: number;
  /**
   * A lazy remote restore is copying pages in (its plan is in the directory): GC and
   * partition drops wait, since a page copied in after GC ran could never be collected.
   */
  restorePending: boolean;
}

export function openEnv(dir: string, noSync: boolean): { env: Env; key: string } {
  const key = `${dir}\0${noSync}`;
  let env = envs.get(key);
  if (!env) {
    backLmdbMap(dir);
    const root = open(envOptions(dir, noSync));
    try {
      checkNamedDbs(dir, root);
    } catch (e) {
      void root.close();
      throw e;
    }
    const dbs = openPageDbs(root);
    env = {
      dir,
      noSync,
      root,
      pages: dbs.pages,
      deltas: dbs.deltas,
      heads: dbs.heads,
      commits: root.openDB({ name: COMMITS_DB, encoding: 'msgpack', keyEncoding: 'ordered-binary' }) as never,
      attempts: root.openDB({ name: ATTEMPTS_DB, encoding: 'msgpack', keyEncoding: 'ordered-binary' }) as never,
      commitsRaw: root.openDB({ name: COMMITS_DB, encoding: 'binary', keyEncoding: 'ordered-binary' }) as never,
      attemptsRaw: root.openDB({ name: ATTEMPTS_DB, encoding: 'binary', keyEncoding: 'ordered-binary' }) as never,
      users: 0,
      restorePending: hasRestorePlan(dir),
    };
    envs.set(key, env);
  }
  env.users++;
  return { env, key };
}

/**
 * Resolves once every write committed so far is on disk (a `temp` environment
 * promises no more than committed). Not `root.flushed`: lmdb-js drops the flush
 * waiters of a batch whose commit failed, so after a failed write (a full disk) it
 * would never settle.
 */
export function durable(env: Env): Promise<void> {
  if (env.noSync) return Promise.resolve();
  const root = env.root as unknown as { sync(done: (e?: Error) => void): void }; // not in lmdb-js's types
  return new Promise((resolve, reject) => root.sync((e) => (e ? reject(e) : resolve())));
}

/** One user of `env` is done with it; the last one closes it. */
export function releaseEnv(env: Env): void {
  if (--env.users > 0) return;
  for (const [k, e] of envs) if (e === env) envs.delete(k);
  void env.root.close();
}

/**
 * Closes the environments of `dir` whoever still uses them: the directory is about to
 * be deleted (a run's fresh start), and a later open must see the new files, not the
 * deleted ones an environment kept open would still show.
 */
export async function closeEnvsOf(dir: string): Promise<void> {
  const gone = [...envs].filter(([, e]) => e.dir === dir);
  for (const [k] of gone) envs.delete(k);
  await Promise.all(gone.map(([, e]) => e.root.close().catch(() => undefined)));
}

/** Closes every environment (the worker is about to exit). */
export async function closeAllEnvs(): Promise<void> {
  const all = [...envs.values()];
  envs.clear();
  await Promise.all(all.map((e) => e.root.close().catch(() => undefined)));
}
