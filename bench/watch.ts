// Would async lock waiters woken by a directory watch beat the file store's
// timer backoff? A waiter in another process than the holder (a real child
// process, started with the same runtime as this script) waits for the lock
// name `<state>.lock` to be unlinked, by one of these strategies, each a
// minimal copy of a wait loop (nothing is imported from ratelimit.ts):
//
//   timer+spin   FileStore.update: tries link() with backoff from 20 µs doubling
//                to 4 ms, x(0.5+random), sleeping the thread (Atomics.wait)
//                for the first 2 ms, then on setTimeout(max(1, backoff)).
//   timer        the same backoff, on setTimeout from the first busy try.
//   watch        fs.watch() on the directory, opened for this wait (and closed
//                after it): wakes on any event naming the lock, or on a
//                fallback timer (FALLBACK_MS, 20 ms: longer than any hold, so
//                a wait won on it is a missed event), and tries link() again.
//   watch-kept   the same with one watcher kept open for the whole run (one
//                per store); events that arrive outside a wait are ignored.
//   watch+spin   the 2 ms of thread-sleeping tries first, then as watch.
//
// The parent holds the lock: it links its owner file to the lock name, tells
// the child to wait, holds until HOLDS x (0.5+random) ms after the child's
// first busy try (a fixed hold would line up with one strategy's timers,
// such as the first 1 ms setTimeout), and unlinks. Wake latency is the time
// from just before that unlink to the child's successful link(), on one
// clock: process.hrtime.bigint(), checked by ping-pong to be shared
// (CLOCK_MONOTONIC) or, when it is not (Bun and Deno count from their own
// start), corrected by the offset found at the smallest round trip. CPU is
// the child's process.cpuUsage() over the wait, all threads. Also: what fs.watch() plus close() costs, whether a watcher
// sees an unlink made right after watch() returns, and what a kept-open
// watcher costs per uncontended acquisition made in its directory.
//
// Bun 1.4 drops the second of two events naming the same file within about
// 1 ms (a link then its unlink): see the watch-kept rows at short holds.
//
// Every measurement runs ROUNDS times (strategies in a rotated order); the
// tables give the median of the per-round figures.
//
//   node --import tsx bench/watch.ts          (ROUNDS=3 HOLDS=0.05,1,10 CYCLES=150,150,100 FALLBACK_MS=20)
//   test/runtimes/node_modules/node22/bin/node bench/watch.ts   (and node24)
//   test/runtimes/node_modules/bun/bin/bun bench/watch.ts
//   test/runtimes/node_modules/deno/deno run -A bench/watch.ts
import { spawn } from 'node:child_process';
import { closeSync, linkSync, openSync, unlinkSync, watch, writeSync, type FSWatcher } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { fmt, median, printTable, quantile, rotate, tempDir } from './lib.ts';

const ROUNDS = Number(process.env.ROUNDS ?? 3);
const HOLDS = (process.env.HOLDS ?? '0.05,1,10').split(',').map(Number);
const CYCLES = (process.env.CYCLES ?? '150,150,100').split(',').map(Number);
const FALLBACK_MS = Number(process.env.FALLBACK_MS ?? 20);
const STRATEGIES = (process.env.STRATEGIES ?? 'timer+spin,timer,watch,watch-kept,watch+spin').split(',');
const SPIN_MS = 2;
const MAX_BACKOFF_MS = 4;
const SETUP_N = 300;  // watch() + close() pairs per round
const ARM_N = 50;     // unlinks right after watch() per round
const TAX_N = 2000;   // uncontended acquisitions per round, with and without a kept watcher

const g = globalThis as any;
const RUNTIME: string = g.Deno ? `deno ${g.Deno.version.deno}` : g.Bun ? `bun ${g.Bun.version}` : `node ${process.versions.node}${process.execArgv.includes('tsx') ? '+tsx' : ''}`;
const SELF = fileURLToPath(import.meta.url);
const STATE = 'state.json';
const LOCK = `${STATE}.lock`;

const nowNs = (): number => Number(process.hrtime.bigint());
const sleeper = new Int32Array(new SharedArrayBuffer(4));
function sleepSyncMs(ms: number): void {
  const end = performance.now() + ms;
  for (let left = ms; left > 0; left = end - performance.now()) Atomics.wait(sleeper, 0, 0, left);
}
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
const backoff = (tries: number): number => Math.min(MAX_BACKOFF_MS, 0.02 * 2 ** Math.min(tries, 10)) * (0.5 + Math.random());
const cpuUs = (): number => { const u = process.cpuUsage(); return u.user + u.system; };

/** JSON lines in from a stream, one promise per line. */
function lineReader(stream: NodeJS.ReadableStream, onEnd?: () => Error): () => Promise<any> {
  const queue: any[] = [];
  const waiting: { res: (v: any) => void; rej: (e: Error) => void }[] = [];
  let buf = '';
  let ended: Error | undefined;
  stream.setEncoding('utf8');
  stream.on('data', (chunk: string) => {
    buf += chunk;
    let nl: number;
    while ((nl = buf.indexOf('\n')) >= 0) {
      const text = buf.slice(0, nl).trim();
      buf = buf.slice(nl + 1);
      if (!text) continue;
      const msg = JSON.parse(text);
      const w = waiting.shift();
      if (w) w.res(msg); else queue.push(msg);
    }
  });
  stream.on('end', () => {
    ended = onEnd?.() ?? new Error('stream ended');
    for (const w of waiting.splice(0)) w.rej(ended);
  });
  return () => {
    if (queue.length) return Promise.resolve(queue.shift());
    if (ended) return Promise.reject(ended);
    return new Promise((res, rej) => waiting.push({ res, rej }));
  };
}

// ===========================================================================
// The waiter (child process)
// ===========================================================================

async function child(): Promise<void> {
  const reply = (msg: unknown) => writeSync(1, `${JSON.stringify(msg)}\n`); // synchronous, even before a spin
  let dir = '';
  let ownerPath = '';
  let lockPath = '';
  let tAcq = 0;
  let tries = 0;
  const errors: string[] = [];

  const tryLink = (): boolean => {
    tries++;
    try {
      linkSync(ownerPath, lockPath);
      tAcq = nowNs();
      return true;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'EEXIST') return false;
      throw e;
    }
  };

  // One listener for every watcher: counts the events naming the lock and wakes the current wait.
  let wake: (() => void) | undefined;
  let lockEvents = 0;
  let allEvents = 0;
  let seen: string[] | undefined; // with WATCH_DEBUG=1: the events of the current wait
  const onEvent = (type: string, filename: string | Buffer | null) => {
    allEvents++;
    if (seen && seen.length < 20) seen.push(`${type}:${String(filename)}`);
    const name = filename == null ? null : String(filename);
    if (name !== null && name !== LOCK && !name.endsWith(`/${LOCK}`)) return;
    lockEvents++;
    wake?.();
  };
  const openWatcher = (): FSWatcher => {
    const w = watch(dir, { persistent: false }, onEvent);
    w.on('error', (e: Error) => errors.push(String(e)));
    return w;
  };
  let kept: FSWatcher | undefined;

  // The 2 ms of thread-sleeping tries of FileStore.update (the first, failed try came before).
  const spin = (started: number, st: { pause: number; busy: number }): boolean => {
    sleepSyncMs(st.pause);
    while (performance.now() - started < SPIN_MS) {
      if (tryLink()) return true;
      st.pause = backoff(++st.busy);
      sleepSyncMs(st.pause);
    }
    return false;
  };

  interface Wake { wakes: number; byEvent: boolean }
  const strategies: Record<string, (started: number) => Promise<Wake>> = {
    async 'timer+spin'(started) {
      const st = { pause: backoff(1), busy: 1 };
      if (spin(started, st)) return { wakes: 0, byEvent: false };
      let wakes = 0;
      for (;;) {
        if (tryLink()) return { wakes, byEvent: false };
        st.pause = backoff(++st.busy);
        await sleep(Math.max(1, st.pause));
        wakes++;
      }
    },
    async timer() {
      let busy = 1;
      let wakes = 0;
      for (;;) {
        await sleep(Math.max(1, backoff(busy)));
        wakes++;
        if (tryLink()) return { wakes, byEvent: false };
        busy++;
      }
    },
    watch: () => watchWait(true),
    'watch-kept': () => watchWait(false),
    async 'watch+spin'(started) {
      if (spin(started, { pause: backoff(1), busy: 1 })) return { wakes: 0, byEvent: false };
      return watchWait(true);
    },
  };

  async function watchWait(perWait: boolean): Promise<Wake> {
    const watcher = perWait ? openWatcher() : (kept ??= openWatcher());
    let wakes = 0;
    let byEvent = false;
    try {
      for (;;) {
        // The try after the watcher is armed: an unlink before it is not missed.
        if (tryLink()) return { wakes, byEvent };
        byEvent = await new Promise<boolean>((res) => {
          const timer = setTimeout(() => { wake = undefined; res(false); }, FALLBACK_MS);
          wake = () => { clearTimeout(timer); wake = undefined; res(true); };
        });
        wakes++;
      }
    } finally {
      if (perWait) watcher.close();
    }
  }

  // A minimal uncontended acquisition: stamp the owner file, link, write the state, unlink.
  const acquisition = (ownerFd: number, stateFd: number, stamp: Buffer, state: Buffer): void => {
    writeSync(ownerFd, stamp, 0, stamp.length, 0);
    linkSync(ownerPath, lockPath);
    writeSync(stateFd, state, 0, state.length, 0);
    unlinkSync(lockPath);
  };

  async function costs(): Promise<Record<string, number>> {
    if (kept) { kept.close(); kept = undefined; }
    // watch() + close(), back to back.
    for (let i = 0; i < 20; i++) openWatcher().close();
    const c0 = cpuUs();
    const t0 = performance.now();
    for (let i = 0; i < SETUP_N; i++) openWatcher().close();
    const setupWallUs = ((performance.now() - t0) * 1000) / SETUP_N;
    const setupCpuUs = (cpuUs() - c0) / SETUP_N;
    await sleep(20); // anything a close() left for the event loop

    // An unlink made right after watch() returns: is it seen (within 100 ms)?
    let armMissed = 0;
    for (let i = 0; i < ARM_N; i++) {
      linkSync(ownerPath, lockPath);
      const w = openWatcher();
      const seen = new Promise<boolean>((res) => {
        const timer = setTimeout(() => { wake = undefined; res(false); }, 100);
        wake = () => { clearTimeout(timer); wake = undefined; res(true); };
      });
      unlinkSync(lockPath);
      if (!(await seen)) armMissed++;
      w.close();
    }

    // A kept watcher's cost to uncontended acquisitions in its directory.
    const ownerFd = openSync(ownerPath, 'r+');
    const stateFd = openSync(join(dir, STATE), 'w');
    const stamp = Buffer.from(JSON.stringify({ pid: process.pid, t: Date.now() }));
    const state = Buffer.from(JSON.stringify({ v: 1, slots: [1, 2, 3, 4, 5, 6, 7, 8] }));
    const run = async (): Promise<{ wallUs: number; cpuUs: number }> => {
      const c = cpuUs();
      const t = performance.now();
      for (let i = 0; i < TAX_N; i++) {
        acquisition(ownerFd, stateFd, stamp, state);
        if (i % 10 === 9) await new Promise((r) => setImmediate(r)); // let events in
      }
      const wallUs = ((performance.now() - t) * 1000) / TAX_N;
      await sleep(30); // the rest of the events
      return { wallUs, cpuUs: (cpuUs() - c) / TAX_N };
    };
    await run(); // warm up
    const bare = await run();
    const w = openWatcher();
    const events0 = allEvents;
    const watched = await run();
    const eventsPerAcq = (allEvents - events0) / TAX_N;
    w.close();
    closeSync(ownerFd);
    closeSync(stateFd);
    return {
      setupWallUs, setupCpuUs, armMissed, eventsPerAcq,
      bareUs: bare.cpuUs, watchedUs: watched.cpuUs, bareWallUs: bare.wallUs, watchedWallUs: watched.wallUs,
    };
  }

  const next = lineReader(process.stdin);
  for (;;) {
    const cmd = await next();
    if (cmd.cmd === 'ping') reply({ t: nowNs() });
    else if (cmd.cmd === 'setup') {
      dir = cmd.dir;
      ownerPath = join(dir, `${STATE}.owner-child`);
      lockPath = join(dir, LOCK);
      closeSync(openSync(ownerPath, 'w'));
      reply({ ready: true, runtime: RUNTIME });
    } else if (cmd.cmd === 'wait') {
      if (cmd.strategy !== 'watch-kept' && kept) { kept.close(); kept = undefined; }
      tries = 0;
      errors.length = 0;
      if (tryLink()) { unlinkSync(lockPath); reply({ error: 'the lock was free' }); continue; }
      const tStart = nowNs();
      const started = performance.now();
      reply({ waiting: true, tStart });
      const c0 = cpuUs();
      const events0 = lockEvents;
      if (process.env.WATCH_DEBUG) seen = [];
      const woke = await strategies[cmd.strategy](started);
      const cpu = cpuUs() - c0;
      if (seen) { process.stderr.write(`${cmd.strategy} tries=${tries} wakes=${woke.wakes} byEvent=${woke.byEvent} ${((nowNs() - tStart) / 1e6).toFixed(2)} ms: ${seen.join(' ')}\n`); seen = undefined; }
      unlinkSync(lockPath);
      reply({ tAcq, cpu, tries, ...woke, lockEvents: lockEvents - events0, errors });
    } else if (cmd.cmd === 'costs') reply(await costs());
    else if (cmd.cmd === 'exit') { kept?.close(); process.exit(0); }
  }
}

// ===========================================================================
// The holder (parent process)
// ===========================================================================

async function parent(): Promise<void> {
  const args = g.Deno ? ['run', '-A', SELF, '--child'] : [...process.execArgv, SELF, '--child'];
  let stderr = '';
  const proc = spawn(process.execPath, args, { stdio: ['pipe', 'pipe', 'pipe'] });
  process.once('exit', () => { if (proc.exitCode === null) proc.kill('SIGKILL'); });
  proc.stderr!.setEncoding('utf8').on('data', (s: string) => { stderr += s; if (process.env.WATCH_DEBUG) process.stderr.write(s); });
  const next = lineReader(proc.stdout!, () => new Error(`watch child exited\n${stderr.trim()}`));
  const send = (msg: unknown) => proc.stdin!.write(`${JSON.stringify(msg)}\n`);

  const { dir, remove } = tempDir('watch');
  const ownerPath = join(dir, `${STATE}.owner-parent`);
  const lockPath = join(dir, LOCK);
  closeSync(openSync(ownerPath, 'w'));

  // Ping-pong: is the child's hrtime ours (every reply between our send and
  // receipt)? If not, its offset, from the fastest round trip.
  const clockCheck = async (n = 100): Promise<{ shared: boolean; offsetNs: number; rttUs: number }> => {
    let shared = true;
    let best = { rtt: Infinity, offset: 0 };
    for (let i = 0; i < n; i++) {
      const t0 = nowNs();
      send({ cmd: 'ping' });
      const { t } = await next();
      const t1 = nowNs();
      if (t < t0 || t > t1) shared = false;
      if (t1 - t0 < best.rtt) best = { rtt: t1 - t0, offset: t - (t0 + t1) / 2 };
    }
    return { shared, offsetNs: shared ? 0 : best.offset, rttUs: best.rtt / 1000 };
  };

  try {
    send({ cmd: 'setup', dir });
    const hello = await next();
    const clocks = [await clockCheck()];

    type Cell = { lat: number[]; held: number[]; cpu: number[]; waitedMs: number[]; wakes: number[]; byFallback: number; noLockEvent: number; errors: string[] };
    const cells = new Map<string, Cell[]>(); // key strategy|hold -> one Cell per round
    const costs: Record<string, number>[] = [];
    const t0 = performance.now();

    for (let round = 0; round < ROUNDS; round++) {
      if (round > 0) clocks.push(await clockCheck(50));
      const { offsetNs } = clocks[clocks.length - 1];
      for (const [h, hold] of HOLDS.entries()) {
        for (const strategy of rotate(STRATEGIES, round + h)) {
          const cell: Cell = { lat: [], held: [], cpu: [], waitedMs: [], wakes: [], byFallback: 0, noLockEvent: 0, errors: [] };
          const key = `${strategy}|${hold}`;
          cells.set(key, [...(cells.get(key) ?? []), cell]);
          for (let i = 0; i < (CYCLES[h] ?? CYCLES[CYCLES.length - 1]); i++) {
            linkSync(ownerPath, lockPath);
            send({ cmd: 'wait', strategy });
            const w = await next();
            if (w.error) throw new Error(w.error);
            const startedNs = w.tStart - offsetNs; // on our clock
            const until = startedNs + hold * (0.5 + Math.random()) * 1e6; // a hold that varies, so no strategy's timers line up with it
            for (let left = (until - nowNs()) / 1e6; left > 0; left = (until - nowNs()) / 1e6) Atomics.wait(sleeper, 0, 0, left);
            const tUnlink = nowNs();
            unlinkSync(lockPath);
            const r = await next();
            cell.lat.push((r.tAcq - offsetNs - tUnlink) / 1000);
            cell.held.push((tUnlink - startedNs) / 1e6);
            cell.waitedMs.push((r.tAcq - offsetNs - startedNs) / 1e6);
            cell.cpu.push(r.cpu);
            cell.wakes.push(r.wakes);
            if (strategy.startsWith('watch') && r.wakes > 0 && !r.byEvent) cell.byFallback++;
            if (strategy.startsWith('watch') && r.wakes > 0 && r.lockEvents === 0) cell.noLockEvent++;
            cell.errors.push(...r.errors);
            await sleep(1);
          }
        }
      }
      send({ cmd: 'costs' });
      costs.push(await next());
    }
    const seconds = (performance.now() - t0) / 1000;
    send({ cmd: 'exit' });

    const c = clocks[0];
    const clockNote = c.shared
      ? `clock: process.hrtime.bigint() is shared with the child (every ping reply fell between send and receipt; fastest round trip ${fmt(c.rttUs, 0)} µs)`
      : `clock: process.hrtime.bigint() is NOT shared with the child; corrected by the offset at the fastest round trip (${fmt(c.rttUs, 0)} µs, so latencies are ±${fmt(c.rttUs / 2, 0)} µs); offsets over the rounds: ${clocks.map((k) => fmt(k.offsetNs / 1e6, 3)).join(', ')} ms`;

    const rows: string[][] = [];
    const med = (key: string, f: (c: Cell) => number) => median((cells.get(key) ?? []).map(f));
    for (const hold of HOLDS) {
      const base = med(`timer+spin|${hold}`, (k) => median(k.lat));
      for (const s of STRATEGIES) {
        const key = `${s}|${hold}`;
        const all = cells.get(key) ?? [];
        const n = all.reduce((a, k) => a + k.lat.length, 0);
        const errs = all.reduce((a, k) => a + k.errors.length, 0);
        rows.push([
          fmt(hold, 2), s,
          fmt(med(key, (k) => median(k.held)), 2),
          fmt(med(key, (k) => median(k.lat)), 0),
          fmt(med(key, (k) => quantile(k.lat, 0.99)), 0),
          fmt(med(key, (k) => median(k.lat)) / base, 2),
          fmt(med(key, (k) => median(k.cpu)), 0),
          fmt(med(key, (k) => quantile(k.cpu, 0.99)), 0),
          fmt(med(key, (k) => (k.cpu.reduce((a, b) => a + b, 0) / 1000) / (k.waitedMs.reduce((a, b) => a + b, 0) / 1000)), 0),
          fmt(med(key, (k) => k.wakes.reduce((a, b) => a + b, 0) / k.wakes.length), 1),
          s.startsWith('watch') ? `${all.reduce((a, k) => a + k.byFallback, 0)}/${n}` : '-',
          s.startsWith('watch') ? `${all.reduce((a, k) => a + k.noLockEvent, 0)}/${n}` : '-',
          String(errs),
        ]);
      }
    }
    printTable(
      `Lock wake-up across processes, ${hello.runtime} waiter and holder: ${CYCLES.join('/')} cycles per hold, median of ${ROUNDS} rounds (${fmt(seconds, 0)} s)`,
      ['hold ms', 'strategy', 'freed after ms', 'wake p50 µs', 'wake p99 µs', 'x timer+spin', 'CPU µs/wait', 'CPU p99', 'CPU ms/s waiting', 'wakes/wait', 'by fallback', 'no lock event', 'errors'],
      rows,
      [
        clockNote,
        'freed after: from the child\'s first busy try to the holder\'s unlink; wake: from just before the unlink to the child\'s successful link().',
        'CPU: the waiting child\'s process.cpuUsage() (all threads) from its first busy try to the lock taken, including a per-wait watcher\'s set-up and close.',
        `wakes/wait: timer or event wake-ups after the spin; by fallback: waits won on the ${FALLBACK_MS} ms fallback timer, not an event; no lock event: waits that saw no event naming the lock.`,
        'Strategies: timer+spin = FileStore.update; timer = its backoff on setTimeout only; watch = fs.watch per wait (+fallback timer); watch-kept = one watcher per store; watch+spin = 2 ms spin, then watch.',
      ],
    );
    const cm = (f: (r: Record<string, number>) => number) => median(costs.map(f));
    printTable(
      `Watcher costs in the ${hello.runtime} child, median of ${ROUNDS} rounds`,
      ['measure', 'value'],
      [
        ['fs.watch(dir) + close(), wall µs', fmt(cm((r) => r.setupWallUs), 1)],
        ['fs.watch(dir) + close(), CPU µs', fmt(cm((r) => r.setupCpuUs), 1)],
        [`unlinks right after watch() not seen within 100 ms (of ${ARM_N})`, fmt(cm((r) => r.armMissed), 0)],
        ['uncontended acquisition, no watcher: CPU µs', fmt(cm((r) => r.bareUs), 1)],
        ['uncontended acquisition, kept watcher on its directory: CPU µs', fmt(cm((r) => r.watchedUs), 1)],
        ['  tax of the kept watcher, CPU µs per acquisition', fmt(cm((r) => r.watchedUs - r.bareUs), 1)],
        ['  events the kept watcher got per acquisition', fmt(cm((r) => r.eventsPerAcq), 1)],
        ['uncontended acquisition wall µs, no watcher / kept watcher', `${fmt(cm((r) => r.bareWallUs), 1)} / ${fmt(cm((r) => r.watchedWallUs), 1)}`],
      ],
      [
        `acquisition: pwrite the owner file, link it to the lock, pwrite the state, unlink the lock (${TAX_N} in a row, yielding every 10); CPU includes delivering the events after.`,
        'A kept watcher pays for every acquisition any process makes in the directory, not only its own.',
      ],
    );
  } finally {
    if (proc.exitCode === null) proc.kill('SIGKILL');
    remove();
  }
}

if (process.argv.includes('--child')) await child();
else { await parent(); process.exit(0); }
