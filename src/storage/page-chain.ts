// Reading a page as of a flush version from LMDB: its newest version ≤ the flush and,
// when that is a delta (src/state/page-delta.ts), the versions below it down to the
// newest whole one. One reverse range read over the page's keys [state, page, version].
import type { Database, Transaction } from 'lmdb';
import { PAGE_CODEC_OFFSET, encodePage, isDeltaEnvelope } from '../state/page-format.js';
import type { StoredPage } from '../state/pager.js';
import { decodeStoredPage } from '../state/page-delta.js';
import { serializeNode } from '../state/node.js';
import { CODEC_NONE, codecById } from '../state/codecs.js';
import { errors } from '../errors.js';

export function readPageChain(
  pages: Database<Buffer, [string, number, number]>, stateId: string, pageId: number, version: number, transaction?: Transaction,
): StoredPage | undefined {
  let deltas: { bytes: Uint8Array; version: number }[] | undefined;
  for (const { key, value } of pages.getRange({ start: [stateId, pageId, version], end: [stateId, pageId, -1], reverse: true, transaction })) {
    const v = (key as [string, number, number])[2];
    if (!isDeltaEnvelope(value)) return { bytes: value, version: v, deltas: deltas?.reverse() };
    (deltas ??= []).push({ bytes: value, version: v });
  }
  if (deltas === undefined) return undefined;
  // No whole version below the deltas: the pager reports the broken chain.
  const oldest = deltas.pop()!;
  return { bytes: oldest.bytes, version: oldest.version, deltas: deltas.reverse() };
}

/**
 * The page as of `version` as one whole envelope, for a store that keeps one version
 * per page (remote packs): its chain decoded and applied, then written again with the
 * codec of its newest envelope (uncompressed if that codec is not at hand). Built-in
 * codecs must be ready (prepareBuiltinCodecs); a page of a custom codec fails, naming it.
 */
export function wholePageAt(
  pages: Database<Buffer, [string, number, number]>, stateId: string, pageId: number, version: number, transaction?: Transaction,
): Buffer {
  const found = readPageChain(pages, stateId, pageId, version, transaction);
  if (found === undefined) throw errors.corruptPage({ table: `(state '${stateId}')`, pageId, version }, 'page is missing from storage');
  const { node } = decodeStoredPage(pageId, `(state '${stateId}')`, found, (id) => codecById(id));
  const newest = found.deltas?.length ? found.deltas[found.deltas.length - 1]!.bytes : found.bytes;
  return encodePage(serializeNode(node), codecById(newest[PAGE_CODEC_OFFSET]!) ?? codecById(CODEC_NONE)!);
}
