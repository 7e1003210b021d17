// Minimal source and sink specs, so these fixtures depend only on the flow builder.
import type { SinkSpec, SourceSpec } from 'tidepool';

export interface Numbered {
  readonly n: number;
}

export function numbers(count: number): SourceSpec<Numbered> {
  return {
    kind: 'source',
    type: 'fixture-numbers',
    bounded: true,
    open() {
      let i = 0;
      return {
        next: (max: number) => (i >= count ? null : Array.from({ length: Math.min(max, count - i) }, () => ({ n: i++ }))),
        position: () => i,
        seek: (p: unknown) => void (i = p as number),
        close: () => undefined,
      };
    },
  };
}

export function discard<T>(): SinkSpec<T> {
  return {
    kind: 'sink',
    type: 'fixture-discard',
    open: () => ({ write() {}, prepare() {}, commit() {}, close() {} }),
  } as unknown as SinkSpec<T>;
}
