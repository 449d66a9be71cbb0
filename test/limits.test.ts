// The specification of several limits, costs, permits, pauses, concurrency
// slots and serial mode, as tests on made-up clocks (no sleeping except where
// a test says so). Grouped by behaviour:
//   several limits (core) · settle (core) · pause (core) · slots (core) ·
//   options · permits on an injected clock · pause and status · retryAfter
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import {
  RateLimit, RateLimitMismatchError, RateLimitTimeoutError, MemoryStore,
  reserve, admit, recheck, renewSlots, giveBack, settle, release, pauseState, reschedule, statusOf, parseState, shiftState, expiresAt, retryAfter,
  type LimitSettings, type LimitState, type Reservation, type Settings, type SlotRequest, type Transaction,
} from '../ratelimit.ts';
import { runInNewContext } from 'node:vm';
import { setFlagsFromString } from 'node:v8';

// The warnings emitted while f runs. (Written here rather than imported, as
// test/recipes.test.ts runs this file alone against the memory-only copy.)
async function warningsDuring(f: () => unknown): Promise<string[]> {
  const seen: string[] = [];
  const on = (w: Error) => seen.push(w.message);
  process.on('warning', on);
  try {
    await f();
    await new Promise((r) => setImmediate(r));
  } finally {
    process.off('warning', on);
  }
  return seen;
}

const calls = (maxCount: number, per: number, greedy = false): LimitSettings => ({ maxCount, per, greedy, unit: 'calls' });
const tokens = (maxCount: number, per: number, greedy = false): LimitSettings => ({ maxCount, per, greedy, unit: 'tokens' });
const settings = (limits: LimitSettings[], extra: Partial<Settings> = {}): Settings => ({ limits, maxConcurrent: Infinity, serial: false, ...extra });
// The longest window the options accept: a year and a day.
const MAX_PER = 366 * 86_400;

// A seeded generator, so a failing trial can be replayed.
function rng(seed: number): () => number {
  return () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
}

interface Grant { at: number; cost: number[] }

/**
 * The brute-force checker: for each limit, every pair of grants charged to
 * it (patient), or every window (t - per, t] (greedy), against the rule.
 * Returns a list of what breaks.
 */
function broken(s: Settings, grants: Grant[]): string[] {
  const out: string[] = [];
  s.limits.forEach((l, i) => {
    const mine = grants.filter((g) => (g.cost[i] ?? 0) > 0).sort((a, b) => a.at - b.at);
    if (!l.greedy) {
      for (let k = 1; k < mine.length; k++) {
        const gap = mine[k]!.at - mine[k - 1]!.at;
        const need = (mine[k - 1]!.cost[i]! * l.per) / l.maxCount;
        if (gap < need - 1e-9) out.push(`limit ${i}: grants at ${mine[k - 1]!.at} and ${mine[k]!.at} are ${gap} apart, less than ${need}`);
      }
    } else {
      for (const g of mine) {
        const units = mine.filter((h) => h.at > g.at - l.per + 1e-9 && h.at <= g.at).reduce((sum, h) => sum + h.cost[i]!, 0);
        if (units > l.maxCount) out.push(`limit ${i}: ${units} units in the window ending at ${g.at}`);
      }
    }
  });
  return out;
}

// Whether a call of `cost` could have gone at `t`, given the grants before it.
function fits(s: Settings, grants: Grant[], t: number, cost: number[]): boolean {
  return broken(s, [...grants, { at: t, cost }]).length === 0;
}

describe('several limits (core)', () => {
  it('a call goes at the earliest time every limit allows, and is charged in all of them or none', () => {
    // 2 calls/s patient, and 10 tokens per 2 s greedy.
    const s = settings([calls(2, 1), tokens(10, 2, true)]);
    let state: LimitState | undefined;
    const go = (now: number, cost: number[]) => {
      const out = reserve(s, state, now, cost);
      state = out.state;
      return out.reservation!.at;
    };
    assert.equal(go(0, [1, 6]), 0);
    assert.equal(go(0, [1, 3]), 0.5, 'the calls limit governs');
    assert.equal(go(0, [1, 6]), 2, 'the tokens limit governs: 9 of 10 used until t = 2');
    assert.equal(go(0, [0, 1]), 2, 'a call charged no calls is not held by the calls limit (1 token left until the first run leaves at 2)');
  });

  it('random arrivals, costs and modes: the brute-force checker finds nothing, and no slot could have been earlier', () => {
    const random = rng(99);
    for (let trial = 0; trial < 150; trial++) {
      const limits: LimitSettings[] = [];
      const n = 1 + Math.floor(random() * 3);
      for (let i = 0; i < n; i++) {
        const l = { maxCount: 1 + Math.floor(random() * 8), per: 0.5 + random() * 3, greedy: random() < 0.5, unit: i === 0 ? 'calls' : `u${i}` };
        limits.push(l);
      }
      const s = settings(limits.sort((a, b) => (a.unit < b.unit ? -1 : 1)));
      let state: LimitState | undefined;
      const grants: Grant[] = [];
      let now = 0;
      for (let k = 0; k < 40; k++) {
        now += random() < 0.3 ? random() * 3 : random() * 0.2;
        const cost = s.limits.map((l) => (random() < 0.2 ? 0 : 1 + Math.floor(random() * l.maxCount)));
        const out = reserve(s, state, now, cost);
        const at = out.reservation!.at;
        assert.ok(at >= now, 'never before now');
        // Earliest: a moment earlier would break a limit, or be before the
        // last grant of a limit it is charged to (first come, first served).
        const earlier = at - 1e-6;
        const inOrder = s.limits.every((_, i) => !cost[i] || grants.every((g) => !g.cost[i] || g.at <= earlier));
        if (earlier >= now && inOrder) assert.ok(!fits(s, grants, earlier, cost), `trial ${trial} call ${k}: could have gone at ${earlier}`);
        grants.push({ at, cost });
        state = out.state;
      }
      assert.deepEqual(broken(s, grants), [], `trial ${trial}`);
    }
  });

  it('greedy state stays small for a big limit: [time, units] runs, at most 128 of them', () => {
    const s = settings([tokens(1_000_000, 60, true)]);
    let state: LimitState | undefined;
    const grants: Grant[] = [];
    for (let k = 0; k < 5_000; k++) {
      const now = k * 0.01;
      const out = reserve(s, state, now, [500_000 > k ? 150 : 1]);
      state = out.state;
      grants.push({ at: out.reservation!.at, cost: [150] });
    }
    const runs = state!.lanes[0]!.runs!;
    assert.ok(runs.length <= 128, `${runs.length} runs`);
    assert.ok(JSON.stringify(state).length < 6_000, `${JSON.stringify(state).length} bytes`);
    assert.deepEqual(broken(s, grants), []);
  });

  it('merging runs only ever delays capacity: a window never holds more than maxCount', () => {
    const random = rng(5);
    const s = settings([calls(400, 1, true)]);
    let state: LimitState | undefined;
    const grants: Grant[] = [];
    let now = 0;
    for (let k = 0; k < 3_000; k++) {
      now += random() * 0.004;
      const out = reserve(s, state, now, [1]);
      state = out.state;
      grants.push({ at: out.reservation!.at, cost: [1] });
    }
    assert.deepEqual(broken(s, grants), []);
    // And it still lets through close to the limit: within 5% of 400/s.
    const last = grants[grants.length - 1]!.at;
    assert.ok(grants.length / last > 0.95 * 400 || last < 7.6, `${(grants.length / last).toFixed(1)} per s`);
  });

  it('giveBack with several limits undoes each limit where nothing later depends on it', () => {
    const s = settings([calls(2, 1), tokens(4, 1, true)]);
    const a = reserve(s, undefined, 10, [1, 2]);
    const b = reserve(s, a.state, 10, [1, 2]);
    const undone = giveBack(s, b.state, b.reservation!)!;
    const again = reserve(s, undone, 10, [1, 2]);
    assert.equal(again.reservation!.at, b.reservation!.at, 'the next caller gets the same slot back');
    // a is not the last in the calls limit: it stays spent there, but its tokens come back.
    const middle = giveBack(s, b.state, a.reservation!)!;
    assert.equal(middle.lanes[0]!.next, b.state.lanes[0]!.next);
    assert.deepEqual(middle.lanes[1]!.runs, [[10.5, 2]], "only b's tokens are left");
  });

  it('aborting a wait of weight 500,000 gives it back (no spread of a huge array)', () => {
    const s = settings([calls(1_000_000, 1, true)]);
    const a = reserve(s, undefined, 0, [600_000]);
    const b = reserve(s, a.state, 0, [500_000]);
    assert.equal(b.reservation!.at, 1);
    const undone = giveBack(s, b.state, b.reservation!)!;
    assert.equal(reserve(s, undone, 0, [400_000]).reservation!.at, 0);
  });
});

describe('settle (core)', () => {
  it('patient: an overrun pushes later slots, a refund of the last reservation pulls them back', () => {
    const s = settings([tokens(10, 1)]); // 0.1 s per token
    const a = reserve(s, undefined, 0, [5]);
    const more = settle(s, a.state, a.reservation!, [8], 0);
    assert.ok(Math.abs(more.state.lanes[0]!.next! - 0.8) < 1e-12);
    const less = settle(s, more.state, more.reservation, [2], 0);
    assert.ok(Math.abs(less.state.lanes[0]!.next! - 0.2) < 1e-12, 'settled again, from the last settle');
    assert.deepEqual(less.reservation.cost, [2]);
  });

  it('patient: a refund of a middle reservation changes nothing (later slots were spaced from it)', () => {
    const s = settings([tokens(10, 1)]);
    const a = reserve(s, undefined, 0, [5]);
    const b = reserve(s, a.state, 0, [1]);
    const out = settle(s, b.state, a.reservation!, [1], 0);
    assert.equal(out.state.lanes[0]!.next, b.state.lanes[0]!.next);
    assert.deepEqual(out.reservation.cost, [5], 'still charged the estimate');
  });

  it('greedy: the real cost counts at the call\'s time, in its window', () => {
    const s = settings([tokens(100, 60, true)]);
    const a = reserve(s, undefined, 0, [10]);
    const over = settle(s, a.state, a.reservation!, [90], 1);
    assert.equal(reserve(s, over.state, 1, [20]).reservation!.at, 60, 'the overrun fills the window until the call leaves it');
    const under = settle(s, a.state, a.reservation!, [1], 1);
    assert.deepEqual(under.state.lanes[0]!.runs, [[0, 1]]);
  });

  it('random reservations, refunds and give-backs: counting each call at what it is finally charged, no limit breaks', () => {
    const random = rng(11);
    for (let trial = 0; trial < 150; trial++) {
      const s = settings([calls(1 + Math.floor(random() * 5), 1, random() < 0.5), tokens(20, 1 + random(), random() < 0.5)]);
      let state: LimitState | undefined;
      let now = 0;
      const live: Reservation[] = [];
      for (let k = 0; k < 40; k++) {
        now += random() * 0.3;
        const pick = random();
        if (live.length && pick < 0.25) {
          const i = Math.floor(random() * live.length);
          const r = live[i]!;
          const out = settle(s, state!, r, [r.cost[0]!, Math.floor(random() * (r.cost[1]! + 1))], now);
          state = out.state;
          live[i] = out.reservation;
        } else if (live.length && pick < 0.4) {
          const [r] = live.splice(Math.floor(random() * live.length), 1);
          if (r!.at > now) state = giveBack(s, state!, r!) ?? state; // only a slot still ahead can be aborted
          else live.push(r!);
        } else {
          const out = reserve(s, state, now, [1 + Math.floor(random() * s.limits[0]!.maxCount), Math.floor(random() * 21)]);
          state = out.state;
          live.push(out.reservation!);
        }
      }
      assert.deepEqual(broken(s, live.map((r) => ({ at: r.at, cost: r.cost }))), [], `trial ${trial}`);
    }
  });

  it('after an overrun is settled, later calls keep the limit with the real cost counted', () => {
    const random = rng(3);
    for (let trial = 0; trial < 100; trial++) {
      const s = settings([tokens(50, 1 + random(), random() < 0.5)]);
      let state: LimitState | undefined;
      let now = 0;
      const grants: Grant[] = [];
      for (let k = 0; k < 30; k++) {
        now += random() * 0.2;
        const estimate = 1 + Math.floor(random() * 20);
        const out = reserve(s, state, now, [estimate]);
        // The call goes, then learns it cost up to twice the estimate (within maxCount).
        const actual = Math.min(50, estimate + Math.floor(random() * estimate));
        const settled = settle(s, out.state, out.reservation!, [actual], out.reservation!.at);
        state = settled.state;
        // A window may be over where an overrun itself happened (the call had
        // gone). What must hold: each new grant, with the grants before it
        // at their real costs, keeps its own window (greedy) or its spacing
        // from the one before (patient).
        const at = out.reservation!.at;
        const l = s.limits[0]!;
        if (l.greedy) {
          const units = grants.filter((g) => g.at > at - l.per + 1e-9).reduce((sum, g) => sum + g.cost[0]!, 0);
          assert.ok(units + estimate <= l.maxCount, `trial ${trial} call ${k}: ${units + estimate} units in the window ending at ${at}`);
        } else if (grants.length) {
          const prev = grants[grants.length - 1]!;
          assert.ok(at >= prev.at + (prev.cost[0]! * l.per) / l.maxCount - 1e-9, `trial ${trial} call ${k}: ${at} too close to ${prev.at}`);
        }
        grants.push({ at, cost: [actual] });
      }
    }
  });
});

describe('pause (core)', () => {
  it('no reservation goes before the pause ends, and a pause only extends', () => {
    const s = settings([calls(10, 1)]);
    const paused = pauseState(s, undefined, 100, 30);
    assert.equal(reserve(s, paused, 101, [1]).reservation!.at, 130);
    assert.equal(pauseState(s, paused, 101, 5).pausedUntil, 130, 'a shorter pause does not shorten it');
    assert.equal(pauseState(s, paused, 101, 60).pausedUntil, 161);
  });

  it('a sleeper that wakes to a pause is rescheduled after it, spaced as before (no burst when the pause ends)', () => {
    const s = settings([calls(10, 1)]); // one every 0.1 s
    let state: LimitState | undefined;
    const rs: Reservation[] = [];
    for (let k = 0; k < 5; k++) {
      const out = reserve(s, state, 0, [1]);
      state = out.state;
      rs.push(out.reservation!);
    }
    state = pauseState(s, state, 0.05, 10);
    const moved = rs.slice(1).map((r) => {
      const out = reschedule(s, state!, r, r.at);
      state = out.state;
      return out.reservation.at;
    });
    moved.forEach((t, k) => assert.ok(Math.abs(t - (10.05 + 0.1 * k)) < 1e-9, `sleeper ${k} at ${t}`));
  });
});

describe('concurrency slots (core)', () => {
  const s = settings([calls(1000, 1)], { maxConcurrent: 2 });
  // One process's request: its waiters (slot id, and when each began), on a made-up clock.
  const ask = (id: string, holder: string, waiters: Array<[string, number]>, dead: string[] = [], maxWait = Infinity): SlotRequest => ({
    id, holder, slotLease: 60, queueLease: 2, isDead: (h) => dead.includes(h),
    waiters: waiters.map(([slot, since]) => ({ slot, cost: [1], since, maxWait })),
  });
  const granted = (out: { results: Array<Reservation | number> }) => out.results.map((r) => (typeof r === 'object' ? r.slot : r));

  it('gives at most maxConcurrent slots, and none while all are held', () => {
    const a = admit(s, undefined, 0, ask('A', 'p1', [['a', 0], ['b', 0], ['c', 0]]));
    assert.deepEqual(granted(a), ['a', 'b'], 'two of three waiters get a slot');
    assert.deepEqual(a.state?.queue?.map((p) => [p.id, p.n]), [['A', 1]], 'the third keeps the process\'s place, counting one waiter');
    const b = admit(s, a.state, 0, ask('B', 'p2', [['d', 0.1]]));
    assert.deepEqual(granted(b), [], 'no slot while both are held');
    assert.equal(statusOf(s, b.state, 0.2, [1]).waiting, 2, 'status counts waiting calls, not places');
    assert.equal(admit(s, b.state, 0.5, ask('B', 'p2', [['d', 0.1]])).state, undefined, 'polling again soon after writes nothing');
  });

  it('first come, first served across processes: a freed slot goes to the process whose oldest waiter began first', () => {
    const a = admit(s, undefined, 0, ask('A', 'p1', [['a', 0], ['b', 0]]));
    const waiting = admit(s, a.state, 0.1, ask('B', 'p2', [['w', 0.1]])).state!;
    const r = a.results[0] as Reservation;
    // A releases a and, in the same transaction, asks for a slot for a newcomer that began at 1.
    const freed = release(s, waiting, r, 1);
    const newcomer = admit(s, freed, 1, ask('A', 'p1', [['a2', 1]]));
    assert.deepEqual(granted(newcomer), [], 'the releaser\'s newcomer is queued behind w');
    assert.deepEqual(newcomer.state?.queue?.map((p) => p.id), ['B', 'A'], 'the queue is ordered by when each oldest waiter began');
    const w = admit(s, newcomer.state, 1.01, ask('B', 'p2', [['w', 0.1]]));
    assert.deepEqual(granted(w), ['w'], 'w, first in the queue, gets the slot');
    assert.deepEqual(w.state?.queue?.map((p) => p.id), ['A'], 'and B gives up its place, having no one left waiting');
    // Equally, A's own older waiter goes before B's newer one.
    const older = admit(s, release(s, w.state!, a.results[1] as Reservation, 2), 2, ask('A', 'p1', [['a2', 1]]));
    assert.deepEqual(granted(older), ['a2']);
  });

  it('a lapsed place that comes back keeps its order: it is ordered by when its waiter began, not when it came back', () => {
    const a = admit(s, undefined, 0, ask('A', 'p1', [['a', 0], ['b', 0]]));
    const b = admit(s, a.state, 0, ask('B', 'p2', [['x', 0.5]])).state!;
    const c = admit(s, b, 3, ask('C', 'p3', [['y', 3]])).state!; // B's place has lapsed at 2
    assert.deepEqual(c.queue?.map((p) => p.id), ['C']);
    const back = admit(s, c, 3.1, ask('B', 'p2', [['x', 0.5]])).state!;
    assert.deepEqual(back.queue?.map((p) => p.id), ['B', 'C']);
  });

  it('a queued process that is dead, or stopped renewing its place, does not hold the queue up', () => {
    const a = admit(s, undefined, 0, ask('A', 'p1', [['a', 0], ['b', 0]]));
    const queued = admit(s, a.state, 0, ask('G', 'dead', [['gone', 0]])).state!; // its place lapses at 2
    const freed = release(s, queued, a.results[0] as Reservation, 1);
    assert.deepEqual(granted(admit(s, freed, 1, ask('N', 'p3', [['n', 1]]))), [], 'its place still runs');
    assert.deepEqual(granted(admit(s, freed, 1, ask('N', 'p3', [['n', 1]], ['dead']))), ['n'], 'a dead waiter is passed over');
    assert.deepEqual(granted(admit(s, freed, 2.01, ask('N', 'p3', [['n', 2]]))), ['n'], 'a lapsed place is passed over');
    const gaveUp = admit(s, queued, 1, ask('G', 'dead', []));
    assert.equal(gaveUp.state?.queue, undefined, 'a process with no one left waiting gives up its place');
  });

  it('judges each holder once per transaction, and never its own', () => {
    const asked: string[] = [];
    const many = admit(s, undefined, 0, ask('A', 'p1', [['a', 0], ['b', 0]])).state!;
    const queue = Array.from({ length: 50 }, (_, k) => ({ id: `Q${k}`, holder: k % 2 ? 'p2' : 'p3', until: 2, since: 0.5, n: 1 }));
    const req = ask('A', 'p1', [['c', 1]]);
    admit(s, { ...many, queue }, 1, { ...req, isDead: (h) => { asked.push(h); return false; } });
    assert.deepEqual(asked.sort(), ['p2', 'p3']);
  });

  it('reclaims a slot at once when its holder is proven dead, and after its lease otherwise', () => {
    const a = admit(s, undefined, 0, ask('D', 'dead', [['a', 0]]));
    const b = admit(s, a.state, 0, ask('L', 'alive', [['b', 0]]));
    assert.deepEqual(granted(admit(s, b.state, 1, ask('P', 'p', [['c', 1]], ['dead']))), ['c'], 'dead holder reclaimed');
    assert.deepEqual(granted(admit(s, b.state, 59, ask('P', 'p', [['c', 59]]))), [], 'lease still running');
    assert.deepEqual(granted(admit(s, b.state, 60.001, ask('P', 'p', [['c', 60]]))), ['c'], 'both leases ran out');
    const renewed = renewSlots(b.state!, ['a', 'b'], 120)!;
    assert.deepEqual(granted(admit(s, renewed, 60.001, ask('P', 'p', [['c', 60]]))), [], 'renewed leases still run');
  });

  it('a waiter whose rate slot is past its maxWait is granted nothing, and the next is served', () => {
    const slow = settings([calls(1, 10)], { maxConcurrent: 2 });
    const a = admit(slow, undefined, 0, ask('A', 'p1', [['a', 0]]));
    const req = ask('B', 'p2', [['b', 0], ['c', 0]], [], 5);
    const out = admit(slow, a.state, 0, req);
    assert.deepEqual(granted(out), [10, 10], 'both would wait 10 s, past their 5 s');
    assert.equal(out.state?.slots?.length, undefined, 'and neither holds a slot');
  });

  it('a call that wakes to find its slot gone queues again and gives its rate slot back', () => {
    const slow = settings([calls(1, 10)], { maxConcurrent: 1 });
    const a = admit(slow, undefined, 0, ask('A', 'p1', [['a', 0]]));
    const r = a.results[0] as Reservation;
    // Its lease ran out while its process was stopped, and another took the slot.
    const taken = admit(slow, a.state, 61, ask('B', 'p2', [['b', 61]]));
    const back = recheck(slow, taken.state, r, 62);
    assert.equal(back.result, 'lost');
    assert.deepEqual(recheck(slow, a.state, r, 1).result, 'go', 'a call that still holds its slot goes');
  });

  it('serial: spacing counts from the release, not from the start', () => {
    const serial = settings([calls(1, 2)], { maxConcurrent: 1, serial: true });
    const a = admit(serial, undefined, 0, ask('A', 'p', [['a', 0]]));
    // The call runs for 5 s; the next may go 2 s after it ends, not at 2.
    const done = release(serial, a.state!, a.results[0] as Reservation, 5);
    assert.equal((admit(serial, done, 5, ask('A', 'p', [['b', 5]])).results[0] as Reservation).at, 7);
  });

  it('status counts slots held by live holders only', () => {
    const a = admit(s, undefined, 0, ask('D', 'dead', [['a', 0]]));
    const b = admit(s, a.state, 0, ask('L', 'alive', [['b', 0]]));
    const st = statusOf(s, b.state, 1, [1], { holder: 'me', isDead: (h) => h === 'dead' });
    assert.equal(st.inFlight, 1);
    assert.equal(st.maxConcurrent, 2);
  });
});

describe('state format (core)', () => {
  const s = settings([calls(5, 1), tokens(100, 60, true)]);

  it('parseState accepts what reserve writes (through JSON) and refuses damage, foreign shapes and absurd times', () => {
    const st = reserve(s, undefined, 10, [1, 50]).state;
    assert.deepEqual(parseState(JSON.parse(JSON.stringify(st))), st);
    for (const bad of [null, 42, 'x', {}, { ...st, v: 1 }, { ...st, lanes: [] }, { ...st, lanes: [{ next: 1e300 }, {}] },
      { ...st, lanes: [{}, { runs: [[1, -2]] }] }, { ...st, pausedUntil: 'soon' }, { maxCount: 1, per: 1, greedy: false }]) {
      assert.equal(parseState(bad), undefined, JSON.stringify(bad));
    }
  });

  it('a state from a newer version is an error that says so, not a state to overwrite', () => {
    const st = reserve(s, undefined, 10, [1, 50]).state;
    assert.throws(() => parseState({ ...st, v: 4 }), (e: Error) => e instanceof RateLimitMismatchError && /newer ratelimit \(state version 4/.test(e.message));
    // Not a whole version number: damage (a stranger's 1e300), so a lost state, not a newer format.
    for (const v of [1e300, 3.5, Infinity]) assert.equal(parseState({ ...st, v }), undefined, `v ${v}`);
  });

  it('a state of version 2 carries over, less its queue of single calls (they queue again)', () => {
    const st = reserve(s, undefined, 10, [1, 50]).state;
    const old = { ...st, v: 2, queue: [{ id: 'w', holder: 'p', until: 12 }] };
    assert.deepEqual(parseState(old), st);
  });

  it('shiftState moves every time, and caps each at a window past now', () => {
    const st = pauseState(s, reserve(s, undefined, 10, [1, 50]).state, 10, 5);
    const moved = shiftState(st, 100, 0);
    assert.ok(Math.abs(moved.lanes[0]!.next! - 1) < 1e-12, 'capped at now + per');
    assert.deepEqual(moved.lanes[1]!.runs, [[60, 50]]);
    assert.equal(moved.pausedUntil, 115);
  });

  it('expiresAt: when the state holds nobody back, plus a window', () => {
    const st = reserve(s, undefined, 10, [1, 50]).state;
    assert.equal(expiresAt(st), 10 + 60 + 60);
  });
});

describe('options (several limits, costs, slots)', () => {
  it('rejects unknown option names, naming them and the closest known one', () => {
    assert.throws(() => new RateLimit({ maxCount: 1, per: 1, File: 'x.json' } as never), (e: Error) => e instanceof TypeError && /unknown option "File"; did you mean "file"\?/.test(e.message));
    assert.throws(() => new RateLimit({ maxcount: 1, per: 1 } as never), /unknown option "maxcount"; did you mean "maxCount"/);
    assert.throws(() => new RateLimit({ limits: [{ maxCount: 1, per: 1, units: 'tokens' }] } as never), /unknown option of limits\[0\] "units"; did you mean "unit"/);
    const limit = new RateLimit({ maxCount: 1, per: 1 });
    assert.rejects(limit.wait({ maxwait: 1 } as never), /unknown wait option "maxwait"; did you mean "maxWait"/);
  });

  it('checks limits, maxConcurrent, serial and slotLease at construction, naming the option', () => {
    assert.throws(() => new RateLimit({ maxCount: 1, per: 1, limits: [{ maxCount: 1, per: 1 }] }), /either maxCount and per, or limits/);
    assert.throws(() => new RateLimit({ limits: [] }), /limits must be a non-empty array/);
    assert.throws(() => new RateLimit({ limits: [{ maxCount: 0, per: 1 }] }), /ratelimit: limits\[0\]\.maxCount must be a positive integer, got 0$/);
    assert.throws(() => new RateLimit({ limits: [{ maxCount: 1, per: 1 }, { maxCount: 1, per: 1 }] }), /the same limit twice/);
    assert.throws(() => new RateLimit({ maxCount: 1, per: 1, maxConcurrent: 0 }), RangeError);
    assert.throws(() => new RateLimit({ maxCount: 1, per: 1, serial: true, maxConcurrent: 2 }), /serial means one call at a time/);
    assert.throws(() => new RateLimit({ maxCount: 1, per: 1, slotLease: -1 }), /slotLease must be/);
    // A lease shorter than two stale times lets one paused process make every slot lapse.
    assert.throws(() => new RateLimit({ maxCount: 1, per: 1, maxConcurrent: 2, file: 'x.json', staleAfter: 10, slotLease: 15 }),
      (e: Error) => e instanceof RangeError && /slotLease must be at least twice staleAfter \(20 s\)/.test(e.message));
    assert.doesNotThrow(() => new RateLimit({ maxCount: 1, per: 1, maxConcurrent: 2, file: 'x.json', staleAfter: 40 }), 'the default lease grows with staleAfter');
  });

  it('every time an option or a pause can set survives the state\'s round trip, or is refused', () => {
    for (const per of [MAX_PER, 1e-6]) {
      const st = reserve(settings([calls(1, per)]), undefined, 1e9, [1]).state;
      assert.deepEqual(parseState(JSON.parse(JSON.stringify(st))), st, `per ${per}`);
    }
    assert.throws(() => new RateLimit({ maxCount: 1, per: MAX_PER * 1.01 }), /per must be a number of seconds above 0, at most 31622400/);
    const paused = pauseState(settings([calls(1, 1)]), undefined, 1e9, 86_400);
    assert.deepEqual(parseState(JSON.parse(JSON.stringify(paused))), paused);
  });

  it('steers other limiters\' option names, and milliseconds, to this file\'s', async () => {
    assert.throws(() => new RateLimit({ limit: 10, interval: 1000 } as never), /unknown option "limit"; this file calls it maxCount/);
    assert.throws(() => new RateLimit({ maxCount: 10, interval: 1000 } as never), /unknown option "interval"; this file calls it per \(in seconds\)/);
    assert.throws(() => new RateLimit({ limits: [] }), /got an empty array/);
    const warned = await warningsDuring(() => new RateLimit({ maxCount: 10, per: 1000 }));
    assert.deepEqual(warned, ['ratelimit: per is in seconds, so per: 1000 is a window of 0.3 hours; for 1 s, write per: 1']);
    assert.deepEqual(await warningsDuring(() => new RateLimit({ maxCount: 5000, per: 3600 })), [], 'an hour is not taken for milliseconds');
  });

  it('limits and status().limits come back in the order given', async () => {
    const given = [{ maxCount: 60, per: 60 }, { maxCount: 1000, per: 86_400 }, { maxCount: 3000, per: 60, unit: 'tokens' }];
    const limit = new RateLimit({ limits: given });
    assert.deepEqual(limit.limits.map((l) => [l.maxCount, l.unit]), [[60, 'calls'], [1000, 'calls'], [3000, 'tokens']]);
    await limit.wait({ cost: { tokens: 700 } });
    const st = await limit.status();
    assert.deepEqual(st.limits.map((l) => [l.maxCount, l.used]), [[60, 1], [1000, 1], [3000, 700]]);
  });

  it('checks costs at the call: integers, units some limit counts, at most its maxCount; weight is cost.calls', async () => {
    const limit = new RateLimit({ limits: [{ maxCount: 10, per: 1 }, { maxCount: 100, per: 1, unit: 'tokens' }] });
    await assert.rejects(limit.wait({ cost: { token: 5 } }), (e: Error) => e instanceof RangeError && /unit "token", which no limit counts .*did you mean "tokens"/.test(e.message));
    await assert.rejects(limit.wait({ cost: { tokens: 101 } }), /cost\.tokens must be an integer from 0 to its limit's maxCount \(100\), got 101/);
    await assert.rejects(limit.wait({ cost: { tokens: 1.5 } }), RangeError);
    await assert.rejects(limit.wait({ weight: 2, cost: { calls: 2 } }), /weight or cost\.calls, not both/);
    assert.equal(await limit.wait({ cost: { tokens: 100 } }), 0);
  });

  it('wait, waitSync and tryAcquire on a limiter with maxConcurrent point to acquire()', async () => {
    const limit = new RateLimit({ maxCount: 10, per: 1, maxConcurrent: 2 });
    await assert.rejects(limit.wait(), (e: Error) => e instanceof TypeError && /use acquire\(\) and release\(\), or run\(fn\)/.test(e.message));
    assert.throws(() => limit.waitSync(), /acquire\(\)/);
    assert.throws(() => limit.tryAcquire(), /acquire\(\)/);
  });

  it('the one-limit form is a limits array of one', () => {
    const limit = new RateLimit({ maxCount: 3, per: 2, greedy: true });
    assert.deepEqual(limit.limits, [{ maxCount: 3, per: 2, greedy: true, unit: 'calls' }]);
    assert.equal(limit.maxConcurrent, Infinity);
  });
});

describe('permits on an injected clock', () => {
  function fake(options: ConstructorParameters<typeof RateLimit>[0]) {
    const clock = { now: 1000 };
    const limit = new RateLimit({ ...options, store: new MemoryStore(() => clock.now) });
    return { clock, limit };
  }

  it('acquire waits as wait() does and returns a permit; settle charges the difference', async () => {
    const { limit } = fake({ limits: [{ maxCount: 100, per: 60 }, { maxCount: 1000, per: 60, unit: 'tokens' }], greedy: true });
    const p = await limit.acquire({ cost: { tokens: 500 } });
    assert.deepEqual(p.cost, { calls: 1, tokens: 500 });
    await p.settle({ tokens: 900 });
    assert.deepEqual(p.cost, { calls: 1, tokens: 900 });
    await assert.rejects(limit.wait({ cost: { tokens: 200 }, maxWait: 1 }), RateLimitTimeoutError);
    await p.settle({ tokens: 100 });
    assert.equal(await limit.wait({ cost: { tokens: 800 }, maxWait: 1 }), 0, 'the refund came back');
    await p.release();
    await p.release(); // idempotent
  });

  it('settle checks its cost like a call does', async () => {
    const { limit } = fake({ maxCount: 10, per: 1 });
    const p = await limit.acquire();
    assert.throws(() => p.settle({ tokens: 1 }), RangeError);
  });

  it('maxConcurrent: a release in this process wakes a waiter at once; run() releases however fn ends', async () => {
    const { limit } = fake({ maxCount: 1000, per: 1, greedy: true, maxConcurrent: 1 });
    // From release to the waiter's grant, in 5 trials. A waiter that only
    // polled would see a release up to 50 ms late (its poll interval), about
    // 25 ms at the median; woken by the release it takes a few ms at most
    // under load. The median is compared, so one late timer does not decide.
    const lags: number[] = [];
    for (let trial = 0; trial < 5; trial++) {
      const first = await limit.acquire();
      let releasedAt = 0;
      const second = limit.acquire().then((p) => { const lag = performance.now() - releasedAt; return p.release().then(() => lag); });
      await new Promise((r) => setTimeout(r, 60 + trial * 13));
      releasedAt = performance.now();
      await first.release();
      lags.push(await second);
    }
    lags.sort((a, b) => a - b);
    assert.ok(lags[2]! < 12, `median lag ${lags[2]!.toFixed(1)} ms (${lags.map((l) => l.toFixed(1)).join(', ')})`);
    await assert.rejects(limit.run(async () => { throw new Error('boom'); }), /boom/);
    assert.equal(await limit.run(() => 7), 7, 'the slot was released after the throw');
    assert.equal((await limit.status()).inFlight, 0);
  });

  it('maxWait bounds the wait for a concurrency slot', async () => {
    const { limit } = fake({ maxCount: 1000, per: 1, maxConcurrent: 1 });
    const held = await limit.acquire();
    const started = performance.now();
    await assert.rejects(limit.acquire({ maxWait: 0.05 }), (e: Error) => e instanceof RateLimitTimeoutError && /concurrency slots stayed held/.test(e.message));
    const took = performance.now() - started;
    assert.ok(took >= 49 && took < 150, `gave up after ${took.toFixed(1)} ms`);
    await held.release();
  });

  it('an aborted acquire gives its slot and its concurrency place back', async () => {
    const { limit } = fake({ maxCount: 1, per: 0.2, maxConcurrent: 1 });
    await (await limit.acquire()).release();
    const controller = new AbortController();
    const pending = limit.acquire({ signal: controller.signal });
    setTimeout(() => controller.abort(new Error('stop')), 20);
    await assert.rejects(pending, /stop/);
    assert.equal((await limit.status()).inFlight, 0);
  });

  it('await using releases the permit at the end of the block', async () => {
    const { limit } = fake({ maxCount: 1000, per: 1, maxConcurrent: 1 });
    {
      const p = await limit.acquire();
      await p[Symbol.asyncDispose]();
    }
    assert.equal((await limit.status()).inFlight, 0);
  });

  // Two limiters on one store stand for two processes: each has its own place in the queue.
  it('a waiter that gives up leaves the queue at once: the next process is not held up by its place', async () => {
    const store = new MemoryStore();
    const options = { maxCount: 1000, per: 1, maxConcurrent: 1, store };
    const [a, b, c] = [new RateLimit(options), new RateLimit(options), new RateLimit(options)];
    const held = await a.acquire();
    const quitter = b.acquire({ maxWait: 0.05 });
    await new Promise((r) => setTimeout(r, 10));
    const next = c.acquire();
    await assert.rejects(quitter, RateLimitTimeoutError);
    assert.equal((await a.status()).waiting, 1, 'only c waits');
    const releasedAt = performance.now();
    await held.release();
    await (await next).release();
    // c polls 1 ms apart, doubling while nothing changes: after about 50 ms
    // of waiting, at most 64 ms (+50% jitter) apart. 0.5 s tells that from
    // the 2 s a lapsing place took, with room for a late timer.
    const lag = performance.now() - releasedAt;
    assert.ok(lag < 500, `c got the slot ${lag.toFixed(0)} ms after the release`);
  });

  it('maxWait bounds the wait for a slot and the wait for the rate slot together', async () => {
    const clock = { now: 0 };
    const store = new MemoryStore(() => clock.now);
    const a = new RateLimit({ maxCount: 1, per: 0.5, maxConcurrent: 1, store });
    const held = await a.acquire();
    const waiting = a.acquire({ maxWait: 0.3 });
    await new Promise((r) => setTimeout(r, 100)); // about 0.1 s in the queue
    await held.release(); // the slot is free now, and the rate slot is 0.5 s away: 0.6 s in all
    await assert.rejects(waiting, (e: RateLimitTimeoutError) => e instanceof RateLimitTimeoutError && e.maxWait === 0.3);
    assert.equal((await a.status()).inFlight, 0, 'the waiter that gave up holds no slot');
  });

  it('hundreds of waiters in one process are served in the order they came, within the cap, without stalling', async () => {
    // Greedy, so every granted call goes at once: patient spacing (10 µs
    // here) would make calls 2 to 10 of a grant sleep, and a loaded machine
    // could then start them after a later grant's call.
    const limit = new RateLimit({ maxCount: 100_000, per: 1, greedy: true, maxConcurrent: 10 });
    let inFlight = 0;
    let most = 0;
    const order: number[] = [];
    const started = performance.now();
    await Promise.all(Array.from({ length: 500 }, (_, k) => limit.run(async () => {
      order.push(k);
      most = Math.max(most, ++inFlight);
      await new Promise((r) => setTimeout(r, 5));
      inFlight--;
    })));
    const took = performance.now() - started;
    assert.equal(most, 10);
    assert.deepEqual(order, order.slice().sort((x, y) => x - y), 'served first come, first served');
    // Ideal: 50 rounds of 5 ms, 250 ms. Before, the same stalled for seconds.
    // 4x leaves room for timers that fire late under load (each round waits on one).
    assert.ok(took < 1000, `500 tasks took ${took.toFixed(0)} ms`);
  });

  it('a permit dropped without release() frees its slot once collected, with a warning', async () => {
    // A full collection: Bun's own call, Deno's --v8-flags=--expose-gc (the
    // runtimes check passes it), or Node's flag set at run time.
    const bun = (globalThis as { Bun?: { gc(full: boolean): void } }).Bun;
    const exposed = (globalThis as { gc?: () => void }).gc;
    const gc = bun ? () => bun.gc(true) : exposed ?? (() => {
      setFlagsFromString('--expose-gc');
      return runInNewContext('gc') as () => void;
    })();
    const limit = new RateLimit({ maxCount: 1000, per: 1, maxConcurrent: 1 });
    const warned = await warningsDuring(async () => {
      await (async () => { await limit.acquire(); })(); // dropped
      // Up to 2 s: finalizers run on a later task, and a loaded machine delays them.
      for (let k = 0; k < 200 && (await limit.status()).inFlight > 0; k++) {
        gc();
        await new Promise((r) => setTimeout(r, 10));
      }
    });
    assert.equal((await limit.status()).inFlight, 0, 'the dropped permit\'s slot is free');
    assert.ok(warned.some((w) => /dropped without release/.test(w)), warned.join('; '));
  });

  it('a pause longer than a day is cut to a day, with a warning, and survives the state\'s round trip', async () => {
    let stored: unknown;
    const memory = new MemoryStore();
    // A store that keeps the state as JSON, as the file and Redis stores do.
    const store = {
      name: 'a JSON store',
      update<T>(tx: Transaction<T>): T {
        return memory.update((_state, now, ctx) => {
          const out = tx(parseState(stored), now, ctx);
          if (out.state) stored = JSON.parse(JSON.stringify(out.state));
          return out;
        });
      },
    };
    const a = new RateLimit({ maxCount: 1, per: 1, store });
    const warned = await warningsDuring(() => a.pause(retryAfter('99999999999999')!));
    assert.match(warned.join(), /a pause of 99999999999999 s was cut to 86400 s/);
    const b = new RateLimit({ maxCount: 1, per: 1, store }); // another process would see the same
    const st = await b.status();
    assert.ok(Math.abs(st.pausedFor - 86_400) < 1, `paused for ${st.pausedFor} s`);
    await assert.rejects(b.wait({ maxWait: 60 }), RateLimitTimeoutError);
  });

  it('serial: the next call is spaced from the release of the last', async () => {
    const { clock, limit } = fake({ maxCount: 1, per: 2, serial: true });
    const p = await limit.acquire();
    clock.now += 5; // the call took 5 s
    await p.release();
    await assert.rejects(limit.acquire({ maxWait: 1.9 }), (e: RateLimitTimeoutError) => Math.abs(e.wouldWait - 2) < 1e-9);
  });
});

describe('pause and status', () => {
  it('status: a patient limit\'s used counts every unit reserved ahead, past maxCount while calls queue', () => {
    const s = settings([calls(2, 1)]);
    let state: LimitState | undefined;
    for (let k = 0; k < 5; k++) state = reserve(s, state, 0, [1]).state;
    const st = statusOf(s, state, 0, [1]);
    assert.deepEqual([st.limits[0]!.used, st.limits[0]!.remaining, st.nextIn], [5, 0, 2.5]);
  });

  it('status reports used, remaining and when the next call could go, per limit', async () => {
    const clock = { now: 0 };
    const limit = new RateLimit({ limits: [{ maxCount: 10, per: 10, greedy: true }, { maxCount: 2, per: 1, unit: 'tokens' }], store: new MemoryStore(() => clock.now) });
    for (let k = 0; k < 10; k++) limit.tryAcquire();
    const st = await limit.status();
    const c = st.limits.find((l) => l.unit === 'calls')!;
    assert.equal(c.used, 10);
    assert.equal(c.remaining, 0);
    assert.equal(c.nextIn, 10);
    assert.equal(st.nextIn, 10);
    assert.equal(st.pausedFor, 0);
    assert.equal(st.maxConcurrent, null);
    assert.doesNotThrow(() => JSON.stringify(st));
  });

  it('pause holds new calls, and a call asleep on its slot, until the pause ends', async () => {
    const clock = { now: 0 };
    const limit = new RateLimit({ maxCount: 10, per: 0.5, store: new MemoryStore(() => clock.now) });
    assert.equal(await limit.wait(), 0);
    const sleeper = limit.wait(); // its slot is 0.05 s away (real time: the fake clock stands still)
    await limit.pause(0.2);
    assert.equal((await limit.status()).pausedFor, 0.2);
    // The sleeper wakes at its slot, finds the pause, and takes a slot after it.
    const held = await sleeper;
    assert.ok(Math.abs(held - (0.05 + 0.2)) < 1e-9, `held back ${held} s in all`);
    await assert.rejects(limit.pause(-1), RangeError);
  });

});

describe('retryAfter', () => {
  const now = Date.parse('2026-12-01T12:00:00Z');
  for (const [input, want] of [
    ['120', 120], ['0', 0], [' 7 ', 7], ['Tue, 01 Dec 2026 12:00:30 GMT', 30], ['Tue, 01 Dec 2026 11:00:00 GMT', 0],
    ['soon', undefined], ['', undefined], ['-5', undefined], ['1.5', undefined], [undefined, undefined], [null, undefined],
  ] as const) {
    it(`${JSON.stringify(input)} gives ${want}`, () => assert.equal(retryAfter(input, now), want));
  }
  it('reads Headers and plain header objects in any case', () => {
    assert.equal(retryAfter(new Headers({ 'Retry-After': '3' }), now), 3);
    assert.equal(retryAfter({ 'RETRY-AFTER': '4' }, now), 4);
    assert.equal(retryAfter({ 'retry-after': ['5'] }, now), 5);
    assert.equal(retryAfter({ other: '1' }, now), undefined);
  });
});
