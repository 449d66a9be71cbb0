// Runs under any runtime. Prints which clock sharedClock() chose, then
// answers each line on stdin with a reading of it, so that the parent can
// compare it with its own clock (see clock.ts).
import { createInterface } from 'node:readline';

// RATELIMIT_UNDER_TEST=/abs/path/to/a/copy.ts checks a modified copy instead.
type Lib = typeof import('../../ratelimit.ts');
const { sharedClock }: Lib = await import(process.env.RATELIMIT_UNDER_TEST ?? '../../ratelimit.ts');

const calibrationStart = performance.now();
const clock = sharedClock();
const calibrationMs = performance.now() - calibrationStart;
const reading = clock.now();
const hr = Number(process.hrtime.bigint()) / 1e9;
// Built before process.stdout is first touched: creating it can take a
// millisecond or more, which would spoil the comparison just above.
const hello = JSON.stringify({
  tag: clock.tag,
  // True when sharedClock() is process.hrtime itself (Node), false when it is
  // a calibrated performance.now() (Bun, Deno).
  hrtimeIsBootClock: Math.abs(reading - hr) < 0.0001,
  // process.hrtime.bigint() in seconds, and the process's own age: equal
  // when hrtime counts from the process's start rather than from boot.
  hrtime: hr,
  processUptime: process.uptime(),
  calibrationMs,
});
process.stdout.write(`${hello}\n`);
createInterface({ input: process.stdin }).on('line', () => {
  process.stdout.write(`${clock.now()}\n`);
});
