// What a one-shot run of the command costs, under each runtime: from process
// start to the command it runs, beyond the runtime's own start-up. Each
// runtime starts five programs, in a new order every round, and the medians
// are compared:
//   empty    an empty .ts file: the runtime's own start-up
//   import   a .ts file that imports ratelimit.ts: + loading the library
//   wait     ratelimit-cli.mts --file F --max-count 1000000 --per 1: + loading
//            the command, parsing the arguments and one acquire() on an
//            existing state file (the first use of the shared clock and the
//            lock in that process)
//   run      the same with `-- true`: + spawning the command and waiting
//            for it
//   true     `true` run on its own, for scale
// The limit never holds anyone back (a slot every microsecond), so nothing
// here is waiting time. The runtimes are those test:runtimes installs
// (test/runtimes/node_modules); missing ones are skipped and said so. Node 22
// and 24 also run with NODE_COMPILE_CACHE set (to a directory of this run),
// where Node 24 keeps the type-stripped file between runs. `npx tsx` (tsx
// installed in the project, as the command's --help advises for Node 20)
// shows what npx adds to each run.
// Two tables: medians, and minimums (less moved by other work on the machine:
// the noise a busy machine adds only ever makes a run slower).
//
//   node --import tsx bench/cli.ts        (ROUNDS=15)
//   npm run bench:cli
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { ROOT, RUNTIMES, type Runtime } from '../test/runtimes/runtimes.ts';
import { fmt, median, printTable, shuffle, tempDir } from './lib.ts';
import { loadavg } from 'node:os';

const ROUNDS = Number(process.env.ROUNDS ?? 15);

interface Way { name: string; bin: string; args: (file: string, ...rest: string[]) => string[]; env?: Record<string, string> }
const skipped = RUNTIMES.filter((rt) => !existsSync(rt.bin)).map((rt) => rt.name);

const { dir, remove } = tempDir('cli');
const ways: Way[] = [];
for (const rt of RUNTIMES.filter((r: Runtime) => existsSync(r.bin))) {
  ways.push({ name: rt.name, bin: rt.bin, args: rt.script });
  if (rt.name === 'node20+tsx' && existsSync(join(ROOT, 'node_modules', '.bin', 'tsx'))) {
    ways.push({ name: 'tsx (wrapper)', bin: join(ROOT, 'node_modules', '.bin', 'tsx'), args: (file, ...rest) => [file, ...rest] });
    ways.push({ name: 'npx tsx', bin: 'npx', args: (file, ...rest) => ['tsx', file, ...rest] });
  }
  if (rt.name === 'node22' || rt.name === 'node24') {
    ways.push({ name: `${rt.name}, cache`, bin: rt.bin, args: rt.script, env: { NODE_COMPILE_CACHE: join(dir, `cache-${rt.name}`) } });
  }
}
try {
  // Beside ratelimit.ts, so that every runtime finds the same package.json
  // ("type": "module") and tsx the same cache for both files.
  const empty = join(ROOT, 'bench', 'cli-empty.ts');
  const importer = join(ROOT, 'bench', 'cli-import.ts');
  const script = join(ROOT, 'ratelimit-cli.mts');
  const variants = ['empty', 'import', 'wait', 'run'] as const;
  const argsOf = (way: Way, variant: (typeof variants)[number]) => {
    const limit = ['--file', join(dir, `${way.name.replace(/\W+/g, '-')}.json`), '--max-count', '1000000', '--per', '1'];
    if (variant === 'empty') return way.args(empty);
    if (variant === 'import') return way.args(importer);
    return way.args(script, ...limit, ...(variant === 'run' ? ['--', 'true'] : []));
  };
  const time = (bin: string, args: string[], env?: Record<string, string>): number => {
    const t = performance.now();
    const r = spawnSync(bin, args, { cwd: ROOT, stdio: ['ignore', 'ignore', 'pipe'], encoding: 'utf8', env: { ...process.env, ...env } });
    const ms = performance.now() - t;
    if (r.status !== 0) throw new Error(`${bin} ${args.join(' ')} exited ${r.status ?? r.signal}: ${r.stderr}`);
    return ms;
  };
  // One run of each first: it makes the state files and fills tsx's cache.
  const load = loadavg()[0]!;
  for (const way of ways) for (const v of variants) time(way.bin, argsOf(way, v), way.env);
  const ms = new Map<string, number[]>();
  const trueMs: number[] = [];
  for (let round = 0; round < ROUNDS; round++) {
    const jobs = shuffle([...ways.flatMap((way) => variants.map((v) => ({ way, v }))), undefined]);
    for (const job of jobs) {
      if (!job) { trueMs.push(time('true', [])); continue; }
      const key = `${job.way.name} ${job.v}`;
      ms.set(key, [...(ms.get(key) ?? []), time(job.way.bin, argsOf(job.way, job.v), job.way.env)]);
    }
  }
  const table = (title: string, stat: (xs: number[]) => number) => {
    const m = (way: Way, v: string) => stat(ms.get(`${way.name} ${v}`) ?? []);
    const rows = ways.map((way) => [
      way.name,
      fmt(m(way, 'empty')),
      fmt(m(way, 'import') - m(way, 'empty')),
      fmt(m(way, 'wait') - m(way, 'import')),
      fmt(m(way, 'run') - m(way, 'wait')),
      fmt(m(way, 'run') - m(way, 'empty')),
      fmt(m(way, 'run')),
    ]);
    printTable(title, ['runtime', 'start-up', '+ import', '+ args, acquire', '+ spawn `true`', 'command\'s own', 'total'], rows);
  };
  table(`A one-shot run of the command, ms: medians of ${ROUNDS} rounds`, median);
  table(`The same, minimums of ${ROUNDS} rounds`, (xs) => Math.min(...xs));
  console.log([
    `  \`true\` alone: ${fmt(median(trueMs))} ms (median). "command's own" is total minus start-up: everything the command adds.`,
    '  Differences of medians, so a small one can come out a little negative on a busy machine.',
    `  Load average (1 min): ${load.toFixed(2)} at the start, ${loadavg()[0]!.toFixed(2)} at the end.`,
    ...(skipped.length ? [`  not installed, so not measured: ${skipped.join(', ')} (npm run test:runtimes installs them)`] : []),
  ].join('\n'));
} finally {
  remove();
}
