// Do the runtimes agree on sharedClock()? This process (Node, where
// sharedClock() is process.hrtime, the kernel's CLOCK_MONOTONIC) starts
// children of every runtime and pings each one many times: it reads its own
// clock, asks the child for a reading, and reads its clock again when the
// answer arrives. The child's reading was taken somewhere in between, so
//   offset = child - (sent + received) / 2,   error at most (received - sent) / 2.
// The offset of a child is the median over its fastest pings (the tenth with
// the shortest round trip), where that error bound is smallest.
//
// Run: node --import tsx test/runtimes/clock.ts [runtime ...]
// Exits non-zero if a child uses another clock (tag) or is further than
// LIMIT_US from this process's clock.

import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { join } from 'node:path';
import { sharedClock } from '../../ratelimit.ts';
import { HERE, ROOT, RUNTIMES, type Runtime } from './runtimes.ts';

// How far a child's clock may be from ours. Bun and Deno line their clock up
// with the moment /proc/uptime ticks over, found by polling it; done well the
// error is half of one poll, tens of µs. 2 ms is a calibration gone wrong, and
// it matters: a process whose clock is d ahead lets its calls go d early
// (4% of a 50 ms slot).
const LIMIT_US = 2000;
const PROCESSES = 3; // per runtime: each process calibrates on its own
const PINGS = 100;

interface Result { runtime: string; offsetsUs: number[]; bestRttUs: number[]; tags: string[]; hrtimeIsBootClock: boolean[]; hrtimeFromStart: boolean[]; calibrationMs: number[] }

const hr = () => Number(process.hrtime.bigint()) / 1e9;

export async function checkClocks(runtimes: Runtime[]): Promise<{ ok: boolean; results: Result[]; problems: string[] }> {
  const mine = sharedClock();
  const problems: string[] = [];
  if (Math.abs(mine.now() - hr()) > 0.001) problems.push('this Node process does not use process.hrtime as its shared clock');
  // All children start at once, as processes sharing a limit often do: they
  // calibrate while competing for the CPU. Then they are pinged one by one.
  const children = runtimes.flatMap((rt) => Array.from({ length: PROCESSES }, () => ({
    rt, child: spawn(rt.bin, rt.script(join(HERE, 'clock-child.ts')), { cwd: ROOT, stdio: ['pipe', 'pipe', 'inherit'] }),
  })));
  const results: Result[] = runtimes.map((rt) => ({ runtime: rt.name, offsetsUs: [], bestRttUs: [], tags: [], hrtimeIsBootClock: [], hrtimeFromStart: [], calibrationMs: [] }));
  try {
    const lines = children.map(({ child }) => createInterface({ input: child.stdout! })[Symbol.asyncIterator]());
    const hellos = await Promise.all(lines.map((l) => nextLine(l)));
    for (let i = 0; i < children.length; i++) {
      const { rt, child } = children[i];
      const r = results[runtimes.indexOf(rt)];
      const hello = JSON.parse(hellos[i]);
      const m = await measure(child, lines[i]);
      r.offsetsUs.push(m.offsetUs);
      r.bestRttUs.push(m.rttUs);
      r.tags.push(hello.tag);
      r.hrtimeIsBootClock.push(hello.hrtimeIsBootClock);
      r.hrtimeFromStart.push(Math.abs(hello.hrtime - hello.processUptime) < 0.5);
      r.calibrationMs.push(hello.calibrationMs);
    }
  } finally {
    for (const { child } of children) child.kill('SIGKILL');
  }
  for (const r of results) {
    for (const tag of r.tags) if (tag !== mine.tag) problems.push(`${r.runtime}: clock tag ${tag}, this process has ${mine.tag}`);
    const worst = Math.max(...r.offsetsUs.map(Math.abs));
    if (worst > LIMIT_US) problems.push(`${r.runtime}: a process's shared clock is ${worst.toFixed(0)} µs from Node's (limit ${LIMIT_US} µs)`);
  }
  return { ok: problems.length === 0, results, problems };
}

type Lines = AsyncIterator<string>;

async function nextLine(lines: Lines): Promise<string> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => { timer = setTimeout(() => reject(new Error('a clock child did not answer within 30 s')), 30_000); });
  try {
    const r = await Promise.race([lines.next(), timeout]);
    if (r.done) throw new Error('a clock child exited early');
    return r.value;
  } finally {
    clearTimeout(timer);
  }
}

async function measure(child: ChildProcess, lines: Lines): Promise<{ offsetUs: number; rttUs: number }> {
  const pings: { offset: number; rtt: number }[] = [];
  for (let i = 0; i < PINGS; i++) {
    const sent = hr();
    child.stdin!.write('\n');
    const theirs = Number(await nextLine(lines));
    const received = hr();
    pings.push({ offset: theirs - (sent + received) / 2, rtt: received - sent });
  }
  child.stdin!.end();
  pings.sort((a, b) => a.rtt - b.rtt);
  const best = pings.slice(0, Math.max(1, Math.floor(PINGS / 10)));
  return { offsetUs: median(best.map((p) => p.offset)) * 1e6, rttUs: best[0].rtt * 1e6 };
}

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

export function describeClocks(results: Result[]): string[] {
  return results.map((r) => {
    const abs = r.offsetsUs.map(Math.abs);
    return `${r.runtime.padEnd(11)} offset from Node's hrtime: median ${median(abs).toFixed(0)} µs, max ${Math.max(...abs).toFixed(0)} µs ` +
      `(each process: ${r.offsetsUs.map((o) => o.toFixed(0)).join(', ')} µs; best round trip ${Math.min(...r.bestRttUs).toFixed(0)} µs); ` +
      `sharedClock = ${r.hrtimeIsBootClock.every(Boolean) ? 'process.hrtime' : r.hrtimeIsBootClock.some(Boolean) ? 'mixed!' : 'performance.now() + /proc/uptime offset'}` +
      `; hrtime counts from ${r.hrtimeFromStart.every(Boolean) ? 'process start' : r.hrtimeFromStart.some(Boolean) ? 'mixed' : 'boot'}` +
      `; calibration took ${median(r.calibrationMs).toFixed(1)} ms (median)`;
  });
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const names = process.argv.slice(2);
  const chosen = names.length ? RUNTIMES.filter((r) => names.includes(r.name)) : RUNTIMES;
  const { ok, results, problems } = await checkClocks(chosen);
  for (const line of describeClocks(results)) console.log(line);
  for (const p of problems) console.log(`PROBLEM: ${p}`);
  process.exitCode = ok ? 0 : 1;
}
