// A child program for the fault scenarios in faults.ts: it makes calls that
// may meet odd files, full descriptor tables or dead threads, and reports
// each one as a JSON line on stdout, at once, so a call that never returns
// or freezes the process is seen by the parent from outside:
//   {"hb":n}                         every 100 ms while the event loop runs
//   {"case":i,"start":true}          case i begins
//   {"case":i,"ok":bool,"ms","maxGap","ticks","error","code","path","warnings"}
// `maxGap` is the longest time, in ms, the event loop went without running a
// 10 ms interval timer during the call (a call that blocks the loop shows as
// a gap as long as itself); `ticks` is how many times it ran.
//
// RL_PROBE (JSON) picks the mode:
//   {"mode":"cases","cases":[Case, ...]}        calls, one case after another
//   {"mode":"many","dir","n","close":bool}     n file limiters in one directory
//   {"mode":"fdDead","file","lock"}             a dead holder's lock met with a full fd table
//   {"mode":"thread","file","staleAfter","maxCount"}  a worker thread terminated holding the lock
import { closeSync, linkSync, lstatSync, openSync, readdirSync, readlinkSync, statSync, writeFileSync } from 'node:fs';
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads';
import { FileStore, RateLimit } from '../../ratelimit.ts';
import { emitLine } from '../emit.ts';

export interface Case {
  file: string; call: 'wait' | 'tryAcquire' | 'waitSync'; maxCount: number; per: number; greedy?: boolean;
  /** For tryAcquire: how many ms to keep asking. */
  staleAfter?: number; maxWait?: number; weight?: number; calls?: number;
}
export interface ProbeLine {
  hb?: number; case?: number; start?: boolean; ok?: boolean; ms?: number; maxGap?: number; ticks?: number;
  error?: string; code?: string; path?: string; warnings?: string[]; [key: string]: unknown;
}

const emit = (o: object) => emitLine(o);
const warnings: string[] = [];
process.on('warning', (w) => { if (w.name === 'RateLimitWarning') warnings.push(w.message); });

let ticks: number[] = [];
function tickWatch(): () => { maxGap: number; ticks: number } {
  ticks = [];
  const t0 = performance.now();
  return () => {
    const t1 = performance.now();
    const all = [t0, ...ticks.filter((t) => t > t0 && t < t1), t1];
    let maxGap = 0;
    for (let i = 1; i < all.length; i++) maxGap = Math.max(maxGap, all[i] - all[i - 1]);
    return { maxGap: +maxGap.toFixed(1), ticks: all.length - 2 };
  };
}

// One call. tryAcquire is asked again every 20 ms until it grants, throws,
// or `maxWait` ms have passed (then the answer is `granted: false`).
async function call(c: Case, limit: RateLimit): Promise<boolean> {
  if (c.call === 'tryAcquire') {
    const t0 = performance.now();
    for (;;) {
      if (limit.tryAcquire(c.weight ? { weight: c.weight } : {})) return true;
      if (performance.now() - t0 > (c.maxWait ?? 0)) return false;
      await new Promise((r) => setTimeout(r, 20));
    }
  }
  const opts = { ...(c.weight ? { weight: c.weight } : {}), ...(c.maxWait !== undefined ? { maxWait: c.maxWait } : {}) };
  if (c.call === 'waitSync') limit.waitSync(opts);
  else await limit.wait(opts);
  return true;
}

function describeError(e: unknown): Partial<ProbeLine> {
  const err = e as { message?: string; code?: string; path?: string };
  return { error: String(err?.message ?? e), code: err?.code, path: err?.path };
}

// Open descriptors, or -1 when the table is too full to list them.
function fdCount(): number {
  try { return readdirSync('/proc/self/fd').length; } catch { return -1; }
}

const cfg = JSON.parse(process.env.RL_PROBE ?? '{}');

if (!isMainThread) {
  // The thread of mode "thread": take the lock again and again, holding it
  // 3 ms each time (a transaction doing some work), until terminated.
  const store = new FileStore(workerData.file, { staleAfter: workerData.staleAfter });
  const nap = new Int32Array(new SharedArrayBuffer(4));
  parentPort!.postMessage('ready');
  for (;;) {
    store.updateSync((state) => { const end = performance.now() + 3; while (performance.now() < end); return { state, result: 0 }; });
    Atomics.wait(nap, 0, 0, 1);
  }
} else {
  setInterval(() => ticks.push(performance.now()), 10);
  let hb = 0;
  setInterval(() => emit({ hb: hb++ }), 100);

  if (cfg.mode === 'cases') {
    const cases: Case[] = cfg.cases;
    for (let i = 0; i < cases.length; i++) {
      const c = cases[i];
      emit({ case: i, start: true });
      warnings.length = 0;
      const limit = new RateLimit({ maxCount: c.maxCount, per: c.per, greedy: c.greedy ?? false, file: c.file, staleAfter: c.staleAfter ?? 10 });
      const watch = tickWatch();
      const t0 = performance.now();
      let out: Partial<ProbeLine>;
      try {
        let granted = true;
        for (let k = 0; k < (c.calls ?? 1) && granted; k++) granted = await call(c, limit);
        out = { ok: true, granted };
      } catch (e) {
        out = { ok: false, ...describeError(e) };
      }
      const ms = +(performance.now() - t0).toFixed(1);
      // Let queued warnings arrive before reporting them.
      await new Promise((r) => setImmediate(r));
      emit({ case: i, ...out, ms, ...watch(), warnings: [...new Set(warnings)].slice(0, 3), warningCount: warnings.length });
      try { await limit.close(); } catch { /* reported by the call already */ }
    }
    process.exit(0);
  }

  if (cfg.mode === 'many') {
    // One limiter per "domain", each used once, as a crawler would.
    const before = fdCount();
    const t0 = performance.now();
    const limits: RateLimit[] = [];
    let failed: Partial<ProbeLine> | undefined;
    let done = 0;
    for (let i = 0; i < cfg.n && !failed; i++) {
      const limit = new RateLimit({ maxCount: 10, per: 1, file: `${cfg.dir}/domain-${i}.json` });
      limits.push(limit);
      try { await limit.wait(); done++; } catch (e) { failed = { at: i, ...describeError(e) }; }
    }
    const ms = performance.now() - t0;
    const during = fdCount();
    for (const l of limits) await l.close?.();
    const after = fdCount();
    let owners = -1;
    try { owners = readdirSync(cfg.dir).filter((n) => n.includes('.owner-')).length; } catch { /* the table is still full */ }
    emit({ result: true, done, ms: +ms.toFixed(0), fdsBefore: before, fdsWithAll: during, fdsAfterClose: after, ownerFilesAfterClose: owners, ...(failed ? { failed } : {}) });
    process.exit(0);
  }

  if (cfg.mode === 'fdDead') {
    // A limiter that works, then a dead holder's lock appears, then the
    // descriptor table fills up: the next call must fail, not spin.
    const limit = new RateLimit({ maxCount: 1000, per: 1, file: cfg.file, staleAfter: 10 });
    await limit.wait();
    writeFileSync(`${cfg.file}.planted`, cfg.lock);
    linkSync(`${cfg.file}.planted`, `${cfg.file}.lock`);
    const fds: number[] = [];
    try { for (;;) fds.push(openSync('/dev/null', 'r')); } catch { /* full */ }
    const watch = tickWatch();
    const t0 = performance.now();
    let out: Partial<ProbeLine>;
    try { await limit.wait(); out = { ok: true }; } catch (e) { out = { ok: false, ...describeError(e) }; }
    const ms = +(performance.now() - t0).toFixed(1);
    for (const fd of fds) closeSync(fd);
    emit({ result: true, ...out, ms, ...watch(), fdsFilled: fds.length });
    process.exit(0);
  }

  if (cfg.mode === 'thread') {
    // Terminate a worker thread at a moment it holds the lock, then measure
    // how long this process's own next call takes.
    const lockPath = `${cfg.file}.lock`;
    const ownerInodes = () => {
      // Every owner file open in this process is the thread's: the main thread has none yet.
      const inos = new Set<number>();
      for (const fd of readdirSync('/proc/self/fd')) {
        try { if (readlinkSync(`/proc/self/fd/${fd}`).includes('.owner-')) inos.add(statSync(`/proc/self/fd/${fd}`).ino); } catch { /* closed meanwhile */ }
      }
      return inos;
    };
    let caught = false;
    let tries = 0;
    for (let round = 0; round < 20 && !caught; round++) {
      // A thread does not inherit tsx's loader on Node 20: register it there first.
      const boot = `import('tsx/esm/api').then((m) => { m.register(); return import(${JSON.stringify(import.meta.url)}); })`;
      const thread = new Worker(boot, { eval: true, workerData: { file: cfg.file, staleAfter: cfg.staleAfter } });
      await new Promise((r) => thread.once('message', r));
      await new Promise((r) => setTimeout(r, 20));
      const mine = ownerInodes();
      for (let i = 0; i < 200_000; i++) {
        const ino = lstatSync(lockPath, { throwIfNoEntry: false })?.ino;
        if (ino !== undefined && mine.has(ino)) {
          tries++;
          await thread.terminate();
          caught = lstatSync(lockPath, { throwIfNoEntry: false })?.ino === ino;
          break;
        }
      }
      if (!caught) await thread.terminate();
    }
    const terminatedAt = Number(process.hrtime.bigint()) / 1e9;
    // How long the dead thread's lock stands, as seen from outside the store.
    const held = lstatSync(lockPath, { throwIfNoEntry: false })?.ino;
    let freedMs = Infinity;
    for (const t0 = performance.now(); caught && performance.now() - t0 < cfg.staleAfter * 1000 + 1000;) {
      if (lstatSync(lockPath, { throwIfNoEntry: false })?.ino !== held) { freedMs = +(performance.now() - t0).toFixed(1); break; }
      await new Promise((r) => setTimeout(r, 1));
    }
    emit({ caught, tries, terminatedAt, freedMs });
    const limit = new RateLimit({ maxCount: cfg.maxCount, per: 1, file: cfg.file, staleAfter: cfg.staleAfter });
    const watch = tickWatch();
    const t0 = performance.now();
    let out: Partial<ProbeLine>;
    try { await limit.wait(); out = { ok: true }; } catch (e) { out = { ok: false, ...describeError(e) }; }
    emit({ result: true, caught, ...out, ms: +(performance.now() - t0).toFixed(1), ...watch(), broken: (limit.store as FileStore).locksBroken });
    process.exit(0);
  }
}
