// A program for test/cli.test.ts, run under the runtime being tested.
//   cli-child.ts import ARGS...          imports ratelimit.ts with odd argv and
//                                        checks that the import did nothing
//   cli-child.ts import-cli ARGS...      the same for ratelimit-cli.mts
//   cli-child.ts wait FILE OUT N         a library user: N waits on FILE (5 per
//                                        2 s), appending /proc/uptime to OUT
//                                        after each
import { appendFileSync, readFileSync } from 'node:fs';

const [mode, file, out, n] = process.argv.slice(2);
const watched = ['SIGINT', 'SIGTERM', 'SIGHUP', 'exit', 'beforeExit', 'warning', 'uncaughtException', 'unhandledRejection'] as const;
const before = watched.map((e) => process.listenerCount(e));
const { RateLimit } = await import('../ratelimit.ts');
if (mode === 'import-cli') await import('../ratelimit-cli.mts');

if (mode === 'import' || mode === 'import-cli') {
  const what = mode === 'import' ? 'ratelimit.ts' : 'ratelimit-cli.mts';
  // What the command would have done is asynchronous: give it a moment to show.
  await new Promise((r) => setTimeout(r, 100));
  const after = watched.map((e) => process.listenerCount(e));
  const added = watched.filter((_, i) => after[i] !== before[i]);
  if (added.length) throw new Error(`importing ${what} added listeners for ${added.join(', ')}`);
  if (process.exitCode !== undefined && process.exitCode !== 0) {
    throw new Error(`importing ${what} set process.exitCode to ${process.exitCode}`);
  }
} else if (mode === 'wait') {
  const limit = new RateLimit({ maxCount: 5, per: 2, file: file! });
  for (let i = 0; i < Number(n); i++) {
    await limit.wait();
    appendFileSync(out!, readFileSync('/proc/uptime', 'latin1'));
  }
} else {
  throw new Error(`unknown mode ${mode}`);
}
