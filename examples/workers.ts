// A pool of worker threads sharing one limit through a state file.
//
// Each worker makes its own RateLimit naming the same `file`; nothing is
// passed between threads but the file's path. Four workers make five calls
// each, as fast as they are let, against a limit of 10 calls per second:
// twenty calls in about 1.9 s, in the order they asked, whichever thread
// asked. The main thread prints the combined timeline.
//
//   npx tsx examples/workers.ts

import { isMainThread, parentPort, Worker } from 'node:worker_threads';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { RateLimit } from '../ratelimit.ts';

const WORKERS = 4;
const CALLS_EACH = 5;
const LIMIT = { maxCount: 10, per: 1 };

interface Job { id: number; file: string; t0: number }
interface Grant { id: number; call: number; at: number; waited: number }

// Milliseconds on a clock that every thread reads alike (performance.now()
// alone counts from each thread's own start).
const clock = () => performance.timeOrigin + performance.now();

if (isMainThread) {
  const dir = mkdtempSync(join(tmpdir(), 'ratelimit-workers-'));
  const file = join(dir, 'shared.ratelimit.json');
  try {
    // Workers do not inherit tsx's loader on Node 20, so each one starts from
    // a line of plain JavaScript that loads this file through tsx's API.
    const boot = `import(${JSON.stringify(import.meta.resolve('tsx/esm/api'))})` +
      `.then((tsx) => tsx.tsImport(${JSON.stringify(import.meta.url)}, ${JSON.stringify(import.meta.url)}))`;
    const workers = Array.from({ length: WORKERS }, (_, i) => new Worker(boot, { eval: true }));

    // Let every worker finish starting up, then give them one start time.
    await Promise.all(workers.map((w) => new Promise((ready) => w.once('message', ready))));
    const t0 = clock();
    console.log(`${WORKERS} worker threads, ${CALLS_EACH} calls each, sharing ${LIMIT.maxCount} calls per ${LIMIT.per} s through ${file}\n`);
    console.log(`  time     ${'who'.padEnd(18)}waited`);
    const done = workers.map((w, i) => new Promise<void>((resolve, reject) => {
      w.on('message', (g: Grant) => {
        console.log(`${(g.at / 1000).toFixed(3).padStart(6)} s   ${`worker ${g.id} call ${g.call}`.padEnd(18)}${g.waited.toFixed(3)} s`);
      });
      w.on('error', reject);
      w.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`worker ${i + 1} exited with ${code}`))));
      w.postMessage({ id: i + 1, file, t0 } satisfies Job);
    }));
    await Promise.all(done);
    const seconds = (clock() - t0) / 1000;
    console.log(`\n${WORKERS * CALLS_EACH} calls in ${seconds.toFixed(2)} s, in slots ${LIMIT.per / LIMIT.maxCount} s apart` +
      ' (a printed time can trail its slot by a few ms on a busy machine).');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
} else {
  // A worker: say it is ready, get its job, and make its calls.
  const port = parentPort!;
  port.postMessage('ready');
  port.once('message', async ({ id, file, t0 }: Job) => {
    const limit = new RateLimit({ ...LIMIT, file });
    for (let call = 1; call <= CALLS_EACH; call++) {
      const waited = await limit.wait();
      port.postMessage({ id, call, at: clock() - t0, waited } satisfies Grant);
    }
    port.close();
  });
}
