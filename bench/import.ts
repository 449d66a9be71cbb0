// Question 11: what does importing ratelimit.ts add to a fresh process under
// Node 22 and 24, which strip types on every start, against the file at
// b0cee26 (0.2.0, with the command line inside)? Node's first .ts import loads
// its type stripper (about 100 ms here) whatever the file, and a project in
// TypeScript pays that for its own files anyway, so what is reported is the
// import's time less that of a one-line .ts file in the same round. Each round
// runs one fresh process per file, in a rotated order, and times the import
// inside the process; figures are medians over ROUNDS rounds, the ratio the
// median of the per-round ratios. The baseline is taken from git at bench time.
// The same two files with their types stripped beforehand (by Node's own
// stripTypeScriptTypes, so only the whitespace differs), against a one-line
// .js file, show how much of an import is Node stripping the types.
//
//   node --import tsx bench/import.ts     (ROUNDS=21 by default; needs the
//   runtimes of test/runtimes: npm ci --prefix test/runtimes)
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { benchDir, fmt, median, printTable, rotate, tempDir } from './lib.ts';

const ROUNDS = Number(process.env.ROUNDS ?? 21);
const BASELINE_COMMIT = 'b0cee26';
const root = resolve(benchDir, '..');
const { dir, remove } = tempDir('import');
// All in one folder of type "module", so they load the same way.
const files = {
  now: join(dir, 'ratelimit.ts'),
  then: join(dir, `ratelimit-${BASELINE_COMMIT}.ts`),
  tiny: join(dir, 'tiny.ts'),
  nowJs: join(dir, 'ratelimit.js'),
  thenJs: join(dir, `ratelimit-${BASELINE_COMMIT}.js`),
  tinyJs: join(dir, 'tiny.js'),
};
writeFileSync(files.now, readFileSync(join(root, 'ratelimit.ts')));
writeFileSync(files.then, execFileSync('git', ['show', `${BASELINE_COMMIT}:ratelimit.ts`], { cwd: root }));
writeFileSync(files.tiny, 'export const x: number = 1;\n');
writeFileSync(files.tinyJs, 'export const x = 1;\n');
writeFileSync(join(dir, 'package.json'), '{ "type": "module" }\n');
const node24 = join(root, 'test', 'runtimes', 'node_modules', 'node24', 'bin', 'node');
const strip = "process.stdout.write(require('node:module').stripTypeScriptTypes(require('node:fs').readFileSync(0, 'utf8')))";
for (const [ts, js] of [[files.now, files.nowJs], [files.then, files.thenJs]] as const) {
  if (existsSync(node24)) writeFileSync(js, execFileSync(node24, ['--no-warnings', '-e', strip], { input: readFileSync(ts) }));
}

function timeImport(node: string, file: string): number {
  const code = `const t = performance.now(); await import(${JSON.stringify(file)}); console.log(performance.now() - t);`;
  const env = { ...process.env, NODE_COMPILE_CACHE: '' };
  const r = spawnSync(node, ['--input-type=module', '-e', code], { encoding: 'utf8', env });
  if (r.status !== 0) throw new Error(`${node}: ${r.stderr}`);
  return Number(r.stdout.trim());
}

const rows: string[][] = [];
for (const name of ['node22', 'node24']) {
  const node = join(root, 'test', 'runtimes', 'node_modules', name, 'bin', 'node');
  if (!existsSync(node)) {
    rows.push([name, '-', '-', '-', 'not installed: npm ci --prefix test/runtimes']);
    continue;
  }
  const now: number[] = [];
  const then: number[] = [];
  const tiny: number[] = [];
  const ratios: number[] = [];
  const nowJs: number[] = [];
  const thenJs: number[] = [];
  for (let k = 0; k < ROUNDS; k++) {
    const t: Record<string, number> = {};
    for (const key of rotate(['now', 'then', 'tiny', 'nowJs', 'thenJs', 'tinyJs'] as const, k)) {
      t[key] = timeImport(node, files[key]);
    }
    const [a, b, c] = [t.now as number, t.then as number, t.tiny as number];
    now.push(a - c);
    then.push(b - c);
    tiny.push(c);
    ratios.push((a - c) / (b - c));
    nowJs.push((t.nowJs as number) - (t.tinyJs as number));
    thenJs.push((t.thenJs as number) - (t.tinyJs as number));
  }
  rows.push([name, fmt(median(now), 1), fmt(median(then), 1), fmt(median(ratios), 2), fmt(median(nowJs), 1),
    fmt(median(thenJs), 1), fmt(median(tiny), 1)]);
}
printTable(`Question 11: what importing ratelimit.ts adds to a fresh process, ms (median of ${ROUNDS})`,
  ['runtime', 'this file', BASELINE_COMMIT, 'ratio', 'this file as .js', `${BASELINE_COMMIT} as .js`,
    'a one-line .ts file (not included)'], rows,
  ['the import alone, timed inside the process, less the one-line file\'s in the same round; NODE_COMPILE_CACHE off',
    'as .js: the same file with its types stripped beforehand by Node 24, less a one-line .js file: what is left is '
    + 'loading the code, not stripping it']);
remove();
