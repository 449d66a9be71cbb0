// examples/redis-store.ts: one limit shared by every machine that talks to the
// same Redis. A store for ratelimit.ts built on the `redis` npm client
// (written against v6); ratelimit.ts itself stays free of dependencies.
// Copy both files next to your program and `npm install redis`.
//
//   import { RateLimit } from './ratelimit.ts';
//   import { RedisStore } from './redis-store.ts';
//
//   const store = new RedisStore({ url: 'redis://cache.internal:6379', key: 'ratelimit:github' });
//   const limit = new RateLimit({ maxCount: 10, per: 1, store });
//   await limit.wait();               // now call the API
//   await limit.wait({ maxWait: 0 }); // go only if a slot is free now, else RateLimitTimeoutError
//   await store.close();              // optional: an idle store does not keep the process alive
//
// What it does:
// - The state is one Redis key holding the limit's JSON state and the time it
//   was written. Every program that names the same key, on any machine,
//   shares one limit; they must agree on maxCount, per and greedy (a mismatch
//   is an error that says so).
// - An update reads the key and the server's TIME in one script, runs the
//   limiter's transaction here, and writes the result with a compare-and-set
//   script that succeeds only if the key still holds what was read. If
//   another client wrote first, the transaction runs again on the new value,
//   up to `maxAttempts` times, backing off at random after the second loss;
//   then the call fails with a RedisStoreError (reason 'conflict'). Updates
//   from one process are batched, so they never conflict with each other.
// - The time comes from the Redis server, so clients whose own clocks
//   disagree (by an hour, say) still share one clock. It is the server's wall
//   clock: if it is stepped back, the stored times are shifted back with it
//   at the next update, so nobody waits for the step; if it is stepped
//   forward, up to one window's worth of extra calls can go through.
//   A call goes about 1.5 round trips to Redis after its slot (never before
//   it), so callers with very different round-trip times can come closer
//   together than the limit by the difference.
// - The key expires 2 x per after the last reserved time. Past `per` after
//   it, the state no longer holds anyone back, so idle limits leave nothing.
//   If Redis loses the key early (a restart without persistence, eviction, a
//   failover before the write reached the replica), the limit starts afresh.
// - When Redis is down, refuses connections or stops answering, a call fails
//   with a RedisStoreError (reason 'unreachable' or 'timeout') within
//   `timeout` seconds of the step that got no answer. Nothing reconnects in
//   the background; the next call connects afresh.
// - There is no updateSync (a network round trip cannot be made blocking), so
//   waitSync() and tryAcquire() throw a TypeError. Use
//   `await limit.wait({ maxWait: 0 })` to take a slot only if one is free now.
// - Other connection settings (TLS is rediss://, a password goes in the URL;
//   Sentinel or Cluster need createSentinel/createCluster) belong in
//   newClient() below. Both scripts touch only the one key.
//
// Run it as a demo against a Redis server (start two at once to see them share):
//   REDIS_URL=redis://127.0.0.1:6379 npx tsx examples/redis-store.ts

import { createClient } from 'redis';
import { pathToFileURL } from 'node:url';
import { RateLimit, RateLimitStoreError, expiresAt, parseState, shiftState, type LimitState, type RateLimitStore, type Transaction, type TxContext } from './ratelimit.ts';
import { randomUUID } from 'node:crypto';

export interface RedisStoreOptions {
  /** The key that holds the state. Every client sharing the limit names the same key. */
  key: string;
  /** Where Redis is. Default: the REDIS_URL environment variable, else redis://127.0.0.1:6379. */
  url?: string;
  /** Seconds to wait for a connection or for one round trip before failing. Default 2. */
  timeout?: number;
  /** How many times an update is tried when other clients keep changing the key. Default 100. */
  maxAttempts?: number;
}

/** Why a {@link RedisStore} call failed. */
export type RedisStoreFailure = 'unreachable' | 'timeout' | 'conflict' | 'refused';

/**
 * A call to Redis failed; `reason` says how. The caller was given no slot.
 * (After a 'timeout' Redis may still have made the write: then a slot is used
 * up that nobody takes, which errs on the side of fewer calls.)
 */
export class RedisStoreError extends RateLimitStoreError {
  readonly reason: RedisStoreFailure;
  constructor(reason: RedisStoreFailure, key: string, message: string, cause?: unknown) {
    super(message, key, cause);
    this.reason = reason;
  }
}

// Reads the key ('' when absent) and the server's time, atomically.
const READ = `return { redis.call('GET', KEYS[1]) or '', redis.call('TIME') }`;

// Writes ARGV[2] with a time to live of ARGV[3] ms if the key still holds
// ARGV[1] ('' meaning absent). Otherwise returns what it holds now and the time.
const COMPARE_AND_SET = `
local current = redis.call('GET', KEYS[1]) or ''
if current == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
  return { 1 }
end
return { 0, current, redis.call('TIME') }`;

function newClient(url: string, timeoutMs: number) {
  return createClient({
    url,
    // Fail instead of queueing commands while disconnected, and never
    // reconnect in the background: each call decides for itself.
    disableOfflineQueue: true,
    socket: { connectTimeout: timeoutMs, reconnectStrategy: false },
  });
}
type Client = ReturnType<typeof newClient>;
interface Pending { tx: Transaction<unknown>; resolve: (value: unknown) => void; reject: (error: unknown) => void }
type Outcome = { result: unknown } | { error: unknown };

/** Keeps a limit's state in one Redis key. See the top of this file. */
export class RedisStore implements RateLimitStore {
  readonly name: string;
  readonly key: string;
  /** The Redis URL with any password removed. */
  readonly url: string;
  /** How many compare-and-set attempts lost to another client, in total. */
  conflicts = 0;
  private readonly fullUrl: string;
  private readonly timeoutMs: number;
  // Slots are held under leases: a pid means nothing on another machine, so no holder is ever proven dead.
  private readonly context: TxContext = { holder: randomUUID(), isDead: () => false };
  private readonly maxAttempts: number;
  private client?: Client | undefined;
  private connecting?: Promise<Client> | undefined;
  // Updates waiting for the next batch, and whether a batch is under way.
  private pending: Pending[] = [];
  private busy = false;

  constructor(options: RedisStoreOptions) {
    const { REDIS_URL } = process.env;
    const { key, url = REDIS_URL || 'redis://127.0.0.1:6379', timeout = 2, maxAttempts = 100 } = options;
    if (typeof key !== 'string' || key === '') throw new TypeError('RedisStore: key must be a non-empty string');
    if (!(Number.isFinite(timeout) && timeout > 0)) throw new RangeError(`RedisStore: timeout must be seconds above 0, got ${timeout}`);
    if (!(Number.isInteger(maxAttempts) && maxAttempts >= 1)) throw new RangeError(`RedisStore: maxAttempts must be an integer of 1 or more, got ${maxAttempts}`);
    this.key = key;
    this.fullUrl = url;
    this.url = withoutPassword(url);
    this.timeoutMs = Math.ceil(timeout * 1000);
    this.maxAttempts = maxAttempts;
    this.name = `Redis key ${JSON.stringify(key)} at ${this.url}`;
  }

  /**
   * Runs `tx` atomically on the key. Updates made from this process while
   * another is in flight are batched: they run one after another on the
   * same state and time, and are written with one compare-and-set. So they
   * never conflict with each other, and many concurrent wait() calls cost
   * two round trips, not two each.
   */
  update<T>(tx: Transaction<T>): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      this.pending.push({ tx, resolve: resolve as (value: unknown) => void, reject });
      if (!this.busy) void this.drain();
    });
  }

  /** Closes the connection. The store can still be used: the next update reconnects. */
  async close(): Promise<void> {
    const client = this.client ?? (await this.connecting?.catch(() => undefined));
    this.client = undefined;
    if (client?.isOpen) await client.close().catch(() => client.destroy());
  }

  private async drain(): Promise<void> {
    this.busy = true;
    while (this.pending.length) {
      const batch = this.pending;
      this.pending = [];
      try {
        const outcomes = await this.transact(batch.map((p) => p.tx));
        batch.forEach((p, i) => {
          const outcome = outcomes[i];
          if (outcome && 'error' in outcome) p.reject(outcome.error);
          else p.resolve(outcome?.result);
        });
      } catch (error) {
        for (const p of batch) p.reject(error);
      }
    }
    this.busy = false;
  }

  // Runs the transactions in order on the key's state, and writes the result
  // if any of them changed it. A transaction that throws fails alone.
  private async transact(txs: Transaction<unknown>[]): Promise<Outcome[]> {
    const client = await this.connect();
    let [raw, time] = (await this.call(client, READ, [])) as [string, [string, string]];
    for (let attempt = 1; ; attempt++) {
      const now = Number(time[0]) + Number(time[1]) / 1e6;
      let state = this.decode(raw, now);
      let changed = false;
      const outcomes: Outcome[] = txs.map((tx) => {
        try {
          const out = tx(state, now, this.context);
          if (out.state) { state = out.state; changed = true; }
          return { result: out.result };
        } catch (error) {
          return { error };
        }
      });
      if (!changed || !state) return outcomes;
      const text = JSON.stringify({ written: now, state });
      const ttl = Math.max(1, Math.ceil((expiresAt(state) - now) * 1000));
      const reply = (await this.call(client, COMPARE_AND_SET, [raw, text, String(ttl)])) as [number, string?, [string, string]?];
      if (reply[0] === 1) return outcomes;
      this.conflicts++;
      if (attempt >= this.maxAttempts) {
        throw new RedisStoreError('conflict', this.key, `ratelimit: ${this.name} was changed by other clients during each of ` +
          `${attempt} attempts to update it; too many clients on one key, or raise maxAttempts`);
      }
      if (attempt === 1) {
        // Try again at once with the value and time the script sent back.
        [, raw, time] = reply as [number, string, [string, string]];
      } else {
        // Still losing: back off for a random time that doubles with each
        // attempt (up to 32 ms), so the contenders spread out, then read afresh.
        await new Promise((resolve) => setTimeout(resolve, Math.random() * Math.min(32, 2 ** (attempt - 2))));
        [raw, time] = (await this.call(client, READ, [])) as [string, [string, string]];
      }
    }
  }

  // The stored text as a state. A state written at a later time than `now`
  // means the server's clock went back: it is shifted back by the same amount,
  // so the step costs nobody any extra waiting.
  private decode(raw: string, now: number): LimitState | undefined {
    if (raw === '') return undefined;
    let value: { written?: unknown; state?: unknown } | undefined;
    try {
      value = JSON.parse(raw);
    } catch {
      value = undefined;
    }
    const state = parseState(value?.state);
    const written = value?.written;
    if (!state || typeof written !== 'number' || !Number.isFinite(written)) {
      process.emitWarning(`ratelimit: ${this.name} does not hold a limit's state; starting it afresh`, { type: 'RateLimitWarning', code: 'RATELIMIT_STATE_LOST' });
      return undefined;
    }
    return written <= now ? state : shiftState(state, now - written, now);
  }

  // Runs one script with a deadline. A connection that missed it is dropped
  // (replies come in order, so it is of no further use); the next update opens
  // a new one.
  private async call(client: Client, script: string, args: string[]): Promise<unknown> {
    try {
      return await this.deadline(client.eval(script, { keys: [this.key], arguments: args }), client, 'answer');
    } catch (error) {
      if (error instanceof RedisStoreError) throw error;
      if (!client.isReady) {
        this.drop(client);
        throw new RedisStoreError('unreachable', this.key, `ratelimit: lost the connection to Redis at ${this.url}: ${describe(error)}`, error);
      }
      throw new RedisStoreError('refused', this.key, `ratelimit: Redis at ${this.url} refused an update of key ${JSON.stringify(this.key)}: ${describe(error)}`, error);
    }
  }

  private connect(): Promise<Client> {
    if (this.client?.isReady) return Promise.resolve(this.client);
    if (this.client) this.drop(this.client);
    this.connecting ??= this.open().finally(() => { this.connecting = undefined; });
    return this.connecting;
  }

  private async open(): Promise<Client> {
    const client = newClient(this.fullUrl, this.timeoutMs);
    let lastError: unknown;
    client.on('error', (error) => { lastError = error; }); // without a listener, errors crash the process
    try {
      await this.deadline(client.connect(), client, 'complete the connection');
    } catch (error) {
      this.drop(client);
      if (error instanceof RedisStoreError) throw error;
      throw new RedisStoreError('unreachable', this.key, `ratelimit: cannot connect to Redis at ${this.url}: ${describe(lastError ?? error)}`, error);
    }
    // An idle connection does not keep the process alive; a call in progress
    // does, through its deadline timer.
    client.unref();
    this.client = client;
    return client;
  }

  private async deadline<T>(promise: Promise<T>, client: Client, what: string): Promise<T> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const expired = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        this.drop(client);
        reject(new RedisStoreError('timeout', this.key, `ratelimit: Redis at ${this.url} did not ${what} within ${this.timeoutMs} ms`));
      }, this.timeoutMs);
    });
    promise.catch(() => undefined); // it may reject after the deadline won
    try {
      return await Promise.race([promise, expired]);
    } finally {
      clearTimeout(timer);
    }
  }

  private drop(client: Client): void {
    if (this.client === client) this.client = undefined;
    try { client.destroy(); } catch { /* already closed */ }
  }
}

function withoutPassword(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    return url;
  }
}

function describe(error: unknown): string {
  // AggregateError (ES2021) by its shape, so the file compiles for ES2020 too.
  const errors = (error as { errors?: unknown } | null)?.errors;
  if (Array.isArray(errors) && errors.length) return errors.map(describe).join('; ');
  return error instanceof Error ? error.message || error.name : String(error);
}

// ---------------------------------------------------------------------------
// Demo: `npx tsx examples/redis-store.ts` with REDIS_URL set. Prints when each
// call went, by the Redis server's clock. Start it in two terminals at once
// and the two timelines interleave without either breaking the limit.
// ---------------------------------------------------------------------------

async function demo(): Promise<void> {
  for (const greedy of [false, true]) {
    const store = new RedisStore({ key: `ratelimit:example:${greedy ? 'greedy' : 'patient'}` });
    const limit = new RateLimit({ maxCount: 3, per: 2, greedy, store });
    console.log(`${greedy ? '\n' : ''}${greedy ? 'greedy' : 'patient'}, 3 calls per 2 s, ${store.name}, process ${process.pid}:`);
    for (let i = 1; i <= 7; i++) {
      const waited = await limit.wait();
      // Redis's clock (UTC time of day), so timelines of several processes line up.
      const now = new Date((await serverTime(store)) * 1000).toISOString().slice(11, 23);
      console.log(`  ${now}  call ${i}, waited ${waited.toFixed(3)} s`);
    }
    try {
      await limit.wait({ maxWait: 0 });
      console.log('  wait({ maxWait: 0 }): a slot was free, taken');
    } catch (error) {
      console.log(`  wait({ maxWait: 0 }): ${(error as Error).message}`);
    }
    await store.close();
  }
}

// The server's time, read through the store itself (a transaction that
// changes nothing), for the demo's timeline.
function serverTime(store: RedisStore): Promise<number> {
  return store.update((_state, now) => ({ result: now }));
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  demo().catch((error) => {
    console.error(error instanceof Error ? error.message : error);
    process.exitCode = 1;
  });
}
