// How one Redis key holds up when many clients update it at once. Not part
// of npm test; run it against a Redis of your own:
//   redis-server --port 6390 --save '' --appendonly no &
//   REDIS_URL=redis://127.0.0.1:6390 node --import tsx test/redis/contention.ts [clients] [updates each]
// Each client is a RedisStore with its own connection, in this one process.
// "one at a time": each client awaits every update before the next, so every
// update is its own compare-and-set racing the other clients. "all at once":
// each client starts all its updates together, and the store batches them.
// Every update adds one to a count; the final count must equal the updates
// that succeeded, and every count must have been seen exactly once.
import { RedisStore } from '../../examples/redis-store.ts';
import type { LimitState } from '../../ratelimit.ts';

const clients = Number(process.argv[2] ?? 16);
const each = Number(process.argv[3] ?? 100);
// (The count is kept as a slot's id, whose lease runs far ahead, so the key does not expire.)
const counterState = (n: number): LimitState => ({ v: 3, limits: [{ maxCount: 1, per: 60, greedy: false, unit: 'calls' }], lanes: [{}], slots: [{ id: String(n), holder: 'counter', until: 1e11 }] });
const countOf = (state: LimitState | undefined): number => Number(state?.slots?.[0]?.id ?? 0);
const increment = (state: LimitState | undefined) => ({ state: counterState((countOf(state)) + 1), result: countOf(state) });

for (const mode of ['one at a time', 'all at once']) {
  const key = `contention:${process.pid}:${mode}`;
  const stores = Array.from({ length: clients }, () => new RedisStore({ key }));
  await stores[0].update((_s, now) => ({ result: now })); // connect before timing
  let failed = 0;
  const started = performance.now();
  const seen = (await Promise.all(stores.map(async (s) => {
    const run = () => s.update(increment).catch(() => { failed++; return -1; });
    if (mode === 'all at once') return Promise.all(Array.from({ length: each }, run));
    const got: number[] = [];
    for (let i = 0; i < each; i++) got.push(await run());
    return got;
  }))).flat().filter((n) => n >= 0).sort((a, b) => a - b);
  const ms = performance.now() - started;
  const exact = seen.every((n, i) => n === i);
  const conflicts = stores.reduce((sum, s) => sum + s.conflicts, 0);
  console.log(`${mode}: ${clients} clients x ${each} updates in ${ms.toFixed(0)} ms = ${((clients * each) / ms * 1000).toFixed(0)} updates/s; ` +
    `${conflicts} conflicts retried, ${failed} failed after maxAttempts; counts exact: ${exact}`);
  await Promise.all(stores.map((s) => s.close()));
  if (!exact) process.exitCode = 1;
}
