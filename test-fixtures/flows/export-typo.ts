// A flow that imports a name 'tidepool' does not export ('sink' for 'sinks').
import { flow, sources, sink } from 'tidepool';

export default flow('typo')
  .source('in', sources.array([1, 2, 3]))
  .sink('out', sink.stdout());
