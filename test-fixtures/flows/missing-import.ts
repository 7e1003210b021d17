import { flow } from 'tidepool';
import { nothing } from './lib/does-not-exist.js';

export default flow(nothing);
