// Question 2: what one uncontended acquisition across processes costs: this
// file's file mode against a lock library plus a JSON file, SQLite, and the
// floor of the file system, a bare lock cycle (open 'wx', close, unlink).
//
// All contenders run in one process, in a rotated order within every round,
// so a noisy neighbour slows them alike. Figures are medians over the
// rounds; ratios are medians of the per-round ratios.
//
//   npm run bench:file            (or: node --import tsx bench/filemode.ts)
import { join } from 'node:path';
import { RateLimit } from '../ratelimit.ts';
import { fmt, median, printTable, rotate, tempDir } from './lib.ts';
import { crossPeers, FREE, type Acquire } from './peers.ts';

const ROUNDS = Number(process.env.ROUNDS ?? 7);
const N = Number(process.env.N ?? 1000);
// A contender that needs more than this for its N calls in a round is
// stopped there and timed over the calls it made (the lock-plus-JSON peers
// take a millisecond or more per call).
const CAP_MS = Number(process.env.CAP_MS ?? 250);
const { dir, remove } = tempDir('file');

interface Contender { name: string; acquire: Acquire; sync: boolean; close?: () => void }
const contenders: Contender[] = [];
try {
  for (const peer of crossPeers) {
    const { acquire, close } = await peer.open(dir, false);
    contenders.push({ name: peer.name, acquire, close, sync: !/^(proper-lockfile|ratelimit|candidate)/.test(peer.name) });
  }
  // This file's other ways to take a slot, on their own state files.
  const patient = new RateLimit({ maxCount: FREE.limits[0]!.maxCount, per: FREE.limits[0]!.per, file: join(dir, 'patient.json') });
  const greedy = new RateLimit({ maxCount: 1000, per: 1e-6, greedy: true, file: join(dir, 'greedy.json') });
  contenders.splice(2, 0,
    { name: 'ratelimit waitSync()', acquire: () => patient.waitSync(), sync: true },
    { name: 'ratelimit tryAcquire()', acquire: () => patient.tryAcquire(), sync: true },
    { name: 'ratelimit wait(), greedy', acquire: () => greedy.wait(), sync: false },
  );
  const floor = contenders[0].name;
  const oursName = contenders[1].name;

  const run = async (c: Contender, n: number): Promise<number> => {
    const start = performance.now();
    let i = 0;
    while (i < n) {
      if (c.sync) for (let j = 0; j < 16; j++) c.acquire();
      else for (let j = 0; j < 16; j++) await c.acquire();
      i += 16;
      if (performance.now() - start > CAP_MS) break;
    }
    return ((performance.now() - start) * 1000) / i;
  };

  for (const c of contenders) await run(c, 200); // warm up
  const us: Record<string, number[]> = {};
  const xFloor: Record<string, number[]> = {};
  const xOurs: Record<string, number[]> = {};
  for (const c of contenders) { us[c.name] = []; xFloor[c.name] = []; xOurs[c.name] = []; }
  for (let round = 0; round < ROUNDS; round++) {
    const t: Record<string, number> = {};
    for (const c of rotate(contenders, round)) t[c.name] = await run(c, N);
    for (const c of contenders) {
      us[c.name].push(t[c.name]);
      xFloor[c.name].push(t[c.name] / t[floor]);
      xOurs[c.name].push(t[c.name] / t[oursName]);
    }
  }
  printTable(
    `2. One uncontended acquisition across processes (lock, read state, write state, unlock): ${N} in a row, median of ${ROUNDS} rounds, directory ${dir.slice(0, dir.lastIndexOf('/'))}`,
    ['contender', 'µs per acquisition', 'x floor', 'x this file'],
    contenders.map((c) => [c.name, fmt(median(us[c.name]), 1), fmt(median(xFloor[c.name]), 2), fmt(median(xOurs[c.name]), 2)]),
    [
      `A contender still running after ${CAP_MS} ms in a round is timed over the calls it made by then.`,
      'Every contender computes the next slot with the same reserve() from ratelimit.ts on a JSON state; only locking and storage differ.',
      ...crossPeers.map((p) => `${p.name}: ${p.how}`),
    ],
  );
} finally {
  for (const c of contenders) c.close?.();
  remove();
}
