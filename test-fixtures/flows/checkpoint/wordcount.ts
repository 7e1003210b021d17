// Word count over a text file for the checkpoint tests: sources.file(TP_INPUT) →
// flatMap words (paced: TP_RATE lines/s per instance) → keyBy word → reduce count →
// file sink TP_OUT (lines { key: word, value: count so far }).
import { flow, sources, sinks } from 'tidepool';
import { envRate, pacer } from './lib/pace.js';

const input = process.env.TP_INPUT;
const out = process.env.TP_OUT;
if (!input || !out) throw new Error('wordcount fixture: set TP_INPUT and TP_OUT (and TP_RATE)');
const pace = pacer(envRate());

export default flow('chk-wordcount')
  .source('lines', sources.file({ path: input }))
  .flatMap('words', (line: string): string[] => {
    pace();
    return line.toLowerCase().match(/[a-z']+/g) ?? [];
  })
  .keyBy((word: string) => word)
  .reduce('counts', (acc: number | undefined, _word: string) => (acc ?? 0) + 1)
  .sink('out', sinks.file({ path: out }));
