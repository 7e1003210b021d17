// Every user-facing error tidepool throws is made here, with a stable code that
// tests and callers can match (`err.code === 'TIDEPOOL_CORRUPT_PAGE'`). Messages are
// one line and name the thing that is wrong.

export type TidepoolErrorCode =
  | 'TIDEPOOL_BAD_KEY'
  | 'TIDEPOOL_BAD_VALUE'
  | 'TIDEPOOL_BAD_OPTION'
  | 'TIDEPOOL_CORRUPT_PAGE'
  | 'TIDEPOOL_STORE_LOCKED'
  | 'TIDEPOOL_STORE_CLOSED'
  | 'TIDEPOOL_CODEC'
  | 'TIDEPOOL_IO'
  | 'TIDEPOOL_RING_CLOSED'
  | 'TIDEPOOL_RING_MISUSE'
  | 'TIDEPOOL_CONFIG_INVALID'
  | 'TIDEPOOL_FLOW_MODULE'
  | 'TIDEPOOL_USER_CODE'
  | 'TIDEPOOL_INPUT'
  | 'TIDEPOOL_WORKER'
  | 'TIDEPOOL_MODULE_CACHE'
  | 'TIDEPOOL_STATE_LOCKED'
  | 'TIDEPOOL_DISK_FULL'
  | 'TIDEPOOL_CORRUPT_STATE'
  | 'TIDEPOOL_REMOTE';

export class TidepoolError extends Error {
  readonly code: TidepoolErrorCode;
  constructor(code: TidepoolErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'TidepoolError';
    this.code = code;
  }
}

/** TypeError with a code: bad keys and values are type errors per the contract. */
export class TidepoolTypeError extends TypeError {
  readonly code: TidepoolErrorCode;
  constructor(code: TidepoolErrorCode, message: string) {
    super(message);
    this.name = 'TypeError';
    this.code = code;
  }
}

export const errors = {
  badKey: (why: string) => new TidepoolTypeError('TIDEPOOL_BAD_KEY', `invalid key: ${why}`),
  badValue: (why: string) => new TidepoolTypeError('TIDEPOOL_BAD_VALUE', `invalid value: ${why}`),
  badOption: (name: string, why: string) =>
    new TidepoolError('TIDEPOOL_BAD_OPTION', `invalid option ${name}: ${why}`),
  corruptPage: (where: { table: string; pageId: number; version: number | string }, why: string) =>
    new TidepoolError(
      'TIDEPOOL_CORRUPT_PAGE',
      `corrupted page: table '${where.table}', page ${where.pageId}, version ${where.version}: ${why}`,
    ),
  storeLocked: (path: string, name: string, holder: string) =>
    new TidepoolError(
      'TIDEPOOL_STORE_LOCKED',
      `store '${name}' at ${path} is already open in ${holder}; close it there first`,
    ),
  storeClosed: (name: string) =>
    new TidepoolError('TIDEPOOL_STORE_CLOSED', `store '${name}' is closed`),
  codec: (name: string, why: string) => new TidepoolError('TIDEPOOL_CODEC', `compression '${name}': ${why}`),
  io: (what: string, cause?: unknown) =>
    new TidepoolError('TIDEPOOL_IO', `${what}${cause instanceof Error ? `: ${cause.message}` : ''}`, { cause }),
  ringClosed: () => new TidepoolError('TIDEPOOL_RING_CLOSED', 'ring is closed'),
  config: (key: string, why: string) => new TidepoolError('TIDEPOOL_CONFIG_INVALID', `config ${key}: ${why}`),
  flowModule: (path: string, why: string) => new TidepoolError('TIDEPOOL_FLOW_MODULE', `flow module ${path}: ${why}`),
  userCode: (operator: string, subtask: number, record: unknown, cause: unknown) =>
    new TidepoolError(
      'TIDEPOOL_USER_CODE',
      `operator '${operator}' (subtask ${subtask}) threw ${cause instanceof Error ? `${cause.name}: ${cause.message}` : String(cause)} on record ${preview(record)}`,
      { cause },
    ),
  input: (what: string, why: string) => new TidepoolError('TIDEPOOL_INPUT', `${what}: ${why}`),
  worker: (what: string, why: string) => new TidepoolError('TIDEPOOL_WORKER', `${what}: ${why}`),
  ringMisuse: (why: string) => new TidepoolError('TIDEPOOL_RING_MISUSE', `ring: ${why}`),
  stateLocked: (dir: string, holder: string) =>
    new TidepoolError('TIDEPOOL_STATE_LOCKED', `state directory ${dir} is in use by ${holder}; one run at a time per --state directory`),
  moduleCache: (path: string, why: string) =>
    new TidepoolError('TIDEPOOL_MODULE_CACHE', `module cache ${path}: ${why}`),
  /** A write found no space (ENOSPC, EDQUOT, or LMDB's short write); nothing durable was damaged. */
  diskFull: (what: string, path: string) =>
    new TidepoolError('TIDEPOOL_DISK_FULL', `disk full: ${what}: no space left on the device of ${path}; free space and retry`),
  /** A stored record other than a page (a commit record, an attempts record) is damaged. */
  corruptState: (what: string, where: string, why: string) =>
    new TidepoolError('TIDEPOOL_CORRUPT_STATE', `corrupted ${what} in ${where}: ${oneLine(why)}`),
  /** Remote checkpoint storage refused or could not be reached; `where` names account/container or directory. */
  remote: (where: string, why: string) => new TidepoolError('TIDEPOOL_REMOTE', `remote checkpoints ${where}: ${oneLine(why)}`),
};

/**
 * Messages from elsewhere (lmdb-js, msgpackr) folded onto one line. A long one loses
 * its middle, not its end: the end usually says what went wrong (long paths come first).
 */
export function oneLine(s: string, max = 300): string {
  const t = s.replace(/\s+/g, ' ').trim();
  if (t.length <= max) return t;
  const tail = Math.floor(max * 0.4);
  return `${t.slice(0, max - tail)}…${t.slice(t.length - tail)}`;
}

/** A short, single-line rendering of a record for error messages. */
export function preview(record: unknown, max = 120): string {
  let s: string;
  try {
    s = typeof record === 'string' ? JSON.stringify(record) : JSON.stringify(record, (_k, v) => (typeof v === 'bigint' ? `${v}n` : v)) ?? String(record);
  } catch {
    s = String(record);
  }
  s = s.replace(/\s+/g, ' ');
  return s.length > max ? `${s.slice(0, max)}…` : s;
}

/** Levenshtein distance between two names, for "did you mean …" in error messages. */
export function editDistance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    for (let j = 1; j <= b.length; j++) {
      cur[j] = Math.min(prev[j]! + 1, cur[j - 1]! + 1, prev[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    prev = cur;
  }
  return prev[b.length]!;
}
