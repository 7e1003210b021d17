// Word count: the contract's example flow. Run it with
//   npx tidepool run examples/flows/wordcount.ts --progress --summary summary.json
// from the repository root (paths are relative to the working directory).
import { flow, sources, sinks } from 'tidepool';

export default flow('wordcount')
  .source('lines', sources.file({ path: 'examples/data/sonnets.txt' })) // one record per line
  .flatMap('words', (line: string) => line.toLowerCase().match(/[a-z']+/g) ?? [])
  .keyBy((word: string) => word)
  .reduce('counts', (acc: number | undefined, _word: string) => (acc ?? 0) + 1)
  .sink('out', sinks.file({ path: 'wordcount-out/counts.jsonl' }));
