// A flow that imports a name a package (msgpackr) does not export.
import { flow, sources, sinks } from 'tidepool';
import { packNope } from 'msgpackr';

export default flow('pkg-typo')
  .source('in', sources.array([1]))
  .map('pack', (n: number) => packNope(n))
  .sink('out', sinks.stdout());
