// SPDX-License-Identifier: MIT
// ratelimit v0.2.0 (one file; copy it next to your script, and keep this header)
//
// ratelimit.ts: a rate limiter in one file, for one process or for every
// process on the machine that names the same state file.
//
//   const limit = new RateLimit({ maxCount: 2, per: 5, file: '/var/tmp/api.ratelimit.json' });
//   await limit.wait();   // now call the API
//
// Where things live in this file:
//   1. Public API ........ RateLimit, its options, permits and errors, the
//                          store seam, retryAfter().
//   2. Scheduling core ... reserve(), giveBack(), settle(), release(),
//                          pauseState(), statusOf(): pure functions of
//                          (settings, state, now). All the rate arithmetic is here.
//   3. Stores ............ MemoryStore, and FileStore (lockfile + JSON state).
//   4. Clock ............. the one clock that processes on a host share.
//   5. Helpers ........... sleeping, validation, small file utilities.
//
// Safe to change: the constants at the end of section 2 and the top of
// sections 3 and 4 (each says what it trades), the warning texts, and
// anything in section 5. Change the core or the lock protocol only with the
// tests in ratelimit.test.ts and test/ at hand.
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

/** One limit: at most `maxCount` units of `unit` per `per` seconds. */
export interface LimitOptions {
  /** How many units may go ahead per `per` seconds. A positive integer. */
  maxCount: number;
  /** Length of the window in seconds. Finite and greater than 0. */
  per: number;
  /** Greedy or patient for this limit alone; by default the limiter's `greedy`. */
  greedy?: boolean | undefined;
  /** What the limit counts: `"calls"` (the default), or a name that costs use, such as `"tokens"`. */
  unit?: string | undefined;
}

/**
 * Options for {@link RateLimit}. Every duration is in seconds. Give one limit
 * as `maxCount` and `per`, or several as `limits`.
 */
export interface RateLimitOptions {
  /** How many calls may go ahead per `per` seconds. A positive integer. */
  maxCount?: number | undefined;
  /** Length of the window in seconds. Finite and greater than 0. */
  per?: number | undefined;
  /**
   * false (default), patient: calls are spaced evenly, one every
   * `per / maxCount` seconds. true, greedy: calls go at once until `maxCount`
   * is reached, and no window of `per` seconds ever holds more than `maxCount`.
   */
  greedy?: boolean | undefined;
  /**
   * Several limits that every call must satisfy together, such as requests
   * per minute, tokens per minute and requests per day. A call is reserved in
   * all of them in one transaction, or in none.
   */
  limits?: readonly LimitOptions[] | undefined;
  /**
   * At most this many calls in flight at once, across every process sharing
   * the state. A call holds its place from {@link RateLimit.acquire} until
   * {@link Permit.release}. Use `acquire()` or `run()`; `wait()` cannot know
   * when a call ends.
   */
  maxConcurrent?: number | undefined;
  /**
   * One call at a time, and each call's spacing counts from the moment the
   * previous one was released rather than from its start: an API that slows
   * down is never sent a new call while the last one is still running. Implies
   * `maxConcurrent: 1`.
   */
  serial?: boolean | undefined;
  /**
   * Seconds a concurrency slot is kept for a holder that cannot be proven
   * dead but has stopped renewing it (a paused process, another machine).
   * A held permit renews its slot every third of this. Default 60.
   */
  slotLease?: number | undefined;
  /**
   * Path of a JSON state file. Every process that names the same file shares
   * one limit; the lock `<file>.lock` lives beside it. A relative path is
   * resolved against the current directory, so prefer an absolute one.
   * Without `file` (and without `store`) the limit lives in memory and covers
   * this process only.
   */
  file?: string | undefined;
  /**
   * Seconds after which a lock whose holder cannot be proven dead is treated
   * as abandoned and broken. Default 10. See {@link DEFAULT_STALE_AFTER}.
   */
  staleAfter?: number | undefined;
  /** Somewhere else to keep the state, such as Redis. See {@link RateLimitStore}. */
  store?: RateLimitStore | undefined;
}

/** What a call costs in each unit, such as `{ tokens: 1200 }`. A call costs `{ calls: 1 }` unless it says otherwise. */
export type Cost = Readonly<Record<string, number>>;

/** Options for one call of {@link RateLimit.wait}, {@link RateLimit.acquire} and the rest. */
export interface WaitOptions {
  /** Aborting rejects the wait with `signal.reason` and gives the slot back where it can. */
  signal?: AbortSignal | undefined;
  /** If the call would wait longer than this many seconds, fail at once with {@link RateLimitTimeoutError}. */
  maxWait?: number | undefined;
  /** The call counts as this many calls: `weight: n` is `cost: { calls: n }`. Default 1. */
  weight?: number | undefined;
  /** What the call costs in each unit; each must be an integer from 0 to its limit's `maxCount`. */
  cost?: Cost | undefined;
}

/**
 * A call that has its slot: from {@link RateLimit.acquire}. Release it when
 * the call is over (it frees the concurrency slot, if the limiter has
 * `maxConcurrent`), and settle it when the real cost is known.
 * `await using permit = await limit.acquire()` releases it at the end of the block.
 */
export interface Permit {
  /** Seconds the call was held back before it got the permit. */
  readonly waited: number;
  /** What the permit is charged now, per unit (the estimate until settled). */
  readonly cost: Cost;
  /**
   * Replaces the charged cost with the real one, for the units given (others
   * keep theirs). An overrun charges the extra and pushes later slots back; a
   * refund gives capacity back where no later reservation depends on it, as
   * an aborted wait does. May be called again (each call charges or refunds
   * the difference from the last), and after release. A permit settled more
   * than a window after its slot changes nothing: its window has passed.
   * Never rejects: a store failure is reported as a warning.
   */
  settle(actual: Cost): Promise<void>;
  /** Ends the call: frees its concurrency slot. Idempotent; never rejects (a failure is a warning). */
  release(): Promise<void>;
  [Symbol.asyncDispose](): Promise<void>;
}

/** One limit's settings, as the state records them. */
export interface LimitSettings {
  readonly maxCount: number;
  readonly per: number;
  readonly greedy: boolean;
  readonly unit: string;
}

/** Everything a state is made for. Two limiters share a state only when these agree. */
export interface Settings {
  /** In a fixed order (by unit, then per, then maxCount), so every process agrees on it. */
  readonly limits: readonly LimitSettings[];
  /** Infinity when there is no cap. */
  readonly maxConcurrent: number;
  readonly serial: boolean;
}

/** What {@link RateLimit.status} reports. Times are seconds from now. */
export interface RateLimitStatus {
  limits: Array<LimitSettings & {
    /** Units counted against the current window, including those reserved ahead. */
    used: number;
    /** `maxCount - used`, never below 0. */
    remaining: number;
    /** Seconds until a call costing one unit of this limit could go, by this limit alone. */
    nextIn: number;
  }>;
  /** Seconds until a call of the default cost could go, every limit and any pause included. */
  nextIn: number;
  /** Seconds left of a pause set by {@link RateLimit.pause}; 0 when none. */
  pausedFor: number;
  /** Calls holding a concurrency slot now, in every process. */
  inFlight: number;
  /** Calls queued for a concurrency slot, in every process. */
  waiting: number;
  /** null when there is no cap. */
  maxConcurrent: number | null;
}

/**
 * The whole state of a limiter: plain JSON, so any store can keep it. Times
 * are seconds on the store's clock. Stores never look inside: they call
 * {@link parseState} and {@link shiftState}.
 */
export interface LimitState {
  /** The format's version. A newer one is refused with a clear error, not overwritten. */
  v: typeof STATE_VERSION;
  limits: LimitSettings[];
  maxConcurrent?: number;
  serial?: boolean;
  /** One per limit, in the same order. */
  lanes: Lane[];
  /** No call goes before this time. */
  pausedUntil?: number;
  /** Concurrency slots held now. */
  slots?: Slot[];
  /** Callers waiting for a concurrency slot, oldest first: a freed slot goes to them in turn. */
  queue?: Slot[];
}

/**
 * One limit's history. Patient: `next`, the earliest time the next call may
 * go. Greedy: `runs`, the grants still in a window, as [time, units] pairs,
 * oldest first, so a big limit (tokens per minute) stays a few pairs long.
 */
export interface Lane {
  next?: number;
  runs?: Array<[number, number]>;
}

/** A concurrency slot: who holds it, and until when its lease runs. */
export interface Slot {
  id: string;
  holder: string;
  until: number;
}

/** What {@link reserve} hands out: enough to wait for the slot, give it back, settle and release it. */
export interface Reservation {
  /** When the call may go, on the store's clock. */
  at: number;
  /** When the reservation was made, on the same clock. */
  now: number;
  /** Units charged to each limit, in the settings' order. */
  cost: number[];
  /** The concurrency slot held, if any. */
  slot?: string;
}

/**
 * A read-modify-write on the state. It gets the state (undefined when there is
 * none yet), the store's current time in seconds and the caller's context,
 * and returns the new state to store (or none, to leave it as it is) and a
 * result for the caller. It is pure: a store that retries on conflict may run
 * it more than once.
 */
export type Transaction<T> = (state: LimitState | undefined, now: number, ctx: TxContext) => { state?: LimitState | undefined; result: T };

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
 * The state is opaque: a store keeps what the transaction returns and hands
 * it back, checked with {@link parseState} when it was serialized.
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
  signal?: AbortSignal | undefined;
  /** Seconds to wait for a busy lock at most; then throw a {@link RateLimitTimeoutError}. */
  lockTimeout?: number | undefined;
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

/** The version of this file, also written into the state (see {@link LimitState}). */
export const VERSION = '0.2.0';

/**
 * The base of every error this file throws on purpose. `code` is stable, so
 * a program can branch on it rather than on the message:
 * - `ERR_RATELIMIT_TIMEOUT`: {@link RateLimitTimeoutError};
 * - `ERR_RATELIMIT_MISMATCH`: {@link RateLimitMismatchError};
 * - `ERR_RATELIMIT_STORE`: {@link RateLimitStoreError};
 * - `ERR_RATELIMIT_NO_STATE`: {@link RateLimit.fromState} found no state.
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

/** Rejects a wait that would last longer than `maxWait`. No slot was taken. */
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
 * Seconds to wait, from a `Retry-After` header: delta-seconds (`"120"`) or an
 * HTTP date (RFC 9110, 10.2.3). Takes a `Headers` object, a plain object of
 * headers (any case), or the header's value. Undefined when there is none or
 * it cannot be read; never negative.
 */
export function retryAfter(headers: { get(name: string): string | null } | Readonly<Record<string, unknown>> | string | null | undefined, now: number = Date.now()): number | undefined {
  let value: unknown = headers;
  if (typeof headers === 'object' && headers !== null) {
    const get = (headers as { get?: unknown }).get;
    if (typeof get === 'function') value = get.call(headers, 'retry-after');
    else value = Object.entries(headers).find(([k]) => k.toLowerCase() === 'retry-after')?.[1];
  }
  if (Array.isArray(value)) value = value[0];
  if (typeof value !== 'string' || value.trim() === '') return undefined;
  const text = value.trim();
  if (/^\d+$/.test(text)) return Number(text);
  // An HTTP date starts with the day's name (IMF-fixdate, and the two
  // obsolete forms); Date.parse alone would also take "-5" or "1.5".
  if (!/^[A-Za-z]{3}/.test(text)) return undefined;
  const date = Date.parse(text);
  return Number.isNaN(date) ? undefined : Math.max(0, (date - now) / 1000);
}

/**
 * A rate limit. Calls are served first come, first served: a call reserves
 * the earliest slot that keeps every limit, after every slot reserved before
 * it, and then sleeps until that slot without holding any lock. A call is
 * never let through before its slot by the store's clock.
 *
 * Which method to use: `await wait()` before each call, in most code;
 * `acquire()` (or `run()`) when the limiter has `maxConcurrent`, or when the
 * real cost is known only after the call (`permit.settle()`); `waitSync()`
 * in a plain script; `tryAcquire()` to skip rather than wait; `pause()` when
 * the API says to back off; `status()` to see what is left.
 */
export class RateLimit {
  /** The limits, in the state's fixed order. */
  readonly limits: readonly LimitSettings[];
  /** The first limit's `maxCount`: the limit, in the one-limit form. */
  readonly maxCount: number;
  /** The first limit's `per`. */
  readonly per: number;
  /** The first limit's mode. */
  readonly greedy: boolean;
  /** Infinity when there is no cap. */
  readonly maxConcurrent: number;
  readonly serial: boolean;
  /** Where the state lives: a {@link MemoryStore}, a {@link FileStore} or the store given. */
  readonly store: RateLimitStore;
  private readonly settings: Settings;
  private readonly slotLease: number;
  // What a call costs when it names no cost: one call, in every "calls" limit.
  private readonly defaultCost: number[];
  // The options of a plain call, so that it allocates and checks nothing.
  private readonly plainCall: Call;

  /**
   * Checks every option at once: TypeError for a wrong type or an unknown
   * name, RangeError for a wrong value.
   */
  constructor(options: RateLimitOptions) {
    if (typeof options !== 'object' || options === null) {
      throw new TypeError(`ratelimit: options must be an object, got ${show(options)}`);
    }
    checkKnown('option', options, OPTION_NAMES);
    const { greedy = false, file, staleAfter = DEFAULT_STALE_AFTER, store, serial = false, slotLease = DEFAULT_SLOT_LEASE_S } = options;
    if (typeof greedy !== 'boolean') throw new TypeError(`ratelimit: greedy must be a boolean, got ${show(greedy)}`);
    if (typeof serial !== 'boolean') throw new TypeError(`ratelimit: serial must be a boolean, got ${show(serial)}`);
    let specs: readonly LimitOptions[];
    if (options.limits !== undefined) {
      if (options.maxCount !== undefined || options.per !== undefined) {
        throw new TypeError('ratelimit: give either maxCount and per, or limits, not both');
      }
      if (!Array.isArray(options.limits) || options.limits.length === 0) {
        throw new TypeError(`ratelimit: limits must be a non-empty array of { maxCount, per }, got ${show(options.limits)}`);
      }
      specs = options.limits;
    } else {
      specs = [{ maxCount: options.maxCount as number, per: options.per as number }];
    }
    const given = specs.map((spec, i) => checkLimit(spec, options.limits === undefined ? '' : `limits[${i}].`, greedy));
    const [first] = given;
    if (!first) throw new TypeError('ratelimit: limits must not be empty');
    const limits = given.slice().sort(compareLimits);
    limits.forEach((l, i) => {
      const previous = limits[i - 1];
      if (previous && compareLimits(previous, l) === 0) throw new RangeError(`ratelimit: limits holds the same limit twice: ${describeLimit(l)}`);
    });
    const { maxConcurrent = serial ? 1 : Infinity } = options;
    checkNumber('maxConcurrent', maxConcurrent, 'a positive integer', maxConcurrent === Infinity || (Number.isSafeInteger(maxConcurrent) && maxConcurrent >= 1));
    if (serial && maxConcurrent !== 1) throw new RangeError(`ratelimit: serial means one call at a time, so maxConcurrent must be 1 or left out, got ${maxConcurrent}`);
    checkNumber('slotLease', slotLease, 'a finite number of seconds above 0', Number.isFinite(slotLease) && slotLease > 0);
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
    this.limits = limits;
    this.maxCount = first.maxCount;
    this.per = first.per;
    this.greedy = first.greedy;
    this.maxConcurrent = maxConcurrent;
    this.serial = serial;
    this.slotLease = slotLease;
    this.settings = { limits, maxConcurrent, serial };
    this.defaultCost = limits.map((l) => (l.unit === 'calls' ? 1 : 0));
    this.plainCall = { maxWait: Infinity, cost: this.defaultCost };
    this.store = store ?? (file === undefined ? new MemoryStore() : new FileStore(file, { staleAfter }));
  }

  /**
   * A limiter with the settings recorded in an existing state file, for
   * tools that only know the file (the command line uses it). Throws a
   * {@link RateLimitError} with code `ERR_RATELIMIT_NO_STATE` if there is none.
   */
  static fromState(file: string, options: { staleAfter?: number | undefined } = {}): RateLimit {
    const none = () => new RateLimitError('ERR_RATELIMIT_NO_STATE',
      `ratelimit: there is no state at ${JSON.stringify(resolve(file))} yet, so its settings must be given`);
    if (!exists(resolve(file))) throw none();
    const store = new FileStore(file, options.staleAfter === undefined ? {} : { staleAfter: options.staleAfter });
    const state = store.updateSync((s) => ({ result: s }));
    if (!state) throw none();
    return new RateLimit({
      limits: state.limits, store, serial: state.serial === true,
      maxConcurrent: state.serial === true ? undefined : state.maxConcurrent,
    });
  }

  /**
   * Resolves when the call may go ahead, to the seconds it was held back (the
   * time from the call to its reserved slot; 0 when it went at once).
   * Rejects with {@link RateLimitTimeoutError} at once, taking no slot, if the
   * slot is more than `maxWait` away, and with `signal.reason` if aborted.
   */
  async wait(options?: WaitOptions): Promise<number> {
    if (this.maxConcurrent !== Infinity) this.noSlots('wait');
    const call = options === undefined ? this.plainCall : this.checkCall(options);
    call.signal?.throwIfAborted();
    const update = call === this.plainCall ? PLAIN_UPDATE : { signal: call.signal, lockTimeout: lockTimeout(call.maxWait) };
    let r = this.store.update(this.reserveTx(call), update);
    // Await only a store that is really asynchronous: awaiting a plain value
    // still costs a trip through the microtask queue.
    if (isPromiseLike(r)) r = await r;
    if (typeof r === 'number') throw new RateLimitTimeoutError(r, call.maxWait);
    if (isBusy(r)) throw new Error('unreachable: no concurrency cap');
    if (r.at - r.now <= 0 && !call.signal?.aborted) return 0;
    return this.sleepThrough(r, call, performance.now());
  }

  /**
   * The same as {@link wait}, but blocks the thread while it waits (with
   * `Atomics.wait`, so it uses no CPU). For plain scripts. Returns the
   * seconds the call was held back.
   */
  waitSync(options: Omit<WaitOptions, 'signal'> = {}): number {
    this.noSlots('waitSync');
    const call = this.checkCall(options);
    const store = this.syncStore('waitSync');
    const started = performance.now();
    let r = store.updateSync(this.reserveTx(call), { lockTimeout: lockTimeout(call.maxWait) });
    let waited = 0;
    for (;;) {
      if (typeof r === 'number') throw new RateLimitTimeoutError(r, call.maxWait);
      if (isBusy(r)) throw new Error('unreachable: no concurrency cap');
      const left = r.at - r.now;
      if (left <= 0) return waited;
      waited += left;
      sleepSyncUntil(performance.now() + left * 1000);
      const again = store.updateSync(this.recheckTx(r, call, started), { lockTimeout: lockTimeout(call.maxWait) });
      if (again === undefined) return waited;
      r = again;
    }
  }

  /** Takes a slot only if one is free right now, and says whether it did. Never waits. */
  tryAcquire(options: Omit<WaitOptions, 'signal' | 'maxWait'> = {}): boolean {
    this.noSlots('tryAcquire');
    const call = { ...this.checkCall(options), maxWait: 0 };
    try {
      return typeof this.syncStore('tryAcquire').updateSync(this.reserveTx(call), { lockTimeout: lockTimeout(0) }) === 'object';
    } catch (error) {
      if (error instanceof RateLimitTimeoutError) return false; // the lock stayed busy
      throw error;
    }
  }

  /**
   * Waits as {@link wait} does and returns a {@link Permit}: the call's
   * handle, to release when the call is over and to settle when its real cost
   * is known. With `maxConcurrent`, it also waits for a free concurrency slot
   * (polling the store while every slot is held), and holds it until release.
   */
  async acquire(options?: WaitOptions): Promise<Permit> {
    const call = options === undefined ? this.plainCall : this.checkCall(options);
    call.signal?.throwIfAborted();
    const started = performance.now();
    const slotted = this.maxConcurrent !== Infinity;
    const id = slotted ? randomBytes(6).toString('hex') : undefined;
    const tx = slotted ? this.reserveTx(call, id) : this.reserveTx(call);
    for (let attempt = 0; ; attempt++) {
      let r = this.store.update(tx, { signal: call.signal, lockTimeout: lockTimeout(call.maxWait) });
      if (isPromiseLike(r)) r = await r;
      if (typeof r === 'number') throw new RateLimitTimeoutError(r, call.maxWait);
      if (!isBusy(r)) {
        const waitedForSlot = (performance.now() - started) / 1000;
        const waited = await this.sleepThrough(r, call, started);
        return new PermitHandle(this, r, waitedForSlot + waited);
      }
      // Every slot is held, and we are in the queue for one. A release in
      // this process wakes us at once; other processes' releases are seen by
      // polling, backing off from 1 ms to SLOT_POLL_MAX_MS so a long call
      // costs few store reads; the first in the queue, whose turn is next,
      // backs off only to SLOT_POLL_FIRST_MS. Giving up leaves the queue.
      const elapsed = (performance.now() - started) / 1000;
      try {
        if (elapsed >= call.maxWait) {
          throw new RateLimitTimeoutError(elapsed, call.maxWait,
            `ratelimit: every one of the ${this.maxConcurrent} concurrency slots stayed held for ${elapsed.toFixed(3)} s, longer than maxWait (${call.maxWait} s)`);
        }
        const pollMs = Math.min(r.place === 0 ? SLOT_POLL_FIRST_MS : SLOT_POLL_MAX_MS, 2 ** attempt) * (0.5 + Math.random());
        await sleepUntil(performance.now() + Math.min(pollMs, (call.maxWait - elapsed) * 1000), call.signal, this.slotFreed);
      } catch (reason) {
        await this.leaveQueueQuietly(id);
        throw reason;
      }
    }
  }

  /** Runs `fn` under a permit (see {@link acquire}) and releases it however `fn` ends. */
  async run<T>(fn: (permit: Permit) => T | PromiseLike<T>, options?: WaitOptions): Promise<T> {
    if (typeof fn !== 'function') throw new TypeError(`ratelimit: run needs a function, got ${show(fn)}`);
    const permit = await this.acquire(options);
    try {
      return await fn(permit);
    } finally {
      await permit.release();
    }
  }

  /**
   * Holds every call of every process sharing the state for at least
   * `seconds` from now: new reservations go after it, and calls already
   * asleep on a slot look at the state again when they wake, and take a new
   * slot after the pause. A pause only ever extends an earlier one. Use it
   * when the API answers 429 (see {@link retryAfter}).
   */
  async pause(seconds: number): Promise<void> {
    checkNumber('pause seconds', seconds, 'a finite number of seconds, 0 or more', Number.isFinite(seconds) && seconds >= 0);
    await this.store.update((state, now) => {
      const current = this.checkState(state);
      return { state: pauseState(this.settings, current, now, seconds), result: undefined };
    });
  }

  /** What is used and left of each limit, any pause, and the calls in flight. Changes nothing. */
  async status(): Promise<RateLimitStatus> {
    return this.store.update((state, now, ctx) => ({ result: statusOf(this.settings, this.checkState(state), now, this.defaultCost, ctx) }));
  }

  /**
   * Releases what the limiter holds: for a file, its descriptors and owner
   * file. The limit itself (the shared state) is kept, and calling a method
   * after close() reopens what it needs.
   */
  close(): void | Promise<void> {
    return this.store.close?.();
  }

  [Symbol.dispose](): void {
    void this.close();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  // --- used by permits ------------------------------------------------------

  /** @internal Charges `cost` instead of what the permit carries; returns the reservation as it now stands. */
  settleReservation(r: Reservation, cost: number[]): Reservation | Promise<Reservation> {
    return this.store.update((state, now) => {
      const current = this.checkState(state);
      if (!current) return { result: r };
      const out = settle(this.settings, current, r, cost, now);
      return { state: out.state, result: out.reservation };
    });
  }

  /** @internal Frees a permit's slot (and, in serial mode, spaces the next call from now). */
  releaseReservation(r: Reservation): void | Promise<void> {
    if (r.slot === undefined && !this.serial) return; // nothing in the state to change
    const done = this.store.update((state, now) => {
      const current = this.checkState(state);
      return { state: current && release(this.settings, current, r, now), result: undefined };
    });
    this.slotFreed.notify();
    return done;
  }

  /** @internal Extends a permit's slot lease. */
  renewSlot(slot: string): void | Promise<void> {
    return this.store.update((state, now) => {
      const current = this.checkState(state);
      return { state: current && renewSlot(current, slot, now + this.slotLease), result: undefined };
    });
  }

  /** @internal Checks a cost given to settle(): per limit, what it now is. */
  costVector(cost: Cost, base: readonly number[]): number[] {
    return this.toCostVector(cost, undefined, base);
  }

  /** @internal The seconds a permit renews its slot lease after. */
  get renewEveryS(): number {
    return this.slotLease / 3;
  }

  // --- private --------------------------------------------------------------

  // In-process waiters for a concurrency slot, woken by a release here.
  private readonly slotFreed: Wakeup = new Wakeup();

  // A transaction that reserves a slot, or returns its place in the queue when every
  // concurrency slot is held, or, if the slot is more than maxWait away,
  // takes nothing and returns how long the wait would be.
  private reserveTx(call: Call, slotId?: string): Transaction<number | Reservation | Busy> {
    const plain = call === this.plainCall && slotId === undefined;
    if (plain) {
      // The plain wait(): no slot, no maxWait, so the core's output is the
      // transaction's. Made once; the hot path of the whole file.
      const { settings, store } = this;
      this.plainTx ??= (state, now) => takeRate(settings, state && checkState(settings, state, store.name), now, this.defaultCost);
      return this.plainTx;
    }
    const tx: Transaction<number | Reservation | Busy> = (state, now, ctx) => {
      const slot = slotId === undefined ? undefined
        : { id: slotId, holder: ctx.holder, until: now + this.slotLease, queueUntil: now + QUEUE_LEASE_S, isDead: (h: string) => ctx.isDead(h) };
      const out = reserve(this.settings, state && this.checkState(state), now, call.cost, slot);
      if (!out.reservation) return { state: out.state === state ? undefined : out.state, result: { place: out.place ?? 0 } };
      if (out.reservation.at - now > call.maxWait) return { result: out.reservation.at - now };
      return { state: out.state, result: out.reservation };
    };
    return tx;
  }
  // The transaction of a plain wait() (cost 1 call, no maxWait), made once.
  private plainTx?: Transaction<number | Reservation | Busy>;

  // After sleeping until its slot: undefined if the call may go; a new
  // reservation if a pause was set meanwhile (the old slot is given back and
  // one after the pause taken); the seconds it would wait in all, if that
  // would pass maxWait (then it holds nothing).
  private recheckTx(r: Reservation, call: Call, startedMs: number): Transaction<Reservation | number | undefined> {
    return (state, now) => {
      const current = this.checkState(state);
      if (!current || current.pausedUntil === undefined || current.pausedUntil <= r.at) return { result: undefined };
      const moved = reschedule(this.settings, current, r, now);
      const total = (performance.now() - startedMs) / 1000 + (moved.reservation.at - now);
      if (total > call.maxWait) return { state: giveBack(this.settings, current, r) ?? current, result: total };
      return { state: moved.state, result: moved.reservation };
    };
  }

  // Sleeps until the reservation's slot, then looks for a pause set
  // meanwhile, and sleeps again if there is one. On abort, gives the slot
  // back. Returns the seconds slept by the reservations' times.
  private async sleepThrough(r: Reservation, call: Call, startedMs: number): Promise<number> {
    let waited = 0;
    for (;;) {
      const left = r.at - r.now;
      waited += Math.max(0, left);
      try {
        if (left > 0 || call.signal?.aborted) await sleepUntil(performance.now() + left * 1000, call.signal);
      } catch (reason) {
        await this.giveBackQuietly(r);
        throw reason;
      }
      if (left <= 0) return waited;
      let again = this.store.update(this.recheckTx(r, call, startedMs), { signal: call.signal, lockTimeout: lockTimeout(call.maxWait) });
      if (isPromiseLike(again)) again = await again;
      if (again === undefined) return waited;
      if (typeof again === 'number') throw new RateLimitTimeoutError(again, call.maxWait, `ratelimit: a pause moved this call's slot to ${again.toFixed(3)} s after it began waiting, more than maxWait (${call.maxWait} s)`);
      r = again;
    }
  }

  private async leaveQueueQuietly(id: string | undefined): Promise<void> {
    if (id === undefined) return;
    try {
      await this.store.update((state) => ({ state: state && leaveQueue(state, id), result: undefined }), { lockTimeout: 0.1 });
      this.slotFreed.notify(); // the next waiter in this process may be first now
    } catch (error) {
      warn('RATELIMIT_GIVE_BACK_FAILED', `ratelimit: could not leave the queue for a concurrency slot: ${(error as Error).message}`);
    }
  }

  private async giveBackQuietly(r: Reservation): Promise<void> {
    try {
      // Best effort, and quick: an aborted call should not wait long for a busy lock.
      await this.store.update((state) => {
        const current = this.checkState(state);
        return { state: current && giveBack(this.settings, current, r), result: undefined };
      }, { lockTimeout: 0.1 });
      this.slotFreed.notify();
    } catch (error) {
      warn('RATELIMIT_GIVE_BACK_FAILED', `ratelimit: could not give back an aborted slot: ${(error as Error).message}`);
    }
  }

  private checkState(state: LimitState | undefined): LimitState | undefined {
    return checkState(this.settings, state, this.store.name);
  }

  private noSlots(method: string): void {
    if (this.maxConcurrent !== Infinity) {
      throw new TypeError(`ratelimit: ${method}() cannot hold a concurrency slot (this limiter has maxConcurrent ${this.maxConcurrent}); use acquire() and release(), or run(fn)`);
    }
  }

  private syncStore(method: string): Required<Pick<RateLimitStore, 'updateSync'>> & RateLimitStore {
    if (typeof this.store.updateSync !== 'function') {
      const instead = method === 'tryAcquire' ? 'await wait({ maxWait: 0 })' : 'await wait()';
      throw new TypeError(`ratelimit: ${method} needs a store with updateSync, and ${this.store.name} has none; use ${instead}`);
    }
    return this.store as Required<Pick<RateLimitStore, 'updateSync'>> & RateLimitStore;
  }


  private checkCall(options: WaitOptions): Call {
    if (typeof options !== 'object' || options === null) {
      throw new TypeError(`ratelimit: wait options must be an object, got ${show(options)}`);
    }
    checkKnown('wait option', options, WAIT_OPTION_NAMES);
    const { signal, maxWait = Infinity, weight, cost } = options;
    checkNumber('maxWait', maxWait, 'a number of seconds, 0 or more', maxWait >= 0);
    if (signal !== undefined && (typeof signal !== 'object' || signal === null || typeof signal.addEventListener !== 'function')) {
      throw new TypeError(`ratelimit: signal must be an AbortSignal, got ${show(signal)}`);
    }
    const vector = weight === undefined && cost === undefined ? this.defaultCost : this.toCostVector(cost, weight, this.defaultCost);
    return signal === undefined ? { maxWait, cost: vector } : { signal, maxWait, cost: vector };
  }

  // A cost, checked, as units per limit. Units not named keep `base`'s.
  private toCostVector(cost: Cost | undefined, weight: number | undefined, base: readonly number[]): number[] {
    const units = new Set(this.limits.map((l) => l.unit));
    const given = new Map<string, number>();
    if (weight !== undefined) {
      const most = Math.min(...this.limits.filter((l) => l.unit === 'calls').map((l) => l.maxCount));
      if (!units.has('calls')) throw new RangeError('ratelimit: weight counts calls, and no limit counts calls');
      if (!(Number.isInteger(weight) && weight >= 1 && weight <= most)) {
        checkNumber('weight', weight, `an integer from 1 to maxCount (${most})`, false);
      }
      given.set('calls', weight);
    }
    if (cost !== undefined) {
      if (typeof cost !== 'object' || cost === null) throw new TypeError(`ratelimit: cost must be an object of units, such as { tokens: 100 }, got ${show(cost)}`);
      for (const [unit, n] of Object.entries(cost)) {
        if (!units.has(unit)) {
          throw new RangeError(`ratelimit: cost names the unit ${JSON.stringify(unit)}, which no limit counts (they count ${[...units].map((u) => JSON.stringify(u)).join(', ')})${nearest(unit, [...units])}`);
        }
        if (unit === 'calls' && weight !== undefined) throw new TypeError('ratelimit: give weight or cost.calls, not both');
        const most = Math.min(...this.limits.filter((l) => l.unit === unit).map((l) => l.maxCount));
        if (!(Number.isInteger(n) && n >= 0 && n <= most)) checkNumber(`cost.${unit}`, n, `an integer from 0 to its limit's maxCount (${most})`, false);
        given.set(unit, n);
      }
    }
    return this.limits.map((l, i) => given.get(l.unit) ?? base[i] ?? 0);
  }
}

// ---------------------------------------------------------------------------
// 2. Scheduling core. Pure: the time is an argument, nothing here sleeps or
//    touches a file, so every rule is tested with a made-up clock.
// ---------------------------------------------------------------------------

/**
 * Reserves a call of `cost` (units per limit, in the settings' order) at the
 * earliest time, not before `now`, not before a pause ends, and not before
 * any earlier reservation of a limit it is charged to, that keeps every limit:
 * - patient: a call costing c goes no earlier than the limit's `next`, and
 *   pushes it on to `at + c·per/maxCount`. `next` is advanced from the slot,
 *   never from when a timer fired, so spacing does not drift; an idle period
 *   does not bank a burst, since the slot is never earlier than `now`.
 * - greedy: an exact sliding window. A grant of c at `t` needs at most
 *   `maxCount - c` earlier units in `(t - per, t]`, so grants exactly `per`
 *   apart are allowed and no half-open window of `per` seconds ever holds more
 *   than `maxCount`.
 * Each rule only ever allows a later time once it allows an earlier one, so
 * the latest of the limits' earliest times satisfies them all.
 * With `slot` (a limiter with maxConcurrent), it also takes a concurrency
 * slot, first reclaiming those whose holder is dead or whose lease ran out;
 * if none is free to this caller it reserves nothing, and returns no
 * reservation and its `place` in the queue of waiters instead.
 * Returns the new state; the input state is not changed.
 */
export function reserve(s: Settings, state: LimitState | undefined, now: number, cost: readonly number[], slot?: SlotRequest): { state: LimitState; reservation?: Reservation; place?: number } {
  if (!slot) {
    const rate = takeRate(s, state, now, cost);
    return { state: rate.state, reservation: rate.result };
  }
  const live = (h: Slot) => h.until > now && !slot.isDead(h.holder);
  const slots = (state?.slots ?? []).filter(live);
  const queue = (state?.queue ?? []).filter(live);
  // First come, first served: a free slot goes to the oldest waiters in the
  // queue; a newcomer gets one only if there are more free slots than waiters.
  const free = s.maxConcurrent - slots.length;
  const place = queue.findIndex((h) => h.id === slot.id);
  if (free > (place === -1 ? queue.length : place)) {
    slots.push({ id: slot.id, holder: slot.holder, until: slot.until });
    const rate = takeRate(s, state, now, cost);
    rate.state.slots = slots;
    if (place !== -1) queue.splice(place, 1);
    setList(rate.state, 'queue', queue);
    rate.result.slot = slot.id;
    return { state: rate.state, reservation: rate.result };
  }
  // Busy: join the queue, or renew our place in it once half its lease is
  // gone (so a waiter's polls do not each write the state). The state
  // changes only then, or if dead holders' slots or places were reclaimed.
  const mine = queue[place];
  const at = mine ? place : queue.length;
  if (!mine) queue.push({ id: slot.id, holder: slot.holder, until: slot.queueUntil });
  else if (mine.until - now < (slot.queueUntil - now) / 2) queue[place] = { ...mine, until: slot.queueUntil };
  const unchanged = state !== undefined && mine !== undefined && queue[place] === mine &&
    slots.length === (state.slots?.length ?? 0) && queue.length === (state.queue?.length ?? 0);
  if (unchanged) return { state, place: at };
  const out = fresh(s, state);
  setList(out, 'slots', slots);
  setList(out, 'queue', queue);
  return { state: out, place: at };
}

/** Takes a waiter's place out of the concurrency queue (it gave up waiting). */
export function leaveQueue(state: LimitState, id: string): LimitState | undefined {
  if (!state.queue?.some((h) => h.id === id)) return undefined;
  const out: LimitState = { ...state };
  setList(out, 'queue', state.queue.filter((h) => h.id !== id));
  return out;
}

/** For {@link reserve}: the concurrency slot to take, and how to tell a dead holder. */
export interface SlotRequest {
  id: string;
  holder: string;
  /** When the slot's lease runs out unless renewed. */
  until: number;
  /** When its place in the queue of waiters lapses, if it stops polling. */
  queueUntil: number;
  isDead(holder: string): boolean;
}

/**
 * The earliest time a call of `cost` could go, as {@link reserve} would
 * compute it, without reserving anything.
 */
export function earliest(s: Settings, state: LimitState | undefined, now: number, cost: readonly number[]): number {
  let at = now;
  if (state === undefined) return at;
  if (state.pausedUntil !== undefined && state.pausedUntil > at) at = state.pausedUntil;
  for (const [i, limit] of s.limits.entries()) {
    const c = cost[i] ?? 0;
    if (c === 0) continue;
    const lane = state.lanes[i];
    if (!limit.greedy) {
      if (lane?.next !== undefined && lane.next > at) at = lane.next;
    } else {
      at = Math.max(at, greedyEarliest(limit, lane?.runs, now, c));
    }
  }
  return at;
}

/**
 * Undoes a reservation where no later one depends on it, frees its
 * concurrency slot, and returns the new state, or undefined when nothing
 * changes.
 * - patient: only a limit's last reservation can be undone, since every later
 *   slot was spaced from it. A middle one stays spent; that errs on the side
 *   of fewer calls.
 * - greedy: the reservation's units are removed. Removing units never puts a
 *   window over the limit. The lane holds every unit still in a window, so
 *   nothing it dropped can matter; units merged into a later run (see
 *   addUnits) cannot be told apart any more, and stay spent.
 */
export function giveBack(s: Settings, state: LimitState, r: Reservation): LimitState | undefined {
  let changed = false;
  const lanes = state.lanes.map((lane, i) => {
    const out = returnUnits(s.limits[i], lane, r, i, r.cost[i] ?? 0);
    if (out !== lane) changed = true;
    return out;
  });
  const slots = r.slot === undefined ? state.slots : state.slots?.filter((h) => h.id !== r.slot);
  if (slots !== state.slots && slots?.length !== state.slots?.length) changed = true;
  if (!changed) return undefined;
  const out: LimitState = { ...state, lanes };
  if (slots !== undefined) setList(out, 'slots', slots);
  return out;
}

/**
 * Charges a reservation `cost` instead of what it carries: the extra is
 * charged as if reserved with it (patient: `next` moves on; greedy: units
 * added at the reservation's time), and a refund is given back where
 * {@link giveBack} could. Returns the state and the reservation as it now
 * stands, so it can be settled again.
 */
export function settle(s: Settings, state: LimitState, r: Reservation, cost: readonly number[], now: number): { state: LimitState; reservation: Reservation } {
  const next: Reservation = { ...r, cost: [...r.cost] };
  const lanes = state.lanes.map((lane, i) => {
    const limit = s.limits[i];
    const old = r.cost[i] ?? 0;
    const want = cost[i] ?? old;
    if (!limit || want === old) return lane;
    if (want < old) {
      const out = returnUnits(limit, lane, r, i, old - want);
      if (out === lane) return lane; // a later reservation depends on it: stays charged
      next.cost[i] = want;
      return out;
    }
    next.cost[i] = want;
    const extra = want - old;
    if (!limit.greedy) {
      // Still the limit's last reservation: spaced from its slot by the new
      // cost, exactly as reserve() would have (so it can be settled again).
      if (lane.next === spacedAfter(limit, r.at, old)) return { next: spacedAfter(limit, r.at, want) };
      return { next: (lane.next ?? r.at) + (extra * limit.per) / limit.maxCount };
    }
    return { runs: addUnits(limit, lane.runs, r.at, extra, now) };
  });
  return { state: { ...state, lanes }, reservation: next };
}

/**
 * Ends a reservation's call: frees its concurrency slot. In serial mode the
 * next call is also spaced from now, the end of this one, rather than from
 * its start (patient: `next` is at least `now + c·per/maxCount`; greedy: its
 * units count from now).
 */
export function release(s: Settings, state: LimitState, r: Reservation, now: number): LimitState {
  const out: LimitState = { ...state };
  if (r.slot !== undefined && state.slots) setList(out, 'slots', state.slots.filter((h) => h.id !== r.slot));
  if (s.serial && now > r.at) {
    out.lanes = state.lanes.map((lane, i) => {
      const limit = s.limits[i];
      const c = r.cost[i] ?? 0;
      if (!limit || c === 0) return lane;
      if (!limit.greedy) return { next: Math.max(lane.next ?? now, spacedAfter(limit, now, c)) };
      const without = returnUnits(limit, lane, r, i, c);
      return { runs: addUnits(limit, without.runs, now, c, now) };
    });
  }
  return out;
}

/** Extends a concurrency slot's lease to `until`. The state is unchanged if the slot is gone. */
export function renewSlot(state: LimitState, slot: string, until: number): LimitState | undefined {
  if (!state.slots?.some((h) => h.id === slot)) return undefined;
  return { ...state, slots: state.slots.map((h) => (h.id === slot ? { ...h, until: Math.max(h.until, until) } : h)) };
}

/** Holds every call until at least `now + seconds`. A pause only ever extends. */
export function pauseState(s: Settings, state: LimitState | undefined, now: number, seconds: number): LimitState {
  const out = fresh(s, state);
  out.pausedUntil = Math.max(state?.pausedUntil ?? -Infinity, now + seconds);
  return out;
}

/**
 * Gives a reservation's units back and reserves them again (keeping its
 * concurrency slot): for a call that woke to find a pause set after it
 * reserved. Its new slot comes after the pause.
 */
export function reschedule(s: Settings, state: LimitState, r: Reservation, now: number): { state: LimitState; reservation: Reservation } {
  const withoutSlot: Reservation = { at: r.at, now: r.now, cost: r.cost };
  const back = giveBack(s, state, withoutSlot) ?? state;
  const rate = takeRate(s, back, now, r.cost);
  if (r.slot !== undefined) rate.result.slot = r.slot;
  return { state: rate.state, reservation: rate.result };
}

/** What {@link RateLimit.status} reports, from a state. */
export function statusOf(s: Settings, state: LimitState | undefined, now: number, cost: readonly number[], ctx?: TxContext): RateLimitStatus {
  const limits = s.limits.map((limit, i) => {
    const lane = state?.lanes[i];
    let used = 0;
    if (!limit.greedy) {
      const ahead = Math.max(0, (lane?.next ?? now) - now);
      used = Math.min(limit.maxCount, Math.ceil((ahead * limit.maxCount) / limit.per - 1e-9));
    } else {
      for (const [t, n] of lane?.runs ?? []) if (t > now - limit.per) used += n;
    }
    const unit = s.limits.map(() => 0);
    unit[i] = 1;
    const nextIn = earliest(s, state ? { ...state, pausedUntil: now } : undefined, now, unit) - now;
    return { ...limit, used, remaining: Math.max(0, limit.maxCount - used), nextIn };
  });
  const live = (h: Slot) => h.until > now && !(ctx?.isDead(h.holder) ?? false);
  const slots = (state?.slots ?? []).filter(live);
  return {
    limits,
    nextIn: earliest(s, state, now, cost) - now,
    pausedFor: Math.max(0, (state?.pausedUntil ?? now) - now),
    inFlight: slots.length,
    waiting: (state?.queue ?? []).filter(live).length,
    maxConcurrent: s.maxConcurrent === Infinity ? null : s.maxConcurrent,
  };
}

/**
 * For stores: checks a value read back from storage. Returns the state, or
 * undefined when the value is not a state (torn, foreign or damaged), in
 * which case the store should treat the state as lost. A state written by a
 * newer version of this file is an error, not a loss: this copy must not
 * overwrite what it does not understand.
 */
export function parseState(value: unknown): LimitState | undefined {
  const v = value as Partial<LimitState> | null;
  if (typeof v !== 'object' || v === null) return undefined;
  if (typeof v.v === 'number' && v.v > STATE_VERSION) {
    throw new RateLimitMismatchError(`ratelimit: the state was written by a newer ratelimit (state version ${v.v}; this copy, ${VERSION}, reads version ${STATE_VERSION}). Update this copy of ratelimit.ts`);
  }
  if (v.v !== STATE_VERSION || !Array.isArray(v.limits) || !Array.isArray(v.lanes) || v.lanes.length !== v.limits.length) return undefined;
  for (const l of v.limits as unknown[]) {
    const limit = l as Partial<LimitSettings> | null;
    if (typeof limit !== 'object' || limit === null || !Number.isSafeInteger(limit.maxCount) || !isTime(limit.per) ||
      typeof limit.greedy !== 'boolean' || typeof limit.unit !== 'string') return undefined;
  }
  for (const l of v.lanes as unknown[]) {
    const lane = l as Partial<Lane> | null;
    if (typeof lane !== 'object' || lane === null) return undefined;
    if (lane.next !== undefined && !isTime(lane.next)) return undefined;
    if (lane.runs !== undefined && !(Array.isArray(lane.runs) && lane.runs.every((run) =>
      Array.isArray(run) && run.length === 2 && isTime(run[0]) && Number.isSafeInteger(run[1]) && run[1] > 0))) return undefined;
  }
  if (v.pausedUntil !== undefined && !isTime(v.pausedUntil)) return undefined;
  if (v.maxConcurrent !== undefined && !Number.isSafeInteger(v.maxConcurrent)) return undefined;
  if (v.serial !== undefined && typeof v.serial !== 'boolean') return undefined;
  const isSlots = (list: unknown) => Array.isArray(list) && list.every((h: Partial<Slot> | null) =>
    typeof h === 'object' && h !== null && typeof h.id === 'string' && typeof h.holder === 'string' && isTime(h.until));
  if (v.slots !== undefined && !isSlots(v.slots)) return undefined;
  if (v.queue !== undefined && !isSlots(v.queue)) return undefined;
  return v as LimitState;
}

/**
 * For stores whose clock changed under a state (a reboot, another clock):
 * moves every time in the state by `by` seconds, and puts none later than
 * one window after `now` (a pause: MAX_SHIFTED_PAUSE_S), so no caller waits
 * much longer than the limit asks for times it cannot trust.
 */
export function shiftState(state: LimitState, by: number, now: number): LimitState {
  const longest = Math.max(...state.limits.map((l) => l.per));
  const move = (t: number, cap: number) => Math.min(t + by, now + cap);
  const out: LimitState = {
    ...state,
    lanes: state.lanes.map((lane, i) => {
      const per = state.limits[i]?.per ?? longest;
      const moved: Lane = {};
      if (lane.next !== undefined) moved.next = move(lane.next, per);
      if (lane.runs !== undefined) moved.runs = lane.runs.map(([t, n]) => [move(t, per), n]);
      return moved;
    }),
  };
  if (state.pausedUntil !== undefined) out.pausedUntil = move(state.pausedUntil, Math.max(longest, MAX_SHIFTED_PAUSE_S));
  if (state.slots !== undefined) out.slots = state.slots.map((h) => ({ ...h, until: move(h.until, longest) }));
  if (state.queue !== undefined) out.queue = state.queue.map((h) => ({ ...h, until: move(h.until, longest) }));
  return out;
}

/**
 * For stores that expire what they keep (a Redis TTL): the time after which
 * the state holds nobody back and can be forgotten, plus one longest window
 * to spare.
 */
export function expiresAt(state: LimitState): number {
  let last = state.pausedUntil ?? -Infinity;
  state.lanes.forEach((lane, i) => {
    const per = state.limits[i]?.per ?? 0;
    if (lane.next !== undefined) last = Math.max(last, lane.next);
    const lastRun = lane.runs?.[lane.runs.length - 1];
    if (lastRun) last = Math.max(last, lastRun[0] + per);
  });
  for (const h of [...(state.slots ?? []), ...(state.queue ?? [])]) last = Math.max(last, h.until);
  return last + Math.max(...state.limits.map((l) => l.per));
}

// The state a transaction may use: undefined when fresh, or one made for
// exactly these settings. Two programs that disagree about the limit must not
// silently fight over one state, so a mismatch is an error that says how to reset.
function checkState(s: Settings, state: LimitState | undefined, storeName: string): LimitState | undefined {
  if (!state) return undefined;
  if (state.limits === s.limits && state.serial === undefined && state.maxConcurrent === undefined && s.maxConcurrent === Infinity && !s.serial) return state;
  const same = (state.limits === s.limits || (state.limits.length === s.limits.length && state.limits.every((l, i) => { const mine = s.limits[i]; return mine !== undefined && compareLimits(l, mine) === 0; }))) &&
    (state.maxConcurrent ?? Infinity) === s.maxConcurrent && (state.serial ?? false) === s.serial;
  if (same) return state;
  throw new RateLimitMismatchError(`ratelimit: ${storeName} was made for ${describeSettings(state)}, but this limiter has ${describeSettings(s)}. ` +
    `Use the same settings everywhere, or delete that state to reset it.`);
}

// Reserves the rate part of a call (no concurrency slot).
// (It returns a transaction's output, { state, result }, so the plain wait()
// can hand it straight to the store.)
function takeRate(s: Settings, state: LimitState | undefined, now: number, cost: readonly number[]): { state: LimitState; result: Reservation } {
  const only = s.limits.length === 1 ? s.limits[0] : undefined;
  if (only && !only.greedy) {
    // The common case, one patient limit, without the loop's arrays.
    const c = cost[0] ?? 0;
    const last = state?.lanes[0]?.next;
    let at = now;
    if (c > 0 && last !== undefined && last > at) at = last;
    const paused = state?.pausedUntil;
    if (paused !== undefined && paused > at) at = paused;
    const lanes = c === 0 ? (state?.lanes ?? [{}]) : [{ next: spacedAfter(only, at, c) }];
    let out: LimitState;
    // A state with nothing but the limits and lanes (checkState has made sure
    // its settings are ours, so no maxConcurrent or serial either).
    const plain = s.maxConcurrent === Infinity && !s.serial &&
      (state === undefined || (paused === undefined && state.slots === undefined && state.queue === undefined));
    if (plain) {
      out = { v: STATE_VERSION, limits: state?.limits ?? (s.limits as LimitSettings[]), lanes };
    } else {
      out = fresh(s, state);
      out.lanes = lanes;
    }
    return { state: out, result: { at, now, cost: cost as number[] } };
  }
  const at = earliest(s, state, now, cost);
  const n = s.limits.length;
  const lanes: Lane[] = new Array(n);
  for (const [i, limit] of s.limits.entries()) {
    const lane = state?.lanes[i] ?? EMPTY_LANE;
    const c = cost[i] ?? 0;
    if (!limit.greedy) {
      lanes[i] = c === 0 ? lane : { next: spacedAfter(limit, at, c) };
    } else {
      lanes[i] = c === 0 && lane.runs === undefined ? lane : { runs: addUnits(limit, lane.runs, at, c, now) };
    }
  }
  const out = fresh(s, state);
  out.lanes = lanes;
  return { state: out, result: { at, now, cost: cost as number[] } };
}

// The earliest time at or after `now` (and after the lane's last grant, so
// grants stay in order) at which a grant of c keeps (t - per, t] within maxCount.
function greedyEarliest(limit: LimitSettings, runs: ReadonlyArray<readonly [number, number]> | undefined, now: number, c: number): number {
  const last = runs?.[runs.length - 1];
  if (!runs || !last) return now;
  const t = Math.max(now, last[0]);
  let inWindow = 0;
  for (const [time, n] of runs) if (time > t - limit.per) inWindow += n;
  if (inWindow + c <= limit.maxCount) return t;
  // Wait for the oldest grants to leave the window, one run at a time.
  for (const [time, n] of runs) {
    if (time <= t - limit.per) continue;
    inWindow -= n;
    if (inWindow + c <= limit.maxCount) return Math.max(t, time + limit.per);
  }
  return t; // unreachable: c <= maxCount, so the window empties in time
}

// A lane's runs with c units granted at `at`, in time order, dropping the
// runs that left every window from `now` on. Past MAX_RUNS runs, the two
// closest in time are merged onto the later one's time, which only ever
// delays capacity (a unit counted later leaves its window later).
function addUnits(limit: LimitSettings, runs: ReadonlyArray<[number, number]> | undefined, at: number, c: number, now: number): Array<[number, number]> {
  const out: Array<[number, number]> = [];
  let placed = c === 0 || at <= now - limit.per;
  // Runs are never changed in place, so unchanged ones are shared with the old lane.
  for (const run of runs ?? []) {
    const [t, n] = run;
    if (t <= now - limit.per) continue;
    if (!placed && t >= at) {
      placed = true;
      if (t === at) { out.push([t, n + c]); continue; }
      out.push([at, c]);
    }
    out.push(run);
  }
  if (!placed) out.push([at, c]);
  if (out.length > MAX_RUNS) mergeClosest(out);
  return out;
}

// Removes c units granted at the reservation's time from one lane, where no
// later reservation depends on them. Returns the lane itself when nothing changes.
function returnUnits(limit: LimitSettings | undefined, lane: Lane, r: Reservation, i: number, c: number): Lane {
  if (!limit || c === 0) return lane;
  if (!limit.greedy) {
    // Only the last reservation, whose spacing nothing later was built on.
    // Its slot is at least as late as the `next` before it and the time it
    // was made, so going back to its slot frees as much as going back to
    // that `next` would: every later caller comes at or after it.
    const full = r.cost[i] ?? 0;
    if (lane.next === undefined || lane.next !== spacedAfter(limit, r.at, full)) return lane;
    return { next: spacedAfter(limit, r.at, Math.max(0, full - c)) };
  }
  const runs = lane.runs;
  const k = runs ? runs.findIndex(([t]) => t === r.at) : -1;
  if (!runs || k === -1) return lane; // gone from the window, or merged into a later run: stays spent
  const out = runs.map(([t, n]): [number, number] => [t, n]);
  const run = out[k];
  if (run) run[1] -= Math.min(c, run[1]);
  return { runs: out.filter(([, n]) => n > 0) };
}

// Where a patient limit's `next` stands after a call of c units at `at`.
// Always this expression, so a reservation can recognise its own `next`.
function spacedAfter(limit: LimitSettings, at: number, c: number): number {
  return at + (c * limit.per) / limit.maxCount;
}

// Merges the two neighbouring runs closest in time onto the later one's time.
function mergeClosest(runs: Array<[number, number]>): void {
  let best = 1;
  let bestGap = Infinity;
  runs.forEach(([t], i) => {
    const before = runs[i - 1];
    if (before && t - before[0] < bestGap) { best = i; bestGap = t - before[0]; }
  });
  const [earlier, later] = runs.splice(best - 1, 2);
  if (earlier && later) runs.splice(best - 1, 0, [later[0], earlier[1] + later[1]]);
}

// A state for these settings, carrying over what `state` holds.
function fresh(s: Settings, state: LimitState | undefined): LimitState {
  if (state) {
    // Field by field: cheaper than a spread on the hot path.
    const out: LimitState = { v: state.v, limits: state.limits, lanes: state.lanes };
    if (state.maxConcurrent !== undefined) out.maxConcurrent = state.maxConcurrent;
    if (state.serial !== undefined) out.serial = state.serial;
    if (state.pausedUntil !== undefined) out.pausedUntil = state.pausedUntil;
    if (state.slots !== undefined) out.slots = state.slots;
    if (state.queue !== undefined) out.queue = state.queue;
    return out;
  }
  // The settings' own array, so checkState knows it at a glance in memory.
  const out: LimitState = { v: STATE_VERSION, limits: s.limits as LimitSettings[], lanes: s.limits.map(() => ({})) };
  if (s.maxConcurrent !== Infinity) out.maxConcurrent = s.maxConcurrent;
  if (s.serial) out.serial = true;
  return out;
}

// Sets a list field of the state, leaving it out when empty (so a state
// with nothing held stays as small as one that never had anything).
function setList(state: LimitState, key: 'slots' | 'queue', list: Slot[]): void {
  if (list.length) state[key] = list;
  else delete state[key];
}

function compareLimits(a: LimitSettings, b: LimitSettings): number {
  return a.unit < b.unit ? -1 : a.unit > b.unit ? 1 : a.per - b.per || a.maxCount - b.maxCount || Number(a.greedy) - Number(b.greedy);
}

function describeLimit(l: LimitSettings): string {
  return `maxCount=${l.maxCount}, per=${l.per}, ${l.greedy ? 'greedy' : 'patient'}${l.unit === 'calls' ? '' : `, unit=${l.unit}`}`;
}

function describeSettings(s: Pick<Settings, 'limits'> & { maxConcurrent?: number | undefined; serial?: boolean | undefined }): string {
  const parts = s.limits.map(describeLimit);
  if (s.maxConcurrent !== undefined && s.maxConcurrent !== Infinity) parts.push(`maxConcurrent ${s.maxConcurrent}`);
  if (s.serial) parts.push('serial');
  return parts.join('; ');
}

function isTime(t: unknown): t is number {
  // Finite, and within what any clock here can read (about 31,000 years in
  // seconds), so a stranger's `1e300` is not taken as a time.
  return typeof t === 'number' && Math.abs(t) < 1e12;
}

// A concurrency slot's lease (see RateLimitOptions.slotLease). Long enough
// that a holder stalled by a busy event loop or a slow store keeps its slot;
// short enough that a paused or vanished holder's slot comes back within a minute.
const DEFAULT_SLOT_LEASE_S = 60;
// The state format's version (see LimitState.v).
const STATE_VERSION = 2;
// Greedy lanes keep at most this many runs. Each run is about 25 bytes of
// JSON, so a lane stays within a few KB however big the limit; grants closer
// in time than per/MAX_RUNS are merged (see addUnits), delaying capacity by
// about that much at worst, which errs on the side of fewer calls.
const MAX_RUNS = 128;
// A pause carried over from another clock is trusted for at most a day.
const MAX_SHIFTED_PAUSE_S = 86_400;
const EMPTY_LANE: Lane = Object.freeze({}) as Lane;
// What a reservation returns when every concurrency slot is held: the
// caller's place in the queue (0: next).
interface Busy { readonly place: number }
function isBusy(r: Reservation | Busy): r is Busy {
  return (r as Partial<Busy>).place !== undefined;
}
// A waiter for a concurrency slot polls the store at most this far apart. A
// release in the same process wakes it at once; across processes this is
// how late a freed slot can be noticed, against a store read costing ~30 µs.
const SLOT_POLL_MAX_MS = 50;
// The first waiter in the queue polls at most this far apart, so a slot freed
// in another process stands idle about half of it on average; a poll costs
// one lock cycle (~30 µs), so this is at most a few percent of a core while
// the waiter waits.
const SLOT_POLL_FIRST_MS = 4;
// A waiter's place in the concurrency queue lapses this long after its last
// poll, so a waiter that vanished without a word (killed on another machine,
// say) holds the queue up for at most this long. Polls come at most
// SLOT_POLL_MAX_MS apart, so a live waiter renews it many times over.
const QUEUE_LEASE_S = 2;
const OPTION_NAMES = ['maxCount', 'per', 'greedy', 'limits', 'maxConcurrent', 'serial', 'slotLease', 'file', 'staleAfter', 'store'];
const WAIT_OPTION_NAMES = ['signal', 'maxWait', 'weight', 'cost'];
const LIMIT_OPTION_NAMES = ['maxCount', 'per', 'greedy', 'unit'];

// The update options of a plain call (no signal, no maxWait), made once.
const PLAIN_UPDATE: UpdateOptions = Object.freeze({ lockTimeout: Infinity });
// A call's options, checked.
interface Call { readonly signal?: AbortSignal; readonly maxWait: number; readonly cost: number[] }

function checkLimit(spec: LimitOptions, prefix: string, greedyDefault: boolean): LimitSettings {
  if (typeof spec !== 'object' || spec === null) throw new TypeError(`ratelimit: ${prefix.slice(0, -1)} must be an object of { maxCount, per }, got ${show(spec)}`);
  if (prefix) checkKnown(`option of ${prefix.slice(0, -1)}`, spec, LIMIT_OPTION_NAMES);
  const { maxCount, per, greedy = greedyDefault, unit = 'calls' } = spec;
  checkNumber(`${prefix}maxCount`, maxCount, 'a positive integer', Number.isSafeInteger(maxCount) && maxCount >= 1);
  checkNumber(`${prefix}per`, per, 'a finite number of seconds above 0', Number.isFinite(per) && per > 0);
  if (typeof greedy !== 'boolean') throw new TypeError(`ratelimit: ${prefix}greedy must be a boolean, got ${show(greedy)}`);
  if (typeof unit !== 'string' || unit === '') throw new TypeError(`ratelimit: ${prefix}unit must be a non-empty string, got ${show(unit)}`);
  return { maxCount, per, greedy, unit };
}

// Rejects names an options object should not have, suggesting the closest.
function checkKnown(what: string, options: object, known: readonly string[]): void {
  for (const key of Object.keys(options)) {
    if (!known.includes(key)) throw new TypeError(`ratelimit: unknown ${what} ${JSON.stringify(key)}${nearest(key, known)}`);
  }
}

function nearest(name: string, known: readonly string[]): string {
  let best = '';
  let bestDistance = Infinity;
  for (const k of known) {
    const d = editDistance(name.toLowerCase(), k.toLowerCase());
    if (d < bestDistance) { best = k; bestDistance = d; }
  }
  return bestDistance <= Math.max(2, name.length / 3) ? `; did you mean ${JSON.stringify(best)}?` : '';
}

function editDistance(a: string, b: string): number {
  let row = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const next = [i];
    for (let j = 1; j <= b.length; j++) {
      next[j] = Math.min((row[j] ?? 0) + 1, (next[j - 1] ?? 0) + 1, (row[j - 1] ?? 0) + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    row = next;
  }
  return row[b.length] ?? 0;
}

// The handle acquire() returns. It keeps its reservation, to settle and release it.
class PermitHandle implements Permit {
  readonly waited: number;
  private r: Reservation;
  private readonly limit: RateLimit;
  private released?: Promise<void>;
  // Settles and the release run one after another, in the order called.
  private queue: Promise<void> = Promise.resolve();
  private renewTimer?: ReturnType<typeof setInterval>;

  constructor(limit: RateLimit, r: Reservation, waited: number) {
    this.limit = limit;
    this.r = r;
    this.waited = waited;
    if (r.slot !== undefined) {
      const slot = r.slot;
      this.renewTimer = setInterval(() => {
        this.queue = this.queue.then(() => this.limit.renewSlot(slot)).catch((error: unknown) => {
          warn('RATELIMIT_SLOT_RENEW_FAILED', `ratelimit: could not renew a concurrency slot's lease: ${(error as Error).message}`);
        });
      }, limit.renewEveryS * 1000);
      // A held permit must not keep the process alive by itself.
      (this.renewTimer as { unref?: () => void }).unref?.();
    }
  }

  get cost(): Cost {
    const out: Record<string, number> = {};
    this.limit.limits.forEach((l, i) => { out[l.unit] = this.r.cost[i] ?? 0; });
    return out;
  }

  settle(actual: Cost): Promise<void> {
    const vector = this.limit.costVector(actual, this.r.cost);
    this.queue = this.queue.then(async () => {
      this.r = await this.limit.settleReservation(this.r, vector);
    }).catch((error: unknown) => {
      warn('RATELIMIT_SETTLE_FAILED', `ratelimit: could not settle a permit: ${(error as Error).message}`);
    });
    return this.queue;
  }

  release(): Promise<void> {
    if (this.released) return this.released;
    clearInterval(this.renewTimer);
    this.queue = this.queue.then(() => this.limit.releaseReservation(this.r)).catch((error: unknown) => {
      warn('RATELIMIT_RELEASE_FAILED', `ratelimit: could not release a permit: ${(error as Error).message}`);
    });
    this.released = this.queue;
    return this.released;
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.release();
  }
}

// Wakes in-process waiters at once (the file store has no notification
// across processes, so they also poll).
class Wakeup {
  private waiters = new Set<() => void>();
  add(wake: () => void): () => void {
    this.waiters.add(wake);
    return () => this.waiters.delete(wake);
  }
  notify(): void {
    const all = [...this.waiters];
    this.waiters.clear();
    for (const wake of all) wake();
  }
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
    this.ctx = { holder, isDead };
    return this.ctx;
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

// Sleeps until performance.now() reaches `deadline`, or until `wake` fires.
// Timers can fire up to a millisecond early, so the clock is checked on
// waking and the rest slept.
function sleepUntil(deadline: number, signal?: AbortSignal, wake?: Wakeup): Promise<void> {
  return new Promise((resolve, reject) => {
    let timer: ReturnType<typeof setTimeout> | undefined;
    let unwake: (() => void) | undefined;
    const finish = (error?: { reason: unknown }) => {
      clearTimeout(timer);
      unwake?.();
      signal?.removeEventListener('abort', onAbort);
      if (error) reject(error.reason); else resolve();
    };
    const onAbort = () => finish({ reason: signal?.reason });
    const tick = () => {
      const left = deadline - performance.now();
      if (left <= 0) { finish(); return; }
      timer = setTimeout(tick, Math.min(Math.ceil(left), MAX_TIMER_MS));
    };
    if (signal?.aborted) { reject(signal.reason); return; }
    signal?.addEventListener('abort', onAbort, { once: true });
    if (wake) unwake = wake.add(() => finish());
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
  --serial             one command at a time, spaced from the end of the last
Options:
  --max-wait S         exit 75 at once if the slot is further away than S
  --cost UNIT=N        this call costs N of UNIT (default calls=1); repeatable
  -v, --verbose        say on stderr how long it waited
  -q, --quiet          no messages on stderr but errors in the arguments or setup
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
  settings?: RateLimitOptions;
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
  let serial = false;
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
      case '--serial': serial = flag(); break;
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
        const [, unit, amount] = /^([A-Za-z_][\w.-]*)=(\d+)$/.exec(text) ?? [];
        if (unit === undefined) throw new CliUsageError(`--cost takes UNIT=N, such as tokens=1200; got ${JSON.stringify(text)}`);
        const cost = args.cost ?? {};
        if (unit in cost) throw new CliUsageError(`--cost ${unit} is given twice`);
        cost[unit] = Number(amount);
        args.cost = cost;
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
    const [seconds, ...more] = positional;
    if (seconds === undefined || more.length) throw new CliUsageError('pause takes one argument: the seconds to pause (or a Retry-After date)');
    args.pauseFor = cliPauseSeconds(seconds);
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
    const settings: RateLimitOptions = limits.length ? { limits, greedy } : { maxCount, per, greedy };
    if (maxConcurrent !== undefined) settings.maxConcurrent = maxConcurrent;
    if (serial) settings.serial = true;
    args.settings = settings;
  } else if (greedy || serial || maxConcurrent !== undefined) {
    const which = greedy ? '--greedy' : serial ? '--serial' : '--max-concurrent';
    throw new CliUsageError(`${which} needs the limit too: --max-count and --per, or --limit`);
  }
  return args;
}

// Seconds such as 30 or 5m, or a Retry-After value as the API sent it.
function cliPauseSeconds(text: string): number {
  if (CLI_DURATION.test(text)) return cliSeconds('pause', text);
  const seconds = retryAfter(text);
  if (seconds === undefined) throw new CliUsageError(`pause takes seconds (such as 30 or 5m) or an HTTP date; got ${JSON.stringify(text)}`);
  return seconds;
}

function cliLimiter(args: CliArgs): RateLimit {
  return args.settings ? new RateLimit({ ...args.settings, file: args.file }) : RateLimit.fromState(args.file);
}

const CLI_SIGNALS = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const;

async function cliMain(argv: string[]): Promise<void> {
  const name = basename(process.argv[1] ?? 'ratelimit.ts');
  let quiet = false;
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
    if (head.includes('--help') || head.includes('-h')) { process.stdout.write(`${CLI_HELP.split('ratelimit.ts').join(name)}\n`); return finish(0); }
    args = cliParse(argv);
    quiet = args.quiet;
    if (quiet) process.removeAllListeners('warning');
  } catch (error) {
    if (!(error instanceof CliUsageError)) throw error;
    process.stderr.write(`ratelimit: ${error.message} (see ${name} --help)\n`);
    return finish(64);
  }

  // Loaded while waiting, and only when there is a command to run.
  const childProcess = args.command.length ? import('node:child_process') : undefined;
  let permit: Permit | undefined;
  try {
    const limit = cliLimiter(args);
    if (args.sub === 'pause') {
      await limit.pause(args.pauseFor ?? 0);
      return finish(0);
    }
    if (args.sub === 'status') {
      process.stdout.write(`${JSON.stringify(await limit.status(), null, 2)}\n`);
      return finish(0);
    }
    const options: WaitOptions = { signal: abort.signal, maxWait: args.maxWait, cost: args.cost };
    permit = await limit.acquire(options);
    if (args.verbose) say(`waited ${permit.waited.toFixed(3)} s for a slot of ${resolve(args.file)}`);
  } catch (error) {
    await permit?.release();
    if (got) return finish(await signalCode(got), got);
    const e = error as Error & { code?: unknown };
    if (e instanceof RateLimitTimeoutError) { say(e.message.replace(/^ratelimit: /, '')); return finish(75); }
    const usage = e instanceof CliUsageError || e instanceof TypeError || e instanceof RangeError ||
      e.code === 'ERR_RATELIMIT_MISMATCH' || e.code === 'ERR_RATELIMIT_NO_STATE';
    process.stderr.write(`ratelimit: ${String(e.message).replace(/^ratelimit: /, '')}${usage ? ` (see ${name} --help)` : ''}\n`);
    return finish(usage ? 64 : 70);
  }
  const spawn = childProcess && (await childProcess).spawn;
  if (got) { await permit.release(); return finish(await signalCode(got), got); }
  if (!spawn) { await permit.release(); return finish(0); }

  const [command, ...rest] = args.command as [string, ...string[]];
  const ran = await new Promise<{ code: number | null; signal: NodeJS.Signals | null; error?: NodeJS.ErrnoException }>((done) => {
    const c = spawn(command, rest, { stdio: 'inherit' });
    // process.kill, not c.kill: Deno (2.9) reports a child that c.kill()
    // signalled as killed by that signal, even when it caught it and exited.
    child = { kill: (signal) => { try { return c.pid !== undefined && process.kill(c.pid, signal); } catch { return false; } } };
    c.once('error', (error) => done({ code: null, signal: null, error }));
    c.once('exit', (code, signal) => { child = undefined; done({ code, signal }); });
  });
  await permit.release();
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
