// Where page deltas (src/state/page-delta.ts) live in LMDB, and reading a page as of a
// flush version through its chain. All three kinds are in the `pages` database
// (src/storage/keyspace.ts says why not databases of their own):
//
//   pages   [state, page, version]       → whole page envelope
//   deltas  [state, 'd', version, page]  → delta envelope (FLAG_DELTA)
//   heads   [state, 'h', page]           → the versions of the page's stored deltas, ascending
//
// Deltas are keyed version first, after every page of their state: a checkpoint's
// deltas are appended in one place. Stored beside their pages ([state, page, version])
// every small delta put made LMDB copy the 32 KiB leaf holding the page's whole version
// (its B-tree is copy-on-write), so a checkpoint of 1.2 MiB of deltas made 175 MiB of
// writes. A page's head lists where its deltas are; it is small, so rewriting it costs little.
//
// A page as of version V: its newest whole version W ≤ V, then the deltas its head lists
// in (W, V]. The I/O worker keeps heads exact: a delta's version joins its page's head
// when the delta is put, and leaves it when GC, a crash cleanup or a restore to an older
// checkpoint deletes the delta.
import type { Database, RootDatabase, Transaction } from 'lmdb';
import { PAGE_CODEC_OFFSET, encodePage } from '../state/page-format.js';
import type { StoredPage } from '../state/pager.js';
import { decodeStoredPage } from '../state/page-delta.js';
import { serializeNode } from '../state/node.js';
import { CODEC_NONE, codecById } from '../state/codecs.js';
import { errors } from '../errors.js';
import { PAGES_DB } from './io-protocol.js';
import { Keyspace, bytesCodec, versionsCodec } from './keyspace.js';

export interface PageDbs {
  pages: Database<Buffer, [string, number, number]>;
  deltas: Keyspace<Buffer>;
  heads: Keyspace<number[]>;
}

export function openPageDbs(root: RootDatabase): PageDbs {
  const pages = root.openDB({ name: PAGES_DB, encoding: 'binary', keyEncoding: 'ordered-binary' }) as Database<Buffer, [string, number, number]>;
  return {
    pages,
    deltas: new Keyspace(pages as never, 'd', bytesCodec),
    heads: new Keyspace(pages as never, 'h', versionsCodec),
  };
}

/** A key of the pages database that is a whole page's (not a delta's or a head's). */
export function isPageKey(key: unknown): key is [string, number, number] {
  return typeof (key as unknown[])[1] === 'number';
}

/** The page's newest whole version ≤ `version`, and the deltas above it up to `version`. */
export function readPageChain(dbs: PageDbs, stateId: string, pageId: number, version: number, transaction?: Transaction): StoredPage | undefined {
  let whole: { bytes: Buffer; version: number } | undefined;
  for (const { key, value } of dbs.pages.getRange({ start: [stateId, pageId, version], end: [stateId, pageId, -1], reverse: true, limit: 1, transaction })) {
    whole = { bytes: value, version: (key as [string, number, number])[2] };
  }
  let head: number[] | undefined;
  try {
    head = dbs.heads.get([stateId, pageId], transaction);
  } catch (e) {
    throw errors.corruptPage({ table: `(state '${stateId}')`, pageId, version }, `the page's delta head is damaged: ${(e as Error).message}`);
  }
  const above = head?.filter((v) => v > (whole?.version ?? -1) && v <= version) ?? [];
  if (above.length === 0) return whole;
  const deltas = above.map((v) => {
    const bytes = dbs.deltas.get([stateId, v, pageId], transaction);
    if (bytes === undefined) throw errors.corruptPage({ table: `(state '${stateId}')`, pageId, version: v }, "a delta the page's head lists is missing from storage");
    return { bytes, version: v };
  });
  // No whole version below the deltas: the pager reports the broken chain.
  if (whole === undefined) return { bytes: deltas[0]!.bytes, version: deltas[0]!.version, deltas: deltas.slice(1) };
  return { bytes: whole.bytes, version: whole.version, deltas };
}

/**
 * The page as of `version` as one whole envelope, for a store that keeps one version
 * per page (remote packs): its chain decoded and applied, then written again with the
 * codec of its newest envelope (uncompressed if that codec is not at hand). Built-in
 * codecs must be ready (prepareBuiltinCodecs); a page of a custom codec fails, naming it.
 */
export function wholePageAt(dbs: PageDbs, stateId: string, pageId: number, version: number, transaction?: Transaction): Buffer {
  const found = readPageChain(dbs, stateId, pageId, version, transaction);
  if (found === undefined) throw errors.corruptPage({ table: `(state '${stateId}')`, pageId, version }, 'page is missing from storage');
  const { node } = decodeStoredPage(pageId, `(state '${stateId}')`, found, (id) => codecById(id));
  const newest = found.deltas?.length ? found.deltas[found.deltas.length - 1]!.bytes : found.bytes;
  return encodePage(serializeNode(node), codecById(newest[PAGE_CODEC_OFFSET]!) ?? codecById(CODEC_NONE)!);
}

/** Every delta stored for a state, from the heads: page id → versions ascending. */
export function headsOf(dbs: PageDbs, stateId: string, transaction?: Transaction): Map<number, number[]> {
  const out = new Map<number, number[]>();
  for (const { key, value } of dbs.heads.getRange({ start: [stateId, -1], end: [stateId, Number.MAX_SAFE_INTEGER], transaction })) out.set((key as [string, number])[1], value);
  return out;
}
