// One process of the observe() tests: keeps one request in flight against the
// local server (test/observe/server.ts) until OBSERVE_SECONDS have passed,
// under a limiter configured for 100 calls per 10 s (and, with OBSERVE_TOKENS,
// 100,000 tokens per 10 s, each request costing that many), sharing
// OBSERVE_FILE. With OBSERVE=1 it hands every answer to limit.observe().
// Prints the status of each answer, one per line.
import { RateLimit } from '../../ratelimit.ts';

const env = (name: string) => process.env[name] ?? '';
const tokens = Number(env('OBSERVE_TOKENS') || 0);
const file = env('OBSERVE_FILE');
const limit = new RateLimit(tokens
  ? { limits: [{ maxCount: 100, per: 10 }, { maxCount: 100_000, per: 10, unit: 'tokens' }], file }
  : { maxCount: 100, per: 10, file });
const end = Date.now() + Number(env('OBSERVE_SECONDS')) * 1000;
const statuses: number[] = [];
while (Date.now() < end) {
  await limit.wait(tokens ? { cost: { tokens } } : undefined);
  const answer = await fetch(env('OBSERVE_URL'), { headers: tokens ? { 'x-cost-tokens': String(tokens) } : {} });
  await answer.arrayBuffer();
  if (env('OBSERVE') === '1') await limit.observe(answer);
  statuses.push(answer.status);
}
console.log(statuses.join('\n'));
