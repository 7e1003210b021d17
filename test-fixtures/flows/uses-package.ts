// A package from node_modules stays an import (by absolute URL) in the bundle.
import { pack, unpack } from 'msgpackr';
import { readFileSync } from 'node:fs';
import { flow } from 'tidepool';
import { numbers, discard } from './lib/specs.js';

const roundTrip = (x: unknown): unknown => unpack(pack(x));
export const fsOk = typeof readFileSync === 'function';

export default flow('packages').source('n', numbers(3)).map('rt', roundTrip).sink('out', discard());
