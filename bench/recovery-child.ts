// A process of question 6 (recovery): either the holder, which takes the
// lock and keeps it until it is killed, or the waiter, which waits for the
// lock and reports when it got it. Times are process.hrtime milliseconds
// (CLOCK_MONOTONIC on Linux: the same clock in every process).
import { join } from 'node:path';
import { FileStore } from '../ratelimit.ts';
import { childReady, jobArg, send } from './lib.ts';

interface Job { role: 'hold' | 'wait'; contender: string; dir: string; giveUpMs: number }
const job = jobArg<Job>();
const hrMs = () => Number(process.hrtime.bigint()) / 1e6;
const load = async (name: string): Promise<any> => { const m = await import(name); return m.default ?? m; };
const forever = new Int32Array(new SharedArrayBuffer(4));

const state = join(job.dir, 'state.json');

async function hold(): Promise<void> {
  switch (job.contender) {
    case 'ours': {
      // The library's own code takes the lock; the transaction then blocks
      // inside it, so the lock stays held exactly as in a real update.
      new FileStore(state).updateSync(() => {
        send({ holding: hrMs() });
        Atomics.wait(forever, 0, 0);
        return { result: undefined };
      });
      break;
    }
    case 'proper-lockfile': {
      const lockfile = await load('proper-lockfile');
      await lockfile.lock(state, { realpath: false }); // defaults: stale 10 s, mtime refreshed every 5 s
      send({ holding: hrMs() });
      setInterval(() => {}, 1 << 30);
      break;
    }
    case 'lockfile': {
      (await load('lockfile')).lockSync(`${state}.lock`); // default: no staleness
      send({ holding: hrMs() });
      setInterval(() => {}, 1 << 30);
      break;
    }
    case 'sqlite': {
      const Database = await load('better-sqlite3');
      const db = new Database(join(job.dir, 'state.sqlite'));
      db.pragma('journal_mode = WAL');
      db.exec('CREATE TABLE IF NOT EXISTS limits (id INTEGER PRIMARY KEY, state TEXT)');
      db.exec('BEGIN IMMEDIATE');
      db.exec("INSERT OR REPLACE INTO limits (id, state) VALUES (1, 'x')");
      send({ holding: hrMs() });
      setInterval(() => {}, 1 << 30);
      break;
    }
  }
}

async function wait(): Promise<void> {
  let take: () => Promise<unknown> | unknown;
  switch (job.contender) {
    case 'ours': {
      const store = new FileStore(state);
      take = () => store.update(() => ({ result: undefined }));
      break;
    }
    case 'proper-lockfile': {
      const lockfile = await load('proper-lockfile');
      // Retry every 20 ms; the default (no retries) would fail at once.
      take = () => lockfile.lock(state, { realpath: false, retries: { retries: Math.ceil(job.giveUpMs / 20), factor: 1, minTimeout: 20, maxTimeout: 20 } });
      break;
    }
    case 'lockfile': {
      const lockfile = await load('lockfile');
      take = () => new Promise<void>((res, rej) => lockfile.lock(`${state}.lock`, { wait: job.giveUpMs, pollPeriod: 20 }, (e: Error | null) => (e ? rej(e) : res())));
      break;
    }
    default: {
      const Database = await load('better-sqlite3');
      const db = new Database(join(job.dir, 'state.sqlite'), { timeout: job.giveUpMs });
      take = () => { db.exec('BEGIN IMMEDIATE'); db.exec('COMMIT'); };
    }
  }
  // The parent says go once the holder holds the lock.
  await childReady();
  send({ waiting: hrMs() });
  try {
    await take();
    send({ got: hrMs() });
  } catch (e) {
    send({ gaveUp: hrMs(), error: (e as Error).message });
  }
  process.exit(0);
}

if (job.role === 'hold') await hold();
else await wait();
