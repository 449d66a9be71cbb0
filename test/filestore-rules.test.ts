// The file store's rules, stepped through on a made-up clock: when a lock is
// respected and when it is broken, what a holder paused in the middle of its
// transaction does, why a paused breaker cannot undo anything, who is proven
// dead, and what odd files, full disks and many limiters give. No test here
// sleeps for a stale lock; the whole file runs in well under a second or two.
import { describe, it, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import {
  chmodSync, chownSync, existsSync, mkdirSync, readdirSync, readFileSync, readlinkSync, renameSync, statSync, symlinkSync, truncateSync,
  writeFileSync,
} from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import {
  RateLimit, RateLimitStoreError, RateLimitTimeoutError, FileStore, encodeOwnerRecord, parseOwnerRecord, holderIsDead,
  type OwnerRecord, type RateLimitStore, type SharedClock, type Transaction,
} from '../ratelimit.ts';
import { ROOT, tempDir, warningsDuring } from './helpers.ts';

const root = process.getuid?.() === 0;
const boot = readFileSync('/proc/sys/kernel/random/boot_id', 'latin1').trim();
const ns = readlinkSync('/proc/self/ns/pid');
const startOf = (pid: number) => { const s = readFileSync(`/proc/${pid}/stat`, 'latin1'); return s.slice(s.lastIndexOf(')') + 2).split(' ')[19]!; };
const exitedPid = () => spawnSync(process.execPath, ['-e', '0']).pid!;

// A clock moved by hand. `wall` runs with it, as a real machine's would.
function testClock(startS = 1000): SharedClock & { t: number } {
  const c = { t: startS, tag: 'test', now: () => c.t, wall: () => c.t };
  return c;
}

function record(over: Partial<OwnerRecord> = {}): OwnerRecord {
  const pid = over.pid ?? process.ppid;
  return { pid, tid: pid, host: hostname(), ns, boot, start: startOf(process.ppid), tstart: '', token: 'feedfacefeedface', seq: 1, clock: 'test', time: 0, ...over };
}

// A store that runs `during(n)` inside the n-th transaction (counting from 1):
// the place where a real process would be paused.
function pausing(file: FileStore, during: (n: number) => void): RateLimitStore & { runs: number } {
  const s = {
    name: file.name,
    runs: 0,
    update: <T>(tx: Transaction<T>) => s.updateSync(tx),
    updateSync: <T>(tx: Transaction<T>) => file.updateSync<T>((state, now, ctx) => { s.runs++; const out = tx(state, now, ctx); during(s.runs); return out; }),
  };
  return s;
}

describe('file store rules (made-up clock)', () => {
  const { dir, cleanup } = tempDir();
  after(cleanup);
  let n = 0;
  const path = () => join(dir, `rules-${++n}.json`);

  it('owner records: one encoder and one parser, which rejects anything else', () => {
    const r = record({ renew: 'x.renew-1' });
    assert.deepEqual(parseOwnerRecord(encodeOwnerRecord(r)), r);
    assert.deepEqual(parseOwnerRecord(encodeOwnerRecord(r) + '   '), r, 'padding is ignored');
    for (const bad of ['', '{', 'null', '{"pid":"1"}', encodeOwnerRecord(r).slice(0, 40)]) assert.equal(parseOwnerRecord(bad), undefined, bad);
  });

  it('a live holder\'s lock is respected until it is staleAfter old by its record, then broken', async () => {
    const file = path();
    const clock = testClock(0);
    writeFileSync(`${file}.lock`, encodeOwnerRecord(record({ time: 0 })));
    const limit = new RateLimit({ maxCount: 1, per: 1, store: new FileStore(file, { staleAfter: 10, clock }) });
    assert.equal(limit.tryAcquire(), false, 'at 0 s');
    clock.t = 9.9;
    assert.equal(limit.tryAcquire(), false, 'at 9.9 s');
    clock.t = 10.1;
    const warnings = await warningsDuring(() => assert.equal(limit.tryAcquire(), true, 'at 10.1 s'));
    assert.ok(warnings.some((w) => /broke the lock .* held by pid/.test(w)), warnings.join());
  });

  it('a lock whose record cannot be read is aged from when this store first saw it', () => {
    const file = path();
    const clock = testClock(500);
    writeFileSync(`${file}.lock`, '\u0000garbage{');
    const limit = new RateLimit({ maxCount: 1, per: 1, store: new FileStore(file, { staleAfter: 10, clock }) });
    assert.equal(limit.tryAcquire(), false, 'first seen at 500 s');
    clock.t = 509.9;
    assert.equal(limit.tryAcquire(), false);
    clock.t = 510.1;
    assert.equal(limit.tryAcquire(), true);
  });

  it('a lock whose record is on a clock ahead of ours is still broken, after staleAfter of watching it', () => {
    const file = path();
    const clock = testClock(0);
    writeFileSync(`${file}.lock`, encodeOwnerRecord(record({ time: 3600 })));
    const limit = new RateLimit({ maxCount: 1, per: 1, store: new FileStore(file, { staleAfter: 10, clock }) });
    assert.equal(limit.tryAcquire(), false);
    clock.t = 10.1;
    assert.equal(limit.tryAcquire(), true);
  });

  it('a lock whose holder is proven dead is broken at once, whatever its age', () => {
    const file = path();
    writeFileSync(`${file}.lock`, encodeOwnerRecord(record({ pid: exitedPid(), start: '1', time: 1000 })));
    const limit = new RateLimit({ maxCount: 1, per: 1, store: new FileStore(file, { staleAfter: 60, clock: testClock(1000) }) });
    assert.equal(limit.tryAcquire(), true);
    assert.equal(existsSync(`${file}.lock`), false);
  });

  it('a holder paused past staleAfter/2 inside its transaction does not count on its write, and starts over', () => {
    const file = path();
    const clock = testClock(0);
    const fs = new FileStore(file, { staleAfter: 10, clock });
    // The first run "pauses" for 11 s: past its lease, and past staleAfter,
    // so the next try breaks the lock it left.
    const store = pausing(fs, (run) => { if (run === 1) clock.t += 11; });
    const limit = new RateLimit({ maxCount: 1, per: 100, store });
    assert.equal(limit.tryAcquire(), false, 'the restarted call finds the first run\'s slot taken: it errs on the safe side');
    assert.equal(store.runs, 2);
    assert.equal(fs.locksLost, 1);
    assert.equal(fs.locksBroken, 1);
    assert.equal(existsSync(`${file}.lock`), false, 'no lock left behind');
  });

  it('a holder paused while another process breaks its lock: its late write lands in a file nobody reads', () => {
    const file = path();
    const clock = testClock(0);
    const a = new FileStore(file, { staleAfter: 10, clock });
    // The other process, on the same made-up clock, 11 s later.
    const script = join(dir, 'breaker.ts');
    writeFileSync(script, `
      import { FileStore, RateLimit } from ${JSON.stringify(new URL('../ratelimit.ts', import.meta.url).pathname)};
      const clock = { tag: 'test', now: () => 11, wall: () => 11 };
      const store = new FileStore(${JSON.stringify(file)}, { staleAfter: 10, clock });
      // waitSync, not tryAcquire: a cold process may need more than tryAcquire's 10 ms for the break.
      const ok = new RateLimit({ maxCount: 2, per: 100, greedy: true, store }).waitSync({ maxWait: 5 }) === 0;
      process.stdout.write(JSON.stringify({ ok, broken: store.locksBroken }));`);
    let inodeBefore = 0;
    let other: { ok: boolean; broken: number } | undefined;
    const store = pausing(a, (run) => {
      if (run !== 1) return;
      inodeBefore = statSync(file, { throwIfNoEntry: false })?.ino ?? 0;
      clock.t = 11; // a is stopped here, holding the lock; the other process breaks it and takes a slot
      other = JSON.parse(spawnSync(process.execPath, ['--import', 'tsx', script], { encoding: 'utf8' }).stdout);
    });
    const limit = new RateLimit({ maxCount: 2, per: 100, greedy: true, store });
    assert.equal(limit.tryAcquire(), true, 'a starts over on the other\'s state: its lost run went to the old inode');
    assert.deepEqual(other, { ok: true, broken: 1 });
    assert.equal(a.locksLost, 1);
    assert.notEqual(statSync(file).ino, inodeBefore, 'the breaker moved the state to a new inode');
    assert.equal(new RateLimit({ maxCount: 2, per: 100, greedy: true, store: new FileStore(file, { clock }) }).tryAcquire(), false, 'no slot was given twice');
  });

  it('using a state file from inside its own transaction is an error, not a wait for itself', () => {
    const file = path();
    const fs = new FileStore(file, { clock: testClock() });
    const inner = new RateLimit({ maxCount: 5, per: 1, store: new FileStore(file, { clock: testClock() }) });
    const store = pausing(fs, () => { inner.tryAcquire(); });
    assert.throws(() => new RateLimit({ maxCount: 5, per: 1, store }).tryAcquire(), /from inside a transaction on the same state file/);
    assert.equal(existsSync(`${file}.lock`), false);
  });

  it('a breaker that lost its break lock can never rename its copy over the state', () => {
    const file = path();
    const clock = testClock(100);
    // A stale lock, and a breaker of it that stopped 100 s ago with its copy
    // of the state ready to rename.
    writeFileSync(`${file}.lock`, encodeOwnerRecord(record({ time: 0 })));
    const temp = `${file}.renew-0123456789abcdef`;
    writeFileSync(temp, '{"stale":"copy"}');
    writeFileSync(`${file}.lock.break`, encodeOwnerRecord(record({ time: 0, renew: temp.slice(dir.length + 1) })));
    const limit = new RateLimit({ maxCount: 1, per: 1, store: new FileStore(file, { staleAfter: 10, clock }) });
    assert.equal(limit.tryAcquire(), true, 'the stale break lock is taken away, then the stale lock is broken');
    assert.equal(existsSync(temp), false, 'the stopped breaker\'s copy was deleted with its break lock');
    assert.throws(() => renameSync(temp, file), { code: 'ENOENT' }, 'so its late rename fails');
    assert.equal(existsSync(`${file}.lock.break`), false);
    assert.equal(readdirSync(dir).filter((f) => f.includes('.gone-') || f.includes('.renew-')).length, 0, 'no litter');
  });

  it('holderIsDead: only what is proven gone', () => {
    const dead = exitedPid();
    const me = { pid: process.pid, tid: process.pid, host: hostname(), ns, boot, start: startOf(process.pid), tstart: '' };
    assert.equal(holderIsDead(me), false, 'this process');
    assert.equal(holderIsDead({ ...me, pid: dead, tid: dead }), true, 'an exited pid on this boot and namespace');
    assert.equal(holderIsDead({ ...me, start: '1' }), true, 'a reused pid (another start time)');
    assert.equal(holderIsDead({ ...me, pid: dead, tid: dead, boot: '' }), false, 'no boot id: cannot judge');
    assert.equal(holderIsDead({ ...me, pid: dead, tid: dead, boot: 'another-boot' }), false, 'a foreign boot id: cannot judge');
    assert.equal(holderIsDead({ ...me, pid: dead, tid: dead, ns: '' }), false, 'no namespace: cannot judge');
    assert.equal(holderIsDead({ ...me, host: 'another-name' }), false, 'another hostname (a UTS namespace) on this kernel: still judged by pid');
    assert.equal(holderIsDead({ ...me, pid: dead, tid: dead, host: 'another-name' }), true);
    assert.equal(holderIsDead({ ...me, tid: 2 ** 22 + 12345 }), true, 'a thread of this process that is gone');
  });

  it('odd files at the lock\'s names give an error naming them at once, never a hang', () => {
    const cases: Array<[string, (p: string) => void, RegExp]> = [
      ['.lock', (p) => mkdirSync(p), /\.lock" is a directory/],
      ['.lock', (p) => execFileSync('mkfifo', [p]), /\.lock" is a FIFO/],
      ['.lock', (p) => symlinkSync('/etc/hostname', p), /\.lock" is a symbolic link/],
    ];
    for (const [suffix, make, message] of cases) {
      const file = path();
      make(`${file}${suffix}`);
      const limit = new RateLimit({ maxCount: 1, per: 1, store: new FileStore(file, { clock: testClock() }) });
      const start = performance.now();
      assert.throws(() => limit.tryAcquire(), (e: Error) => e instanceof RateLimitStoreError && message.test(e.message) && e.message.includes(file), String(message));
      assert.ok(performance.now() - start < 1000);
    }
    // A dead holder's lock with a directory as the break lock.
    const file = path();
    writeFileSync(`${file}.lock`, encodeOwnerRecord(record({ pid: exitedPid(), start: '1' })));
    mkdirSync(`${file}.lock.break`);
    assert.throws(() => new RateLimit({ maxCount: 1, per: 1, store: new FileStore(file, { clock: testClock() }) }).tryAcquire(),
      (e: Error) => e instanceof RateLimitStoreError && /\.lock\.break" is a directory/.test(e.message));
  });

  // Sparse files cost no disk. Each case ends within 1 s with under 100 MB of
  // growth: reading the file whole would take seconds and its size in memory
  // (1.5 GB), or fail inside node:fs (3 GB).
  const bounded = (what: string, run: () => void) => {
    const rss = process.memoryUsage().rss;
    const start = performance.now();
    run();
    const ms = performance.now() - start;
    const grewMB = (process.memoryUsage().rss - rss) / 1e6;
    assert.ok(ms < 1000, `${what}: ${ms.toFixed(0)} ms`);
    assert.ok(grewMB < 100, `${what}: the process grew by ${grewMB.toFixed(0)} MB`);
  };

  it('a state file of any size ends in a grant within a second, read no further than a bound', async () => {
    const cases: Array<[string, (file: string) => void, number]> = [
      ['1.5 GB sparse', (f) => truncateSync(f, 1.5e9), 1.5e9],
      ['3 GB sparse', (f) => truncateSync(f, 3e9), 3e9],
      ['20 MB of whitespace, then {}', (f) => writeFileSync(f, `${' '.repeat(20e6)}{}`), 20e6 + 2],
    ];
    for (const [what, make, size] of cases) {
      const file = path();
      writeFileSync(file, '');
      make(file);
      const limit = new RateLimit({ maxCount: 5, per: 1, store: new FileStore(file, { clock: testClock() }) });
      const warnings = await warningsDuring(() => bounded(what, () => assert.equal(limit.tryAcquire(), true, what)));
      assert.ok(warnings.some((w) => w.includes(file) && w.includes(`${size} bytes`)), `${what}: ${warnings.join()}`);
      assert.ok(statSync(file).size < 1000, `${what}: the state written over it is small again`);
    }
  });

  it('a 1 GB lock file is broken after staleAfter, and a 1 GB owner file is left alone, each read no further than a bound', () => {
    const file = path();
    const clock = testClock(0);
    writeFileSync(`${file}.lock`, '');
    truncateSync(`${file}.lock`, 1e9);
    const limit = new RateLimit({ maxCount: 1, per: 1, store: new FileStore(file, { staleAfter: 10, clock }) });
    bounded('1 GB lock, held', () => assert.equal(limit.tryAcquire(), false, 'an unreadable record: held until staleAfter'));
    clock.t = 10.1;
    bounded('1 GB lock, stale', () => assert.equal(limit.tryAcquire(), true, 'broken after staleAfter'));

    const sub = join(dir, 'big-owner');
    mkdirSync(sub);
    const owner = join(sub, 'x.json.owner-0123456789abcdef');
    writeFileSync(owner, '');
    truncateSync(owner, 1e9);
    bounded('1 GB owner file', () => assert.equal(new RateLimit({ maxCount: 1, per: 1, file: join(sub, 'x.json') }).tryAcquire(), true));
    assert.ok(existsSync(owner), 'a file whose holder cannot be judged is left');
  });

  it('a transaction judges each holder once, however many slots name it', (t) => {
    const child = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 60_000)'], { stdio: 'ignore' });
    t.after(() => child.kill('SIGKILL'));
    const pid = child.pid!;
    const holder = JSON.stringify({ pid, tid: pid, host: hostname(), ns, boot, start: startOf(pid), tstart: '' });
    const isZombie = () => /\) Z /.test(readFileSync(`/proc/${pid}/stat`, 'latin1'));
    const store = new FileStore(path(), { clock: testClock() });
    const verdicts = store.updateSync((_state, _now, ctx) => {
      const before = ctx.isDead(holder);
      // The event loop is blocked, so nobody reaps the child: it stays a zombie, which counts as dead.
      child.kill('SIGKILL');
      for (const deadline = Date.now() + 5000; !isZombie() && Date.now() < deadline;) { /* until the kernel has killed it */ }
      assert.ok(isZombie(), 'the child is a zombie now');
      return { result: [before, ctx.isDead(holder)] };
    });
    assert.deepEqual(verdicts, [false, false], 'judged once in the transaction');
    assert.equal(store.updateSync((_state, _now, ctx) => ({ result: ctx.isDead(holder) })), true, 'and afresh in the next');
  });

  it('a state file another user owns, mode 0600: the error names its owner and mode, and what to do', { skip: !root && 'needs root to chown' }, () => {
    const { dir: sub, cleanup: done } = tempDir(); // the suite's directory is 0700: another user cannot get in
    after(done);
    chmodSync(sub, 0o777);
    const file = join(sub, 'x.json');
    writeFileSync(file, '');
    chownSync(file, 4242, 4242);
    chmodSync(file, 0o600);
    // The other user may not be able to read this checkout (CI clones into a
    // 0700 directory), so it runs ratelimit.ts bundled into the open directory,
    // as plain JavaScript, without tsx; the child is always Node.
    // The bundling runs in Node too (esbuild's API loads as CommonJS, which Deno's test runner refuses).
    const bundle = join(sub, 'ratelimit.mjs');
    const node = process.versions.bun || 'Deno' in globalThis ? 'node' : process.execPath;
    const options = { entryPoints: [join(ROOT, 'ratelimit.ts')], bundle: true, platform: 'node', format: 'esm', outfile: bundle, logLevel: 'error' };
    execFileSync(node, ['-e', `require('esbuild').buildSync(${JSON.stringify(options)})`], { cwd: ROOT });
    chmodSync(bundle, 0o644);
    const script = `import { RateLimit } from ${JSON.stringify(bundle)};
      try { new RateLimit({ maxCount: 1, per: 1, file: ${JSON.stringify(file)} }).tryAcquire(); } catch (e) { process.stdout.write(e.message); }`;
    const out = spawnSync('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', node, '--input-type=module', '-e', script],
      { encoding: 'utf8', cwd: sub });
    assert.match(out.stdout, /^ratelimit: cannot open the state file ".*x\.json": the file belongs to uid 4242 and its mode 0600 does not let uid 65534/, out.stderr);
    assert.match(out.stdout, /run as uid 4242, ask its owner to share it/);
    assert.doesNotMatch(out.stdout, /permission denied in/);
  });

  it('a FIFO among the owner files does not block the sweep', () => {
    const sub = join(dir, 'fifo-owner');
    mkdirSync(sub);
    const file = join(sub, 'x.json');
    execFileSync('mkfifo', [`${file}.owner-0123456789abcdef`]);
    const start = performance.now();
    assert.equal(new RateLimit({ maxCount: 1, per: 1, file }).tryAcquire(), true);
    assert.ok(performance.now() - start < 1000);
  });

  it('many limiters in one directory: few descriptors, and close() releases them all', () => {
    const sub = join(dir, 'many');
    mkdirSync(sub);
    const fds = () => readdirSync('/proc/self/fd').length;
    const base = fds();
    const limits = Array.from({ length: 200 }, (_, i) => new RateLimit({ maxCount: 1, per: 1, file: join(sub, `d${i}.json`) }));
    for (const l of limits) assert.equal(l.tryAcquire(), true);
    const held = fds() - base;
    assert.ok(held <= 40, `200 limiters hold ${held} descriptors`);
    for (const l of limits) l.close();
    assert.ok(fds() <= base, 'close() released every descriptor');
    assert.deepEqual(readdirSync(sub).filter((f) => f.includes('.owner-')), [], 'and every owner file name');
    const store = new FileStore(join(sub, 'disposed.json'));
    try { new RateLimit({ maxCount: 1, per: 1, store }).tryAcquire(); } finally { store[Symbol.dispose](); }
    assert.ok(fds() <= base, 'Symbol.dispose closes too');
  });

  it('a state written by a clock ahead of ours is not waited out (an hour ahead costs one slot, not an hour)', () => {
    const file = path();
    const ahead = testClock(1000);
    const ours = testClock(1000);
    ahead.now = () => ahead.t + 3600;
    const a = new RateLimit({ maxCount: 1, per: 0.05, store: new FileStore(file, { clock: ahead }) });
    const b = new RateLimit({ maxCount: 1, per: 0.05, store: new FileStore(file, { clock: ours }) });
    assert.equal(a.tryAcquire(), true);
    assert.throws(() => b.waitSync({ maxWait: 0 }), (e: RateLimitTimeoutError) => e instanceof RateLimitTimeoutError && e.wouldWait <= 0.05 + 1e-9);
  });

  it('a state from another clock is placed by wall readings that err late, whatever pauses fall between a clock\'s readings', () => {
    // The writer's clock and the reader's are unrelated; the wall clock places
    // one on the other. The reader is paused 0.2 s after every reading of its
    // clock: its wall clock runs on meanwhile, its last `now` does not.
    const file = path();
    const writer: SharedClock = { tag: 'writer', now: () => 50, wall: () => 1000 };
    let realS = 0;
    const reader: SharedClock = { tag: 'reader', now: () => { const t = 500 + realS; realS += 0.2; return t; }, wall: () => 1000 + realS };
    const a = new RateLimit({ maxCount: 1, per: 0.3, store: new FileStore(file, { clock: writer }) });
    assert.equal(a.tryAcquire(), true, 'the writer takes the slot');
    // The write was at wall 1000, which the reader's clock read as 500; the
    // next slot is 0.3 s later, at 500.3 on the reader's clock, after any
    // `now` this call reads (500.2 at most before it decides).
    const b = new RateLimit({ maxCount: 1, per: 0.3, store: new FileStore(file, { clock: reader }) });
    assert.equal(b.tryAcquire(), false, 'the reader must not take the next slot early');
  });

  it('breaking a lock keeps the state file\'s owner and mode', { skip: !root && 'needs root to chown' }, () => {
    const file = path();
    const clock = testClock(0);
    const limit = new RateLimit({ maxCount: 10, per: 1, store: new FileStore(file, { staleAfter: 10, clock }) });
    assert.equal(limit.tryAcquire(), true);
    chownSync(file, 4242, 4343);
    chmodSync(file, 0o640);
    writeFileSync(`${file}.lock`, encodeOwnerRecord(record({ time: 0 })));
    clock.t = 20;
    assert.equal(limit.tryAcquire(), true);
    const st = statSync(file);
    assert.deepEqual([st.uid, st.gid, st.mode & 0o777], [4242, 4343, 0o640]);
  });

  it('a full disk fails the call with an error naming the path and ENOSPC, and leaves the state readable', { skip: !root && 'needs root to mount a tmpfs' }, () => {
    const mnt = join(dir, 'full');
    mkdirSync(mnt);
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=64k', 'tmpfs', mnt]);
    try {
      // Full before the first call.
      spawnSync('dd', ['if=/dev/zero', `of=${join(mnt, 'fill')}`, 'bs=4k'], { stdio: 'ignore' });
      const first = join(mnt, 'first.json');
      assert.throws(() => new RateLimit({ maxCount: 1, per: 1, file: first }).tryAcquire(),
        (e: Error) => e instanceof RateLimitStoreError && /^ratelimit: /.test(e.message) && /ENOSPC/.test(e.message) && e.message.includes(mnt));
      execFileSync('rm', [join(mnt, 'fill')]);
      // A greedy state that grows until the disk is full.
      const file = join(mnt, 'grow.json');
      const clock = testClock();
      const greedy = { maxCount: 100_000, per: 3600, greedy: true };
      const limit = new RateLimit({ limits: [greedy, { ...greedy, per: 7200 }, { ...greedy, per: 10800 }], store: new FileStore(file, { clock }) });
      limit.tryAcquire();
      spawnSync('dd', ['if=/dev/zero', `of=${join(mnt, 'fill')}`, 'bs=1k'], { stdio: 'ignore' });
      let error: Error | undefined;
      for (let i = 0; i < 2000 && !error; i++) {
        clock.t += 0.001 + (i % 7) * 0.0001; // distinct times, so the state grows
        try { limit.tryAcquire(); } catch (e) { error = e as Error; }
      }
      assert.ok(error instanceof RateLimitStoreError, `expected a store error, got ${error}`);
      assert.match(error.message, /^ratelimit: .*ENOSPC/);
      assert.ok(error.message.includes(file));
      assert.doesNotThrow(() => JSON.parse(readFileSync(file, 'utf8')), 'the state left behind still parses');
      assert.equal(existsSync(`${file}.lock`), false, 'the lock was released');
    } finally {
      execFileSync('umount', ['-l', mnt]);
    }
  });
});
