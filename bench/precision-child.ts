// One of the 4 processes of question 4 (precision). In each window the parent
// scheduled, it makes a fresh limiter of one contender and calls it `calls`
// times in a row, recording when each call was let through. Times are on
// process.hrtime (CLOCK_MONOTONIC on Linux, one clock for every process), in
// milliseconds after the window's start. One JSON line per window.
import { RateLimit } from '../ratelimit.ts';
import { childReady, jobArg, send } from './lib.ts';
import { inProcessPeers, ours, type Acquire } from './peers.ts';

// start: on hrMs(); in a child's job, milliseconds after the common start.
export interface Window { contender: string; start: number; calls: number; ms: number; file?: string }
interface Job { windows: Window[] }

export const hrMs = () => Number(process.hrtime.bigint()) / 1e6;

/** Sleeps until hrMs() reaches `at`, spinning the last 2 ms so processes start together. */
export async function untilHr(at: number): Promise<void> {
  const left = at - hrMs() - 2;
  if (left > 0) await new Promise((r) => setTimeout(r, left));
  while (hrMs() < at) { /* spin */ }
}

/** Makes the contender's limiter a little before `start`, then records `calls` grants from `start` on (and the CPU time they took, into `cpu`). */
export async function runWindow(w: Window, cpu?: { ms: number }): Promise<number[]> {
  await untilHr(w.start - 80);
  let acquire: Acquire;
  if (w.contender === ours.name && w.file) {
    // One call on a throwaway file first, so the work done once per process
    // (reading /proc for the clock and the owner record) is not in the run.
    new RateLimit({ maxCount: 1, per: 1, file: `${w.file}.warm` }).tryAcquire();
    const limit = new RateLimit({ maxCount: 1000 / w.ms, per: 1, file: w.file });
    acquire = () => limit.wait();
  } else {
    const peer = [ours, ...inProcessPeers].find((p) => p.name === w.contender)!;
    acquire = await peer.make({ kind: 'even', ms: w.ms });
  }
  // Made 80 ms ahead: a token bucket that starts empty (limiter) holds its first token by the start.
  await untilHr(w.start);
  const grants: number[] = [];
  const cpu0 = process.cpuUsage();
  for (let i = 0; i < w.calls; i++) {
    await acquire();
    grants.push(hrMs() - w.start);
  }
  const used = process.cpuUsage(cpu0);
  if (cpu) cpu.ms = (used.user + used.system) / 1000;
  return grants;
}

if (process.argv[1]?.endsWith('precision-child.ts')) {
  const job = jobArg<Job>();
  const start = await childReady();
  for (const w of job.windows) send({ contender: w.contender, start: w.start, grants: await runWindow({ ...w, start: start + w.start }) });
  process.exit(0);
}
