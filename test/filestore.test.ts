// The file store on real files and real processes: what it stores, how it
// treats damaged or odd files, dead and stuck holders, and several processes
// sharing one limit. Its rules on a made-up clock are in filestore-rules.test.ts.
import { describe, it, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import {
  chmodSync, existsSync, lstatSync, mkdirSync, readdirSync, readFileSync, statSync, symlinkSync, writeFileSync,
} from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { RateLimit, RateLimitError, RateLimitMismatchError, RateLimitTimeoutError, FileStore, sharedClock, encodeOwnerRecord } from '../ratelimit.ts';
import { tempDir, maxInWindow, violations, ROOT, warningsDuring } from './helpers.ts';
import { startWorker, launch, finish, slotsOf, killWorkers } from './stress/scenarios.ts';

describe('file store', () => {
  const { dir, cleanup } = tempDir();
  after(cleanup);
  let n = 0;
  const path = () => join(dir, `state-${++n}.json`);
  const lockOf = (file: string) => `${file}.lock`;

  it('fromState reads the settings back from a state, and says so with a code when there is none', async () => {
    assert.throws(() => RateLimit.fromState(join(dir, 'none.json')), (e: Error) => e instanceof RateLimitError && e.code === 'ERR_RATELIMIT_NO_STATE');
    const file = path();
    const limit = new RateLimit({ limits: [{ maxCount: 3, per: 2 }, { maxCount: 50, per: 60, unit: 'tokens', greedy: true }], maxConcurrent: 2, file });
    await (await limit.acquire()).release();
    const back = RateLimit.fromState(file);
    assert.deepEqual(back.limits, limit.limits);
    assert.equal(back.maxConcurrent, 2);
    await back.close();
    await limit.close();
  });

  it('creates the state file (mode 0600) recording the settings and the clock', () => {
    const file = path();
    const limit = new RateLimit({ maxCount: 3, per: 2, file });
    assert.equal(limit.tryAcquire(), true);
    const stored = JSON.parse(readFileSync(file, 'utf8'));
    assert.deepEqual(stored.state.limits, [{ maxCount: 3, per: 2, greedy: false, unit: 'calls' }]);
    assert.equal(stored.clock, sharedClock().tag);
    assert.equal(statSync(file).mode & 0o777, 0o600);
    assert.equal(existsSync(lockOf(file)), false, 'the lock is released');
  });

  it('shares one limit between limiters of the same file', () => {
    const file = path();
    const a = new RateLimit({ maxCount: 2, per: 60, greedy: true, file });
    const b = new RateLimit({ maxCount: 2, per: 60, greedy: true, file });
    assert.equal(a.tryAcquire(), true);
    assert.equal(b.tryAcquire(), true);
    assert.equal(a.tryAcquire(), false);
    assert.equal(b.tryAcquire(), false);
  });

  it('keeps the state small: constant in patient mode, at most maxCount grants in greedy mode', () => {
    const patient = new RateLimit({ maxCount: 1e6, per: 1, file: path() });
    for (let i = 0; i < 100; i++) patient.tryAcquire();
    assert.ok(readFileSync((patient.store as FileStore).path).length < 300);
    const greedyFile = path();
    const greedy = new RateLimit({ maxCount: 5, per: 60, greedy: true, file: greedyFile });
    for (let i = 0; i < 20; i++) greedy.tryAcquire();
    const runs: Array<[number, number]> = JSON.parse(readFileSync(greedyFile, 'utf8')).state.lanes[0].runs;
    assert.equal(runs.reduce((sum, [, n]) => sum + n, 0), 5);
  });

  it('refuses a state made for other settings, naming the file, both settings and the reset', () => {
    const file = path();
    new RateLimit({ maxCount: 2, per: 5, file }).tryAcquire();
    const other = new RateLimit({ maxCount: 3, per: 5, greedy: true, file });
    assert.throws(() => other.tryAcquire(), (e: Error) => {
      assert.ok(e.message.includes(file));
      assert.match(e.message, /maxCount=2, per=5, patient/);
      assert.match(e.message, /maxCount=3, per=5, greedy/);
      assert.match(e.message, /delete that state to reset it/);
      return true;
    });
    assert.equal(existsSync(lockOf(file)), false, 'the lock is released after the error');
  });

  it('starts afresh, with a warning, from a state file full of garbage', async () => {
    const file = path();
    writeFileSync(file, '{"maxCount": 2, "per": 1, "gre');
    const limit = new RateLimit({ maxCount: 2, per: 1, file });
    const warnings = await warningsDuring(() => assert.equal(limit.tryAcquire(), true));
    assert.ok(warnings.some((w) => /could not be parsed/.test(w)), warnings.join());
    assert.equal(JSON.parse(readFileSync(file, 'utf8')).state.limits[0].maxCount, 2);
  });

  it('recreates a deleted state file from what this process last knew, with a warning', async () => {
    const file = path();
    const limit = new RateLimit({ maxCount: 1, per: 60, file });
    assert.equal(limit.tryAcquire(), true);
    execFileSync('rm', [file]);
    const warnings = await warningsDuring(() => assert.equal(limit.tryAcquire(), false, 'the spent slot is not forgotten'));
    assert.ok(warnings.some((w) => /deleted or emptied/.test(w)), warnings.join());
    assert.ok(existsSync(file));
  });

  it('never writes through a symbolic link: the link is replaced, its target untouched', async () => {
    const file = path();
    const target = join(dir, 'precious.txt');
    writeFileSync(target, 'do not touch');
    symlinkSync(target, file);
    const limit = new RateLimit({ maxCount: 2, per: 1, file });
    const warnings = await warningsDuring(() => assert.equal(limit.tryAcquire(), true));
    assert.equal(readFileSync(target, 'utf8'), 'do not touch');
    assert.equal(lstatSync(file).isSymbolicLink(), false);
    assert.ok(warnings.some((w) => /symbolic link/.test(w)));
  });

  it('gives a clear error at the first wait for a missing directory, a directory as file, a read-only directory', async () => {
    const missing = new RateLimit({ maxCount: 1, per: 1, file: join(dir, 'no', 'such', 'dir', 'x.json') });
    await assert.rejects(missing.wait(), /ratelimit: cannot .* does not exist/);
    const asDir = join(dir, 'a-directory');
    mkdirSync(asDir);
    await assert.rejects(new RateLimit({ maxCount: 1, per: 1, file: asDir }).wait(), /is a directory or other non-regular file/);
    assert.equal(existsSync(lockOf(asDir)), false, 'the lock is released after the error');

    // Root ignores directory permissions, so as root use a read-only mount.
    const ro = join(dir, 'read-only');
    mkdirSync(ro);
    const root = process.getuid?.() === 0;
    if (root) execFileSync('mount', ['-t', 'tmpfs', '-o', 'ro,size=64k', 'tmpfs', ro]);
    else chmodSync(ro, 0o500);
    try {
      await assert.rejects(new RateLimit({ maxCount: 1, per: 1, file: join(ro, 'x.json') }).wait(),
        /ratelimit: cannot create this process's lock record \(made beside the state file\) .*(read-only|permission denied)/);
    } finally {
      if (root) execFileSync('umount', [ro]);
    }
  });

  it('breaks a lock whose holder is dead at once (a pid that has exited)', () => {
    const file = path();
    const dead = spawnSync(process.execPath, ['-e', '0']).pid!;
    writeLock(lockOf(file), dead, '1');
    const limit = new RateLimit({ maxCount: 1, per: 1, file, staleAfter: 60 });
    const start = performance.now();
    assert.equal(limit.waitSync(), 0);
    assert.ok(performance.now() - start < 100, `took ${(performance.now() - start).toFixed(1)} ms`);
  });

  it('respects a lock held by a live process, and breaks it after staleAfter', async () => {
    const file = path();
    // Our parent process is alive; a fresh record makes it a live holder.
    writeLock(lockOf(file), process.ppid, procStart(process.ppid));
    const limit = new RateLimit({ maxCount: 1, per: 1, file, staleAfter: 0.3 });
    const start = performance.now();
    const warnings = await warningsDuring(() => limit.wait());
    const took = performance.now() - start;
    assert.ok(took >= 300 && took < 1000, `took ${took.toFixed(1)} ms, expected staleAfter (300 ms) plus a little`);
    assert.ok(warnings.some((w) => /broke the lock .* held by pid/.test(w)), warnings.join());
  });

  it('an abort while the lock is busy rejects promptly, without waiting for staleAfter', async () => {
    const file = path();
    writeLock(lockOf(file), process.ppid, procStart(process.ppid));
    const limit = new RateLimit({ maxCount: 1, per: 1, file, staleAfter: 30 });
    const start = performance.now();
    await assert.rejects(limit.wait({ signal: AbortSignal.timeout(50) }), { name: 'TimeoutError' });
    const took = performance.now() - start;
    // The lock is retried every few ms (4 ms at most between tries); allow
    // timer lateness on a loaded machine on top.
    assert.ok(took >= 49 && took < 300, `took ${took.toFixed(1)} ms`);
    execFileSync('rm', [lockOf(file)]);
    assert.equal(limit.tryAcquire(), true, 'the aborted call took no slot');
  });

  it('tryAcquire and maxWait do not wait long for a lock held by a live but stuck process', async () => {
    const file = path();
    writeLock(lockOf(file), process.ppid, procStart(process.ppid));
    const limit = new RateLimit({ maxCount: 1, per: 1, file, staleAfter: 30 });
    // Each gives up after its maxWait, or 10 ms for tryAcquire; allow timer
    // lateness on a loaded machine on top.
    let start = performance.now();
    assert.equal(limit.tryAcquire(), false);
    assert.ok(performance.now() - start < 200, `tryAcquire took ${(performance.now() - start).toFixed(1)} ms`);
    start = performance.now();
    assert.throws(() => limit.waitSync({ maxWait: 0.05 }), (e: Error) => e instanceof RateLimitTimeoutError && /lock .* stayed busy/.test(e.message));
    assert.ok(performance.now() - start < 300, `waitSync took ${(performance.now() - start).toFixed(1)} ms`);
    start = performance.now();
    await assert.rejects(limit.wait({ maxWait: 0.05 }), (e: RateLimitTimeoutError) => e instanceof RateLimitTimeoutError && e.wouldWait >= 0.05);
    assert.ok(performance.now() - start < 300, `wait took ${(performance.now() - start).toFixed(1)} ms`);
    execFileSync('rm', [lockOf(file)]);
    assert.equal(limit.tryAcquire(), true, 'none of them took a slot');
  });

  for (const [what, content] of [['an empty lockfile', ''], ['a lockfile full of garbage', '\u0000garbage{']]) {
    it(`breaks ${what} after staleAfter, measured from when it was first seen`, async () => {
      const file = path();
      writeFileSync(lockOf(file), content);
      const limit = new RateLimit({ maxCount: 1, per: 1, file, staleAfter: 0.2 });
      const start = performance.now();
      const warnings = await warningsDuring(() => limit.wait());
      const took = performance.now() - start;
      assert.ok(took >= 200 && took < 900, `took ${took.toFixed(1)} ms`);
      assert.ok(warnings.some((w) => /unreadable/.test(w)), warnings.join());
    });
  }

  it('breaks the lock of a holder killed with SIGKILL while holding it, within 100 ms', async (t) => {
    const file = path();
    // The child takes the lock through the library and blocks inside the
    // read-modify-write, then says so; we kill it there.
    const script = join(dir, 'holder.ts');
    writeFileSync(script, `
      import { FileStore } from ${JSON.stringify(`${ROOT}ratelimit.ts`)};
      new FileStore(${JSON.stringify(file)}).updateSync(() => {
        process.stdout.write('holding\\n');
        Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 60000);
        return { result: 0 };
      });`);
    const child = spawn(process.execPath, ['--import', 'tsx', script], { stdio: ['ignore', 'pipe', 'inherit'] });
    t.after(() => child.kill('SIGKILL')); // also if an assertion fails first
    await new Promise<void>((resolve) => child.stdout.on('data', (d) => { if (String(d).includes('holding')) resolve(); }));
    assert.ok(existsSync(lockOf(file)), 'the child holds the lock');
    child.kill('SIGKILL');
    const limit = new RateLimit({ maxCount: 1, per: 1, file, staleAfter: 60 });
    const start = performance.now();
    await limit.wait();
    const took = performance.now() - start;
    assert.ok(took < 100, `the waiter was stalled ${took.toFixed(1)} ms`);
    const litter = readdirSync(dir).filter((f) => f.startsWith(`state-${n}.json.owner-`));
    assert.equal(litter.length, 1, `only our own owner file is left: ${litter}`);
  });

  it('a state written by a newer version is an error, and the file is left as it is', async () => {
    const file = path();
    const text = JSON.stringify({ clock: sharedClock().tag, written: sharedClock().now(), wall: Date.now() / 1000, state: { v: 99, what: 'a newer format' } });
    writeFileSync(file, text);
    const limit = new RateLimit({ maxCount: 1, per: 10, file });
    await assert.rejects(limit.wait(), (e: Error) => e instanceof RateLimitMismatchError && /newer ratelimit \(state version 99/.test(e.message));
    assert.throws(() => limit.waitSync(), RateLimitMismatchError);
    assert.equal(readFileSync(file, 'utf8'), text, 'the newer state was not overwritten');
    limit.close();
  });

  it('carries times over a reboot (another boot id) by the wall clock, capped at per', () => {
    const file = path();
    const now = sharedClock().now();
    // Written "5 s ago" on another boot's clock, with the next slot 1000 s after that write.
    writeFileSync(file, JSON.stringify({ clock: 'boot:another-boot', written: 50_000, wall: Date.now() / 1000 - 5, state: { v: 2, limits: [{ maxCount: 1, per: 10, greedy: false, unit: 'calls' }], lanes: [{ next: 50_000 + 1000 }] } }));
    const limit = new RateLimit({ maxCount: 1, per: 10, file });
    assert.throws(() => limit.waitSync({ maxWait: 9.9 }), (e: RateLimitTimeoutError) => e.wouldWait > 9.9 && e.wouldWait <= 10 + (sharedClock().now() - now));
  });
});

describe('across processes', () => {
  const { dir, cleanup } = tempDir();
  after(cleanup);
  after(killWorkers);

  // Each child (test/stress/worker.ts) reports, per grant, the slot the
  // limiter reserved (exact, on the shared clock, read inside the
  // transaction) and when wait() returned. The invariant is checked on the
  // reserved slots with no tolerance but float rounding; the observed times
  // are checked never to come before their slot (1 µs allowed for float
  // rounding), and their lateness is reported, not asserted, since it
  // measures the machine's load rather than the limiter.
  async function run(limit: { maxCount: number; per: number; greedy: boolean }, processes: number, seconds: number) {
    const file = join(dir, `${limit.greedy ? 'greedy' : 'patient'}.json`);
    const workers = Array.from({ length: processes }, (_, i) => startWorker({ ...limit, file, id: `p${i}` }));
    const { startAt, until } = await launch(workers, seconds);
    assert.deepEqual(await finish(workers, until), [], 'no worker hung');
    const inRun = (t: number) => t >= startAt && t < until;
    const slots = slotsOf(workers).filter(inRun);
    const grants = workers.flatMap((w) => w.events.filter((e) => e.g !== undefined && inRun(e.g)));
    const late = grants.map((e) => (e.t! - e.g!) * 1000).sort((x, y) => x - y);
    return { slots, late, ids: new Set(grants.map((e) => e.id)) };
  }
  const lateness = (late: number[]) =>
    `lateness after the slot: p50 ${late[late.length >> 1].toFixed(2)} ms, p99 ${late[Math.floor(late.length * 0.99)].toFixed(2)} ms, max ${late.at(-1)!.toFixed(2)} ms`;

  it('patient: 4 processes share one limit, evenly spaced, at ≥ 95% of the allowed rate', async (t) => {
    const limit = { maxCount: 50, per: 1, greedy: false }; // 20 ms apart
    const { slots, late, ids } = await run(limit, 4, 2);
    assert.equal(violations(slots, limit), 0, 'no two slots closer than per/maxCount');
    assert.ok(late[0] >= -0.001, `a grant came ${-late[0]} ms before its slot`);
    const rate = (slots.length - 1) / (slots.at(-1)! - slots[0]);
    assert.ok(rate >= 0.95 * 50 && rate <= 50 * (1 + 1e-9), `rate ${rate.toFixed(2)}/s`);
    assert.equal(ids.size, 4, 'every process got grants');
    t.diagnostic(`${slots.length} grants, ${rate.toFixed(2)}/s of 50/s; ${lateness(late)}`);
  });

  it('greedy: 4 processes never exceed maxCount in any window of per, at ≥ 95% of the allowed rate', async (t) => {
    const limit = { maxCount: 10, per: 0.5, greedy: true };
    const { slots, late, ids } = await run(limit, 4, 2);
    assert.equal(violations(slots, limit), 0, `a window held ${maxInWindow(slots, 0.5, 1e-9)}`);
    assert.ok(late[0] >= -0.001, `a grant came ${-late[0]} ms before its slot`);
    // 2 s of a 10 per 0.5 s limit allows 40 grants: bursts at 0, 0.5, 1 and 1.5 s.
    assert.ok(slots.length >= 0.95 * 40 && slots.length <= 40, `${slots.length} grants`);
    assert.equal(ids.size, 4, 'every process got grants');
    t.diagnostic(`${slots.length} grants of 40 allowed; ${lateness(late)}`);
  });
});

// Writes a lock file with an owner record as the library writes it: process
// `pid` (started at `start`, /proc's clock ticks) on this host and boot, now.
function writeLock(path: string, pid: number, start: string): void {
  writeFileSync(path, encodeOwnerRecord({
    pid, tid: pid, host: hostname(), ns: readLink('/proc/self/ns/pid'), boot: readFileSync('/proc/sys/kernel/random/boot_id', 'latin1').trim(),
    start, tstart: '', token: `test${pid}`, seq: 1, clock: sharedClock().tag, time: sharedClock().now(),
  }));
}

function readLink(path: string): string {
  return execFileSync('readlink', [path], { encoding: 'utf8' }).trim();
}

function procStart(pid: number): string {
  const stat = readFileSync(`/proc/${pid}/stat`, 'latin1');
  return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19];
}
