// join with ttlMs (processing time) over two phased sources, for test/joins-model.test.ts.
// TP_SPEC names a JSON file { a: Ev[], b: Ev[], ttlMs, pauses: { a: Pause[], b: Pause[] }, out }:
// each source pauses before its item `at`; a pause longer than ttlMs means that no record of the
// first phase may meet one of the second. Output: { x, y } pairs (ids) in sink 'out'.
import { flow, sinks } from 'tidepool';
import { readFileSync } from 'node:fs';
import { phased, type Pause } from './lib/phased.js';

interface Ev { k: number; id: number }
interface Spec { a: Ev[]; b: Ev[]; ttlMs: number; pauses: { a: Pause[]; b: Pause[] }; out: string }

const specPath = process.env.TP_SPEC;
if (!specPath) throw new Error('ttl-join fixture: set TP_SPEC');
const spec = JSON.parse(readFileSync(specPath, 'utf8')) as Spec;

const f = flow('ttl-join');
const a = f.source('a', phased(spec.a, spec.pauses.a)).keyBy((e: Ev) => e.k);
const b = f.source('b', phased(spec.b, spec.pauses.b)).keyBy((e: Ev) => e.k);
a.join('inner', b, (x: Ev, y: Ev) => ({ x: x.id, y: y.id }), { ttlMs: spec.ttlMs }).sink('out', sinks.file({ path: spec.out }));
export default f;
