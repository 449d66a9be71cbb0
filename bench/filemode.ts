// Cost of one uncontended acquisition in file mode, against the floor of the
// file system: a bare lock cycle (open 'wx', close, unlink) on the same disk.
// Both are timed in alternating rounds in one process, so a noisy neighbour
// slows both alike; the figures are medians over the rounds, and the ratio is
// the median of the per-round ratios.
//
//   npm run bench:file            (or: node --import tsx bench/filemode.ts)
import { closeSync, mkdtempSync, openSync, rmSync, unlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { RateLimit } from '../ratelimit.ts';

const ROUNDS = Number(process.env.ROUNDS ?? 15);
const N = Number(process.env.N ?? 4000);
const dir = mkdtempSync(join(process.env.BENCH_DIR ?? tmpdir(), 'ratelimit-bench-'));

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
function time(n: number, f: () => void): number {
  const start = performance.now();
  for (let i = 0; i < n; i++) f();
  return ((performance.now() - start) * 1000) / n; // µs per call
}
async function timeAsync(n: number, f: () => Promise<unknown>): Promise<number> {
  const start = performance.now();
  for (let i = 0; i < n; i++) await f();
  return ((performance.now() - start) * 1000) / n;
}

const lock = join(dir, 'bare.lock');
const bare = () => { closeSync(openSync(lock, 'wx')); unlinkSync(lock); };
// A limit that never binds, so only the cost of acquiring is measured.
const patient = new RateLimit({ maxCount: 1e9, per: 1, file: join(dir, 'patient.json') });
const greedy = new RateLimit({ maxCount: 1000, per: 1e-6, greedy: true, file: join(dir, 'greedy.json') });

const rows: Record<string, number[]> = { bare: [], tryAcquire: [], wait: [], waitSync: [], greedyWait: [] };
const ratios: Record<string, number[]> = { tryAcquire: [], wait: [], waitSync: [], greedyWait: [] };
time(N, bare); time(N, () => patient.tryAcquire()); // warm up
for (let r = 0; r < ROUNDS; r++) {
  const b = time(N, bare);
  rows.bare.push(b);
  const t = { tryAcquire: time(N, () => patient.tryAcquire()), wait: await timeAsync(N, () => patient.wait()),
    waitSync: time(N, () => patient.waitSync()), greedyWait: await timeAsync(N, () => greedy.wait()) };
  for (const [k, v] of Object.entries(t)) { rows[k].push(v); ratios[k].push(v / b); }
}
rmSync(dir, { recursive: true, force: true });

console.log(`file mode, uncontended: ${ROUNDS} rounds x ${N} calls, medians (directory ${tmpdir()})`);
console.log('what'.padEnd(34), 'µs/call'.padStart(8), ' x bare lock cycle');
console.log('bare lock cycle (open wx+close+unlink)'.padEnd(34), median(rows.bare).toFixed(1).padStart(8), '   1.00');
for (const k of Object.keys(ratios)) {
  const label = { tryAcquire: 'tryAcquire() patient', wait: 'await wait() patient', waitSync: 'waitSync() patient', greedyWait: 'await wait() greedy' }[k]!;
  console.log(label.padEnd(34), median(rows[k]).toFixed(1).padStart(8), median(ratios[k]).toFixed(2).padStart(7));
}
