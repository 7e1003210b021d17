// A JavaScript module with a syntax error on line 4.
export const a = 1;

export default { oops: ] };
