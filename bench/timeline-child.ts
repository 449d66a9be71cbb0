// A process of the timeline picture: from the common start it calls wait()
// on a shared limit again and again for `seconds`, and prints the time of
// each grant (process.hrtime ms after the start; one clock for all processes).
import { RateLimit } from '../ratelimit.ts';
import { childReady, jobArg, send } from './lib.ts';

interface Job { file: string; maxCount: number; per: number; greedy: boolean; seconds: number }
const job = jobArg<Job>();
const hrMs = () => Number(process.hrtime.bigint()) / 1e6;
const limit = new RateLimit({ maxCount: job.maxCount, per: job.per, greedy: job.greedy, file: job.file });
new RateLimit({ maxCount: 1, per: 1, file: `${job.file}.warm-${process.pid}` }).tryAcquire(); // one-time set-up off the clock

const start = await childReady();
await new Promise((r) => setTimeout(r, Math.max(0, start - hrMs() - 2)));
while (hrMs() < start) { /* spin the last moments */ }
const grants: number[] = [];
while (hrMs() - start < job.seconds * 1000) {
  await limit.wait();
  grants.push(hrMs() - start);
}
send({ pid: process.pid, grants: grants.filter((t) => t < job.seconds * 1000) });
process.exit(0);
