// Question 5: idle cost. 4 processes share a limit of 1 call per second and
// wait for slots for 5 seconds; how much CPU do they burn meanwhile? A
// limiter that polls the lock or the state burns it; one that reserves a slot
// and sleeps until it should burn next to none. The reference is the same
// number of node processes that only sleep for those 5 seconds.
//
//   node --import tsx bench/idle.ts           (ROUNDS=3 SECONDS=5)
import { fmt, median, printTable, startAll, startChild, tempDir } from './lib.ts';

const ROUNDS = Number(process.env.ROUNDS ?? 3);
const SECONDS = Number(process.env.SECONDS ?? 5);
const PROCS = 4;
const modes = ['sleep', 'wait', 'waitSync'] as const;
const cpu: Record<string, number[]> = { sleep: [], wait: [], waitSync: [] };
const wall: Record<string, number[]> = { sleep: [], wait: [], waitSync: [] };
const grants: Record<string, number[]> = { sleep: [], wait: [], waitSync: [] };

// Every child runs all rounds, one every PERIOD_MS, so start-up is paid once.
// The three groups run at the same time, each on its own state files: they
// are idle, so they hardly disturb one another. A waitSync() process may run
// past SECONDS to its last slot (up to 4 s later with 4 processes at 1/s).
const PERIOD_MS = SECONDS * 1000 + 4500;
const { dir, remove } = tempDir('idle');
try {
  // --no-memory-reducer: an idle node process otherwise spends about 100 ms
  // of CPU some seconds after start-up shrinking its heap, limiter or not,
  // and that lands in a random round of a random group.
  const children = modes.flatMap((mode) => Array.from({ length: PROCS }, () =>
    startChild('idle-child.ts', { mode, dir, seconds: SECONDS, rounds: ROUNDS, periodMs: PERIOD_MS }, ROUNDS * PERIOD_MS + 60_000, ['--no-memory-reducer'])));
  await startAll(children);
  const lines = (await Promise.all(children.map((c) => c.done))).flat().filter((l) => !l.ready);
  for (let round = 0; round < ROUNDS; round++) {
    for (const mode of modes) {
      const mine = lines.filter((l) => l.mode === mode && l.round === round);
      cpu[mode].push(mine.reduce((a, l) => a + l.cpuMs, 0));
      wall[mode].push(Math.max(...mine.map((l) => l.wallMs)));
      grants[mode].push(mine.reduce((a, l) => a + l.grants, 0));
    }
  }
} finally {
  remove();
}

const label: Record<string, string> = {
  sleep: `reference: setTimeout for ${SECONDS} s, no limiter`,
  wait: 'ratelimit await wait() (file, 1/s)',
  waitSync: 'ratelimit waitSync() (file, 1/s)',
};
printTable(
  `5. Idle cost: CPU time of ${PROCS} processes waiting for ${SECONDS} s on a shared 1-per-second limit, median of ${ROUNDS} rounds`,
  ['what', `CPU ms, ${PROCS} processes`, 'CPU % of one core', 'x reference', 'grants', 'longest process s'],
  modes.map((m) => [label[m], fmt(median(cpu[m]), 1), fmt((median(cpu[m]) / (median(wall[m]))) * 100, 3), fmt(median(cpu[m]) / median(cpu.sleep), 2),
    String(median(grants[m])), fmt(median(wall[m]) / 1000, 2)]),
  [
    'CPU from process.cpuUsage() (user + system, all threads) between the common start and the end, summed over the processes.',
    `CPU ms in each round: ${modes.map((m) => `${m} ${cpu[m].map((c) => fmt(c, 1)).join(' / ')}`).join('; ')}.`,
    'The processes run with node --no-memory-reducer: otherwise V8 spends about 100 ms of CPU shrinking the heap of any idle',
    'process some seconds after start-up, with or without a limiter, and that lands in a random round of a random group.',
    'Start-up is not counted: before the start, each limiter process made one call on a throwaway file (loading the file-mode',
    'code and reading /proc once); that first call costs a few ms of CPU once per process.',
    `waitSync() returns only at a slot, so its processes run until the first slot after ${SECONDS} s.`,
  ],
);
