// Prints what `npm run demo` produced: the top words and the run summary.
import { readFileSync } from 'node:fs';
const counts = readFileSync('wordcount-out/counts.jsonl', 'utf8').trim().split('\n').map((l) => JSON.parse(l));
const final = new Map();
for (const { key, value } of counts) final.set(key, value); // the last update per key is its count
const top = [...final].sort((a, b) => b[1] - a[1]).slice(0, 8);
const s = JSON.parse(readFileSync('wordcount-out/summary.json', 'utf8'));
console.log(`wordcount: ${s.recordsIn} lines in, ${counts.length} count updates out, ${final.size} distinct words, ${s.wallMs} ms (parallelism ${s.parallelism}, ${s.execution})`);
console.log(`top words: ${top.map(([w, n]) => `${w} ${n}`).join(', ')}`);
for (const o of s.operators) console.log(`  ${o.task.padEnd(14)} ×${o.parallelism}  in ${o.recordsIn}  out ${o.recordsOut}  ${o.recordsInPerSec}/s  backpressure ${o.backpressureMs} ms${o.statePages ? `  state ${o.statePages} pages, cache hit rate ${o.cacheHitRate}` : ''}`);
console.log('output: wordcount-out/counts.jsonl (one {key, value} line per update)');
