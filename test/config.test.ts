// The run configuration: defaults, one-line errors that name the key path for every
// bad value and unknown key, `--set path=value` parsing, and file < set < overrides.
import t, { type Test } from 'tap';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseConfig, defaultConfig, type TidepoolConfig } from '../src/config/schema.js';
import { loadConfig, parseSet } from '../src/config/load.js';

const tmp = mkdtempSync(join(tmpdir(), 'tidepool-config-'));
t.teardown(() => rmSync(tmp, { recursive: true, force: true }));
let n = 0;
const file = (content: string): string => {
  const p = join(tmp, `c${n++}.json`);
  writeFileSync(p, content);
  return p;
};

/** { a: { b: v } } from 'a.b'. */
function at(path: string, value: unknown): Record<string, unknown> {
  return path
    .split('.')
    .reverse()
    .reduce<unknown>((v, k) => ({ [k]: v }), value) as Record<string, unknown>;
}

/** Asserts one TIDEPOOL_CONFIG_INVALID line starting with `config <key>: `. */
function rejects(t: Test, fn: () => unknown, key: string, fragment?: RegExp | string, what?: string): void {
  let err: (Error & { code?: string }) | undefined;
  try {
    fn();
  } catch (e) {
    err = e as Error & { code?: string };
  }
  const label = what ?? key;
  if (!err) {
    t.fail(`${label}: expected an error`);
    return;
  }
  t.equal(err.code, 'TIDEPOOL_CONFIG_INVALID', `${label}: code`);
  t.ok(err.message.startsWith(`config ${key}: `), `${label}: names the key: ${err.message}`);
  t.notMatch(err.message, /\n/, `${label}: one line`);
  if (fragment !== undefined) t.match(err.message, fragment, `${label}: says why`);
}

const DEFAULTS: TidepoolConfig = {
  parallelism: Math.min(availableParallelism(), 128),
  keyGroups: 128,
  chaining: true,
  execution: 'workers',
  batchSize: 512,
  operators: {},
  state: { storage: 'lmdb', pageSize: 16384, compression: 'none' }, // cachePages unset: sized from memory at run time
  checkpoint: { intervalMs: 1000, timeoutMs: 60000, retain: 2, tolerableFailures: 0, remoteRequired: false, alignmentTargetMs: 50 },
  restart: { maxAttempts: 3, backoffMs: 500 },
  metrics: { port: 0 },
  errors: { onRecord: 'fail', deadLetterPath: 'dead-letter.jsonl' },
};

t.test('defaults', async (t) => {
  t.same(parseConfig({}), DEFAULTS);
  t.same(parseConfig(undefined), DEFAULTS);
  t.same(defaultConfig(), DEFAULTS);
  t.same(loadConfig(), DEFAULTS);
  t.same(loadConfig({}), DEFAULTS);
  // partial sections are filled in
  t.same(parseConfig({ state: { storage: 'memory' } }).state, { ...DEFAULTS.state, storage: 'memory' });
  t.same(parseConfig({ checkpoint: { intervalMs: 0 } }).checkpoint, { ...DEFAULTS.checkpoint, intervalMs: 0 });
  // the default parallelism (cores) never exceeds keyGroups
  t.equal(parseConfig({ keyGroups: 1 }).parallelism, 1);
  t.equal(parseConfig({ keyGroups: 2 }).parallelism, Math.min(availableParallelism(), 2));
});

t.test('the contract example and every accepted form', async (t) => {
  const example = {
    parallelism: 2,
    keyGroups: 128,
    chaining: true,
    execution: 'workers',
    batchSize: 512,
    operators: { counts: { parallelism: 4 } },
    state: { storage: 'lmdb', pageSize: 16384, cachePages: 1024, compression: 'lz4' },
    checkpoint: { intervalMs: 1000, timeoutMs: 60000, retain: 2, tolerableFailures: 0, remoteRequired: false, alignmentTargetMs: 50 },
    restart: { maxAttempts: 3, backoffMs: 500 },
    metrics: { port: 0 },
    errors: { onRecord: 'fail', deadLetterPath: 'dead-letter.jsonl' },
  };
  t.same(parseConfig(example), example);
  t.same(parseConfig({ errors: { onRecord: 'deadLetter' }, operators: { m: { errors: { onRecord: 'skip' } } } }).operators.m, { errors: { onRecord: 'skip' } });
  t.throws(() => parseConfig({ errors: { onRecord: 'ignore' } }), { message: /^config errors\.onRecord: expected 'fail', 'skip' or 'deadLetter'/ });
  t.throws(() => parseConfig({ operators: { m: { errors: { onRecord: 'nope' } } } }), { message: /^config operators\.m\.errors\.onRecord: expected 'fail', 'skip' or 'deadLetter'/ });
  t.same(parseConfig(structuredClone(example)), example, 'input is not mutated');
  for (const compression of ['none', 'lz4', 'zstd', 'deflate', { module: './codec.js' }]) {
    t.same(parseConfig({ state: { compression } }).state.compression, compression);
  }
  for (const storage of ['lmdb', 'temp', 'memory']) t.equal(parseConfig({ state: { storage } }).state.storage, storage);
  t.equal(parseConfig({ execution: 'inline' }).execution, 'inline');
  t.equal(parseConfig({ chaining: false }).chaining, false);
  const edges: [string, number][] = [
    ['keyGroups', 1], ['keyGroups', 32768], ['batchSize', 1], ['batchSize', 65536],
    ['state.pageSize', 256], ['state.pageSize', 16 << 20], ['state.cachePages', 1],
    ['state.codecThreads', 0], ['state.codecThreads', 256], ['state.cacheBytes', 1], ['state.cacheBytes', 64 << 20],
    ['checkpoint.intervalMs', 0], ['checkpoint.retain', 1], ['checkpoint.tolerableFailures', 5],
    ['restart.maxAttempts', 0], ['restart.backoffMs', 0], ['metrics.port', 1], ['metrics.port', 65535],
    ['parallelism', 1],
  ];
  for (const [path, v] of edges) {
    const c = parseConfig(at(path, v)) as unknown as Record<string, Record<string, unknown>>;
    const [a, b] = path.split('.') as [string, string?];
    t.equal(b === undefined ? c[a] : c[a]![b], v, `${path}=${v} accepted`);
  }
  t.same(parseConfig({ keyGroups: 16, parallelism: 16, operators: { a: { parallelism: 16 }, b: {} } }).operators, { a: { parallelism: 16 }, b: {} });
});

t.test('every bad value is one line naming the key', async (t) => {
  const cases: [string, unknown, RegExp][] = [
    ['parallelism', 'four', /expected an integer ≥ 1, got "four"/],
    ['parallelism', 0, /got 0/],
    ['parallelism', 1.5, /integer.*got 1\.5/],
    ['parallelism', -2, /got -2/],
    ['parallelism', null, /got null/],
    ['parallelism', Number.NaN, /got NaN/],
    ['parallelism', Infinity, /got Infinity/],
    ['parallelism', '4', /got "4"/],
    ['keyGroups', 0, /1 to 32768, got 0/],
    ['keyGroups', 32769, /1 to 32768, got 32769/],
    ['chaining', 'yes', /true or false, got "yes"/],
    ['chaining', 1, /true or false/],
    ['execution', 'threads', /'workers' or 'inline', got "threads"/],
    ['batchSize', 0, /1 to 65536/],
    ['batchSize', 65537, /1 to 65536, got 65537/],
    ['operators', [1], /object/],
    ['operators', 'counts', /object/],
    ['operators.counts', 4, /expected an object like \{ "parallelism": 4 \}, got 4/],
    ['operators.counts.parallelism', 'four', /expected an integer ≥ 1, got "four"/],
    ['operators.counts.parallelism', 0, /got 0/],
    ['state', 'lmdb', /expected an object, got "lmdb"/],
    ['state.storage', 'disk', /'lmdb', 'temp' or 'memory', got "disk"/],
    ['state.pageSize', 255, /256 to 16777216.*got 255/],
    ['state.pageSize', (16 << 20) + 1, /got 16777217/],
    ['state.pageSize', '16k', /got "16k"/],
    ['state.cachePages', 0, /got 0/],
    ['state.cachePages', 2 ** 30 + 1, /got 1073741825/],
    ['state.cacheBytes', 0, /≥ 1 \(bytes\), got 0/],
    ['state.cacheBytes', '64MB', /got "64MB"/],
    ['state.codecThreads', -1, /0 \(no pool\) to 256, got -1/],
    ['state.codecThreads', 257, /got 257/],
    ['state.codecThreads', 'all', /got "all"/],
    ['state.compression', 'lz5', /'none', 'lz4', 'zstd', 'deflate' or \{ "module": "<path>" \}, got "lz5"/],
    ['state.compression', 3, /got 3/],
    ['state.compression', ['lz4'], /got \["lz4"\]/],
    ['state.compression.module', 3, /module path string, got 3/],
    ['state.compression.module', '', /non-empty/],
    ['checkpoint', [], /object/],
    ['checkpoint.intervalMs', -1, /0 \(off\).*got -1/],
    ['checkpoint.intervalMs', 2 ** 31, /got 2147483648/],
    ['checkpoint.timeoutMs', 0, /got 0/],
    ['checkpoint.retain', 0, /≥ 1, got 0/],
    ['checkpoint.tolerableFailures', -1, /≥ 0, got -1/],
    ['restart', true, /object/],
    ['restart.maxAttempts', 'three', /≥ 0, got "three"/],
    ['restart.backoffMs', -5, /got -5/],
    ['metrics', 9090, /object/],
    ['metrics.port', 70000, /1 to 65535, or 0 \(off\), got 70000/],
    ['metrics.port', -1, /got -1/],
    ['metrics.port', '9090', /got "9090"/],
  ];
  for (const [path, value, re] of cases) {
    rejects(t, () => parseConfig(at(path, value)), path, re, `${path} = ${String(value)}`);
  }
  // a missing object value in compression ({}) names module
  rejects(t, () => parseConfig({ state: { compression: {} } }), 'state.compression.module', /got nothing/);
});

t.test('parallelism is at most keyGroups, per operator too', async (t) => {
  rejects(t, () => parseConfig({ parallelism: 200 }), 'parallelism', 'expected at most keyGroups (128), got 200');
  rejects(t, () => parseConfig({ keyGroups: 4, parallelism: 8 }), 'parallelism', /keyGroups \(4\), got 8/);
  rejects(t, () => parseConfig({ keyGroups: 4, operators: { counts: { parallelism: 5 } } }), 'operators.counts.parallelism', /keyGroups \(4\), got 5/);
  t.equal(parseConfig({ keyGroups: 4, parallelism: 4 }).parallelism, 4);
});

t.test('unknown keys at every level', async (t) => {
  rejects(t, () => parseConfig({ paralelism: 2 }), 'paralelism', "unknown key 'paralelism' (did you mean 'parallelism'?)");
  rejects(t, () => parseConfig({ foo: 1 }), 'foo', /unknown key 'foo' \(known keys: parallelism, keyGroups, .*metrics, errors\)/);
  rejects(t, () => parseConfig({ state: { cachepages: 8 } }), 'state.cachepages', "unknown key 'cachepages' (did you mean 'cachePages'?)");
  rejects(t, () => parseConfig({ state: { path: '/x' } }), 'state.path', /known keys: storage, pageSize, cachePages, cacheBytes, compression, codecThreads/);
  rejects(t, () => parseConfig({ checkpoint: { interval: 5 } }), 'checkpoint.interval', /did you mean 'intervalMs'/);
  rejects(t, () => parseConfig({ restart: { attempts: 5 } }), 'restart.attempts', /unknown key 'attempts'/);
  rejects(t, () => parseConfig({ metrics: { host: 'x' } }), 'metrics.host', /known keys: port/);
  rejects(t, () => parseConfig({ operators: { counts: { paralelism: 2 } } }), 'operators.counts.paralelism', /did you mean 'parallelism'/);
  rejects(t, () => parseConfig({ state: { compression: { module: './c.js', level: 3 } } }), 'state.compression.level', /known keys: module/);
  // operator names themselves are free-form here (the planner checks they exist)
  t.same(parseConfig({ operators: { 'any.name-1': {} } }).operators, { 'any.name-1': {} });
  // an unknown key is reported before other problems (often a typo)
  rejects(t, () => parseConfig({ parallelism: 'x', batchsize: 4 }), 'batchsize', /did you mean 'batchSize'/);
  // the top level itself
  rejects(t, () => parseConfig([]), '(top level)', /expected a JSON object, got \[\]/);
  rejects(t, () => parseConfig(null), '(top level)', /got null/);
  rejects(t, () => parseConfig('lz4'), '(top level)', /got "lz4"/);
});

t.test('--set parsing', async (t) => {
  t.same(parseSet('state.compression=lz4'), { path: ['state', 'compression'], value: 'lz4' });
  t.same(parseSet('operators.counts.parallelism=4'), { path: ['operators', 'counts', 'parallelism'], value: 4 });
  t.same(parseSet('parallelism=2'), { path: ['parallelism'], value: 2 });
  t.same(parseSet('checkpoint.intervalMs=200'), { path: ['checkpoint', 'intervalMs'], value: 200 });
  t.same(parseSet('state.compression={"module":"./c.js"}'), { path: ['state', 'compression'], value: { module: './c.js' } });
  t.same(parseSet('chaining=false'), { path: ['chaining'], value: false });
  t.same(parseSet('execution=inline'), { path: ['execution'], value: 'inline' });
  t.same(parseSet('metrics.port=null'), { path: ['metrics', 'port'], value: null });
  t.same(parseSet('state.compression.module=./a=b.js'), { path: ['state', 'compression', 'module'], value: './a=b.js' }, 'splits at the first =');
  t.same(parseSet('parallelism="4"'), { path: ['parallelism'], value: '4' }, 'a JSON string stays a string');
  t.same(parseSet('state.compression='), { path: ['state', 'compression'], value: '' });
  t.same(parseSet(' parallelism =3'), { path: ['parallelism'], value: 3 }, 'the key is trimmed');
  t.same(parseSet('operators.my.op.parallelism=2'), { path: ['operators', 'my.op', 'parallelism'], value: 2 }, 'operator names may contain dots');

  rejects(t, () => parseSet('parallelism'), '--set', "'parallelism' is not path=value");
  rejects(t, () => parseSet('=4'), '--set', /empty key path/);
  rejects(t, () => parseSet('state..pageSize=4'), '--set', /empty key path/);
  rejects(t, () => parseSet('__proto__.polluted=1'), '__proto__.polluted', /not a config key/);
  t.equal(({} as Record<string, unknown>).polluted, undefined);
  rejects(t, () => loadConfig({ sets: ['parallelism'] }), '--set', /'parallelism'/);
});

t.test('--set applies in order, nested, and is validated like the file', async (t) => {
  const c = loadConfig({
    sets: [
      'state.compression=lz4',
      'operators.counts.parallelism=4',
      'parallelism=2',
      'checkpoint.intervalMs=200',
      'parallelism=3',
      'operators.out.parallelism=1',
    ],
  });
  t.equal(c.state.compression, 'lz4');
  t.same(c.operators, { counts: { parallelism: 4 }, out: { parallelism: 1 } });
  t.equal(c.parallelism, 3, 'the later --set wins');
  t.equal(c.checkpoint.intervalMs, 200);
  t.equal(c.checkpoint.timeoutMs, 60000, 'siblings keep their defaults');
  t.same(loadConfig({ sets: ['state.compression={"module":"./c.js"}'] }).state.compression, { module: './c.js' });
  // a path through a primitive replaces it
  t.same(loadConfig({ sets: ['state.compression=lz4', 'state.compression.module=./c.js'] }).state.compression, { module: './c.js' });
  rejects(t, () => loadConfig({ sets: ['state.cachepages=8'] }), 'state.cachepages', /did you mean 'cachePages'/);
  rejects(t, () => loadConfig({ sets: ['parallelism=four'] }), 'parallelism', /got "four"/);
  rejects(t, () => loadConfig({ sets: ['operators.counts.parallelism=four'] }), 'operators.counts.parallelism', 'expected an integer ≥ 1, got "four"');
  rejects(t, () => loadConfig({ sets: ['state=lz4'] }), 'state', /expected an object/);
});

t.test('file < --set < overrides', async (t) => {
  const f = file(JSON.stringify({ parallelism: 2, state: { storage: 'temp', compression: 'zstd' }, operators: { counts: { parallelism: 4 } } }));
  const fromFile = loadConfig({ file: f });
  t.equal(fromFile.parallelism, 2);
  t.same(fromFile.state, { ...DEFAULTS.state, storage: 'temp', compression: 'zstd' });
  t.same(fromFile.operators, { counts: { parallelism: 4 } });

  const withSets = loadConfig({ file: f, sets: ['parallelism=1', 'state.compression=lz4', 'operators.out.parallelism=1'] });
  t.equal(withSets.parallelism, 1);
  t.same(withSets.state, { ...DEFAULTS.state, storage: 'temp', compression: 'lz4' }, 'a --set keeps the file siblings');
  t.same(withSets.operators, { counts: { parallelism: 4 }, out: { parallelism: 1 } });

  const all = loadConfig({
    file: f,
    sets: ['parallelism=1', 'batchSize=64'],
    overrides: { parallelism: 3, state: { pageSize: 4096 }, execution: undefined, checkpoint: { intervalMs: undefined } },
  });
  t.equal(all.parallelism, 3, 'overrides win');
  t.equal(all.batchSize, 64);
  t.same(all.state, { ...DEFAULTS.state, storage: 'temp', compression: 'zstd', pageSize: 4096 });
  t.equal(all.execution, 'workers', 'an undefined override is "not set"');
  t.equal(all.checkpoint.intervalMs, 1000);
  rejects(t, () => loadConfig({ overrides: { state: { cachepages: 1 } } }), 'state.cachepages');
  rejects(t, () => loadConfig({ overrides: [] as unknown as Record<string, unknown> }), 'overrides', /plain object/);
});

t.test('a codec module in a config file is relative to the file', async (t) => {
  const sub = join(tmp, 'sub');
  mkdirSync(sub, { recursive: true });
  const f = join(sub, 'tidepool.json');
  writeFileSync(f, JSON.stringify({ state: { compression: { module: './codec.js' } } }));
  t.same(loadConfig({ file: f }).state.compression, { module: join(sub, 'codec.js') });
  writeFileSync(f, JSON.stringify({ state: { compression: { module: '/abs/codec.js' } } }));
  t.same(loadConfig({ file: f }).state.compression, { module: '/abs/codec.js' });
  t.same(loadConfig({ file: f, sets: ['state.compression.module=./c.js'] }).state.compression, { module: './c.js' }, '--set is relative to the cwd');
});

t.test('missing, unreadable and malformed files', async (t) => {
  const missing = join(tmp, 'nope.json');
  rejects(t, () => loadConfig({ file: missing }), '--config', `no such file ${missing}`);
  rejects(t, () => loadConfig({ file: tmp }), '--config', /is a directory/);

  const bad = file('{\n  "parallelism": 2\n  "keyGroups": 4\n}\n');
  rejects(t, () => loadConfig({ file: bad }), '--config', new RegExp(`${bad.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}:3:3: invalid JSON: `));
  const trailing = file('{"parallelism": }');
  rejects(t, () => loadConfig({ file: trailing }), '--config', /invalid JSON: Unexpected token/);
  rejects(t, () => loadConfig({ file: file('') }), '--config', /invalid JSON: Unexpected end of JSON input/);
  rejects(t, () => loadConfig({ file: file('[1, 2]') }), '--config', /expected a JSON object at the top level, got an array/);
  rejects(t, () => loadConfig({ file: file('null') }), '--config', /got null/);
  rejects(t, () => loadConfig({ file: file('"lz4"') }), '--config', /got a string/);

  // a UTF-8 byte order mark is fine; values in the file are validated with their path
  t.equal(loadConfig({ file: file('\ufeff{"parallelism": 1}') }).parallelism, 1);
  rejects(t, () => loadConfig({ file: file('{"state": {"pageSize": "16k"}}') }), 'state.pageSize', /got "16k"/);
  rejects(t, () => loadConfig({ file: file('{"operators": {"counts": {"parallelism": "four"}}}') }), 'operators.counts.parallelism', 'expected an integer ≥ 1, got "four"');
});
