// Separate programs sharing one limit through a state file.
//
// This file is two programs. Run without arguments it is the parent: it
// starts three copies of itself as independent child processes (with
// spawn, the way a shell or a process manager would start them: nothing is
// inherited but the file's path on the command line) and prints the combined
// timeline. Run as `processes.ts child <name> <file>` it is one child: it
// makes its own RateLimit on that file and makes four calls.
// Three processes × four calls under 5 calls per second: twelve calls,
// 0.2 s apart, about 2.2 s in all.
//
//   npx tsx examples/processes.ts

import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { RateLimit } from '../ratelimit.ts';

const CHILDREN = 3;
const CALLS_EACH = 4;
const LIMIT = { maxCount: 5, per: 1 };

// Milliseconds on the wall clock, with sub-millisecond resolution; it is
// only used to print the timeline, never to decide anything.
const clock = () => performance.timeOrigin + performance.now();

if (process.argv[2] === 'child') {
  // --- a child: one independent program --------------------------------
  const [, , , name, file] = process.argv;
  const limit = new RateLimit({ ...LIMIT, file });
  // Tell the parent we are up, and wait for the common start time.
  console.log('ready');
  const lines = createInterface({ input: process.stdin });
  const t0 = Number((await lines[Symbol.asyncIterator]().next()).value);
  lines.close();
  for (let call = 1; call <= CALLS_EACH; call++) {
    const waited = await limit.wait();
    console.log(JSON.stringify({ name, pid: process.pid, call, at: clock() - t0, waited }));
  }
} else {
  // --- the parent -------------------------------------------------------
  const dir = mkdtempSync(join(tmpdir(), 'ratelimit-processes-'));
  const file = join(dir, 'shared.ratelimit.json');
  // Children run as `node --import tsx processes.ts child ...`, not through
  // the tsx command, so each one is a single process.
  const tsx = import.meta.resolve('tsx');
  const self = fileURLToPath(import.meta.url);
  const children = Array.from({ length: CHILDREN }, (_, i) =>
    spawn(process.execPath, ['--import', tsx, self, 'child', `process ${i + 1}`, file], {
      stdio: ['pipe', 'pipe', 'inherit'],
    }));
  try {
    const outputs = children.map((child) => createInterface({ input: child.stdout! })[Symbol.asyncIterator]());
    // Start-up takes a while; once every child is ready, give them one start time.
    for (const out of outputs) {
      const first = await out.next();
      if (first.value !== 'ready') throw new Error('a child did not start; see its error above');
    }
    const t0 = clock();
    for (const child of children) child.stdin!.end(`${t0}\n`);
    console.log(`${CHILDREN} processes, ${CALLS_EACH} calls each, sharing ${LIMIT.maxCount} calls per ${LIMIT.per} s through ${file}\n`);
    console.log(`  time     ${'who'.padEnd(32)}waited`);
    // Print each child's grants as they come, in one timeline.
    await Promise.all(outputs.map(async (out) => {
      for (let r = await out.next(); !r.done; r = await out.next()) {
        const g = JSON.parse(r.value);
        const who = `${g.name} (pid ${g.pid}) call ${g.call}`;
        console.log(`${(g.at / 1000).toFixed(3).padStart(6)} s   ${who.padEnd(32)}${g.waited.toFixed(3)} s`);
      }
    }));
    const codes = await Promise.all(children.map((c) => c.exitCode ?? new Promise((r) => c.once('exit', r))));
    if (codes.some((c) => c !== 0)) throw new Error(`a child failed: exit codes ${codes.join(', ')}`);
    console.log(`\n${CHILDREN * CALLS_EACH} calls in ${((clock() - t0) / 1000).toFixed(2)} s, in slots ${LIMIT.per / LIMIT.maxCount} s apart` +
      ' (a printed time can trail its slot by a few ms on a busy machine).');
  } finally {
    for (const child of children) if (child.exitCode === null) child.kill();
    rmSync(dir, { recursive: true, force: true });
  }
}
