import { flow } from 'tidepool';

const broken: number = (1 + ;

export default flow('broken');
