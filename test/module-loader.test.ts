// Flow modules: TypeScript is bundled with esbuild (types, relative .ts helpers,
// 'tidepool' = this package), JavaScript is imported as it is, and every failure is
// one line naming the module (a syntax error with file:line:col). The compiled url
// imports in a worker thread, where the flow shares this package's classes.
//
// Raw fixtures live in test-fixtures/flows/ (repo root; tsc does not compile them);
// test/fixtures/flows/*.ts are compiled by tsc into the ".js flow modules".
import t from 'tap';
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { Worker } from 'node:worker_threads';
import { Flow, isFlow } from '../src/index.js';
import { importFlow, loadFlowModule, moduleCacheDir, TIDEPOOL_ENTRY } from '../src/flow/module-loader.js';

const RAW = fileURLToPath(new URL('../../test-fixtures/flows/', import.meta.url));
const COMPILED = fileURLToPath(new URL('./fixtures/flows/', import.meta.url));
const raw = (name: string) => join(RAW, name);

const tmp = mkdtempSync(join(tmpdir(), 'tidepool-modules-test-'));
const prevCache = process.env.TIDEPOOL_MODULE_CACHE;
process.env.TIDEPOOL_MODULE_CACHE = join(tmp, 'cache');
t.teardown(() => {
  if (prevCache === undefined) delete process.env.TIDEPOOL_MODULE_CACHE;
  else process.env.TIDEPOOL_MODULE_CACHE = prevCache;
  rmSync(tmp, { recursive: true, force: true });
});

/** The error loadFlowModule rejects with (fails the test if it resolves). */
async function failure(t: { fail: (m: string) => void }, path: string): Promise<Error & { code?: string }> {
  try {
    await loadFlowModule(path);
  } catch (e) {
    return e as Error & { code?: string };
  }
  t.fail(`${path} loaded`);
  return Object.assign(new Error('(loaded)'), { code: 'none' });
}

const esc = (s: string) => s.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');

t.test('a TypeScript flow: types, relative .ts helpers, tidepool from this package', async (t) => {
  const { flow, url } = await loadFlowModule(raw('typed.ts'));
  t.ok(isFlow(flow));
  t.ok(flow instanceof Flow, 'the flow is an instance of THIS package\'s Flow class');
  t.equal(flow.name, 'typed');
  t.same(flow.operators.map((o) => o.name), ['numbers', 'tag', 'count', 'out']);
  t.same(flow.operator('tag')!.fn!({ n: 3 } as never), { n: 3, parity: 'odd' }, 'the helper enum and functions work');

  t.ok(url.startsWith(pathToFileURL(moduleCacheDir()).href), `compiled into the cache: ${url}`);
  t.match(url, /\/typed-[0-9a-f]{20}\.mjs\?sha256=[0-9a-f]{64}$/, 'named by its hash, which the url carries');
  const code = readFileSync(fileURLToPath(url), 'utf8');
  t.match(code, `from "${pathToFileURL(TIDEPOOL_ENTRY).href}"`, "'tidepool' is imported from this package by URL");
  t.notMatch(code, /class Flow\b/, 'tidepool is not bundled into the module');
  t.match(code, /sourceMappingURL=data:application\/json;base64,/, 'inline source map');

  const mod = (await import(url)) as Record<string, unknown>;
  t.equal(mod.default, flow, 'one module instance per url');
  t.equal(mod.moduleUrl, pathToFileURL(raw('typed.ts')).href, 'import.meta.url is the source file');
  t.equal(mod.helperUrl, pathToFileURL(raw('lib/math.ts')).href, '…in helpers too');

  const again = await loadFlowModule(raw('typed.ts'));
  t.equal(again.url, url, 'an unchanged module compiles to the same file');

  const rel = relative(process.cwd(), raw('typed.ts'));
  t.equal((await loadFlowModule(rel)).url, url, 'a path relative to the cwd');
  t.equal((await loadFlowModule(pathToFileURL(raw('typed.ts')).href)).url, url, 'a file: URL');
});

t.test('a TypeScript flow outside the repo; a changed helper gives a new url', async (t) => {
  const dir = join(tmp, 'project');
  cpSync(RAW, dir, { recursive: true });
  const first = await loadFlowModule(join(dir, 'typed.ts'));
  t.equal(first.flow.name, 'typed', "'tidepool' resolves with no node_modules next to the module");
  t.ok(first.flow instanceof Flow);

  const math = join(dir, 'lib/math.ts');
  writeFileSync(math, readFileSync(math, 'utf8').replace("Parity.Even : Parity.Odd", "Parity.Odd : Parity.Even"));
  const second = await loadFlowModule(join(dir, 'typed.ts'));
  t.not(second.url, first.url, 'a changed helper changes the url');
  t.same(second.flow.operator('tag')!.fn!({ n: 3 } as never), { n: 3, parity: 'even' }, 'and its code');
  t.same(first.flow.operator('tag')!.fn!({ n: 3 } as never), { n: 3, parity: 'odd' }, 'the first stays as it was');
});

t.test('packages stay imports, resolved from the module', async (t) => {
  const { flow, url } = await loadFlowModule(raw('uses-package.ts'));
  const code = readFileSync(fileURLToPath(url), 'utf8');
  t.match(code, /from "file:\/\/[^"]*\/node_modules\/msgpackr\/[^"]+"/, 'msgpackr imported by absolute URL');
  t.match(code, /from "node:fs"/, 'builtins untouched');
  t.notMatch(code, /function pack\b|class Packr\b/, 'msgpackr not bundled');
  t.same(flow.operator('rt')!.fn!({ a: [1, 'x'] } as never), { a: [1, 'x'] });
  const mod = (await import(url)) as Record<string, unknown>;
  t.equal(mod.fsOk, true);
});

t.test('JavaScript flows are imported as they are', async (t) => {
  const plain = await loadFlowModule(raw('plain.mjs'));
  t.equal(plain.url, pathToFileURL(raw('plain.mjs')).href);
  t.equal(plain.flow.name, 'plain');
  t.same(plain.flow.operators.map((o) => o.name), ['in', 'double', 'out']);

  const compiled = await loadFlowModule(join(COMPILED, 'js-flow.js'));
  t.equal(compiled.url, pathToFileURL(join(COMPILED, 'js-flow.js')).href);
  t.equal(compiled.flow.name, 'jsflow');
  t.ok(compiled.flow instanceof Flow);
});

t.test('syntax errors: one line with file:line:col', async (t) => {
  const cases: [string, string, number, RegExp][] = [
    ['syntax-error.ts', 'syntax-error.ts', 3, /Unexpected ";"/],
    ['syntax-error.mjs', 'syntax-error.mjs', 4, /Unexpected "\]"/],
    ['helper-syntax-error.ts', 'lib/broken.ts', 3, /Expected identifier but found ","/],
  ];
  for (const [entry, where, line, re] of cases) {
    const e = await failure(t, raw(entry));
    t.equal(e.code, 'TIDEPOOL_FLOW_MODULE', entry);
    t.notMatch(e.message, /\n/, `${entry}: one line`);
    t.ok(e.message.startsWith(`flow module ${raw(entry)}: `), `${entry}: names the module: ${e.message}`);
    t.match(e.message, new RegExp(`${esc(relative(process.cwd(), raw(where)))}:${line}:\\d+: `), `${entry}: ${where}:${line}:col`);
    t.match(e.message, re);
  }
  const missing = await failure(t, raw('missing-import.ts'));
  t.match(missing.message, /missing-import\.ts:2:\d+: Could not resolve "\.\/lib\/does-not-exist\.js"/);
});

t.test('the default export must be a flow', async (t) => {
  const none = await failure(t, raw('no-default.ts'));
  t.equal(none.code, 'TIDEPOOL_FLOW_MODULE');
  t.equal(none.message, `flow module ${raw('no-default.ts')}: has no default export (export default flow('name')…)`);

  const stream = await failure(t, raw('not-a-flow.ts'));
  t.match(stream.message, "the default export is not a flow (export default flow('name')…), got a DataStream");
  t.match(stream.message, /\.sink\(name, sink\)/, 'hints at the missing sink');

  const fn = await failure(t, join(COMPILED, 'not-a-flow.js'));
  t.match(fn.message, /the default export is not a flow .*got a function$/);

  const viaUrl = importFlow(pathToFileURL(join(COMPILED, 'not-a-flow.js')).href);
  await t.rejects(viaUrl, { code: 'TIDEPOOL_FLOW_MODULE', message: `flow module ${join(COMPILED, 'not-a-flow.js')}: the default export is not a flow` + " (export default flow('name')…), got a function" });
});

t.test('missing files, exceptions while importing', async (t) => {
  const missing = await failure(t, 'flows/nope.ts');
  t.equal(missing.code, 'TIDEPOOL_FLOW_MODULE');
  t.equal(missing.message, 'flow module flows/nope.ts: no such file');
  t.equal((await failure(t, raw('nope.js'))).message, `flow module ${raw('nope.js')}: no such file`);
  t.match((await failure(t, RAW)).message, /is not a file/);
  const json = join(tmp, 'flow.json');
  writeFileSync(json, '{}');
  t.match((await failure(t, json)).message, /unsupported extension '\.json'/);

  const thrown = await failure(t, raw('throws.ts'));
  t.equal(thrown.code, 'TIDEPOOL_FLOW_MODULE');
  t.equal(thrown.message, `flow module ${raw('throws.ts')}: INPUT is not set; export INPUT=path`);
  t.match((thrown as { cause?: Error }).cause?.message, 'INPUT is not set', 'the original error is the cause');
});

t.test('the compiled url imports in a worker thread', async (t) => {
  const { url } = await loadFlowModule(raw('typed.ts'));
  const worker = new Worker(
    `
    const { parentPort, workerData } = require('node:worker_threads');
    (async () => {
      const tidepool = await import(workerData.index);
      const loader = await import(workerData.loader);
      const mod = await import(workerData.url);
      const viaImportFlow = await loader.importFlow(workerData.url);
      parentPort.postMessage({
        isFlow: tidepool.isFlow(mod.default),
        sameClass: mod.default instanceof tidepool.Flow,
        sameModule: viaImportFlow === mod.default,
        name: mod.default.name,
        operators: mod.default.operators.map((o) => o.name),
        tagged: mod.default.operator('tag').fn({ n: 4 }),
      });
    })().catch((e) => parentPort.postMessage({ error: String(e && e.stack || e) }));
    `,
    {
      eval: true,
      workerData: {
        url,
        index: pathToFileURL(TIDEPOOL_ENTRY).href,
        loader: new URL('../src/flow/module-loader.js', import.meta.url).href,
      },
    },
  );
  const result = await new Promise<Record<string, unknown>>((resolve, reject) => {
    worker.once('message', resolve);
    worker.once('error', reject);
  });
  await worker.terminate();
  t.same(result, {
    isFlow: true,
    sameClass: true,
    sameModule: true,
    name: 'typed',
    operators: ['numbers', 'tag', 'count', 'out'],
    tagged: { n: 4, parity: 'even' },
  });
});

t.test('the index this package resolves for tidepool is its own', async (t) => {
  t.equal(TIDEPOOL_ENTRY, fileURLToPath(new URL('../src/index.js', import.meta.url)));
  t.equal(dirname(TIDEPOOL_ENTRY), fileURLToPath(new URL('../src', import.meta.url)));
});

t.test("a name 'tidepool' does not export: named, with what it exports", async (t) => {
  const exported = Object.keys(await import(pathToFileURL(TIDEPOOL_ENTRY).href)).filter((k) => k !== 'default').sort();
  t.ok(exported.includes('sinks') && exported.includes('flow'), 'the list to expect');
  const cases: [string, string, string][] = [
    ['export-typo.ts', 'sink', 'sinks'], // bundled: the import is rewritten to dist/src/index.js
    ['export-typo.mjs', 'Sinks', 'sinks'], // imported by Node as it is
  ];
  for (const [entry, missing, meant] of cases) {
    const e = await failure(t, raw(entry));
    t.equal(e.code, 'TIDEPOOL_FLOW_MODULE', entry);
    t.notMatch(e.message, /\n/, `${entry}: one line`);
    t.ok(e.message.startsWith(`flow module ${raw(entry)}: `), `${entry}: names the module: ${e.message}`);
    t.notMatch(e.message, /Could not resolve|dist\/src\/index\.js/, `${entry}: not the bundler's message about the rewritten import`);
    t.match(e.message, `'tidepool' has no export named '${missing}' (did you mean '${meant}'?); it exports ${exported.join(', ')}`, entry);
  }
  const js = await failure(t, raw('export-typo.mjs'));
  t.match(js.message, `: ${relative(process.cwd(), raw('export-typo.mjs'))}:4: 'tidepool'`, 'a .js module: the importing file and line');

  const pkg = await failure(t, raw('package-export-typo.ts'));
  t.equal(pkg.code, 'TIDEPOOL_FLOW_MODULE');
  t.match(pkg.message, /^flow module \S+package-export-typo\.ts: module '\S*\/node_modules\/msgpackr\/\S+' has no export named 'packNope'$/, 'a package of a bundle: the name and the package file, not "Could not resolve"');
});
