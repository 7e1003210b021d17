// Poison records: what a record that makes user code throw does (`errors.onRecord`,
// also per operator as `operators.<name>.errors.onRecord`):
//   fail        the run stops (or restarts from its last checkpoint, per restart.*)
//   skip        the record is dropped and counted
//   deadLetter  the record goes, as a JSON line { operator, subtask, error, record }, to
//               errors.deadLetterPath, and is counted
//
// Dead letters travel like any record: every task with a deadLetter operator has an
// extra output edge (port 'dead') to one planned sink task, `~dead-letter`, a file sink
// on deadLetterPath. Barriers flow through it too, so each dead letter is written
// exactly once, published when the checkpoint that covers it completes.
import { resolve } from 'node:path';
import type { Flow } from '../flow/builder.js';
import type { LogicalOperator } from '../flow/types.js';
import { fileSink } from '../connectors/file-sink.js';
import type { OnRecordPolicy } from '../flow/plan.js';
import type { Emit } from '../operators/keyed.js';

export { DEAD_LETTER_SINK as DEAD_LETTER } from '../flow/plan.js';
import { DEAD_LETTER_SINK as DEAD_LETTER } from '../flow/plan.js';

/** The logical operator of a planned task's operator name (the dead-letter sink is the planner's own). */
export function resolveOperator(flow: Flow, name: string, deadLetterPath: string | undefined): LogicalOperator {
  const op = flow.operator(name);
  if (op) return op;
  if (name === DEAD_LETTER && deadLetterPath) return { name, kind: 'sink', inputs: [], sink: fileSink({ path: resolve(deadLetterPath) }) };
  throw new Error(`no operator '${name}' in flow '${flow.name}'`);
}

/** One task instance's handling of failed records. */
export class RecordFailures {
  skipped = 0;
  deadLetters = 0;

  constructor(
    private readonly policies: ReadonlyMap<string, OnRecordPolicy>,
    private readonly subtask: number,
    private readonly dead: Emit,
  ) {}

  /** Whether any of the task's operators handles failures (else every failure fails the run). */
  get active(): boolean {
    for (const p of this.policies.values()) if (p !== 'fail') return true;
    return false;
  }

  policy(operator: string): OnRecordPolicy {
    return this.policies.get(operator) ?? 'fail';
  }

  /** `record` made `operator` throw `error`: true if it was skipped or dead-lettered. */
  handle(operator: string, record: unknown, error: unknown): boolean {
    const p = this.policy(operator);
    if (p === 'fail') return false;
    if (p === 'skip') {
      this.skipped++;
      return true;
    }
    const cause = (error as { cause?: unknown })?.cause ?? error;
    const message = cause instanceof Error ? `${cause.name}: ${cause.message}` : String(cause);
    this.dead({ operator, subtask: this.subtask, error: message, record }, NaN);
    this.deadLetters++;
    return true;
  }
}
