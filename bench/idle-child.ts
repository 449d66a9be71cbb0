// A process of question 5 (idle cost). From the common start it waits for
// slots of a shared 1-per-second limit, over and over, for `seconds`; then it
// reports the CPU time it used meanwhile (process.cpuUsage: user + system,
// every thread of the process).
import { RateLimit } from '../ratelimit.ts';
import { childReady, jobArg, send, waitUntilWall } from './lib.ts';

interface Job { mode: 'wait' | 'waitSync' | 'sleep'; file: string; seconds: number }
const job = jobArg<Job>();
const limit = new RateLimit({ maxCount: 1, per: 1, file: job.file });
// One call on a throwaway file before the start, so the work done once per
// process (loading and compiling the file-mode code, reading /proc for the
// clock and the owner record) is not counted as waiting.
if (job.mode !== 'sleep') new RateLimit({ maxCount: 1, per: 1, file: `${job.file}.warm-${process.pid}` }).tryAcquire();
await waitUntilWall(await childReady());
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
  await new Promise<void>((resolve) => {
    setTimeout(resolve, job.seconds * 1000);
    (async () => { for (;;) { await limit.wait(); grants++; } })();
  });
}
const cpu = process.cpuUsage(cpu0);
send({ mode: job.mode, cpuMs: (cpu.user + cpu.system) / 1000, wallMs: performance.now() - t0, grants });
process.exit(0);
