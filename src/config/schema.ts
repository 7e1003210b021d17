// The run configuration of the contract, validated with zod and fully defaulted:
//
//   { "parallelism": 2, "keyGroups": 128, "chaining": true, "execution": "workers",
//     "batchSize": 512,
//     "operators": { "counts": { "parallelism": 4 } },
//     "state": { "storage": "lmdb", "pageSize": 16384, "cachePages": 1024, "compression": "lz4" },
//     "checkpoint": { "intervalMs": 1000, "timeoutMs": 60000, "retain": 2, "tolerableFailures": 0 },
//     "restart": { "maxAttempts": 3, "backoffMs": 500 },
//     "metrics": { "port": 0 } }
//
// Rules:
// - Every object is strict: an unknown key is an error, at every level.
// - Every error is one line that names the key path: `config state.pageSize: expected
//   an integer from 256 to 16777216 (bytes), got 12`. zod's issues are translated here;
//   each field carries its own "expected …" text, the "got …" part is read from the input.
// - parallelism ≤ keyGroups (a subtask owns at least one key group), also per operator.
//   The default parallelism is the number of cores, capped at keyGroups.
// - `operators.<name>` names are free-form here; the planner checks that they exist.
import { availableParallelism } from 'node:os';
import { z } from 'zod';
import { editDistance, errors, preview } from '../errors.js';
import type { CompressionSpec } from '../state/codecs.js';
import type { RemoteSpec } from '../storage/remote/object-store.js';
import { MAX_CODEC_THREADS } from '../storage/io-protocol.js';

/** setTimeout's largest delay: a longer one fires at once. */
const MAX_MS = 2 ** 31 - 1;

export type ExecutionMode = 'workers' | 'inline';
export type StorageKind = 'lmdb' | 'temp' | 'memory';
export type OnRecordPolicy = 'fail' | 'skip' | 'deadLetter';

/** The configuration after defaults: what the runtime reads. */
export interface TidepoolConfig {
  /** Default parallelism of every operator (number of cores unless set). */
  parallelism: number;
  /** Number of key groups: the unit of keyed state partitioning (and max parallelism). */
  keyGroups: number;
  /** Chain 1:1 stateless operators into one task. */
  chaining: boolean;
  /** 'workers': one worker thread per task subtask; 'inline': everything on the main thread. */
  execution: ExecutionMode;
  /** Records per batch between tasks. */
  batchSize: number;
  /** Per-operator overrides, by operator name. */
  operators: Record<string, { parallelism?: number; errors?: { onRecord?: OnRecordPolicy } }>;
  /** What a record that makes user code throw does (per operator: operators.<name>.errors). */
  errors: { onRecord: OnRecordPolicy; deadLetterPath: string };
  state: {
    storage: StorageKind;
    pageSize: number;
    /** Pages per stateful instance; unset: sized from memory (runtime/cache-budget.ts). */
    cachePages?: number;
    /** Estimated memory of decoded pages per stateful instance, bytes (a second bound; unset: none). */
    cacheBytes?: number;
    compression: CompressionSpec;
    /** Threads of the process's page-codec pool; unset: the number of cores (0 for lz4 and deflate); 0: each instance compresses itself. */
    codecThreads?: number;
    /** Remote checkpoint storage (storage/remote/); unset: checkpoints stay local only. */
    remote?: RemoteSpec;
  };
  checkpoint: {
    /** Milliseconds between checkpoints; 0 turns periodic checkpoints off. */
    intervalMs: number;
    timeoutMs: number;
    /** Completed checkpoints kept on disk. */
    retain: number;
    /** Failed checkpoints in a row tolerated before the run fails over. */
    tolerableFailures: number;
    /** A checkpoint completes only once it is uploaded to `state.remote`. */
    remoteRequired: boolean;
    /**
     * Records queued in front of each task instance are limited to about what it
     * consumes in this many ms (buffer debloating), so an aligning barrier waits about
     * this long behind them; 0: input rings fill to their size.
     */
    alignmentTargetMs: number;
  };
  restart: {
    /** Restarts from the last checkpoint after a failure; 0 = fail at once. */
    maxAttempts: number;
    backoffMs: number;
  };
  metrics: {
    /** HTTP port for metrics; 0 = off. */
    port: number;
  };
}

type DeepPartial<T> = T extends readonly unknown[] ? T : T extends object ? { [K in keyof T]?: DeepPartial<T[K]> } : T;

/** What a config file, `--set` or programmatic overrides may hold: any subset. */
export type TidepoolConfigInput = DeepPartial<TidepoolConfig>;

// ---- field schemas: each carries the "expected …" text of its error ----

function int(min: number, max: number, expected: string) {
  const error = expected;
  return z.number({ error }).int({ error }).min(min, { error }).max(max, { error });
}

function oneOf<const T extends readonly [string, ...string[]]>(values: T) {
  const shown = values.map((v) => `'${v}'`);
  const error = `expected ${shown.length === 2 ? shown.join(' or ') : `${shown.slice(0, -1).join(', ')} or ${shown.at(-1)}`}`;
  return z.enum(values, { error });
}

const COMPRESSION_EXPECTED = `expected 'none', 'lz4', 'zstd', 'deflate' or { "module": "<path>" }`;

const compression = z.union(
  [
    z.enum(['none', 'lz4', 'zstd', 'deflate']),
    z.strictObject({ module: z.string({ error: 'expected a module path string' }).min(1, { error: 'expected a non-empty module path' }) }),
  ],
  { error: COMPRESSION_EXPECTED },
);

const onRecord = oneOf(['fail', 'skip', 'deadLetter']);

const nonEmpty = (what: string) => z.string({ error: `expected ${what}` }).min(1, { error: `expected ${what}` });
/** Object-name prefixes end in '/' so that two prefixes never share objects ('a' vs 'ab'). */
const remotePrefix = z.string({ error: 'expected a prefix string' }).optional().transform((p) => (p === undefined || p === '' ? '' : p.endsWith('/') ? p : `${p}/`));
/** How a remote checkpoint is brought into an empty or older local directory. */
const remoteRestore = z.enum(['lazy', 'eager'], { error: `expected 'lazy' (pages copied in on first use and in the background) or 'eager' (every page before the first record)` }).default('lazy');
const remote = z.discriminatedUnion('kind', [
  z.strictObject({
    kind: z.literal('azure-blob'),
    connectionString: nonEmpty('a connection string').optional(),
    accountUrl: z.url({ error: 'expected an account URL like https://<account>.blob.core.windows.net' }).optional(),
    sasToken: nonEmpty('a SAS token').optional(),
    container: z.string({ error: 'expected a container name' }).regex(/^[a-z0-9](?:[a-z0-9]|-(?=[a-z0-9])){2,62}$/, { error: 'expected a container name: 3–63 lowercase letters, digits and single hyphens' }),
    prefix: remotePrefix,
    restore: remoteRestore,
  }, { error: 'expected an object like { "kind": "azure-blob", "connectionString": "…", "container": "…" }' }).refine(
    (r) => (r.connectionString !== undefined) !== (r.accountUrl !== undefined && r.sasToken !== undefined) && !(r.connectionString !== undefined && (r.accountUrl !== undefined || r.sasToken !== undefined)),
    { error: 'expected either connectionString, or accountUrl and sasToken' },
  ),
  z.strictObject({ kind: z.literal('dir'), path: nonEmpty('a directory path'), prefix: remotePrefix, restore: remoteRestore }, { error: 'expected an object like { "kind": "dir", "path": "/mnt/checkpoints" }' }),
], { error: `expected an object with "kind": 'azure-blob' or 'dir'` });

const operatorConfig = z.strictObject(
  {
    parallelism: int(1, Number.MAX_SAFE_INTEGER, 'expected an integer ≥ 1').optional(),
    errors: z.strictObject({ onRecord: onRecord.optional() }, { error: 'expected an object like { "onRecord": "skip" }' }).optional(),
  },
  { error: 'expected an object like { "parallelism": 4 }' },
);

const schema = z
  .strictObject({
    parallelism: int(1, Number.MAX_SAFE_INTEGER, 'expected an integer ≥ 1').optional(),
    keyGroups: int(1, 32768, 'expected an integer from 1 to 32768').default(128),
    chaining: z.boolean({ error: 'expected true or false' }).default(true),
    execution: oneOf(['workers', 'inline']).default('workers'),
    batchSize: int(1, 65536, 'expected an integer from 1 to 65536').default(512),
    operators: z.record(z.string(), operatorConfig, { error: 'expected an object of operator names' }).default({}),
    state: z
      .strictObject({
        storage: oneOf(['lmdb', 'temp', 'memory']).default('lmdb'),
        pageSize: int(256, 16 << 20, `expected an integer from 256 to ${16 << 20} (bytes)`).default(16384),
        cachePages: int(1, 2 ** 30, `expected an integer from 1 to ${2 ** 30}`).optional(),
        cacheBytes: int(1, Number.MAX_SAFE_INTEGER, 'expected an integer ≥ 1 (bytes)').optional(),
        compression: compression.default('none'),
        codecThreads: int(0, MAX_CODEC_THREADS, `expected an integer from 0 (no pool) to ${MAX_CODEC_THREADS}`).optional(),
        remote: remote.optional(),
      }, { error: 'expected an object' })
      .prefault({}),
    checkpoint: z
      .strictObject({
        intervalMs: int(0, MAX_MS, `expected an integer from 0 (off) to ${MAX_MS} (milliseconds)`).default(1000),
        timeoutMs: int(1, MAX_MS, `expected an integer from 1 to ${MAX_MS} (milliseconds)`).default(60000),
        retain: int(1, Number.MAX_SAFE_INTEGER, 'expected an integer ≥ 1').default(2),
        tolerableFailures: int(0, Number.MAX_SAFE_INTEGER, 'expected an integer ≥ 0').default(0),
        remoteRequired: z.boolean({ error: 'expected true or false' }).default(false),
        alignmentTargetMs: int(0, MAX_MS, `expected an integer from 0 (off) to ${MAX_MS} (milliseconds)`).default(50),
      }, { error: 'expected an object' })
      .prefault({}),
    restart: z
      .strictObject({
        maxAttempts: int(0, Number.MAX_SAFE_INTEGER, 'expected an integer ≥ 0').default(3),
        backoffMs: int(0, MAX_MS, `expected an integer from 0 to ${MAX_MS} (milliseconds)`).default(500),
      }, { error: 'expected an object' })
      .prefault({}),
    metrics: z
      .strictObject({
        port: int(0, 65535, 'expected a port from 1 to 65535, or 0 (off)').default(0),
      }, { error: 'expected an object' })
      .prefault({}),
    errors: z
      .strictObject({
        onRecord: onRecord.default('fail'),
        deadLetterPath: z.string({ error: 'expected a file path' }).min(1, { error: 'expected a non-empty file path' }).default('dead-letter.jsonl'),
      }, { error: 'expected an object' })
      .prefault({}),
  }, { error: 'expected a JSON object' })
  .superRefine((c, ctx) => {
    const tooMany = (p: number | undefined, path: (string | number)[]) => {
      if (p !== undefined && p > c.keyGroups) {
        ctx.addIssue({ code: 'custom', path, input: p, message: `expected at most keyGroups (${c.keyGroups})` });
      }
    };
    tooMany(c.parallelism, ['parallelism']);
    for (const [name, op] of Object.entries(c.operators)) tooMany(op.parallelism, ['operators', name, 'parallelism']);
    if (c.checkpoint.remoteRequired && c.state.remote === undefined) {
      ctx.addIssue({ code: 'custom', path: ['checkpoint', 'remoteRequired'], input: true, message: 'expected state.remote to be set (there is no remote copy to require)' });
    }
    if (c.state.remote !== undefined && c.state.storage !== 'lmdb') {
      ctx.addIssue({ code: 'custom', path: ['state', 'remote'], input: c.state.remote, message: `expected state.storage 'lmdb' (${c.state.storage} state has no checkpoints to upload)` });
    }
  })
  .transform(({ parallelism, ...rest }): TidepoolConfig => ({ parallelism: parallelism ?? Math.min(availableParallelism(), rest.keyGroups), ...rest }));

// Both directions: the schema's output is exactly the documented interface.
type Same<A, B> = [A] extends [B] ? ([B] extends [A] ? true : false) : false;
const _sameShape: Same<z.output<typeof schema>, TidepoolConfig> = true;
void _sameShape;

// ---- errors ----

type Issue = z.core.$ZodIssue;
type PathKey = PropertyKey;

/** `operators.counts.parallelism`; the top level is `(top level)`. */
function formatPath(path: readonly PathKey[]): string {
  return path.length === 0 ? '(top level)' : path.map(String).join('.');
}

function valueAt(raw: unknown, path: readonly PathKey[]): unknown {
  let v = raw;
  for (const k of path) {
    if (v === null || typeof v !== 'object') return undefined;
    v = (v as Record<PropertyKey, unknown>)[k];
  }
  return v;
}

function show(v: unknown): string {
  if (v === undefined) return 'nothing';
  if (typeof v === 'number' || typeof v === 'bigint') return String(v);
  return preview(v, 60);
}


function unknownKey(key: string, known: string[]): string {
  const lower = key.toLowerCase();
  const best = known
    .map((k) => ({ k, d: k.toLowerCase() === lower ? 0 : editDistance(lower, k.toLowerCase()) }))
    .sort((x, y) => x.d - y.d)[0];
  if (best && best.d <= Math.max(1, Math.floor(best.k.length / 3))) return `unknown key '${key}' (did you mean '${best.k}'?)`;
  return `unknown key '${key}' (known keys: ${known.join(', ')})`;
}

/** The keys a strict object at `path` accepts (for unknown-key messages). */
function knownKeysAt(path: readonly PathKey[]): string[] {
  let s: z.core.$ZodType | undefined = schema as unknown as z.core.$ZodType;
  for (const k of path) s = childSchema(s, k);
  const shape = s && objectShape(s);
  return shape ? Object.keys(shape) : [];
}

function unwrap(s: z.core.$ZodType): z.core.$ZodType {
  // Peel defaults, optionals, pipes (superRefine/transform) down to the structural type.
  for (;;) {
    const def = s._zod.def as unknown as { type: string; innerType?: z.core.$ZodType; in?: z.core.$ZodType };
    if (def.innerType) s = def.innerType;
    else if (def.type === 'pipe' && def.in) s = def.in;
    else return s;
  }
}

function objectShape(s: z.core.$ZodType): Record<string, z.core.$ZodType> | undefined {
  const def = unwrap(s)._zod.def as unknown as { type: string; shape?: Record<string, z.core.$ZodType>; options?: z.core.$ZodType[] };
  if (def.type === 'object') return def.shape;
  if (def.type === 'union') {
    for (const o of def.options ?? []) {
      const shape = objectShape(o);
      if (shape) return shape;
    }
  }
  return undefined;
}

function childSchema(s: z.core.$ZodType | undefined, key: PathKey): z.core.$ZodType | undefined {
  if (!s) return undefined;
  const inner = unwrap(s);
  const def = inner._zod.def as unknown as { type: string; valueType?: z.core.$ZodType };
  if (def.type === 'record') return def.valueType;
  return objectShape(inner)?.[String(key)];
}

/** One issue → [path, why]. A union failure descends into the branch the input was aiming at. */
function describe(issue: Issue, raw: unknown, base: readonly PathKey[] = []): [string, string] {
  const path = [...base, ...issue.path];
  if (issue.code === 'unrecognized_keys') {
    const key = issue.keys[0]!;
    return [formatPath([...path, key]), unknownKey(key, knownKeysAt(path))];
  }
  if (issue.code === 'invalid_union') {
    // {"module": 3} should say what is wrong with "module", not list every alternative.
    const value = valueAt(raw, path);
    if (value !== null && typeof value === 'object' && !Array.isArray(value)) {
      const branch = issue.errors.find((b) => b.length > 0 && b.every((i) => i.path.length > 0));
      if (branch) return describe(branch[0]!, raw, path);
    }
  }
  return [formatPath(path), `${issue.message}, got ${show(valueAt(raw, path))}`];
}

/** The order issues are reported in: an unknown key (often a typo) before the rest. */
function firstIssue(issues: readonly Issue[]): Issue {
  return issues.find((i) => i.code === 'unrecognized_keys') ?? issues[0]!;
}

/**
 * Validates a raw configuration (parsed JSON plus overrides) and fills in defaults.
 * Throws TIDEPOOL_CONFIG_INVALID with one line naming the key path.
 */
export function parseConfig(raw: unknown): TidepoolConfig {
  const input = raw === undefined ? {} : raw;
  const result = schema.safeParse(input);
  if (result.success) return result.data;
  const [path, why] = describe(firstIssue(result.error.issues), input);
  throw errors.config(path, why);
}

/** The defaults alone (parallelism = number of cores). */
export function defaultConfig(): TidepoolConfig {
  return parseConfig({});
}

/** The top-level and nested keys of the config, for help texts: `state.pageSize`, … */
export const CONFIG_KEYS: readonly string[] = [
  'parallelism', 'keyGroups', 'chaining', 'execution', 'batchSize', 'operators.<name>.parallelism',
  'state.storage', 'state.pageSize', 'state.cachePages', 'state.cacheBytes', 'state.compression', 'state.codecThreads', 'state.remote',
  'checkpoint.intervalMs', 'checkpoint.timeoutMs', 'checkpoint.retain', 'checkpoint.tolerableFailures', 'checkpoint.remoteRequired', 'checkpoint.alignmentTargetMs',
  'restart.maxAttempts', 'restart.backoffMs', 'metrics.port',
  'errors.onRecord', 'errors.deadLetterPath', 'operators.<name>.errors.onRecord',
];
