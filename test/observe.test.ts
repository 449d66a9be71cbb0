// observe(): what a server says about its limit becomes shared state. The
// rules, on a made-up clock: caps, their order, their expiry, status, the
// state's round trip, and observe() on a limiter. Four real processes against
// a local server are in test/observe-processes.test.ts.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import {
  RateLimit, MemoryStore, observeState, reserve, earliest, statusOf, settle, parseState, shiftState, expiresAt,
  type Settings,
} from '../ratelimit.ts';

const calls: Settings = { limits: [{ maxCount: 100, per: 10, greedy: false, unit: 'calls' }], maxConcurrent: Infinity, serial: false };
const one = [1];

describe('rules', () => {
  it('a cap holds calls past the server\'s remaining until its reset, then lets them go', () => {
    let state = observeState(calls, undefined, 0, [{ unit: 'calls', remaining: 2, resetIn: 5 }]);
    const at: number[] = [];
    for (let i = 0; i < 4; i++) {
      const r = reserve(calls, state, 0, one);
      state = r.state;
      at.push(r.reservation.at);
    }
    // Two calls fit under the cap (spaced 0.1 s by the limit), the third waits for the reset at 5 s.
    assert.deepEqual(at, [0, 0.1, 5, 5.1]);
  });

  it('counts from the observed call: calls granted after it are spent against the remaining', () => {
    let state = observeState(calls, undefined, 0, []);
    const grants: number[][] = [];
    for (let i = 0; i < 3; i++) {
      const r = reserve(calls, state, 0, one);
      state = r.state;
      grants.push(r.reservation.granted as number[]);
    }
    assert.deepEqual(grants, [[1], [2], [3]]);
    // The answer to the first call says 1 left: the second and third already took it and one more.
    state = observeState(calls, state, 0.5, [{ unit: 'calls', remaining: 1, resetIn: 9 }], grants[0]);
    assert.equal(earliest(calls, state, 0.5, one), 9.5);
    // Without a base, the answer is taken as counting everything granted so far: one more may go.
    const fresh = observeState(calls, state, 0.5, [{ unit: 'calls', remaining: 1, resetIn: 9 }]);
    assert.equal(earliest(calls, fresh, 0.5, one), 9.5, 'the tighter cap from before still holds');
  });

  it('an older response read after a newer one never gives capacity back', () => {
    const start = observeState(calls, undefined, 0, []);
    const newer = observeState(calls, start, 1, [{ unit: 'calls', remaining: 0, resetIn: 4 }], [0]);
    const older = observeState(calls, newer, 1.2, [{ unit: 'calls', remaining: 20, resetIn: 3.8 }], [0]);
    assert.equal(earliest(calls, newer, 1.2, one), 5);
    assert.equal(earliest(calls, older, 1.2, one), 5);
    // Applied in either order, the outcome is the same.
    const reversed = observeState(calls, observeState(calls, start, 1, [{ unit: 'calls', remaining: 20, resetIn: 4 }], [0]),
      1.2, [{ unit: 'calls', remaining: 0, resetIn: 3.8 }], [0]);
    assert.equal(earliest(calls, reversed, 1.2, one), 5);
  });

  it('caps that another cap makes redundant are dropped, and at most 8 are kept, merged tighter', () => {
    let state = observeState(calls, undefined, 0, []);
    for (let i = 0; i < 20; i++) {
      state = observeState(calls, state, 0, [{ unit: 'calls', remaining: 100 - i, resetIn: 1 + i }], [0]);
    }
    const caps = state.lanes[0]?.caps ?? [];
    assert.ok(caps.length <= 8, `${caps.length} caps`);
    // Merging only tightens: the first cap's count with the later reset.
    for (let t = 0; t < 21; t += 0.5) {
      const most = Math.min(...Array.from({ length: 20 }, (_, i) => (1 + i > t ? 100 - i : Infinity)));
      const kept = Math.min(...caps.filter(([, until]) => until > t).map(([m]) => m));
      assert.ok(kept <= most, `at ${t}: kept ${kept}, said ${most}`);
    }
    const same = observeState(calls, state, 0, [{ unit: 'calls', remaining: 200, resetIn: 0.5 }], [0]);
    assert.deepEqual(same.lanes[0]?.caps, caps, 'a looser, shorter cap adds nothing');
  });

  it('a cap expires at its reset; units no limit counts are left alone', () => {
    const state = observeState(calls, undefined, 0, [{ unit: 'calls', remaining: 0, resetIn: 2 },
      { unit: 'tokens', remaining: 0, resetIn: 50 }]);
    assert.equal(earliest(calls, state, 0, one), 2);
    assert.equal(earliest(calls, state, 2, one), 2);
    assert.deepEqual(reserve(calls, state, 3, one).state.lanes[0]?.caps, undefined, 'expired caps are pruned');
  });

  it('status shows the tightest cap while it holds', () => {
    const state = observeState(calls, undefined, 0, [{ unit: 'calls', remaining: 5, resetIn: 8 },
      { unit: 'calls', remaining: 2, resetIn: 3 }]);
    assert.deepEqual(statusOf(calls, state, 1, one).limits[0]?.server, { remaining: 2, resetIn: 2 });
    assert.deepEqual(statusOf(calls, state, 4, one).limits[0]?.server, { remaining: 5, resetIn: 4 });
    assert.equal(statusOf(calls, state, 9, one).limits[0]?.server, undefined);
  });

  it('a settled extra is counted; a refund is not taken off the count', () => {
    const tokens: Settings = { limits: [{ maxCount: 1000, per: 10, greedy: true, unit: 'tokens' }],
      maxConcurrent: Infinity, serial: false };
    const start = observeState(tokens, undefined, 0, []);
    const r = reserve(tokens, start, 0, [100]);
    assert.equal(settle(tokens, r.state, r.reservation, [300], 0).state.lanes[0]?.granted, 300);
    assert.equal(settle(tokens, r.state, r.reservation, [10], 0).state.lanes[0]?.granted, 100);
  });

  it('caps and counts survive the state\'s round trip, a clock shift and a Redis expiry', () => {
    const state = observeState(calls, undefined, 100, [{ unit: 'calls', remaining: 3, resetIn: 60 }]);
    assert.deepEqual(parseState(JSON.parse(JSON.stringify(state))), state);
    assert.equal(parseState({ ...state, lanes: [{ caps: [[1, 'x']] }] }), undefined);
    assert.equal(parseState({ ...state, lanes: [{ granted: 1.5 }] }), undefined);
    assert.deepEqual(shiftState(state, -50, 50).lanes[0]?.caps, [[3, 110]]);
    assert.ok(expiresAt(state) >= 160);
  });

  it('observe() on a limiter: a 429 with Retry-After pauses every call; bad headers warn and change nothing', async () => {
    let now = 0;
    const limit = new RateLimit({ maxCount: 100, per: 10, store: new MemoryStore(() => now) });
    await limit.observe({ status: 429, headers: { 'retry-after': '30', 'x-ratelimit-remaining': '0',
      'x-ratelimit-reset': '30' } });
    assert.equal((await limit.status()).pausedFor, 30);
    now = 31;
    const warnings: string[] = [];
    const onWarning = (w: Error & { code?: string }) => warnings.push(`${w.code}: ${w.message}`);
    process.on('warning', onWarning);
    await limit.observe({ 'x-ratelimit-remaining': '-1', 'x-ratelimit-reset': '5' });
    await new Promise((r) => setImmediate(r));
    process.off('warning', onWarning);
    assert.match(warnings.join('\n'), /RATELIMIT_HEADER_IGNORED: ratelimit: observe\(\) ignored x-ratelimit-remaining: "-1"/);
    assert.equal((await limit.status()).nextIn, 0);
    await assert.rejects(limit.observe(undefined), TypeError);
  });
});
