// The libraries this file is compared with, each set up the way its own
// documentation shows, behind one shape so every benchmark treats them alike.
//
// The peers are installed in bench/node_modules only (bench/package.json).
// They are loaded with import() of a computed name, so type-checking the
// repository never needs them installed; the few calls used are typed here.
import { closeSync, openSync, readFileSync, unlinkSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { RateLimit, reserve, type LimitState, type Settings } from '../ratelimit.ts';

/**
 * RATELIMIT_CANDIDATE=path/to/changed-copy.ts adds that copy of ratelimit.ts
 * as one more contender to questions 1 to 3, measured side by side with the
 * current file, to see what a change buys before making it.
 */
const candidatePath = process.env.RATELIMIT_CANDIDATE;
const Candidate: typeof RateLimit | undefined = candidatePath
  ? (await import(pathToFileURL(resolve(candidatePath)).href)).RateLimit
  : undefined;

const load = async (name: string): Promise<any> => {
  const mod = await import(name);
  return mod.default ?? mod;
};

// ---------------------------------------------------------------------------
// In one process: something to await before each call.
// ---------------------------------------------------------------------------

export type Acquire = () => Promise<unknown> | unknown;

/**
 * `free`: a limit that never binds, to measure the cost of one call.
 * `even`: one call every `ms` milliseconds, evenly spaced, in the setting each
 * library offers for that.
 */
export type Mode = { kind: 'free' } | { kind: 'even'; ms: number };

export interface InProcessPeer {
  name: string;
  /** How the library was configured, for the notes under a table. */
  setting: (mode: Mode) => string;
  make: (mode: Mode) => Promise<Acquire>;
}

const noop = () => undefined;
const BIG = 1_000_000_000;

export const ours: InProcessPeer = {
  name: 'ratelimit (this file)',
  setting: (m) => `new RateLimit({ maxCount: ${m.kind === 'free' ? '1e9' : 1000 / m.ms}, per: 1 }), await wait()`,
  make: async (m) => {
    const limit = new RateLimit({ maxCount: m.kind === 'free' ? BIG : 1000 / m.ms, per: 1 });
    return () => limit.wait();
  },
};

/** The candidate copy of ratelimit.ts, when RATELIMIT_CANDIDATE names one. */
export const candidate: InProcessPeer[] = Candidate ? [{
  name: 'candidate (RATELIMIT_CANDIDATE)',
  setting: (m) => `${candidatePath}: ${ours.setting(m)}`,
  make: async (m) => {
    const limit = new Candidate({ maxCount: m.kind === 'free' ? BIG : 1000 / m.ms, per: 1 });
    return () => limit.wait();
  },
}] : [];

export const inProcessPeers: InProcessPeer[] = [
  {
    name: 'bottleneck',
    setting: (m) => `new Bottleneck(${m.kind === 'free' ? '' : `{ minTime: ${m.ms} }`}), await schedule(fn)`,
    make: async (m) => {
      const Bottleneck = await load('bottleneck');
      const b = new Bottleneck(m.kind === 'free' ? {} : { minTime: m.ms });
      return () => b.schedule(noop);
    },
  },
  {
    name: 'limiter',
    setting: (m) => `new RateLimiter({ tokensPerInterval: ${m.kind === 'free' ? '1e9, interval: 1000' : `1, interval: ${m.ms}`} }), await removeTokens(1)`,
    make: async (m) => {
      const { RateLimiter } = await load('limiter');
      const l = new RateLimiter(m.kind === 'free' ? { tokensPerInterval: BIG, interval: 1000 } : { tokensPerInterval: 1, interval: m.ms });
      return () => l.removeTokens(1);
    },
  },
  {
    name: 'p-throttle',
    setting: (m) => `pThrottle({ ${m.kind === 'free' ? 'limit: 1e9, interval: 1000' : `limit: 1, interval: ${m.ms}, strict: true`} })(fn), await it`,
    make: async (m) => {
      const pThrottle = await load('p-throttle');
      return pThrottle(m.kind === 'free' ? { limit: BIG, interval: 1000 } : { limit: 1, interval: m.ms, strict: true })(noop);
    },
  },
  {
    name: 'async-sema',
    setting: (m) => `RateLimit(${m.kind === 'free' ? '1e6, { timeUnit: 1000 }' : `${1000 / m.ms}, { uniformDistribution: true }`}), await rl()`,
    make: async (m) => {
      const { RateLimit: SemaRateLimit } = await load('async-sema');
      // Its semaphore allocates one token per call allowed, so 1e6, not 1e9.
      return m.kind === 'free' ? SemaRateLimit(1_000_000, { timeUnit: 1000 }) : SemaRateLimit(1000 / m.ms, { uniformDistribution: true });
    },
  },
  {
    name: 'rate-limiter-flexible',
    setting: (m) => `new RateLimiterQueue(new RateLimiterMemory({ points: ${m.kind === 'free' ? '1e9, duration: 1' : `1, duration: ${m.ms / 1000}`} })), await removeTokens(1)`,
    make: async (m) => {
      const { RateLimiterMemory, RateLimiterQueue } = await load('rate-limiter-flexible');
      const mem = new RateLimiterMemory(m.kind === 'free' ? { points: BIG, duration: 1 } : { points: 1, duration: m.ms / 1000 });
      const q = new RateLimiterQueue(mem, { maxQueueSize: BIG });
      return () => q.removeTokens(1);
    },
  },
];

// ---------------------------------------------------------------------------
// Across processes: one read-modify-write of a shared limit's state under a
// lock. Every contender runs the same scheduling arithmetic (reserve() from
// ratelimit.ts) on the same JSON state, so only locking and storage differ.
// ---------------------------------------------------------------------------

/** A limit that never binds: only the cost of taking a slot is measured. */
export const FREE: Settings = { limits: [{ maxCount: 1_000_000_000, per: 1, greedy: false, unit: 'calls' }], maxConcurrent: Infinity, serial: false };
const ONE_CALL = [1];

const now = () => performance.timeOrigin / 1000 + performance.now() / 1000;

function step(text: string | undefined): string {
  const state = text ? (JSON.parse(text) as LimitState) : undefined;
  return JSON.stringify(reserve(FREE, state, now(), ONE_CALL).state);
}

function readText(path: string): string | undefined {
  try { return readFileSync(path, 'utf8') || undefined; } catch { return undefined; }
}

export interface CrossPeer {
  name: string;
  /** How it locks and stores, for the notes under a table. */
  how: string;
  /**
   * Opens the shared limit in `dir`. `contended` asks for the retry settings
   * a caller needs when other processes hold the lock (peers that do not
   * retry by default would fail at once).
   */
  open: (dir: string, contended: boolean) => Promise<{ acquire: Acquire; close?: () => void }>;
}

export const crossPeers: CrossPeer[] = [
  {
    name: 'floor: open wx+close+unlink',
    how: 'a bare lock cycle and nothing else (openSync(lock, "wx"), closeSync, unlinkSync); under contention it retries after 20 µs to 4 ms, as ratelimit does',
    open: async (dir) => {
      const lock = join(dir, 'bare.lock');
      const sleeper = new Int32Array(new SharedArrayBuffer(4));
      return {
        acquire: () => {
          for (let attempt = 0; ; attempt++) {
            try {
              closeSync(openSync(lock, 'wx'));
              unlinkSync(lock);
              return;
            } catch (e) {
              if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
              Atomics.wait(sleeper, 0, 0, Math.min(4, 0.02 * 2 ** attempt) * (0.5 + Math.random()));
            }
          }
        },
      };
    },
  },
  {
    name: 'ratelimit (this file)',
    how: 'new RateLimit({ file }), await wait(): link() lock, in-place rewrite of the JSON state',
    open: async (dir) => {
      const limit = new RateLimit({ maxCount: FREE.limits[0]!.maxCount, per: FREE.limits[0]!.per, file: join(dir, 'ours.json') });
      return { acquire: () => limit.wait() };
    },
  },
  ...(Candidate ? [{
    name: 'candidate (RATELIMIT_CANDIDATE)',
    how: `${candidatePath}, used as above`,
    open: async (dir: string) => {
      const limit = new Candidate({ maxCount: FREE.limits[0]!.maxCount, per: FREE.limits[0]!.per, file: join(dir, 'candidate.json') });
      return { acquire: () => limit.wait() };
    },
  }] : []),
  {
    name: 'proper-lockfile + JSON',
    how: 'await lock(file) (mkdir lock, mtime probe), readFileSync + writeFileSync of the JSON, await release() (rmdir); contended: retries { retries: 2000, minTimeout: 1, maxTimeout: 4 }',
    open: async (dir, contended) => {
      const lockfile = await load('proper-lockfile');
      const path = join(dir, 'proper.json');
      if (!readText(path)) writeFileSync(path, '', { flag: 'a' });
      const options = contended ? { retries: { retries: 2000, factor: 2, minTimeout: 1, maxTimeout: 4, randomize: true } } : {};
      return {
        acquire: async () => {
          const release = await lockfile.lock(path, options);
          try {
            writeFileSync(path, step(readText(path)));
          } finally {
            await release();
          }
        },
      };
    },
  },
  {
    name: 'lockfile (npm) + JSON',
    how: 'lockSync(path.lock) / unlockSync (open wx, close, unlink), readFileSync + writeFileSync of the JSON; contended: async lock with { wait: 10000, pollPeriod: 1 } (default poll 100 ms)',
    open: async (dir, contended) => {
      const lockfile = await load('lockfile');
      const path = join(dir, 'npm.json');
      const lockPath = `${path}.lock`;
      const locked = () => writeFileSync(path, step(readText(path)));
      if (!contended) {
        return {
          acquire: () => {
            lockfile.lockSync(lockPath);
            try { locked(); } finally { lockfile.unlockSync(lockPath); }
          },
        };
      }
      const lock = () => new Promise<void>((res, rej) => lockfile.lock(lockPath, { wait: 10000, pollPeriod: 1 }, (e: Error | null) => (e ? rej(e) : res())));
      return {
        acquire: async () => {
          await lock();
          try { locked(); } finally { lockfile.unlockSync(lockPath); }
        },
      };
    },
  },
  {
    name: 'better-sqlite3 (WAL)',
    how: 'BEGIN IMMEDIATE, SELECT the JSON, UPDATE it, COMMIT; journal_mode=WAL, synchronous=NORMAL (no fsync per commit, like the others), busy timeout 5 s (the default)',
    open: async (dir) => {
      const Database = await load('better-sqlite3');
      const db = new Database(join(dir, 'state.sqlite'), { timeout: 5000 });
      db.pragma('journal_mode = WAL');
      db.pragma('synchronous = NORMAL');
      db.exec('CREATE TABLE IF NOT EXISTS limits (id INTEGER PRIMARY KEY, state TEXT)');
      db.exec('INSERT OR IGNORE INTO limits (id, state) VALUES (1, NULL)');
      const select = db.prepare('SELECT state FROM limits WHERE id = 1');
      const update = db.prepare('UPDATE limits SET state = ? WHERE id = 1');
      const begin = db.prepare('BEGIN IMMEDIATE');
      const commit = db.prepare('COMMIT');
      const rollback = db.prepare('ROLLBACK');
      return {
        acquire: () => {
          begin.run();
          try {
            update.run(step((select.get() as { state: string | null }).state ?? undefined));
            commit.run();
          } catch (e) {
            rollback.run();
            throw e;
          }
        },
        close: () => db.close(),
      };
    },
  },
];
