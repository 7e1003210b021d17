import { flow } from 'tidepool';
import { fine } from './lib/broken.js';

export default flow(`x${fine}`);
