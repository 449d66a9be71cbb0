// Question 4: precision. 200 calls at 100 per second, made one after the
// other, in one process and across 4 processes (50 each). Each grant is
// compared with the ideal schedule, start + i × 10 ms for the i-th grant:
// lateness (mean, p99, max), early grants (before their ideal time; target
// 0), and the elapsed time of the whole run against the ideal 1.99 s.
//
// Across processes this file shares one limit through its state file. The
// in-process peers cannot share a limit between processes, so each process
// gets a quarter of it (25 per second), the usual workaround; the 4
// schedules then interleave by chance.
//
//   node --import tsx bench/precision.ts      (ROUNDS=3)
import { fmt, mean, median, printTable, quantile, rotate, startAll, startChild, tempDir } from './lib.ts';
import { inProcessPeers, ours } from './peers.ts';
import { hrMs, runWindow, untilHr, type Window } from './precision-child.ts';

const ROUNDS = Number(process.env.ROUNDS ?? 3);
const CALLS = Number(process.env.CALLS ?? 200);
const PROCS = 4;
const INTERVAL = 10; // ms: 100 per second
const peers = [ours, ...inProcessPeers.filter((p) => p.name !== 'rate-limiter-flexible')];
const names = peers.map((p) => p.name);

interface Stats { mean: number; p99: number; max: number; early: number; earliest: number; elapsedError: number }
function score(grants: number[]): Stats {
  const g = [...grants].sort((a, b) => a - b);
  const late = g.map((t, i) => t - i * INTERVAL);
  return {
    mean: mean(late), p99: quantile(late, 0.99), max: Math.max(...late),
    early: late.filter((l) => l < 0).length, earliest: Math.min(...late),
    elapsedError: g[g.length - 1] - (g.length - 1) * INTERVAL,
  };
}

const results: Record<string, Record<string, Stats[]>> = { '1 process': {}, [`${PROCS} processes`]: {} };
for (const k of Object.keys(results)) for (const n of names) results[k][n] = [];

// In one process: this process runs each window itself, and its CPU time
// over the window is the contender's (per cent of one core). A floor runs
// with them: a bare loop that sleeps to each ideal time on setTimeout, which
// is what any timer-based limiter costs at least.
const FLOOR = 'floor: setTimeout to each slot';
const cpuPercent: Record<string, number[]> = { [FLOOR]: [] };
for (const n of names) cpuPercent[n] = [];
async function floorWindow(start: number, cpu: { ms: number }): Promise<number[]> {
  await untilHr(start);
  const grants: number[] = [];
  const cpu0 = process.cpuUsage();
  for (let i = 0; i < CALLS; i++) {
    for (let left = start + i * INTERVAL - hrMs(); left > 0; left = start + i * INTERVAL - hrMs()) {
      await new Promise((r) => setTimeout(r, Math.ceil(left)));
    }
    grants.push(hrMs() - start);
  }
  const used = process.cpuUsage(cpu0);
  cpu.ms = (used.user + used.system) / 1000;
  return grants;
}
results['1 process'][FLOOR] = [];
for (let round = 0; round < ROUNDS; round++) {
  for (const contender of rotate([FLOOR, ...names], round)) {
    const start = hrMs() + 100;
    const cpu = { ms: NaN };
    const grants = contender === FLOOR ? await floorWindow(start, cpu) : await runWindow({ contender, start, calls: CALLS, ms: INTERVAL }, cpu);
    cpuPercent[contender]!.push(cpu.ms / (hrMs() - start) * 100);
    results['1 process'][contender].push(score(grants));
  }
}

// Across processes: 4 children run the same windows at the same moments.
const { dir, remove } = tempDir('precision');
try {
  const span = CALLS * INTERVAL + 400;
  const windows: Window[] = [];
  for (let round = 0; round < ROUNDS; round++) {
    for (const contender of rotate(names, round)) {
      const shared = contender === ours.name;
      windows.push({
        contender, start: windows.length * span + 100, calls: CALLS / PROCS,
        ms: shared ? INTERVAL : INTERVAL * PROCS, file: shared ? `${dir}/window-${windows.length}.json` : undefined,
      });
    }
  }
  const children = Array.from({ length: PROCS }, () => startChild('precision-child.ts', { windows }, windows.length * span + 60_000));
  await startAll(children, hrMs);
  const lines = (await Promise.all(children.map((c) => c.done))).flat().filter((l) => !l.ready);
  for (const w of windows) {
    const grants = lines.filter((l) => l.start === w.start).flatMap((l) => l.grants as number[]);
    results[`${PROCS} processes`][w.contender].push(score(grants));
  }
} finally {
  remove();
}

const rows: string[][] = [];
for (const [where, byName] of Object.entries(results)) {
  const oursMean = median(byName[ours.name].map((s) => s.mean));
  for (const n of Object.keys(byName)) {
    const s = byName[n];
    const m = median(s.map((x) => x.mean));
    rows.push([where, n, fmt(m, 2), fmt(m / oursMean, 2), fmt(median(s.map((x) => x.p99)), 2), fmt(median(s.map((x) => x.max)), 2),
      String(s.reduce((a, x) => a + x.early, 0)), fmt(Math.min(...s.map((x) => x.earliest)), 2), fmt(median(s.map((x) => x.elapsedError)), 2),
      where === '1 process' ? fmt(median(cpuPercent[n] ?? []), 2) : '-']);
  }
}
printTable(
  `4. Precision: ${CALLS} calls at 100/s, one after another; lateness against start + i x 10 ms, in ms; median of ${ROUNDS} rounds`,
  ['where', 'contender', 'mean late', 'x this file', 'p99 late', 'max late', `early (all ${ROUNDS})`, 'most early', 'elapsed - ideal', 'CPU % of a core'],
  rows,
  [
    'Grant times are taken right after the await returns, so every one is a little late even when its slot was exact.',
    `CPU: this process's user + system time over the ${CALLS} calls (every thread), per cent of one core; measured in one process only.`,
    `${FLOOR}: no limiter, a loop that sleeps on setTimeout(ceil(ms left)) to each ideal time: the least a timer-based wait costs here.`,
    `early: grants recorded before their ideal time, summed over the ${ROUNDS} rounds; most early: the lowest lateness seen (negative = early).`,
    `elapsed - ideal: time from the start to the last grant, minus the ideal ${((CALLS - 1) * INTERVAL) / 1000} s (negative = the run went too fast).`,
    `Across ${PROCS} processes this file shares one limit of 100/s through a state file; each peer runs in every process with 100/${PROCS} per second.`,
    ...peers.map((p) => `${p.name}: ${p.setting({ kind: 'even', ms: INTERVAL })}; across processes, per process: ${p.setting({ kind: 'even', ms: INTERVAL * PROCS })}`),
  ],
);
