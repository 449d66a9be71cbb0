// A process using several limits, pauses, status and concurrency slots
// through Redis, for test/redis.test.ts. argv[2] is the Redis URL. It prints
// {"ready":true} once connected, then runs the JSON commands it reads on
// stdin one at a time and answers each with one JSON line:
//   {"op":"open","key","options"}        a RateLimit (limits, maxConcurrent, slotLease) on that key
//   {"op":"wait"|"acquire","cost"?,"maxWait"?}
//       -> {"first","final","decided","granted"}: the slot it reserved, the
//          slot it went on (later if a pause moved it), the server time of
//          its last transaction, and the shared-clock time it returned
//   {"op":"release"} · {"op":"status"} -> {"status"} · {"op":"pause","seconds"}
//   any failure -> {"error","name"}
// Slots and times are read inside the store's transaction (the attempt that
// was written, when a compare-and-set conflict made it run again), so they
// are exact server times.
import { createInterface } from 'node:readline';
import { RateLimit, sharedClock, type Permit, type RateLimitOptions, type RateLimitStore, type Transaction } from '../../ratelimit.ts';
import { RedisStore } from '../../examples/redis-store.ts';

const url = process.argv[2];
const clock = sharedClock();
const say = (o: object) => process.stdout.write(JSON.stringify(o) + '\n');

interface Noted { now: number; wrote: boolean; at?: number }
let noted: Noted[] = [];
let store: RedisStore | undefined;
let limit: RateLimit | undefined;
let permit: Permit | undefined;

const warmUp = new RedisStore({ url, key: 'warm-up' });
await warmUp.update((_state, now) => ({ result: now }));
await warmUp.close();
say({ ready: true });

for await (const line of createInterface({ input: process.stdin })) {
  const command = JSON.parse(line);
  noted = [];
  try {
    if (command.op === 'open') {
      await store?.close();
      const redis = new RedisStore({ url, key: command.key });
      store = redis;
      const noting: RateLimitStore = {
        name: redis.name,
        update<T>(tx: Transaction<T>): Promise<T> {
          let last: Noted | undefined;
          return redis.update<T>((state, now, ctx) => {
            const out = tx(state, now, ctx);
            // A concurrency slot's transaction returns one result per waiter
            // in this process; this program has one call in flight at a time.
            const result = Array.isArray(out.result) ? (out.result as unknown[]).find((x) => typeof x === 'object') : out.result;
            const r = result as { at?: unknown } | undefined;
            last = { now, wrote: out.state !== undefined, ...(typeof r === 'object' && r !== null && typeof r.at === 'number' ? { at: r.at } : {}) };
            return out;
          }).then((result) => { if (last) noted.push(last); return result; });
        },
      };
      limit = new RateLimit({ ...(command.options as RateLimitOptions), store: noting });
      await redis.update((_state, now) => ({ result: now })); // connect now
      say({});
    } else if (command.op === 'wait' || command.op === 'acquire') {
      const options = { ...(command.cost ? { cost: command.cost } : {}), ...(command.maxWait !== undefined ? { maxWait: command.maxWait } : {}) };
      if (command.op === 'wait') await limit!.wait(options); else permit = await limit!.acquire(options);
      const granted = clock.now();
      const reserved = noted.filter((n) => n.wrote && n.at !== undefined);
      say({ first: reserved[0]?.at, final: reserved[reserved.length - 1]?.at, decided: noted[noted.length - 1]?.now, granted });
    } else if (command.op === 'release') {
      await permit?.release();
      say({});
    } else if (command.op === 'status') {
      say({ status: await limit!.status() });
    } else if (command.op === 'pause') {
      await limit!.pause(command.seconds);
      say({});
    } else {
      say({ error: `unknown command ${line}` });
    }
  } catch (error) {
    say({ error: (error as Error).message, name: (error as Error).name });
  }
}
await store?.close();
