// A short tour of the public API that every runtime's test runner can run:
// `node --test` (Node 20 with tsx, Node 22 and 24 stripping types itself),
// `bun test` and `deno test`. It uses only the parts of node:test that all
// of them implement (test() with an async function, no hooks, no mocks, no
// subtests), so a failure here is the library's, not the runner's.
//
// Timing rules used below, and why:
// - The library never grants a call before its slot, so a grant recorded
//   with performance.now() is never early. The only tolerance on lower
//   bounds is EARLY_MS = 1 ms, for rounding between the clock the library
//   reads and the one recorded here (both are monotonic, read microseconds
//   apart).
// - Upper bounds only catch "did not wait at all" or "waited a whole extra
//   slot", and allow LATE_MS = 250 ms, because timers on this 2-core shared
//   machine fire a few ms late and a busy neighbour can add far more.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { RateLimit, RateLimitTimeoutError, sharedClock } from '../../ratelimit.ts';

const EARLY_MS = 1;
const LATE_MS = 250;

function tempDir(): string {
  return mkdtempSync(join(tmpdir(), 'ratelimit-runtimes-'));
}

// Milliseconds since `start` at which each of `n` concurrent waits resolved.
async function grantTimes(limit: RateLimit, n: number): Promise<number[]> {
  const start = performance.now();
  return Promise.all(Array.from({ length: n }, () => limit.wait().then(() => performance.now() - start)));
}

function assertSpaced(times: number[], slotMs: number): void {
  const sorted = [...times].sort((a, b) => a - b);
  sorted.forEach((t, k) => {
    assert.ok(t >= k * slotMs - EARLY_MS, `grant ${k} at ${t.toFixed(2)} ms, before its slot at ${k * slotMs} ms`);
    assert.ok(t <= k * slotMs + LATE_MS, `grant ${k} at ${t.toFixed(2)} ms, far after its slot at ${k * slotMs} ms`);
  });
}

test('shared clock: on Linux it is the boot clock, tagged with the boot id', () => {
  const clock = sharedClock();
  const bootId = readFileSync('/proc/sys/kernel/random/boot_id', 'latin1').trim();
  assert.equal(clock.tag, `boot:${bootId}`);
  // /proc/uptime counts in whole 10 ms steps, truncated, so the boot clock
  // reads 0 to 10 ms ahead of it; 5 ms more for the reads between.
  const uptime = parseFloat(readFileSync('/proc/uptime', 'latin1'));
  const diff = clock.now() - uptime;
  assert.ok(diff > -0.005 && diff < 0.015, `sharedClock() is ${(diff * 1000).toFixed(2)} ms from /proc/uptime`);
});

test('memory, patient: calls are spaced per/maxCount apart', async () => {
  const limit = new RateLimit({ maxCount: 4, per: 0.2 }); // one call every 50 ms
  assertSpaced(await grantTimes(limit, 5), 50);
});

test('memory, greedy: maxCount at once, the next one a window later', async () => {
  const limit = new RateLimit({ maxCount: 3, per: 0.3, greedy: true });
  const times = (await grantTimes(limit, 4)).sort((a, b) => a - b);
  for (const t of times.slice(0, 3)) assert.ok(t <= LATE_MS, `a call within maxCount waited ${t.toFixed(2)} ms`);
  assert.ok(times[3] >= 300 - EARLY_MS, `the 4th call went at ${times[3].toFixed(2)} ms, inside the first window`);
  assert.ok(times[3] <= 300 + LATE_MS, `the 4th call went at ${times[3].toFixed(2)} ms`);
});

test('tryAcquire takes a free slot and refuses when there is none', () => {
  const limit = new RateLimit({ maxCount: 2, per: 60, greedy: true });
  assert.deepEqual([limit.tryAcquire(), limit.tryAcquire(), limit.tryAcquire()], [true, true, false]);
});

test('maxWait fails at once and takes no slot', async () => {
  const limit = new RateLimit({ maxCount: 2, per: 60, greedy: true });
  await limit.wait();
  const start = performance.now();
  await assert.rejects(limit.wait({ weight: 2, maxWait: 1 }), (error: unknown) => {
    assert.ok(error instanceof RateLimitTimeoutError);
    assert.equal(error.maxWait, 1);
    assert.ok(error.wouldWait > 59 && error.wouldWait <= 60, `wouldWait ${error.wouldWait}`);
    return true;
  });
  assert.ok(performance.now() - start < LATE_MS, 'the refused call slept');
  // One slot of the two is still free: the refused call took nothing.
  assert.equal(limit.tryAcquire(), true);
  assert.equal(limit.tryAcquire(), false);
});

test('abort rejects with the reason and gives the slot back', async () => {
  const limit = new RateLimit({ maxCount: 1, per: 0.4 });
  const start = performance.now();
  await limit.wait(); // slot at 0; the next is at 400 ms
  const controller = new AbortController();
  const aborted = limit.wait({ signal: controller.signal });
  setTimeout(() => controller.abort(new Error('stop')), 50);
  await assert.rejects(aborted, { message: 'stop' });
  assert.ok(performance.now() - start < 400 - EARLY_MS, 'the abort did not cut the wait short');
  // Given back, so the next call gets the 400 ms slot, not the 800 ms one.
  await limit.wait();
  const t = performance.now() - start;
  assert.ok(t >= 400 - EARLY_MS && t <= 400 + LATE_MS, `the call after the abort went at ${t.toFixed(2)} ms`);
});

test('waitSync blocks until each slot', () => {
  const limit = new RateLimit({ maxCount: 1, per: 0.05 });
  const start = performance.now();
  const times = [0, 1, 2].map(() => { limit.waitSync(); return performance.now() - start; });
  assertSpaced(times, 50);
});

test('file, patient: two limits naming one file share it', async () => {
  const dir = tempDir();
  try {
    const file = join(dir, 'shared.json');
    const a = new RateLimit({ maxCount: 1, per: 0.05, file });
    const b = new RateLimit({ maxCount: 1, per: 0.05, file });
    const start = performance.now();
    const times = await Promise.all([0, 1, 2, 3].map((i) => (i % 2 ? a : b).wait().then(() => performance.now() - start)));
    assertSpaced(times, 50);
    // waitSync through the file: the next slot is at 200 ms.
    a.waitSync();
    const t = performance.now() - start;
    assert.ok(t >= 200 - EARLY_MS && t <= 200 + LATE_MS, `waitSync went at ${t.toFixed(2)} ms`);
    const stored = JSON.parse(readFileSync(file, 'utf8'));
    assert.equal(stored.clock, sharedClock().tag);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('file, greedy: the window is shared, and maxWait and tryAcquire see it', async () => {
  const dir = tempDir();
  try {
    const file = join(dir, 'shared.json');
    const a = new RateLimit({ maxCount: 3, per: 0.3, greedy: true, file });
    const b = new RateLimit({ maxCount: 3, per: 0.3, greedy: true, file });
    const start = performance.now();
    assert.equal(a.tryAcquire(), true);
    await b.wait();
    assert.equal(b.tryAcquire(), true);
    assert.equal(a.tryAcquire(), false);
    await assert.rejects(a.wait({ maxWait: 0.1 }), RateLimitTimeoutError);
    await a.wait();
    const t = performance.now() - start;
    assert.ok(t >= 300 - EARLY_MS && t <= 300 + LATE_MS, `the 4th call went at ${t.toFixed(2)} ms`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
