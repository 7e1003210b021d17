// The DATA frame codec (src/transport/frames.ts): msgpackr records mode with structures
// that live inside one frame. Checked against plain msgpack maps (what frames carried
// before, so user-visible records are unchanged) for arbitrary msgpack-able records, and
// in the case that broke an early records-mode version: several producers whose frames
// interleave at one consumer, mixed record shapes, and either side restarted (a fresh
// codec, as a restarted worker has) at any point — each frame decoded from a view into
// shared memory at an odd offset and read out as a ring reader's copy.
import t from 'tap';
import fc from 'fast-check';
import { isDeepStrictEqual } from 'node:util';
import { Packr } from 'msgpackr';
import { FRAME_DATA, frameCodec } from '../src/transport/frames.js';

const MAPS = new Packr({ useRecords: false, moreTypes: false, mapsAsObjects: true, useBigInt64: true, int64AsType: 'bigint', useBigIntExtension: true } as ConstructorParameters<typeof Packr>[0]);
/**
 * `frame` as a consumer gets it: written into a ring (shared memory, at an odd offset),
 * read out as the copy `RingReader.read()` makes (a Uint8Array of its own).
 */
function throughRing(frame: Uint8Array): Uint8Array {
  const sab = new SharedArrayBuffer(frame.length + 40);
  new Uint8Array(sab, 13, frame.length).set(frame);
  return new Uint8Array(sab).slice(13, 13 + frame.length);
}

/** What records looked like after a trip through the map-mode frames of before. */
const viaMaps = (records: unknown[]): unknown => MAPS.unpack(throughRing(MAPS.pack(records)));

// Values msgpack carries: JSON values, bigints, byte arrays, nested objects and arrays.
const leaf = fc.oneof(
  fc.integer(), fc.double({ noNaN: true }), fc.string(), fc.boolean(), fc.constant(null),
  fc.bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n }), fc.uint8Array({ maxLength: 8 }).map((b) => Buffer.from(b)),
);
const value = fc.letrec((tie) => ({
  v: fc.oneof({ depthSize: 'small' }, leaf, fc.array(tie('v'), { maxLength: 4 }), fc.dictionary(fc.string({ maxLength: 6 }), tie('v'), { maxKeys: 5 })),
})).v;
// Records of a few shapes (the usual case: a stream of same-shaped records), and odd ones.
const shaped = fc.oneof(
  fc.record({ user: fc.string(), amount: fc.integer() }),
  fc.record({ k: fc.string(), i: fc.nat(), p: fc.option(fc.string(), { nil: undefined }) }, { requiredKeys: ['k', 'i'] }),
  fc.record({ auction: fc.nat(), bidder: fc.nat(), price: fc.nat(), dateTime: fc.nat(), extra: fc.string() }),
  fc.dictionary(fc.string({ maxLength: 4 }), value, { maxKeys: 8 }),
  value,
);

t.test('records decode as they did in map-mode frames, with and without timestamps', async (t) => {
  fc.assert(
    fc.property(fc.array(shaped, { minLength: 1, maxLength: 60 }), fc.boolean(), (records, timed) => {
      const { encodeBatch, decodeBatch } = frameCodec();
      const ts = timed ? records.map((_, i) => i * 1.5) : undefined;
      const frame = encodeBatch(records, ts);
      if (frame[0] !== FRAME_DATA) return false;
      const gotTs: number[] = [];
      const got = decodeBatch(throughRing(frame), gotTs);
      return isDeepStrictEqual(got, viaMaps(records)) && (timed ? isDeepStrictEqual(gotTs, ts) : gotTs.every(Number.isNaN));
    }),
    { numRuns: 300 },
  );
  t.pass('300 random batches');
});

type Step = { kind: 'frame'; producer: number; records: unknown[] } | { kind: 'restart-producer'; producer: number } | { kind: 'restart-consumer' };

t.test('several producers, mixed shapes, restarts of either side: every frame decodes on its own', async (t) => {
  const PRODUCERS = 4;
  const step: fc.Arbitrary<Step> = fc.oneof(
    { weight: 12, arbitrary: fc.record({ kind: fc.constant('frame' as const), producer: fc.nat(PRODUCERS - 1), records: fc.array(shaped, { minLength: 1, maxLength: 40 }) }) },
    { weight: 1, arbitrary: fc.record({ kind: fc.constant('restart-producer' as const), producer: fc.nat(PRODUCERS - 1) }) },
    { weight: 1, arbitrary: fc.record({ kind: fc.constant('restart-consumer' as const) }) },
  );
  let frames = 0;
  fc.assert(
    fc.property(fc.array(step, { minLength: 1, maxLength: 40 }), (steps) => {
      const producers = Array.from({ length: PRODUCERS }, () => frameCodec());
      let consumer = frameCodec();
      for (const s of steps) {
        if (s.kind === 'restart-producer') producers[s.producer] = frameCodec();
        else if (s.kind === 'restart-consumer') consumer = frameCodec();
        else {
          const frame = producers[s.producer]!.encodeBatch(s.records);
          // The producer goes on encoding before the consumer reads this one.
          producers[s.producer]!.encodeBatch([{ other: 'shape', n: 1 }, { x: [1, 2] }]);
          frames++;
          if (!isDeepStrictEqual(consumer.decodeBatch(throughRing(frame)), viaMaps(s.records))) return false;
        }
      }
      return true;
    }),
    { numRuns: 150 },
  );
  t.ok(frames > 500, `${frames} frames from ${PRODUCERS} producers decoded`);
});

t.test('a frame decodes the same by a consumer that has decoded any other frames before', async (t) => {
  // The same frame, decoded by fresh consumers and by one that has seen hundreds of
  // frames with other shapes: the structures of one frame never leak into the next.
  const p = frameCodec();
  const busy = frameCodec();
  for (let i = 0; i < 300; i++) busy.decodeBatch(p.encodeBatch([{ [`f${i % 70}`]: i, g: [i] }, { h: String(i) }]));
  const records = Array.from({ length: 100 }, (_, i) => (i % 3 === 0 ? { user: `u${i}`, amount: i } : i % 3 === 1 ? { k: `k${i}`, i } : { a: { b: { c: i } } }));
  const frame = p.encodeBatch(records);
  t.same(busy.decodeBatch(throughRing(frame)), records, 'by a consumer with history');
  t.same(frameCodec().decodeBatch(throughRing(frame)), records, 'by a fresh one');
});
