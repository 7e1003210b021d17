// `tidepool profile <doctor|flame|bubbleprof|heapprofiler|cpu> -- <run arguments>`
//
// clinic samples only the main thread (flame sees no worker samples; doctor's analysis
// fails on worker scripts), so the clinic tools run the flow in inline execution —
// every instance on the main thread, same semantics — unless the run arguments set
// `execution` themselves. `cpu` instead runs the normal multi-worker flow under
// Node's --cpu-prof, which writes one .cpuprofile per thread.
import { spawn } from 'node:child_process';
import { createRequire } from 'node:module';
import { mkdirSync, readdirSync } from 'node:fs';
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { errors } from '../errors.js';

const TOOLS = ['doctor', 'flame', 'bubbleprof', 'heapprofiler', 'cpu'] as const;
const CLI = fileURLToPath(new URL('./main.js', import.meta.url));

function exec(cmd: string, args: string[], env: NodeJS.ProcessEnv): Promise<number> {
  return new Promise((resolveExit, reject) => {
    const child = spawn(cmd, args, { stdio: 'inherit', env });
    child.once('error', reject);
    child.once('exit', (code, signal) => resolveExit(code ?? (signal ? 1 : 0)));
  });
}

export async function profileCommand(args: string[]): Promise<number> {
  const tool = args[0];
  const sep = args.indexOf('--');
  if (!tool || !(TOOLS as readonly string[]).includes(tool) || sep < 0) {
    throw errors.badOption('profile', `usage: tidepool profile <${TOOLS.join('|')}> -- <run arguments> (e.g. -- flow.ts --set parallelism=2)`);
  }
  let runArgs = args.slice(sep + 1);
  if (runArgs[0] === 'run') runArgs = runArgs.slice(1);
  if (tool === 'cpu') {
    const dir = resolve(`tidepool-profile-${Date.now()}`);
    mkdirSync(dir, { recursive: true });
    const code = await exec(process.execPath, ['--cpu-prof', `--cpu-prof-dir=${dir}`, CLI, 'run', ...runArgs], process.env);
    const files = readdirSync(dir).filter((f) => f.endsWith('.cpuprofile'));
    console.log(`tidepool: ${files.length} CPU profiles (one per thread) in ${dir} — open them in Chrome DevTools (Performance tab) or VS Code`);
    return code;
  }
  const inline = runArgs.some((a) => a.startsWith('execution=')) ? [] : ['--set', 'execution=inline'];
  let clinicBin: string;
  try {
    clinicBin = createRequire(import.meta.url).resolve('clinic/bin.js');
  } catch {
    throw errors.badOption('profile', "clinic is not installed: npm install clinic (tidepool profile cpu needs nothing extra)");
  }
  const env = { ...process.env, NO_INSIGHT: '1' };
  const code = await exec(process.execPath, [clinicBin, tool, '--open=false', '--', process.execPath, CLI, 'run', ...runArgs, ...inline], env);
  console.log(`tidepool: clinic ${tool} finished (exit ${code}); the report is the .clinic/*.html file named above`);
  return code;
}
