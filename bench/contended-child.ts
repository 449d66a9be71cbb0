// One of the processes of question 3 (contended). It opens every contender
// on the shared directory, then, in each time window the parent scheduled,
// takes slots from one contender as fast as it can and records how long each
// acquisition took. It prints one JSON line per window.
import { childReady, jobArg, send, waitUntilWall } from './lib.ts';
import { crossPeers, type Acquire } from './peers.ts';

interface Job { dir: string; windows: { contender: string; offset: number; ms: number }[] }
const job = jobArg<Job>();

const opened = new Map<string, Acquire>();
for (const peer of crossPeers) opened.set(peer.name, (await peer.open(job.dir, true)).acquire);

const start = await childReady();
for (const w of job.windows) {
  const acquire = opened.get(w.contender)!;
  await waitUntilWall(start + w.offset);
  const end = performance.now() + w.ms;
  const latencies: number[] = [];
  let failures = 0;
  for (;;) {
    const t0 = performance.now();
    if (t0 >= end) break;
    try {
      await acquire();
    } catch {
      failures++;
      continue;
    }
    const t1 = performance.now();
    if (t1 > end) break; // finished after the window closed: not counted
    latencies.push(Math.round((t1 - t0) * 1000) / 1000);
  }
  send({ contender: w.contender, offset: w.offset, latencies, failures });
}
process.exit(0);
