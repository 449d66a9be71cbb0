// ratelimit.ts: a rate limiter in one file, for one process or for every
// process on the machine that names the same state file.
//
//   const limit = new RateLimit({ maxCount: 2, per: 5, file: 'api.ratelimit.json' });
//   await limit.wait();   // now call the API
//
// Where things live in this file:
//   1. Public API ........ RateLimit, its options and errors, the store seam.
//   2. Scheduling core ... reserve() and giveBack(): pure functions of
//                          (limit, state, now). All the rate arithmetic is here.
//   3. Stores ............ MemoryStore, and FileStore (lockfile + JSON state).
//   4. Clock ............. the one clock that processes on a host share.
//   5. Helpers ........... sleeping, validation, small file utilities.
//
// Safe to change: the constants at the top of sections 3 and 4 (they say what
// they trade), the warning texts, and anything in section 5. Change the core
// or the lock protocol only with the tests in ratelimit.test.ts and test/ at hand.
//
// Only node: built-ins are used, so the file runs under tsx, Node's own type
// stripping, Bun and Deno alike.

import {
  closeSync, constants, fstatSync, ftruncateSync, linkSync, lstatSync, openSync,
  readdirSync, readFileSync, readlinkSync, readSync, realpathSync, renameSync, unlinkSync, writeFileSync, writeSync,
} from 'node:fs';
import { hostname } from 'node:os';
import { basename, dirname, join, resolve } from 'node:path';
import { randomBytes } from 'node:crypto';

// ---------------------------------------------------------------------------
// 1. Public API
// ---------------------------------------------------------------------------

/** Options for {@link RateLimit}. Every duration is in seconds. */
export interface RateLimitOptions {
  /** How many calls may go ahead per `per` seconds. A positive integer. */
  maxCount: number;
  /** Length of the window in seconds. Finite and greater than 0. */
  per: number;
  /**
   * false (default), patient: calls are spaced evenly, one every
   * `per / maxCount` seconds. true, greedy: calls go at once until `maxCount`
   * is reached, and no window of `per` seconds ever holds more than `maxCount`.
   */
  greedy?: boolean;
  /**
   * Path of a JSON state file. Every process that names the same file shares
   * one limit; the lock `<file>.lock` lives beside it. Without `file` (and
   * without `store`) the limit lives in memory and covers this process only.
   */
  file?: string;
  /**
   * Seconds after which a lock whose holder cannot be proven dead is treated
   * as abandoned and broken. Default 10. See {@link DEFAULT_STALE_AFTER}.
   */
  staleAfter?: number;
  /** Somewhere else to keep the state, such as Redis. See {@link RateLimitStore}. */
  store?: RateLimitStore;
}

/** Options for one call of {@link RateLimit.wait}, {@link RateLimit.waitSync}, {@link RateLimit.tryAcquire}. */
export interface WaitOptions {
  /** Aborting rejects the wait with `signal.reason` and gives the slot back where it can. */
  signal?: AbortSignal;
  /** If the slot is further away than this many seconds, fail at once with {@link RateLimitTimeoutError}. */
  maxWait?: number;
  /** The call counts as this many calls: an integer from 1 to `maxCount`. Default 1. */
  weight?: number;
}

/** The settings a state was made for. */
export interface Limit {
  maxCount: number;
  per: number;
  greedy: boolean;
}

/**
 * The whole state of a limit. It is plain JSON so that any store can keep it.
 * Times are seconds on the store's clock.
 */
export interface LimitState extends Limit {
  /** Patient mode: the earliest time the next call may go. Absent when fresh. */
  next?: number;
  /** Greedy mode: grant times of the last window, oldest first, one entry per unit of weight. */
  grants?: number[];
}

/** What {@link reserve} hands out: enough to wait for the slot and to give it back. */
export interface Reservation {
  /** When the call may go, on the store's clock. */
  at: number;
  /** When the reservation was made, on the same clock. */
  now: number;
  weight: number;
  /** Patient mode: `next` before and after this reservation, to undo it. */
  before?: number;
  after?: number;
}

/**
 * A read-modify-write on the state. It gets the state (undefined when there is
 * none yet) and the store's current time in seconds, and returns the new state
 * to store (or none, to leave it as it is) and a result for the caller.
 * It is pure: a store that retries on conflict may run it more than once.
 */
export type Transaction<T> = (state: LimitState | undefined, now: number, ctx: TxContext) => { state?: LimitState; result: T };

/**
 * What a store tells a transaction about the caller, besides the time. The
 * core records `holder` with each concurrency slot a process holds, and asks
 * `isDead` about other holders' slots; both are opaque to the core.
 */
export interface TxContext {
  /** Names this process (or client) for as long as it runs. */
  readonly holder: string;
  /** True only when the holder named is proven gone. What cannot be judged is alive. */
  isDead(holder: string): boolean;
}

/**
 * Where a limit keeps its state. This is the seam between the scheduling
 * algorithm and storage: the in-memory store and the file store implement it,
 * and so can a store on Redis or a database.
 *
 * `update` must run the transaction atomically with respect to every other
 * user of the same state, and give it the time on one clock that all of them
 * share. `updateSync` is the same, blocking; `waitSync` and `tryAcquire` need it.
 */
export interface RateLimitStore {
  /** Names the state in messages, such as `state file "/tmp/api.json"`. */
  readonly name: string;
  update<T>(tx: Transaction<T>, options?: UpdateOptions): T | Promise<T>;
  updateSync?<T>(tx: Transaction<T>, options?: Pick<UpdateOptions, 'lockTimeout'>): T;
  /** Releases what the store holds (descriptors, files, connections). Later calls may reopen them. */
  close?(): void | Promise<void>;
}

/** How long a store may wait before it runs a transaction. Stores that never wait may ignore these. */
export interface UpdateOptions {
  /** Stop waiting (for a busy lock, say) when this aborts, and reject with its reason. */
  signal?: AbortSignal;
  /** Seconds to wait for a busy lock at most; then throw a {@link RateLimitTimeoutError}. */
  lockTimeout?: number;
}

/**
 * How long a lock may be held, in seconds, before it is broken even though
 * its holder still runs (or cannot be checked: another host, an unreadable
 * owner record). A holder keeps the lock for one read-modify-write, tens of
 * microseconds, so a lock this old means a holder that was paused (SIGSTOP,
 * a debugger, a suspended VM). Breaking sooner would risk a live holder's
 * update; waiting longer stalls every other process for that long.
 */
export const DEFAULT_STALE_AFTER = 10;

/**
 * The base of every error this file throws on purpose. `code` is stable, so
 * a program can branch on it rather than on the message:
 * - `ERR_RATELIMIT_TIMEOUT`: {@link RateLimitTimeoutError};
 * - `ERR_RATELIMIT_MISMATCH`: {@link RateLimitMismatchError};
 * - `ERR_RATELIMIT_STORE`: {@link RateLimitStoreError}.
 * Bad options are plain `TypeError`s and `RangeError`s that name the option.
 */
export class RateLimitError extends Error {
  readonly code: string;
  constructor(code: string, message: string, cause?: unknown) {
    super(message);
    this.name = new.target.name;
    this.code = code;
    // Set by hand: Error's `cause` option needs ES2022, and users compile for ES2020 too.
    if (cause !== undefined) Object.defineProperty(this, 'cause', { value: cause, writable: true, configurable: true });
  }
}

/** Rejects a wait whose slot is further away than `maxWait`. No slot was taken. */
export class RateLimitTimeoutError extends RateLimitError {
  /** Seconds the call would have had to wait (when the lock stayed busy: how long it waited for it). */
  readonly wouldWait: number;
  /** The `maxWait` it was given, in seconds. */
  readonly maxWait: number;
  constructor(wouldWait: number, maxWait: number, message?: string) {
    super('ERR_RATELIMIT_TIMEOUT', message ?? `ratelimit: the next slot is ${wouldWait.toFixed(3)} s away, more than maxWait (${maxWait} s)`);
    this.wouldWait = wouldWait;
    this.maxWait = maxWait;
  }
}

/** A state made for other settings than this limiter's. Nothing was taken or changed. */
export class RateLimitMismatchError extends RateLimitError {
  constructor(message: string) {
    super('ERR_RATELIMIT_MISMATCH', message);
  }
}

/** The store could not be used: a file that cannot be created, read or written. `cause` is the system error. */
export class RateLimitStoreError extends RateLimitError {
  /** The file (or other resource) concerned. */
  readonly path: string;
  constructor(message: string, path: string, cause?: unknown) {
    super('ERR_RATELIMIT_STORE', message, cause);
    this.path = path;
  }
}

/**
 * A rate limit. Calls are served first come, first served: a call reserves
 * the earliest slot that keeps the limit, after every slot reserved before it,
 * and then sleeps until that slot without holding any lock. A call is never
 * let through before its slot by the store's clock.
 */
export class RateLimit {
  readonly maxCount: number;
  readonly per: number;
  readonly greedy: boolean;
  /** Where the state lives: a {@link MemoryStore}, a {@link FileStore} or the store given. */
  readonly store: RateLimitStore;
  private readonly limit: Limit;

  /** Checks every option at once: TypeError for a wrong type, RangeError for a wrong value. */
  constructor(options: RateLimitOptions) {
    if (typeof options !== 'object' || options === null) {
      throw new TypeError(`ratelimit: options must be an object, got ${show(options)}`);
    }
    const { maxCount, per, greedy = false, file, staleAfter = DEFAULT_STALE_AFTER, store } = options;
    checkNumber('maxCount', maxCount, 'a positive integer', Number.isSafeInteger(maxCount) && maxCount >= 1);
    checkNumber('per', per, 'a finite number of seconds above 0', Number.isFinite(per) && per > 0);
    if (typeof greedy !== 'boolean') throw new TypeError(`ratelimit: greedy must be a boolean, got ${show(greedy)}`);
    checkNumber('staleAfter', staleAfter, 'a finite number of seconds above 0', Number.isFinite(staleAfter) && staleAfter > 0);
    if (file !== undefined && typeof file !== 'string') {
      throw new TypeError(`ratelimit: file must be a path string, got ${show(file)}`);
    }
    if (file === '') throw new RangeError('ratelimit: file must be a non-empty path, got ""');
    if (store !== undefined && (typeof store !== 'object' || store === null || typeof store.update !== 'function')) {
      throw new TypeError(`ratelimit: store must be an object with an update method, got ${show(store)}`);
    }
    if (store !== undefined && file !== undefined) {
      throw new TypeError('ratelimit: give either file or store, not both');
    }
    this.maxCount = maxCount;
    this.per = per;
    this.greedy = greedy;
    this.limit = { maxCount, per, greedy };
    this.store = store ?? (file === undefined ? new MemoryStore() : new FileStore(file, { staleAfter }));
  }

  /**
   * Resolves when the call may go ahead, to the seconds it was held back (the
   * time from the call to its reserved slot; 0 when it went at once).
   * Rejects with {@link RateLimitTimeoutError} at once, taking no slot, if the
   * slot is more than `maxWait` away, and with `signal.reason` if aborted.
   */
  async wait(options?: WaitOptions): Promise<number> {
    const { signal, maxWait, weight } = options === undefined ? DEFAULT_WAIT : this.checkWaitOptions(options);
    signal?.throwIfAborted();
    let r = this.store.update(this.reserveTx(weight, maxWait), { signal, lockTimeout: lockTimeout(maxWait) });
    // Await only a store that is really asynchronous: awaiting a plain value
    // still costs a trip through the microtask queue.
    if (isPromiseLike(r)) r = await r;
    if (typeof r === 'number') throw new RateLimitTimeoutError(r, maxWait);
    const waited = r.at - r.now;
    if (waited <= 0 && !signal?.aborted) return 0;
    try {
      await sleepUntil(performance.now() + waited * 1000, signal);
    } catch (reason) {
      await this.giveBackQuietly(r);
      throw reason;
    }
    return waited;
  }

  /**
   * The same as {@link wait}, but blocks the thread while it waits (with
   * `Atomics.wait`, so it uses no CPU). For plain scripts. Returns the
   * seconds the call was held back.
   */
  waitSync(options: Omit<WaitOptions, 'signal'> = {}): number {
    const { maxWait, weight } = this.checkWaitOptions(options);
    const r = this.syncStore('waitSync').updateSync(this.reserveTx(weight, maxWait), { lockTimeout: lockTimeout(maxWait) });
    if (typeof r === 'number') throw new RateLimitTimeoutError(r, maxWait);
    const waited = r.at - r.now;
    if (waited <= 0) return 0;
    sleepSyncUntil(performance.now() + waited * 1000);
    return waited;
  }

  /** Takes a slot only if one is free right now, and says whether it did. Never waits. */
  tryAcquire(options: Omit<WaitOptions, 'signal' | 'maxWait'> = {}): boolean {
    const { weight } = this.checkWaitOptions(options);
    try {
      return typeof this.syncStore('tryAcquire').updateSync(this.reserveTx(weight, 0), { lockTimeout: lockTimeout(0) }) !== 'number';
    } catch (error) {
      if (error instanceof RateLimitTimeoutError) return false; // the lock stayed busy
      throw error;
    }
  }

  /**
   * Releases what the limiter holds: for a file, its descriptors and owner
   * file. The limit itself (the shared state) is kept. Calling a method after
   * close() reopens what it needs.
   */
  close(): void | Promise<void> {
    return this.store.close?.();
  }

  // A transaction that reserves a slot, or, if it is more than maxWait away,
  // takes nothing and returns how long the wait would be.
  private reserveTx(weight: number, maxWait: number): Transaction<number | Reservation> {
    if (weight === 1 && maxWait === Infinity && this.plainTx) return this.plainTx;
    const tx: Transaction<number | Reservation> = (state, now) => {
      const r = reserve(this.limit, checkState(this.limit, state, this.store.name), now, weight);
      if (r.reservation.at - now > maxWait) return { result: r.reservation.at - now };
      return { state: r.state, result: r.reservation };
    };
    if (weight === 1 && maxWait === Infinity) this.plainTx = tx;
    return tx;
  }
  // The transaction of a plain wait() (weight 1, no maxWait), made once.
  private plainTx?: Transaction<number | Reservation>;

  private async giveBackQuietly(r: Reservation): Promise<void> {
    try {
      // Best effort, and quick: an aborted call should not wait long for a busy lock.
      await this.store.update((state) => ({ state: state && giveBack(this.limit, state, r), result: undefined }), { lockTimeout: 0.1 });
    } catch (error) {
      warn('RATELIMIT_GIVE_BACK_FAILED', `ratelimit: could not give back an aborted slot: ${(error as Error).message}`);
    }
  }

  private syncStore(method: string): Required<RateLimitStore> {
    if (typeof this.store.updateSync !== 'function') {
      const instead = method === 'tryAcquire' ? 'await wait({ maxWait: 0 })' : 'await wait()';
      throw new TypeError(`ratelimit: ${method} needs a store with updateSync, and ${this.store.name} has none; use ${instead}`);
    }
    return this.store as Required<RateLimitStore>;
  }

  private checkWaitOptions(options: WaitOptions): { signal?: AbortSignal; maxWait: number; weight: number } {
    if (typeof options !== 'object' || options === null) {
      throw new TypeError(`ratelimit: wait options must be an object, got ${show(options)}`);
    }
    const { signal, maxWait = Infinity, weight = 1 } = options;
    checkNumber('maxWait', maxWait, 'a number of seconds, 0 or more', maxWait >= 0);
    // The message is built only on failure: a template string here would be
    // built on every call.
    if (!(Number.isInteger(weight) && weight >= 1 && weight <= this.maxCount)) {
      checkNumber('weight', weight, `an integer from 1 to maxCount (${this.maxCount})`, false);
    }
    if (signal !== undefined && (typeof signal !== 'object' || signal === null || typeof signal.addEventListener !== 'function')) {
      throw new TypeError(`ratelimit: signal must be an AbortSignal, got ${show(signal)}`);
    }
    return { signal, maxWait, weight };
  }
}

// ---------------------------------------------------------------------------
// 2. Scheduling core. Pure: the time is an argument, nothing here sleeps or
//    touches a file, so every rule is tested with a made-up clock.
// ---------------------------------------------------------------------------

/**
 * Reserves `weight` calls at the earliest time, not before `now` and not
 * before any earlier reservation, that keeps the limit:
 * - patient: a call of weight w goes at `max(now, next)` and pushes `next` on
 *   by w·per/maxCount. `next` is advanced from the previous slot, never from
 *   when a timer fired, so spacing does not drift; an idle period does not
 *   bank a burst, since the slot is never earlier than `now`.
 * - greedy: an exact sliding window. A grant at `t` needs at most
 *   `maxCount - w` earlier grants in `(t - per, t]`, so grants exactly `per`
 *   apart are allowed and no half-open window of `per` seconds ever holds more
 *   than `maxCount`.
 * Returns the new state and the reservation; the input state is not changed.
 */
export function reserve(limit: Limit, state: LimitState | undefined, now: number, weight = 1): { state: LimitState; reservation: Reservation } {
  const { maxCount, per, greedy } = limit;
  if (!greedy) {
    const before = state?.next;
    const at = before === undefined ? now : Math.max(now, before);
    const after = at + (weight * per) / maxCount;
    return { state: { maxCount, per, greedy, next: after }, reservation: { at, now, weight, before, after } };
  }
  // Grants at or before now - per can never share a window with a grant at
  // now or later, so they are dropped; this keeps the state small.
  const grants = (state?.grants ?? []).filter((t) => t > now - per);
  let at = Math.max(now, grants.length ? grants[grants.length - 1] : now);
  const mustExpire = grants.length - (maxCount - weight); // how many grants must leave the window first
  if (mustExpire > 0) at = Math.max(at, grants[mustExpire - 1] + per);
  for (let i = 0; i < weight; i++) grants.push(at);
  return { state: { maxCount, per, greedy, grants: grants.slice(-maxCount) }, reservation: { at, now, weight } };
}

/**
 * Undoes a reservation where no later one depends on it, and returns the new
 * state, or undefined when nothing changes.
 * - patient: only the last reservation can be undone, since every later slot
 *   was spaced from it. A middle one stays spent; that errs on the side of
 *   fewer calls.
 * - greedy: the reservation's grants are removed. Removing a grant never puts
 *   a window over the limit, with one catch: the state keeps only the newest
 *   maxCount grants, and older ones it dropped may still be in the window.
 *   So a full list first gets copies of its oldest grant in front, standing
 *   in for the dropped ones (they were no newer); that errs on the safe side.
 */
export function giveBack(limit: Limit, state: LimitState, r: Reservation): LimitState | undefined {
  if (!limit.greedy) {
    if (state.next !== r.after) return undefined;
    const { next: _, ...rest } = state;
    return r.before === undefined ? rest : { ...rest, next: r.before };
  }
  const grants = [...(state.grants ?? [])];
  if (grants.lastIndexOf(r.at) === -1) return undefined;
  if (grants.length >= limit.maxCount) grants.unshift(...Array(r.weight).fill(grants[0]));
  let removed = 0;
  for (let i = grants.length - 1; i >= 0 && removed < r.weight; i--) {
    if (grants[i] === r.at) { grants.splice(i, 1); removed++; }
  }
  return { ...state, grants: grants.slice(-limit.maxCount) };
}

// The state a transaction may use: undefined when fresh, or one made for
// exactly these settings. Two programs that disagree about the limit must not
// silently fight over one state, so a mismatch is an error that says how to reset.
function checkState(limit: Limit, state: LimitState | undefined, storeName: string): LimitState | undefined {
  if (!state) return undefined;
  if (state.maxCount === limit.maxCount && state.per === limit.per && state.greedy === limit.greedy) return state;
  throw new RateLimitMismatchError(`ratelimit: ${storeName} was made for ${describe(state)}, but this limiter has ${describe(limit)}. ` +
    `Use the same settings everywhere, or delete that state to reset it.`);
}

function describe(l: Limit): string {
  return `maxCount=${l.maxCount}, per=${l.per}, ${l.greedy ? 'greedy' : 'patient'}`;
}

/**
 * For stores: checks a value read back from storage. Returns the state, or
 * undefined when the value is not a state (torn, foreign or damaged), in
 * which case the store should treat the state as lost.
 */
export function parseState(value: unknown): LimitState | undefined {
  const v = value as Partial<LimitState> | null;
  if (typeof v !== 'object' || v === null) return undefined;
  if (!Number.isSafeInteger(v.maxCount) || typeof v.per !== 'number' || typeof v.greedy !== 'boolean') return undefined;
  if (v.next !== undefined && !Number.isFinite(v.next)) return undefined;
  if (v.grants !== undefined && !(Array.isArray(v.grants) && v.grants.every(Number.isFinite))) return undefined;
  return v as LimitState;
}

/**
 * For stores whose clock changed under a state (a reboot, another clock):
 * moves every time in the state by `by` seconds, and puts none later than
 * one window after `now`, so no caller waits much longer than the limit asks.
 */
export function shiftState(state: LimitState, by: number, now: number): LimitState {
  const cap = now + state.per;
  const move = (t: number) => Math.min(t + by, cap);
  const out: LimitState = { ...state };
  if (state.next !== undefined) out.next = move(state.next);
  if (state.grants !== undefined) out.grants = state.grants.map(move);
  return out;
}

// ---------------------------------------------------------------------------
// 3. Stores
// ---------------------------------------------------------------------------

/**
 * Keeps the state in this process's memory: the default without `file`.
 * The clock is `performance.now()`, or the one given (for tests).
 */
export class MemoryStore implements RateLimitStore {
  readonly name = 'the in-memory state';
  private state?: LimitState;
  private readonly now: () => number;

  /** `now` returns the time in seconds; by default a monotonic clock. */
  constructor(now: () => number = () => performance.now() / 1000) {
    this.now = now;
  }

  update<T>(tx: Transaction<T>): T {
    return this.updateSync(tx);
  }

  updateSync<T>(tx: Transaction<T>): T {
    const { state, result } = tx(this.state, this.now(), MEMORY_CONTEXT);
    if (state) this.state = state;
    return result;
  }
}

// In one process, every holder is this process, alive while anything can ask.
const MEMORY_CONTEXT: TxContext = { holder: 'this process', isDead: () => false };

// Lock timing. A holder keeps the lock for one read-modify-write (tens of µs),
// so a waiter first retries quickly, sleeping the thread for a few µs to ms
// (SPIN_MS in all). Past that an async wait() yields to the event loop and
// retries on timers, so a stuck lock never blocks the caller's process.
const SPIN_MS = 2;
const MAX_BACKOFF_MS = 4;
// How often a waiter reads the lock's owner record to see whether the holder
// died. A read costs about 10 µs, against a lock normally held for tens of µs,
// so every 2 ms is cheap, and a crashed holder stalls the others for a few ms
// rather than the 100 ms that callers would notice.
const INSPECT_EVERY_MS = 2;
// A break lock (see breakStale) is held for microseconds; one older than this
// has a paused or dead breaker and is removed.
const BREAK_LOCK_STALE_S = 1;
// A state file over this size is cut back when a smaller state is written, so
// a file once filled with garbage does not stay large.
const SHRINK_SLACK = 4096;

const O_NOFOLLOW = constants.O_NOFOLLOW ?? 0;
let readBuffer = Buffer.alloc(4096);
// Returned when the lock was busy, or was lost mid-update: try again.
const RETRY = Symbol('retry');

/**
 * Keeps the state in a JSON file shared by every process that names it.
 *
 * The lock is `<file>.lock`. Each process writes its owner record (pid, host,
 * boot, process start time, token, time on the shared clock) into a file of
 * its own, `<file>.owner-<token>`, and takes the lock by hard-linking that
 * file to the lock's name. `link()` is atomic and fails if the name exists, so
 * the lock never exists without its record, even if the process is killed
 * at any instant. The lock is held for one read-modify-write of the state,
 * never while sleeping.
 *
 * A lock is broken when its holder is proven dead (same host: no such pid, a
 * zombie, or a pid reused by a newer process), at once; or when it is older
 * than `staleAfter` by the shared clock (a paused holder, another host, an
 * unreadable record). Breakers take a second lock, `<file>.lock.break`, and
 * re-check that the lock is the very one judged stale before removing it, so
 * when many processes find the same stale lock, one removes it.
 *
 * A holder that is only paused may wake up after its lock was broken, so:
 * the breaker first moves the state to a new inode (renewState), where the
 * sleeper's late write cannot land; the holder checks its lock after opening
 * the state and after writing, and starts over if it lost it; and it removes
 * its lock only within staleAfter/2 of taking it (release), so it never
 * removes a successor's.
 */
export class FileStore implements RateLimitStore {
  readonly name: string;
  /** Absolute path of the state file. */
  readonly path: string;
  /** How many stale locks this store has broken. */
  locksBroken = 0;
  /** How many times this store found its lock broken under it (it was paused past staleAfter) and started over. */
  locksLost = 0;
  private readonly lockPath: string;
  private readonly breakPath: string;
  private readonly staleAfter: number;
  private acquiredAt = 0;
  private state?: { fd: number; ino: number };
  private owner?: { path: string; fd: number; ino: number; token: string; seq: number; size: number; prefix: string };
  // The last state this process read or wrote: a fallback if the file is
  // deleted or corrupted under us, so its history is not simply forgotten.
  private last?: LimitState;
  private seenFile = false;
  // First sighting, on the shared clock, of each lock whose age cannot be
  // read from its record (unreadable record, or a different clock).
  private readonly firstSeen = new Map<string, number>();

  constructor(file: string, options: { staleAfter?: number } = {}) {
    this.path = resolve(file);
    this.name = `state file ${JSON.stringify(this.path)}`;
    this.lockPath = `${this.path}.lock`;
    this.breakPath = `${this.path}.lock.break`;
    this.staleAfter = options.staleAfter ?? DEFAULT_STALE_AFTER;
  }

  /** Runs `tx` on the state under the lock, blocking the thread while the lock is busy. */
  updateSync<T>(tx: Transaction<T>, options?: Pick<UpdateOptions, 'lockTimeout'>): T {
    const w = lockWait(options?.lockTimeout);
    for (;;) {
      const result = this.attempt(tx, w);
      if (result !== RETRY) return result;
      sleepSyncUntil(performance.now() + w.pause);
    }
  }

  /**
   * Runs `tx` on the state under the lock; returns a promise only if the
   * lock stays busy, which rejects with `signal.reason` if `signal` aborts
   * before the lock is taken.
   */
  update<T>(tx: Transaction<T>, options?: UpdateOptions): T | Promise<T> {
    const w = lockWait(options?.lockTimeout);
    // Most acquisitions succeed at once or within a few µs: stay synchronous
    // then, and only go async when the lock stays busy.
    while (performance.now() - w.started < SPIN_MS) {
      const result = this.attempt(tx, w);
      if (result !== RETRY) return result;
      sleepSyncUntil(performance.now() + w.pause);
    }
    return this.updateLater(tx, w, options?.signal);
  }

  private async updateLater<T>(tx: Transaction<T>, w: LockWait, signal?: AbortSignal): Promise<T> {
    for (;;) {
      signal?.throwIfAborted();
      const result = this.attempt(tx, w);
      if (result !== RETRY) return result;
      await new Promise((r) => setTimeout(r, Math.max(1, w.pause)));
    }
  }

  // One try: the transaction's result, or RETRY with w.pause set to the
  // milliseconds to back off (0 after losing the lock mid-update). Throws
  // once the lock has been busy for longer than the wait's lockTimeout.
  private attempt<T>(tx: Transaction<T>, w: LockWait): T | typeof RETRY {
    w.pause = this.tryLock(w);
    if (w.pause === 0) return this.locked(tx);
    const waited = performance.now() - w.started;
    if (waited > w.timeout) {
      throw new RateLimitTimeoutError(waited / 1000, w.timeout / 1000,
        `ratelimit: the lock on ${this.name} stayed busy for ${(waited / 1000).toFixed(3)} s, longer than this call may wait`);
    }
    return RETRY;
  }

  /** Closes the state file and removes this process's owner file. A later call reopens them. */
  close(): void {
    if (this.state) closeQuietly(this.state.fd);
    this.state = undefined;
    this.dropOwner();
  }

  // Who we are to the core (for concurrency slots), and the proof of death
  // for other holders: the same rule as for a lock's holder.
  private context(): TxContext {
    if (this.ctx) return this.ctx;
    const me = identity();
    const holder = JSON.stringify({ pid: process.pid, host: me.host, ns: me.ns, boot: me.boot, start: me.start });
    const isDead = (h: string): boolean => {
      let r: { pid?: unknown; host?: unknown; ns?: unknown; boot?: unknown; start?: unknown };
      try { r = JSON.parse(h); } catch { return false; }
      if (typeof r.pid !== 'number' || typeof r.start !== 'string' || !me.boot) return false;
      if (r.host !== me.host || r.ns !== me.ns || r.boot !== me.boot) return false;
      return !processAlive(r.pid, r.start);
    };
    return (this.ctx = { holder, isDead });
  }
  private ctx?: TxContext;

  // --- the lock -------------------------------------------------------------

  // One attempt to take the lock: 0 when taken, else milliseconds to back off.
  private tryLock(w: LockWait): number {
    const owner = this.stampOwner();
    try {
      linkSync(owner.path, this.lockPath);
      this.acquiredAt = performance.now();
      return 0;
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if (code === 'ENOENT') {
        // Our owner file vanished (someone cleaned the directory): make a new one.
        if (!exists(owner.path)) { this.dropOwner(); return 0.01; }
        throw fileError(error, 'create the lock', this.lockPath);
      }
      if (code !== 'EEXIST') throw fileError(error, 'create the lock', this.lockPath);
    }
    const now = performance.now();
    if (now - w.inspected >= INSPECT_EVERY_MS) {
      w.inspected = now;
      if (this.breakStale()) return 0.01;
    }
    w.attempt++;
    // Exponential backoff from 20 µs, with jitter so waiters don't retry in step.
    return Math.min(MAX_BACKOFF_MS, 0.02 * 2 ** Math.min(w.attempt, 10)) * (0.5 + Math.random());
  }

  // Holding the lock: read the state, run the transaction, write, release.
  private locked<T>(tx: Transaction<T>): T | typeof RETRY {
    let result: T | typeof RETRY = RETRY;
    try {
      result = this.transact(tx);
    } finally {
      // If the lock is no longer ours, we were paused past staleAfter and a
      // breaker took it; it gave the state file a new inode first (see
      // renewState), so whatever we wrote went to the old one, which nobody
      // reads. Then start over.
      if (!this.release(this.lockPath, this.acquiredAt, this.staleAfter)) { result = RETRY; this.locksLost++; }
    }
    return result;
  }

  // Removes a lock we hold, and says whether it was ours. Others may break
  // the lock once it is `breakableAfter` seconds old, so we remove it only
  // within half that time of taking it, reading the clock just before the
  // unlink: performance.now() makes no system call, so a SIGSTOP cannot land
  // between the check and the unlink (signals arrive on the way out of one).
  // A holder paused longer leaves the lock for a breaker (itself included)
  // once it is staleAfter old.
  private release(path: string, since: number, breakableAfter: number): boolean {
    if (!this.owns(path)) return false;
    if (performance.now() - since < breakableAfter * 500) {
      unlinkQuietly(path);
    } else {
      // Leave it, and stop using its inode: rewriting our owner record would
      // make the lock look fresh to breakers.
      this.dropOwner();
    }
    return true;
  }

  // True while the lock at `path` is our own hard link. Our owner file is
  // linked at a lock's name by nobody else, so its inode number identifies
  // our hold.
  private owns(path: string): boolean {
    return lstatSync(path, { throwIfNoEntry: false })?.ino === this.owner?.ino;
  }

  // Removes the lock if its holder is dead or it is older than staleAfter.
  // Returns true if the lock may now be free.
  private breakStale(): boolean {
    const seen = readSmall(this.lockPath);
    if (!seen) return true;
    const why = this.staleness(seen, this.staleAfter);
    if (!why) return false;
    // Only one breaker at a time: otherwise a slow breaker could remove the
    // fresh lock that a faster one's successor has just taken.
    if (!this.linkOwnerAt(this.breakPath)) {
      const breaker = readSmall(this.breakPath);
      if (breaker && this.staleness(breaker, BREAK_LOCK_STALE_S)) unlinkQuietly(this.breakPath);
      return false;
    }
    const since = performance.now();
    try {
      const now = readSmall(this.lockPath);
      if (!now) return true;
      if (now.ino !== seen.ino || now.text !== seen.text) return false; // it changed hands meanwhile
      // A holder that is not proven dead may wake up and write: move the
      // state to a new inode first, so that write lands in the old one.
      if (why !== 'dead') this.renewState();
      // As in release(): act only well within the break lock's own lease.
      if (performance.now() - since >= BREAK_LOCK_STALE_S * 500) return false;
      unlinkQuietly(this.lockPath);
      this.locksBroken++;
      const dead = parseOwner(seen.text);
      if (dead && why === 'dead') unlinkQuietly(`${this.path}.owner-${dead.token}`);
      if (why !== 'dead') {
        warn('RATELIMIT_LOCK_BROKEN', `ratelimit: broke the lock ${this.lockPath}: ${why}`);
      }
      return true;
    } finally {
      this.release(this.breakPath, since, BREAK_LOCK_STALE_S);
    }
  }

  // Copies the state file to a new inode under the same name. A paused holder
  // keeps a descriptor to the old inode; its late write goes there, unseen.
  private renewState(): void {
    const temp = `${this.path}.renew-${this.owner!.token}`;
    try {
      const fd = openSync(this.path, constants.O_RDONLY | O_NOFOLLOW);
      let content: Buffer;
      try { content = readFileSync(fd); } finally { closeSync(fd); }
      writeFileSync(temp, content, { mode: 0o600, flag: 'w' });
      renameSync(temp, this.path);
    } catch {
      unlinkQuietly(temp); // no state file, or not a plain one: nothing to protect
    }
  }

  // Why a lock may be broken, or '' while it must be respected.
  private staleness(lock: { ino: number; text: string }, staleAfter: number): string {
    const clock = sharedClock();
    const now = clock.now();
    const rec = parseOwner(lock.text);
    const me = identity();
    if (rec && rec.host === me.host && rec.ns === me.ns && rec.boot === me.boot && me.boot) {
      if (!processAlive(rec.pid, rec.start)) return 'dead';
    } else if (rec && rec.host === me.host && rec.boot !== me.boot && me.boot) {
      return 'dead'; // taken before this machine last booted
    }
    let age: number;
    if (rec && rec.clock === clock.tag) {
      age = now - rec.time;
    } else {
      const key = `${lock.ino}:${lock.text}`;
      const first = this.firstSeen.get(key) ?? now;
      if (this.firstSeen.size > 100) this.firstSeen.clear();
      this.firstSeen.set(key, first);
      age = now - first;
    }
    if (age <= staleAfter) return '';
    return rec ? `held by pid ${rec.pid} on ${rec.host} for ${age.toFixed(1)} s (staleAfter is ${staleAfter} s)`
      : `its owner record is unreadable and it is ${age.toFixed(1)} s old (staleAfter is ${staleAfter} s)`;
  }

  // Our owner file, with a fresh record (new sequence number and time) so each
  // hold is told apart from the last one by breakers that compare contents.
  private stampOwner(): NonNullable<FileStore['owner']> {
    const owner = this.owner ?? this.makeOwner();
    owner.seq++;
    const clock = sharedClock();
    const text = `${owner.prefix},"seq":${owner.seq},"clock":${JSON.stringify(clock.tag)},"time":${clock.now()}}`;
    // Pad to the longest record so far: rewriting in place never leaves the
    // tail of a longer one behind, and costs no truncate.
    owner.size = Math.max(owner.size, text.length);
    writeAt0(owner.fd, text.padEnd(owner.size));
    return owner;
  }

  private linkOwnerAt(path: string): boolean {
    try {
      linkSync(this.stampOwner().path, path);
      return true;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'EEXIST') return false;
      throw fileError(error, 'create the lock', path);
    }
  }

  private makeOwner(): NonNullable<FileStore['owner']> {
    const token = randomBytes(8).toString('hex');
    const path = `${this.path}.owner-${token}`;
    let fd: number;
    try {
      fd = openSync(path, constants.O_RDWR | constants.O_CREAT | constants.O_EXCL | O_NOFOLLOW, 0o600);
    } catch (error) {
      throw fileError(error, 'create the lock owner file', path);
    }
    const me = identity();
    // The parts of the owner record that never change, as the start of its JSON.
    const prefix = JSON.stringify({ pid: process.pid, host: me.host, ns: me.ns, boot: me.boot, start: me.start, token }).slice(0, -1);
    this.owner = { path, fd, ino: fstatSync(fd).ino, token, seq: 0, size: 0, prefix };
    ownerFiles.add(path);
    if (!exitHook) exitHook = process.once('exit', removeOwnerFiles);
    this.sweepOwners();
    return this.owner;
  }

  private dropOwner(): void {
    if (!this.owner) return;
    closeQuietly(this.owner.fd);
    unlinkQuietly(this.owner.path);
    ownerFiles.delete(this.owner.path);
    this.owner = undefined;
  }

  // Removes owner files left by dead processes of this host. Runs once per
  // process and store, when its own owner file is made.
  private sweepOwners(): void {
    const prefix = `${basename(this.path)}.owner-`;
    let names: string[];
    try { names = readdirSync(dirname(this.path)); } catch { return; }
    for (const name of names) {
      if (!name.startsWith(prefix)) continue;
      const path = join(dirname(this.path), name);
      if (path === this.owner?.path) continue;
      const file = readSmall(path);
      if (file && this.staleness(file, Infinity) === 'dead') unlinkQuietly(path);
    }
  }

  // --- the state ------------------------------------------------------------

  private transact<T>(tx: Transaction<T>): T | typeof RETRY {
    const clock = sharedClock();
    const { fd, size } = this.openState();
    {
      // If we were paused between taking the lock and opening the state, the
      // lock may have been broken meanwhile: then this descriptor may be the
      // live file, so stop before reading or writing. Once this check passes,
      // a breaker moves the state to a new inode before breaking our lock,
      // and anything we write through this descriptor goes to the old one.
      if (!this.owns(this.lockPath)) return RETRY;
      if (readBuffer.length < size) readBuffer = Buffer.alloc(size);
      const got = size ? readSync(fd, readBuffer, 0, size, 0) : 0;
      const now = clock.now();
      const current = this.decode(readBuffer.toString('utf8', 0, got), now);
      const { state, result } = tx(current, now, this.context());
      if (state) {
        const stored: StoredState = { clock: clock.tag, written: now, wall: Date.now() / 1000, state };
        const text = JSON.stringify(stored);
        const padded = size > text.length && size - text.length <= SHRINK_SLACK ? text.padEnd(size) : text;
        writeAt0(fd, padded);
        if (size > padded.length) ftruncateSync(fd, padded.length);
        this.last = state;
        this.seenFile = true;
      }
      return result;
    }
  }

  // The state file, open for read and write, never through a symbolic link.
  // The descriptor is kept between calls while the path still names the same
  // file (an open descriptor keeps its inode number from being reused), so
  // most calls cost one lstat instead of open, fstat and close.
  private openState(): { fd: number; size: number } {
    const seen = lstatSync(this.path, { throwIfNoEntry: false });
    if (this.state && seen?.isFile() && seen.ino === this.state.ino) return { fd: this.state.fd, size: seen.size };
    if (this.state) closeQuietly(this.state.fd);
    this.state = undefined;
    const flags = constants.O_RDWR | constants.O_CREAT | O_NOFOLLOW;
    for (let tries = 0; ; tries++) {
      try {
        const fd = openSync(this.path, flags, 0o600);
        const stat = fstatSync(fd);
        if (stat.isFile()) {
          this.state = { fd, ino: stat.ino };
          return { fd, size: stat.size };
        }
        closeSync(fd);
        throw Object.assign(new Error('not a regular file'), { code: 'ENOTREG' });
      } catch (error) {
        const code = (error as NodeJS.ErrnoException).code;
        if (code === 'ELOOP' && tries === 0) {
          // A symbolic link where the state should be. Remove the link itself
          // (its target is left alone) and start a real file in its place.
          warn('RATELIMIT_STATE_REPLACED', `ratelimit: ${this.name} was a symbolic link; replaced it with a plain file (the link's target was not touched)`);
          unlinkQuietly(this.path);
          continue;
        }
        if (code === 'EISDIR' || code === 'ENOTREG') {
          throw new RateLimitStoreError(`ratelimit: ${this.name} is a directory or other non-regular file; it must be a plain file (or not exist yet)`, this.path, error);
        }
        throw fileError(error, 'open the state file', this.path);
      }
    }
  }

  // Parses the file's text. A missing, empty or unreadable state falls back to
  // the last one this process knew, with a warning where something was lost.
  private decode(text: string, now: number): LimitState | undefined {
    if (text.trim() === '') {
      if (this.seenFile) warn('RATELIMIT_STATE_LOST', `ratelimit: ${this.name} was deleted or emptied; continuing from this process's last known state`);
      return this.last;
    }
    let raw: StoredState | undefined;
    let state: LimitState | undefined;
    try {
      raw = JSON.parse(text);
      state = isEnvelope(raw) ? parseState(raw.state) : undefined;
    } catch {
      state = undefined;
    }
    if (!raw || !state) {
      warn('RATELIMIT_STATE_LOST', `ratelimit: ${this.name} could not be parsed; starting it afresh from this process's last known state`);
      return this.last;
    }
    this.seenFile = true;
    const { clock, written, wall } = raw;
    const tag = sharedClock().tag;
    // Times written on another clock (before a reboot, or by a process with
    // no shared clock) are carried over by the wall clock, and none is put
    // more than `per` ahead, so no caller waits much more than `per` for them.
    // On the wall clock itself, a state written "in the future" means the
    // clock was stepped back: shift it so the step costs no extra waiting.
    let shift = 0;
    if (clock !== tag) shift = now - written - Math.max(0, Date.now() / 1000 - wall);
    else if (tag === 'wall' && written > now) shift = now - written;
    return shift === 0 ? state : shiftState(state, shift, now);
  }
}

interface LockWait { started: number; inspected: number; attempt: number; pause: number; timeout: number }
function lockWait(timeoutSeconds = Infinity): LockWait {
  const started = performance.now();
  return { started, inspected: started, attempt: 0, pause: 0, timeout: timeoutSeconds * 1000 };
}

// The state file: the core's state, wrapped with the clock it was written on.
interface StoredState { clock: string; written: number; wall: number; state: unknown }

function isEnvelope(v: unknown): v is StoredState {
  const e = v as Partial<StoredState> | null;
  return typeof e === 'object' && e !== null && typeof e.clock === 'string' && Number.isFinite(e.written) && Number.isFinite(e.wall);
}

interface OwnerRecord { pid: number; host: string; ns: string; boot: string; start: string; token: string; seq: number; clock: string; time: number }

function parseOwner(text: string): OwnerRecord | undefined {
  try {
    const r = JSON.parse(text);
    return typeof r?.pid === 'number' && typeof r.token === 'string' && typeof r.time === 'number' ? r : undefined;
  } catch {
    return undefined;
  }
}

// Owner files of this process, removed when it exits normally. Killed
// processes leave theirs; the next process to open that store sweeps them.
const ownerFiles = new Set<string>();
let exitHook: unknown;
function removeOwnerFiles(): void {
  for (const path of ownerFiles) unlinkQuietly(path);
}

// ---------------------------------------------------------------------------
// 4. Clock. Processes sharing a file must read time on one clock, and an
//    administrator stepping the wall clock must not move it.
// ---------------------------------------------------------------------------

/** A clock in seconds, and a tag naming it so readings on other clocks are recognised. */
export interface SharedClock {
  readonly tag: string;
  now(): number;
}

let clockCache: SharedClock | undefined;

/**
 * The clock the file store uses. On Linux it is the time since boot, which
 * every process shares and wall-clock steps do not move, tagged with the boot
 * id so readings from before a reboot are recognised. Node's
 * `process.hrtime` already reads it (CLOCK_MONOTONIC). Runtimes whose hrtime
 * counts from their own start (Bun, Deno) get it by lining up their monotonic
 * clock with the moment `/proc/uptime` ticks over (it counts in 10 ms steps,
 * so the tick edge is exact). Without /proc it is the wall clock, tagged
 * `wall`: then a clock step can let extra calls through or, stepped back, is
 * absorbed at the next write.
 */
export function sharedClock(): SharedClock {
  if (clockCache) return clockCache;
  const boot = identity().boot;
  const hr = () => Number(process.hrtime.bigint()) / 1e9;
  if (boot && readUptime() !== undefined) {
    if (hrtimeIsBootClock(hr)) return (clockCache = { tag: `boot:${boot}`, now: hr });
    const offset = uptimeOffset();
    if (offset !== undefined) {
      const mono = () => performance.now() / 1000 + offset;
      return (clockCache = { tag: `boot:${boot}`, now: mono });
    }
  }
  return (clockCache = { tag: 'wall', now: () => Date.now() / 1000 });
}

// Whether process.hrtime counts from boot (Node) rather than from this
// process's start (Bun, Deno). /proc/uptime is the boot clock truncated to
// 10 ms, so if hrtime is the boot clock, a read of /proc/uptime between two
// hrtime readings h1, h2 gives u with h1 - 10 ms < u <= h2. Read it between
// two hrtime readings close together: one that the scheduler preempted in
// between proves nothing either way, so it is tried again.
function hrtimeIsBootClock(hr: () => number): boolean {
  for (let tries = 0; tries < 50; tries++) {
    const h1 = hr();
    const u = readUptime();
    const h2 = hr();
    if (u === undefined) return false;
    if (h2 - h1 > 0.001) continue;
    return u <= h2 + 0.0005 && u > h1 - 0.0105;
  }
  return false;
}

// The boot clock minus performance.now()/1000. /proc/uptime is the boot
// clock truncated to 10 ms, so a read that returns u, made between
// performance.now() readings p1 and p2, proves
//   u - p2 <= offset < u + 10 ms - p1.
// Each read narrows [lo, hi]; a read the scheduler preempted only narrows it
// less, it can never make it wrong. The reads that narrow it most are the
// ones just before and just after /proc/uptime ticks over, so: sleep until
// just before the next tick is due (a task that has slept is seldom
// preempted in its first fraction of a millisecond), poll through it, and
// repeat until [lo, hi] is under CALIBRATION_TARGET_MS wide, or
// CALIBRATION_MAX_MS have passed (then the middle is still within half the
// width). Once per process; 10 to 30 ms unless the machine is very busy.
const CALIBRATION_TARGET_MS = 0.1;
const CALIBRATION_MAX_MS = 500;
function uptimeOffset(): number | undefined {
  const start = performance.now();
  let lo = -Infinity;
  let hi = Infinity;
  const sample = (): boolean => {
    const p1 = performance.now();
    const u = readUptime();
    const p2 = performance.now();
    if (u === undefined) return false;
    lo = Math.max(lo, u - p2 / 1000);
    hi = Math.min(hi, u + 0.01 - p1 / 1000);
    return true;
  };
  if (!sample()) return undefined;
  while ((hi - lo) * 1000 > CALIBRATION_TARGET_MS && performance.now() - start < CALIBRATION_MAX_MS) {
    // The next tick, as a boot-clock value, and the window in which it falls
    // on performance.now(): [(tick - hi) * 1000, (tick - lo) * 1000] ms.
    const tick = Math.floor((performance.now() / 1000 + (lo + hi) / 2) * 100 + 1) / 100;
    sleepSyncUntil((tick - hi) * 1000 - 0.2);
    const until = (tick - lo) * 1000 + 0.2;
    do { if (!sample()) break; } while (performance.now() < until);
    if (hi < lo) { lo = -Infinity; hi = Infinity; sample(); } // the clocks jumped (a suspend): start over
  }
  return (lo + hi) / 2;
}

function readUptime(): number | undefined {
  try {
    return parseFloat(readFileSync('/proc/uptime', 'latin1'));
  } catch {
    return undefined;
  }
}

// Who this process is, for owner records: host, pid namespace, boot id, and
// the process start time (so a reused pid is not mistaken for the holder).
let identityCache: { host: string; ns: string; boot: string; start: string } | undefined;
function identity(): { host: string; ns: string; boot: string; start: string } {
  if (identityCache) return identityCache;
  const read = (f: () => string) => { try { return f(); } catch { return ''; } };
  return (identityCache = {
    // Deno without --allow-sys=hostname refuses; another host's name is
    // only compared, so an empty one just makes every lock look foreign.
    host: read(hostname),
    ns: read(() => readlinkSync('/proc/self/ns/pid')),
    boot: read(() => readFileSync('/proc/sys/kernel/random/boot_id', 'latin1').trim()),
    start: read(() => procStart(readFileSync('/proc/self/stat', 'latin1'))),
  });
}

// Field 22 of /proc/<pid>/stat: start time in clock ticks since boot. The
// command name (field 2) may hold spaces, so count from its closing paren.
function procStart(stat: string): string {
  return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19] ?? '';
}

// A process is alive if /proc lists it, it is not a zombie, and it started
// when the owner record says (else its pid was reused). Without /proc, ask
// the kernel with signal 0.
function processAlive(pid: number, start: string): boolean {
  let stat: string;
  try {
    stat = readFileSync(`/proc/${pid}/stat`, 'latin1');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT' || (error as NodeJS.ErrnoException).code === 'ESRCH') {
      if (exists('/proc/self/stat')) return false;
    }
    try { process.kill(pid, 0); return true; } catch (e) { return (e as NodeJS.ErrnoException).code === 'EPERM'; }
  }
  const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
  if (state === 'Z' || state === 'X') return false;
  return !start || procStart(stat) === start;
}

// ---------------------------------------------------------------------------
// 5. Helpers
// ---------------------------------------------------------------------------

// How long a call may wait for a busy lock: its maxWait, but at least
// MIN_LOCK_WAIT_S, even for tryAcquire(). A lock is normally held for tens of
// µs, and waiters look for a dead holder every 2 ms, so 10 ms lets a call
// ride out ordinary contention and break a dead holder's lock, while a lock
// held by a stopped process cannot block it for staleAfter.
const MIN_LOCK_WAIT_S = 0.01;
function lockTimeout(maxWait: number): number {
  return Math.max(maxWait, MIN_LOCK_WAIT_S);
}

// setTimeout takes at most 2^31-1 ms (24.8 days); a longer delay fires after
// 1 ms. Long waits are therefore slept in chunks.
const MAX_TIMER_MS = 2 ** 31 - 1;

// Sleeps until performance.now() reaches `deadline`. Timers can fire up to a
// millisecond early, so the clock is checked on waking and the rest slept.
function sleepUntil(deadline: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const onAbort = () => { clearTimeout(timer); reject(signal!.reason); };
    const tick = () => {
      const left = deadline - performance.now();
      if (left <= 0) { signal?.removeEventListener('abort', onAbort); resolve(); return; }
      timer = setTimeout(tick, Math.min(Math.ceil(left), MAX_TIMER_MS));
    };
    if (signal?.aborted) { reject(signal.reason); return; }
    signal?.addEventListener('abort', onAbort, { once: true });
    tick();
  });
}

// Blocks the thread until performance.now() reaches `deadline`. Atomics.wait
// sleeps in the kernel: no CPU is used, and it works on the main thread in
// Node, Bun and Deno.
const sleeper = new Int32Array(new SharedArrayBuffer(4));
function sleepSyncUntil(deadline: number): void {
  for (let left = deadline - performance.now(); left > 0; left = deadline - performance.now()) {
    Atomics.wait(sleeper, 0, 0, Math.min(left, MAX_TIMER_MS));
  }
}

// Writes text at the start of the file. The Buffer form of writeSync is used
// because Deno (2.9) ignores the position in writeSync(fd, string, position)
// and writes at the descriptor's current offset, which appends.
function writeAt0(fd: number, text: string): void {
  const bytes = Buffer.from(text, 'utf8');
  writeSync(fd, bytes, 0, bytes.length, 0);
}

// The options of a plain wait(), so that it allocates and checks nothing.
const DEFAULT_WAIT: { signal?: AbortSignal; maxWait: number; weight: number } = Object.freeze({ maxWait: Infinity, weight: 1 });

function isPromiseLike<T>(v: T | PromiseLike<T>): v is PromiseLike<T> {
  return typeof (v as PromiseLike<T> | undefined)?.then === 'function';
}

/**
 * Every warning goes through here: type `RateLimitWarning` and a stable code,
 * so `process.on('warning')` can filter them (see the README's Errors table).
 */
function warn(code: string, message: string): void {
  process.emitWarning(message, { type: 'RateLimitWarning', code });
}

function checkNumber(name: string, value: unknown, expected: string, ok: boolean): void {
  if (typeof value !== 'number') throw new TypeError(`ratelimit: ${name} must be ${expected}, got ${show(value)}`);
  if (!ok) throw new RangeError(`ratelimit: ${name} must be ${expected}, got ${show(value)}`);
}

function show(value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value);
  if (typeof value === 'object' && value !== null) return Object.prototype.toString.call(value);
  return String(value);
}

// Reads a small file without following links: its inode and text, or
// undefined if it does not exist.
function readSmall(path: string): { ino: number; text: string } | undefined {
  let fd: number;
  try {
    fd = openSync(path, constants.O_RDONLY | O_NOFOLLOW);
  } catch {
    return undefined;
  }
  try {
    const buf = Buffer.alloc(4096);
    const n = readSync(fd, buf, 0, buf.length, 0);
    return { ino: fstatSync(fd).ino, text: buf.toString('utf8', 0, n) };
  } catch {
    return undefined;
  } finally {
    closeQuietly(fd);
  }
}

function exists(path: string): boolean {
  return lstatSync(path, { throwIfNoEntry: false }) !== undefined;
}

function unlinkQuietly(path: string): void {
  try { unlinkSync(path); } catch { /* already gone */ }
}

function closeQuietly(fd: number): void {
  try { closeSync(fd); } catch { /* already closed */ }
}

// Turns an fs error into one that says what we were doing and what to do.
function fileError(error: unknown, doing: string, path: string): RateLimitStoreError {
  const code = (error as NodeJS.ErrnoException).code;
  const dir = dirname(path);
  const why =
    code === 'ENOENT' ? `the directory ${JSON.stringify(dir)} does not exist` :
    code === 'EACCES' || code === 'EPERM' ? `permission denied in ${JSON.stringify(dir)}` :
    code === 'EROFS' ? `${JSON.stringify(dir)} is on a read-only file system` :
    code === 'ENOTDIR' ? `a part of ${JSON.stringify(dir)} is not a directory` :
    (error as Error).message;
  return new RateLimitStoreError(`ratelimit: cannot ${doing} ${JSON.stringify(path)}: ${why}`, path, error);
}

// ---------------------------------------------------------------------------
// 7. Command line. Run as a program, this file waits for a slot and then
//    runs a command:
//      node ratelimit.ts --file /var/tmp/api.json --max-count 10 --per 60 -- curl …
//    Imported, it does nothing: the check below reads import.meta and
//    argv[1] only, and everything else happens in cliMain(). This section
//    uses nothing but the public API above; `--help` lists what it does.
// ---------------------------------------------------------------------------

const CLI_HELP = `Usage:
  ratelimit.ts --file F [settings] [options] [-- command [args...]]
  ratelimit.ts pause --file F [settings] SECONDS
  ratelimit.ts status --file F [settings]

Waits for a slot under the limit kept in the state file F, which every process
naming F shares, then runs the command and exits with its exit status. Without
a command it waits and exits 0. 'pause' holds back every caller of F for
SECONDS (a number, or a Retry-After HTTP date); 'status' prints F's state as JSON.

Settings (may be left out once F exists: they are read back from it):
  --max-count N        N calls per --per seconds
  --per S              the window: seconds, or with a unit (500ms, 30s, 5m, 1h, 1d)
  --limit N/S[:UNIT]   one of several limits, e.g. --limit 500/1m --limit 30000/1m:tokens
  --greedy             let calls go in bursts up to the limit, not evenly spaced
  --max-concurrent N   at most N commands running at once across processes
Options:
  --max-wait S         exit 75 at once if the slot is further away than S
  --cost UNIT=N        this call counts N of UNIT (default calls=1); repeatable
  --verbose            say on stderr how long it waited
  --quiet              print nothing on stderr but bad-argument errors
  -h, --help           show this

Exit status: the command's own (128+n if signal n killed it); 75 if --max-wait
cannot be met; 64 for bad arguments or settings that disagree with F;
126 or 127 if the command cannot be run or is not found; 70 for other errors.
SIGINT, SIGTERM and SIGHUP are passed on to the command; one that arrives
while waiting gives the slot back and ends this program.`;

/** A bad command line: exit 64 with a one-line reason. */
class CliUsageError extends Error {}

interface CliArgs {
  sub: 'run' | 'pause' | 'status';
  file: string;
  /** The settings, or undefined to read them back from the state. */
  settings?: Record<string, unknown>;
  maxWait?: number;
  cost?: Record<string, number>;
  quiet: boolean;
  verbose: boolean;
  pauseFor?: number;
  command: string[];
}

const CLI_DURATION = /^(\d+(?:\.\d*)?|\.\d+)(ms|s|m|h|d)?$/;
const CLI_UNIT_SECONDS: Record<string, number> = { ms: 0.001, s: 1, m: 60, h: 3600, d: 86400 };

function cliSeconds(name: string, text: string): number {
  const m = CLI_DURATION.exec(text);
  if (!m) throw new CliUsageError(`${name} takes seconds, such as 60, 1.5, 500ms, 5m or 1h; got ${JSON.stringify(text)}`);
  return Number(m[1]) * (CLI_UNIT_SECONDS[m[2] ?? 's'] ?? 1);
}

function cliCount(name: string, text: string): number {
  if (!/^\d+$/.test(text)) throw new CliUsageError(`${name} takes a whole number, got ${JSON.stringify(text)}`);
  return Number(text);
}

function cliParse(argv: string[]): CliArgs {
  let i = 0;
  let sub: CliArgs['sub'] = 'run';
  if (argv[0] === 'pause' || argv[0] === 'status') { sub = argv[0]; i = 1; }
  let file: string | undefined;
  let maxCount: number | undefined;
  let per: number | undefined;
  let greedy = false;
  let maxConcurrent: number | undefined;
  const limits: { maxCount: number; per: number; unit?: string }[] = [];
  const args: CliArgs = { sub, file: '', quiet: false, verbose: false, command: [] };
  const positional: string[] = [];
  for (; i < argv.length; i++) {
    const arg = argv[i] ?? '';
    if (arg === '--') { args.command = argv.slice(i + 1); break; }
    if (!arg.startsWith('-') || /^-[\d.]/.test(arg)) { positional.push(arg); continue; }
    const eq = arg.startsWith('--') ? arg.indexOf('=') : -1;
    const name = eq > 0 ? arg.slice(0, eq) : arg;
    const value = (): string => {
      if (eq > 0) return arg.slice(eq + 1);
      const next = argv[++i];
      if (next === undefined) throw new CliUsageError(`${name} needs a value`);
      return next;
    };
    const flag = (): true => {
      if (eq > 0) throw new CliUsageError(`${name} takes no value`);
      return true;
    };
    switch (name) {
      case '--file': file = value(); break;
      case '--max-count': maxCount = cliCount(name, value()); break;
      case '--per': per = cliSeconds(name, value()); break;
      case '--greedy': greedy = flag(); break;
      case '--max-concurrent': maxConcurrent = cliCount(name, value()); break;
      case '--max-wait': args.maxWait = cliSeconds(name, value()); break;
      case '--limit': {
        const text = value();
        const m = /^(\d+)\/([^:]+)(?::([A-Za-z_][\w.-]*))?$/.exec(text);
        if (!m) throw new CliUsageError(`--limit takes COUNT/SECONDS or COUNT/SECONDS:UNIT, such as 500/60 or 30000/1m:tokens; got ${JSON.stringify(text)}`);
        const limit: { maxCount: number; per: number; unit?: string } = { maxCount: Number(m[1]), per: cliSeconds('--limit', m[2] ?? '') };
        if (m[3] !== undefined) limit.unit = m[3];
        limits.push(limit);
        break;
      }
      case '--cost': {
        const text = value();
        const m = /^([A-Za-z_][\w.-]*)=(\d+)$/.exec(text);
        if (!m) throw new CliUsageError(`--cost takes UNIT=N, such as tokens=1200; got ${JSON.stringify(text)}`);
        const cost = (args.cost ??= {});
        if (m[1]! in cost) throw new CliUsageError(`--cost ${m[1]} is given twice`);
        cost[m[1]!] = Number(m[2]);
        break;
      }
      case '--quiet': case '-q': args.quiet = flag(); break;
      case '--verbose': case '-v': args.verbose = flag(); break;
      default: throw new CliUsageError(`unknown option ${name}`);
    }
  }
  if (file === undefined) throw new CliUsageError('--file is required: the state file that every caller of this limit names');
  args.file = file;
  if (args.quiet && args.verbose) throw new CliUsageError('give --quiet or --verbose, not both');
  if (sub === 'pause') {
    if (positional.length !== 1) throw new CliUsageError('pause takes one argument: the seconds to pause (or a Retry-After date)');
    args.pauseFor = cliPauseSeconds(positional[0]!);
  } else if (positional.length) {
    throw new CliUsageError(`unexpected argument ${JSON.stringify(positional[0])}${sub === 'run' ? ' (the command to run goes after --)' : ''}`);
  }
  if (sub !== 'run' && args.command.length) throw new CliUsageError(`${sub} runs no command`);
  if (sub !== 'run' && (args.maxWait !== undefined || args.cost)) throw new CliUsageError(`--max-wait and --cost are for waiting, not for ${sub}`);
  // Settings: all of them, or none (then they are read back from the state).
  if (limits.length && (maxCount !== undefined || per !== undefined)) {
    throw new CliUsageError('give either --max-count with --per, or --limit, not both');
  }
  if (!limits.length && (maxCount === undefined) !== (per === undefined)) {
    throw new CliUsageError(maxCount === undefined ? '--per needs --max-count' : '--max-count needs --per');
  }
  if (limits.length || maxCount !== undefined) {
    const settings: Record<string, unknown> = limits.length ? { limits: limits.map((l) => (greedy ? { ...l, greedy } : l)) } : { maxCount, per, greedy };
    if (maxConcurrent !== undefined) settings.maxConcurrent = maxConcurrent;
    args.settings = settings;
  } else if (greedy || maxConcurrent !== undefined) {
    throw new CliUsageError(`${greedy ? '--greedy' : '--max-concurrent'} needs the limit too: --max-count and --per, or --limit`);
  }
  return args;
}

// Retry-After is delta-seconds or an HTTP date (RFC 9110, 10.2.3).
function cliPauseSeconds(text: string): number {
  if (CLI_DURATION.test(text)) return cliSeconds('pause', text);
  const at = /[A-Za-z]/.test(text) ? Date.parse(text) : NaN;
  if (Number.isNaN(at)) throw new CliUsageError(`pause takes seconds (such as 30 or 5m) or an HTTP date; got ${JSON.stringify(text)}`);
  return Math.max(0, (at - Date.now()) / 1000);
}

// The parts of the API that issue 12 adds. Until this copy of the library has
// them, the command falls back to wait() and says what it cannot do.
interface CliPermit { release(): void }
interface CliLimiter {
  wait(options?: WaitOptions): Promise<number>;
  acquire?(options: { signal?: AbortSignal; maxWait?: number; cost?: Record<string, number> }): Promise<CliPermit>;
  pause?(seconds: number): Promise<void>;
  status?(): Promise<unknown>;
}
type CliRateLimitClass = typeof RateLimit & { fromState?(file: string): RateLimit };

function cliLimiter(args: CliArgs): CliLimiter {
  if (args.settings) return new RateLimit({ ...args.settings, file: args.file } as unknown as RateLimitOptions) as unknown as CliLimiter;
  const fromState = (RateLimit as CliRateLimitClass).fromState;
  if (typeof fromState !== 'function') {
    throw new CliUsageError('give the settings (--max-count and --per, or --limit): this copy of ratelimit.ts cannot read them back from the state');
  }
  return fromState.call(RateLimit, args.file) as unknown as CliLimiter;
}

const CLI_SIGNALS = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const;

async function cliMain(argv: string[]): Promise<void> {
  const name = basename(process.argv[1] ?? 'ratelimit.ts');
  let quiet = argv.includes('--quiet') || argv.includes('-q');
  const say = (text: string) => { if (!quiet) process.stderr.write(`ratelimit: ${text}\n`); };
  // From the first moment, a signal must not kill this process outright: it
  // could be holding the state's lock, or a slot it should give back.
  const abort = new AbortController();
  let got: NodeJS.Signals | undefined;
  let child: { kill(signal: NodeJS.Signals): boolean } | undefined;
  const onSignal = (signal: NodeJS.Signals) => {
    got ??= signal;
    if (child) child.kill(signal);
    else abort.abort(signal);
  };
  for (const s of CLI_SIGNALS) process.on(s, onSignal);
  const finish = (code: number, signal?: NodeJS.Signals): void => {
    for (const s of CLI_SIGNALS) process.off(s, onSignal);
    // A program interrupted by SIGINT ends by SIGINT, so that a shell loop
    // around it stops too (the shell shows 130 either way). It is raised in
    // the last 'exit' listener, after the library's own have cleaned up.
    if (signal === 'SIGINT') {
      process.once('exit', () => { try { process.kill(process.pid, 'SIGINT'); } catch { /* then exit 130 */ } });
    }
    process.exitCode = code;
    process.stdout.write('', () => process.exit(code));
  };
  const signalCode = async (signal: NodeJS.Signals) => 128 + ((await import('node:os')).constants.signals[signal] ?? 0);

  let args: CliArgs;
  try {
    const head = argv.indexOf('--') < 0 ? argv : argv.slice(0, argv.indexOf('--'));
    if (head.includes('--help') || head.includes('-h')) { process.stdout.write(`${CLI_HELP.replaceAll('ratelimit.ts', name)}\n`); return finish(0); }
    args = cliParse(argv);
    quiet = args.quiet;
    if (quiet) process.removeAllListeners('warning');
  } catch (error) {
    if (!(error instanceof CliUsageError)) throw error;
    process.stderr.write(`ratelimit: ${error.message} (see ${name} --help)\n`);
    return finish(64);
  }

  let permit: CliPermit | undefined;
  try {
    const limit = cliLimiter(args);
    if (args.sub === 'pause' || args.sub === 'status') {
      const method = limit[args.sub];
      if (typeof method !== 'function') { say(`this copy of ratelimit.ts has no ${args.sub}()`); return finish(70); }
      const result = await method.call(limit, args.pauseFor ?? 0);
      if (args.sub === 'status') process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
      return finish(0);
    }
    const started = performance.now();
    if (typeof limit.acquire === 'function') {
      const options: { signal: AbortSignal; maxWait?: number; cost?: Record<string, number> } = { signal: abort.signal };
      if (args.maxWait !== undefined) options.maxWait = args.maxWait;
      if (args.cost) options.cost = args.cost;
      permit = await limit.acquire(options);
    } else {
      const { calls, ...others } = args.cost ?? {};
      if (Object.keys(others).length) throw new CliUsageError(`this copy of ratelimit.ts counts calls only; --cost ${Object.keys(others)[0]} needs the limits of issue 12`);
      const options: WaitOptions = { signal: abort.signal };
      if (args.maxWait !== undefined) options.maxWait = args.maxWait;
      if (calls !== undefined) options.weight = calls;
      await limit.wait(options);
    }
    if (args.verbose) say(`waited ${((performance.now() - started) / 1000).toFixed(3)} s for a slot of ${resolve(args.file)}`);
  } catch (error) {
    permit?.release();
    if (got) return finish(await signalCode(got), got);
    const e = error as Error & { code?: unknown };
    if (e instanceof RateLimitTimeoutError) { say(e.message.replace(/^ratelimit: /, '')); return finish(75); }
    const usage = e instanceof CliUsageError || e instanceof TypeError || e instanceof RangeError ||
      e.code === 'ERR_RATELIMIT_MISMATCH' || e.code === 'ERR_RATELIMIT_NO_STATE';
    process.stderr.write(`ratelimit: ${String(e.message).replace(/^ratelimit: /, '')}${usage ? ` (see ${name} --help)` : ''}\n`);
    return finish(usage ? 64 : 70);
  }
  if (got) { permit?.release(); return finish(await signalCode(got), got); }
  if (!args.command.length) { permit?.release(); return finish(0); }

  const { spawn } = await import('node:child_process');
  const [command, ...rest] = args.command as [string, ...string[]];
  const ran = await new Promise<{ code: number | null; signal: NodeJS.Signals | null; error?: NodeJS.ErrnoException }>((done) => {
    const c = spawn(command, rest, { stdio: 'inherit' });
    // process.kill, not c.kill: Deno (2.9) reports a child that c.kill()
    // signalled as killed by that signal, even when it caught it and exited.
    child = { kill: (signal) => { try { return c.pid !== undefined && process.kill(c.pid, signal); } catch { return false; } } };
    c.once('error', (error) => done({ code: null, signal: null, error }));
    c.once('exit', (code, signal) => { child = undefined; done({ code, signal }); });
  });
  permit?.release();
  if (ran.error) {
    const missing = ran.error.code === 'ENOENT';
    say(`cannot run ${JSON.stringify(command)}: ${missing ? 'no such command' : ran.error.message}`);
    return finish(missing ? 127 : 126);
  }
  if (ran.signal) return finish(await signalCode(ran.signal), ran.signal);
  return finish(ran.code ?? 70);
}

// True when this file is the program being run, not a module imported by
// one. Deno, Bun and Node 22.18+/24 say so in import.meta.main; elsewhere
// (Node 20 with tsx) argv[1] is the script's path, compared through realpath
// so that a symbolic link to this file counts as this file.
function cliIsMain(): boolean {
  const meta = import.meta as ImportMeta & { main?: unknown };
  if (typeof meta.main === 'boolean') return meta.main;
  const script = process.argv[1];
  if (!script || typeof meta.url !== 'string' || !meta.url.startsWith('file:')) return false;
  try {
    return realpathSync(script) === realpathSync(new URL(meta.url));
  } catch {
    return false;
  }
}

if (cliIsMain()) {
  cliMain(process.argv.slice(2)).catch((error: unknown) => {
    process.stderr.write(`ratelimit: ${(error as Error)?.stack ?? String(error)}\n`);
    process.exit(70);
  });
}
