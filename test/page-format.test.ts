import t from 'tap';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { pack } from 'msgpackr';
import {
  CODEC_CUSTOM,
  codecById,
  codecResolver,
  loadCodec,
  type CompressionSpec,
  type PageCodec,
} from '../src/state/codecs.js';
import { PAGE_HEADER_BYTES, decodePage, encodePage, pageTotalLength } from '../src/state/page-format.js';

const fixture = fileURLToPath(new URL('./fixtures/xor-codec.js', import.meta.url));
const where = { table: 'orders', pageId: 42, version: 7 };
const CORRUPT = { code: 'TIDEPOOL_CORRUPT_PAGE', message: /table 'orders', page 42, version 7/ };

/** A leaf-page-like body: msgpack records, compressible like real state. */
function realisticPage(bytes: number): Uint8Array {
  const parts: Buffer[] = [];
  let n = 0;
  for (let i = 0; n < bytes; i++) {
    const p = pack({ user: `user-${1000 + (i % 97)}`, count: i * 3, ts: 1_700_000_000_000 + i * 17, tags: ['a', 'b'], score: i / 7 });
    parts.push(p);
    n += p.length;
  }
  return Buffer.concat(parts).subarray(0, bytes);
}
const random = (n: number) => {
  const b = new Uint8Array(n);
  for (let i = 0; i < n; i++) b[i] = (Math.random() * 256) | 0;
  return b;
};

const specs: CompressionSpec[] = ['none', 'lz4', 'zstd', 'deflate', { module: fixture }];
const codecs = new Map<string, PageCodec>();
t.before(async () => {
  for (const s of specs) codecs.set(typeof s === 'string' ? s : 'custom', await loadCodec(s));
});

t.test('codec ids and names', async (t) => {
  t.same([...codecs.values()].map((c) => c.id), [0, 1, 2, 3, 128]);
  t.same([...codecs.values()].slice(0, 4).map((c) => c.name), ['none', 'lz4', 'zstd', 'deflate']);
  for (let id = 0; id < 4; id++) t.equal(codecById(id)!.id, id);
  t.equal(codecById(CODEC_CUSTOM), undefined, 'custom needs the configured codec');
  t.equal(codecById(9), undefined);
});

t.test('round trip with every codec', async (t) => {
  const bodies = {
    empty: new Uint8Array(0),
    tiny: Uint8Array.of(1, 2, 3),
    runs: new Uint8Array(4096).fill(7),
    msgpack: realisticPage(16384),
    random: random(5000),
  };
  for (const [cname, codec] of codecs) {
    for (const [bname, raw] of Object.entries(bodies)) {
      const page = encodePage(raw, codec);
      t.equal(pageTotalLength(page), page.length, `${cname}/${bname}: pageTotalLength`);
      const back = decodePage(page, where, codecResolver(codec));
      t.equal(Buffer.compare(back, raw), 0, `${cname}/${bname}: same bytes`);
      const stored = page[5];
      if (bname === 'random' || bname === 'empty' || bname === 'tiny') t.equal(stored, 0, `${cname}/${bname}: stored raw`);
      if (bname === 'runs') t.equal(stored, codec.id, `${cname}/${bname}: stored with ${codec.name}`);
      if (bname === 'msgpack' && cname !== 'custom') t.equal(stored, codec.id, `${cname}/msgpack: stored with ${codec.name}`);
    }
  }
});

t.test('a page written with one codec reads under another config', async (t) => {
  const raw = realisticPage(8192);
  const none = codecs.get('none')!;
  for (const c of ['lz4', 'zstd', 'deflate']) {
    const page = encodePage(raw, codecs.get(c)!);
    t.equal(Buffer.compare(decodePage(page, where, codecResolver(none)), raw), 0, c);
  }
  const custom = encodePage(new Uint8Array(1000).fill(3), codecs.get('custom')!);
  t.equal(custom[5], CODEC_CUSTOM);
  t.throws(() => decodePage(custom, where, codecResolver(codecs.get('zstd')!)), {
    code: 'TIDEPOOL_CODEC',
    message: /table 'orders', page 42, version 7 was written with a custom compression module/,
  });
});

t.test('every single damaged byte is a corrupt-page error', async (t) => {
  const raws = [realisticPage(300), new Uint8Array(600).fill(9)];
  let checked = 0;
  for (const [cname, codec] of codecs) {
    for (const raw of raws) {
      const page = encodePage(raw, codec);
      for (let i = 0; i < page.length; i++) {
        for (const mask of [0x01, 0x80, 0xff]) {
          const bad = Buffer.from(page);
          bad[i]! ^= mask;
          let err: unknown;
          try {
            decodePage(bad, where, codecResolver(codec));
          } catch (e) {
            err = e;
          }
          checked++;
          if (!(err instanceof Error && (err as { code?: string }).code === 'TIDEPOOL_CORRUPT_PAGE' && CORRUPT.message.test(err.message))) {
            t.fail(`${cname}: byte ${i} ^ ${mask} gave ${err instanceof Error ? err.message : 'a value'}`);
            return;
          }
        }
      }
    }
  }
  t.pass(`${checked} damaged pages all rejected`);
});

t.test('truncated and extended pages', async (t) => {
  const page = encodePage(realisticPage(2000), codecs.get('lz4')!);
  for (let n = 0; n < page.length; n++) {
    t.throws(() => decodePage(page.subarray(0, n), where, codecResolver(codecs.get('lz4')!)), CORRUPT);
  }
  t.throws(() => decodePage(Buffer.concat([page, Buffer.of(0)]), where, codecById), { ...CORRUPT, message: /length mismatch/ });
  t.throws(() => decodePage(new Uint8Array(3), where, codecById), { ...CORRUPT, message: /shorter than its 24-byte header/ });
});

t.test('specific reasons are named', async (t) => {
  const lz4 = codecs.get('lz4')!;
  const page = encodePage(realisticPage(1000), lz4);
  const bad = (b: Buffer, re: RegExp, codecFor: (id: number) => PageCodec | undefined = codecById) =>
    t.throws(() => decodePage(b, where, codecFor), { code: 'TIDEPOOL_CORRUPT_PAGE', message: re }, String(re));

  const m = Buffer.from(page);
  m[0] = 0x58;
  bad(m, /bad magic/);
  const v = Buffer.from(page);
  v[4] = 2;
  bad(v, /unknown page format version 2/);
  const c = Buffer.from(page);
  c[PAGE_HEADER_BYTES + 10]! ^= 1;
  bad(c, /checksum mismatch/);

  // Pages that pass the checksum but lie: built with fake codecs claiming real ids.
  const liar = (id: number, out: (raw: Uint8Array) => Uint8Array): PageCodec => ({
    id, name: `fake-${id}`, compress: out, decompress: () => new Uint8Array(0),
  });
  const raw = realisticPage(1000);
  bad(encodePage(raw, liar(1, (r) => Buffer.alloc(r.length >> 1, 0xee))), /lz4 decompression failed/);
  bad(encodePage(raw, liar(3, (r) => Buffer.alloc(r.length >> 1, 0xee))), /deflate decompression failed/);
  bad(encodePage(raw, liar(2, (r) => Buffer.alloc(r.length >> 1, 0xee))), /zstd decompression failed/);
  bad(encodePage(raw, liar(77, (r) => r.subarray(1))), /unknown codec id 77/);
  // streams that decode to the wrong length (checked before allocating for lz4/zstd)
  const shortBy = (name: string) => codecs.get(name)!.compress(raw.subarray(0, 900));
  bad(encodePage(raw, liar(1, () => shortBy('lz4'))), /lz4 size prefix 900 does not match 1000/);
  bad(encodePage(raw, liar(2, () => shortBy('zstd'))), /zstd frame declares 900 bytes, expected 1000/);
  bad(encodePage(raw, liar(3, () => shortBy('deflate'))), /deflate decompressed to 900 bytes, header says 1000/);
  const xor = codecs.get('custom')!;
  const runs = new Uint8Array(1000).fill(5);
  bad(encodePage(runs, liar(128, () => xor.compress(runs.subarray(0, 900)))), /decompressed to 900 bytes, header says 1000/,
    codecResolver(xor));
  const huge = Buffer.from(shortBy('lz4'));
  huge.writeUInt32LE(0xeeeeeeee, 0);
  bad(encodePage(raw, liar(1, () => huge)), /lz4 size prefix 4008636142 does not match 1000/);
});

t.test('custom codec modules: paths, URLs and clear errors', async (t) => {
  const rel = relative(process.cwd(), fixture);
  for (const module of [fixture, rel, new URL('./fixtures/xor-codec.js', import.meta.url).href]) {
    const c = await loadCodec({ module });
    t.equal(c.id, CODEC_CUSTOM, module);
    const raw = new Uint8Array(500).fill(1);
    t.equal(Buffer.compare(decodePage(encodePage(raw, c), where, codecResolver(c)), raw), 0);
  }
  await t.rejects(loadCodec({ module: './no/such/codec.js' }), {
    code: 'TIDEPOOL_CODEC',
    message: /compression '\.\/no\/such\/codec\.js': cannot load module .*no\/such\/codec\.js/,
  });
  const dir = mkdtempSync(join(tmpdir(), 'tidepool-codec-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const half = join(dir, 'half.mjs');
  writeFileSync(half, 'export function compress(b) { return b; }\n');
  await t.rejects(loadCodec({ module: half }), {
    code: 'TIDEPOOL_CODEC',
    message: new RegExp(`half\\.mjs must export function decompress\\(bytes, rawLength\\)`),
  });
  const asyncMod = join(dir, 'async.mjs');
  writeFileSync(asyncMod, 'export async function compress(b) { return b; }\nexport function decompress(b) { return b; }\n');
  const ac = await loadCodec({ module: asyncMod });
  t.throws(() => encodePage(new Uint8Array(10), ac), { code: 'TIDEPOOL_CODEC', message: /returned a Promise/ });
  await t.rejects(loadCodec('brotli' as CompressionSpec), { code: 'TIDEPOOL_BAD_OPTION', message: /compression/ });
  await t.rejects(loadCodec({ module: '' }), { code: 'TIDEPOOL_BAD_OPTION' });
});
