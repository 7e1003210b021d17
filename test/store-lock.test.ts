// One owner per (path, name): a second opener — another process or this one — gets
// TIDEPOOL_STORE_LOCKED naming the store, and changes nothing; the lock dies with its
// owner (SIGKILL included) and is released by close().
import t from 'tap';
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { openStore, type Store } from '../src/index.js';
import { fillValue } from './fixtures/lock-holder.js';

const HOLDER = fileURLToPath(new URL('./fixtures/lock-holder.js', import.meta.url));

/** A lock-holder child and a way to talk to it line by line. */
class Holder {
  readonly child: ChildProcessWithoutNullStreams;
  private lines: string[] = [];
  private waiters: ((line: string) => void)[] = [];
  private buf = '';
  stderr = '';
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;

  constructor(dir: string, name: string, cachePages = 16) {
    this.child = spawn(process.execPath, [HOLDER, dir, name, String(cachePages)], { stdio: ['pipe', 'pipe', 'pipe'] });
    this.child.stdout.setEncoding('utf8');
    this.child.stdout.on('data', (d: string) => {
      this.buf += d;
      let nl;
      while ((nl = this.buf.indexOf('\n')) >= 0) {
        const line = this.buf.slice(0, nl);
        this.buf = this.buf.slice(nl + 1);
        const w = this.waiters.shift();
        if (w) w(line);
        else this.lines.push(line);
      }
    });
    this.child.stderr.setEncoding('utf8');
    this.child.stderr.on('data', (d: string) => (this.stderr += d));
    this.exited = new Promise((resolve) => this.child.on('close', (code, signal) => resolve({ code, signal })));
    void this.exited.then(() => {
      for (const w of this.waiters.splice(0)) w(`<exited> ${this.stderr}`);
    });
  }

  next(): Promise<string> {
    const l = this.lines.shift();
    if (l !== undefined) return Promise.resolve(l);
    if (this.child.exitCode !== null || this.child.signalCode !== null) return Promise.resolve(`<exited> ${this.stderr}`);
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  async send(cmd: string): Promise<string> {
    this.child.stdin.write(cmd + '\n');
    return this.next();
  }
}

const LOCKED = (name: string, dir: string) => ({ code: 'TIDEPOOL_STORE_LOCKED', message: new RegExp(`'${name}'.*${dir.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}`) });

function tempDir(t: { teardown(fn: () => void): void }): string {
  const dir = mkdtempSync(join(tmpdir(), 'tidepool-lock-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

t.test('another process holds the store', async (t) => {
  const dir = tempDir(t);
  const h = new Holder(dir, 'shared', 4);
  t.teardown(() => h.child.kill('SIGKILL'));
  const first = await h.next();
  t.match(first, /^locked \d+$/, 'the holder opened the store');
  const pid = Number(first.split(' ')[1]);
  // Unflushed work of the holder, partly spilled to its spill file.
  t.equal(await h.send('fill 3000'), 'filled 3000');

  // Same path and name: a clear error naming the store, its path and the holder.
  const err = await openStore({ path: dir, name: 'shared' }).then(
    () => undefined,
    (e: Error & { code?: string }) => e,
  );
  t.ok(err, 'openStore rejects');
  t.match(err, LOCKED('shared', dir), 'TIDEPOOL_STORE_LOCKED naming the store and its path');
  t.match(err?.message, String(pid), 'the message names the holding process');
  // Other spellings of the same directory are the same store.
  const here = process.cwd();
  const link = join(tmpdir(), `tidepool-lock-link-${process.pid}`);
  symlinkSync(dir, link);
  t.teardown(() => rmSync(link, { force: true }));
  for (const p of [dir + '/', join(dir, '.'), relative(here, dir) || '.', link]) {
    await t.rejects(openStore({ path: p, name: 'shared', storage: 'lmdb' }), { code: 'TIDEPOOL_STORE_LOCKED' }, `locked via ${JSON.stringify(p)}`);
  }

  // A different name in the same directory opens, and both write side by side.
  const other = await openStore({ path: dir, name: 'other', pageSize: 1024, cachePages: 4 });
  for (let i = 0; i < 500; i++) other.set(i, `other ${i}`);
  const [flushed] = await Promise.all([h.send('flush'), other.flush()]);
  t.equal(flushed, 'flushed', 'the holder flushes its spilled work after the failed opens');
  t.equal(await h.send('check 3000'), 'checked', 'the holder still reads all its data');
  t.equal(await h.send('set last {"n":1}'), 'set');
  t.equal(await h.send('flush'), 'flushed');
  await other.close();

  // SIGKILL: the lock goes with the process; no stale lock blocks the next owner.
  h.child.kill('SIGKILL');
  t.equal((await h.exited).signal, 'SIGKILL');
  const s = await openStore({ path: dir, name: 'shared', pageSize: 1024 });
  t.equal(s.size, 3001, 'everything the holder flushed is there');
  t.same(s.get(['fill', 2999]), fillValue(2999));
  t.same(s.get('last'), { n: 1 });
  await s.close();
  const o = await openStore({ path: dir, name: 'other' });
  t.equal(o.size, 500);
  t.equal(o.get(499), 'other 499');
  await o.close();
});

t.test('the lock is released when the holder exits or closes', async (t) => {
  const dir = tempDir(t);
  // exit without close
  const a = new Holder(dir, 'x');
  t.teardown(() => a.child.kill('SIGKILL'));
  t.match(await a.next(), /^locked /);
  await t.rejects(openStore({ path: dir, name: 'x' }), LOCKED('x', dir));
  a.child.stdin.write('exit\n');
  t.equal((await a.exited).code, 0);
  const s = await openStore({ path: dir, name: 'x' });
  await s.close();
  // close, then keep running: the lock is free before the process ends
  const b = new Holder(dir, 'x');
  t.teardown(() => b.child.kill('SIGKILL'));
  t.match(await b.next(), /^locked /);
  await t.rejects(openStore({ path: dir, name: 'x' }), LOCKED('x', dir));
  t.equal(await b.send('close'), 'closed');
  const s2 = await openStore({ path: dir, name: 'x' });
  await s2.close();
  // and the other way round: this process holds, the child is refused
  const mine = await openStore({ path: dir, name: 'x' });
  const c = new Holder(dir, 'x');
  t.teardown(() => c.child.kill('SIGKILL'));
  t.match(await c.next(), new RegExp(`^error TIDEPOOL_STORE_LOCKED .*'x'.*pid ${process.pid}`), 'a child opening a store this process holds is refused');
  t.equal((await c.exited).code, 2);
  await mine.close();
});

t.test('in-process double open', async (t) => {
  const dir = tempDir(t);
  const a = await openStore({ path: dir, name: 'solo', pageSize: 1024 });
  a.set('k', 1);
  await a.flush();
  await t.rejects(openStore({ path: dir, name: 'solo' }), LOCKED('solo', dir), 'second open in this process');
  await t.rejects(openStore({ path: join(dir, '.'), name: 'solo' }), { code: 'TIDEPOOL_STORE_LOCKED' }, 'another spelling of the path');
  await t.rejects(openStore({ path: dir, name: 'solo', storage: 'temp' }), { code: 'TIDEPOOL_STORE_LOCKED' }, 'temp storage under the same name');
  // the first store is untouched by the refused opens
  a.set('k2', 2);
  await a.flush();
  t.equal(a.get('k'), 1);
  const b = await openStore({ path: dir, name: 'solo2' });
  t.equal(b.size, 0, 'another name in the same directory is another store');
  await b.close();
  await a.close();
  await t.rejects(async () => a.get('k'), { code: 'TIDEPOOL_STORE_CLOSED' });
  const again = await openStore({ path: dir, name: 'solo' });
  t.equal(again.get('k'), 1, 'reopened after close');
  t.equal(again.get('k2'), 2);
  await again.close();
  await again.close(); // idempotent
});

t.test('concurrent opens in one process: exactly one wins', async (t) => {
  const dir = tempDir(t);
  mkdirSync(join(dir, 'sub'));
  const results = await Promise.allSettled([0, 1, 2].map(() => openStore({ path: join(dir, 'sub'), name: 'race' })));
  const won = results.filter((r) => r.status === 'fulfilled') as PromiseFulfilledResult<Store>[];
  const lost = results.filter((r) => r.status === 'rejected') as PromiseRejectedResult[];
  t.equal(won.length, 1, 'one open succeeds');
  for (const l of lost) t.match(l.reason, { code: 'TIDEPOOL_STORE_LOCKED' });
  for (const w of won) await w.value.close();
  const s = await openStore({ path: join(dir, 'sub'), name: 'race' });
  await s.close();
});
