// The operations of one sink writer run one after another, in call order; the first
// failure is sticky: every later operation fails with it (unless it runs even after a
// failure, as close does). Errors that are not tidepool's become one TIDEPOOL_IO line
// naming the sink.
import { errors } from '../errors.js';

export class SerialOps {
  private queue: Promise<void> = Promise.resolve();
  private failure: unknown = null;

  constructor(private readonly what: string) {}

  /** Settles after every operation queued so far (never rejects). */
  get idle(): Promise<void> {
    return this.queue;
  }

  /** Runs `op` after every earlier operation; a failure fails every later one. */
  run(op: () => Promise<void>, evenAfterFailure = false): Promise<void> {
    const run = async (): Promise<void> => {
      if (this.failure !== null && !evenAfterFailure) throw this.failure;
      try {
        await op();
      } catch (err) {
        const e = (err as { code?: string }).code?.startsWith('TIDEPOOL_') ? err : errors.io(this.what, err);
        if (this.failure === null) this.failure = e;
        throw e;
      }
    };
    const p = this.queue.then(run, run);
    this.queue = p.catch(() => {});
    return p;
  }
}
