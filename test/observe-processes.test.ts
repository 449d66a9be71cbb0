// observe() in four real processes against the local server of
// test/observe/server.ts, which enforces a budget tighter than the
// configuration and reports it in one dialect: per dialect, with tokens, with
// answers out of order, without observe(), and over a minute. The rules
// themselves are in test/observe.test.ts, on a made-up clock.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { startServer, DIALECTS, type Dialect, type ServerStats } from './observe/server.ts';
import { runChild, tempDir } from './helpers.ts';

// Four processes, each with one request in flight, configured for 100 per 10 s against a server allowing 30 (and,
// with tokens, 15 requests' worth of tokens) per 10 s window.
async function run(dialect: Dialect, options: { observe?: boolean; tokens?: boolean; delayMs?: number; seconds?: number } = {}): Promise<ServerStats> {
  const { observe = true, tokens = false, delayMs = 0, seconds = 14 } = options;
  const server = await startServer({ dialect, budget: 30, window: 10, delayMs, ...(tokens ? { tokens: 3000 } : {}) });
  const { dir, cleanup } = tempDir('ratelimit-observe-');
  try {
    const env = { OBSERVE_URL: server.url, OBSERVE_FILE: join(dir, 'api.json'), OBSERVE_SECONDS: String(seconds),
      OBSERVE: observe ? '1' : '0', OBSERVE_TOKENS: tokens ? '200' : '0' };
    await Promise.all(Array.from({ length: 4 }, () => runChild('test/observe/worker.ts', env, { timeoutMs: (seconds + 30) * 1000 })));
    return server.stats();
  } finally {
    await server.stop();
    cleanup();
  }
}

const perWindow = (stats: ServerStats) => stats.windows.map((w) => `${w.ok}/${w.refused}`).join(' ');

// Three runs at a time (twelve processes): they mostly sleep, but more at once starve each other's start-up on two cores.
describe('four processes against a server that allows less than configured', { concurrency: 3 }, () => {
  for (const dialect of DIALECTS) {
    it(`${dialect}: at most 4 429s per window, one per request in flight`, async (t) => {
      const stats = await run(dialect);
      t.diagnostic(`ok/refused per window: ${perWindow(stats)}`);
      for (const w of stats.windows) assert.ok(w.refused <= 4, `window ${w.index}: ${w.refused} 429s`);
      assert.ok(stats.ok >= 30, `${stats.ok} answered 200`);
    });
  }
  for (const dialect of ['ietf', 'openai', 'anthropic'] as const) {
    it(`${dialect}, requests and tokens at once: at most 4 429s per window`, async (t) => {
      const stats = await run(dialect, { tokens: true });
      t.diagnostic(`ok/refused per window: ${perWindow(stats)}`);
      for (const w of stats.windows) assert.ok(w.refused <= 4, `window ${w.index}: ${w.refused} 429s`);
      // The first full window: its tokens allow 15 requests; a reset rounded up to the second may cost one or two.
      assert.ok((stats.windows[1]?.ok ?? 0) >= 12, 'the tokens budget (15 requests) is used');
    });
  }
  it('without observe(), the same limiter draws many 429s', async (t) => {
    const stats = await run('github', { observe: false, seconds: 12 });
    t.diagnostic(`ok/refused per window: ${perWindow(stats)}`);
    // Up to 100 calls in a window where 30 fit; start-up may leave the first window short, so the worst one counts.
    assert.ok(Math.max(...stats.windows.map((w) => w.refused)) >= 20, `${stats.refused} 429s`);
  });
  it('answers delayed at random by up to 200 ms, read out of order: still at most 4 429s per window', async (t) => {
    const stats = await run('github', { delayMs: 200 });
    t.diagnostic(`ok/refused per window: ${perWindow(stats)}`);
    for (const w of stats.windows) assert.ok(w.refused <= 4, `window ${w.index}: ${w.refused} 429s`);
  });
  it('a budget that grows back after each reset is used again: 90% of it over a minute', async (t) => {
    const stats = await run('github', { seconds: 72 });
    // The minute after start-up (which takes part of the first window): windows 1 to 6, a budget of 6 × 30.
    const minute = stats.windows.filter((w) => w.index >= 1 && w.index <= 6);
    const ok = minute.reduce((n, w) => n + w.ok, 0);
    t.diagnostic(`ok/refused per window: ${perWindow(stats)}; ${ok} of 180 in windows 1 to 6`);
    assert.equal(minute.length, 6);
    assert.ok(ok >= 0.9 * 180, `${ok} answered 200 in windows 1 to 6`);
    for (const w of stats.windows) assert.ok(w.refused <= 4, `window ${w.index}: ${w.refused} 429s`);
  });
});

