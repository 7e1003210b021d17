// A map that throws on record 777 (of 2000). TP_OUTPUT.
import { flow, sources, sinks } from 'tidepool';

const output = process.env.TP_OUTPUT;
if (!output) throw new Error('explode fixture: set TP_OUTPUT');

export default flow('explode')
  .source('gen', sources.generator({ count: 2000, make: (i) => ({ id: i }) }))
  .map('explode', (r: { id: number }) => {
    if (r.id === 777) throw new RangeError(`record ${r.id} is cursed`);
    return r;
  })
  .keyBy((r: { id: number }) => r.id % 5)
  .reduce('n', (acc: number | undefined) => (acc ?? 0) + 1)
  .sink('out', sinks.file({ path: output }));
