// A sink for plan and wiring tests: it discards records and has no parallelism
// preferences of its own (unlike file: 1 instance by default, stdout: at most 1).
import type { SinkSpec } from '../../src/index.js';

export function anySink<T>(): SinkSpec<T> {
  return { kind: 'sink', type: 'test', open: () => ({ write() {}, prepare() {}, commit() {}, close() {} }) };
}
