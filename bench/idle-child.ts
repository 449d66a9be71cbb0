// A process of question 5 (idle cost). In each round, from the round's
// common start, it waits for slots of a shared 1-per-second limit, over and
// over, for `seconds`; then it reports the CPU time it used meanwhile
// (process.cpuUsage: user + system, every thread of the process).
import { join } from 'node:path';
import { RateLimit } from '../ratelimit.ts';
import { childReady, jobArg, send, waitUntilWall } from './lib.ts';

interface Job { mode: 'wait' | 'waitSync' | 'sleep'; dir: string; seconds: number; rounds: number; periodMs: number }
const job = jobArg<Job>();
// One call on a throwaway file before the start, so the work done once per
// process (loading and compiling the file-mode code, reading /proc for the
// clock and the owner record) is not counted as waiting.
if (job.mode !== 'sleep') new RateLimit({ maxCount: 1, per: 1, file: join(job.dir, `warm-${process.pid}.json`) }).tryAcquire();
const start = await childReady();

for (let round = 0; round < job.rounds; round++) {
  // Each round on a state file of its own, so no reservation carries over.
  const limit = new RateLimit({ maxCount: 1, per: 1, file: join(job.dir, `${job.mode}-${round}.json`) });
  await waitUntilWall(start + round * job.periodMs);
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  const end = t0 + job.seconds * 1000;
  let grants = 0;
  if (job.mode === 'sleep') {
    await new Promise((r) => setTimeout(r, job.seconds * 1000)); // the reference: an idle process
  } else if (job.mode === 'waitSync') {
    while (performance.now() < end) { limit.waitSync(); grants++; }
  } else {
    // Stop at `seconds` even while a wait is pending: the CPU over exactly that span is what counts.
    const stop = new AbortController();
    await new Promise<void>((resolve) => {
      setTimeout(resolve, job.seconds * 1000);
      (async () => {
        try { for (;;) { await limit.wait({ signal: stop.signal }); grants++; } } catch { /* aborted at the end */ }
      })();
    });
    stop.abort();
  }
  const cpu = process.cpuUsage(cpu0);
  send({ mode: job.mode, round, cpuMs: (cpu.user + cpu.system) / 1000, wallMs: performance.now() - t0, grants });
}
process.exit(0);
