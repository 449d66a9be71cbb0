// Question 3: 2, 4 and 8 processes taking slots from one shared limit as fast
// as they can. Aggregate acquisitions per second, and the latency of one
// acquisition (p50, p99), for this file, the lock-plus-JSON peers, SQLite and
// a bare lock cycle.
//
// For each process count the children start once and then run every
// contender in turn, in time windows fixed ahead by the parent (all children
// on the same contender at once), in a rotated order each round.
//
//   node --import tsx bench/contended.ts     (ROUNDS=3 WINDOW_MS=400 PROCS=2,4,8)
import { fmt, median, printTable, quantile, rotate, startAll, startChild, tempDir } from './lib.ts';
import { crossPeers } from './peers.ts';

const ROUNDS = Number(process.env.ROUNDS ?? 3);
const WINDOW_MS = Number(process.env.WINDOW_MS ?? 400);
const GAP_MS = Number(process.env.GAP_MS ?? 150);
const PROCS = (process.env.PROCS ?? '2,4,8').split(',').map(Number);
const names = crossPeers.map((p) => p.name);
const ours = names[1];

const rows: string[][] = [];
for (const procs of PROCS) {
  const { dir, remove } = tempDir(`contended-${procs}`);
  try {
    // Create every shared file (and the SQLite table) before the children race to.
    for (const peer of crossPeers) (await peer.open(dir, true)).close?.();
    const windows: { contender: string; offset: number; ms: number }[] = [];
    for (let round = 0; round < ROUNDS; round++) {
      for (const contender of rotate(names, round)) {
        windows.push({ contender, offset: windows.length * (WINDOW_MS + GAP_MS), ms: WINDOW_MS });
      }
    }
    const total = windows.length * (WINDOW_MS + GAP_MS);
    const children = Array.from({ length: procs }, () => startChild('contended-child.ts', { dir, windows }, total + 60_000));
    await startAll(children);
    const results = (await Promise.all(children.map((c) => c.done))).flat().filter((l) => !l.ready);
    // Per round and contender: pooled latencies of all children, and the total count.
    type Pooled = { contender: string; latencies: number[]; failures: number };
    const perWindow = new Map<number, Pooled>();
    for (const r of results) {
      const w: Pooled = perWindow.get(r.offset) ?? { contender: r.contender, latencies: [], failures: 0 };
      for (const l of r.latencies) w.latencies.push(l);
      w.failures += r.failures;
      perWindow.set(r.offset, w);
    }
    const stats: Record<string, { rate: number[]; p50: number[]; p99: number[]; ratio: number[]; failures: number }> = {};
    for (const n of names) stats[n] = { rate: [], p50: [], p99: [], ratio: [], failures: 0 };
    for (let round = 0; round < ROUNDS; round++) {
      const inRound = windows.slice(round * names.length, (round + 1) * names.length).map((w) => perWindow.get(w.offset)!);
      const rateOf = (n: string) => inRound.find((w) => w.contender === n)!.latencies.length / (WINDOW_MS / 1000);
      for (const w of inRound) {
        const s = stats[w.contender];
        s.rate.push(rateOf(w.contender));
        s.ratio.push(rateOf(w.contender) / rateOf(ours));
        s.p50.push(quantile(w.latencies, 0.5) * 1000);
        s.p99.push(quantile(w.latencies, 0.99) * 1000);
        s.failures += w.failures;
      }
    }
    for (const n of names) {
      const s = stats[n];
      rows.push([String(procs), n, fmt(median(s.rate), 0), fmt(median(s.ratio), 2), fmt(median(s.p50), 0), fmt(median(s.p99), 0), String(s.failures)]);
    }
  } finally {
    remove();
  }
}

printTable(
  `3. Contended: processes taking slots from one shared limit as fast as they can; ${WINDOW_MS} ms windows, median of ${ROUNDS} rounds`,
  ['procs', 'contender', 'acquisitions/s', 'x this file', 'p50 µs', 'p99 µs', 'failed'],
  rows,
  [
    'acquisitions/s: all processes together; latency: one acquire call, from its start to its return, pooled over the processes.',
    'failed: acquisitions that gave up (a peer\'s retries ran out); they are not counted as acquisitions.',
    ...crossPeers.map((p) => `${p.name}: ${p.how}`),
  ],
);
