// A map that throws on record TP_EXPLODE_AT (of 2000; 777 by default, -1 for none),
// read when the record arrives so one process can run it failing and then not. TP_OUTPUT.
import { flow, sources, sinks } from 'tidepool';

const output = process.env.TP_OUTPUT;
if (!output) throw new Error('explode fixture: set TP_OUTPUT');

export default flow('explode')
  .source('gen', sources.generator({ count: 2000, make: (i) => ({ id: i }) }))
  .map('explode', (r: { id: number }) => {
    if (r.id === Number(process.env.TP_EXPLODE_AT ?? 777)) throw new RangeError(`record ${r.id} is cursed`);
    return r;
  })
  .keyBy((r: { id: number }) => r.id % 5)
  .reduce('n', (acc: number | undefined) => (acc ?? 0) + 1)
  .sink('out', sinks.file({ path: output }));
