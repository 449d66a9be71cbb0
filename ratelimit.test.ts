// The specification of ratelimit.ts, as tests. Grouped by behaviour:
//   options · reserve (patient) · reserve (greedy) · giveBack ·
//   RateLimit on an injected clock · real time
// The file store's tests are in test/filestore.test.ts (real files and
// processes) and test/filestore-rules.test.ts (its rules, on a made-up clock).
// The scheduling rules are tested on made-up clocks, without sleeping; only a
// few tests run in real time or across processes, with stated tolerances.
import { describe, it, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import {
  chmodSync, existsSync, linkSync, lstatSync, mkdirSync, readdirSync, readFileSync, statSync, symlinkSync, writeFileSync,
} from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import {
  RateLimit, RateLimitTimeoutError, MemoryStore, FileStore, reserve, giveBack, sharedClock, encodeOwnerRecord,
  type LimitState, type Reservation, type Settings,
} from './ratelimit.ts';
import { tempDir, maxInWindow, violations, ROOT, BAD_OPTIONS } from './test/helpers.ts';


// The core in its one-limit form, for the tables below.
interface Limit { maxCount: number; per: number; greedy: boolean }
const settingsOf = (l: Limit): Settings => ({ limits: [{ ...l, unit: 'calls' }], maxConcurrent: Infinity, serial: false });
function reserve1(l: Limit, state: LimitState | undefined, now: number, weight = 1): { state: LimitState; reservation: Reservation } {
  const out = reserve(settingsOf(l), state, now, [weight]);
  return { state: out.state, reservation: out.reservation! };
}
const giveBack1 = (l: Limit, state: LimitState, r: Reservation) => giveBack(settingsOf(l), state, r);
const nextOf = (state: LimitState | undefined) => state?.lanes[0]?.next;
// A greedy lane's runs, as one time per unit granted.
const grantsOf = (state: LimitState | undefined) => (state?.lanes[0]?.runs ?? []).flatMap(([t, n]) => Array<number>(n).fill(t));

// Runs reservations back to back on a made-up clock: each call arrives at
// the given time and gets the slot reserve() computes.
function schedule(limit: Limit, arrivals: number[], weight = 1): number[] {
  let state: LimitState | undefined;
  return arrivals.map((now) => {
    const r = reserve1(limit, state, now, weight);
    state = r.state;
    return r.reservation.at;
  });
}

describe('options', () => {
  const good = { maxCount: 2, per: 1 };
  for (const [name, override, type] of BAD_OPTIONS) {
    it(`rejects ${name} = ${String(Object.values(override)[0])} with a ${type.name} naming it`, () => {
      assert.throws(() => new RateLimit({ ...good, ...override } as never), (e: Error) => {
        assert.ok(e instanceof type, `expected ${type.name}, got ${e.constructor.name}: ${e.message}`);
        assert.match(e.message, new RegExp(`^ratelimit: ${name} must be`));
        return true;
      });
    });
  }

  it('names the value it got in the message', () => {
    assert.throws(() => new RateLimit({ maxCount: 0, per: 1 }), { message: 'ratelimit: maxCount must be a positive integer, got 0' });
    assert.throws(() => new RateLimit({ maxCount: 2, per: '5' as never }), { message: /got "5"$/ });
  });

  it('rejects a missing options object, and file together with store', () => {
    assert.throws(() => new RateLimit(undefined as never), TypeError);
    assert.throws(() => new RateLimit({ ...good, file: 'x.json', store: new MemoryStore() }), /either file or store/);
  });

  it('checks wait options at the call: weight, maxWait, signal', async () => {
    const limit = new RateLimit({ maxCount: 3, per: 1 });
    for (const weight of [0, -1, 1.5, 4, NaN]) {
      await assert.rejects(limit.wait({ weight }), (e: Error) => e instanceof RangeError && /weight must be an integer from 1 to maxCount \(3\)/.test(e.message));
      assert.throws(() => limit.waitSync({ weight }), RangeError);
      assert.throws(() => limit.tryAcquire({ weight }), RangeError);
    }
    await assert.rejects(limit.wait({ weight: '1' as never }), TypeError);
    await assert.rejects(limit.wait({ maxWait: -1 }), (e: Error) => e instanceof RangeError && /^ratelimit: maxWait must be/.test(e.message));
    await assert.rejects(limit.wait({ maxWait: NaN }), RangeError);
    await assert.rejects(limit.wait({ maxWait: '1' as never }), TypeError);
    await assert.rejects(limit.wait({ signal: 'stop' as never }), (e: Error) => e instanceof TypeError && /signal must be an AbortSignal/.test(e.message));
    assert.equal(limit.tryAcquire(), true, 'no slot was taken by the rejected calls');
  });

  it('defaults: patient, in memory', () => {
    const limit = new RateLimit({ maxCount: 2, per: 5 });
    assert.equal(limit.greedy, false);
    assert.ok(limit.store instanceof MemoryStore);
    assert.ok(new RateLimit({ maxCount: 2, per: 5, file: 'x.json' }).store instanceof FileStore);
  });
});

describe('reserve (patient)', () => {
  const limit = { maxCount: 4, per: 2, greedy: false }; // one call every 0.5 s

  it('lets the first call go at once', () => {
    assert.deepEqual(schedule(limit, [100]), [100]);
  });

  it('spaces back-to-back calls exactly per/maxCount apart, from the previous slot, so N calls take (N-1)·interval', () => {
    const at = schedule(limit, Array(1000).fill(100));
    at.forEach((t, i) => assert.ok(Math.abs(t - (100 + i * 0.5)) < 1e-9, `call ${i} at ${t}`));
  });

  it('does not drift when callers arrive late (slots come from the previous slot, not from when a timer fired)', () => {
    // Each caller arrives 3 ms after its predecessor's slot, as if its timer fired late.
    let state: LimitState | undefined;
    let prev = 100;
    for (let i = 0; i < 100; i++) {
      const r = reserve1(limit, state, i === 0 ? 100 : prev + 0.003, 1);
      state = r.state;
      if (i > 0) assert.ok(Math.abs(r.reservation.at - (prev + 0.5)) < 1e-9);
      prev = r.reservation.at;
    }
    assert.ok(Math.abs(prev - (100 + 99 * 0.5)) < 1e-9);
  });

  it('does not bank a burst over an idle period', () => {
    const at = schedule(limit, [100, 200, 200, 200]);
    assert.deepEqual(at, [100, 200, 200.5, 201]);
  });

  it('counts a call of weight w as w calls', () => {
    const at = schedule(limit, [100, 100, 100], 3);
    assert.deepEqual(at, [100, 101.5, 103]);
  });

  it('handles maxCount 1, tiny and huge per', () => {
    assert.deepEqual(schedule({ maxCount: 1, per: 3, greedy: false }, [0, 0, 0]), [0, 3, 6]);
    const tiny = schedule({ maxCount: 1000, per: 1e-6, greedy: false }, [5, 5, 5]);
    assert.ok(Math.abs(tiny[2] - (5 + 2e-9)) < 1e-15);
    const month = 30 * 24 * 3600;
    assert.deepEqual(schedule({ maxCount: 1, per: month, greedy: false }, [0, 1]), [0, month]);
  });
});

describe('reserve (greedy)', () => {
  const limit = { maxCount: 3, per: 2, greedy: true };

  it('lets maxCount calls through at once, then waits for the oldest to leave the window', () => {
    assert.deepEqual(schedule(limit, [10, 10, 10, 10, 10, 10, 10]), [10, 10, 10, 12, 12, 12, 14]);
  });

  it('is a sliding window: grants spread out are released one by one as each leaves the window', () => {
    assert.deepEqual(schedule(limit, [10, 10.5, 11, 11.2, 11.2, 13]), [10, 10.5, 11, 12, 12.5, 13]);
  });

  it('never lets a fixed-window boundary through twice the limit (the SQLite ancestor let 5 through in 0.1 s for 3 per 2 s)', () => {
    const at = schedule(limit, [1.95, 1.96, 1.97, 2.0, 2.01, 2.02]);
    assert.equal(maxInWindow(at, 2, 1e-9), 3);
    [3.95, 3.96, 3.97].forEach((t, i) => assert.ok(Math.abs(at[3 + i] - t) < 1e-9, `${at[3 + i]} vs ${t}`));
  });

  it('grants each call at the earliest instant that keeps every window within maxCount (random arrivals, weights)', () => {
    let seed = 42;
    const random = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
    for (let trial = 0; trial < 50; trial++) {
      const l = { maxCount: 1 + Math.floor(random() * 6), per: 0.5 + random() * 3, greedy: true };
      let state: LimitState | undefined;
      let now = 0;
      const grants: number[] = [];
      for (let i = 0; i < 60; i++) {
        now += random() < 0.3 ? random() * 3 : random() * 0.2;
        const w = 1 + Math.floor(random() * l.maxCount);
        const r = reserve1(l, state, now, w);
        const at = r.reservation.at;
        assert.ok(at >= now && at >= (grants.at(-1) ?? -Infinity), 'not before now, and first come first served');
        // Earliest: a moment earlier (but not before now or the last grant) would overfill a window.
        const earlier = at - 1e-6;
        if (earlier >= now && earlier >= (grants.at(-1) ?? -Infinity)) {
          const inWindow = grants.filter((g) => g > earlier - l.per).length;
          assert.ok(inWindow + w > l.maxCount, `trial ${trial} call ${i}: could have gone at ${earlier}`);
        }
        for (let k = 0; k < w; k++) grants.push(at);
        state = r.state;
        assert.ok((state.lanes[0]?.runs?.length ?? 0) <= 128, 'state holds at most 128 runs');
      }
      // No window [t, t+per) holds more than maxCount.
      assert.ok(maxInWindow(grants, l.per, 1e-9) <= l.maxCount, `trial ${trial}`);
    }
  });

  it('drops grants that left the window, so an idle limit has a small state', () => {
    const r1 = reserve1(limit, undefined, 10, 3);
    const r2 = reserve1(limit, r1.state, 100, 1);
    assert.deepEqual(grantsOf(r2.state), [100]);
  });
});

describe('giveBack', () => {
  it('patient: undoes the last reservation', () => {
    const limit = { maxCount: 2, per: 1, greedy: false };
    const a = reserve1(limit, undefined, 10);
    const b = reserve1(limit, a.state, 10);
    const undone = giveBack1(limit, b.state, b.reservation)!;
    assert.equal(nextOf(undone), nextOf(a.state));
    assert.equal(reserve1(limit, undone, 10).reservation.at, 10.5, 'the next caller gets the slot back');
    // Undoing the only reservation frees its slot: the next caller goes as on a fresh state.
    assert.equal(reserve1(limit, giveBack1(limit, a.state, a.reservation)!, 10).reservation.at, 10, 'as on a fresh state');
  });

  it('patient: leaves a middle reservation spent, since later slots were spaced from it', () => {
    const limit = { maxCount: 2, per: 1, greedy: false };
    const a = reserve1(limit, undefined, 10);
    const b = reserve1(limit, a.state, 10);
    assert.equal(giveBack1(limit, b.state, a.reservation), undefined);
  });

  it('greedy: removes the grants of the reservation, whatever came after', () => {
    const limit = { maxCount: 2, per: 1, greedy: true };
    const a = reserve1(limit, undefined, 10);
    const b = reserve1(limit, a.state, 10);
    const c = reserve1(limit, b.state, 10);
    assert.equal(c.reservation.at, 11);
    // The lane holds every unit still in a window, so b's is simply removed.
    const undone = giveBack1(limit, c.state, b.reservation)!;
    assert.deepEqual(grantsOf(undone), [10, 11]);
    assert.equal(reserve1(limit, undone, 10).reservation.at, 11);
  });

  it('greedy: no sequence of reservations and give-backs ever overfills a window', () => {
    let seed = 7;
    const random = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
    for (let trial = 0; trial < 200; trial++) {
      const limit = { maxCount: 1 + Math.floor(random() * 4), per: 1, greedy: true };
      let state: LimitState | undefined;
      let now = 0;
      const live: Reservation[] = [];
      for (let i = 0; i < 40; i++) {
        now += random() * 0.3;
        if (live.length && random() < 0.3) {
          const [r] = live.splice(Math.floor(random() * live.length), 1);
          if (r.at > now) state = giveBack1(limit, state!, r) ?? state; // only a slot still ahead can be aborted
          else live.push(r);
        } else {
          const r = reserve1(limit, state, now, 1 + Math.floor(random() * limit.maxCount));
          state = r.state;
          live.push(r.reservation);
        }
      }
      const times = live.flatMap((r) => Array<number>(r.cost[0]!).fill(r.at)).sort((a, b) => a - b);
      assert.ok(maxInWindow(times, 1, 1e-9) <= limit.maxCount, `trial ${trial}: ${times}`);
    }
  });
});

describe('RateLimit on an injected clock', () => {
  function fake(options: { maxCount: number; per: number; greedy?: boolean }) {
    const clock = { now: 1000 };
    const limit = new RateLimit({ ...options, store: new MemoryStore(() => clock.now) });
    return { clock, limit };
  }

  it('tryAcquire takes a free slot and refuses a busy one without taking it', () => {
    const { clock, limit } = fake({ maxCount: 2, per: 1 });
    assert.equal(limit.tryAcquire(), true);
    assert.equal(limit.tryAcquire(), false);
    clock.now += 0.4999;
    assert.equal(limit.tryAcquire(), false);
    clock.now += 0.0001;
    assert.equal(limit.tryAcquire(), true);
    assert.equal(limit.tryAcquire({ weight: 2 }), false);
  });

  it('maxWait rejects at once with RateLimitTimeoutError saying how long, and takes no slot', async () => {
    const { clock, limit } = fake({ maxCount: 1, per: 10 });
    assert.equal(await limit.wait(), 0);
    clock.now += 4;
    const started = performance.now();
    await assert.rejects(limit.wait({ maxWait: 5 }), (e: Error) => {
      assert.ok(e instanceof RateLimitTimeoutError);
      assert.equal(e.wouldWait, 6);
      assert.equal(e.maxWait, 5);
      assert.match(e.message, /6\.000 s away, more than maxWait \(5 s\)/);
      return true;
    });
    assert.ok(performance.now() - started < 50, 'rejected without waiting');
    assert.throws(() => limit.waitSync({ maxWait: 5 }), RateLimitTimeoutError);
    clock.now += 1;
    // The refused calls took nothing: the slot is still where it was, now 5 s away.
    assert.throws(() => limit.waitSync({ maxWait: 4.999 }), (e: RateLimitTimeoutError) => e.wouldWait === 5);
  });

  it('wait resolves to the seconds the call was held back', async () => {
    const { limit } = fake({ maxCount: 1000, per: 1 });
    assert.equal(await limit.wait(), 0);
    const waited = await limit.wait();
    assert.ok(Math.abs(waited - 0.001) < 1e-12);
  });

  it('an abort rejects with signal.reason and gives the slot back', async () => {
    const { limit } = fake({ maxCount: 1, per: 0.2 });
    await limit.wait();
    const controller = new AbortController();
    const pending = limit.wait({ signal: controller.signal });
    const reason = new Error('no longer needed');
    setTimeout(() => controller.abort(reason), 20);
    await assert.rejects(pending, (e) => e === reason);
    // The fake clock has not moved: the aborted slot (0.2 s away) is free again,
    // so a new call gets the same slot rather than the one after it.
    assert.throws(() => limit.waitSync({ maxWait: 0.1 }), (e: RateLimitTimeoutError) => Math.abs(e.wouldWait - 0.2) < 1e-9);
  });

  it('an already aborted signal rejects at once and takes nothing', async () => {
    const { limit } = fake({ maxCount: 1, per: 1 });
    const reason = new Error('stop');
    await assert.rejects(limit.wait({ signal: AbortSignal.abort(reason) }), (e) => e === reason);
    assert.equal(limit.tryAcquire(), true);
  });

  it('waitSync and tryAcquire need a store with updateSync', async () => {
    const asyncOnly = { name: 'an async store', update: async () => 0 as never };
    const limit = new RateLimit({ maxCount: 1, per: 1, store: asyncOnly });
    assert.throws(() => limit.waitSync(), /waitSync needs a store with updateSync/);
    assert.throws(() => limit.tryAcquire(), /tryAcquire needs a store with updateSync/);
  });
});

describe('real time', () => {
  // Timers here fire up to ~1 ms early and a few ms late under load. The
  // library checks the clock on waking, so it is never early; lateness is
  // allowed up to LATE_MS per grant (generous, since CI shares 2 cores).
  const LATE_MS = 25;

  it('patient: N back-to-back calls take (N-1)·per/maxCount, never a grant early, no drift', async () => {
    const limit = new RateLimit({ maxCount: 50, per: 1 }); // 20 ms apart
    const start = performance.now();
    const at: number[] = [];
    for (let i = 0; i < 26; i++) {
      await limit.wait();
      at.push(performance.now() - start);
    }
    at.forEach((t, i) => assert.ok(t >= i * 20 - 0.001, `grant ${i} early: ${t.toFixed(3)} ms < ${i * 20} ms`));
    // Total: 25 intervals = 500 ms. Drift would add the lateness of every
    // timer (ratemate measured 3 ms per call: 75 ms here); we allow one late timer.
    assert.ok(at[25] < 500 + LATE_MS, `took ${at[25].toFixed(1)} ms for 500 ms of slots`);
  });

  it('greedy: maxCount at once, then the rest one window later', async () => {
    const limit = new RateLimit({ maxCount: 5, per: 0.3, greedy: true });
    const start = performance.now();
    const at = await Promise.all(Array.from({ length: 8 }, async () => { await limit.wait(); return performance.now() - start; }));
    assert.ok(at.slice(0, 5).every((t) => t < LATE_MS), `burst: ${at.map((t) => t.toFixed(1))}`);
    assert.ok(at.slice(5).every((t) => t >= 300 - 0.001 && t < 300 + LATE_MS), `after the window: ${at.map((t) => t.toFixed(1))}`);
  });

  it('a loop of waits that each sleep under a millisecond still lets the event loop run', async () => {
    // The end of every sleep blocks the thread; a sleep must still start from
    // the event loop, or timers, I/O and signal handlers would never run
    // between such calls (a worker would not hear its SIGTERM).
    const limit = new RateLimit({ maxCount: 2000, per: 1 }); // 0.5 ms apart
    let ticks = 0;
    const interval = setInterval(() => { ticks++; }, 1);
    const start = performance.now();
    try {
      for (let i = 0; i < 100; i++) await limit.wait();
    } finally {
      clearInterval(interval);
    }
    const took = performance.now() - start;
    // About 50 ms of waits: a 1 ms interval fires dozens of times; 5 allows for a loaded machine.
    assert.ok(ticks >= 5, `the interval ran ${ticks} times in ${took.toFixed(1)} ms of waits`);
  });

  it('waitSync blocks the thread until the slot, never early', () => {
    const limit = new RateLimit({ maxCount: 10, per: 0.5 }); // 50 ms apart
    const start = performance.now();
    limit.waitSync();
    const waited = limit.waitSync();
    const took = performance.now() - start;
    assert.ok(Math.abs(waited - 0.05) < 0.002, `reported ${waited}`);
    assert.ok(took >= 50 - 0.001 && took < 50 + LATE_MS, `took ${took.toFixed(2)} ms`);
  });

  it('waits longer than setTimeout can (2^31-1 ms) do not fire early', async () => {
    // A month-long slot. Node fires an over-long setTimeout after ~1 ms; if
    // the library passed the delay through, this wait would resolve at once.
    const limit = new RateLimit({ maxCount: 1, per: 30 * 24 * 3600 });
    await limit.wait();
    const controller = new AbortController();
    let resolved = false;
    const pending = limit.wait({ signal: controller.signal }).then(() => { resolved = true; });
    await new Promise((r) => setTimeout(r, 100));
    assert.equal(resolved, false, 'the month-long wait ended early');
    controller.abort();
    await assert.rejects(pending, { name: 'AbortError' });
  });

  it('an abort during a real wait rejects promptly', async () => {
    const limit = new RateLimit({ maxCount: 1, per: 10 });
    await limit.wait();
    const start = performance.now();
    await assert.rejects(limit.wait({ signal: AbortSignal.timeout(50) }), { name: 'TimeoutError' });
    const took = performance.now() - start;
    assert.ok(took >= 49 && took < 50 + LATE_MS * 4, `took ${took.toFixed(1)} ms`);
  });
});
