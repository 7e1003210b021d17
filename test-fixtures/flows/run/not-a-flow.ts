// The default export is a stream without a sink, not a flow.
import { flow, sources } from 'tidepool';

export default flow('unfinished').source('nums', sources.array([1, 2, 3])).map('double', (n: number) => n * 2);
