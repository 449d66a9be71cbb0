// SPDX-License-Identifier: MIT
// ratelimit v0.3.0 (one file; copy it next to your script, and keep this header)
//
// A rate limiter in one file, for one process or for every process on the machine that names the same state file.
// Priorities: the limit holds and nothing hangs or fails silently; then a file you can read and edit; then speed.
//
//   const limit = new RateLimit({ maxCount: 2, per: 5, file: '/var/tmp/api.ratelimit.json' });
//   await limit.wait();   // now call the API
//
// Sections, in the order data flows (docs/editing.md maps them): 1. the public API, ending with the SlotAgent that
// hands out concurrency slots; 2. the scheduling core, pure functions of (settings, state, now); 3. the memory store,
// with the sleeping, checks and warnings all above use. Read those in one sitting. Then two self-contained parts:
// 4. the file store (lock, files, liveness, clock); 5. the reader of a server's rate-limit headers, for observe().
// The command line is a file of its own, ratelimit-cli.mts, which uses only the API exported here.
//
// Safe to change: the tuning constants (a block per part, each saying what it trades) and the warning and error
// texts; the core or the lock protocol only with the tests at hand (npm run test:core is the fast loop).
// For memory only: delete every region from a BEGIN FILE STORE line to the next END FILE STORE line (the imports,
// the file option, RateLimit.fromState and section 4); test/recipes.test.ts does exactly that and tests the rest.
// Only node: built-ins, for tsx, Node, Bun and Deno alike; the reference gives Node's types to `tsc --init` projects.

/// <reference types="node" />
// BEGIN FILE STORE (its imports)
import {
  closeSync, constants, fchmodSync, fchownSync, fstatSync, ftruncateSync, linkSync, lstatSync, openSync,
  readdirSync, readlinkSync, readSync, renameSync, unlinkSync, writeSync,
} from 'node:fs';
import { hostname } from 'node:os';
import { basename, dirname, join, resolve } from 'node:path';
// END FILE STORE

// ---------------------------------------------------------------------------
// 1. Public API
// ---------------------------------------------------------------------------

/** One limit: at most `maxCount` units (a positive integer) of `unit` per `per` seconds (above 0, up to 366 days). */
export interface LimitOptions {
  maxCount: number;
  per: number;
  /** Greedy or patient for this limit alone; by default the limiter's `greedy`. */
  greedy?: boolean | undefined;
  /** What the limit counts: `"calls"` (the default), or a name that costs use, such as `"tokens"`. */
  unit?: string | undefined;
}

/** Options for {@link RateLimit}, in seconds: one limit as `maxCount` and `per`, or several as `limits`. */
export interface RateLimitOptions {
  /** How many calls may go ahead per `per` seconds. A positive integer. */
  maxCount?: number | undefined;
  /** Length of the window in seconds. Finite and greater than 0. */
  per?: number | undefined;
  /** false (default): calls are spaced `per / maxCount` apart. true: no window of `per` holds more than `maxCount`. */
  greedy?: boolean | undefined;
  /** Several limits that every call must keep together (calls per minute, tokens per minute): all or none. */
  limits?: readonly LimitOptions[] | undefined;
  /** At most this many calls in flight, from {@link RateLimit.acquire} to {@link Permit.release}, in every process. */
  maxConcurrent?: number | undefined;
  /** One call at a time (`maxConcurrent: 1`), spaced from the previous call's release rather than its start. */
  serial?: boolean | undefined;
  /** Seconds a slot outlives its holder's last renewal (every third of this) unless proven dead. Default 60. */
  slotLease?: number | undefined;
  /** A JSON state file (lock: `<file>.lock`) shared by every process naming it; without it or `store`, one process. */
  file?: string | undefined;
  /** Seconds after which a lock whose holder is not proven dead is broken. See {@link DEFAULT_STALE_AFTER}. */
  staleAfter?: number | undefined;
  /** Somewhere else to keep the state, such as Redis. See {@link RateLimitStore}. */
  store?: RateLimitStore | undefined;
}

/** What a call costs in each unit, such as `{ tokens: 1200 }`; by default `{ calls: 1 }`. */
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

/** A call that has its slot, from {@link RateLimit.acquire}: release it when the call ends, settle its real cost. */
export interface Permit {
  /** Seconds the call was held back before it got the permit. */
  readonly waited: number;
  /** What the permit is charged now, per unit (the estimate until settled). */
  readonly cost: Cost;
  /**
   * Charges the real cost for the units given: an overrun pushes later slots back, a refund frees capacity no later
   * reservation depends on; a window after the slot, nothing. Repeatable, also after release; a failure only warns.
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
    /** The tightest thing a server said about this limit's unit ({@link RateLimit.observe}), while it holds. */
    server?: { remaining: number; resetIn: number } | undefined;
  }>;
  /** Seconds until a call of the default cost could go, every limit and any pause included. */
  nextIn: number;
  /** Seconds left of a pause set by {@link RateLimit.pause}; 0 when none. */
  pausedFor: number;
  /** Calls holding a concurrency slot now, in every process. */
  inFlight: number;
  /** Calls waiting for a concurrency slot, in every process. */
  waiting: number;
  /** null when there is no cap. */
  maxConcurrent: number | null;
}

/** A limiter's whole state: plain JSON, times in seconds on the store's clock. Stores use {@link parseState}. */
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
  slots?: Slot[];
  /** Processes waiting for a concurrency slot, one place each, oldest waiter first (see {@link admit}). */
  queue?: Slot[];
}

/** One limit's history. Patient: `next`, when the next call may go. Greedy: `runs`, [time, units], oldest first. */
export interface Lane {
  next?: number;
  runs?: Array<[number, number]>;
  /** Once a server's word is kept ({@link observeState}): the units granted so far, a count that only grows. */
  granted?: number | undefined;
  /** What servers said, as [the most `granted` may reach, until when], by time: see {@link observeState}. */
  caps?: Array<[number, number]> | undefined;
}

/** A concurrency slot, or a place in the queue for one: who holds it, and until when its lease runs. */
export interface Slot {
  id: string;
  holder: string;
  until: number;
  /** A place in the queue: when its process's oldest waiter began waiting, which orders the queue. */
  since?: number;
  /** A place in the queue: how many calls wait behind it. */
  n?: number;
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
  slot?: string | undefined;
  /** Each limit's `granted` count with this call, when a server's word is kept (see {@link RateLimit.observe}). */
  granted?: number[] | undefined;
}

/** A pure read-modify-write at the store's time (s), returning the state to store (none: leave it) and a result. */
export type Transaction<T> =
  (state: LimitState | undefined, now: number, ctx: TxContext) => { state?: LimitState | undefined; result: T };

/** What a store tells a transaction about the caller: who holds slots, and which holders are gone. */
export interface TxContext {
  /** Names this process (or client) for as long as it runs. */
  readonly holder: string;
  /** True only when the holder named is proven gone. What cannot be judged is alive. */
  isDead(holder: string): boolean;
}

/**
 * Where a limit keeps its state (memory, a file, Redis; one it serializes checks it with {@link parseState}). `update`
 * runs a transaction atomically against all other users, on a clock they share; `updateSync` blocks (the sync calls).
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
 * Seconds before a lock is broken though its holder may live. A lock is held for tens of µs, so one this old has a
 * paused holder (SIGSTOP, a debugger); sooner risks a live update, later stalls every process as long.
 */
export const DEFAULT_STALE_AFTER = 10;

/** The version of this file, also written into the state (see {@link LimitState}). */
export const VERSION = '0.3.0';

/** The base of every error thrown on purpose; `code` is stable: ERR_RATELIMIT_TIMEOUT, _MISMATCH, _STORE, _NO_STATE. */
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
  readonly maxWait: number;
  constructor(wouldWait: number, maxWait: number, message?: string) {
    const away = `ratelimit: the next slot is ${wouldWait.toFixed(3)} s away, more than maxWait (${maxWait} s)`;
    super('ERR_RATELIMIT_TIMEOUT', message ?? away);
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
 * A rate limit, first come, first served: a call reserves the earliest slot that keeps every limit, after every slot
 * reserved before it, then sleeps without holding a lock. No call goes before its slot by the store's clock.
 */
export class RateLimit {
  /** The limits, in the order they were given. */
  readonly limits: readonly LimitSettings[];
  /** The first limit's `maxCount`, `per` and mode: the limit, in the one-limit form. */
  readonly maxCount: number;
  readonly per: number;
  readonly greedy: boolean;
  /** Infinity when there is no cap. */
  readonly maxConcurrent: number;
  readonly serial: boolean;
  /** Where the state lives: a {@link MemoryStore}, a {@link FileStore} or the store given. */
  readonly store: RateLimitStore;
  private readonly settings: Settings; // the limits in the state's fixed order, which cost vectors follow
  private readonly defaultCost: number[]; // a call that names no cost: one call, in every "calls" limit
  private readonly plainCall: Call; // a call without options, which then allocates and checks nothing
  private readonly plainTx: Transaction<number | Reservation>; // a plain wait()'s, made once: the hot path
  private readonly slots?: SlotAgent; // with maxConcurrent
  private readonly unobserved: number[][] = []; // grants' counts (Reservation.granted) for observe(), oldest first

  /** Checks every option at once: TypeError for a wrong type or an unknown name, RangeError for a wrong value. */
  constructor(options: RateLimitOptions) {
    checkOptions('options', options, 'option', OPTION_NAMES);
    const { greedy = false, file, staleAfter = DEFAULT_STALE_AFTER, store, serial = false, limits: list } = options;
    check('greedy', greedy, 'a boolean', typeof greedy === 'boolean');
    check('serial', serial, 'a boolean', typeof serial === 'boolean');
    const both = list !== undefined && (options.maxCount !== undefined || options.per !== undefined);
    if (both) throw new TypeError('ratelimit: give either maxCount and per, or limits, not both');
    const isList = list === undefined || (Array.isArray(list) && list.length > 0);
    check('limits', list, 'a non-empty array of { maxCount, per }', isList);
    const specs = list ?? [{ maxCount: options.maxCount as number, per: options.per as number }];
    const given = specs.map((spec, i) => checkLimit(spec, list === undefined ? '' : `limits[${i}]`, greedy));
    const limits = given.slice().sort(compareLimits);
    const twice = limits.find((l, i) => i > 0 && compareLimits(limits[i - 1] as LimitSettings, l) === 0);
    if (twice) throw new RangeError(`ratelimit: limits holds the same limit twice: ${describeLimit(twice)}`);
    const { maxConcurrent = serial ? 1 : Infinity } = options;
    const isCount = maxConcurrent === Infinity || (Number.isSafeInteger(maxConcurrent) && maxConcurrent >= 1);
    checkNumber('maxConcurrent', maxConcurrent, 'a positive integer', isCount);
    const alone = '1 or left out: serial means one call at a time';
    check('maxConcurrent', maxConcurrent, alone, true, !serial || maxConcurrent === 1);
    checkSeconds('staleAfter', staleAfter, MAX_DURATION_S);
    // A slot's lease must outlast a lock stalled by a paused holder (broken after staleAfter) plus a renewal period
    // (a third of the lease), or one paused process makes every held slot lapse: hence at least 2 × staleAfter.
    const leaseFloor = file === undefined ? 0 : 2 * staleAfter;
    const { slotLease = Math.max(DEFAULT_SLOT_LEASE_S, leaseFloor) } = options;
    checkSeconds('slotLease', slotLease, MAX_DURATION_S);
    const why = `at least twice staleAfter (${leaseFloor} s), or one paused process lets every slot lapse`;
    check('slotLease', slotLease, why, true, slotLease >= leaseFloor);
    check('file', file, 'a non-empty path string', file === undefined || typeof file === 'string', file !== '');
    const isStore = typeof store === 'object' && store !== null && typeof store.update === 'function';
    check('store', store, 'an object with an update method', store === undefined || isStore);
    if (store && file !== undefined) throw new TypeError('ratelimit: give either file or store, not both');
    this.limits = given;
    ({ maxCount: this.maxCount, per: this.per, greedy: this.greedy } = given[0] as LimitSettings);
    this.maxConcurrent = maxConcurrent;
    this.serial = serial;
    this.settings = { limits, maxConcurrent, serial };
    this.defaultCost = limits.map((l) => (l.unit === 'calls' ? 1 : 0));
    this.plainCall = { maxWait: Infinity, cost: this.defaultCost };
    // BEGIN FILE STORE (the file option)
    if (file !== undefined) this.store = new FileStore(file, { staleAfter });
    // END FILE STORE (the file option)
    this.store ??= store ?? new MemoryStore();
    this.plainTx = this.reserveTx(this.plainCall);
    if (maxConcurrent !== Infinity) this.slots = new SlotAgent(this.settings, slotLease, (tx) => this.update(tx));
  }

  // BEGIN FILE STORE (RateLimit.fromState)
  /** A limiter with the settings in an existing state file; throws (code `ERR_RATELIMIT_NO_STATE`) if there is none. */
  static fromState(file: string, options: { staleAfter?: number | undefined } = {}): RateLimit {
    const none = () => new RateLimitError('ERR_RATELIMIT_NO_STATE',
      `ratelimit: there is no state at ${JSON.stringify(resolve(file))} yet, so its settings must be given`);
    if (!exists(resolve(file))) throw none();
    const store = new FileStore(file, { staleAfter: options.staleAfter });
    const state = store.updateSync((s) => ({ result: s }));
    if (!state) throw none();
    const { limits, serial = false, maxConcurrent } = state;
    return new RateLimit({ limits, store, serial, maxConcurrent: serial ? undefined : maxConcurrent });
  }
  // END FILE STORE (RateLimit.fromState)

  /**
   * Resolves when the call may go, to the seconds it was held back. Rejects at once, taking nothing, with
   * {@link RateLimitTimeoutError} if the slot is more than `maxWait` away; with `signal.reason` if aborted.
   */
  async wait(options?: WaitOptions): Promise<number> {
    const call = this.callOf('wait', options);
    call.signal?.throwIfAborted();
    let r = this.store.update(this.reserveTx(call), this.updateOptions(call));
    // Await only a truly asynchronous store: awaiting a plain value costs a trip through the microtask queue.
    if (isPromiseLike(r)) r = await r;
    if (typeof r === 'number') throw new RateLimitTimeoutError(r, call.maxWait);
    if (r.granted) this.granted(r);
    if (r.at - r.now <= 0 && !call.signal?.aborted) return 0;
    return (await this.sleepThrough(r, call, monoMs())).waited;
  }

  /** {@link wait}, blocking the thread (with `Atomics.wait`, so using no CPU), for plain scripts. */
  waitSync(options: Omit<WaitOptions, 'signal'> = {}): number {
    const call = this.callOf('waitSync', options);
    const store = this.syncStore('waitSync');
    const started = monoMs();
    const update = this.updateOptions(call);
    let r: Recheck | number = this.granted(store.updateSync(this.reserveTx(call), update)); // never 'lost': no slot
    let waited = 0;
    while (typeof r === 'object' && r.at > r.now) {
      waited += r.at - r.now;
      sleepSyncUntil(monoMs() + (r.at - r.now) * 1000);
      r = store.updateSync(this.recheckTx(r, call, started), update);
    }
    if (typeof r === 'number') throw new RateLimitTimeoutError(r, call.maxWait);
    return waited;
  }

  /** Takes a slot only if one is free right now, and says whether it did. Never waits. */
  tryAcquire(options: Omit<WaitOptions, 'signal' | 'maxWait'> = {}): boolean {
    const call = { ...this.callOf('tryAcquire', options), maxWait: 0 };
    try {
      const r = this.syncStore('tryAcquire').updateSync(this.reserveTx(call), this.updateOptions(call));
      return typeof this.granted(r) === 'object';
    } catch (error) {
      if (error instanceof RateLimitTimeoutError) return false; // the lock stayed busy
      throw error;
    }
  }

  /**
   * Waits as {@link wait} does, and returns the call's {@link Permit}. With `maxConcurrent`, first waits for a free
   * slot (first come, first served across processes) and holds it until release; `maxWait` bounds both waits.
   */
  async acquire(options?: WaitOptions): Promise<Permit> {
    const call = this.callOf('acquire', options);
    call.signal?.throwIfAborted();
    const started = monoMs();
    for (;;) {
      const out = this.slots?.take(call, started) ?? this.store.update(this.reserveTx(call), this.updateOptions(call));
      const r = this.granted(isPromiseLike(out) ? await out : out);
      if (typeof r === 'number') throw new RateLimitTimeoutError(r, call.maxWait);
      const slept = await this.sleepThrough(r, call, started);
      // A slot lost while asleep (stopped past its lease) is queued for again, keeping this call's age.
      if (slept.r !== undefined) return this.permit(slept.r, (monoMs() - started) / 1000);
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
   * Holds every call of every process, calls already asleep included, for at least `seconds` from now (on a 429, see
   * {@link retryAfter}). It only extends an earlier pause; one over a day is a bad header, cut to a day with a warning.
   */
  async pause(seconds: number): Promise<void> {
    checkNumber('pause seconds', seconds, 'a number of seconds, 0 or more', seconds >= 0);
    const cut = Math.min(seconds, MAX_DURATION_S);
    if (cut < seconds) warn('RATELIMIT_PAUSE_CUT', `ratelimit: a pause of ${seconds} s was cut to ${cut} s, the most`);
    await this.update((state, now) => ({ state: pauseState(this.settings, state, now, cut), result: undefined }));
  }

  /** What is used and left of each limit (in the order given), any pause, and the calls in flight. Changes nothing. */
  async status(): Promise<RateLimitStatus> {
    const { settings, defaultCost } = this;
    const st = await this.update((state, now, ctx) => ({ result: statusOf(settings, state, now, defaultCost, ctx) }));
    st.limits = this.limits.map((l) => st.limits[settings.limits.indexOf(l)] as RateLimitStatus['limits'][number]);
    return st;
  }

  /**
   * Keeps what a response's headers say of the server's limit ({@link readServerReport}) in the shared state, for every
   * process and call already asleep: "N left until T" caps this limiter's grants until T, never above its own limits;
   * a 429 or 503's `Retry-After` pauses as {@link pause} does. Call it on every response, in any order, or on none:
   * each is matched with this process's oldest call not yet observed. Resolves to what it read; bad headers only warn.
   */
  async observe(response: unknown): Promise<ServerReport> {
    const report = readServerReport(response);
    for (const line of report.ignored) warn('RATELIMIT_HEADER_IGNORED', `ratelimit: observe() ignored ${line}`);
    const base = this.unobserved.shift();
    const limits = report.limits.filter((l) => this.settings.limits.some((mine) => mine.unit === l.unit));
    const { pause } = report;
    if (!limits.length && pause === undefined) return report;
    await this.update((state, now) => {
      const capped = limits.length ? observeState(this.settings, state, now, limits, base) : state;
      return { state: pause === undefined ? capped : pauseState(this.settings, capped, now, pause), result: undefined };
    });
    return report;
  }

  /** Releases the store's descriptors and files, not the shared state; a later call reopens what it needs. */
  close(): void | Promise<void> {
    return this.store.close?.();
  }

  [Symbol.dispose](): void {
    void this.close();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  // --- private --------------------------------------------------------------

  // Every store transaction but the plain wait()'s goes through here, and sees a state checked against the settings.
  private async update<T>(tx: Transaction<T>, options?: UpdateOptions): Promise<T> {
    const { settings, store } = this;
    return store.update((state, now, ctx) => tx(checkState(settings, state, store.name), now, ctx), options);
  }

  private updateOptions(call: Call): UpdateOptions {
    if (call === this.plainCall) return PLAIN_UPDATE;
    return { signal: call.signal, lockTimeout: Math.max(call.maxWait, MIN_LOCK_WAIT_S) };
  }

  // Reserves the call's rate slot; or if it is more than maxWait away, takes nothing and returns how far away it is.
  private reserveTx(call: Call): Transaction<number | Reservation> {
    if (call === this.plainCall && this.plainTx) return this.plainTx;
    const { settings, store } = this;
    return (state, now) => {
      const out = takeRate(settings, state && checkState(settings, state, store.name), now, call.cost);
      return out.result.at - now > call.maxWait ? { result: out.result.at - now } : out;
    };
  }

  // On waking at its slot (see recheck()); a new reservation past maxWait in all is given back, its wait returned.
  private recheckTx(r: Reservation, call: Call, startedMs: number): Transaction<Recheck | number> {
    return (state, now) => {
      const current = checkState(this.settings, state, this.store.name);
      const out = recheck(this.settings, current, r, now);
      const total = typeof out.result === 'object' ? (monoMs() - startedMs) / 1000 + (out.result.at - now) : 0;
      if (!current || total <= call.maxWait) return out;
      return { state: giveBack(this.settings, current, r) ?? current, result: total };
    };
  }

  // Sleeps to the slot, rechecking until it may go; gives it back on abort. `waited` is by slot times; no `r`: lost.
  private async sleepThrough(r: Reservation, call: Call, started: number):
    Promise<{ waited: number; r?: Reservation }> {
    let waited = 0;
    for (;;) {
      const left = r.at - r.now;
      waited += Math.max(0, left);
      try {
        if (left > 0 || call.signal?.aborted) await sleepUntil(monoMs() + left * 1000, call.signal);
        if (left <= 0) return { waited, r };
        const again = await this.store.update(this.recheckTx(r, call, started), this.updateOptions(call));
        if (again === 'go') return { waited, r };
        if (again === 'lost') { this.slots?.lost(r); return { waited }; }
        if (typeof again === 'number') {
          throw new RateLimitTimeoutError(again, call.maxWait, `ratelimit: a pause moved this call's slot to `
            + `${again.toFixed(3)} s after it began waiting, more than maxWait (${call.maxWait} s)`);
        }
        r = again;
      } catch (reason) {
        await this.update(
          (state) => ({ state: state && giveBack(this.settings, state, r), result: undefined }),
          { lockTimeout: 0.1 }, // quick: an aborted call should not wait long for a busy lock
        ).catch(warnFailed('RATELIMIT_GIVE_BACK_FAILED', 'give back an abandoned slot'));
        if (r.slot !== undefined) this.slots?.lost(r);
        throw reason;
      }
    }
  }

  // The handle acquire() returns, keeping its reservation; its settles and release run one after another, in order.
  private permit(r: Reservation, waited: number): Permit {
    let queue: Promise<void> = Promise.resolve();
    let released: Promise<void> | undefined;
    const then = (code: string, what: string, step: () => Promise<void>) => {
      queue = queue.then(step).catch(warnFailed(code, what));
      return queue;
    };
    const { slots, settings } = this;
    const permit: Permit = {
      waited,
      get cost() {
        return Object.fromEntries(settings.limits.map((l, i) => [l.unit, r.cost[i] ?? 0]));
      },
      settle: (actual) => {
        const vector = this.toCostVector(actual, undefined, r.cost);
        return then('RATELIMIT_SETTLE_FAILED', 'settle a permit', async () => {
          r = await this.update((state, now) => {
            const out = state && settle(settings, state, r, vector, now);
            return { state: out?.state, result: out?.reservation ?? r };
          });
        });
      },
      release: () => {
        slots?.dropped?.unregister(permit);
        // Only a slot is released: serial mode has one, and SlotAgent spaces the next call from its release.
        released ??= then('RATELIMIT_RELEASE_FAILED', 'release a permit', async () => {
          if (slots && r.slot !== undefined) await slots.release(r);
        });
        return released;
      },
      [Symbol.asyncDispose]: () => permit.release(),
    };
    slots?.dropped?.register(permit, r, permit);
    return permit;
  }

  private granted<R extends Reservation | number>(r: R): R {
    if (typeof r === 'object' && r.granted) this.unobserved.push(r.granted);
    if (this.unobserved.length > MAX_UNOBSERVED) this.unobserved.shift();
    return r;
  }

  private syncStore(method: string): Pick<Required<RateLimitStore>, 'updateSync'> {
    const { store } = this;
    if (typeof store.updateSync === 'function') return store as Required<RateLimitStore>;
    throw new TypeError(`ratelimit: ${method} needs a store with updateSync, and ${store.name} has none; use `
      + (method === 'tryAcquire' ? 'await wait({ maxWait: 0 })' : 'await wait()'));
  }

  // The options of a call to `method`, checked; none make the plain call, which checks and allocates nothing.
  private callOf(method: string, options: WaitOptions | undefined): Call {
    if (this.slots && method !== 'acquire') {
      throw new TypeError(`ratelimit: ${method}() cannot hold a concurrency slot (this limiter has maxConcurrent `
        + `${this.maxConcurrent}); use acquire() and release(), or run(fn)`);
    }
    if (options === undefined) return this.plainCall;
    checkOptions('wait options', options, 'wait option', WAIT_OPTION_NAMES);
    const { signal, maxWait = Infinity, weight, cost } = options;
    checkNumber('maxWait', maxWait, 'a number of seconds, 0 or more', maxWait >= 0);
    const isSignal = typeof signal === 'object' && signal !== null && typeof signal.addEventListener === 'function';
    check('signal', signal, 'an AbortSignal', signal === undefined || isSignal);
    const vector = weight === undefined && cost === undefined ? this.defaultCost : this.toCostVector(cost, weight);
    return signal === undefined ? { maxWait, cost: vector } : { signal, maxWait, cost: vector };
  }

  // A cost, checked, as units per limit. Units not named keep `base`'s.
  private toCostVector(cost: Cost | undefined, weight: number | undefined, base = this.defaultCost): number[] {
    const limits = this.settings.limits;
    const units = [...new Set(limits.map((l) => l.unit))];
    const most = (unit: string) => Math.min(...limits.filter((l) => l.unit === unit).map((l) => l.maxCount));
    const given = new Map<string, number>();
    if (weight !== undefined) {
      if (!units.includes('calls')) throw new RangeError('ratelimit: weight counts calls, and no limit counts calls');
      const ok = Number.isInteger(weight) && weight >= 1 && weight <= most('calls');
      checkNumber('weight', weight, `an integer from 1 to maxCount (${most('calls')})`, ok);
      given.set('calls', weight);
    }
    const isCost = cost === undefined || (typeof cost === 'object' && cost !== null);
    check('cost', cost, 'an object of units, such as { tokens: 100 }', isCost);
    for (const [unit, n] of Object.entries(cost ?? {})) {
      if (!units.includes(unit)) {
        throw new RangeError(`ratelimit: cost names the unit ${JSON.stringify(unit)}, which no limit counts `
          + `(they count ${units.map((u) => JSON.stringify(u)).join(', ')})${nearest(unit, units)}`);
      }
      if (given.has(unit)) throw new TypeError('ratelimit: give weight or cost.calls, not both'); // weight is calls
      const ok = Number.isInteger(n) && n >= 0 && n <= most(unit);
      checkNumber(`cost.${unit}`, n, `an integer from 0 to its limit's maxCount (${most(unit)})`, ok);
      given.set(unit, n);
    }
    return limits.map((l, i) => given.get(l.unit) ?? base[i] ?? 0);
  }
}

// --- what RateLimit uses itself: first its tuning, each constant with what it trades ---

// A slot's lease (see slotLease): a holder stalled by a busy event loop keeps it; a vanished one's is back in a minute.
const DEFAULT_SLOT_LEASE_S = 60;
// A waiting process polls from 1 ms apart, doubling up to this. A poll costs 0.25 to 1.1 ms of CPU, so 200 ms keeps
// it under 1% of a core (bench/queue.ts); another process's freed slot stands idle 150 ms on average (its own, none).
const SLOT_POLL_MAX_MS = 200;
// A place in the queue lapses this long after its last poll, holding the queue up no longer; one back keeps its order.
const QUEUE_LEASE_S = 2;
// The longest pause, lease or stale time accepted, and the longest a pause from another clock is trusted: a day.
const MAX_DURATION_S = 86_400;
// The longest window: a year and a day, for limits such as "1,000 calls a year".
const MAX_PER_S = 366 * 86_400;
// Grants kept for observe(); past this many the oldest is forgotten, which only makes an observation count more.
const MAX_UNOBSERVED = 1_000;
const OPTION_NAMES = [
  'maxCount', 'per', 'greedy', 'limits', 'maxConcurrent', 'serial', 'slotLease', 'file', 'staleAfter', 'store',
];
const WAIT_OPTION_NAMES = ['signal', 'maxWait', 'weight', 'cost'];
const LIMIT_OPTION_NAMES = ['maxCount', 'per', 'greedy', 'unit'];
// Names other limiters use, and what this file calls them.
const OPTION_ALIASES: Readonly<Record<string, string>> = {
  limit: 'maxCount', interval: 'per (in seconds)', intervalMs: 'per (in seconds)', duration: 'per (in seconds)',
  max: 'maxCount', points: 'maxCount', tokensPerInterval: 'maxCount', concurrency: 'maxConcurrent',
};

const PLAIN_UPDATE: UpdateOptions = Object.freeze({ lockTimeout: Infinity }); // a plain call's, made once
interface Call { readonly signal?: AbortSignal; readonly maxWait: number; readonly cost: number[] } // checked options

// FinalizationRegistry is ES2021, so a project compiled for ES2020 has no type for it: declared here as far as used.
interface Finalizer { register(target: object, r: Reservation, token: object): void; unregister(token: object): void }
const Registry = (globalThis as { FinalizationRegistry?: new (cleanup: (r: Reservation) => void) => Finalizer })
  .FinalizationRegistry;

interface SlotWaiter { call: Call; startedMs: number; id: string; done(out: unknown, failed?: boolean): void }

// Hands out one limiter's concurrency slots in this process, which holds one place in the shared queue for all its
// waiters (see admit()). Its store transactions run one at a time, each doing all there is to do (give back, release,
// renew, grant in order): a release hands its slot on in the same transaction, and hundreds of waiters cost one poll.
class SlotAgent {
  private readonly id = randomHex(6);
  private readonly settings: Settings;
  private readonly lease: number;
  private readonly update: <T>(tx: Transaction<T>) => Promise<T>;
  private waiters: SlotWaiter[] = [];
  // Slots held in this process (granted, asleep on their rate slot, or in a permit), renewed together.
  private readonly held = new Map<string, Reservation>();
  private readonly releasing: Array<{ r: Reservation; done: () => void }> = [];
  private readonly returning: Reservation[] = [];
  private running = false;
  private again = false;
  private renewDue = false;
  private count = 0;
  private pollMs = 1;
  private pollTimer: ReturnType<typeof setTimeout> | undefined;
  private renewTimer: ReturnType<typeof setInterval> | undefined;
  readonly dropped = Registry && new Registry((r) => {
    warn('RATELIMIT_PERMIT_DROPPED', 'ratelimit: a permit was dropped without release(); its slot is freed now');
    void this.release(r);
  });

  constructor(settings: Settings, lease: number, update: <T>(tx: Transaction<T>) => Promise<T>) {
    this.settings = settings;
    this.lease = lease;
    this.update = update;
  }

  // Waits for a slot: a reservation holding one, or (holding nothing) the seconds its rate slot is away past maxWait.
  take(call: Call, startedMs: number): Promise<Reservation | number> {
    // Unique in every process: the agent's id and a count (a random id per call costs 30 µs, more than the call).
    const id = `${this.id}.${++this.count}`;
    return new Promise((resolve, reject) => {
      let timer: ReturnType<typeof setTimeout> | undefined;
      // Answers with a reservation or the seconds it would wait, once: a waiter no longer in the list has its answer.
      const done = (out: unknown, failed = out instanceof Error) => {
        const k = this.waiters.indexOf(waiter);
        if (k === -1) return;
        this.waiters.splice(k, 1);
        clearTimeout(timer);
        call.signal?.removeEventListener('abort', onAbort);
        if (this.waiters.length === 0) this.kick(); // to give up the place in the queue
        if (failed) reject(out); else resolve(out as Reservation | number);
      };
      const waiter: SlotWaiter = { call, startedMs, id, done };
      const onAbort = () => done(call.signal?.reason, true);
      call.signal?.addEventListener('abort', onAbort, { once: true });
      // Fails the wait past maxWait (a timer firing early is set again); first on a timer, so maxWait 0 can get a slot.
      const expire = () => {
        const waited = (monoMs() - startedMs) / 1000;
        const leftMs = (call.maxWait - waited) * 1000;
        if (leftMs >= MAX_TIMER_MS) return;
        if (leftMs > 0 || timer === undefined) { timer = setTimeout(expire, Math.max(0, Math.ceil(leftMs))); return; }
        done(new RateLimitTimeoutError(waited, call.maxWait, `ratelimit: all ${this.settings.maxConcurrent} `
          + `concurrency slots stayed held for ${waited.toFixed(3)} s, longer than maxWait (${call.maxWait} s)`));
      };
      expire();
      // In order of age: a call whose slot was lost goes back ahead of younger ones.
      const younger = this.waiters.findIndex((w) => w.startedMs > startedMs);
      this.waiters.splice(younger === -1 ? this.waiters.length : younger, 0, waiter);
      this.kick();
    });
  }

  release(r: Reservation): Promise<void> {
    this.lost(r);
    return new Promise((done) => {
      this.releasing.push({ r, done });
      this.kick();
    });
  }

  // A reservation's slot was found gone, or its call gave up.
  lost(r: Reservation): void {
    this.held.delete(r.slot as string);
  }

  // Runs a transaction soon, or once more after the one running.
  private kick(): void {
    clearTimeout(this.pollTimer);
    this.pollTimer = undefined;
    if (this.running) { this.again = true; return; }
    this.running = true;
    void this.loop();
  }

  private async loop(): Promise<void> {
    do {
      this.again = false;
      // Let the calls made in this turn of the event loop join the first transaction.
      await null;
      const waiters = this.waiters.slice();
      const releasing = this.releasing.splice(0);
      const returning = this.returning.splice(0);
      const renew = this.renewDue ? [...this.held.keys()] : [];
      this.renewDue = false;
      let results: Array<Reservation | number> = [];
      try {
        results = await this.update((state, now, ctx) => {
          let cur = state;
          for (const r of returning) cur = (cur && giveBack(this.settings, cur, r)) ?? cur;
          for (const { r } of releasing) cur = cur && release(this.settings, cur, r, now);
          if (renew.length) cur = (cur && renewSlots(cur, renew, now + this.lease)) ?? cur;
          const nowMs = monoMs();
          const out = admit(this.settings, cur, now, {
            id: this.id, holder: ctx.holder, isDead: (h) => ctx.isDead(h),
            slotLease: this.lease, queueLease: QUEUE_LEASE_S,
            waiters: waiters.map((w) => {
              const age = (nowMs - w.startedMs) / 1000;
              return { slot: w.id, cost: w.call.cost, since: now - age, maxWait: w.call.maxWait - age };
            }),
          });
          return { state: out.state ?? (cur === state ? undefined : cur), result: out.results };
        });
      } catch (error) {
        if (releasing.length) warnFailed('RATELIMIT_RELEASE_FAILED', `release ${releasing.length} slot(s)`)(error);
        if (renew.length) warnFailed('RATELIMIT_SLOT_RENEW_FAILED', `renew ${renew.length} slot(s)`)(error);
        // A busy lock is waited out; any other failure ends every wait.
        if (!(error instanceof RateLimitTimeoutError)) for (const w of waiters) w.done(error, true);
      }
      for (const { done } of releasing) done();
      results.forEach((out, k) => {
        const w = waiters[k] as SlotWaiter;
        if (typeof out !== 'object') w.done(out);
        else if (this.waiters.includes(w)) { this.held.set(w.id, out); w.done(out); }
        else this.returning.push(out); // it left meanwhile: give it back
      });
      if (this.returning.length) this.again = true;
      if (results.length) this.pollMs = 1;
    } while (this.again);
    this.running = false;
    this.schedule();
  }

  // Polls while anything waits, 0.5 to 1.5 × pollMs apart so processes poll out of step; renews slots every lease/3.
  private schedule(): void {
    if (this.waiters.length && this.pollTimer === undefined) {
      const ms = this.pollMs * (0.5 + Math.random());
      this.pollMs = Math.min(this.pollMs * 2, SLOT_POLL_MAX_MS);
      this.pollTimer = setTimeout(() => this.kick(), ms);
    }
    if (this.held.size && this.renewTimer === undefined) {
      this.renewTimer = setInterval(() => {
        if (!this.held.size) { clearInterval(this.renewTimer); this.renewTimer = undefined; return; }
        this.renewDue = true;
        this.kick();
      }, (this.lease / 3) * 1000);
      (this.renewTimer as { unref?: () => void }).unref?.(); // held slots alone must not keep the process alive
    }
  }
}

// ---------------------------------------------------------------------------
// 2. Scheduling core. Pure: the time is an argument and nothing sleeps or touches a file, so a made-up clock tests it.
// ---------------------------------------------------------------------------

// What reserve(), reschedule() and settle() return: the state to store, and the reservation made or changed.
type Reserved = { state: LimitState; reservation: Reservation };

/**
 * Reserves a call of `cost` (units per limit, in the settings' order) at the earliest time from `now`, past any pause,
 * that keeps every limit. Patient: c units go at `next` or later and move it to `at + c·per/maxCount` (from the slot,
 * never before `now`, so idling banks no burst). Greedy: at most `maxCount` units in any window `(t - per, t]`.
 */
export function reserve(s: Settings, state: LimitState | undefined, now: number, cost: readonly number[]): Reserved {
  const { state: out, result } = takeRate(s, state, now, cost);
  return { state: out, reservation: result };
}

// reserve() as a transaction's output, so the plain wait() hands it straight to the store.
function takeRate(
  s: Settings, state: LimitState | undefined, now: number, cost: readonly number[],
): { state: LimitState; result: Reservation } {
  // The plain wait(): one patient limit, nothing else in the state. The loops below cost it 30% (bench/features.ts).
  const only = s.limits.length === 1 ? (s.limits[0] as LimitSettings) : undefined;
  const counted = state?.lanes[0]?.granted !== undefined;
  const plain = s.maxConcurrent === Infinity && !s.serial && state?.pausedUntil === undefined && !counted;
  if (only && !only.greedy && plain) {
    const c = cost[0] ?? 0;
    const next = state?.lanes[0]?.next;
    const at = c > 0 && next !== undefined && next > now ? next : now;
    const lane = c > 0 ? { next: spacedAfter(only, at, c) } : (state?.lanes[0] ?? {});
    const limits = state?.limits ?? (s.limits as LimitSettings[]);
    return { state: { v: STATE_VERSION, limits, lanes: [lane] }, result: { at, now, cost: cost as number[] } };
  }
  const at = earliest(s, state, now, cost);
  // Plain loops, not map() with a closure: on every wait(), its allocation is a measurable share of a 0.2 µs call.
  const lanes: Lane[] = [];
  for (let i = 0; i < s.limits.length; i++) {
    const lane = state?.lanes[i] ?? {};
    const c = cost[i] ?? 0;
    const out = addUnits(s.limits[i] as LimitSettings, lane, at, c, now);
    lanes.push(counted && c > 0 ? { ...out, granted: (lane.granted ?? 0) + c, caps: liveCaps(lane.caps, now) } : out);
  }
  const result: Reservation = { at, now, cost: cost as number[] };
  if (counted) result.granted = lanes.map((lane) => lane.granted ?? 0);
  return { state: edit(s, state, { lanes }), result };
}

/** The time {@link reserve} would give a call of `cost`, without reserving anything. */
export function earliest(s: Settings, state: LimitState | undefined, now: number, cost: readonly number[]): number {
  let at = Math.max(now, state?.pausedUntil ?? now);
  for (let i = 0; i < s.limits.length; i++) {
    const limit = s.limits[i] as LimitSettings;
    const lane = state?.lanes[i];
    const c = cost[i] ?? 0;
    if (!lane || c === 0) continue;
    // The latest of the limits' earliest times keeps them all: a rule that allows a time allows every later one.
    at = Math.max(at, limit.greedy ? greedyEarliest(limit, lane.runs, now, c) : (lane.next ?? at));
    // A server's cap, held until its time unless the call fits under it (caps are in order of time).
    for (const [most, until] of lane.caps ?? []) if (until > at && (lane.granted ?? 0) + c > most) at = until;
  }
  return at;
}

/** For {@link admit}: one process's waiters for a concurrency slot, oldest first; `id` names its place in the queue. */
export interface SlotRequest {
  id: string;
  holder: string;
  isDead(holder: string): boolean;
  slotLease: number;
  queueLease: number;
  /** Its slot's id, its cost, when it began waiting and how long it may still wait (the store's clock). */
  waiters: ReadonlyArray<{ slot: string; cost: readonly number[]; since: number; maxWait: number }>;
}

/**
 * Takes back slots and places whose holder is proven dead or lease ran out, then grants slots to a process's waiters
 * in order, with their rate slots, while fewer places (one per process, by its oldest waiter) are ahead than slots are
 * free. Per waiter served: its reservation, or the seconds to its rate slot if over its maxWait. No `state`: no change.
 */
export function admit(
  s: Settings, state: LimitState | undefined, now: number, req: SlotRequest,
): { state?: LimitState; results: Array<Reservation | number> } {
  const { id, holder } = req;
  // This process is alive; any other holder is judged once, as isDead may read files.
  const verdicts = new Map([[holder, false]]);
  const dead = (h: string) => verdicts.get(h) ?? verdicts.set(h, req.isDead(h)).get(h);
  const live = (h: Slot) => h.until > now && !dead(h.holder);
  const slots = (state?.slots ?? []).filter(live);
  const queue = (state?.queue ?? []).filter(live);
  const dropped = slots.length !== (state?.slots?.length ?? 0) || queue.length !== (state?.queue?.length ?? 0);
  const others = queue.filter((p) => p.id !== id);
  let out = state; // a new state once a slot is granted
  const results: Array<Reservation | number> = [];
  for (const w of req.waiters) {
    const ahead = others.filter((p) => (p.since ?? -Infinity) < w.since).length;
    if (s.maxConcurrent - slots.length <= ahead) break;
    const rate = takeRate(s, out, now, w.cost);
    if (rate.result.at - now > w.maxWait) results.push(rate.result.at - now);
    else {
      out = rate.state;
      results.push({ ...rate.result, slot: w.slot });
      slots.push({ id: w.slot, holder, until: now + req.slotLease });
    }
  }
  const first = req.waiters[results.length];
  const left = req.waiters.length - results.length;
  const mine = queue.find((p) => p.id === id);
  // The place is kept while its order and count hold and half its lease remains, so a poll that changes nothing writes
  // nothing. `since` comes from the waiter's age at each poll, so a millisecond apart counts as the same.
  const keep = mine && first && Math.abs((mine.since ?? 0) - first.since) < 1e-3 && mine.n === left &&
    mine.until - now > req.queueLease / 2;
  const place = keep ? mine : first && { id, holder, until: now + req.queueLease, since: first.since, n: left };
  if (place) others.push(place);
  if (!dropped && out === state && place === mine) return { results };
  others.sort((a, b) => (a.since ?? 0) - (b.since ?? 0));
  return { state: edit(s, out, { slots, queue: others }), results };
}

/** What {@link recheck} finds. */
export type Recheck = 'go' | 'lost' | Reservation;

/** After a sleep until its slot: 'go'; 'lost' (its slot lapsed: rate slot given back); or, past a pause, a new one. */
export function recheck(
  s: Settings, state: LimitState | undefined, r: Reservation, now: number,
): { state?: LimitState | undefined; result: Recheck } {
  if (!state) return { result: 'go' };
  const lost = r.slot !== undefined && !state.slots?.some((h) => h.id === r.slot);
  if (lost) return { state: giveBack(s, state, { ...r, slot: undefined }), result: 'lost' };
  if (state.pausedUntil === undefined || state.pausedUntil <= r.at) return { result: 'go' };
  const moved = reschedule(s, state, r, now);
  return { state: moved.state, result: moved.reservation };
}

/** For a call that woke to a pause set after it reserved: its units given back and reserved again, slot kept. */
export function reschedule(s: Settings, state: LimitState, r: Reservation, now: number): Reserved {
  const { state: out, result } = takeRate(s, giveBack(s, state, { ...r, slot: undefined }) ?? state, now, r.cost);
  if (r.slot !== undefined) result.slot = r.slot;
  return { state: out, reservation: result };
}

/** Undoes what no later reservation depends on (see returnUnits) and frees r's slot; undefined if nothing changes. */
export function giveBack(s: Settings, state: LimitState, r: Reservation): LimitState | undefined {
  const lanes = state.lanes.map((lane, i) => returnUnits(s.limits[i], lane, r, i, r.cost[i] ?? 0));
  const slots = state.slots?.filter((h) => h.id !== r.slot);
  if (lanes.every((lane, i) => lane === state.lanes[i]) && slots?.length === state.slots?.length) return undefined;
  return edit(s, state, { lanes, slots });
}

/** Charges r `cost` instead: extras as reserve() would, refunds where {@link giveBack} could. Returns r as charged. */
export function settle(s: Settings, state: LimitState, r: Reservation, cost: readonly number[], now: number): Reserved {
  const settled: Reservation = { ...r, cost: [...r.cost] };
  const lanes = state.lanes.map((lane, i) => {
    const limit = s.limits[i];
    const old = r.cost[i] ?? 0;
    const want = cost[i] ?? old;
    if (!limit || want === old) return lane;
    if (want < old) {
      const out = returnUnits(limit, lane, r, i, old - want);
      if (out !== lane) settled.cost[i] = want; // else a later reservation depends on it, and it stays charged
      return out;
    }
    settled.cost[i] = want;
    // A server's count grows with the extra; a refund is not taken off it (the server may have counted it).
    const counted = { ...lane, granted: lane.granted === undefined ? undefined : lane.granted + want - old };
    if (limit.greedy) return addUnits(limit, counted, r.at, want - old, now);
    // While it is the limit's last reservation, `next` stays exactly what reserve() would make (to settle it again).
    if (lane.next === spacedAfter(limit, r.at, old)) return { ...counted, next: spacedAfter(limit, r.at, want) };
    return { ...counted, next: spacedAfter(limit, lane.next ?? r.at, want - old) };
  });
  return { state: { ...state, lanes }, reservation: settled };
}

/** Ends a call: frees its concurrency slot; in serial mode, spaces the next call from now (its end), not its start. */
export function release(s: Settings, state: LimitState, r: Reservation, now: number): LimitState {
  const slots = state.slots?.filter((h) => h.id !== r.slot);
  if (!s.serial || now <= r.at) return edit(s, state, { slots });
  const lanes = state.lanes.map((lane, i) => {
    const limit = s.limits[i];
    const c = r.cost[i] ?? 0;
    if (!limit || c === 0) return lane;
    if (!limit.greedy) return { ...lane, next: Math.max(lane.next ?? now, spacedAfter(limit, now, c)) };
    return addUnits(limit, returnUnits(limit, lane, r, i, c), now, c, now);
  });
  return edit(s, state, { slots, lanes });
}

/** Extends the leases of the concurrency slots named to `until`. Undefined when none of them is held. */
export function renewSlots(state: LimitState, ids: readonly string[], until: number): LimitState | undefined {
  if (!state.slots?.some((h) => ids.includes(h.id))) return undefined;
  const slots = state.slots.map((h) => (ids.includes(h.id) ? { ...h, until: Math.max(h.until, until) } : h));
  return { ...state, slots };
}

/** Holds every call until at least `now + seconds`. A pause only ever extends. */
export function pauseState(s: Settings, state: LimitState | undefined, now: number, seconds: number): LimitState {
  return edit(s, state, { pausedUntil: Math.max(state?.pausedUntil ?? -Infinity, now + seconds) });
}

/**
 * Keeps what a server said: until `now + resetIn`, a lane's count `granted` stays within `base` (the count with the
 * call whose response was read) + `remaining`. Caps are only added: docs/guarantees.md, "What the server says".
 */
export function observeState(
  s: Settings, state: LimitState | undefined, now: number, limits: readonly ServerLimit[], base?: readonly number[],
): LimitState {
  const lanes = s.limits.map((limit, i): Lane => {
    const lane = state?.lanes[i] ?? {};
    const granted = lane.granted ?? 0;
    let caps = liveCaps(lane.caps, now) ?? [];
    for (const l of limits) {
      const cap: [number, number] = [Math.min(base?.[i] ?? granted, granted) + l.remaining, now + l.resetIn];
      if (l.unit !== limit.unit || caps.some(([most, until]) => most <= cap[0] && until >= cap[1])) continue;
      caps = [...caps.filter(([most, until]) => most < cap[0] || until > cap[1]), cap].sort((a, b) => a[1] - b[1]);
      // Past MAX_CAPS, the two first become one as tight as the first and as long as the second.
      const [first, second] = caps as [[number, number], [number, number]];
      if (caps.length > MAX_CAPS) caps.splice(0, 2, [Math.min(first[0], second[0]), second[1]]);
    }
    return { ...lane, granted, caps: caps.length ? caps : undefined };
  });
  return edit(s, state, { lanes });
}

function liveCaps(caps: Lane['caps'], now: number): Lane['caps'] {
  const out = caps?.filter(([, until]) => until > now);
  return out?.length ? out : undefined;
}

/** What {@link RateLimit.status} reports, from a state. */
export function statusOf(
  s: Settings, state: LimitState | undefined, now: number, cost: readonly number[], ctx?: TxContext,
): RateLimitStatus {
  const limits = s.limits.map((limit, i) => {
    const lane = state?.lanes[i];
    // Patient: units reserved ahead of now (over maxCount if calls are over a window ahead); 1e-9 absorbs float error.
    const used = limit.greedy
      ? (lane?.runs ?? []).reduce((sum, [t, n]) => (t > now - limit.per ? sum + n : sum), 0)
      : Math.ceil((Math.max(0, (lane?.next ?? now) - now) * limit.maxCount) / limit.per - 1e-9);
    // By this limit alone: one unit of it, and any pause left out.
    const unit = s.limits.map((_, j) => (j === i ? 1 : 0));
    const nextIn = earliest(s, state && { ...state, pausedUntil: now }, now, unit) - now;
    const server = liveCaps(lane?.caps, now)?.map(([most, until]) =>
      ({ remaining: Math.max(0, most - (lane?.granted ?? 0)), resetIn: until - now }))
      .reduce((a, b) => (b.remaining < a.remaining ? b : a));
    return { ...limit, used, remaining: Math.max(0, limit.maxCount - used), nextIn, ...(server && { server }) };
  });
  const live = (h: Slot) => h.until > now && !(ctx?.isDead(h.holder) ?? false);
  return {
    limits,
    nextIn: earliest(s, state, now, cost) - now,
    pausedFor: Math.max(0, (state?.pausedUntil ?? now) - now),
    inFlight: (state?.slots ?? []).filter(live).length,
    waiting: (state?.queue ?? []).filter(live).reduce((sum, p) => sum + (p.n ?? 1), 0),
    maxConcurrent: s.maxConcurrent === Infinity ? null : s.maxConcurrent,
  };
}

/** For stores: the value read back as a state, or undefined if none (torn, foreign, damaged); a newer one throws. */
export function parseState(value: unknown): LimitState | undefined {
  let v = value as Partial<LimitState> | null;
  if (typeof v !== 'object' || v === null) return undefined;
  // Version 2 queued each call apart; its queue is dropped (callers rejoin), the rest carries over.
  if ((v.v as number) === 2) {
    v = { ...v, v: STATE_VERSION };
    delete v.queue;
  }
  // A whole version number above ours; anything else there is damage, not a newer format.
  if (Number.isSafeInteger(v.v) && (v.v as number) > STATE_VERSION) {
    throw new RateLimitMismatchError(`ratelimit: the state was written by a newer ratelimit (state version ${v.v}; `
      + `this copy, ${VERSION}, reads version ${STATE_VERSION}). Update this copy of ratelimit.ts`);
  }
  const valid = v.v === STATE_VERSION && every(v.limits, isLimit) && every(v.lanes, isLane) &&
    v.lanes.length === v.limits.length && maybe(v.pausedUntil, isTime) && maybe(v.maxConcurrent, isInt) &&
    maybe(v.serial, isBoolean) && maybe(v.slots, isSlots) && maybe(v.queue, isSlots);
  return valid ? (v as LimitState) : undefined;
}

// parseState's checks, made once: a state is parsed inside the lock whenever another process wrote it last.
const isInt = Number.isSafeInteger;
const isObject = (x: unknown): x is object => typeof x === 'object' && x !== null;
const isBoolean = (x: unknown) => typeof x === 'boolean';
const maybe = (x: unknown, ok: (x: unknown) => boolean) => x === undefined || ok(x);
const every = <T>(x: unknown, ok: (x: T) => boolean): x is T[] => Array.isArray(x) && x.every(ok);
const pairOf = (x: unknown, a: (x: unknown) => boolean, b: (x: unknown) => boolean) =>
  Array.isArray(x) && x.length === 2 && a(x[0]) && b(x[1]);
const isUnits = (n: unknown) => isInt(n) && (n as number) > 0;
const isRun = (x: unknown) => pairOf(x, isTime, isUnits);
const isCap = (x: unknown) => pairOf(x, isInt, isTime);
const isLimit = (l: Partial<LimitSettings>) => isObject(l) && isInt(l.maxCount) && isTime(l.per) &&
  isBoolean(l.greedy) && typeof l.unit === 'string';
const isLane = (lane: Partial<Lane>) => isObject(lane) && maybe(lane.next, isTime) && maybe(lane.granted, isInt) &&
  (lane.runs === undefined || every(lane.runs, isRun)) && (lane.caps === undefined || every(lane.caps, isCap));
const isSlot = (h: Partial<Slot>) => isObject(h) && typeof h.id === 'string' && typeof h.holder === 'string' &&
  isTime(h.until) && maybe(h.since, isTime) && maybe(h.n, isInt);
const isSlots = (x: unknown) => every(x, isSlot);

/** For a state whose clock changed (a reboot): times moved by `by`, none past a window (a pause: a day) after `now`. */
export function shiftState(state: LimitState, by: number, now: number): LimitState {
  const longest = Math.max(...state.limits.map((l) => l.per));
  const move = (t: number, cap: number) => Math.min(t + by, now + cap);
  const lanes = state.lanes.map((lane, i) => {
    const per = state.limits[i]?.per ?? longest;
    const moved: Lane = { ...lane };
    if (lane.next !== undefined) moved.next = move(lane.next, per);
    if (lane.runs !== undefined) moved.runs = lane.runs.map(([t, n]) => [move(t, per), n]);
    if (lane.caps !== undefined) moved.caps = lane.caps.map(([most, t]) => [most, move(t, MAX_DURATION_S)]);
    return moved;
  });
  const out: LimitState = { ...state, lanes };
  if (state.pausedUntil !== undefined) out.pausedUntil = move(state.pausedUntil, Math.max(longest, MAX_DURATION_S));
  if (state.slots !== undefined) out.slots = state.slots.map((h) => ({ ...h, until: move(h.until, longest) }));
  if (state.queue !== undefined) out.queue = state.queue.map((h) => ({ ...h, until: move(h.until, longest) }));
  return out;
}

/** For stores that expire what they keep (a Redis TTL): when the state holds nobody back, plus one longest window. */
export function expiresAt(state: LimitState): number {
  let last = state.pausedUntil ?? -Infinity;
  state.lanes.forEach((lane, i) => {
    const lastRun = lane.runs?.[lane.runs.length - 1];
    last = Math.max(last, lane.next ?? last, lastRun ? lastRun[0] + (state.limits[i]?.per ?? 0) : last,
      ...(lane.caps ?? []).map(([, until]) => until));
  });
  for (const h of [...(state.slots ?? []), ...(state.queue ?? [])]) last = Math.max(last, h.until);
  return last + Math.max(...state.limits.map((l) => l.per));
}

// The state, if any, when made for exactly these settings: a mismatch throws, saying how to reset, rather than fight.
function checkState(s: Settings, state: LimitState | undefined, storeName: string): LimitState | undefined {
  // The same array (a state this limiter made in memory) needs no comparing.
  if (!state || ((state.limits === s.limits || (state.limits.length === s.limits.length &&
    state.limits.every((l, i) => compareLimits(l, s.limits[i] as LimitSettings) === 0))) &&
    (state.maxConcurrent ?? Infinity) === s.maxConcurrent && (state.serial ?? false) === s.serial)) return state;
  const describe = (x: Settings | LimitState) => [...x.limits.map(describeLimit),
    (x.maxConcurrent ?? Infinity) !== Infinity && `maxConcurrent ${x.maxConcurrent}`, x.serial && 'serial',
  ].filter(Boolean).join('; ');
  throw new RateLimitMismatchError(`ratelimit: ${storeName} was made for ${describe(state)}, but this limiter has `
    + `${describe(s)}. Use the same settings everywhere, or delete that state to reset it.`);
}

// `state` with `changes`, or a fresh state: field by field, so keys keep one order; empty slots and queue are left out.
function edit(
  s: Settings, state: LimitState | undefined, changes: { [K in keyof LimitState]?: LimitState[K] | undefined },
): LimitState {
  const limits = state?.limits ?? (s.limits as LimitSettings[]);
  const out: LimitState = { v: STATE_VERSION, limits, lanes: changes.lanes ?? state?.lanes ?? limits.map(() => ({})) };
  const maxConcurrent = state ? state.maxConcurrent : s.maxConcurrent === Infinity ? undefined : s.maxConcurrent;
  if (maxConcurrent !== undefined) out.maxConcurrent = maxConcurrent;
  const serial = state ? state.serial : s.serial || undefined;
  if (serial !== undefined) out.serial = serial;
  const pausedUntil = changes.pausedUntil ?? state?.pausedUntil;
  if (pausedUntil !== undefined) out.pausedUntil = pausedUntil;
  const slots = 'slots' in changes ? changes.slots : state?.slots;
  if (slots?.length) out.slots = slots;
  const queue = 'queue' in changes ? changes.queue : state?.queue;
  if (queue?.length) out.queue = queue;
  return out;
}

// The earliest time from `now`, not before the last grant (grants stay in order), that keeps (t - per, t] in maxCount.
function greedyEarliest(limit: LimitSettings, runs: Lane['runs'], now: number, c: number): number {
  const last = runs?.[runs.length - 1];
  if (!runs || !last) return now;
  const t = Math.max(now, last[0]);
  let inWindow = runs.reduce((sum, [time, n]) => (time > t - limit.per ? sum + n : sum), 0);
  // Then waits for the oldest grants to leave the window, one run at a time (c <= maxCount: at worst all).
  let at = t;
  for (const [time, n] of runs) {
    if (inWindow + c <= limit.maxCount) break;
    if (time <= t - limit.per) continue;
    inWindow -= n;
    at = time + limit.per;
  }
  return at;
}

// A lane with c units granted at `at` (greedy: less the runs out of every window from `now` on). Past MAX_RUNS, the two
// closest runs merge onto the later's time (only delaying capacity). Runs are shared with the old lane, never changed.
function addUnits(limit: LimitSettings, lane: Lane, at: number, c: number, now: number): Lane {
  if (!limit.greedy) return c === 0 ? lane : { ...lane, next: spacedAfter(limit, at, c) };
  if (c === 0 && !lane.runs) return lane;
  // run[0] rather than a destructured [t]: over up to MAX_RUNS runs per call, destructuring is measurably slower.
  const out = (lane.runs ?? []).filter((run) => run[0] > now - limit.per);
  if (c > 0 && at > now - limit.per) {
    const k = out.findIndex((run) => run[0] >= at);
    const run = out[k];
    if (run?.[0] === at) out[k] = [at, run[1] + c];
    else out.splice(k < 0 ? out.length : k, 0, [at, c]);
  }
  if (out.length > MAX_RUNS) {
    const gap = (i: number) => (out[i]?.[0] ?? 0) - (out[i - 1]?.[0] ?? 0);
    let k = 1;
    for (let i = 2; i < out.length; i++) if (gap(i) < gap(k)) k = i;
    const [earlier, later] = out.slice(k - 1, k + 1) as [[number, number], [number, number]];
    out.splice(k - 1, 2, [later[0], earlier[1] + later[1]]);
  }
  return { ...lane, runs: out };
}

// Takes c of r's units off lane i, or returns the lane: patient, only from the last reservation (later ones are spaced
// from it); greedy, from r's own run. What stays spent (merged into a later run, say) errs toward fewer calls.
function returnUnits(limit: LimitSettings | undefined, lane: Lane, r: Reservation, i: number, c: number): Lane {
  if (!limit || c === 0) return lane;
  if (!limit.greedy) {
    // Back to its slot, as late as the `next` before it and its `now`: that frees as much as going back to that `next`.
    const full = r.cost[i] ?? 0;
    if (lane.next !== spacedAfter(limit, r.at, full)) return lane;
    return { ...lane, next: spacedAfter(limit, r.at, Math.max(0, full - c)) };
  }
  const run = lane.runs?.find(([t]) => t === r.at);
  if (!lane.runs || !run) return lane;
  const runs = lane.runs.map((other): [number, number] => (other === run ? [run[0], run[1] - c] : other));
  return { ...lane, runs: runs.filter(([, n]) => n > 0) };
}

// A patient limit's `next` after c units at `at`: always this expression, so a reservation can recognise its own.
function spacedAfter(limit: LimitSettings, at: number, c: number): number {
  return at + (c * limit.per) / limit.maxCount;
}

// The settings' order of limits (see Settings.limits); 0 for the same limit.
function compareLimits(a: LimitSettings, b: LimitSettings): number {
  if (a.unit !== b.unit) return a.unit < b.unit ? -1 : 1;
  return a.per - b.per || a.maxCount - b.maxCount || Number(a.greedy) - Number(b.greedy);
}

function describeLimit(l: LimitSettings): string {
  const unit = l.unit === 'calls' ? '' : `, unit=${l.unit}`;
  return `maxCount=${l.maxCount}, per=${l.per}, ${l.greedy ? 'greedy' : 'patient'}${unit}`;
}

// Finite, and within what any clock here can read (about 31,000 years in seconds): a stranger's 1e300 is no time.
function isTime(t: unknown): t is number {
  return typeof t === 'number' && Math.abs(t) < 1e12;
}

// The core's tuning. The state's version: a newer one is refused, never overwritten; raising it locks older copies out.
const STATE_VERSION = 3;
// Runs kept per greedy lane: at about 25 bytes of JSON each, a lane stays within a few KB however big the limit. Grants
// closer than per/MAX_RUNS merge (see addUnits), delaying capacity by about that much, which errs toward fewer calls.
const MAX_RUNS = 128;
// Server caps kept per limit: a newer response mostly replaces older ones, so a few cover those read out of order.
const MAX_CAPS = 8;

// ---------------------------------------------------------------------------
// 3. Memory store, and the sleeping and checking it needs
// ---------------------------------------------------------------------------

/** Keeps the state in this process's memory, on its monotonic clock or `now` (seconds): the default without `file`. */
export class MemoryStore implements RateLimitStore {
  readonly name = 'the in-memory state';
  private state?: LimitState;
  private readonly now: () => number;

  constructor(now: () => number = () => monoMs() / 1000) {
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

const MEMORY_CONTEXT: TxContext = { holder: 'this process', isDead: () => false }; // alive while anything can ask

// --- sleeping, option checks and warnings, for the memory store and everything above -----

// A call waits for a busy lock up to its maxWait but at least this, even in tryAcquire(): locks are held for tens of
// µs and dead holders sought every 2 ms, so 10 ms rides out contention, not waiting staleAfter for a stopped holder.
const MIN_LOCK_WAIT_S = 0.01;
// setTimeout fires a delay over 2^31-1 ms (24.8 days) after 1 ms, so long waits are slept in chunks.
const MAX_TIMER_MS = 2 ** 31 - 1;
// The end of a sleep, slept blocking the thread (no CPU): 1 ms, the timers' resolution. The event loop stands still
// this long once per sleep; 0 gives that back, and lets callers through about 1 ms late instead.
const FINISH_MS = 1;

// Sleeps until monoMs() reaches `deadline`: a timer for floor(left) ms, then the last FINISH_MS in the kernel, which
// lets the caller through within 0.7 ms of its time (p99) against 1.5 ms on a timer alone (bench/precision.ts).
function sleepUntil(deadline: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) { reject(signal.reason); return; }
    let timer: ReturnType<typeof setTimeout> | undefined;
    const tick = () => {
      const left = deadline - monoMs();
      if (left > FINISH_MS) { timer = setTimeout(tick, Math.min(Math.floor(left), MAX_TIMER_MS)); return; }
      signal?.removeEventListener('abort', onAbort);
      sleepSyncUntil(deadline);
      resolve();
    };
    // The first look comes from the event loop, or a caller whose sleeps all end within FINISH_MS starves it.
    const first = setImmediate(tick);
    const onAbort = () => { clearImmediate(first); clearTimeout(timer); reject(signal?.reason); };
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

// Blocks the thread until monoMs() reaches `deadline`, in the kernel (no CPU), on Node, Bun and Deno alike.
const sleeper = new Int32Array(new SharedArrayBuffer(4));
function sleepSyncUntil(deadline: number): void {
  for (let left = deadline - monoMs(); left > 0; left = deadline - monoMs()) {
    Atomics.wait(sleeper, 0, 0, Math.min(left, MAX_TIMER_MS));
  }
}

// This process's monotonic clock in ms: on Node, process.hrtime, as the first performance.now() loads ~1 ms of Node.
const runtime = globalThis as { Bun?: unknown; Deno?: unknown };
const monoMs: () => number = runtime.Bun === undefined && runtime.Deno === undefined
  ? () => { const [s, ns] = process.hrtime(); return s * 1e3 + ns / 1e6; }
  : () => performance.now();

// `bytes` random bytes as hex, from Web Crypto (Node 20+, Bun, Deno): node:crypto would add a few ms (measured by hand)
// to every import of this file. Without it (Node 18), Math.random: names made with O_EXCL stay exclusive, if guessable.
const webCrypto = (globalThis as { crypto?: { getRandomValues(a: Uint8Array): Uint8Array } }).crypto;
function randomHex(bytes: number): string {
  const a = new Uint8Array(bytes);
  if (webCrypto) webCrypto.getRandomValues(a);
  else for (let i = 0; i < bytes; i++) a[i] = Math.floor(Math.random() * 256);
  return Array.from(a, (b) => b.toString(16).padStart(2, '0')).join('');
}

function isPromiseLike<T>(v: T | PromiseLike<T>): v is PromiseLike<T> {
  return typeof (v as PromiseLike<T> | undefined)?.then === 'function';
}

// Every warning goes through here: type RateLimitWarning and a stable code, for process.on('warning') to filter.
function warn(code: string, message: string): void {
  process.emitWarning(message, { type: 'RateLimitWarning', code });
}

// The warning for a best-effort step that failed, for paths that must not throw.
function warnFailed(code: string, what: string): (error: unknown) => void {
  return (error) => warn(code, `ratelimit: could not ${what}: ${(error as Error).message}`);
}

// Option checks, each error naming the option and what it got. `name`: "" for maxCount and per, or like "limits[0]".
function checkLimit(spec: LimitOptions, name: string, greedyDefault: boolean): LimitSettings {
  if (name) checkOptions(name, spec, `option of ${name}`, LIMIT_OPTION_NAMES, 'an object of { maxCount, per }');
  const prefix = name && `${name}.`;
  const { maxCount, per, greedy = greedyDefault, unit = 'calls' } = spec;
  checkNumber(`${prefix}maxCount`, maxCount, 'a positive integer', Number.isSafeInteger(maxCount) && maxCount >= 1);
  checkSeconds(`${prefix}per`, per, MAX_PER_S, ' (a year and a day)');
  // Other limiters count in milliseconds, where per: 1000 is a second; whole thousands of seconds are rarely meant.
  if (per >= 1000 && per % 1000 === 0) {
    warn('RATELIMIT_PER_LOOKS_LIKE_MS', `ratelimit: ${prefix}per is in seconds, so per: ${per} is a window of `
      + `${(per / 3600).toFixed(1)} hours; for ${per / 1000} s, write per: ${per / 1000}`);
  }
  check(`${prefix}greedy`, greedy, 'a boolean', typeof greedy === 'boolean');
  check(`${prefix}unit`, unit, 'a non-empty string', typeof unit === 'string' && unit !== '');
  return { maxCount, per, greedy, unit };
}

// Checks that `options` is an object (else "<name> must be <shape>"), and refuses unknown names, naming the closest.
function checkOptions(name: string, options: unknown, kind: string, known: readonly string[], shape = 'an object') {
  check(name, options, shape, typeof options === 'object' && options !== null);
  for (const key of Object.keys(options as object)) {
    if (known.includes(key)) continue;
    const alias = OPTION_ALIASES[key];
    const aliased = alias !== undefined && known.includes(alias.split(' ')[0] as string);
    const hint = aliased ? `; this file calls it ${alias}` : nearest(key, known);
    throw new TypeError(`ratelimit: unknown ${kind} ${JSON.stringify(key)}${hint}`);
  }
}

// "; did you mean ...?" naming the known name closest to `name`, if it is close enough to be a typo of it.
function nearest(name: string, known: readonly string[]): string {
  const distance = (k: string) => editDistance(name.toLowerCase(), k.toLowerCase());
  const best = known.reduce((a, b) => (distance(b) < distance(a) ? b : a));
  return distance(best) <= Math.max(2, name.length / 3) ? `; did you mean ${JSON.stringify(best)}?` : '';
}

function editDistance(a: string, b: string): number {
  let row = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const prev = row;
    row = [i];
    for (let j = 1; j <= b.length; j++) {
      row[j] = Math.min((prev[j] ?? 0) + 1, (row[j - 1] ?? 0) + 1, (prev[j - 1] ?? 0) + Number(a[i - 1] !== b[j - 1]));
    }
  }
  return row[b.length] ?? 0;
}

// "<name> must be <expected>, got <value>": a TypeError unless `typeOk`, then a RangeError unless `ok`.
function check(name: string, value: unknown, expected: string, typeOk: boolean, ok = true): void {
  if (typeOk && ok) return;
  const message = `ratelimit: ${name} must be ${expected}, got ${show(value)}`;
  throw typeOk ? new RangeError(message) : new TypeError(message);
}

function checkNumber(name: string, value: unknown, expected: string, ok: boolean): void {
  check(name, value, expected, typeof value === 'number', ok);
}

function checkSeconds(name: string, value: number, most: number, why = ''): void {
  checkNumber(name, value, `a number of seconds above 0, at most ${most}${why}`, value > 0 && value <= most);
}

function show(value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value);
  if (Array.isArray(value) && value.length === 0) return 'an empty array';
  if (typeof value === 'object' && value !== null) return Object.prototype.toString.call(value);
  return String(value);
}

// ===========================================================================
// BEGIN FILE STORE
// 4. File store. Each part calls only the parts after it: the store and its one retry loop; the files on disk (the
//    lock's names, owner records, the state file); liveness (is a lock's holder proven gone); the shared clock.
// ===========================================================================

// Tuning. A lock is held for tens of µs: a waiter retries at once (blocking) for SPIN_MS, then on timers from 20 µs
// doubling to MAX_BACKOFF_MS, jittered (shorter reacts sooner, longer costs less); a pause under BUSY_SPIN_MS spins.
const SPIN_MS = 2;
const MAX_BACKOFF_MS = 4;
const BUSY_SPIN_MS = 0.1;
// How often a waiter checks whether the lock's holder died: a read costs about 10 µs, a crash stalls the others.
const INSPECT_EVERY_MS = 2;
// Tries past the timeout after a lock was broken: a slow break must not end a call that would now get the lock.
const GRACE_TRIES = 3;
// A break takes well under a millisecond; a break lock older than this has a paused or dead breaker, and is taken.
const BREAK_LEASE_S = 1;
// A state file this much longer than the state is cut back (ftruncate makes ext4 flush); less is padded with spaces.
const SHRINK_SLACK_BYTES = 4096;
// The most of a state file ever read: a greedy limit at its most (128 runs) takes 3.1 KB, a slot or queued waiter
// 230 bytes, so 4 MiB holds a dozen limits and 18,000 slots and waiters. A larger file is never read (readState).
const MAX_STATE_BYTES = 4 * 1024 * 1024;
// The most of an owner record (about 300 bytes) or a /proc file (status, about 1.5 KB) ever read.
const MAX_SMALL_BYTES = 4096;
// State files kept open per thread: reopening costs about 10 µs; thousands kept open would use up descriptors.
const MAX_OPEN_STATES = 32;
// Lock sightings and namespace scans remembered: bounded memory, at the cost of judging one afresh.
const MAX_REMEMBERED = 100;
// A scan of /proc for a holder in another pid namespace costs about 5 ms (80 processes); its death shows this late.
const NAMESPACE_SCAN_EVERY_MS = 100;
// A state carried over from another clock by the wall clock errs late by WALL_MARGIN_S (Date.now()'s millisecond
// steps); a write "in our future" by less than CLOCKS_AGREE_S is jitter of one clock.
const WALL_MARGIN_S = 0.002;
const CLOCKS_AGREE_S = 0.005;
// Lining a local clock up with /proc/uptime: a narrower target polls longer at start-up (up to CALIBRATION_MAX_MS).
const CALIBRATION_TARGET_MS = 0.1;
const CALIBRATION_MAX_MS = 500;

const O_NOFOLLOW = constants.O_NOFOLLOW ?? 0;
const O_NONBLOCK = constants.O_NONBLOCK ?? 0;

/** Options for {@link FileStore}. */
export interface FileStoreOptions {
  /** Seconds; see {@link DEFAULT_STALE_AFTER}. */
  staleAfter?: number | undefined;
  /** The clock for the state and the locks' leases: {@link sharedClock} unless a test moves one by hand. */
  clock?: SharedClock | undefined;
}

// One try at the lock: the result; busy; lost (held past our lease: start over); or worth another try at once.
type Attempt<T> = { result: T } | 'busy' | 'lost' | 'again';

/**
 * Keeps the state in a JSON file shared by every process that names it (docs/guarantees.md: the files beside it and
 * the lock's rules). A holder keeps what it did only within its lease, staleAfter/2; breakLock says why that is safe.
 */
export class FileStore implements RateLimitStore {
  readonly name: string;
  /** Absolute path of the state file. */
  readonly path: string;
  /** How many stale locks this store has broken. */
  locksBroken = 0;
  /** How many times this store found its lease over (it was paused past staleAfter/2) and started over. */
  locksLost = 0;
  private readonly lockPath: string;
  private readonly breakPath: string;
  private readonly staleAfterS: number;
  private readonly givenClock: SharedClock | undefined;
  private owner: OwnerFile | undefined;
  private last?: LimitState; // the last state read or written: readState's fallback
  private seenFile = false;
  // The bytes last written and their state: while the file holds these, they need not be parsed and checked again.
  private memo: { tag: string; bytes: Buffer; state: LimitState } | undefined;
  // First sighting of each lock (inode and text) on our clock: a lower bound of its age, needing no trust in it.
  private readonly firstSeen = new Map<string, number>();

  constructor(file: string, options: FileStoreOptions = {}) {
    this.path = resolve(file);
    this.name = `state file ${JSON.stringify(this.path)}`;
    this.lockPath = `${this.path}.lock`;
    this.breakPath = `${this.path}.lock.break`;
    this.staleAfterS = options.staleAfter ?? DEFAULT_STALE_AFTER;
    this.givenClock = options.clock;
  }

  /** Runs `tx` on the state under the lock, blocking the thread while the lock is busy. */
  updateSync<T>(tx: Transaction<T>, options?: Pick<UpdateOptions, 'lockTimeout'>): T {
    const tries = this.tries(tx, options?.lockTimeout);
    for (let t = tries.next(); ; t = tries.next()) {
      if (t.done) return t.value;
      this.pauseSync(t.value);
    }
  }

  /** Runs `tx` under the lock; a promise only if the lock stays busy, rejected if `signal` aborts first. */
  update<T>(tx: Transaction<T>, options?: UpdateOptions): T | Promise<T> {
    const startedMs = monoMs();
    const tries = this.tries(tx, options?.lockTimeout);
    // Most acquisitions succeed within a few µs: stay synchronous then.
    for (let t = tries.next(); ; t = tries.next()) {
      if (t.done) return t.value;
      this.pauseSync(t.value);
      if (monoMs() - startedMs >= SPIN_MS) return this.updateLater(tries, options?.signal);
    }
  }

  private async updateLater<T>(tries: Generator<number, T>, signal?: AbortSignal): Promise<T> {
    for (;;) {
      signal?.throwIfAborted();
      const t = tries.next();
      if (t.done) return t.value;
      await new Promise((r) => setTimeout(r, Math.max(1, t.value)));
    }
  }

  // The one retry loop: each step tries the lock once and yields the pause before the next; throws past timeoutS.
  private *tries<T>(tx: Transaction<T>, timeoutS = Infinity): Generator<number, T> {
    const startedMs = monoMs();
    let inspectedMs = startedMs;
    let busyTries = 0;
    let graceTries = 0;
    for (;;) {
      // A retry lstats first (no kernel lock): a failed link() takes the directory lock the holder's unlink() needs.
      const a = busyTries > 0 && exists(this.lockPath) ? 'busy' : this.tryOnce(tx);
      if (typeof a === 'object') return a.result;
      if (a === 'lost') { this.locksLost++; yield 0; continue; }
      let again = a === 'again';
      if (!again && monoMs() - inspectedMs >= INSPECT_EVERY_MS) {
        again = this.breakLock();
        inspectedMs = again ? -Infinity : monoMs();
      }
      const waitedS = (monoMs() - startedMs) / 1000;
      if ((!again || graceTries++ >= GRACE_TRIES) && waitedS > timeoutS) {
        const why = `stayed busy for ${waitedS.toFixed(3)} s, longer than this call may wait`;
        throw new RateLimitTimeoutError(waitedS, timeoutS, `ratelimit: the lock on ${this.name} ${why}`);
      }
      if (!again) busyTries++;
      yield again ? 0 : Math.min(MAX_BACKOFF_MS, 0.02 * 2 ** Math.min(busyTries, 10)) * (0.5 + Math.random());
    }
  }

  // Blocks between tries; a short pause spins on the lock instead: a sleep under the timer slack (50 µs) oversleeps.
  private pauseSync(ms: number): void {
    const until = monoMs() + ms;
    if (ms >= BUSY_SPIN_MS) { sleepSyncUntil(until); return; }
    while (monoMs() < until && exists(this.lockPath)) { /* spin */ }
  }

  /** Closes the state file and removes this store's name for the owner file. A later call reopens them. */
  close(): void {
    closeState(this.path);
    if (this.owner) releaseOwner(this.owner, this.path);
    this.owner = undefined;
  }

  [Symbol.dispose](): void {
    this.close();
  }

  // --- the lock -------------------------------------------------------------
  private tryOnce<T>(tx: Transaction<T>): Attempt<T> {
    const clock = this.givenClock ?? sharedClock();
    const owner = this.ownerFile();
    const leaseEndS = stampOwner(owner, clock) + this.staleAfterS / 2;
    const own = ownerPath(this.path, owner);
    // ENOENT with our owner file's name gone: someone cleaned the directory; make a new one.
    const failed = fsTry('create the lock', this.lockPath, () => linkSync(own, this.lockPath),
      (code) => code === 'EEXIST' || (code === 'ENOENT' && !exists(own)));
    if (failed === 'EEXIST') return 'busy';
    if (failed) { dropOwner(owner); return 'again'; }
    let attempt: Attempt<T> = 'lost';
    owner.holding = true;
    try {
      attempt = this.readModifyWrite(tx, clock, leaseEndS, owner);
    } finally {
      owner.holding = false;
      // Within our lease, remove the lock if still ours (readModifyWrite checked it for a result); past it, leave it
      // to a breaker and drop our owner file, whose record would make the lock look fresh.
      if (typeof attempt === 'object' || this.holds(this.lockPath, owner)) {
        if (clock.now() < leaseEndS) unlinkIfThere(this.lockPath);
        else dropOwner(owner);
      }
    }
    return attempt;
  }

  // True while our owner file's inode is linked at `path` (only we link it).
  private holds(path: string, owner: OwnerFile): boolean {
    return !owner.dropped && lstatSync(path, { throwIfNoEntry: false })?.ino === owner.ino;
  }

  // Breaks the lock if its holder is proven dead or it is stale; true if the lock may now be free. A breaker paused
  // at any instant neither rolls the state back nor removes a lock it did not judge:
  // 1. It holds `<file>.lock.break`, a link of its owner file whose record names its temp file T, throughout.
  // 2. It copies the state into T and renames T over it. Taking a break lock away unlinks its T first, so a breaker
  //    that lost it renames nothing (ENOENT). While it holds it no other break happens, so only the stale holder can
  //    write: past its lease, it discards what it did, and its descriptor (opened in its lease) is the old inode's.
  // 3. It renames the stale lock aside, and links it back if that is not the inode it judged (a new holder's).
  private breakLock(): boolean {
    const seen = readRecord(this.lockPath);
    if (!seen) return true;
    if (this.owner?.holding && seen.ino === this.owner.ino) {
      const why = 'was used from inside a transaction on the same state file; that would wait for itself';
      throw new RateLimitStoreError(`ratelimit: ${this.name} ${why}`, this.path);
    }
    const clock = this.givenClock ?? sharedClock();
    const dead = provenDead(seen);
    const ageS = this.ageS(seen, clock);
    if (!dead && ageS <= this.staleAfterS) return false;
    // Only a dead holder cannot write again: otherwise move the state aside, through a temp file.
    const renew = `${this.path}.renew-${randomHex(8)}`;
    const temp = dead ? undefined : { path: renew, fd: createExclusive(renew, 'create a temp file for the state') };
    const owner = this.ownerFile();
    try {
      const breakStartS = stampOwner(owner, clock, temp && basename(temp.path));
      const own = ownerPath(this.path, owner);
      if (fsTry('create the break lock', this.breakPath, () => linkSync(own, this.breakPath), (c) => c === 'EEXIST')) {
        // Taken: take it from a breaker dead or past its lease (disarming its rename).
        const breaker = readRecord(this.breakPath);
        return !breaker || ((provenDead(breaker) || this.ageS(breaker, clock) > BREAK_LEASE_S) &&
          this.removeLockFile(this.breakPath, breaker.ino));
      }
      const now = readRecord(this.lockPath);
      if (!now) return true;
      if (now.ino !== seen.ino || now.text !== seen.text) return false; // it changed hands meanwhile
      if (temp && !this.moveStateAside(temp)) return false;
      if (clock.now() - breakStartS >= BREAK_LEASE_S / 2) return false;
      if (!this.removeLockFile(this.lockPath, seen.ino)) return false;
      this.locksBroken++;
      const rec = seen.record;
      if (dead && rec) sweepOwners(dirname(this.path), rec.token);
      else {
        const why = rec ? `held by pid ${rec.pid} on ${rec.host || 'an unnamed host'} for ${ageS.toFixed(1)} s`
          : `its owner record is unreadable and it is ${ageS.toFixed(1)} s old`;
        const limit = `(staleAfter is ${this.staleAfterS} s)`;
        warn('RATELIMIT_LOCK_BROKEN', `ratelimit: broke the lock ${this.lockPath}: ${why} ${limit}`);
      }
      return true;
    } finally {
      if (this.holds(this.breakPath, owner)) this.removeLockFile(this.breakPath, owner.ino);
      if (temp) {
        if (temp.fd >= 0) closeQuietly(temp.fd);
        unlinkIfThere(temp.path);
      }
    }
  }

  // Removes the lock or break lock at `path` if it is inode `ino`, via a private name (a break lock's T goes first).
  private removeLockFile(path: string, ino: number): boolean {
    const aside = `${path}.gone-${randomHex(8)}`;
    if (fsTry('remove', path, () => renameSync(path, aside), (code) => code === 'ENOENT')) return false;
    const got = readRecord(aside);
    if (path === this.breakPath && got?.record?.renew) unlinkIfThere(join(dirname(path), basename(got.record.renew)));
    if (got?.ino !== ino && path !== this.breakPath &&
      fsTry('restore the lock', path, () => linkSync(aside, path), (code) => code === 'EEXIST')) {
      warn('RATELIMIT_LOCK_RACE', `ratelimit: a late breaker took away a live lock ${path}; could not put it back`);
    }
    unlinkIfThere(aside);
    return got?.ino === ino;
  }

  // A lock's age: as long as we have watched it, or by its record if on our clock.
  private ageS(lock: LockFile, clock: SharedClock): number {
    const now = clock.now();
    const key = `${lock.ino}:${lock.text}`;
    const first = this.firstSeen.get(key) ?? now;
    if (this.firstSeen.size > MAX_REMEMBERED) this.firstSeen.clear();
    this.firstSeen.set(key, first);
    return lock.record?.clock === clock.tag ? now - Math.min(lock.record.time, first) : now - first;
  }

  // Copies the state into `temp` (keeping owner, group, mode), renames it over the state; false if our break lock went.
  private moveStateAside(temp: { path: string; fd: number }): boolean {
    let file: ReturnType<typeof readBounded>;
    try {
      file = readBounded(this.path, MAX_STATE_BYTES);
    } catch (error) {
      // No state to protect (a link or an odd file is replaced or reported at the next open).
      if (['ENOENT', 'ELOOP', 'ENOTREG', 'ENXIO'].includes(codeOf(error) ?? '')) return true;
      throw fileError(error, 'read the state file', this.path);
    }
    const { bytes, st } = file;
    // An oversized state is copied as a hole of its size: it counts the same (readState).
    if (st.size > MAX_STATE_BYTES) ftruncateSync(temp.fd, st.size);
    else writeAll(temp.fd, bytes, 0, temp.path);
    // The owner where we may (root; a group we are in), only if needed: Node's permission model refuses both calls.
    if ((st.mode & 0o7777) !== 0o600) fchmodSync(temp.fd, st.mode & 0o7777);
    if (st.uid !== process.getuid?.() || st.gid !== process.getgid?.()) {
      try { fchownSync(temp.fd, st.uid, st.gid); } catch { orElse(() => fchownSync(temp.fd, -1, st.gid), 0); }
    }
    closeSync(temp.fd);
    temp.fd = -1;
    return !fsTry('replace the state file', this.path, () => renameSync(temp.path, this.path), (c) => c === 'ENOENT');
  }

  private ownerFile(): OwnerFile {
    if (!this.owner || this.owner.dropped) this.owner = acquireOwner(dirname(this.path), this.path);
    return this.owner;
  }

  // --- the state ------------------------------------------------------------
  private readModifyWrite<T>(tx: Transaction<T>, clock: SharedClock, leaseEndS: number, owner: OwnerFile): Attempt<T> {
    const { fd, sizeBytes } = openState(this.path, this.name);
    // Past our lease on opening, a breaker may have moved the state: stop. The wall clock is read just before `now`
    // (to place a state from another clock) and just after (to record): a pause between them only places it later.
    const wallBeforeS = wallOf(clock);
    const now = clock.now();
    const wallAfterS = wallOf(clock);
    if (now >= leaseEndS) return 'lost';
    const { state, result } = tx(this.readState(fd, sizeBytes, now, wallBeforeS, clock), now, txContext());
    const stored: StoredState | undefined = state && { clock: clock.tag, written: now, wall: wallAfterS, state };
    const written = stored && writeState(fd, JSON.stringify(stored), sizeBytes, this.path);
    // Paused while writing, a breaker may have copied the state before our write.
    if (clock.now() >= leaseEndS || !this.holds(this.lockPath, owner)) {
      this.memo = undefined;
      return 'lost';
    }
    if (state && written) {
      this.last = state;
      this.seenFile = true;
      this.memo = { tag: clock.tag, bytes: written, state };
    }
    return { result };
  }

  // The state in the file, on our clock; a missing, empty, oversized or unparsable one falls back to `last`.
  private readState(fd: number, size: number, now: number, wall: number, clock: SharedClock): LimitState | undefined {
    if (size > MAX_STATE_BYTES) return this.lost(`could not be parsed: it is ${size} bytes, more than any state takes`);
    const bytes = readUpTo(fd, size);
    if (this.memo?.tag === clock.tag && bytes.equals(this.memo.bytes)) return this.memo.state;
    const text = bytes.toString('utf8');
    if (text.trim() === '') return this.seenFile ? this.lost('was deleted or emptied', 'continuing from') : this.last;
    const raw = parseJson(text);
    // A state from a newer version throws (RateLimitMismatchError): never overwritten.
    const state = isEnvelope(raw) ? parseState(raw.state) : undefined;
    if (!isEnvelope(raw) || !state) return this.lost('could not be parsed');
    this.seenFile = true;
    return onOurClock(raw, state, now, wall, clock);
  }

  private lost(why: string, then = 'starting it afresh from'): LimitState | undefined {
    warn('RATELIMIT_STATE_LOST', `ratelimit: ${this.name} ${why}; ${then} this process's last known state`);
    return this.last;
  }
}

// Who we are to the core (for concurrency slots), and the proof of death for other holders, each judged once per
// transaction (a judgment reads /proc, and all of a process's waiters share one holder).
const verdicts = new Map<string, boolean>();
let threadContext: TxContext | undefined;
function txContext(): TxContext {
  verdicts.clear();
  threadContext ??= {
    holder: JSON.stringify(identity().holder),
    isDead: (h: string): boolean => {
      const r = verdicts.has(h) ? undefined : parseJson(h);
      if (r !== undefined) verdicts.set(h, isHolder(r) && holderIsDead(r));
      return verdicts.get(h) === true;
    },
  };
  return threadContext;
}

// --- the lock's names: lock, break lock and owner files -----------------------
interface LockFile { ino: number; text: string; record?: OwnerRecord | undefined }
// A lock, break lock or owner file: undefined if none; not a regular file: an error; unreadable: no record (age only).
function readRecord(path: string): LockFile | undefined {
  try {
    const { bytes, st } = readBounded(path, MAX_SMALL_BYTES);
    const text = bytes.toString('utf8');
    return { ino: st.ino, text, record: parseOwnerRecord(text) };
  } catch (error) {
    const code = codeOf(error);
    const st = code === 'ENOENT' ? undefined : lstatSync(path, { throwIfNoEntry: false });
    if (!st) return undefined;
    if (!st.isFile()) {
      const what = st.isSymbolicLink() ? 'a symbolic link' : st.isDirectory() ? 'a directory' : st.isFIFO() ? 'a FIFO'
        : st.isSocket() ? 'a socket' : 'a device';
      const why = `is ${what}, not a lock made by ratelimit; remove it`;
      throw new RateLimitStoreError(`ratelimit: ${JSON.stringify(path)} ${why}`, path, error);
    }
    if (code === 'EACCES' || code === 'EPERM') return { ino: st.ino, text: `unreadable:${st.uid}:${st.mtimeMs}` };
    throw fileError(error, 'read', path);
  }
}

// Whether a lock's record names a holder proven gone (no record: cannot judge).
const provenDead = (lock: LockFile | undefined): boolean => lock?.record !== undefined && holderIsDead(lock.record);

/**
 * An owner record (in `<file>.lock` and the owner files): who holds a lock. `tid` is the Linux thread id, `start` and
 * `tstart` the process's and thread's start times (ticks since boot, less any time namespace offset), `ns` the pid
 * namespace, `boot` the boot id, `renew` a breaker's temp file. A field not read is empty: cannot judge, never dead.
 */
export interface OwnerRecord {
  pid: number; tid: number; host: string; ns: string; boot: string; start: string; tstart: string;
  token: string; seq: number; clock: string; time: number; renew?: string | undefined;
}

/** The one way an owner record is written (`renew` only if set). */
export function encodeOwnerRecord(r: OwnerRecord): string {
  return JSON.stringify(r);
}

/** The one way an owner record is read: the record, or undefined for anything else (empty, torn, foreign). */
export function parseOwnerRecord(text: string): OwnerRecord | undefined {
  const parsed = parseJson(text);
  const r = parsed as Partial<OwnerRecord>;
  return isHolder(parsed) && typeof r.token === 'string' && Number.isFinite(r.seq) && typeof r.clock === 'string' &&
    Number.isFinite(r.time) && (r.renew === undefined || typeof r.renew === 'string') ? r as OwnerRecord : undefined;
}

// The fields that name a holder (also the core's holder strings).
type Holder = Pick<OwnerRecord, 'pid' | 'tid' | 'host' | 'ns' | 'boot' | 'start' | 'tstart'>;
function isHolder(r: unknown): r is Holder {
  const h = r as Partial<Holder> | null;
  return typeof h === 'object' && h !== null && Number.isSafeInteger(h.pid) && typeof h.host === 'string' &&
    typeof h.ns === 'string' && typeof h.boot === 'string' && typeof h.start === 'string' &&
    (h.tid === undefined || Number.isSafeInteger(h.tid)) && (h.tstart === undefined || typeof h.tstart === 'string');
}

// One owner file per thread and directory: one descriptor, and one name `<file>.owner-<token>` (a hard link) per
// state file in use. A thread's holds never overlap, so they share the inode; `seq` tells them apart.
interface OwnerFile {
  dir: string; fd: number; ino: number; record: OwnerRecord; sizeBytes: number;
  names: Set<string>; dropped?: boolean; holding?: boolean;
}
const ownerFiles = new Map<string, OwnerFile>();
const sweptDirs = new Set<string>();
const hookExit = once(() => process.once('exit', () => {
  for (const o of ownerFiles.values()) removeOwnerNames(o.names);
}));

const ownerPath = (statePath: string, owner: { record: OwnerRecord }) => `${statePath}.owner-${owner.record.token}`;
// A name of the owner file (it has one while it is in use).
const anyName = (owner: OwnerFile): string => owner.names.values().next().value ?? owner.dir;

function acquireOwner(dir: string, statePath: string): OwnerFile {
  const doing = 'create this process\'s lock record (made beside the state file)';
  const known = ownerFiles.get(dir);
  if (known) {
    const name = ownerPath(statePath, known);
    if (known.names.has(name)) return known;
    const failed = fsTry(doing, name, () => linkSync(anyName(known), name),
      (code) => code === 'ENOENT' || (code === 'EEXIST' && lstatSync(name).ino === known.ino));
    if (failed === 'ENOENT') { dropOwner(known); return acquireOwner(dir, statePath); }
    known.names.add(name);
    return known;
  }
  const record: OwnerRecord = { ...identity().holder, token: randomHex(8), seq: 0, clock: '', time: 0 };
  const path = ownerPath(statePath, { record });
  const fd = createExclusive(path, doing);
  const owner: OwnerFile = { dir, fd, ino: fstatSync(fd).ino, record, sizeBytes: 0, names: new Set([path]) };
  ownerFiles.set(dir, owner);
  hookExit();
  try {
    stampOwner(owner, { tag: 'none', now: () => 0 }); // fails now, not at the first lock, on a full disk
  } catch (error) {
    dropOwner(owner);
    throw error;
  }
  if (!sweptDirs.has(dir)) { sweptDirs.add(dir); sweepOwners(dir); }
  return owner;
}

function releaseOwner(owner: OwnerFile, statePath: string): void {
  const name = ownerPath(statePath, owner);
  if (owner.names.size === 1 && owner.names.has(name)) dropOwner(owner); // its last name
  else if (!owner.dropped && owner.names.delete(name)) removeOwnerNames([name]);
}

// Removes an owner file's names and closes it; a lock still linked to it keeps the inode.
function dropOwner(owner: OwnerFile): void {
  if (owner.dropped) return;
  owner.dropped = true;
  if (ownerFiles.get(owner.dir) === owner) ownerFiles.delete(owner.dir);
  closeQuietly(owner.fd);
  removeOwnerNames(owner.names);
}

// Removes owner-file names, ours or a dead holder's; one we may not remove (another user's, sticky dir) is litter.
function removeOwnerNames(names: Iterable<string>): void {
  for (const name of names) { try { unlinkSync(name); } catch { /* gone, or not ours to remove */ } }
}

// Removes the owner-file names in `dir` of `deadToken` (a holder the caller proved dead), or else of every holder
// proven dead now (once per thread and directory). Files that cannot be judged (odd, unreadable, alive) are left.
function sweepOwners(dir: string, deadToken?: string): void {
  const byToken = new Map<string, string[]>();
  for (const entry of orElse(() => readdirSync(dir), [])) {
    const token = /\.owner-([0-9a-f]{16})$/.exec(entry)?.[1];
    if (token && (deadToken ?? token) === token) byToken.set(token, [...byToken.get(token) ?? [], join(dir, entry)]);
  }
  for (const [token, names] of byToken) {
    const judge = () => token !== ownerFiles.get(dir)?.record.token && provenDead(readRecord(names[0] ?? ''));
    if (token === deadToken || orElse(judge, false)) removeOwnerNames(names); // an odd file throws: left
  }
}

// Writes a fresh record (next seq, time now) in place, padded to the longest so far; returns the time (lease start).
function stampOwner(owner: OwnerFile, clock: SharedClock, renew?: string): number {
  const time = clock.now();
  const r = Object.assign(owner.record, { seq: owner.record.seq + 1, clock: clock.tag, time, renew });
  const text = encodeOwnerRecord(r);
  owner.sizeBytes = Math.max(owner.sizeBytes, text.length);
  writeAll(owner.fd, Buffer.from(text.padEnd(owner.sizeBytes)), 0, anyName(owner));
  return time;
}

// --- the state file ----------------------------------------------------------
// The state file: the core's state, wrapped with the clock it was written on.
interface StoredState { clock: string; written: number; wall: number; state: unknown }
function isEnvelope(v: unknown): v is StoredState {
  const e = v as Partial<StoredState> | null;
  return typeof e === 'object' && e !== null && typeof e.clock === 'string' && Number.isFinite(e.written) &&
    Number.isFinite(e.wall);
}

// The state file, open for read and write, never through a symbolic link nor blocking on a special file. The
// descriptor is kept while the path names its inode, so most calls cost one lstat (which gives the size). LRU out.
const openStates = new Map<string, { fd: number; ino: number }>();
function openState(path: string, name: string, linkReplaced = false): { fd: number; sizeBytes: number } {
  const seen = lstatSync(path, { throwIfNoEntry: false });
  const cached = openStates.get(path);
  if (cached && seen?.isFile() && seen.ino === cached.ino) {
    openStates.delete(path);
    openStates.set(path, cached);
    return { fd: cached.fd, sizeBytes: seen.size };
  }
  closeState(path);
  const why = 'is a directory or other non-regular file; it must be a plain file (or not exist yet)';
  const notPlain = (error?: unknown) => new RateLimitStoreError(`ratelimit: ${name} ${why}`, path, error);
  let fd: number;
  try {
    fd = openSync(path, constants.O_RDWR | constants.O_CREAT | O_NOFOLLOW | O_NONBLOCK, 0o600);
  } catch (error) {
    const code = codeOf(error);
    if (code === 'EISDIR' || code === 'ENXIO') throw notPlain(error);
    if (code !== 'ELOOP' || linkReplaced) throw fileError(error, 'open the state file', path);
    const did = "replaced it with a plain file (the link's target was not touched)";
    warn('RATELIMIT_STATE_REPLACED', `ratelimit: ${name} was a symbolic link; ${did}`);
    fsTry('remove the symbolic link at', path, () => unlinkSync(path));
    return openState(path, name, true);
  }
  const stat = fstatSync(fd);
  if (!stat.isFile()) {
    closeSync(fd);
    throw notPlain();
  }
  openStates.set(path, { fd, ino: stat.ino });
  if (openStates.size > MAX_OPEN_STATES) closeState(openStates.keys().next().value ?? path);
  return { fd, sizeBytes: stat.size };
}

function closeState(path: string): void {
  const open = openStates.get(path);
  if (open) closeQuietly(open.fd);
  openStates.delete(path);
}

// Writes a new state in place over the old one of `oldBytes`; returns the bytes written. A failed write (a full
// disk) leaves the old state readable: the part past the old end goes first, and is cut off again if it fails.
function writeState(fd: number, text: string, oldBytes: number, path: string): Buffer {
  const padded = oldBytes > text.length && oldBytes - text.length <= SHRINK_SLACK_BYTES ? text.padEnd(oldBytes) : text;
  const bytes = Buffer.from(padded, 'utf8');
  if (bytes.length > oldBytes) {
    try {
      writeAll(fd, bytes.subarray(oldBytes), oldBytes, path);
    } catch (error) {
      try { ftruncateSync(fd, oldBytes); } catch { /* reported below */ }
      throw error;
    }
  }
  writeAll(fd, bytes.subarray(0, Math.min(bytes.length, oldBytes)), 0, path);
  if (oldBytes > bytes.length) ftruncateSync(fd, bytes.length);
  return bytes;
}

// writeSync at `position` until every byte is written (a short write is retried; ENOSPC or EDQUOT is thrown). A
// Buffer, because Deno (2.9) ignores the position in writeSync(fd, string, position) and appends.
function writeAll(fd: number, bytes: Uint8Array, position: number, path: string): void {
  for (let done = 0; done < bytes.length;) {
    let n = 0;
    fsTry('write', path, () => { n = writeSync(fd, bytes, done, bytes.length - done, position + done); });
    if (n <= 0) throw fileError(Object.assign(new Error('no space left on device'), { code: 'ENOSPC' }), 'write', path);
    done += n;
  }
}

// --- liveness: whether a lock's holder is proven gone ---------------------------
// Fail-closed: whatever cannot be read or compared means "alive" (broken only once older than staleAfter).

/**
 * True only when the record's holder is proven gone: same boot id, and then, in our pid namespace, no such process
 * (or a zombie, or a reused pid) or no such thread; or, seen from the host's pid namespace, no such process left in
 * the holder's. Hostnames are not compared: containers on one kernel may each have their own.
 */
export function holderIsDead(rec: Holder): boolean {
  const { holder: me, procIsOurs } = identity();
  if (!me.boot || rec.boot !== me.boot) return false;
  if (!me.ns || rec.ns !== me.ns) return goneFromNamespace(rec, me.ns === PID_NS_INIT && procIsOurs);
  if (!procIsOurs) {
    // /proc shows another namespace: signal 0, which cannot tell a reused pid.
    try { process.kill(rec.pid, 0); return false; } catch (e) { return codeOf(e) === 'ESRCH'; }
  }
  const tid = rec.tid ?? 0;
  return !statShowsAlive(`/proc/${rec.pid}/stat`, rec.start) ||
    (tid !== 0 && tid !== rec.pid && !statShowsAlive(`/proc/${rec.pid}/task/${tid}/stat`, rec.tstart ?? ''));
}

// False if the task is gone, a zombie or not the one started at `start` (a reused id); true if there or unreadable.
function statShowsAlive(path: string, start: string): boolean {
  const stat = readStat(path);
  return stat.state === '?' || (stat.state !== 'Z' && stat.state !== 'X' && (!start || stat.start === start));
}

// A holder in another pid namespace is proven gone only from the host's namespace, when every process's namespace
// could be read and none in the holder's has its pid (NSpid) and start time.
const PID_NS_INIT = 'pid:[4026531836]';
const scans = new Map<string, { atMs: number; dead: boolean }>();
function goneFromNamespace(rec: Holder, seeAll: boolean): boolean {
  if (!seeAll || !rec.ns) return false;
  const key = `${rec.ns}:${rec.pid}:${rec.start}`;
  const memo = scans.get(key);
  if (memo && monoMs() - memo.atMs < NAMESPACE_SCAN_EVERY_MS) return memo.dead;
  const dead = orElse(() => readdirSync('/proc').every((entry) => {
    if (!/^\d+$/.test(entry)) return true;
    let status: string;
    try { status = readText(`/proc/${entry}/status`); } catch { return true; } // exited meanwhile
    const nspid = /^NSpid:\s*(.*)$/m.exec(status)?.[1]?.trim().split(/\s+/);
    if (nspid?.length === 1) return true; // in the host's namespace only, so not in the holder's
    let ns: string;
    try { ns = readlinkSync(`/proc/${entry}/ns/pid`); } catch (e) { return codeOf(e) === 'ENOENT'; }
    return ns !== rec.ns || !nspid || Number(nspid[nspid.length - 1]) !== rec.pid ||
      !statShowsAlive(`/proc/${entry}/stat`, rec.start);
  }), false);
  if (scans.size > MAX_REMEMBERED) scans.clear();
  scans.set(key, { atMs: monoMs(), dead });
  return dead;
}

// A /proc/.../stat file's state letter ('X', dead, if there is no such task; '?' if unreadable) and start time (field
// 22, ticks since boot, less our time namespace's boot offset so readings inside and outside one compare; '' if
// unknown). Fields count from the command name's closing paren (it may hold spaces).
function readStat(path: string): { state: string; start: string } {
  try {
    const stat = readText(path);
    const rest = stat.slice(stat.lastIndexOf(')') + 2);
    const ticks = rest.split(' ')[19] ?? '';
    const bootTicks = BigInt(Math.round((timeNamespaceOffsets()?.bootS ?? 0) * 100));
    return { state: rest.slice(0, 1), start: /^\d+$/.test(ticks) ? String(BigInt(ticks) - bootTicks) : '' };
  } catch (error) {
    return { state: ['ENOENT', 'ESRCH'].includes(codeOf(error) ?? '') ? 'X' : '?', start: '' };
  }
}

// Who this thread is, as a holder; a field that cannot be read is '' (or 0).
const identity = once((): { holder: Holder; procIsOurs: boolean } => {
  const read = (f: () => string) => orElse(f, '');
  // /proc may be mounted for another pid namespace (unshare --pid without --mount-proc): then its pids are not ours.
  const self = read(() => readlinkSync('/proc/self'));
  const thread = read(() => readlinkSync('/proc/thread-self')).split('/task/');
  const tid = self === String(process.pid) && thread[0] === self ? Number(thread[1]) || 0 : 0;
  return { procIsOurs: self === String(process.pid), holder: {
    pid: process.pid, tid,
    host: read(hostname), // Deno without --allow-sys=hostname refuses; the host is only shown in messages.
    ns: read(() => readlinkSync('/proc/self/ns/pid')), boot: bootId(), start: readStat('/proc/self/stat').start,
    tstart: tid ? readStat(`/proc/self/task/${tid}/stat`).start : '',
  } };
});

// --- the clock: one for every process on the host, which wall-clock steps do not move ---
/** A clock in seconds, and a tag naming it so readings on other clocks are recognised. */
export interface SharedClock {
  readonly tag: string;
  now(): number;
  /** The wall clock in seconds, to carry a state over from another clock; a test clock may leave it out. */
  wall?(): number;
}

let clockCache: SharedClock | undefined;
/**
 * The file store's clock. On Linux, the host's CLOCK_BOOTTIME (as /proc/uptime shows it, suspends included) less any
 * time namespace offsets, tagged with the boot id: Node's hrtime until a suspend, else (and on Bun and Deno) a local
 * clock lined up with /proc/uptime's ticks, checked once a second. Else (no /proc): the wall clock, tagged `wall`.
 */
export function sharedClock(): SharedClock {
  if (clockCache) return clockCache;
  const boot = bootId();
  const offsets = timeNamespaceOffsets();
  clockCache = (boot && offsets && readUptime() !== undefined && bootClock(`boot:${boot}`, offsets)) || wallClock();
  return clockCache;
}

const wallS = () => Date.now() / 1000;
const wallOf = (clock: SharedClock): number => (clock.wall ? clock.wall() : wallS());

// The stored state on our clock, erring late (too early lets a call through). From another clock (a reboot, the
// wall-clock fallback): moved by the wall clock, capped at a window. From ours but "in our future" (its writer's
// clock is ahead): as if written now, uncapped so others' queued waiters keep their places. A writer whose clock is
// behind looks like an old write: the wall clock is no referee (stepped, faked per process), so ours must not lag.
function onOurClock(raw: StoredState, state: LimitState, now: number, wall: number, clock: SharedClock): LimitState {
  const sinceWrittenS = now - raw.written;
  const wallSinceS = clock.wall ? wall - raw.wall : 0;
  if (raw.clock !== clock.tag) return shiftState(state, sinceWrittenS - Math.max(0, wallSinceS - WALL_MARGIN_S), now);
  return sinceWrittenS < -CLOCKS_AGREE_S ? shiftState(state, sinceWrittenS, Infinity) : state;
}

// The wall clock: timeOrigin + performance.now(), held within Date.now()'s millisecond, so processes agree below 1 ms.
function wallClock(): SharedClock {
  const now = () => {
    const ms = Date.now();
    const fine = performance.timeOrigin + performance.now();
    return (fine < ms ? ms : fine >= ms + 1 ? ms + 0.999 : fine) / 1000;
  };
  return { tag: 'wall', now, wall: wallS };
}

// The host's boot clock as local() + offset, where local is hrtime (Node) or performance.now() (Bun, Deno).
function bootClock(tag: string, { bootS, monoS }: { bootS: number; monoS: number }): SharedClock | undefined {
  const hr = () => Number(process.hrtime.bigint()) / 1e9;
  // Node's hrtime less the namespace's monotonic offset is the boot clock until a suspend (Bun's, Deno's: from start).
  const onHr = linedUp(hr, bootS, -monoS) === true;
  const local = onHr ? hr : () => monoMs() / 1000;
  let off = (onHr ? -monoS : uptimeOffset(local, bootS)) ?? NaN;
  if (Number.isNaN(off)) return undefined;
  let checkedMs = monoMs();
  let checkedWallMs = Date.now();
  const now = () => {
    // Once a second by either clock (monotonic ones stop in a suspend), check the line-up; redo it if it slipped.
    if (monoMs() - checkedMs >= 1000 || Math.abs(Date.now() - checkedWallMs) >= 1000) {
      checkedMs = monoMs();
      checkedWallMs = Date.now();
      if (linedUp(local, bootS, off) === false) off = uptimeOffset(local, bootS) ?? off;
    }
    return local() + off;
  };
  return { tag, now, wall: wallS };
}

// One read u of /proc/uptime (the boot clock in 10 ms steps, less our namespace's boot offset) between local readings
// p1 and p2 proves lo = u - p2 <= boot clock - local < u + 10 ms - p1 = hi. Undefined if /proc/uptime is unreadable.
function bracket(local: () => number, bootS: number): { lo: number; hi: number } | undefined {
  const p1 = local();
  const read = readUptime();
  const p2 = local();
  return read === undefined ? undefined : { lo: read - bootS - p2, hi: read - bootS + 0.01 - p1 };
}

// Whether local() + off is the boot clock: off within a bracket ± 0.5 ms. A preempted read (p2 - p1 over 1 ms: a
// bracket over 11 ms wide) proves nothing, so up to 50 are tried. Undefined if /proc/uptime is unreadable.
function linedUp(local: () => number, bootS: number, off: number): boolean | undefined {
  for (let tries = 0; tries < 50; tries++) {
    const b = bracket(local, bootS);
    if (!b) return undefined;
    if (b.hi - b.lo <= 0.011) return b.lo - 0.0005 <= off && off < b.hi + 0.0005;
  }
  return false;
}

// The boot clock minus local(), narrowed by each bracket; reads just around a tick narrow it most. So: sleep until
// just before the next tick (a task just woken is seldom preempted), poll through it, and stop once [lo, hi] is under
// CALIBRATION_TARGET_MS wide, or after CALIBRATION_MAX_MS. Once per process; 5 ms on average.
function uptimeOffset(local: () => number, bootS: number): number | undefined {
  const startMs = monoMs();
  let lo = -Infinity;
  let hi = Infinity;
  const sample = (): boolean => {
    const b = bracket(local, bootS);
    if (b) { lo = Math.max(lo, b.lo); hi = Math.min(hi, b.hi); }
    return b !== undefined;
  };
  if (!sample()) return undefined;
  while ((hi - lo) * 1000 > CALIBRATION_TARGET_MS && monoMs() - startMs < CALIBRATION_MAX_MS) {
    // The next tick, as a boot-clock value, and the window in which it falls on the local clock:
    // [tick - hi, tick - lo] s, turned into monoMs() ms, widened by 0.2 ms each side for the sleep's lateness.
    const toPerfMs = (localS: number) => monoMs() + (localS - local()) * 1000;
    const tick = Math.floor((local() + (lo + hi) / 2) * 100 + 1) / 100;
    sleepSyncUntil(toPerfMs(tick - hi) - 0.2);
    const until = toPerfMs(tick - lo) + 0.2;
    do { if (!sample()) break; } while (monoMs() < until && (hi - lo) * 1000 > CALIBRATION_TARGET_MS);
    if (hi < lo) { lo = -Infinity; hi = Infinity; sample(); } // the clocks jumped (a suspend): start over
  }
  return (lo + hi) / 2;
}

const readUptime = (): number | undefined => orElse(() => parseFloat(readText('/proc/uptime')), undefined);
const bootId = once(() => orElse(() => readText('/proc/sys/kernel/random/boot_id').trim(), ''));
// Our time namespace's offsets in seconds: zero outside one (no such file); undefined if unreadable (no host clock).
const timeNamespaceOffsets = once((): { monoS: number; bootS: number } | undefined => {
  try {
    const text = readText('/proc/self/timens_offsets');
    const get = (name: string) => {
      const m = new RegExp(`^${name}\\s+(-?\\d+)\\s+(\\d+)`, 'm').exec(text);
      return m ? Number(m[1]) + Number(m[2]) / 1e9 : NaN;
    };
    const offsets = { monoS: get('monotonic'), bootS: get('boottime') };
    return Number.isNaN(offsets.monoS + offsets.bootS) ? undefined : offsets;
  } catch (error) {
    return codeOf(error) === 'ENOENT' && exists('/proc/self/stat') ? { monoS: 0, bootS: 0 } : undefined;
  }
});

// --- file helpers ----------------------------------------------------------------
// The one bounded reader: at most `maxBytes` of a regular file, opened without following a link or blocking (on a
// FIFO); anything else fails with ENOTREG. A /proc file reports size 0 and is read to its end. Errors: the caller's.
function readBounded(path: string, maxBytes: number) {
  const fd = openSync(path, constants.O_RDONLY | O_NOFOLLOW | O_NONBLOCK);
  try {
    const st = fstatSync(fd);
    if (!st.isFile()) throw Object.assign(new Error('not a regular file'), { code: 'ENOTREG' });
    return { bytes: readUpTo(fd, st.size === 0 ? maxBytes : Math.min(st.size, maxBytes)), st };
  } finally {
    closeQuietly(fd);
  }
}

// Up to `maxBytes` of an open file, into one buffer per thread kept until the next read (readFileSync's first: 0.5 ms).
let readBuffer = Buffer.alloc(MAX_SMALL_BYTES);
function readUpTo(fd: number, maxBytes: number): Buffer {
  if (readBuffer.length < maxBytes) readBuffer = Buffer.alloc(maxBytes);
  let n = 0;
  while (n < maxBytes) {
    const got = readSync(fd, readBuffer, n, maxBytes - n, n);
    if (got === 0) break;
    n += got;
  }
  return readBuffer.subarray(0, n);
}

const readText = (path: string): string => readBounded(path, MAX_SMALL_BYTES).bytes.toString('latin1');

// Creates a file only if nothing is at its name (never through a link), mode 0600; an error says what for.
function createExclusive(path: string, doing: string): number {
  let fd = -1;
  const flags = constants.O_RDWR | constants.O_CREAT | constants.O_EXCL | O_NOFOLLOW;
  fsTry(doing, path, () => { fd = openSync(path, flags, 0o600); });
  return fd;
}

const exists = (path: string): boolean => lstatSync(path, { throwIfNoEntry: false }) !== undefined;
const unlinkIfThere = (path: string) => fsTry('remove', path, () => unlinkSync(path), (code) => code === 'ENOENT');
const closeQuietly = (fd: number): void => orElse(() => closeSync(fd), undefined); // already closed: fine
const codeOf = (error: unknown): string | undefined => (error as NodeJS.ErrnoException).code;
const parseJson = (text: string): unknown => orElse(() => JSON.parse(text), undefined);
function orElse<T, U>(f: () => T, fallback: U): T | U {
  try { return f(); } catch { return fallback; }
}

function once<T>(make: () => T): () => T {
  let made: { value: T } | undefined;
  return () => {
    made ??= { value: make() };
    return made.value;
  };
}

// Runs an fs call: undefined if it succeeded, or the code of an error `ok` accepts; any other throws a fileError.
function fsTry(doing: string, path: string, call: () => unknown, ok?: (code: string) => boolean): string | undefined {
  try {
    call();
    return undefined;
  } catch (error) {
    const code = codeOf(error);
    if (code && ok?.(code)) return code;
    throw fileError(error, doing, path);
  }
}

function fileError(error: unknown, doing: string, path: string): RateLimitStoreError {
  const code = codeOf(error);
  const dir = JSON.stringify(dirname(path));
  let why = code === 'ENOENT' ? (exists(dirname(path)) ? 'it does not exist' : `the directory ${dir} does not exist`) :
    code === 'EACCES' || code === 'EPERM' ? deniedWhy(path, dir) :
    code === 'EROFS' ? `${dir} is on a read-only file system` :
    code === 'ENOTDIR' ? `a part of ${dir} is not a directory` :
    code === 'ENOSPC' ? `no space left on the device of ${dir}` :
    code === 'EDQUOT' ? `the disk quota is used up in ${dir}` :
    code === 'EMFILE' || code === 'ENFILE' ? 'too many open files' :
    (error as Error).message;
  if (code && !why.includes(code)) why += ` (${code})`;
  return new RateLimitStoreError(`ratelimit: cannot ${doing} ${JSON.stringify(path)}: ${why}`, path, error);
}

// Permission denied: by another user's file's mode, else by the directory.
function deniedWhy(path: string, dir: string): string {
  const st = orElse(() => lstatSync(path, { throwIfNoEntry: false }), undefined);
  const uid = process.getuid?.();
  if (!st || uid === undefined || st.uid === uid) return `permission denied in ${dir}`;
  const mode = (st.mode & 0o777).toString(8).padStart(4, '0');
  return `the file belongs to uid ${st.uid} and its mode ${mode} does not let uid ${uid} read and write it; run as ` +
    `uid ${st.uid}, ask its owner to share it (a group you are in, and chmod g+rw), or use another file`;
}

// ===========================================================================
// END FILE STORE
// ===========================================================================

// ---------------------------------------------------------------------------
// 5. Server headers: what a response says about the rate limit, for observe() and retryAfter(). Self-contained: what
//    the report means for the limit is decided in RateLimit.observe() and observeState().
// ---------------------------------------------------------------------------

// The longest header value read: a real one (a few IETF policies) is about 100 characters; the bound caps hostile ones.
const HEADER_MAX_CHARS = 1_000;
// A reset from here up is epoch seconds (passed in 2001), below it seconds from now: 31 years, longer than any window.
const EPOCH_FLOOR_S = 1e9;

/**
 * Seconds to wait, never negative, from a `Retry-After` header (whole seconds or an HTTP date, RFC 9110 10.2.3) in
 * `Headers`, a plain object (any case) or the value itself. Undefined when there is none or it cannot be read.
 */
export function retryAfter(
  headers: { get(name: string): string | null } | Readonly<Record<string, unknown>> | string | null | undefined,
  now: number = Date.now(),
): number | undefined {
  const text = typeof headers === 'string' ? headers.trim() : headers ? headersOf(headers, []).get('retry-after') : '';
  const seconds = !text || text.includes('.') ? NaN : numberIn(text, 'retry', now);
  return Number.isNaN(seconds) ? undefined : Math.max(0, seconds);
}

/** One limit a server reported: `remaining` units of `unit` are left until `resetIn` seconds from now. */
export interface ServerLimit {
  /** `"calls"` for requests, or `"tokens"`, `"input-tokens"`, `"output-tokens"`. */
  unit: string;
  remaining: number;
  resetIn: number;
  /** The server's limit for its window, when it says. */
  limit?: number;
  /** The server's name for the limit (an IETF policy, GitHub's resource, Discord's bucket), when it gives one. */
  name?: string;
}

/** What the headers of one response say about the rate limit (see {@link readServerReport}). */
export interface ServerReport {
  limits: ServerLimit[];
  /** Seconds to hold every call: `Retry-After` on an error (429, 503, 403) or with no status, or Discord's global. */
  pause?: number;
  /** The headers that were there but not trusted, each with why. */
  ignored: string[];
}

/**
 * What a fetch `Response`, a `Headers`, a plain object or `{ status, headers }` says in the rate-limit headers of
 * README.md's observe() (`now`: wall clock, ms); throws only for what holds no headers. A value not a count or time, or
 * a `remaining` over its limit, is left out and named in `ignored`; a reset or pause over a day is held to a day.
 */
export function readServerReport(response: unknown, now: number = Date.now()): ServerReport {
  const out: ServerReport = { limits: [], ignored: [] };
  const { status, get } = headersOf(response, out.ignored);
  const ignore = (what: string): undefined => { out.ignored.push(what); return undefined; };
  const quote = (text: string) => JSON.stringify(text.length > 40 ? `${text.slice(0, 40)}...` : text);
  // `text` read as `kind`, a time held to a day; undefined, and said, if it is not one (or, given `missing`, absent).
  const check = (name: string, text: string | undefined, kind: Kind, what = quote(text ?? ''), missing?: string) => {
    if (text === undefined) return missing === undefined ? undefined : ignore(`${name}: ${missing}`);
    const n = text === '' ? NaN : numberIn(text, kind, now);
    if (Number.isNaN(n)) return ignore(`${name}: ${what} ${text === '' ? 'is empty' : KINDS[kind][1]}`);
    if (n <= MAX_DURATION_S || kind === 'count' || kind === 'quota') return Math.max(0, n);
    return ignore(`${name}: ${Math.round(n)} s away is more than a day; held to a day`) ?? MAX_DURATION_S;
  };
  const read = (name: string, kind: Kind = 'count') => check(name, get(name), kind);
  // One limit from the headers `names`, if its remaining and reset are known and agree with its limit.
  const add = (names: string[], unit: string, limit?: number, remaining?: number, resetIn?: number, name?: string) => {
    const here = names.filter((n) => get(n) !== undefined).join(', ');
    if (remaining === undefined || resetIn === undefined) {
      const said = out.ignored.some((line) => names.some((n) => line.startsWith(`${n}:`)));
      if (here && !said) ignore(`${here}: no usable ${remaining === undefined ? 'remaining' : 'reset'} beside them`);
    } else if (limit !== undefined && remaining > limit) {
      ignore(`${here}: remaining ${remaining} is above the limit ${limit}`);
    } else {
      out.limits.push({ unit, remaining, resetIn, ...(limit !== undefined && { limit }), ...(name ? { name } : {}) });
    }
  };
  // IETF: each item of RateLimit is a policy's quota left (r) for t seconds (else its window, w), counted in the
  // quota unit (qu, "requests" by default) of the RateLimit-Policy item of that name.
  const policies = new Map(structuredList(get('ratelimit-policy') ?? '') ?? []);
  const rateLimit = get('ratelimit');
  const items = structuredList(rateLimit ?? '')
    ?? ignore(`ratelimit: ${quote(String(rateLimit))} is not a structured-field list`) ?? [];
  for (const [name, params] of items) {
    const label = `ratelimit (policy ${JSON.stringify(name)})`;
    const policy = policies.get(name);
    const qu = policy?.get('qu')?.replace(/^"(.*)"$/, '$1') ?? 'requests';
    if (/^(requests|(input-|output-)?tokens)$/.test(qu)) {
      const remaining = check(label, params.get('r'), 'count', 'r', 'no r, the quota left');
      const resetIn = check(label, params.get('t') ?? policy?.get('w'), 'seconds', 't', NO_T);
      const limit = check(label, policy?.get('q'), 'count', 'q');
      const unit = qu === 'requests' ? 'calls' : qu;
      if (remaining !== undefined && resetIn !== undefined) add(['ratelimit'], unit, limit, remaining, resetIn, name);
    } else ignore(`${label}: quota unit ${JSON.stringify(qu)} is not a rate this limiter keeps`);
  }
  // Then a limit, what remains and when it resets, `%` naming the part: RateLimit's older form (the draft's earlier
  // versions, still common) only without RateLimit; OpenAI's requests and tokens; Anthropic's four units.
  const dialects: Array<[string, string, Kind, Kind?]> = [['ratelimit-%', 'calls', 'reset', 'quota'],
    ['x-ratelimit-%-requests', 'calls', 'duration'], ['x-ratelimit-%-tokens', 'tokens', 'duration'],
    ...['requests', 'tokens', 'input-tokens', 'output-tokens'].map((u): [string, string, Kind] =>
      [`anthropic-ratelimit-${u}-%`, u === 'requests' ? 'calls' : u, 'date'])];
  for (const [pattern, unit, kind, limitKind] of dialects.slice(rateLimit === undefined ? 0 : 1)) {
    const h = (part: string) => pattern.replace('%', part);
    add(['limit', 'remaining', 'reset'].map(h), unit, read(h('limit'), limitKind), read(h('remaining')),
      read(h('reset'), kind));
  }
  // GitHub and Discord share x-ratelimit-*: GitHub adds how many were used and names the resource; Discord names a
  // bucket and sends reset-after, read on its own clock (so preferred to the reset).
  const x = (part: string) => `x-ratelimit-${part}`;
  const [limit, used] = [read(x('limit')), read(x('used'))];
  const left = get(x('remaining')) === undefined && limit !== undefined && used !== undefined && used <= limit
    ? limit - used : read(x('remaining'));
  const after = get(x('reset-after')) !== undefined;
  const resetIn = after ? read(x('reset-after'), 'seconds') : read(x('reset'), 'reset');
  const discord = after || get(x('bucket')) !== undefined || get(x('reset'))?.includes('.');
  add(['limit', 'remaining', 'used', 'reset', 'reset-after'].map(x), 'calls', limit, left, resetIn,
    get(x(discord ? 'bucket' : 'resource')));
  // Retry-After means "back off" on an error: a 429, a 503, GitHub's 403 (on a redirect, it does not). Discord's
  // global limit holds every route: its 429 says how long in Retry-After, or else the reset is all there is.
  const global = discord && get(x('global'))?.toLowerCase() === 'true' && (status ?? 429) === 429;
  const pause = (status === undefined || status >= 400 ? read('retry-after', 'retry') : undefined)
    ?? (global && get('retry-after') === undefined ? resetIn : undefined);
  return pause === undefined ? out : { ...out, pause };
}

// How a header gives a number: each kind's form, and what a header not in it is said not to be. The older IETF limit
// is a list led by its quota ("100, 100;w=60"); a "reset" is epoch seconds or seconds from now (told apart by
// EPOCH_FLOOR_S); a date is RFC 3339 (Anthropic's), a duration like "6m0s" (OpenAI's); Retry-After is seconds or an
// HTTP date, which starts with the day's name (Date.parse alone would also take "-5").
const KINDS = {
  count: [/^\d{1,15}$/, 'is not a whole number of 0 or more'],
  quota: [/^\d{1,15}(?=\s*([,;]|$))/, 'does not start with a whole number of 0 or more'],
  seconds: [/^\d{1,15}(\.\d{1,9})?$/, 'is not a number of seconds of 0 or more'],
  reset: [/^\d{1,15}(\.\d{1,9})?$/, 'is not a number of seconds of 0 or more'],
  date: [/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?(Z|[+-]\d\d:\d\d)$/i, 'is not an RFC 3339 time'],
  duration: [/^(\d{1,15}(\.\d{1,9})?(h|ms|m|s|us|µs|ns))+$/, 'is not a duration such as "6m0s" or "20ms"'],
  retry: [/^\d{1,15}(\.\d{1,9})?$|^[A-Za-z]{3}, /, 'is neither seconds nor an HTTP date'],
} as const;
type Kind = keyof typeof KINDS;
const NO_T = 'no t, and no window (w) in its policy, so no time the quota holds until';

// The number `text` gives as `kind` (a time as seconds from `now`), or NaN if it is not in that kind's form.
function numberIn(text: string, kind: Kind, now: number): number {
  if (!KINDS[kind][0].test(text)) return NaN;
  if (kind === 'date' || (kind === 'retry' && !/^\d/.test(text))) return (Date.parse(text) - now) / 1000;
  const scale: Readonly<Record<string, number>> = { h: 3600, m: 60, s: 1, ms: 1e-3, us: 1e-6, 'µs': 1e-6, ns: 1e-9 };
  if (kind === 'duration') return [...text.matchAll(/([\d.]+)(h|ms|m|s|us|µs|ns)/g)]
    .reduce((sum, [, n, unit = '']) => sum + Number(n) * (scale[unit] ?? NaN), 0);
  const n = parseFloat(text);
  return kind === 'reset' && n >= EPOCH_FLOOR_S ? n - now / 1000 : n;
}

// A response's status and its headers by name in any case, from a Headers (anything with get()) or a plain object of
// strings, numbers or arrays (joined as fetch joins them); a value that cannot be read is none, said once in `ignored`.
function headersOf(response: unknown, ignored: string[]): { status?: number; get(name: string): string | undefined } {
  if (typeof response !== 'object' || response === null) throw new TypeError('ratelimit: observe() takes a fetch '
    + `Response, a Headers, a plain object of headers or { status, headers }, got ${show(response)}`);
  const { headers, status, statusCode } = response as { headers?: unknown; status?: unknown; statusCode?: unknown };
  const nested = typeof headers === 'object' && headers !== null;
  const source = (nested ? headers : response) as { get?: (name: string) => unknown };
  const get = (name: string) => {
    const value = typeof source.get === 'function' ? source.get(name)
      : Object.entries(source).filter(([k]) => k.toLowerCase() === name).map(([, v]) => v);
    const parts = [value].flat(2).filter((v) => v != null);
    const text = parts.join(', ').trim();
    const why = !parts.every((v) => typeof v === 'string' || Number.isFinite(v)) ? 'not a string or a number'
      : text.length > HEADER_MAX_CHARS ? `longer than ${HEADER_MAX_CHARS} characters` : undefined;
    if (why && !ignored.includes(`${name}: ${why}`)) ignored.push(`${name}: ${why}`);
    return parts.length && !why ? text : undefined;
  };
  return nested && Number.isInteger(status ?? statusCode) ? { status: (status ?? statusCode) as number, get } : { get };
}

// A structured-field list (RFC 9651) of items with parameters, as these headers use it: [name, parameters], the name
// a string or a token, each parameter's value as written (a bare key as ?1, true). Undefined if it is not such a list.
function structuredList(text: string): Array<[string, Map<string, string>]> | undefined {
  const string = '"(?:[\\x20\\x21\\x23-\\x5b\\x5d-\\x7e]|\\\\["\\\\])*"';
  const token = "[A-Za-z*][\\w!#$%&'*+.^`|~:/-]*";
  // Integers of up to 15 digits, decimals of up to 12 and 3: the spec's bounds.
  const bare = `-?\\d{1,12}\\.\\d{1,3}|-?\\d{1,15}|${string}|${token}|:[A-Za-z0-9+/=]*:|\\?[01]`;
  const param = `;\\s*([a-z*][a-z0-9_.*-]*)(?:=(${bare}))?`;
  const list = text.trim();
  const items = [...list.matchAll(new RegExp(`(${string}|${token})((?:${param})*)[ \\t]*(?:,[ \\t]*(?=\\S)|$)`, 'gy'))];
  if (items.map((m) => m[0]).join('') !== list) return undefined;
  return items.map(([, name = '', params = '']) => [name.replace(/^"(.*)"$/, '$1').replace(/\\(.)/g, '$1'),
    new Map([...params.matchAll(new RegExp(param, 'g'))].map(([, key = '', v = '?1']) => [key, v]))]);
}
