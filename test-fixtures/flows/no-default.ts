import { flow } from 'tidepool';
import { numbers, discard } from './lib/specs.js';

export const wordcount = flow('nodefault').source('n', numbers(1)).sink('out', discard());
