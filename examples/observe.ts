// Learning the real limit from the server. The limiter is configured for 100
// calls per 10 s, a guess; the server allows only 30 per 10 s, and says so in
// the headers of every answer. limit.observe(answer) writes what the headers
// say ("N left until T") into the shared state, where every process that
// names the same file obeys it until T, along with the configured limit.
//
// The server is a local one (127.0.0.1, a free port) that speaks one dialect:
// ietf, ietf-old, github (the default), openai, anthropic or discord. Four
// workers each keep one request in flight, 45 requests in all; the run takes
// about 10 s, for the second window. What to see: once the first answer has
// come back, 429s stop; at most one per request already in flight.
//
//   npx tsx examples/observe.ts [dialect]

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { RateLimit } from '../ratelimit.ts';
import { startServer, DIALECTS, type Dialect } from '../test/observe/server.ts';

const dialect = (process.argv[2] ?? 'github') as Dialect;
if (!DIALECTS.includes(dialect)) throw new Error(`dialect must be one of ${DIALECTS.join(', ')}`);
const server = await startServer({ dialect, budget: 30, window: 10 });
const dir = mkdtempSync(join(tmpdir(), 'ratelimit-observe-'));
const limit = new RateLimit({ maxCount: 100, per: 10, file: join(dir, 'api.json') });
const start = performance.now();
let next = 1;

async function worker(): Promise<void> {
  for (let n = next++; n <= 45; n = next++) {
    await limit.wait();
    const answer = await fetch(server.url);
    await answer.arrayBuffer();
    await limit.observe(answer); // the server's "N left until T", shared with every process
    const t = ((performance.now() - start) / 1000).toFixed(3).padStart(7);
    console.log(`${t} s  request ${String(n).padStart(2)}  ${answer.status}`);
  }
}

try {
  await Promise.all([worker(), worker(), worker(), worker()]);
  for (const w of server.stats().windows) {
    console.log(`window ${w.index}: ${w.ok} answered 200, ${w.refused} answered 429`);
  }
} finally {
  await server.stop();
  rmSync(dir, { recursive: true, force: true });
}
