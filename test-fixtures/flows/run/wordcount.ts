// Word count over a text file. Parameters from the environment (read at import, so
// the coordinator and every worker agree): TP_INPUT (text file), TP_OUTPUT (jsonl).
import { flow, sources, sinks } from 'tidepool';

const input = process.env.TP_INPUT;
const output = process.env.TP_OUTPUT;
if (!input || !output) throw new Error('wordcount fixture: set TP_INPUT and TP_OUTPUT');

export const words = (line: string): string[] => line.toLowerCase().match(/[a-z']+/g) ?? [];

export default flow('wc-fixture')
  .source('lines', sources.file({ path: input }))
  .flatMap('words', words)
  .keyBy((word: string) => word)
  .reduce('counts', (acc: number | undefined, _word: string) => (acc ?? 0) + 1)
  .sink('out', sinks.file({ path: output }));
