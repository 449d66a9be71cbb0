// A plain synchronous script, such as a cron job, that calls a rate-limited
// API twice. waitSync() blocks until the call may go (sleeping, not spinning)
// and returns the seconds it waited. Every copy of this script names the same
// state file, so copies started together share one limit of 4 calls per
// second between them. Start five at once, as cron might:
//
//   for i in 1 2 3 4 5; do npx tsx examples/script.ts & done; wait
//
// The state file stays in the temporary directory between runs (it is a few
// bytes), since the copies that are still running share it.

import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { RateLimit } from '../ratelimit.ts';

const limit = new RateLimit({ maxCount: 4, per: 1, file: join(tmpdir(), 'ratelimit-example-script.json') });

for (let call = 1; call <= 2; call++) {
  const waited = limit.waitSync();
  // The copies are separate programs, so the time of day lines them up.
  const time = new Date().toISOString().slice(11, 23);
  console.log(`${time}  pid ${process.pid} call ${call}  waited ${waited.toFixed(3)} s`);
  // ...call the API here...
}
