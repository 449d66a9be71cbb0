// A child program for test/features.test.ts: one process using a shared
// RateLimit (several limits, costs, permits, pause, concurrency slots, serial
// mode) on one state file. It writes one JSON line per event to stdout at
// once, so what it did survives a SIGKILL.
//
// Every transaction that the limiter runs on the file is recorded from inside
// it (a wrapper around FileStore, as in test/stress/worker.ts), so the times
// are exact readings of the shared clock under the lock:
//   {"id","tx":op,"now","at"?,"slot"?,"cost"?,"wrote","before","after","paused"?}
//     op is what the program was doing (acquire, wait, settle, release,
//     pause, status); `at`/`slot`/`cost` are the reservation the transaction
//     returned, if it returned one; `wrote` says whether it changed the state
//     (a reserve that found every slot held, or the read-only recheck after a
//     sleep, writes nothing); `before`/`after` are the ids of the concurrency
//     slots in the state before and after; `paused` is pausedUntil after.
// and, around the calls:
//   {"id","ready":true}            loaded; waiting for its start line
//   {"id","granted":t}             wait()/acquire() returned, at t (shared clock)
//   {"id","holding":true,"die":b}  holds a permit; with die, it will hold it
//                                  until killed (the parent sends SIGKILL)
//   {"id","released":t}            release() resolved
//   {"id","status":{...}}          what status() returned
//   {"id","judgedDead":pid,"t"}    the store proved that pid dead, at t
//   {"id","error":msg}             a call failed
//   {"id","done":true}             a clean finish
//
// Roles (cfg.role):
//   loop      calls wait() (cfg.call "wait") or acquire()/hold/release()
//             (cfg.call "acquire") from startAt until `until`
//   pauser    calls pause(cfg.pauseFor) at startAt + cfg.pauseAfter, then ends
//   commands  runs the JSON commands it reads on stdin after the start line,
//             one at a time, and answers each with {"id","ok":n}
import { createInterface } from 'node:readline';
import {
  FileStore, RateLimit, sharedClock,
  type Cost, type LimitOptions, type LimitState, type Permit, type RateLimitStore, type Transaction, type TxContext,
} from '../../ratelimit.ts';
import { emitLine } from '../emit.ts';

export interface FeatureConfig {
  id: string;
  file: string;
  role: 'loop' | 'pauser' | 'commands';
  limits: LimitOptions[];
  maxConcurrent?: number;
  serial?: boolean;
  slotLease?: number;
  /** loop: which call to make. */
  call?: 'wait' | 'acquire';
  /** loop: a random cost of 1..n of this unit on every call, besides the default. */
  randomCost?: { unit: string; most: number };
  /** loop with acquire: hold each permit for a random time in [min, max] ms. */
  holdMs?: [number, number];
  /** loop with acquire: the permit of this number (1 is the first) is held until the process is killed. */
  dieAfter?: number;
  /** Seeds the random costs and holds, so a failure can be replayed. */
  seed?: number;
  pauseAfter?: number;
  pauseFor?: number;
}
export type Command =
  | { op: 'acquire'; cost?: Cost; maxWait?: number }
  | { op: 'settle'; cost: Cost }
  | { op: 'release' }
  | { op: 'wait'; cost?: Cost }
  | { op: 'status' };

const cfg: FeatureConfig = JSON.parse(process.env.RL ?? '{}');
const emit = (o: object) => emitLine({ id: cfg.id, ...o });
const clock = sharedClock();
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
let seed = cfg.seed ?? 1;
const random = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);

// What the program is doing, so each recorded transaction says what it was for.
let op = 'start';
const file = new FileStore(cfg.file);
const ids = (s: LimitState | undefined) => (s?.slots ?? []).map((h) => h.id);
let seen: object | undefined;
// Each time the store proves another holder dead, say so at once with the
// time read then: a transaction's `now` is read before it runs, and the proof
// of death (a read of /proc) comes a moment later, by however long this
// process was descheduled in between.
const judging = (ctx: TxContext): TxContext => ({
  holder: ctx.holder,
  isDead: (h) => {
    const dead = ctx.isDead(h);
    if (dead) emit({ judgedDead: (JSON.parse(h) as { pid: number }).pid, t: clock.now() });
    return dead;
  },
});
const peek = <T>(tx: Transaction<T>): Transaction<T> => (state, now, ctx) => {
  const out = tx(state, now, judging(ctx));
  // A concurrency slot's transaction returns one result per waiter in this
  // process; these programs have one call in flight at a time, so at most one.
  const result = Array.isArray(out.result) ? (out.result as unknown[]).find((x) => typeof x === 'object') : out.result;
  const r = result as { at?: unknown; slot?: unknown; cost?: unknown } | undefined;
  const after = out.state ?? state;
  seen = {
    tx: op, now, wrote: out.state !== undefined, before: ids(state), after: ids(after),
    ...(after?.pausedUntil !== undefined ? { paused: after.pausedUntil } : {}),
    ...(typeof r === 'object' && r !== null && typeof r.at === 'number' ? { at: r.at, slot: r.slot, cost: r.cost } : {}),
  };
  return out;
};
// Emitted once the store has run the transaction and written its state.
const report = <T>(result: T): T => {
  if (seen) emit(seen);
  seen = undefined;
  return result;
};
const store: RateLimitStore = {
  name: file.name,
  update: (tx, options) => {
    const result = file.update(peek(tx), options);
    return result instanceof Promise ? result.then(report) : report(result);
  },
  updateSync: (tx, options) => report(file.updateSync(peek(tx), options)),
};
const limit = new RateLimit({
  limits: cfg.limits, store,
  ...(cfg.maxConcurrent !== undefined ? { maxConcurrent: cfg.maxConcurrent } : {}),
  ...(cfg.serial !== undefined ? { serial: cfg.serial } : {}),
  ...(cfg.slotLease !== undefined ? { slotLease: cfg.slotLease } : {}),
});

// Say we are loaded, then wait for the start line, {"startAt","until"} on the
// shared clock, so every process starts together however long it took to load.
const lines = createInterface({ input: process.stdin })[Symbol.asyncIterator]();
emit({ ready: true });
const first = await lines.next();
const go: { startAt: number; until: number } = JSON.parse(String(first.value));
const until = (t: number) => sleep(Math.max(0, (t - clock.now()) * 1000));

if (cfg.role === 'loop') {
  await until(go.startAt);
  let permits = 0;
  while (clock.now() < go.until) {
    const cost: Record<string, number> = {};
    if (cfg.randomCost) cost[cfg.randomCost.unit] = 1 + Math.floor(random() * cfg.randomCost.most);
    try {
      if (cfg.call === 'acquire') {
        op = 'acquire';
        const permit = await limit.acquire({ cost });
        emit({ granted: clock.now() });
        const die = ++permits === cfg.dieAfter;
        const [lo, hi] = cfg.holdMs ?? [0, 0];
        emit({ holding: true, die });
        if (die) await sleep(60_000); // held until the parent kills this process
        await sleep(lo + random() * (hi - lo));
        op = 'release';
        await permit.release();
        emit({ released: clock.now() });
      } else {
        op = 'wait';
        await limit.wait({ cost });
        emit({ granted: clock.now() });
      }
    } catch (error) {
      emit({ error: (error as Error).message });
      await sleep(5);
    }
  }
} else if (cfg.role === 'pauser') {
  await until(go.startAt + (cfg.pauseAfter ?? 0));
  op = 'pause';
  await limit.pause(cfg.pauseFor ?? 0);
} else {
  let permit: Permit | undefined;
  let n = 0;
  for (;;) {
    const next = await lines.next();
    if (next.done) break;
    const command = JSON.parse(next.value) as Command;
    op = command.op;
    try {
      if (command.op === 'acquire') {
        permit = await limit.acquire({ ...(command.cost ? { cost: command.cost } : {}), ...(command.maxWait !== undefined ? { maxWait: command.maxWait } : {}) });
        emit({ granted: clock.now() });
      } else if (command.op === 'settle') {
        await permit?.settle(command.cost);
      } else if (command.op === 'release') {
        await permit?.release();
        emit({ released: clock.now() });
      } else if (command.op === 'wait') {
        await limit.wait(command.cost ? { cost: command.cost } : {});
        emit({ granted: clock.now() });
      } else {
        emit({ status: await limit.status() });
      }
    } catch (error) {
      emit({ error: (error as Error).message });
    }
    emit({ ok: ++n });
  }
}
await limit.close();
emit({ done: true });
process.exit(0);
