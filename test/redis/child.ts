// A process sharing limits through Redis, for test/redis.test.ts.
// argv[2] is the Redis URL. The child connects, then prints one JSON line:
// its wall clock and boot clock read together (so the test can see whether
// a faked clock took effect). After that each line it reads from stdin is a
// run: { key, maxCount, per, greedy, startAt, until }, times in seconds on
// sharedClock() (the boot clock, the same in every process on this machine).
// It waits until startAt, takes slots until the next one would fall after
// `until`, and prints one JSON line: for each grant the slot Redis gave it
// (server clock) and the boot-clock time it went, and the store's conflict
// count. It exits when stdin closes.
import { createInterface } from 'node:readline';
import { RateLimit, RateLimitTimeoutError, sharedClock, type RateLimitStore, type Transaction } from '../../ratelimit.ts';
import { RedisStore } from '../../examples/redis-store.ts';

const url = process.argv[2];
const clock = sharedClock();

// Connect before the first run: a transaction that writes nothing.
const warmUp = new RedisStore({ url, key: 'warm-up' });
await warmUp.update((_state, now) => ({ result: now }));
process.stdout.write(JSON.stringify({ wall: Date.now() / 1000, boot: clock.now() }) + '\n');

for await (const line of createInterface({ input: process.stdin })) {
  const { key, maxCount, per, greedy, startAt, until } = JSON.parse(line);
  const store = new RedisStore({ url, key });
  // The store as RateLimit sees it, noting the slot (`at`, a Reservation
  // field) of the last reservation the transaction made.
  let lastAt: number | undefined;
  const noting: RateLimitStore = {
    name: store.name,
    update<T>(tx: Transaction<T>): Promise<T> {
      return store.update((state, now, ctx) => {
        const out = tx(state, now, ctx);
        const r = out.result as { at?: unknown };
        // wait() also looks at the state again after sleeping (for a pause): that changes nothing, so it is not noted.
        if (out.state && typeof r === 'object' && r !== null && typeof r.at === 'number') lastAt = r.at;
        return out;
      });
    },
  };
  const limit = new RateLimit({ maxCount, per, greedy, store: noting });
  await store.update((_state, now) => ({ result: now })); // connect now, not at the start time

  await new Promise((resolve) => setTimeout(resolve, Math.max(0, (startAt - clock.now()) * 1000)));
  const grants: number[] = [];
  const slots: number[] = [];
  for (;;) {
    const left = until - clock.now();
    if (left <= 0) break;
    try {
      lastAt = undefined;
      await limit.wait({ maxWait: left });
    } catch (error) {
      if (error instanceof RateLimitTimeoutError) break;
      throw error;
    }
    grants.push(clock.now());
    if (lastAt === undefined) throw new Error('the transaction reserved no slot that could be seen');
    slots.push(lastAt);
  }
  await store.close();
  process.stdout.write(JSON.stringify({ grants, slots, conflicts: store.conflicts }) + '\n');
}
await warmUp.close();
