// Question 6: recovery. A process holds the lock and is killed with SIGKILL;
// how long until a process waiting for the lock goes ahead?
//
// Method: a holder child takes the lock the way each library takes it (for
// this file: FileStore.updateSync, blocked inside its transaction, so the
// lock is held by the library's own code), a waiter child starts waiting,
// and 200 ms later the parent kills the holder. Recovery is the time from the
// kill to the waiter's grant, both read on process.hrtime (CLOCK_MONOTONIC,
// shared by all processes on Linux).
//
//   node --import tsx bench/recovery.ts       (REPS=4 for the fast ones, SLOW_REPS=3 for the slow)
import { fmt, median, printTable, sleep, startChild, tempDir } from './lib.ts';

const REPS = Number(process.env.REPS ?? 4);
const SLOW_REPS = Number(process.env.SLOW_REPS ?? 3);
const GIVE_UP_MS = Number(process.env.GIVE_UP_MS ?? 13_000);
const hrMs = () => Number(process.hrtime.bigint()) / 1e6;

interface Outcome { ms?: number; gaveUp?: boolean }
async function once(contender: string): Promise<Outcome> {
  const { dir, remove } = tempDir(`recovery-${contender}`);
  const timeout = GIVE_UP_MS + 20_000;
  const holder = startChild('recovery-child.ts', { role: 'hold', contender, dir, giveUpMs: GIVE_UP_MS }, timeout);
  const waiter = startChild('recovery-child.ts', { role: 'wait', contender, dir, giveUpMs: GIVE_UP_MS }, timeout);
  try {
    await holder.firstMessage; // it holds the lock
    await waiter.firstMessage; // it is ready
    waiter.proc.stdin!.write('0\n'); // go: start waiting for the lock
    await sleep(200);
    const killedAt = hrMs();
    holder.proc.kill('SIGKILL');
    const lines = await waiter.done;
    const end = lines.find((l) => l.got !== undefined || l.gaveUp !== undefined);
    return end?.got !== undefined ? { ms: end.got - killedAt } : { gaveUp: true };
  } finally {
    holder.proc.kill('SIGKILL');
    waiter.proc.kill('SIGKILL');
    await Promise.all([holder.done.catch(() => {}), waiter.done.catch(() => {})]);
    remove();
  }
}

const labels: Record<string, string> = {
  ours: 'ratelimit (this file)',
  sqlite: 'better-sqlite3 (WAL), BEGIN IMMEDIATE',
  'proper-lockfile': 'proper-lockfile (default stale 10 s)',
  lockfile: 'lockfile (npm) (default: no staleness)',
};
const results: Record<string, Outcome[]> = { ours: [], sqlite: [], 'proper-lockfile': [], lockfile: [] };

// The slow ones wait for seconds doing almost nothing: run their repetitions side by side.
const slow = Promise.all([
  ...Array.from({ length: SLOW_REPS }, () => once('proper-lockfile').then((o) => results['proper-lockfile'].push(o))),
  ...Array.from({ length: Math.min(2, SLOW_REPS) }, () => once('lockfile').then((o) => results.lockfile.push(o))),
]);
for (let i = 0; i < REPS; i++) {
  for (const c of i % 2 ? ['sqlite', 'ours'] : ['ours', 'sqlite']) results[c].push(await once(c));
}
await slow;

const oursMedian = median(results.ours.filter((o) => o.ms !== undefined).map((o) => o.ms!));
printTable(
  '6. Recovery: time from SIGKILL of the lock holder until a waiting process gets the lock',
  ['contender', 'median ms', 'x this file', 'min ms', 'max ms', 'runs', 'never got it'],
  Object.entries(results).map(([k, os]) => {
    const ms = os.filter((o) => o.ms !== undefined).map((o) => o.ms!);
    return [labels[k], fmt(median(ms), 1), fmt(median(ms) / oursMedian, 1), fmt(Math.min(...ms), 1), fmt(Math.max(...ms), 1),
      String(os.length), String(os.filter((o) => o.gaveUp).length)];
  }),
  [
    'Method: a holder child takes the lock the way the library does and keeps it; for this file that is FileStore.updateSync',
    'blocked inside its transaction (the real lock, taken by the library\'s own code). A waiter child starts waiting; 200 ms later',
    'the holder gets SIGKILL. proper-lockfile refreshes its lock every 5 s and calls it stale after 10 s, so its recovery is 5 to 10 s.',
    'proper-lockfile\'s waiter retries every 20 ms; npm lockfile\'s polls every 20 ms;',
    `SQLite's busy handler waits up to ${GIVE_UP_MS / 1000} s. "never got it": still locked after ${GIVE_UP_MS / 1000} s (then it gave up).`,
    'This file proves the holder dead (its pid is gone) and breaks the lock at once; SQLite\'s lock is an fcntl lock, which the kernel drops when the process dies.',
  ],
);
