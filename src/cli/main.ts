#!/usr/bin/env node
// The tidepool command. Errors print one line (stack traces only with --verbose).
import { parseArgs } from 'node:util';
import { readFileSync } from 'node:fs';
import { TidepoolError } from '../errors.js';
import { formatReport, inspectStateDir } from './inspect.js';

const HELP = `tidepool — durable, partitioned state for Node.js stream processing

Usage:
  tidepool inspect <state-dir> [--json]   what a state directory holds: stores, versions, pages
  tidepool --version
  tidepool --help

Not in this version yet: 'run' and 'profile' (the flow runtime).
`;

function fail(e: unknown, verbose: boolean): never {
  const msg = e instanceof TidepoolError || e instanceof TypeError ? e.message : e instanceof Error ? e.message : String(e);
  console.error(`tidepool: ${msg}`);
  if (verbose && e instanceof Error) console.error(e.stack);
  process.exit(1);
}

async function main(argv: string[]): Promise<void> {
  const verbose = argv.includes('--verbose');
  try {
    const [cmd, ...rest] = argv.filter((a) => a !== '--verbose');
    if (cmd === undefined || cmd === '--help' || cmd === '-h' || cmd === 'help') {
      process.stdout.write(HELP);
      return;
    }
    if (cmd === '--version') {
      const pkg = JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as { version: string };
      console.log(pkg.version);
      return;
    }
    if (cmd === 'inspect') {
      const { values, positionals } = parseArgs({ args: rest, options: { json: { type: 'boolean', default: false } }, allowPositionals: true });
      if (positionals.length !== 1) throw new TidepoolError('TIDEPOOL_BAD_OPTION', 'usage: tidepool inspect <state-dir> [--json]');
      const reports = inspectStateDir(positionals[0]!);
      console.log(values.json ? JSON.stringify(reports, null, 2) : formatReport(reports));
      return;
    }
    if (cmd === 'run' || cmd === 'profile') {
      throw new TidepoolError('TIDEPOOL_BAD_OPTION', `'${cmd}' needs the flow runtime, which this version does not include yet`);
    }
    throw new TidepoolError('TIDEPOOL_BAD_OPTION', `unknown command '${cmd}' (see tidepool --help)`);
  } catch (e) {
    fail(e, verbose);
  }
}

await main(process.argv.slice(2));
