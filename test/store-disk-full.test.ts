// A full disk, for real: a 4 MiB tmpfs mounted for the test (root), a store on it, and
// a filler file that takes every free byte. Each scenario runs in a child process
// (fixtures/disk-full-child) so that a native crash — SIGBUS from a memory map over
// a full device — is reported here instead of ending the test.
//
// What must hold: a flush that runs out of space rejects with one line coded
// TIDEPOOL_DISK_FULL; the previous flush stays intact (reopening after freeing space
// shows exactly it); the open store keeps its state in memory and works again once
// space is freed (a retried flush succeeds, reopening shows it). Dirty pages evicted
// between flushes that the spill file cannot take give the same error, lose nothing.
import t, { type Test } from 'tap';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { mountSmallDisk } from './helpers/small-disk.js';

const CHILD = fileURLToPath(new URL('./fixtures/disk-full-child.js', import.meta.url));

interface Outcome {
  ok: boolean;
  code?: string;
  message?: string;
}
type Report = Record<string, unknown> & { threw?: string };

function runScenario(dir: string, scenario: string): Promise<{ report: Report | undefined; code: number | null; signal: NodeJS.Signals | null; stderr: string }> {
  const child = spawn(process.execPath, [CHILD, dir, scenario], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let stderr = '';
  child.stdout!.on('data', (d: Buffer) => (out += d));
  child.stderr!.on('data', (d: Buffer) => (stderr += d));
  const timer = setTimeout(() => child.kill('SIGKILL'), 45_000); // a hang is a failure, not a stuck suite
  return new Promise((resolve) => {
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      let report: Report | undefined;
      try {
        report = JSON.parse(out.trim().split('\n').at(-1) ?? '') as Report;
      } catch {
        report = undefined;
      }
      resolve({ report, code, signal, stderr });
    });
  });
}

/** The one-line disk-full error. */
function diskFull(t: Test, o: unknown, what: string): void {
  const x = o as Outcome | undefined;
  t.match(x, { ok: false, code: 'TIDEPOOL_DISK_FULL', message: /^disk full: .*no space left/ }, `${what}: rejects with TIDEPOOL_DISK_FULL`);
  t.notOk(/\n/.test(x?.message ?? ''), `${what}: the message is one line: ${JSON.stringify(x?.message)}`);
}

async function scenario(t: Test, name: string): Promise<Report> {
  const disk = mountSmallDisk(4);
  t.teardown(() => disk.unmount());
  const r = await runScenario(disk.dir, name);
  t.equal(r.signal, null, `the child was not killed by a signal (${r.signal ?? 'none'}: a SIGBUS is a native crash on the full device, SIGKILL a hang)`);
  t.equal(r.code, 0, `the child exited 0${r.report?.threw ? `; it threw ${r.report.threw}` : ''}`);
  // LMDB itself prints "Write error: …" (mdb.c, fprintf, no newline) on ENOSPC; nothing else may appear.
  const other = r.stderr.replace(/Write error: [^\n]*? size \d+/g, '').trim();
  t.equal(other, '', 'nothing else on stderr (no stack, no second report of the failure)');
  if (!r.report) throw new Error(`no report from the child: ${r.stderr}`);
  t.comment(`filled ${r.report.filled} bytes`);
  t.same(r.report.flush1, { ok: true }, 'the first flush, with space, succeeds');
  return r.report;
}

t.test('a flush that runs out of space; close; free space; reopen at the previous flush', async (t) => {
  const r = await scenario(t, 'close-reopen');
  diskFull(t, r.flushWhileFull, 'the flush on a full disk');
  diskFull(t, r.flushAgainWhileFull, 'a second try while still full');
  t.equal(r.readsWhileFull, null, 'the open store still reads its whole in-memory state');
  diskFull(t, r.closeWhileFull, 'close (it flushes) on a full disk');
  t.equal(r.reopenedAtPrevious, null, 'after freeing space, reopening shows exactly the previous flush');
  t.same(r.flushAfterFree, { ok: true }, 'set + flush succeeds once space is freed');
  t.equal(r.reopened, null, 'and reopening shows it');
});

t.test('a flush that runs out of space is retried in the same store once space is freed', async (t) => {
  const r = await scenario(t, 'retry');
  diskFull(t, r.flushWhileFull, 'the flush on a full disk');
  diskFull(t, r.flushAgainWhileFull, 'a second try while still full');
  t.equal(r.readsWhileFull, null, 'the open store still reads its whole in-memory state');
  t.same(r.flushAfterFree, { ok: true }, 'after deleting the filler, flush succeeds');
  t.equal(r.reopened, null, 'reopening shows everything set before it');
});

t.test('the spill file runs out of space between flushes', async (t) => {
  const r = await scenario(t, 'spill');
  t.ok((r.setFailures as number) > 0, `sets that had to evict to the full spill file failed (${r.setFailures})`);
  t.same(r.setFailureCodes, ['TIDEPOOL_DISK_FULL'], 'every one of them with TIDEPOOL_DISK_FULL');
  t.match(r.setFailureExample, /^disk full: the spill file could not take an evicted page: [^\n]*$/, 'one line naming the spill file');
  t.equal(r.readsWhileFull, null, 'every key reads right while the disk is full (nothing was lost)');
  diskFull(t, r.flushWhileFull, 'a flush while still full');
  t.same(r.flushAfterFree, { ok: true }, 'after deleting the filler, flush succeeds');
  t.equal(r.reopened, null, 'reopening shows every set, including those that reported disk full');
});
