// How many tokens can one window of `per` seconds hold? A limit on tokens,
// 3,000 per 2 s, and a backlog of 40 calls of uneven cost that all ask at
// once, scheduled by the core on a made-up clock (no waiting, no file), once
// patient and once greedy. For each mode it prints the most tokens granted
// in any window (t - per, t], which is what a server counting tokens over a
// sliding window sees.
//
//   npx --yes tsx examples/tokens.ts
//
// Patient spaces each call after the one before by that one's own cost
// (cost · per / maxCount), so a window can hold up to maxCount plus the cost
// of one call, less a little: a cheap call followed at once by a dear one.
// Greedy keeps an exact sliding window: never more than maxCount.
import { reserve, type LimitState, type Settings } from '../ratelimit.ts';

const MAX = 3_000; // tokens
const PER = 2; // seconds
// Uneven costs, as chat requests are: cheap and dear ones mixed. 40 calls
// are ten windows' worth or more, enough for the pattern to repeat.
const COSTS = [150, 1_200, 400, 900, 100, 1_200, 600, 250];
const CALLS = 40;

function schedule(greedy: boolean): { at: number; cost: number }[] {
  const settings: Settings = {
    limits: [{ maxCount: MAX, per: PER, greedy, unit: 'tokens' }],
    maxConcurrent: Infinity,
    serial: false,
  };
  let state: LimitState | undefined;
  const grants: { at: number; cost: number }[] = [];
  for (let i = 0; i < CALLS; i++) {
    const cost = COSTS[i % COSTS.length] ?? 0;
    const r = reserve(settings, state, 0, [cost]);
    state = r.state;
    if (!r.reservation) throw new Error('no reservation');
    grants.push({ at: r.reservation.at, cost });
  }
  return grants;
}

/** The most units in any window (t - per, t], t being a grant's time. */
function mostInWindow(grants: { at: number; cost: number }[]): number {
  // A billionth of a second of slack: slots are sums of floats.
  const eps = 1e-9;
  return Math.max(...grants.map((g) =>
    grants.filter((h) => h.at > g.at - PER + eps && h.at <= g.at + eps).reduce((sum, h) => sum + h.cost, 0)));
}

console.log(`limit: ${MAX} tokens per ${PER} s; ${CALLS} calls costing ${COSTS.join(', ')} tokens in turn, all asking at 0 s`);
console.log(`largest cost: ${Math.max(...COSTS)} tokens`);
for (const greedy of [false, true]) {
  const grants = schedule(greedy);
  const last = grants[grants.length - 1]?.at ?? 0;
  console.log(`${greedy ? 'greedy ' : 'patient'}: most tokens in any ${PER} s window: ${mostInWindow(grants)}; ` +
    `last call at ${last.toFixed(3)} s`);
}
