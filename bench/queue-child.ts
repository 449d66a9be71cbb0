// One process of bench/queue.ts: runs `n` tasks of `taskMs` through run()
// on a shared limiter with maxConcurrent `cap`, or, as a holder, takes the
// one slot and keeps it for `taskMs`; 'quiet' is 'tasks' without the stall meter. Once loaded it prints "ready" and
// reads the start time (wall ms) from stdin, so every process starts together.
// Prints one JSON line: when it finished, its CPU time, the longest gap
// between 1 ms ticks of its event loop, and the most tasks it saw in flight.
import { RateLimit } from '../ratelimit.ts';

import { once } from 'node:events';

const [file, n, taskMs, cap, role = 'tasks'] = process.argv.slice(2);
const limit = new RateLimit({ maxCount: 1_000_000, per: 1, maxConcurrent: Number(cap), ...(file === 'memory' ? {} : { file }) });
await limit.status(); // open the file before the clock starts
console.log('ready');
const [line] = (await once(process.stdin, 'data')) as [Buffer];
const startAt = Number(String(line));
await new Promise((r) => setTimeout(r, Math.max(0, startAt - Date.now())));
process.stdin.destroy();
const cpu0 = process.cpuUsage();
let last = performance.now();
let gap = 0;
// The stall meter wakes 1,000 times a second, which costs CPU itself, so the
// CPU question ('quiet') runs without it.
const tick = role === 'quiet' ? undefined : setInterval(() => { const t = performance.now(); gap = Math.max(gap, t - last); last = t; }, 1);
let inFlight = 0;
let most = 0;
// CPU and time from 1 s after the start (past the first transaction, whose
// code runs for the first time) until the first task began: what waiting costs.
let steady: NodeJS.CpuUsage | undefined;
setTimeout(() => { steady = process.cpuUsage(); }, 1000).unref();
let waited: { cpuMs: number; ms: number } | undefined;
const task = async () => {
  if (!waited && steady) { const c = process.cpuUsage(steady); waited = { cpuMs: (c.user + c.system) / 1000, ms: Date.now() - startAt - 1000 }; }
  most = Math.max(most, ++inFlight);
  await new Promise((r) => setTimeout(r, Number(taskMs)));
  inFlight--;
};
if (role === 'holder') {
  await limit.run(task);
} else {
  await Promise.all(Array.from({ length: Number(n) }, () => limit.run(task)));
}
clearInterval(tick);
const cpu = process.cpuUsage(cpu0);
console.log(JSON.stringify({ end: Date.now(), cpuMs: (cpu.user + cpu.system) / 1000, gapMs: gap, most, waited }));
limit.close();
