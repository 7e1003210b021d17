// A JavaScript flow module, imported as it is (not bundled): it imports tidepool by a
// relative path to the build. TP_OUTPUT.
import { flow, sources, sinks } from '../../../dist/src/index.js';

const output = process.env.TP_OUTPUT;
if (!output) throw new Error('plain-flow fixture: set TP_OUTPUT');

export default flow('plain-flow')
  .source('nums', sources.generator({ count: 1000, make: (i) => i }))
  .filter('odd', (n) => n % 2 === 1)
  .keyBy((n) => n % 10)
  .reduce('sum', (acc, n) => (acc ?? 0) + n)
  .sink('out', sinks.file({ path: output }));
