// The Redis store (examples/redis-store.ts) against a real redis-server that
// this file starts on 127.0.0.1, on a free port, and stops afterwards.
// It needs redis-server and faketime (Debian packages redis-server and
// faketime; .ci/run installs them). Without redis-server every test here is
// reported as skipped; without faketime, the two about a skewed client clock
// are. The reason printed says which package to install. Run: npm test, or alone:
//   node --import tsx --test test/redis.test.ts
//
// Grant times are recorded by each child on sharedClock() from ratelimit.ts:
// on Linux that is CLOCK_MONOTONIC, one clock for every process on this
// machine, read right after wait() resolves with no round trip in between.
// Recording Redis TIME instead would add a round trip's jitter to every
// sample. The child whose wall clock is faked runs with
// FAKETIME_DONT_FAKE_MONOTONIC=1, so its recordings are on the same clock,
// while its Date.now() (checked below) is an hour ahead.

import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { createServer, connect } from 'node:net';
import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';
import { createClient } from 'redis';
import { RateLimit, RateLimitTimeoutError, sharedClock, type LimitState, type RateLimitStore, type Transaction } from '../ratelimit.ts';
import { RedisStore, RedisStoreError } from '../examples/redis-store.ts';
import { brokenLimits, skipUnlessInstalled } from './helpers.ts';

// A valid state used as a counter: its one lane's `next` counts the updates.
// (The count is kept as a slot's id, whose lease runs far ahead, so the key does not expire.)
const counterState = (n: number): LimitState => ({ v: 3, limits: [{ maxCount: 1, per: 60, greedy: false, unit: 'calls' }], lanes: [{}], slots: [{ id: String(n), holder: 'counter', until: 1e11 }] });
const countOf = (state: LimitState | undefined): number => Number(state?.slots?.[0]?.id ?? 0);

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const childScript = join(root, 'test', 'redis', 'child.ts');
const unreachableScript = join(root, 'test', 'redis', 'unreachable.ts');
const clock = sharedClock();
const noRedis = skipUnlessInstalled('redis-server', ['--version']);
const noFaketime = skipUnlessInstalled('faketime', ['-f', '+1h', 'true']);

// Every process this file starts, so that each is killed whatever happens.
const running = new Set<ChildProcess>();
function kill(proc: ChildProcess, signal: NodeJS.Signals = 'SIGKILL'): void {
  if (proc.exitCode !== null || proc.signalCode !== null) return;
  // Children run in their own process group, so faketime's child dies too.
  try { process.kill(-proc.pid!, signal); } catch { try { proc.kill(signal); } catch { /* gone */ } }
}
process.on('exit', () => { for (const p of running) kill(p); });
// Children started by the pool exit when their stdin closes, but redis-server
// would outlive an interrupted run.
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => { for (const p of running) kill(p); process.exit(130); });
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

function start(command: string, args: string[], env: NodeJS.ProcessEnv = process.env): ChildProcess {
  const proc = spawn(command, args, { cwd: root, env, detached: true, stdio: ['pipe', 'pipe', 'pipe'] });
  running.add(proc);
  proc.on('exit', () => running.delete(proc));
  return proc;
}

function missing(command: string, pkg: string): Error {
  return new Error(`${command} is not installed; the Redis tests need it. Install the Debian package ${pkg} ` +
    `(apt-get install ${pkg}; .ci/run does this).`);
}

// Answers true once the server at `port` replies +PONG to PING.
function ping(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1');
    let reply = '';
    const done = (ok: boolean) => { socket.destroy(); resolve(ok); };
    socket.setTimeout(500, () => done(false));
    socket.on('error', () => done(false));
    socket.on('connect', () => socket.write('PING\r\n'));
    socket.on('data', (d) => { reply += d; if (reply.includes('\r\n')) done(reply.startsWith('+PONG')); });
  });
}

async function startRedis(port: number): Promise<ChildProcess> {
  const proc = start('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no']);
  let output = '';
  proc.stdout!.on('data', (d) => { output += d; });
  proc.stderr!.on('data', (d) => { output += d; });
  const failed = new Promise<never>((_, reject) => {
    proc.on('error', (e) => reject((e as NodeJS.ErrnoException).code === 'ENOENT' ? missing('redis-server', 'redis-server') : e));
    proc.on('exit', (code) => reject(new Error(`redis-server exited (code ${code}) before answering:\n${output}`)));
  });
  failed.catch(() => undefined);
  const deadline = performance.now() + 10_000;
  while (!(await Promise.race([ping(port), failed]))) {
    if (performance.now() > deadline) { kill(proc); throw new Error(`redis-server on port ${port} did not answer PING within 10 s:\n${output}`); }
    await sleep(50);
  }
  return proc;
}

function stop(proc: ChildProcess): Promise<void> {
  if (proc.exitCode !== null || proc.signalCode !== null) return Promise.resolve();
  const exited = new Promise<void>((resolve) => proc.once('exit', () => resolve()));
  kill(proc, 'SIGKILL');
  return exited;
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

// The promise's value, or undefined if it takes longer than `ms`.
async function within<T>(promise: Promise<T>, ms: number): Promise<T | undefined> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    return await Promise.race([promise, new Promise<undefined>((resolve) => { timer = setTimeout(() => resolve(undefined), ms); })]);
  } finally {
    clearTimeout(timer);
  }
}

let redis: ChildProcess;
let url: string;
let admin: ReturnType<typeof createClient>;

before(async () => {
  if (noRedis) return;
  const port = await freePort();
  redis = await startRedis(port);
  url = `redis://127.0.0.1:${port}`;
  admin = createClient({ url });
  admin.on('error', () => undefined);
  await admin.connect();
});

after(async () => {
  await admin?.close().catch(() => undefined);
  for (const p of running) kill(p);
  if (redis) await stop(redis);
});

// A child process spoken to in lines: JSON lines in on stdin, out on stdout.
class Child {
  readonly proc: ChildProcess;
  readonly exited: Promise<{ code: number | null; signal: string | null }>;
  private out = '';
  private err = '';
  private waiting?: { resolve: (line: string) => void; reject: (e: Error) => void };

  constructor(command: string, args: string[], env: NodeJS.ProcessEnv, pkg: string) {
    this.proc = start(command, args, env);
    this.proc.stdout!.on('data', (d) => { this.out += d; this.deliver(); });
    this.proc.stderr!.on('data', (d) => { this.err += d; });
    this.exited = new Promise((resolve, reject) => {
      this.proc.on('error', (e) => reject((e as NodeJS.ErrnoException).code === 'ENOENT' ? missing(command, pkg) : e));
      this.proc.on('exit', (code, signal) => {
        this.waiting?.reject(new Error(`child ${this.proc.pid} exited (${code ?? signal}) without answering:\n${this.err}`));
        resolve({ code, signal });
      });
    });
    this.exited.catch((e) => this.waiting?.reject(e));
  }

  /** Sends a command, and resolves to the child's answer, which must carry no error. */
  async ask<T>(command: object): Promise<T> {
    this.send(command);
    const reply = await this.next<T & { error?: string }>(15_000);
    assert.equal(reply.error, undefined, `${JSON.stringify(command)} failed`);
    return reply;
  }

  /** The next line the child prints, parsed; rejects if it exits first or takes longer than `ms`. */
  next<T>(ms: number): Promise<T> {
    return new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => { kill(this.proc); reject(new Error(`child ${this.proc.pid} said nothing for ${ms} ms:\n${this.err}`)); }, ms);
      this.waiting = {
        resolve: (line) => { clearTimeout(timer); resolve(line); },
        reject: (e) => { clearTimeout(timer); reject(e); },
      };
      this.deliver();
      if (this.proc.exitCode !== null || this.proc.signalCode !== null) this.waiting?.reject(new Error(`child already exited:\n${this.err}`));
    }).then((line) => JSON.parse(line) as T);
  }

  send(value: unknown): void { this.proc.stdin!.write(JSON.stringify(value) + '\n'); }
  end(): void { this.proc.stdin!.end(); }

  private deliver(): void {
    const nl = this.out.indexOf('\n');
    if (nl < 0 || !this.waiting) return;
    const line = this.out.slice(0, nl);
    this.out = this.out.slice(nl + 1);
    const { resolve } = this.waiting;
    this.waiting = undefined;
    resolve(line);
  }
}

interface ChildReport { grants: number[]; slots: number[]; conflicts: number }
interface Grant { slot: number; went: number; child: number }
interface Run { grants: Grant[]; reports: ChildReport[]; seconds: number; startAt: number; wallMinusBoot: number }

let keyCounter = 0;
// Runs `children` (a few of the pool) sharing one new limit through Redis for
// `seconds` seconds, from a common start time 0.5 s ahead.
async function share(children: Child[], opts: { maxCount: number; per: number; greedy: boolean; seconds: number }): Promise<Run> {
  const key = `share:${process.pid}:${++keyCounter}`;
  const startAt = clock.now() + 0.5;
  for (const c of children) c.send({ key, ...opts, startAt, until: startAt + opts.seconds });
  const reports = await Promise.all(children.map((c) => c.next<ChildReport>((opts.seconds + 10) * 1000)));
  const grants = reports.flatMap((r, child) => r.grants.map((went, i) => ({ went, slot: r.slots[i], child })));
  return { grants, reports, seconds: opts.seconds, startAt, wallMinusBoot: Date.now() / 1000 - clock.now() };
}

// Three checks of the merged grants of all children:
// - The slots Redis handed out, on the server's clock, must keep the limit
//   exactly (1 µs allows for float rounding of epoch seconds). A lost update
//   or a client on its own clock breaks this.
// - No call may go before its slot. The server's clock is this machine's
//   wall clock, converted to the boot clock with an offset read to within a
//   millisecond (Date.now() has ms resolution), hence 2 ms.
// - The times the calls really went, on the boot clock, must keep the limit
//   within a tolerance. They are late by the time from the server's reply to
//   the child's timer firing and reading the clock: about 2 ms at the median
//   here, but on this shared 2-core machine (load average 10 to 20 while
//   measuring) a child now and then stalls, which shortens the gap after it;
//   the worst stall seen in about 30 runs was 180 ms. A slot given twice, or
//   a window holding one call too many, shows up as calls a few ms apart. So
//   the slots are long (250 ms patient, a 1 s greedy window) and the
//   tolerances sit between the two: a patient gap must be at least 50 ms,
//   and maxCount+1 greedy calls must span at least half a window.
const EXACT = 1e-6;
const PATIENT_TOLERANCE = 0.2; // of a 250 ms slot
const GREEDY_TOLERANCE = 0.5;  // of a 1 s window
const EARLY_TOLERANCE = 0.002;

type Diag = { diagnostic(m: string): void };

// Pairs of grants `n` apart in `sorted` that are closer than `min` seconds.
function tooClose(sorted: Grant[], key: 'slot' | 'went', n: number, min: number, startAt: number, base: number): string[] {
  const found: string[] = [];
  for (let i = 0; i + n < sorted.length; i++) {
    const span = sorted[i + n][key] - sorted[i][key];
    if (span < min) {
      found.push(`grants ${i}..${i + n} (children ${sorted.slice(i, i + n + 1).map((g) => g.child).join(',')}) ` +
        `${(span * 1000).toFixed(2)} ms apart from +${(sorted[i][key] - base).toFixed(3)} s`);
    }
  }
  return found;
}

function smallest(sorted: Grant[], key: 'slot' | 'went', n: number): number {
  let min = Infinity;
  for (let i = 0; i + n < sorted.length; i++) min = Math.min(min, sorted[i + n][key] - sorted[i][key]);
  return min;
}

function checkRun(t: Diag, run: Run, maxCount: number, per: number, greedy: boolean): void {
  const { grants } = run;
  assert.ok(grants.length > 0, 'no child got any grant');
  assert.ok(grants.every((g) => typeof g.slot === 'number'), 'a child did not report its slots');
  // Patient: neighbours at least per/maxCount apart. Greedy: any maxCount+1
  // grants span at least per (else one window of per holds maxCount+1).
  const [n, min, tol] = greedy ? [maxCount, per, GREEDY_TOLERANCE] : [1, per / maxCount, PATIENT_TOLERANCE];
  const bySlot = [...grants].sort((a, b) => a.slot - b.slot);
  const byWent = [...grants].sort((a, b) => a.went - b.went);
  const firstSlot = bySlot[0]?.slot ?? 0;
  const late = grants.map((g) => g.went - (g.slot - run.wallMinusBoot)).sort((a, b) => a - b);
  const ms = (x: number) => (x * 1000).toFixed(1);
  t.diagnostic(`${greedy ? 'greedy' : 'patient'}: ${grants.length} grants; smallest span of ${n + 1}: slots ${ms(smallest(bySlot, 'slot', n))} ms, ` +
    `recorded ${ms(smallest(byWent, 'went', n))} ms (limit ${ms(min)} ms); lateness p50 ${ms(late[late.length >> 1])} ms, ` +
    `max ${ms(late[late.length - 1])} ms, min ${ms(late[0])} ms; conflicts per child ${run.reports.map((r) => r.conflicts).join('/')}`);
  assert.deepEqual(tooClose(bySlot, 'slot', n, min - EXACT, run.startAt, firstSlot), [], 'Redis handed out slots that break the limit');
  assert.deepEqual(tooClose(byWent, 'went', n, min - tol, run.startAt, run.startAt), [],
    `calls went closer than the limit minus ${ms(tol)} ms`);
  assert.ok(late[0] > -EARLY_TOLERANCE, `a call went ${ms(-late[0])} ms before its slot`);
  // Saturating children must together use at least 95% of what the limit
  // allows over the run, maxCount per `per` seconds.
  const allowed = (run.seconds * maxCount) / per;
  t.diagnostic(`${grants.length} grants in ${run.seconds} s: ${((100 * grants.length) / allowed).toFixed(1)}% of maxCount/per; ` +
    `first at +${ms(byWent[0].went - run.startAt)} ms`);
  assert.ok(grants.length >= 0.95 * allowed, `only ${grants.length} grants, under 95% of the ${allowed} allowed`);
}

// Four child processes, started once for these tests (starting several
// takes 2 to 3 s on these 2 cores): the first runs under faketime with its
// wall clock an hour ahead, and joins only the runs about clocks.
describe('processes sharing one limit through Redis', { skip: noRedis }, () => {
  let pool: Child[] = [];
  let clocks: { wall: number; boot: number }[] = [];

  before(async () => {
    // Without faketime the first child runs unfaked, and the tests about
    // clocks are skipped.
    pool = Array.from({ length: 4 }, (_, i) => i === 0 && !noFaketime
      ? new Child('faketime', ['-f', '+1h', process.execPath, '--import', 'tsx', childScript, url],
        { ...process.env, FAKETIME_DONT_FAKE_MONOTONIC: '1' }, 'faketime')
      : new Child(process.execPath, ['--import', 'tsx', childScript, url], process.env, 'nodejs'));
    clocks = await Promise.all(pool.map((c) => c.next<{ wall: number; boot: number }>(30_000)));
  });

  after(async () => {
    for (const c of pool) c.end();
    await within(Promise.all(pool.map((c) => c.exited.catch(() => undefined))), 5000);
    for (const c of pool) kill(c.proc);
  });

  test('three processes keep a patient limit', async (t) => {
    checkRun(t, await share(pool.slice(1), { maxCount: 4, per: 1, greedy: false, seconds: 2 }), 4, 1, false);
  });

  test('three processes keep a greedy limit', async (t) => {
    checkRun(t, await share(pool.slice(1), { maxCount: 10, per: 1, greedy: true, seconds: 2 }), 10, 1, true);
  });

  // If the store used each client's own clock, the faked child would put the
  // next slot an hour ahead (stalling everyone) or see every grant as long
  // past (letting a burst through). The server's TIME keeps them on one clock.
  for (const greedy of [false, true]) {
    test(`a client whose wall clock is an hour ahead keeps the ${greedy ? 'greedy' : 'patient'} limit`, { skip: noFaketime }, async (t) => {
      // Each child read Date.now() and the boot clock together; the difference
      // tells its wall clock apart from this process's.
      const here = Date.now() / 1000 - clock.now();
      const [skew, ...others] = clocks.map((c) => c.wall - c.boot - here);
      t.diagnostic(`child wall clocks vs this process: ${[skew, ...others].map((x) => x.toFixed(1)).join(', ')} s`);
      assert.ok(Math.abs(skew - 3600) < 5, `faketime did not move the child's wall clock an hour ahead (it is ${skew.toFixed(1)} s off)`);
      assert.ok(others.every((x) => Math.abs(x) < 5), 'the other children\'s wall clocks should agree with this one');
      const maxCount = greedy ? 10 : 4;
      const run = await share(pool.slice(0, 3), { maxCount, per: 1, greedy, seconds: 2 });
      t.diagnostic(`the child an hour ahead got ${run.reports[0].grants.length} of ${run.grants.length} grants`);
      assert.ok(run.reports[0].grants.length > 0, 'the child with the skewed clock got no grant at all');
      checkRun(t, run, maxCount, 1, greedy);
    });
  }
});

test('many clients updating one key lose no update', { skip: noRedis }, async (t) => {
  const key = `counter:${process.pid}`;
  const clients = 16;
  const each = 30;
  // The transaction is JavaScript run here; Redis only sees a read, then a
  // compare-and-set. Each update adds one to a count and returns the count it
  // saw, so a lost update shows as a value seen twice and a final count short.
  // Half the clients update one at a time (every update a separate
  // compare-and-set, contending with the others); the other half start all
  // their updates at once, which the store runs in batches.
  const increment = (state: LimitState | undefined) => {
    const n = countOf(state);
    return { state: counterState(n + 1), result: n };
  };
  const stores = Array.from({ length: clients }, () => new RedisStore({ url, key }));
  try {
    const seen = (await Promise.all(stores.map(async (s, i) => {
      if (i % 2) return Promise.all(Array.from({ length: each }, () => s.update(increment)));
      const got: number[] = [];
      for (let j = 0; j < each; j++) got.push(await s.update(increment));
      return got;
    }))).flat().sort((a, b) => a - b);
    const conflicts = stores.reduce((sum, s) => sum + s.conflicts, 0);
    t.diagnostic(`${clients} connections x ${each} updates: ${conflicts} compare-and-set conflicts retried`);
    assert.ok(conflicts > 0, 'the clients never collided, so this test proved nothing');
    assert.deepEqual(seen, Array.from({ length: clients * each }, (_, i) => i));
    assert.equal(Number(JSON.parse((await admin.get(key))!).state.slots[0].id), clients * each);
  } finally {
    await Promise.all(stores.map((s) => s.close()));
  }
});

test('after maxAttempts conflicts an update fails clearly, and applies nothing', { skip: noRedis }, async () => {
  const key = `conflict:${process.pid}`;
  const stores = Array.from({ length: 8 }, () => new RedisStore({ url, key, maxAttempts: 1 }));
  try {
    const outcomes = await Promise.all(stores.flatMap((s) => Array.from({ length: 10 }, () =>
      s.update((state) => ({ state: counterState((countOf(state)) + 1), result: 'ok' }))
        .catch((e: unknown) => e))));
    const failures = outcomes.filter((o) => o !== 'ok') as RedisStoreError[];
    assert.ok(failures.length > 0, 'no update conflicted, so the limit on attempts was never tested');
    for (const f of failures) {
      assert.ok(f instanceof RedisStoreError, `unexpected ${f}`);
      assert.equal(f.reason, 'conflict');
      assert.match(f.message, /changed by other clients during each of 1 attempts/);
    }
    assert.equal(Number(JSON.parse((await admin.get(key))!).state.slots[0].id), outcomes.length - failures.length);
  } finally {
    await Promise.all(stores.map((s) => s.close()));
  }
});

test('the key expires when idle, and a state written "in the future" is shifted back', { skip: noRedis }, async () => {
  const store = new RedisStore({ url, key: `expiry:${process.pid}` });
  try {
    const limit = new RateLimit({ maxCount: 1, per: 0.2, store });
    await limit.wait();
    // Patient: next = now + 0.2, and a window to spare, so the key lives 0.4 s.
    const ttl = await admin.pTTL(store.key);
    // (The store rounds the time to live up to whole ms.)
    assert.ok(ttl > 200 && ttl <= 401, `PTTL ${ttl} ms, expected 0.4 s after the write`);
    await sleep(ttl + 50);
    assert.equal(await admin.exists(store.key), 0, 'the key outlived its time to live');

    // The server clock stepped back an hour after a write: the stored times
    // are an hour "ahead". Without the shift the next slot would be an hour away.
    const [sec, usec] = await admin.time() as unknown as [string, string];
    const written = Number(sec) + Number(usec) / 1e6 + 3600;
    const ahead = { v: 2, limits: [{ maxCount: 1, per: 1, greedy: false, unit: 'calls' }], lanes: [{ next: written + 0.3 }] };
    await admin.set(store.key, JSON.stringify({ written, state: ahead }));
    const stepped = new RateLimit({ maxCount: 1, per: 1, store });
    const waited = await stepped.wait({ maxWait: 1 });
    assert.ok(waited > 0.25 && waited <= 0.31, `waited ${waited} s; expected the 0.3 s left before the step`);
  } finally {
    await store.close();
  }
});

test('waitSync and tryAcquire say they need updateSync; wait({ maxWait: 0 }) tries without waiting', { skip: noRedis }, async () => {
  const store = new RedisStore({ url, key: `sync:${process.pid}` });
  try {
    const limit = new RateLimit({ maxCount: 1, per: 10, store });
    assert.throws(() => limit.tryAcquire(), { name: 'TypeError', message: /tryAcquire needs a store with updateSync.*Redis key/ });
    assert.throws(() => limit.waitSync(), { name: 'TypeError', message: /waitSync needs a store with updateSync/ });
    assert.equal(await limit.wait({ maxWait: 0 }), 0);
    await assert.rejects(limit.wait({ maxWait: 0 }), RateLimitTimeoutError);
  } finally {
    await store.close();
  }
});

test('with no Redis listening, a caller gets a clear error at once and its process still exits', async (t) => {
  const port = await freePort(); // nothing listens here
  const started = performance.now();
  const child = new Child(process.execPath, ['--import', 'tsx', unreachableScript, `redis://127.0.0.1:${port}`], process.env, 'nodejs');
  const report = await child.next<{ ok: boolean; name: string; message: string; reason: string; ms: number }>(15_000);
  // It must now exit by itself: nothing may keep retrying in the background.
  const exit = await within(child.exited, 10_000);
  assert.deepEqual(exit, { code: 0, signal: null }, 'the process did not exit by itself within 10 s of the error');
  t.diagnostic(`error after ${report.ms.toFixed(0)} ms, process done after ${(performance.now() - started).toFixed(0)} ms: ${report.message}`);
  assert.equal(report.ok, false);
  assert.equal(report.name, 'RedisStoreError');
  assert.equal(report.reason, 'unreachable');
  assert.match(report.message, new RegExp(`cannot connect to Redis at redis://127\\.0\\.0\\.1:${port}.*ECONNREFUSED`));
  assert.ok(report.ms < 1000, `took ${report.ms} ms to fail`);
});

test('a server that stops answering, dies, and comes back', { skip: noRedis }, async (t) => {
  const port = await freePort();
  let server = await startRedis(port);
  const store = new RedisStore({ url: `redis://127.0.0.1:${port}`, key: 'flaky', timeout: 0.5 });
  const limit = new RateLimit({ maxCount: 1000, per: 1, store });
  const timed = async () => {
    const started = performance.now();
    try { await limit.wait(); return { ms: performance.now() - started }; } catch (error) { return { ms: performance.now() - started, error: error as RedisStoreError }; }
  };
  try {
    assert.equal((await timed()).error, undefined);

    // A stopped server still accepts connections (the kernel does that) but
    // answers nothing: first on the open connection, then on a new one.
    kill(server, 'SIGSTOP');
    for (const expected of [/did not answer within 500 ms/, /did not complete the connection within 500 ms/]) {
      const stalled = await timed();
      t.diagnostic(`stopped server: ${stalled.error?.message} after ${stalled.ms.toFixed(0)} ms`);
      assert.equal(stalled.error?.reason, 'timeout');
      assert.match(stalled.error!.message, expected);
      // Timers fire up to ~1 ms early; a loaded machine makes them late.
      assert.ok(stalled.ms >= 490 && stalled.ms < 1500, `failed after ${stalled.ms} ms; the timeout is 500 ms`);
    }

    kill(server, 'SIGCONT');
    assert.equal((await timed()).error, undefined, 'no recovery once the server answered again');

    // The first call after the server died may find the old connection
    // still open and lose it mid-call; the next one cannot connect.
    await stop(server);
    for (const expected of [/(lost the connection to|cannot connect to) Redis at/, /cannot connect to Redis at .*ECONNREFUSED/]) {
      const dead = await timed();
      t.diagnostic(`dead server: ${dead.error?.message} after ${dead.ms.toFixed(0)} ms`);
      assert.equal(dead.error?.reason, 'unreachable');
      assert.match(dead.error!.message, expected);
      assert.ok(dead.ms < 500, `failed after ${dead.ms} ms`);
    }

    server = await startRedis(port);
    assert.equal((await timed()).error, undefined, 'no recovery after the server restarted');
  } finally {
    kill(server, 'SIGCONT');
    await store.close();
    await stop(server);
  }
});

// ---------------------------------------------------------------------------
// Several limits, pause, status and concurrency slots through the Redis store.
// Slots and times are read inside the store's transaction (the attempt that
// was written), so they are exact server times, checked to EXACT (float
// rounding of epoch seconds). Slots across processes are leases: the store's
// holder is a random id and no holder is ever proven dead, so a killed
// holder's slot comes back when its lease runs out.

interface Noted { now: number; wrote: boolean; at?: number; cost?: number[]; paused?: number; slots?: { id: string; until: number }[] }
// A RedisStore as RateLimit sees it, noting each transaction it wrote or read.
function noting(redis: RedisStore): { store: RateLimitStore; noted: Noted[] } {
  const noted: Noted[] = [];
  const store: RateLimitStore = {
    name: redis.name,
    update<T>(tx: Transaction<T>): Promise<T> {
      let last: Noted | undefined;
      return redis.update<T>((state, now, ctx) => {
        const out = tx(state, now, ctx);
        // A concurrency slot's transaction returns one result per waiter in
        // this process; these tests have one call in flight at a time.
        const result = Array.isArray(out.result) ? (out.result as unknown[]).find((x) => typeof x === 'object') : out.result;
        const r = result as { at?: unknown; cost?: number[] } | undefined;
        const after = out.state ?? state;
        last = {
          now, wrote: out.state !== undefined,
          ...(typeof r === 'object' && r !== null && typeof r.at === 'number' ? { at: r.at, cost: r.cost } : {}),
          ...(after?.pausedUntil !== undefined ? { paused: after.pausedUntil } : {}),
          ...(after?.slots ? { slots: after.slots.map((h) => ({ id: h.id, until: h.until })) } : {}),
        };
        return out;
      }).then((result) => { if (last) noted.push(last); return result; });
    },
  };
  return { store, noted };
}
// The last element that passes `test` (Array.prototype.findLast is ES2023; this project type-checks against ES2022).
const lastOf = <T>(xs: T[], test: (x: T) => boolean): T | undefined => [...xs].reverse().find(test);
const featuresChild = join(root, 'test', 'redis', 'features-child.ts');
interface WaitReply { first?: number; final?: number; decided?: number; granted: number; error?: string; name?: string }

describe('several limits, pause, status and slots through Redis', { skip: noRedis }, () => {
  test('two clients on one key keep 10 calls/s patient and 30 tokens/s greedy together, with random token costs', async (t) => {
    const key = `limits:${process.pid}`;
    const limits = [{ maxCount: 10, per: 1 }, { maxCount: 30, per: 1, unit: 'tokens', greedy: true }];
    const clients = [0, 1].map(() => { const redis = new RedisStore({ url, key }); return { redis, ...noting(redis) }; });
    try {
      const until = clock.now() + 1.5;
      let seed = 7;
      const random = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
      await Promise.all(clients.map(async ({ store }) => {
        const limit = new RateLimit({ limits, store });
        while (clock.now() < until) await limit.wait({ cost: { tokens: 1 + Math.floor(random() * 6) } });
      }));
      const order = new RateLimit({ limits }).limits;
      const grants = clients.flatMap((c) => c.noted.filter((n) => n.wrote && n.at !== undefined).map((n) => ({ at: n.at!, cost: n.cost! })));
      const tokens = grants.reduce((s, g) => s + g.cost[order.findIndex((l) => l.unit === 'tokens')], 0);
      t.diagnostic(`${grants.length} calls, ${tokens} tokens in 1.5 s; conflicts ${clients.map((c) => c.redis.conflicts).join('/')}`);
      assert.ok(grants.length >= 10, `only ${grants.length} calls`);
      assert.deepEqual(brokenLimits(order, grants, EXACT), []);
    } finally {
      await Promise.all(clients.map((c) => c.redis.close()));
    }
  });

  test('status reports what is used and left and the pause; a call after pause() goes at its end', async () => {
    const redis = new RedisStore({ url, key: `status:${process.pid}` });
    const { store, noted } = noting(redis);
    try {
      const limit = new RateLimit({ limits: [{ maxCount: 5, per: 2, greedy: true }, { maxCount: 50, per: 2, unit: 'tokens', greedy: true }], store });
      for (let i = 0; i < 3; i++) await limit.wait({ cost: { tokens: 10 } });
      const before = await limit.status();
      assert.deepEqual(before.limits.map((l) => [l.unit, l.used, l.remaining]), [['calls', 3, 2], ['tokens', 30, 20]]);
      assert.equal(before.pausedFor, 0);
      assert.equal(before.inFlight, 0);
      assert.equal(before.maxConcurrent, null);
      await limit.pause(0.3);
      const paused = await limit.status();
      assert.ok(paused.pausedFor > 0.25 && paused.pausedFor <= 0.3, `pausedFor ${paused.pausedFor}`);
      assert.ok(paused.nextIn >= paused.pausedFor - EXACT, 'nextIn should include the pause');
      const end = lastOf(noted, (n) => n.paused !== undefined)!.paused!;
      await limit.wait();
      const slot = lastOf(noted, (n) => n.wrote && n.at !== undefined)!.at!;
      assert.ok(Math.abs(slot - end) < EXACT, `the call after the pause went ${slot - end} s after its end`);
    } finally {
      await redis.close();
    }
  });

  test('observe(): what one client read from a server holds another client on the same key until the reset', async () => {
    const key = `observe:${process.pid}`;
    const [a, b] = [new RedisStore({ url, key }), new RedisStore({ url, key })];
    const { store, noted } = noting(b);
    try {
      const learner = new RateLimit({ maxCount: 100, per: 1, store: a });
      const other = new RateLimit({ maxCount: 100, per: 1, store });
      await learner.observe({ status: 200, headers: { 'x-ratelimit-remaining': '2', 'x-ratelimit-reset-after': '0.5',
        'x-ratelimit-bucket': 'b' } });
      const capped = (await other.status()).limits[0]?.server;
      assert.equal(capped?.remaining, 2);
      for (let i = 0; i < 3; i++) await other.wait();
      const at = noted.filter((n) => n.wrote && n.at !== undefined).map((n) => n.at!);
      // Two calls fit under the server's word at once (0.01 s apart by the limit); the third waits for the reset.
      assert.ok((at[1] ?? 0) - (at[0] ?? 0) < 0.05, `second call ${(at[1] ?? 0) - (at[0] ?? 0)} s after the first`);
      assert.ok((at[2] ?? 0) - (at[0] ?? 0) > 0.4, `third call ${(at[2] ?? 0) - (at[0] ?? 0)} s after the first`);
    } finally {
      await Promise.all([a.close(), b.close()]);
    }
  });

  test('across processes: a pause set here moves a call already asleep on its slot in another process', async (t) => {
    const child = new Child(process.execPath, ['--import', 'tsx', featuresChild, url], process.env, 'nodejs');
    const redis = new RedisStore({ url, key: `pause:${process.pid}` });
    const { store, noted } = noting(redis);
    try {
      await child.next(30_000);
      const ask = <T>(command: object) => child.ask<T>(command);
      const options = { limits: [{ maxCount: 2, per: 1 }] }; // a slot every 0.5 s
      await ask({ op: 'open', key: `pause:${process.pid}`, options });
      const limit = new RateLimit({ ...options, store });
      await limit.status(); // connect now, not while the child sleeps
      const first = await ask<WaitReply>({ op: 'wait' });
      // The child's next call sleeps until first + 0.5 s; pause everyone for
      // 0.6 s meanwhile, 0.1 to 0.2 s into its sleep.
      child.send({ op: 'wait' });
      await sleep(150);
      await limit.pause(0.6);
      const end = lastOf(noted, (n) => n.paused !== undefined)!.paused!;
      const second = await child.next<WaitReply>(15_000);
      assert.equal(second.error, undefined);
      const wallMinusBoot = Date.now() / 1000 - clock.now();
      t.diagnostic(`child's second call: reserved first + ${(second.first! - first.final!).toFixed(3)} s, ` +
        `went at pause end + ${((second.final! - end) * 1000).toFixed(3)} ms, returned ${((second.granted + wallMinusBoot - end) * 1000).toFixed(1)} ms after it`);
      assert.ok(Math.abs(second.first! - first.final! - 0.5) < EXACT, 'the child\'s second call was not reserved 0.5 s after its first');
      assert.ok(second.first! > end - 0.6, 'the pause came after the child\'s slot: nothing was tested');
      assert.ok(second.final! >= end - EXACT, `the sleeping call went ${second.final! - end} s before the pause's end`);
      // The child recorded its return on the boot clock; the server's clock
      // is this machine's wall clock, lined up here to about 1 ms (Date.now()).
      assert.ok(second.granted + wallMinusBoot >= end - 0.002, 'the sleeping call returned before the pause ended');
      const status = await ask<{ status: { pausedFor: number } }>({ op: 'status' });
      assert.equal(status.status.pausedFor, 0);
    } finally {
      child.end();
      await within(child.exited, 5000);
      kill(child.proc);
      await redis.close();
    }
  });

  test('across processes: maxConcurrent counts another process\'s permit, its lease is renewed while held, and comes back a lease after its holder is killed', async (t) => {
    const child = new Child(process.execPath, ['--import', 'tsx', featuresChild, url], process.env, 'nodejs');
    const key = `slots:${process.pid}`;
    const redis = new RedisStore({ url, key });
    const { store, noted } = noting(redis);
    try {
      await child.next(30_000);
      const ask = <T>(command: object) => child.ask<T>(command);
      // A 0.6 s lease, renewed every 0.2 s while held.
      const options = { limits: [{ maxCount: 100, per: 1 }], maxConcurrent: 1, slotLease: 0.6 };
      await ask({ op: 'open', key, options });
      const limit = new RateLimit({ ...options, store });
      await ask<WaitReply>({ op: 'acquire' });
      const held = await limit.status();
      assert.equal(held.inFlight, 1, 'status() here should count the child\'s permit');
      assert.equal(held.maxConcurrent, 1);
      // Waiting 1 s, longer than the lease: the child's renewals keep it.
      await assert.rejects(limit.acquire({ maxWait: 1 }), RateLimitTimeoutError);

      const killedAt = Date.now() / 1000;
      kill(child.proc);
      await child.exited;
      const permit = await limit.acquire({ maxWait: 3 });
      const grant = lastOf(noted, (n) => n.wrote && n.at !== undefined)!;
      // The child's slot as it stood when the grant was made: the last lease it renewed.
      const leaseEnd = Math.max(...noted.filter((n) => n.slots?.length && n.now < grant.now).flatMap((n) => n.slots!.map((h) => h.until)));
      t.diagnostic(`slot back ${((grant.now - leaseEnd) * 1000).toFixed(1)} ms after the lease ran out, ` +
        `${((grant.now - killedAt) * 1000).toFixed(0)} ms after the kill (lease 600 ms)`);
      assert.ok(grant.now >= leaseEnd - EXACT, `the killed holder's slot was given out ${leaseEnd - grant.now} s before its lease ran out`);
      // A waiter polls at most 300 ms apart (200 ms, +50% jitter), plus two round trips.
      assert.ok(grant.now - leaseEnd < 0.45, `the slot came back ${grant.now - leaseEnd} s after its lease ran out`);
      assert.ok(grant.now - killedAt <= 0.6 + 0.45, 'the slot took longer than a lease to come back');
      assert.equal((await limit.status()).inFlight, 1);
      await permit.release();
      assert.equal((await limit.status()).inFlight, 0, 'a released slot is still counted');
    } finally {
      kill(child.proc);
      await redis.close();
    }
  });
});
