// A helper module for typed-flow.ts: types, an enum, functions.
export interface Reading {
  readonly sensor: string;
  readonly celsius: number;
}

export enum Band {
  Cold = 'cold',
  Mild = 'mild',
  Hot = 'hot',
}

export function band(r: Reading): Band {
  return r.celsius < 5 ? Band.Cold : r.celsius < 25 ? Band.Mild : Band.Hot;
}

export const readings = (n: number): Reading[] =>
  Array.from({ length: n }, (_, i): Reading => ({ sensor: `s${i % 7}`, celsius: (i * 13) % 40 }));
