// What a one-shot run of the command costs, under each runtime: from process
// start to the command it runs, beyond the runtime's own start-up. Each
// runtime starts five programs, in a new order every round, and the medians
// are compared:
//   empty    an empty .ts file: the runtime's own start-up
//   import   a .ts file that imports ratelimit.ts: + loading the library
//   wait     ratelimit.ts --file F --max-count 1000000 --per 1: + parsing the
//            arguments and one acquire() on an existing state file (the
//            first use of the shared clock and the lock in that process)
//   run      the same with `-- true`: + spawning the command and waiting
//            for it
//   true     `true` run on its own, for scale
// The limit never holds anyone back (a slot every microsecond), so nothing
// here is waiting time. The runtimes are those test:runtimes installs
// (test/runtimes/node_modules); missing ones are skipped and said so.
//
//   node --import tsx bench/cli.ts        (ROUNDS=15)
//   npm run bench:cli
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { ROOT, RUNTIMES, type Runtime } from '../test/runtimes/runtimes.ts';
import { fmt, median, printTable, shuffle, tempDir } from './lib.ts';

const ROUNDS = Number(process.env.ROUNDS ?? 15);

interface Way { name: string; bin: string; args: (file: string, ...rest: string[]) => string[] }
const ways: Way[] = RUNTIMES.filter((rt: Runtime) => existsSync(rt.bin)).map((rt) => ({ name: rt.name, bin: rt.bin, args: rt.script }));
const tsx = join(ROOT, 'node_modules', '.bin', 'tsx');
if (existsSync(tsx)) ways.splice(1, 0, { name: 'tsx (wrapper)', bin: tsx, args: (file, ...rest) => [file, ...rest] });
const skipped = RUNTIMES.filter((rt) => !existsSync(rt.bin)).map((rt) => rt.name);

const { dir, remove } = tempDir('cli');
try {
  // Beside ratelimit.ts, so that every runtime finds the same package.json
  // ("type": "module") and tsx the same cache for both files.
  const empty = join(ROOT, 'bench', 'cli-empty.ts');
  const importer = join(ROOT, 'bench', 'cli-import.ts');
  const script = join(ROOT, 'ratelimit.ts');
  const variants = ['empty', 'import', 'wait', 'run'] as const;
  const argsOf = (way: Way, variant: (typeof variants)[number]) => {
    const limit = ['--file', join(dir, `${way.name.replace(/\W+/g, '-')}.json`), '--max-count', '1000000', '--per', '1'];
    if (variant === 'empty') return way.args(empty);
    if (variant === 'import') return way.args(importer);
    return way.args(script, ...limit, ...(variant === 'run' ? ['--', 'true'] : []));
  };
  const time = (bin: string, args: string[]): number => {
    const t = performance.now();
    const r = spawnSync(bin, args, { cwd: ROOT, stdio: ['ignore', 'ignore', 'pipe'], encoding: 'utf8' });
    const ms = performance.now() - t;
    if (r.status !== 0) throw new Error(`${bin} ${args.join(' ')} exited ${r.status ?? r.signal}: ${r.stderr}`);
    return ms;
  };
  // One run of each first: it makes the state files and fills tsx's cache.
  for (const way of ways) for (const v of variants) time(way.bin, argsOf(way, v));
  const ms = new Map<string, number[]>();
  const trueMs: number[] = [];
  for (let round = 0; round < ROUNDS; round++) {
    const jobs = shuffle([...ways.flatMap((way) => variants.map((v) => ({ way, v }))), undefined]);
    for (const job of jobs) {
      if (!job) { trueMs.push(time('true', [])); continue; }
      const key = `${job.way.name} ${job.v}`;
      ms.set(key, [...(ms.get(key) ?? []), time(job.way.bin, argsOf(job.way, job.v))]);
    }
  }
  const m = (way: Way, v: string) => median(ms.get(`${way.name} ${v}`) ?? []);
  const rows = ways.map((way) => [
    way.name,
    fmt(m(way, 'empty')),
    fmt(m(way, 'import') - m(way, 'empty')),
    fmt(m(way, 'wait') - m(way, 'import')),
    fmt(m(way, 'run') - m(way, 'wait')),
    fmt(m(way, 'run') - m(way, 'empty')),
    fmt(m(way, 'run')),
  ]);
  printTable(`A one-shot run of the command, ms (medians of ${ROUNDS} rounds)`,
    ['runtime', 'start-up', '+ import', '+ args, acquire', '+ spawn `true`', 'command\'s own', 'total'], rows, [
      `\`true\` alone: ${fmt(median(trueMs))} ms. "command's own" is total minus start-up: everything ratelimit.ts adds.`,
      'Differences of medians, so a small one can come out a little negative on a busy machine.',
      ...(skipped.length ? [`not installed, so not measured: ${skipped.join(', ')} (npm run test:runtimes installs them)`] : []),
    ]);
} finally {
  remove();
}
