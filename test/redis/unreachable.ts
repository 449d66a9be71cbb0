// Calls wait() on a Redis store whose server is not there, prints what it got
// as one JSON line, and then simply returns: the test checks that the process
// exits by itself, so nothing (such as a reconnect loop) keeps it alive.
import { RateLimit } from '../../ratelimit.ts';
import { RedisStore } from '../../examples/redis-store.ts';

const limit = new RateLimit({ maxCount: 1, per: 1, store: new RedisStore({ url: process.argv[2], key: 'unreachable', timeout: 1 }) });
const started = performance.now();
try {
  await limit.wait();
  console.log(JSON.stringify({ ok: true }));
} catch (error) {
  const { name, message, reason } = error as Error & { reason?: string };
  console.log(JSON.stringify({ ok: false, name, message, reason, ms: performance.now() - started }));
}
