export const fine = 1;
export const notFine = {
  a: 1,,
};
