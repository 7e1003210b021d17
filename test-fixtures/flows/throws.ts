import { flow } from 'tidepool';

const config: { input?: string } = {};
if (!config.input) throw new Error('INPUT is not set; export INPUT=path');

export default flow('never');
