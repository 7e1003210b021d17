export enum Parity {
  Even = 'even',
  Odd = 'odd',
}

export const parity = (n: number): Parity => (n % 2 === 0 ? Parity.Even : Parity.Odd);

/** Where this helper lives: the loader keeps import.meta.url per source file. */
export const mathUrl: string = import.meta.url;
