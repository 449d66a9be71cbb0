// Question 8: did several limits cost the one-limit path anything, and what
// does a call under three limits cost?
//
// (i) The one-limit wait() of this file against the version before several
//     limits existed (commit 484f430, 0.1.0), in memory and in file mode. The
//     baseline is taken from git at bench time (`git show 484f430:ratelimit.ts`
//     into a temporary file), so both are measured in the same run. Without
//     git history that part is skipped, and says so.
// (ii) This file's wait() under three limits, shaped like the OpenAI recipe
//     (requests per minute and tokens per minute, patient; requests per day,
//     greedy; each call costing 1 call and 100 tokens), against one limit.
//
// Every limit is set so that it never binds (1e12 per window), so what is
// timed is the cost of one call, not waiting. Each round gives every
// contender a fresh limiter (and a fresh state file) and times its calls in
// 20 blocks, the contenders taking turns block by block in a rotated order,
// so a noisy neighbour slows them alike; the figures are medians over the
// rounds, and each ratio is the median of the per-round ratios.
//
//   node --import tsx bench/features.ts     (ROUNDS=7 N=100000 NFILE=2000 by default)
//   RATELIMIT_CANDIDATE=path adds that copy's one-limit wait() too.
import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { RateLimit } from '../ratelimit.ts';
import { benchDir, fmt, median, printTable, rotate, tempDir } from './lib.ts';

const ROUNDS = Number(process.env.ROUNDS ?? 7);
const N = Number(process.env.N ?? 100_000);
const NFILE = Number(process.env.NFILE ?? 2000);
const BASELINE_COMMIT = '484f430';

type Limiter = { wait(options?: object): Promise<number> };
type Make = new (options: object) => Limiter;
const { dir, remove } = tempDir('features');

// The baseline copy of the file, from git.
let Baseline: Make | undefined;
let baselineWhy = '';
try {
  const text = execFileSync('git', ['show', `${BASELINE_COMMIT}:ratelimit.ts`], { cwd: join(benchDir, '..'), encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  const path = join(dir, `ratelimit-${BASELINE_COMMIT}.ts`);
  writeFileSync(path, text);
  Baseline = (await import(pathToFileURL(path).href)).RateLimit as Make;
} catch (error) {
  baselineWhy = `the baseline (${BASELINE_COMMIT}) could not be read from git, so it is left out: ${(error as Error).message.split('\n')[0]}`;
}
// This file again, from a second copy: identical code measured as a separate
// contender, so its ratio to this file shows how far apart two identical
// contenders come out in the same run (the noise floor of the ratios).
const copyPath = join(dir, 'ratelimit-copy.ts');
writeFileSync(copyPath, readFileSync(join(benchDir, '..', 'ratelimit.ts')));
const Copy = (await import(pathToFileURL(copyPath).href)).RateLimit as Make;
const candidatePath = process.env.RATELIMIT_CANDIDATE;
const Candidate: Make | undefined = candidatePath ? (await import(pathToFileURL(resolve(candidatePath)).href)).RateLimit : undefined;
const Current = RateLimit as unknown as Make;

// Big enough that no limit binds: the tightest spacing, 100 tokens of 1e12
// per 60 s, is 6 ns, and the daily limit's (patient) is 86 ns, both far under
// the cost of a call.
const BIG = 1e12;
const ONE = { maxCount: BIG, per: 1 };
const THREE = {
  limits: [
    { maxCount: BIG, per: 60 },                   // requests per minute
    { maxCount: BIG, per: 60, unit: 'tokens' },   // tokens per minute
    { maxCount: BIG, per: 86_400, greedy: true }, // requests per day
  ],
};
const THREE_COST = { cost: { tokens: 100 } };
// The same three, all patient: what the greedy lane's runs cost, by difference.
const THREE_PATIENT = { limits: THREE.limits.map((l) => ({ ...l, greedy: false })) };

interface Contender { name: string; group: 'memory' | 'file'; kind: 'baseline' | 'current' | 'copy' | 'candidate' | 'three' | 'three-patient'; make: (file?: string) => Limiter; options?: object }
const contenders: Contender[] = [];
for (const group of ['memory', 'file'] as const) {
  const at = (file?: string) => (group === 'file' ? { file } : {});
  if (Baseline) { const B = Baseline; contenders.push({ name: `${group} wait(), one limit: baseline ${BASELINE_COMMIT}`, group, kind: 'baseline', make: (f) => new B({ ...ONE, ...at(f) }) }); }
  contenders.push({ name: `${group} wait(), one limit: this file`, group, kind: 'current', make: (f) => new Current({ ...ONE, ...at(f) }) });
  contenders.push({ name: `${group} wait(), one limit: this file, a second copy`, group, kind: 'copy', make: (f) => new Copy({ ...ONE, ...at(f) }) });
  if (Candidate) { const C = Candidate; contenders.push({ name: `${group} wait(), one limit: candidate`, group, kind: 'candidate', make: (f) => new C({ ...ONE, ...at(f) }) }); }
  contenders.push({ name: `${group} wait(), three limits: this file`, group, kind: 'three', make: (f) => new Current({ ...THREE, ...at(f) }), options: THREE_COST });
  contenders.push({ name: `${group} wait(), three patient limits: this file`, group, kind: 'three-patient', make: (f) => new Current({ ...THREE_PATIENT, ...at(f) }), options: THREE_COST });
}

// Calls are timed in interleaved blocks: within a round, every contender
// makes BLOCKS blocks of calls on its own limiter, taking turns block by
// block, so a neighbour's burst of load falls on all of them alike.
const BLOCKS = 20;
let fileCounter = 0;
const fresh = (c: Contender) => c.make(c.group === 'file' ? join(dir, `state-${++fileCounter}.json`) : undefined);
async function block(c: Contender, limit: Limiter, n: number): Promise<number> {
  const { options } = c;
  const start = performance.now();
  if (options) for (let i = 0; i < n; i++) await limit.wait(options);
  else for (let i = 0; i < n; i++) await limit.wait();
  return performance.now() - start;
}
const close = (limit: Limiter) => (limit as { close?: () => void }).close?.();

try {
  for (const c of contenders) { const l = fresh(c); await block(c, l, c.group === 'file' ? 200 : 5000); close(l); } // warm up
  const us: Record<string, number[]> = {};
  const xBase: Record<string, number[]> = {};
  const xOne: Record<string, number[]> = {};
  for (const c of contenders) { us[c.name] = []; xBase[c.name] = []; xOne[c.name] = []; }
  for (let round = 0; round < ROUNDS; round++) {
    const limits = new Map(contenders.map((c) => [c, fresh(c)]));
    const ms = new Map(contenders.map((c) => [c, 0]));
    for (let b = 0; b < BLOCKS; b++) {
      for (const c of rotate(contenders, round + b)) ms.set(c, ms.get(c)! + await block(c, limits.get(c)!, (c.group === 'file' ? NFILE : N) / BLOCKS));
    }
    for (const l of limits.values()) close(l);
    const t: Record<string, number> = {};
    for (const c of contenders) t[c.name] = (ms.get(c)! * 1000) / (c.group === 'file' ? NFILE : N);
    for (const c of contenders) {
      us[c.name].push(t[c.name]);
      const peer = (kind: Contender['kind']) => contenders.find((x) => x.group === c.group && x.kind === kind);
      const base = peer('baseline');
      const one = peer('current');
      if (base) xBase[c.name].push(t[c.name] / t[base.name]);
      if (one) xOne[c.name].push(t[c.name] / t[one.name]);
    }
  }
  if (process.env.BENCH_DEBUG) for (const c of contenders) console.log(c.name, us[c.name].map((x) => x.toFixed(3)).join(' '));
  const show = (c: Contender, xs: Record<string, number[]>) => (xs[c.name].length ? fmt(median(xs[c.name]), 2) : '-');
  printTable(
    `8. One wait() that does not bind: this file's one-limit path against ${BASELINE_COMMIT} (before several limits), and three limits against one; ` +
      `${N} calls in memory, ${NFILE} in file mode, per round; median of ${ROUNDS} rounds`,
    ['contender', 'µs per call', `x ${BASELINE_COMMIT}`, 'x one limit'],
    contenders.map((c) => [c.name, fmt(median(us[c.name]), c.group === 'file' ? 1 : 3), c.kind.startsWith('three') ? '-' : show(c, xBase), c.kind === 'baseline' ? '-' : show(c, xOne)]),
    [
      ...(baselineWhy ? [baselineWhy] : [`baseline: \`git show ${BASELINE_COMMIT}:ratelimit.ts\`, the file as it was before several limits, imported from a temporary copy`]),
      `one limit: new RateLimit({ maxCount: 1e12, per: 1 }), await wait()`,
      `three limits: { limits: [{ maxCount: 1e12, per: 60 }, { maxCount: 1e12, per: 60, unit: 'tokens' }, { maxCount: 1e12, per: 86400, greedy: true }] }, await wait({ cost: { tokens: 100 } })`,
      'a second copy: this file imported again from a copy; its ratio to this file (identical code) is how far apart two identical contenders come out here.',
      'three patient limits: the same three with greedy: false, so the difference is what the greedy lane costs.',
      'The greedy daily limit keeps its grants as [time, units] runs, at most 128 (see MAX_RUNS), so its state is a few KB; in file mode that is read and written on every call.',
      ...(candidatePath ? [`candidate: ${candidatePath}`] : []),
    ],
  );
} finally {
  remove();
}
