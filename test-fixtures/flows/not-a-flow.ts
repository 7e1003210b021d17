// Forgot the .sink(…): the default export is a DataStream, not a flow.
import { flow } from 'tidepool';
import { numbers } from './lib/specs.js';

export default flow('unfinished').source('n', numbers(1)).map('m', (r) => r);
