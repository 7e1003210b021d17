// The JSON-lines encoding every sink shares: one `JSON.stringify(record)` per line,
// property order kept, bigints as decimal strings.

/** JSON.stringify replacer: bigints become their decimal strings. */
export function bigintReplacer(_key: string, value: unknown): unknown {
  return typeof value === 'bigint' ? value.toString() : value;
}

/**
 * One record as one JSON line (with its '\n'); `undefined` is written as null.
 * A replacer function makes V8 leave its fast serializer (it is called for every key:
 * about 3× slower on Nexmark bids), so the replacer runs only for the rare record that
 * holds a bigint, which plain `JSON.stringify` refuses with a TypeError.
 */
export function jsonLine(record: unknown): string {
  let text: string | undefined;
  try {
    text = JSON.stringify(record);
  } catch (err) {
    if (!(err instanceof TypeError)) throw err;
    text = JSON.stringify(record, bigintReplacer); // a bigint, or a cycle (which throws again)
  }
  return `${text ?? 'null'}\n`;
}

/** Records as JSON lines, in pieces of about `pieceChars` characters. */
export function jsonPieces(records: readonly unknown[], pieceChars = 1 << 20): string[] {
  const pieces: string[] = [];
  let cur = '';
  for (let i = 0; i < records.length; i++) {
    cur += jsonLine(records[i]);
    if (cur.length >= pieceChars) {
      pieces.push(cur);
      cur = '';
    }
  }
  if (cur) pieces.push(cur);
  return pieces;
}
