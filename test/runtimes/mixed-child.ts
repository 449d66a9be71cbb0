// One process of the mixed test (mixed.ts). Runs under any runtime: waits
// for the common start time, then takes `calls` slots from the shared file
// one after another, and prints what it saw as one JSON line at the end
// (printing nothing during the run, so output does not delay the grants).
//
// Argument: a JSON object { file, greedy, maxCount, per, calls, sync, startAtMs }.
// startAtMs is on the wall clock, which every process reads alike; the clock
// under test is not used to start, so a wrong one cannot hide.
//
// RATELIMIT_UNDER_TEST=/abs/path/to/a/copy.ts runs the test on a modified
// copy of the library instead (to try a change before making it).
type Lib = typeof import('../../ratelimit.ts');
const { RateLimit, sharedClock }: Lib = await import(process.env.RATELIMIT_UNDER_TEST ?? '../../ratelimit.ts');

interface Config { file: string; greedy: boolean; maxCount: number; per: number; calls: number; sync: boolean; startAtMs: number }
const config = JSON.parse(process.argv[2]) as Config;

const clock = sharedClock(); // calibrates now, not during the run
const limit = new RateLimit({ maxCount: config.maxCount, per: config.per, greedy: config.greedy, file: config.file });

await new Promise((resolve) => setTimeout(resolve, Math.max(0, config.startAtMs - Date.now())));

// For each grant, on two clocks: the shared clock (seconds) and Date.now()
// (ms), the one clock every process on the host reads alike.
// - t, wall: read right after the wait returned.
// - lo, wallLo: read before the call, plus the time the library says it held
//   the call back. The call was not let through before then, so the moment it
//   went lies in [lo, t] (and in [wallLo, wall + 1 ms], Date.now() being
//   rounded down to the ms).
const grants: { t: number; lo: number; wall: number; wallLo: number }[] = [];
for (let i = 0; i < config.calls; i++) {
  const wallBefore = Date.now();
  const before = clock.now();
  const waited = config.sync ? limit.waitSync() : await limit.wait();
  const t = clock.now();
  grants.push({ t, lo: before + waited, wall: Date.now(), wallLo: wallBefore + waited * 1000 });
}
const reading = clock.now();
const hrtimeIsBootClock = Math.abs(reading - Number(process.hrtime.bigint()) / 1e9) < 0.0001;
process.stdout.write(`${JSON.stringify({ tag: clock.tag, hrtimeIsBootClock, grants })}\n`);
