// A child program for the stress suite. Once started (see below) it loops on
// a shared limit until `until` (at least once) or SIGTERM, and writes one JSON
// line per event to stdout at once, so the record survives a kill:
//   {"id","ready":true}    loaded; waiting for its start line
//   {"id","r":at,"rt":t,"lw":ms}  a slot was reserved at `at`, at time `rt`
//                          (shared clock); the lock took `lw` ms to get
//   {"id","g":at,"t":t}    that slot's wait() returned at `t`
//   {"id","warn":msg}      a process warning (e.g. a state file recreated)
//   {"id","error":msg}     wait() failed; the loop goes on
//   {"id","done":true,"broken":n,"lost":n}  a clean finish
// `at` is read inside the store's own transaction, so it is exact.
import { writeSync } from 'node:fs';
import { FileStore, RateLimit, sharedClock, type RateLimitStore, type Transaction } from '../../ratelimit.ts';

export interface WorkerConfig {
  file: string; maxCount: number; per: number; greedy?: boolean; staleAfter?: number;
  id: string; sync?: boolean; weight?: number;
}
const cfg: WorkerConfig = JSON.parse(process.env.RL ?? '{}');
const emit = (o: object) => writeSync(1, JSON.stringify({ id: cfg.id, ...o }) + '\n');
process.on('warning', (w) => emit({ warn: w.message }));
// SIGTERM asks for a clean finish after the current wait.
let stop = false;
process.on('SIGTERM', () => { stop = true; });

const file = new FileStore(cfg.file, { staleAfter: cfg.staleAfter });
let reserved = NaN;
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
  return out;
};
let fresh = false;
const report = <T>(result: T): T => {
  if (fresh) emit({ r: reserved, rt: ranAt, lw: +(ran - called).toFixed(3) });
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
const clock = sharedClock();

// Say we are loaded, then wait for the start line on stdin: {"startAt","until"}
// on the shared clock. Every worker then starts together, however long each
// took to start up.
emit({ ready: true });
const go: { startAt: number; until: number } = await new Promise((resolve) => {
  let buffer = '';
  process.stdin.on('data', (d) => {
    buffer += d;
    if (buffer.includes('\n')) { process.stdin.destroy(); resolve(JSON.parse(buffer)); }
  });
});
const lead = go.startAt - clock.now();
if (lead > 0) await new Promise((r) => setTimeout(r, lead * 1000));
do {
  try {
    reserved = NaN;
    if (cfg.sync) limit.waitSync({ weight: cfg.weight }); else await limit.wait({ weight: cfg.weight });
    emit({ g: reserved, t: clock.now() });
  } catch (error) {
    emit({ error: (error as Error).message });
    await new Promise((r) => setTimeout(r, 5));
  }
} while (!stop && clock.now() < go.until);
emit({ done: true, broken: file.locksBroken, lost: file.locksLost });
