// The output file of the keyed-count checkpoint fixtures (lines { key, value: { n, i } })
// and the exactly-once check the checkpoint tests apply to it.
import type { Test } from 'tap';
import { readFileSync } from 'node:fs';

export function readOrEmpty(path: string): Buffer {
  try {
    return readFileSync(path);
  } catch {
    return Buffer.alloc(0);
  }
}

interface Line { key: string; value: { n: number; i: number } }

export function lines(path: string): Line[] {
  const text = readOrEmpty(path).toString('utf8');
  const end = text.lastIndexOf('\n');
  if (end < 0) return [];
  return text.slice(0, end).split('\n').map((l) => JSON.parse(l) as Line);
}

/**
 * The output of a keyed count of records 0…n-1 under keyOf, exactly once: one line per
 * record, per key the counts 1, 2, 3, … in record order, final counts as a reference.
 */
export function checkExactlyOnce(t: Test, out: string, n: number, keyOf: (i: number) => string, what: string): void {
  const ls = lines(out);
  const seen = new Uint8Array(n);
  const last = new Map<string, { n: number; i: number }>();
  const problems: string[] = [];
  for (let l = 0; l < ls.length; l++) {
    const { key, value } = ls[l]!;
    if (value.i < 0 || value.i >= n) {
      if (problems.length < 5) problems.push(`line ${l + 1}: record ${value.i} out of range`);
      continue;
    }
    if (seen[value.i]++ && problems.length < 5) problems.push(`line ${l + 1}: record ${value.i} again`);
    if (keyOf(value.i) !== key && problems.length < 5) problems.push(`line ${l + 1}: record ${value.i} under key ${key}`);
    const prev = last.get(key) ?? { n: 0, i: -1 };
    if ((value.n !== prev.n + 1 || value.i <= prev.i) && problems.length < 5) {
      problems.push(`line ${l + 1}: key ${key} update ${value.n} (record ${value.i}) after ${prev.n} (record ${prev.i})`);
    }
    last.set(key, value);
  }
  const missing = seen.reduce((a, x) => a + (x === 0 ? 1 : 0), 0);
  t.equal(ls.length, n, `${what}: one output line per input record`);
  t.equal(missing, 0, `${what}: no record missing`);
  t.same(problems, [], `${what}: no duplicate, per key 1, 2, 3, … in record order`);
  const reference = new Map<string, number>();
  for (let i = 0; i < n; i++) reference.set(keyOf(i), (reference.get(keyOf(i)) ?? 0) + 1);
  const finals = new Map([...last].map(([k, v]) => [k, v.n]));
  t.same(Object.fromEntries(finals), Object.fromEntries(reference), `${what}: final counts equal a plain reference`);
}
