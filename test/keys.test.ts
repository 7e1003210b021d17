import t from 'tap';
import fc from 'fast-check';
import {
  MAX_KEY_BYTES,
  bytesToEncodedKey,
  compareKeys,
  decodeKey,
  encodeKey,
  encodedKeyToBytes,
  prefixBounds,
  type Key,
} from '../src/state/keys.js';

const NO_LIMIT = Number.MAX_SAFE_INTEGER;
const enc = (k: unknown) => encodeKey(k, NO_LIMIT);
const FC = { numRuns: 2000 };

// ---- an independent model of key order, written on key values ----------------------

function rank(k: Key): number {
  if (typeof k === 'boolean') return 0;
  if (typeof k === 'number') return 1;
  if (typeof k === 'bigint') return 2;
  if (typeof k === 'string') return 3;
  if (k instanceof Uint8Array) return 4;
  return 5;
}

const sign = (n: number) => (n < 0 ? -1 : n > 0 ? 1 : 0);

function refCompare(a: Key, b: Key): number {
  const ra = rank(a);
  const rb = rank(b);
  if (ra !== rb) return ra - rb;
  switch (ra) {
    case 0:
      return Number(a) - Number(b);
    case 1:
    case 2:
      return (a as number) < (b as number) ? -1 : (a as number) > (b as number) ? 1 : 0;
    case 3:
      return Buffer.compare(Buffer.from(a as string, 'utf8'), Buffer.from(b as string, 'utf8'));
    case 4:
      return Buffer.compare(a as Uint8Array, b as Uint8Array);
  }
  const ta = a as readonly Key[];
  const tb = b as readonly Key[];
  for (let i = 0; i < Math.min(ta.length, tb.length); i++) {
    const c = refCompare(ta[i]!, tb[i]!);
    if (c !== 0) return c;
  }
  return ta.length - tb.length;
}

/** Strict structural equality; -0 in `expected` stands for 0. */
function sameKey(actual: Key, expected: Key): boolean {
  if (typeof expected === 'number') {
    return typeof actual === 'number' && Object.is(actual, expected === 0 ? 0 : expected);
  }
  if (expected instanceof Uint8Array) {
    return (
      actual instanceof Uint8Array &&
      actual.constructor === Uint8Array &&
      Buffer.compare(actual, expected) === 0
    );
  }
  if (Array.isArray(expected)) {
    return (
      Array.isArray(actual) &&
      actual.length === expected.length &&
      expected.every((e: Key, i: number) => sameKey((actual as Key[])[i]!, e))
    );
  }
  return typeof actual === typeof expected && actual === expected;
}

// ---- arbitraries -------------------------------------------------------------------

const tricky = fc.constantFrom(
  '', '\0', '\0\0', 'a\0', 'a\0b', '\x01', '\x7f', '\x80', '\xff', 'é', '\u07ff', '\u0800',
  '\ud7ff', '\ue000', '\uf8ff', '\ufffd', '\uffff', '\u{10000}', '\u{1f600}', '\u{10ffff}',
);
const strings = fc.oneof(
  fc.string(),
  fc.string({ unit: 'binary' }),
  fc.string({ unit: tricky, maxLength: 6 }),
  fc.string({ unit: fc.constantFrom('a', 'b', '\0'), maxLength: 4 }),
);
const numbers = fc.oneof(
  fc.double({ noNaN: true }),
  fc.integer({ min: -5, max: 5 }),
  fc.constantFrom(0, -0, Infinity, -Infinity, Number.MAX_VALUE, -Number.MAX_VALUE, Number.MIN_VALUE,
    -Number.MIN_VALUE, Number.MAX_SAFE_INTEGER, Number.MIN_SAFE_INTEGER, 0.1, -0.1),
);
const bigints = fc.oneof(
  fc.bigInt({ min: -300n, max: 300n }),
  fc.bigInt(),
  fc.bigInt({ min: -(1n << 2200n), max: 1n << 2200n }),
  // magnitudes of 253..257 bytes straddle the 1-byte / 5-byte length boundary (255)
  fc.constantFrom(...[253n, 254n, 255n, 256n, 257n].flatMap((n) => [1n << (8n * n - 1n), (1n << (8n * n)) - 1n]))
    .chain((v) => fc.constantFrom(v, -v)),
  fc.constantFrom(255n, 256n, -255n, -256n),
);
const bytes = fc.oneof(
  fc.uint8Array({ maxLength: 20 }),
  fc.uint8Array({ min: 0, max: 2, maxLength: 5 }).map((a) => a.map((b) => (b === 2 ? 0xff : b))),
);
const scalar: fc.Arbitrary<Key> = fc.oneof(fc.boolean(), numbers, bigints, strings, bytes);

const { key } = fc.letrec<{ key: Key; tuple: Key[] }>((tie) => ({
  key: fc.oneof({ depthSize: 'small', withCrossShrink: true }, scalar, tie('tuple')),
  tuple: fc.array(tie('key'), { maxLength: 4 }),
}));

// Small domains, so that equal elements and shared tuple prefixes are common.
const smallScalar: fc.Arbitrary<Key> = fc.oneof(
  fc.boolean(),
  fc.constantFrom(-1, 0, -0, 1, 2.5, Infinity),
  fc.constantFrom(-1n, 0n, 1n, 256n),
  fc.string({ unit: fc.constantFrom('a', 'b', '\0', 'é', '\u{1f600}'), maxLength: 2 }),
  fc.uint8Array({ min: 0, max: 1, maxLength: 2 }),
);
const { small } = fc.letrec<{ small: Key; smallTuple: Key[] }>((tie) => ({
  small: fc.oneof({ depthSize: 'small' }, smallScalar, tie('smallTuple')),
  smallTuple: fc.array(tie('small'), { maxLength: 3 }),
}));

// ---- properties --------------------------------------------------------------------

t.test('decode(encode(k)) is k (with -0 as 0)', async (t) => {
  fc.assert(
    fc.property(key, (k) => {
      const e = enc(k);
      for (let i = 0; i < e.length; i++) if (e.charCodeAt(i) > 255) return false;
      return sameKey(decodeKey(e), k);
    }),
    FC,
  );
  t.pass();
});

t.test('encoding order equals the reference order', async (t) => {
  for (const arb of [key, small]) {
    fc.assert(
      fc.property(arb, arb, (a, b) => {
        const ea = enc(a);
        const eb = enc(b);
        const c = ea < eb ? -1 : ea > eb ? 1 : 0;
        return c === sign(refCompare(a, b)) && c === compareKeys(a, b);
      }),
      { numRuns: 5000 },
    );
  }
  t.pass();
});

t.test('sorting by encoding sorts by key', async (t) => {
  fc.assert(
    fc.property(fc.array(small, { maxLength: 40 }), (keys) => {
      const byRef = [...keys].sort(refCompare).map(enc);
      const byEnc = keys.map(enc).sort();
      return byRef.every((e, i) => e === byEnc[i]);
    }),
    FC,
  );
  t.pass();
});

t.test('prefixBounds holds exactly the tuples with that prefix', async (t) => {
  const startsWith = (k: Key, p: readonly Key[]) =>
    Array.isArray(k) && k.length >= p.length && p.every((e, i) => refCompare(k[i]!, e) === 0);
  const candidates = (p: Key[]) =>
    fc.oneof(
      small,
      fc.array(small, { maxLength: 2 }).map((rest) => [...p, ...rest]),
      fc.array(small, { maxLength: 2 }).map((rest) => [...p.slice(0, -1), ...rest]),
    );
  fc.assert(
    fc.property(
      fc.array(small, { maxLength: 3 }).chain((p) => fc.tuple(fc.constant(p), fc.array(candidates(p), { maxLength: 20 }))),
      ([p, ks]) => {
        const { gte, lt } = prefixBounds(p);
        return ks.every((k) => {
          const e = enc(k);
          return (e >= gte && e < lt) === startsWith(k, p);
        });
      },
    ),
    FC,
  );
  t.pass();
});

t.test('binary-string <-> bytes conversions', async (t) => {
  fc.assert(
    fc.property(key, (k) => {
      const e = enc(k);
      const b = encodedKeyToBytes(e);
      const padded = new Uint8Array(b.length + 5);
      padded.set(b, 3);
      return b.length === e.length && bytesToEncodedKey(b) === e && bytesToEncodedKey(padded, 3, 3 + b.length) === e;
    }),
    FC,
  );
  t.pass();
});

// ---- examples ----------------------------------------------------------------------

t.test('a hand-written order', async (t) => {
  const ordered: Key[] = [
    false, true,
    -Infinity, -1e300, -1, -Number.MIN_VALUE, 0, Number.MIN_VALUE, 1, 2, 1e300, Infinity,
    -(1n << 3000n), -256n, -255n, -1n, 0n, 1n, 255n, 256n, 1n << 3000n,
    '', '\0', 'a', 'a\0', 'a\0\0', 'a\x01', 'ab', 'b', '\x7f', 'é', '\uffff', '\u{10000}',
    new Uint8Array([]), new Uint8Array([0]), new Uint8Array([0, 0]), new Uint8Array([0, 0xff]), new Uint8Array([1]),
    [], [false], [0], [0, 'a'], [1], [1n], ['a'], ['a', 0], ['a', []], ['a', ['b']], ['a\0'], ['b'], [new Uint8Array([0])], [[]], [[0]],
  ];
  const e = ordered.map((k) => enc(k));
  for (let i = 1; i < e.length; i++) t.ok(e[i - 1]! < e[i]!, `${i - 1} < ${i}`);
  t.equal(enc(-0), enc(0), '-0 and 0 are the same key');
  t.ok(Object.is(decodeKey(enc(-0)), 0), '-0 decodes as 0');
  t.equal(enc('abc'), '\x07abc\0\0', 'ASCII fast path');
  t.equal(encodeKey(5).length, 9);
  t.ok(decodeKey(enc(Buffer.from('x'))) instanceof Uint8Array);
  t.equal(compareKeys(['user', 7], ['user', 7]), 0);
  t.equal(compareKeys(['user', 7], ['user', 7, 'x']), -1);
});

t.test('prefixBounds example: every key [user, 7, *]', async (t) => {
  const { gte, lt } = prefixBounds(['user', 7]);
  const inside: Key[] = [['user', 7], ['user', 7, 0], ['user', 7, 'z'], ['user', 7, ['x']], ['user', 7, new Uint8Array([255, 255])]];
  const outside: Key[] = [['user', 6, 'z'], ['user', 8], ['user'], ['user', 7n], ['userx', 7], 'user', ['user\0', 7]];
  for (const k of inside) t.ok(enc(k) >= gte && enc(k) < lt, `inside ${String(k)}`);
  for (const k of outside) t.notOk(enc(k) >= gte && enc(k) < lt, `outside ${String(k)}`);
  t.throws(() => prefixBounds(['a', NaN]), { name: 'TypeError', code: 'TIDEPOOL_BAD_KEY' });
});

t.test('bad keys throw a TypeError naming the problem', async (t) => {
  const cyclic: unknown[] = [1];
  cyclic.push(cyclic);
  const cases: [unknown, RegExp][] = [
    [NaN, /NaN is not a valid key/],
    [undefined, /undefined is not a valid key/],
    [null, /null is not a valid key/],
    [{}, /object is not a valid key type/],
    [new Date(0), /Date is not a valid key type/],
    [new Map(), /Map is not a valid key type/],
    [Symbol('s'), /symbol is not a valid key type/],
    [() => 1, /function is not a valid key type/],
    [new Uint16Array(2), /Uint16Array is not a valid key type.*Uint8Array/],
    [new ArrayBuffer(2), /ArrayBuffer is not a valid key type/],
    [[1, 2, undefined], /undefined at tuple index 2/],
    [[1, [2, NaN]], /NaN is not a valid key at tuple index 1\.1/],
    [['a', null], /null at tuple index 1/],
    [['a', {}], /object is not a valid key type at tuple index 1/],
    // eslint-disable-next-line no-sparse-arrays
    [[1, , 3], /undefined at tuple index 1/],
    [cyclic, /nested deeper than/],
    ['a\ud800b', /lone surrogate/],
    [['x', '\udc00'], /string at tuple index 1 contains a lone surrogate/],
    ['x'.repeat(5000), /key is 5003 bytes, the limit is 1024/],
    [[new Uint8Array(2000).fill(1)], /key is 2005 bytes, the limit is 1024/],
  ];
  for (const [k, re] of cases) {
    t.throws(() => encodeKey(k), { name: 'TypeError', code: 'TIDEPOOL_BAD_KEY', message: re }, String(re));
  }
  t.equal(MAX_KEY_BYTES, 1024);
  t.equal(encodeKey('x'.repeat(1021)).length, 1024, 'exactly at the limit is fine');
  t.equal(encodeKey('x'.repeat(50), 64).length, 53, 'a custom limit');
  t.throws(() => encodeKey('x'.repeat(62), 64), { message: /key is 65 bytes, the limit is 64/ });
});

t.test('malformed encodings are rejected, not misread', async (t) => {
  for (const bad of ['', '\x07abc', '\x07a\0\x01\0\0', '\x03\0\0', '\x09\x01', '\x63', '\x01\x01', '\x06', '\x06\x02\x01', '\x08\0', '\x03\xff\xf8\0\0\0\0\0\0']) {
    t.throws(() => decodeKey(bad), { code: 'TIDEPOOL_BAD_KEY', message: /malformed encoded key/ }, JSON.stringify(bad));
  }
});
