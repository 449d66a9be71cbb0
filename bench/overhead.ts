// Question 1: what one wait() costs when the limit does not bind, in one
// process, against the in-process limiters people use instead.
//
// Every round runs every contender once, in a rotated order, on a fresh
// limiter: N sequential `await`s, timed as a whole. Figures are medians over
// the rounds; the ratio is the median of per-round ratios to this file.
//
//   node --import tsx bench/overhead.ts        (ROUNDS=5 N=100000 by default)
import { fmt, median, printTable, rotate, sleep } from './lib.ts';
import { candidate, inProcessPeers, ours, type Acquire } from './peers.ts';

const ROUNDS = Number(process.env.ROUNDS ?? 5);
const N = Number(process.env.N ?? 100_000);
// A contender that needs more than this for its N calls is stopped there and
// timed over the calls it made (bottleneck takes milliseconds per call).
const CAP_MS = Number(process.env.CAP_MS ?? 500);

interface Contender { name: string; setting: string; make: () => Promise<Acquire>; settleMs?: number }

const asyncNoop = async () => undefined;
const contenders: Contender[] = [
  { name: 'floor: await an async no-op', setting: 'await (async () => undefined)()', make: async () => asyncNoop },
  ...[ours, ...candidate].map((p) => ({ name: p.name, setting: p.setting({ kind: 'free' }), make: () => p.make({ kind: 'free' }) })),
  ...inProcessPeers.map((p) => ({
    name: p.name, setting: p.setting({ kind: 'free' }), make: () => p.make({ kind: 'free' }),
    // async-sema releases each token on a 1 s timer; let those fire before the next contender runs.
    settleMs: p.name === 'async-sema' ? 1100 : 0,
  })),
  {
    name: 'rate-limiter-flexible consume()',
    setting: 'new RateLimiterMemory({ points: 1e9, duration: 1 }), await consume(key) (rejects instead of waiting)',
    make: async () => {
      const { RateLimiterMemory } = await import('rate-limiter-flexible' as string);
      const rl = new RateLimiterMemory({ points: 1e9, duration: 1 });
      return () => rl.consume('k');
    },
  },
];

const perCall: Record<string, number[]> = {};
const ratio: Record<string, number[]> = {};
const calls: Record<string, number[]> = {};
for (const c of contenders) { perCall[c.name] = []; ratio[c.name] = []; calls[c.name] = []; }

for (let round = 0; round < ROUNDS; round++) {
  const thisRound: Record<string, number> = {};
  for (const c of rotate(contenders, round)) {
    const acquire = await c.make();
    await sleep(20); // token buckets that start empty fill up meanwhile
    const start = performance.now();
    let n = 0;
    while (n < N) {
      await acquire();
      n++;
      if ((n & 63) === 0 && performance.now() - start > CAP_MS) break;
    }
    const us = ((performance.now() - start) * 1000) / n;
    thisRound[c.name] = us;
    perCall[c.name].push(us);
    calls[c.name].push(n);
    if (c.settleMs) await sleep(c.settleMs);
  }
  for (const c of contenders) ratio[c.name].push(thisRound[c.name] / thisRound[ours.name]);
}

printTable(
  `1. Overhead of one wait() when the limit does not bind: ${N} sequential awaits in one process, median of ${ROUNDS} rounds`,
  ['contender', 'µs per call', 'x this file', 'calls per round'],
  contenders.map((c) => [c.name, fmt(median(perCall[c.name]), 3), fmt(median(ratio[c.name]), 2), String(median(calls[c.name]))]),
  [
    `A contender still running after ${CAP_MS} ms is timed over the calls it made by then (the last column).`,
    ...contenders.map((c) => `${c.name}: ${c.setting}`),
  ],
);
