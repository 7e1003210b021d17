// A real Azure Blob endpoint for the remote-checkpoint tests: azurite's blob service
// (devDependency, 3.35 line) started on a free loopback port with a temporary
// workspace and telemetry off, stopped (and restartable on the same port and data)
// by the test. Nothing is started by hand in CI.
import { spawn, type ChildProcess } from 'node:child_process';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';

const require = createRequire(import.meta.url);
const MAIN = join(dirname(require.resolve('azurite/package.json')), 'dist/src/blob/main.js');

/** Azurite's well-known development account (public, documented by Microsoft). */
export const DEV_ACCOUNT = 'devstoreaccount1';
export const DEV_KEY = 'Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==';

export interface Azurite {
  port: number;
  /** A connection string for the dev account (or one with a wrong key). */
  connectionString(key?: string): string;
  stop(): Promise<void>;
  /** Starts it again on the same port with the same data. */
  restart(): Promise<void>;
}

function launch(location: string, port: number): Promise<{ child: ChildProcess; port: number }> {
  const child = spawn(process.execPath, [MAIN, '--blobHost', '127.0.0.1', '--blobPort', String(port), '--location', location, '--disableTelemetry', '--silent', '--skipApiVersionCheck', '--loose'], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, NODE_OPTIONS: '' }, // tap's loaders are not for azurite
  });
  return new Promise((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`azurite did not start in 30 s: ${out}`));
    }, 30_000);
    const onData = (d: Buffer) => {
      out += d;
      const m = /listens on http:\/\/127\.0\.0\.1:(\d+)/.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve({ child, port: Number(m[1]) });
      }
    };
    child.stdout!.on('data', onData);
    child.stderr!.on('data', onData);
    child.on('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`azurite exited (${code}) before listening: ${out}`));
    });
  });
}

export async function startAzurite(location: string): Promise<Azurite> {
  let { child, port } = await launch(location, 0);
  const stop = () =>
    new Promise<void>((resolve) => {
      if (child.exitCode !== null || child.signalCode !== null) return resolve();
      // SIGTERM: azurite saves its metadata (containers) on the way out; SIGKILL would
      // lose what it had not saved yet, which a real service never does.
      const kill = setTimeout(() => child.kill('SIGKILL'), 10_000);
      child.once('exit', () => {
        clearTimeout(kill);
        resolve();
      });
      child.kill('SIGTERM');
    });
  return {
    port,
    connectionString: (key = DEV_KEY) => `DefaultEndpointsProtocol=http;AccountName=${DEV_ACCOUNT};AccountKey=${key};BlobEndpoint=http://127.0.0.1:${port}/${DEV_ACCOUNT};`,
    stop,
    restart: async () => {
      await stop();
      ({ child } = await launch(location, port));
    },
  };
}
