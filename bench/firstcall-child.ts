// One fresh process of the first-call question (bench/firstcall.ts): it
// measures one thing that runs once per process and prints one JSON line.
// It runs under every runtime (Node with tsx, Node 22/24, Bun, Deno), so it
// imports nothing but node:process before its first reading: ratelimit.ts
// (and with it node:fs, node:crypto, ...) is loaded by the timed import.
//
//   <runtime> bench/firstcall-child.ts <kind> [state file] [second state file]
//   kinds: perfnow    the first performance.now(), timed with process.hrtime
//          memory     import; new RateLimit + first wait(); second wait()
//          file       import; the same with { file } (new or existing file)
//          split      import; identity() (through holderIsDead, its first
//                     line); sharedClock(); the first randomBytes() (the
//                     owner file's token); new RateLimit + first wait() on
//                     the file with those ready; second wait(); then a new
//                     RateLimit + wait() on a second, new state file
// Times are ms by process.hrtime(), which costs nothing to start (the
// first performance.now() costs about 1 ms on Node, and would hide that cost
// where ratelimit.ts pays it); `top` is process.uptime() at the first
// reading, ms since the process started. CPU is process.cpuUsage()
// (user + system, ms, every thread), itself called once before the first
// step. firstHeld and secondHeld are what wait() returned: the seconds it
// was held back for its slot, 0 when nothing here is waiting time.
import process from 'node:process';

const kind = process.argv[2] ?? '';
const file = process.argv[3];

if (kind === 'perfnow') {
  // hrtime called twice first, so its own first-call cost is not counted.
  const h = () => process.hrtime.bigint();
  h(); h();
  const a = h();
  performance.now();
  const b = h();
  const c = h();
  report({ perfNowMs: Number(b - a) / 1e6, hrtimeMs: Number(c - b) / 1e6 });
} else {
  const hr = () => { const [s, ns] = process.hrtime(); return s * 1e3 + ns / 1e6; };
  hr();
  const top = process.uptime() * 1000; // the first reading: every figure below starts here
  const cpu = () => { try { const u = process.cpuUsage(); return (u.user + u.system) / 1000; } catch { return NaN; } };
  cpu();
  const out: Record<string, number> = { top };
  // Times `f` (awaited when it returns a promise) into out[name] and out[`${name}Cpu`].
  const step = async <T>(name: string, f: () => T | Promise<T>): Promise<T> => {
    const c0 = cpu();
    const t0 = hr();
    const v = await f();
    out[name] = hr() - t0;
    out[`${name}Cpu`] = cpu() - c0;
    return v;
  };
  const lib = await step('import', () => import('../ratelimit.ts'));
  if (kind === 'split') {
    // holderIsDead() starts with identity(); a record on another boot is judged at once (not dead).
    await step('identity', () => lib.holderIsDead({ pid: 1, tid: 0, host: '', ns: '', boot: 'another boot', start: '', tstart: '' }));
    await step('clock', () => lib.sharedClock().now());
    // The first randomBytes() (the owner file's token): node:crypto is loaded already, by the import.
    const { randomBytes } = await import('node:crypto');
    await step('random', () => randomBytes(8));
  } else if (kind !== 'memory' && kind !== 'file') {
    throw new Error(`unknown kind ${kind}`);
  }
  const limit = await step('construct', () => new lib.RateLimit({ maxCount: 1000, per: 1, ...(kind === 'memory' ? {} : { file }) }));
  const c0 = cpu();
  const t0 = hr();
  out.firstHeld = await limit.wait();
  out.first = hr() - t0;
  out.firstCpu = cpu() - c0;
  out.firstCall = out.construct + out.first;
  out.firstCallCpu = out.constructCpu + out.firstCpu;
  // Slots are 1 ms apart (maxCount 1000 per 1 s, spread evenly): let the next
  // one come, so that the second call is never held back and shows the cost alone.
  await new Promise((r) => setTimeout(r, 3));
  out.secondHeld = await step('second', () => limit.wait());
  if (kind === 'split' && process.argv[4]) {
    // A second limiter on a new state file in a new directory: the same file
    // work (owner file, sweep, lock, state) with the code warm.
    out.otherHeld = await step('other', () => new lib.RateLimit({ maxCount: 1000, per: 1, file: process.argv[4] }).wait());
  }
  report(out);
}

function report(msg: unknown): void {
  process.stdout.write(`${JSON.stringify(msg)}\n`);
}
