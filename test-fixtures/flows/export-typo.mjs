// A JavaScript flow that imports a name 'tidepool' does not export: Node's own
// "does not provide an export named" SyntaxError, no bundler involved.

import { flow, sources, Sinks } from 'tidepool';

export default flow('typo').source('in', sources.array([1])).sink('out', Sinks.stdout());
