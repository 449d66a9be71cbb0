// Patient and greedy side by side on the same limit, 3 calls per second.
// Eight calls ask at once on each limiter (both run at the same time):
//   patient (the default) spaces the calls evenly, one every 1/3 s;
//   greedy lets calls go at once until 3 have gone, and then lets each next
//   one go as soon as a call leaves the last second (an exact sliding window).
// Either way no second ever holds more than 3 calls.
//
//   npx tsx examples/greedy.ts

import { RateLimit } from '../ratelimit.ts';

const CALLS = 8;
const limits = {
  patient: new RateLimit({ maxCount: 3, per: 1 }),
  greedy: new RateLimit({ maxCount: 3, per: 1, greedy: true }),
};

const start = performance.now();
const since = () => (performance.now() - start) / 1000;

// Every call asks at time 0; record when it was let through and how long it waited.
async function run(limit: RateLimit): Promise<{ at: number; waited: number }[]> {
  return Promise.all(Array.from({ length: CALLS }, async () => {
    const waited = await limit.wait();
    return { at: since(), waited };
  }));
}

const [patient, greedy] = await Promise.all([run(limits.patient), run(limits.greedy)]);

const cell = (c: { at: number; waited: number }) => `${c.at.toFixed(3)} s (waited ${c.waited.toFixed(3)})`;
console.log('Limit: 3 calls per 1 s. Eight calls ask at once; each is let through at:\n');
console.log('call   patient                     greedy: true');
for (let i = 0; i < CALLS; i++) {
  console.log(`${String(i + 1).padStart(3)}    ${cell(patient[i]).padEnd(28)}${cell(greedy[i])}`);
}
console.log('\nPatient: one call every 1/3 s. Greedy: bursts of 3, each a second after the last.');
