// A JavaScript flow, imported as it is.
import { flow } from '../../dist/src/index.js';

const source = { kind: 'source', type: 'fixture', bounded: true, open: () => ({ next: () => null, position: () => 0, seek() {}, close() {} }) };
const sink = { kind: 'sink', type: 'fixture', open: () => ({ write() {}, prepare() {}, commit() {}, close() {} }) };

export default flow('plain').source('in', source).map('double', (x) => x * 2).sink('out', sink);
