// A child program for the stress suite. Once started (see below) it loops on
// a shared limit until `until` (at least once) or SIGTERM, and writes one JSON
// line per event to stdout at once, so the record survives a kill:
//   {"id","ready":true}    loaded; waiting for its start line
//   {"id","r":at,"rt":t,"lw":ms}  a slot was reserved at `at`, at time `rt`
//                          (shared clock); the lock took `lw` ms to get
//   {"id","g":at,"t":t}    that slot's wait() returned at `t`
//   {"id","warn":msg}      a process warning (e.g. a state file recreated)
//   {"id","error":msg,"code"}  wait() failed; the loop goes on
// With `clockCheck`, each reservation also carries "off": the store's clock
// minus this process's hrtime, read back to back (to "offErr" seconds), so a
// slot on any clock can be put on the host's monotonic clock (see faults.ts).
//   {"id","done":true,"broken":n,"lost":n}  a clean finish
// `at` is read inside the store's own transaction, so it is exact.
import { closeSync, openSync, readFileSync } from 'node:fs';
import { FileStore, RateLimit, sharedClock, type RateLimitStore, type Transaction } from '../../ratelimit.ts';
import { emitLine } from '../emit.ts';

export interface WorkerConfig {
  file: string; maxCount: number; per: number; greedy?: boolean; staleAfter?: number;
  id: string; sync?: boolean; weight?: number;
  /** Report each reservation's clock offset (see above). */
  clockCheck?: boolean;
  /** Make the first call of the store while the descriptor table is full, then free it and go on. */
  fdFullFirst?: boolean;
  /**
   * Time the start and end on the host's monotonic clock (hrtime less any
   * time namespace offset) rather than on the store's clock, for a worker
   * whose store clock differs from the parent's.
   */
  hostClock?: boolean;
}
const cfg: WorkerConfig = JSON.parse(process.env.RL ?? '{}');
const emit = (o: object) => emitLine({ id: cfg.id, ...o });
process.on('warning', (w) => emit({ warn: w.message }));
// SIGTERM asks for a clean finish after the current wait.
let stop = false;
process.on('SIGTERM', () => { stop = true; });

const file = new FileStore(cfg.file, { staleAfter: cfg.staleAfter });
let reserved = NaN;
let offset = NaN;
let offsetErr = NaN;
const hr = () => Number(process.hrtime.bigint()) / 1e9;
let called = 0;
let ran = 0;
let ranAt = 0;
const peek = <T>(tx: Transaction<T>): Transaction<T> => (state, now, ctx) => {
  ran = performance.now();
  ranAt = now;
  const out = tx(state, now, ctx);
  const r = out.result as { at?: number };
  // Only a transaction that reserved counts (wait() also looks at the state
  // again after sleeping, for a pause; that one leaves the slot as it was).
  fresh = out.state !== undefined && typeof r?.at === 'number';
  if (fresh) reserved = r.at!;
  if (fresh && cfg.clockCheck) {
    // The store's clock against hrtime, read between two hrtime readings:
    // the tightest of three tries bounds the error.
    offsetErr = Infinity;
    for (let i = 0; i < 3; i++) {
      const h1 = hr(); const c = sharedClock().now(); const h2 = hr();
      if ((h2 - h1) / 2 < offsetErr) { offsetErr = (h2 - h1) / 2; offset = c - (h1 + h2) / 2; }
    }
  }
  return out;
};
let fresh = false;
const report = <T>(result: T): T => {
  if (fresh) {
    emit(cfg.clockCheck ? { r: reserved, rt: ranAt, lw: +(ran - called).toFixed(3), off: offset, offErr: offsetErr } : { r: reserved, rt: ranAt, lw: +(ran - called).toFixed(3) });
  }
  fresh = false;
  return result;
};
const store: RateLimitStore = {
  name: file.name,
  update: (tx) => {
    called = performance.now();
    const result = file.update(peek(tx));
    return result instanceof Promise ? result.then(report) : report(result);
  },
  updateSync: (tx) => { called = performance.now(); return report(file.updateSync(peek(tx))); },
};
const limit = new RateLimit({ maxCount: cfg.maxCount, per: cfg.per, greedy: cfg.greedy, store });
let firstError: { message: string; code?: string } | undefined;
if (cfg.fdFullFirst) {
  // Fill the descriptor table, leave one free, and make the store's first
  // call: whatever it reads about itself then (boot id, start time) fails.
  const fds: number[] = [];
  try { for (;;) fds.push(openSync('/dev/null', 'r')); } catch { /* EMFILE: full */ }
  closeSync(fds.pop()!);
  try { limit.tryAcquire(); } catch (e) { firstError = { message: (e as Error).message, code: (e as { code?: string }).code }; }
  for (const fd of fds) closeSync(fd);
}
const clock = sharedClock();

// The offsets of a time namespace we may run in, for the parent and hostClock.
const read = (path: string) => { try { return readFileSync(path, 'latin1'); } catch { return ''; } };
const timens = Object.fromEntries(read('/proc/self/timens_offsets').split('\n').filter(Boolean).map((l) => {
  const [name, s, ns] = l.trim().split(/\s+/);
  return [name, Number(s) + Number(ns) / 1e9];
}));
// Say we are loaded, then wait for the start line on stdin: {"startAt","until"}
// on the shared clock. Every worker then starts together, however long each
// took to start up.
emit({ ready: true, tag: clock.tag, timens, firstError });
const go: { startAt: number; until: number } = await new Promise((resolve) => {
  let buffer = '';
  process.stdin.on('data', (d) => {
    buffer += d;
    if (buffer.includes('\n')) { process.stdin.destroy(); resolve(JSON.parse(buffer)); }
  });
});
const timeNow = cfg.hostClock ? () => hr() - (timens.monotonic ?? 0) : () => clock.now();
const lead = go.startAt - timeNow();
if (lead > 0) await new Promise((r) => setTimeout(r, lead * 1000));
do {
  try {
    reserved = NaN;
    const called = hr();
    if (cfg.sync) limit.waitSync({ weight: cfg.weight }); else await limit.wait({ weight: cfg.weight });
    emit({ g: reserved, t: clock.now(), took: hr() - called });
  } catch (error) {
    emit({ error: (error as Error).message, code: (error as { code?: string }).code });
    await new Promise((r) => setTimeout(r, 5));
  }
} while (!stop && timeNow() < go.until);
emit({ done: true, broken: file.locksBroken, lost: file.locksLost });
