#!/usr/bin/env node
// The tidepool command. Errors print one line (stack traces only with --verbose).
import { parseArgs } from 'node:util';
import { readFileSync } from 'node:fs';
import { TidepoolError } from '../errors.js';
import { IoClient } from '../storage/io-client.js';
// Each command's modules load when it runs: `tidepool run` then loads neither the
// inspector (lmdb-js on this thread) nor the profiler, and starts the I/O worker first.

const HELP = `tidepool — durable, partitioned state for Node.js stream processing

Usage:
  tidepool run <flow-module> [--state <dir>] [--config <file.json>] [--set key=value]…
                             [--from-checkpoint <id>] [--allow-dropped-state]
                             [--progress] [--summary <file.json>] [--verbose]
      runs a flow module (.ts or .js) until every bounded source is exhausted;
      on a --state directory with checkpoints it resumes from the newest one
  tidepool profile <doctor|flame|bubbleprof|heapprofiler|cpu> -- <run arguments>
      clinic tools run the flow inline (one thread); cpu writes one profile per worker thread
  tidepool inspect <state-dir> [--json]
  tidepool inspect --remote '<state.remote JSON>' [--json]
      what a state directory holds: checkpoints, operators and instances, key counts,
      pages and bytes per state, source positions; or an embedded store's flushes;
      with --remote, the checkpoints in remote storage (id, time, bytes, objects)
  tidepool --version | --help

Config keys (--config file.json, --set path=value): parallelism, keyGroups, chaining,
execution (workers|inline), batchSize, operators.<name>.parallelism, state.storage,
state.pageSize, state.cachePages, state.compression, state.remote, checkpoint.*, restart.*, metrics.port
`;

async function fail(e: unknown, verbose: boolean): Promise<never> {
  const msg = (e instanceof Error ? e.message : String(e)).split('\n')[0];
  console.error(`tidepool: ${msg}`);
  if (verbose && e instanceof Error) console.error(e.stack);
  return exit(1);
}

/** Lets the I/O worker finish and close LMDB first (IoClient.shutdown says why). */
async function exit(code: number): Promise<never> {
  await IoClient.shutdown();
  process.exit(code);
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
      const { values, positionals } = parseArgs({ args: rest, options: { json: { type: 'boolean', default: false }, remote: { type: 'string' } }, allowPositionals: true });
      if (values.remote !== undefined && positionals.length === 0) {
        const { inspectRemote, formatRemoteReport } = await import('./inspect-remote.js');
        const report = await inspectRemote(values.remote);
        console.log(values.json ? JSON.stringify(report, null, 2) : formatRemoteReport(report));
        return;
      }
      if (positionals.length !== 1 || values.remote !== undefined) throw new TidepoolError('TIDEPOOL_BAD_OPTION', "usage: tidepool inspect <state-dir> [--json] | tidepool inspect --remote '<state.remote JSON>' [--json]");
      const [{ formatDirReport, inspectDir }, { prepareBuiltinCodecs }] = await Promise.all([import('./inspect.js'), import('../state/codecs.js')]);
      await prepareBuiltinCodecs(); // inspect reads state pages, zstd ones included
      const report = inspectDir(positionals[0]!);
      console.log(values.json ? JSON.stringify(report, null, 2) : formatDirReport(report));
      return;
    }
    if (cmd === 'run') {
      // The I/O worker (a thread, lmdb-js) boots while this thread loads the runtime.
      // A run with memory state leaves it idle; it does not keep the process alive.
      IoClient.shared();
      const { runCommand } = await import('./run-command.js');
      await runCommand(verbose ? [...rest, '--verbose'] : rest);
      await exit(0);
    }
    if (cmd === 'profile') {
      const { profileCommand } = await import('./profile-command.js');
      process.exit(await profileCommand(rest));
    }
    throw new TidepoolError('TIDEPOOL_BAD_OPTION', `unknown command '${cmd}' (see tidepool --help)`);
  } catch (e) {
    await fail(e, verbose);
  }
}

await main(process.argv.slice(2));
