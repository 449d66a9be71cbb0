// Entry point of `npm run bench`: installs bench/'s own dependencies when
// they are missing (npm ci --prefix bench, from bench/package-lock.json, so
// the peer libraries never enter the root install), then runs every
// benchmark, each in a process of its own, and writes the timeline pictures.
//
//   npm run bench                      everything, about 5 to 6 minutes
//   ONLY=overhead,recovery npm run bench   some of them (names below)
//   ONLY=features npm run bench            the one-limit path against 484f430, and three limits
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { benchDir } from './lib.ts';

if (!existsSync(join(benchDir, 'node_modules'))) {
  console.log('Installing the benchmark\'s own dependencies: npm ci --prefix bench');
  const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm';
  const r = spawnSync(npm, ['ci', '--prefix', benchDir, '--no-audit', '--no-fund'], { stdio: 'inherit' });
  if (r.status !== 0) {
    console.error('npm ci --prefix bench failed; install bench/ by hand and run again.');
    process.exit(1);
  }
}

const all = ['overhead', 'filemode', 'contended', 'precision', 'idle', 'recovery', 'timeline', 'cli', 'features', 'firstcall', 'queue', 'import'];
const only = process.env.ONLY?.split(',').map((s) => s.trim());
const chosen = only ? all.filter((n) => only.includes(n)) : all;

const version = (name: string) => {
  try {
    return (spawnSync(process.execPath, ['-p', `require(${JSON.stringify(join(benchDir, 'node_modules', name, 'package.json'))}).version`], { encoding: 'utf8' }).stdout ?? '?').trim();
  } catch { return '?'; }
};
console.log(`ratelimit benchmarks, ${new Date().toISOString()}`);
const dir = process.env.BENCH_DIR ?? tmpdir();
const fsType = (spawnSync('df', ['-T', dir], { encoding: 'utf8' }).stdout ?? '').split('\n')[1]?.split(/\s+/)[1] ?? 'unknown';
const load = () => loadavg().map((l) => l.toFixed(2)).join(' ');
console.log(`node ${process.version}, ${cpus().length} x ${cpus()[0]?.model ?? 'unknown CPU'}, files in ${dir} (${fsType}), load average ${load()}`);
console.log(`peers: ${['bottleneck', 'limiter', 'p-throttle', 'async-sema', 'rate-limiter-flexible', 'proper-lockfile', 'lockfile', 'better-sqlite3'].map((n) => `${n} ${version(n)}`).join(', ')}`);

const started = performance.now();
let failed = 0;
for (const name of chosen) {
  const t = performance.now();
  const r = spawnSync(process.execPath, ['--import', 'tsx', join(benchDir, `${name}.ts`)], { stdio: 'inherit', timeout: 240_000 });
  if (r.status === 130 || r.signal === 'SIGINT') { console.error('\ninterrupted'); process.exit(130); }
  if (r.status !== 0) { failed++; console.error(`\n${name}: failed (${r.signal ?? `exit ${r.status}`})`); }
  console.log(`  (${name}: ${((performance.now() - t) / 1000).toFixed(1)} s; load average ${load()})`);
}
console.log(`\nAll done in ${((performance.now() - started) / 1000).toFixed(0)} s; load average now ${load()}.`);
process.exit(failed ? 1 : 0);
