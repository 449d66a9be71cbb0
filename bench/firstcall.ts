// What the FIRST call costs in a fresh process, under each runtime, against
// the goals: the first wait() in a fresh Node process within 1 ms, under Bun
// or Deno within 5 ms. Every figure comes from a fresh process of its own
// (bench/firstcall-child.ts, started here ROUNDS times per runtime and kind,
// all jobs in a new order every round), timed inside it with process.hrtime()
// from a first reading at its top:
//   import            await import('../ratelimit.ts'): loading, type
//                     stripping or transforming, and evaluating the module
//   memory            new RateLimit({ maxCount: 1000, per: 1 }) + the first
//                     await wait(), then a second wait()
//   file, new         the same with { file } on a state file that does not
//                     exist yet (a fresh temp directory per process)
//   file, existing    the same on a state file an earlier process wrote
//   split             on the existing file, the once-per-process parts one
//                     after another: identity() (the first /proc reads),
//                     sharedClock() (/proc/uptime and, where hrtime is not the
//                     boot clock, the calibration against it), the first
//                     randomBytes(), then new RateLimit + first wait() with
//                     those done; then a second limiter on a new state file
//                     in a new directory: the same file work, code warm
//   perfnow           the first performance.now() of the process, timed with
//                     process.hrtime (which the other children cannot see:
//                     their own first reading pays it before anything else)
// Runtimes: Node 20 with tsx, Node 22 and 24 stripping types themselves, Bun
// and Deno, from test/runtimes/node_modules (npm ci --prefix test/runtimes);
// a missing one is skipped and said so. One warm-up run of each first fills
// the runtimes' transpile caches (tsx, Bun, Deno) and writes the existing
// state files; it is not counted.
//
//   node --import tsx bench/firstcall.ts        (ROUNDS=15; 70 to 90 s on 2 cores, by load)
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync } from 'node:fs';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import { ROOT, RUNTIMES, type Runtime } from '../test/runtimes/runtimes.ts';
import { fmt, median, printTable, quantile, shuffle, tempDir } from './lib.ts';

const ROUNDS = Number(process.env.ROUNDS ?? 15);
const CHILD = join(ROOT, 'bench', 'firstcall-child.ts');
const KINDS = ['perfnow', 'memory', 'file-new', 'file-existing', 'split'] as const;
type Kind = (typeof KINDS)[number];
type Result = Record<string, number>;

const skipped = RUNTIMES.filter((rt) => !existsSync(rt.bin));
for (const rt of skipped) console.log(`${rt.name}: not installed (${rt.bin} is missing), so not measured; npm ci --prefix test/runtimes installs it`);
const runtimes = RUNTIMES.filter((rt) => existsSync(rt.bin));

// Node 22 before 22.18 strips types only when asked.
const extraFlags = (rt: Runtime): string[] => {
  if (rt.name !== 'node22') return [];
  const v = spawnSync(rt.bin, ['--version'], { encoding: 'utf8' }).stdout.trim();
  const [, minor] = /^v22\.(\d+)/.exec(v) ?? [];
  return minor !== undefined && Number(minor) < 18 ? ['--experimental-strip-types'] : [];
};
const flags = new Map(runtimes.map((rt) => [rt.name, extraFlags(rt)]));
const versions = new Map(runtimes.map((rt) => [rt.name, spawnSync(rt.bin, ['--version'], { encoding: 'utf8' }).stdout.trim().split('\n')[0]]));

const { dir, remove } = tempDir('firstcall');
const slug = (name: string) => name.replace(/\W+/g, '-');
let fresh = 0;
// A state file not made yet, in a directory of its own.
const freshFile = (rt: Runtime): string => {
  const d = join(dir, `new-${slug(rt.name)}-${fresh++}`);
  mkdirSync(d);
  return join(d, 'state.json');
};
const run = (rt: Runtime, kind: Kind): Result => {
  let args: string[];
  if (kind === 'perfnow' || kind === 'memory') {
    args = [kind];
  } else if (kind === 'file-new') {
    args = ['file', freshFile(rt)];
  } else {
    args = [kind === 'split' ? 'split' : 'file', join(dir, `existing-${slug(rt.name)}`, 'state.json')];
    if (kind === 'split') args.push(freshFile(rt));
  }
  const argv = [...(flags.get(rt.name) ?? []), ...rt.script(CHILD, ...args)];
  const r = spawnSync(rt.bin, argv, { cwd: ROOT, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 30_000 });
  const line = r.stdout?.trim().split('\n').pop() ?? '';
  if (r.status !== 0 || !line.startsWith('{')) throw new Error(`${rt.name} ${args.join(' ')} exited ${r.status ?? r.signal}: ${r.stderr}${r.stdout}`);
  return JSON.parse(line) as Result;
};

try {
  const started = performance.now();
  const load = loadavg()[0]!;
  for (const rt of runtimes) {
    mkdirSync(join(dir, `existing-${slug(rt.name)}`));
    for (const kind of KINDS) run(rt, kind); // warm-up; file-existing writes the existing file
  }
  const results = new Map<string, Result[]>();
  for (let round = 0; round < ROUNDS; round++) {
    for (const { rt, kind } of shuffle(runtimes.flatMap((rt) => KINDS.map((kind) => ({ rt, kind }))))) {
      const key = `${rt.name} ${kind}`;
      results.set(key, [...(results.get(key) ?? []), run(rt, kind)]);
    }
  }

  // A row: one field of some kinds' results (pooled when several kinds are named).
  const goalMs = (rt: Runtime) => (rt.name.startsWith('node') ? 1 : 5);
  let heldBack = 0;
  const rows: string[][] = [];
  for (const rt of runtimes) {
    const get = (kinds: Kind[], field: string) => kinds.flatMap((k) => (results.get(`${rt.name} ${k}`) ?? []).map((r) => r[field]!)).filter(Number.isFinite);
    for (const k of ['memory', 'file-new', 'file-existing', 'split'] as Kind[]) {
      for (const r of results.get(`${rt.name} ${k}`) ?? []) if (r.firstHeld! > 0 || r.secondHeld! > 0 || r.otherHeld! > 0) heldBack++;
    }
    const row = (what: string, kinds: Kind[], field: string, digits = 2, goal = false) => {
      const ms = get(kinds, field);
      const cpu = get(kinds, `${field}Cpu`);
      const m = median(ms);
      rows.push([rt.name, what, fmt(m, digits), fmt(quantile(ms, 0.9), digits), cpu.length ? fmt(median(cpu), digits) : '', String(ms.length),
        goal ? `${m <= goalMs(rt) ? 'yes' : 'NO'} (<= ${goalMs(rt)})` : '']);
    };
    const all: Kind[] = ['memory', 'file-new', 'file-existing', 'split'];
    row('start-up to first reading', all, 'top', 1);
    row('first performance.now()', ['perfnow'], 'perfNowMs', 3);
    row('import ratelimit.ts', all, 'import', 1);
    row('memory: new + first wait()', ['memory'], 'firstCall', 2, true);
    row('memory: second wait()', ['memory'], 'second', 3);
    row('file, new: new + first wait()', ['file-new'], 'firstCall', 2, true);
    row('file, existing: new + first wait()', ['file-existing'], 'firstCall', 2, true);
    row('file: second wait()', ['file-new', 'file-existing'], 'second', 3);
    row('split: identity()', ['split'], 'identity', 2);
    row('split: then sharedClock()', ['split'], 'clock', 2);
    row('split: then randomBytes(8)', ['split'], 'random', 3);
    row('split: then new + first wait()', ['split'], 'firstCall', 2);
    row('split: then 2nd limiter, new file+dir', ['split'], 'other', 3);
  }
  printTable(
    `The first call in a fresh process: ms, median and p90 of ${ROUNDS} processes per row (pooled rows more), each measurement in a fresh process`,
    ['runtime', 'measurement', 'median', 'p90', 'CPU median', 'n', 'goal met'],
    rows,
    [
      `runtimes: ${runtimes.map((rt) => `${rt.name} = ${versions.get(rt.name)}`).join(', ')}.`,
      'Times are wall-clock ms by process.hrtime() inside the child (never performance.now(), whose first call costs about 1 ms on Node), counted from its first reading at the top of the child',
      '  The "first performance.now()" row, timed in a child of its own, is what a program pays on its first use of performance; ratelimit.ts uses process.hrtime on Node.',
      '"start-up to first reading": process.uptime() at that first reading, i.e. the runtime\'s start-up (and tsx\'s) before the child runs.',
      '"import": pooled over the four kinds that import ratelimit.ts, always the first thing after the first reading.',
      '"new + first wait()": the constructor plus the first awaited wait(); a limit of 1000 per second never holds it back.',
      '"second wait()": after a 3 ms pause (slots are spread 1 ms apart), so it is never held back either: a call once the once-per-process',
      '  work is done, with the code still barely run (bench/filemode.ts gives the warm cost of a file-mode call).',
      '"split" rows run one after another in one process on the existing file: each is what that part costs when it comes first;',
      '  identity() + sharedClock() together are what the first sharedClock() costs; "then new + first wait()" is the rest of the first file-mode call,',
      '  and "2nd limiter" the same file work again (new owner file, directory sweep, lock, new state file) with the code warm.',
      'CPU: process.cpuUsage() over the same span, user + system, every thread of the process (so it can exceed the wall time).',
      '"goal met": the median of the first call against 1 ms (Node) or 5 ms (Bun, Deno); the import is not counted there.',
      `${heldBack ? `${heldBack} call(s) were held back for a slot (wait() returned more than 0): their rows include waiting.` : 'No call was held back for a slot (every wait() returned 0).'}`,
      `Load average (1 min): ${load.toFixed(2)} at the start, ${loadavg()[0]!.toFixed(2)} at the end; ${((performance.now() - started) / 1000).toFixed(0)} s in all.`,
      ...skipped.map((rt) => `${rt.name}: not installed, so not measured.`),
    ],
  );
} finally {
  remove();
}
