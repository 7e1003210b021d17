// `tidepool run <flow-module> [--state <dir>] [--config <file.json>] [--set key=value]…
//  [--from-checkpoint <id>] [--progress] [--summary <file.json>] [--verbose]`
import { parseArgs } from 'node:util';
import { errors } from '../errors.js';
import { run } from '../runtime/coordinator.js';

export const RUN_USAGE = 'usage: tidepool run <flow-module> [--state <dir>] [--config <file.json>] [--set key=value]… [--from-checkpoint <id>] [--progress] [--summary <file.json>] [--allow-dropped-state] [--verbose]';

export async function runCommand(args: string[]): Promise<void> {
  let parsed;
  try {
    parsed = parseArgs({
      args,
      allowPositionals: true,
      options: {
        state: { type: 'string' },
        config: { type: 'string' },
        set: { type: 'string', multiple: true },
        'from-checkpoint': { type: 'string' },
        progress: { type: 'boolean', default: false },
        summary: { type: 'string' },
        verbose: { type: 'boolean', default: false },
        'allow-dropped-state': { type: 'boolean', default: false },
      },
    });
  } catch (e) {
    throw errors.badOption('run', `${(e as Error).message.split('\n')[0]} (${RUN_USAGE})`);
  }
  const { values, positionals } = parsed;
  if (positionals.length !== 1) throw errors.badOption('run', RUN_USAGE);
  let fromCheckpoint: number | undefined;
  if (values['from-checkpoint'] !== undefined) {
    fromCheckpoint = Number(values['from-checkpoint']);
    if (!Number.isInteger(fromCheckpoint) || fromCheckpoint < 1) throw errors.badOption('--from-checkpoint', 'expected a checkpoint id (a positive integer)');
  }
  const summary = await run(positionals[0]!, {
    state: values.state,
    config: values.config,
    set: values.set,
    progress: values.progress,
    summary: values.summary,
    verbose: values.verbose,
    fromCheckpoint,
    allowDroppedState: values['allow-dropped-state'],
  });
  if (values.verbose) {
    process.stderr.write(`tidepool: ${summary.flow}: ${summary.recordsIn} records in, ${summary.recordsOut} out, ${summary.wallMs} ms\n`);
  }
}
