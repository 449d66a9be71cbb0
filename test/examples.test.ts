// Every example runs to completion on its own, as the README promises, and
// its timeline shows the limit it sets. Each runs as `node --import tsx
// examples/<name>.ts` (what `npx tsx` does, without the wrapper process).
//
// Times are read from what the examples print just after each grant, so each
// trails its slot by however late its process got to run, and times from
// separate processes differ also by how far apart their clocks started. On
// these 2 shared cores a time has trailed by about 40 ms (one run recorded
// grants 0.162 s apart in slots 0.2 s apart), so a check of each gap against
// the spacing minus a few ms fails at random.
//
// The slots themselves are exact. What these checks are for is a broken
// limit, and that is far larger than a late print:
//   - a slot given twice shows up as two grants about 0 s apart;
//   - a limit that lets extra calls through shows up as grants that span at
//     least one whole slot less than their number allows.
// So each check allows every recorded time to trail its slot by up to half a
// slot: for every pair of grants i < j, t[j] - t[i] >= (j - i) * spacing -
// spacing / 2. It holds whenever no time trails by half a slot or more (50 ms
// at the smallest spacing here, 0.1 s), and fails for either break above.
import { describe, it, after } from 'node:test';
import assert from 'node:assert/strict';
import { runChild, killAll } from './helpers.ts';

after(killAll);

// The "  1.234 s" times at the start of the timeline lines, in order.
function times(output: string): number[] {
  return [...output.matchAll(/^\s*(\d+\.\d{3}) s\s/gm)].map((m) => Number(m[1]));
}
function assertSpaced(ts: number[], spacing: number, what: string): void {
  const sorted = [...ts].sort((a, b) => a - b);
  const tolerance = spacing / 2;
  for (let j = 1; j < sorted.length; j++) {
    for (let i = 0; i < j; i++) {
      const least = (j - i) * spacing - tolerance;
      assert.ok(sorted[j] - sorted[i] >= least, `${what}: grants ${j - i} apart at ${sorted[i]} and ${sorted[j]} s are ` +
        `${(sorted[j] - sorted[i]).toFixed(3)} s apart; ${j - i} slots of ${spacing.toFixed(3)} s allow no less than ${least.toFixed(3)} s ` +
        `(half a slot allowed for a late print)`);
    }
  }
}

describe('examples', () => {
  it('the spacing check passes late prints and catches a slot given twice or an extra call', () => {
    const slots = Array.from({ length: 12 }, (_, i) => 0.2 * i);
    // Each print late by up to 90 ms, at random: within half a slot, so it passes.
    assertSpaced(slots.map((t) => t + 0.09 * Math.random()), 0.2, 'late prints');
    // The 6th slot handed out twice (both prints 40 ms late or less).
    assert.throws(() => assertSpaced([...slots, slots[5] + 0.04], 0.2, 'twice'), /twice: grants/);
    // 13 calls in the time of 12 slots, evenly spread: every gap is 0.183 s.
    assert.throws(() => assertSpaced(Array.from({ length: 13 }, (_, i) => (2.2 / 12) * i), 0.2, 'extra'), /extra: grants/);
  });

  it('tasks.ts: twenty tasks, unlimited then limited to 10 per second two ways', async () => {
    const out = await runChild('examples/tasks.ts', {});
    const ts = times(out);
    assert.equal(ts.length, 60, `expected 3 runs of 20 tasks, got ${ts.length} lines`);
    assertSpaced(ts.slice(20, 40), 0.1, 'limited at creation');
    assertSpaced(ts.slice(40, 60), 0.1, 'limited at start');
  });

  it('greedy.ts: patient and greedy side by side', async () => {
    const out = await runChild('examples/greedy.ts', {});
    const rows = [...out.matchAll(/^\s+\d+\s+(\d+\.\d{3}) s \(waited [\d.]+\)\s+(\d+\.\d{3}) s/gm)];
    assert.equal(rows.length, 8);
    assertSpaced(rows.map((r) => Number(r[1])), 1 / 3, 'patient');
    const greedy = rows.map((r) => Number(r[2]));
    // 3 per second: the 4th call comes a whole second after the 1st, less
    // the same half slot (1/6 s) allowed for a late print.
    for (let i = 3; i < greedy.length; i++) assert.ok(greedy[i] - greedy[i - 3] >= 1 - 1 / 6, `greedy call ${i + 1} too early`);
  });

  it('workers.ts: a worker_threads pool shares one limit through a file', async () => {
    const out = await runChild('examples/workers.ts', {});
    const ts = times(out);
    assert.equal(ts.length, 20);
    assertSpaced(ts, 0.1, 'workers');
  });

  it('processes.ts: separate programs share one limit through a file', async () => {
    const out = await runChild('examples/processes.ts', {});
    const ts = times(out);
    assert.equal(ts.length, 12);
    assertSpaced(ts, 0.2, 'processes');
    assert.equal(new Set([...out.matchAll(/process (\d) \(pid/g)].map((m) => m[1])).size, 3);
  });

  it('script.ts: five copies started at once share 4 calls per second', async () => {
    const outs = await Promise.all(Array.from({ length: 5 }, () => runChild('examples/script.ts', {})));
    // Each line starts with the wall-clock time of day, HH:MM:SS.mmm.
    const ts = outs.flatMap((o) => [...o.matchAll(/^(\d\d):(\d\d):(\d\d\.\d{3})\s/gm)].map((m) => Number(m[1]) * 3600 + Number(m[2]) * 60 + Number(m[3])));
    assert.equal(ts.length, 10);
    // A run across midnight: times just after it belong to the next day.
    const day = Math.max(...ts) - Math.min(...ts) > 43_200 ? ts.map((t) => (t < 43_200 ? t + 86_400 : t)) : ts;
    assertSpaced(day, 0.25, 'copies of script.ts');
  });

  it('github.ts: against a local server with GitHub-style limits, no request sent after the first pause is refused', async () => {
    const out = await runChild('examples/github.ts', {});
    const answered = out.match(/The server answered (\d+) requests: (\d+) with 200, (\d+) refused \(([\d, ]+|none)\)/);
    assert.ok(answered, `no summary line in:\n${out}`);
    assert.equal(Number(answered[2]), 18, 'every one of the 18 requests should succeed in the end');
    // Another program spends the first window after 2 of this client's
    // requests, so the third one in flight meets a 429: the pause is exercised.
    assert.ok(Number(answered[3]) >= 1, 'no request was refused, so no pause was tested');
    assert.ok(answered[4].split(', ').every((status) => status === '429'), `a refusal other than 429 (403 means the concurrency cap was passed): ${answered[4]}`);
    assert.match(out, /Refused of those sent after the first pause: 0\./);
    const most = Number(out.match(/Most in flight at once: (\d+)/)?.[1]);
    assert.ok(most >= 1 && most <= 3, `${most} requests in flight at once; the cap is 3`);
    assert.match(out, /In flight now: 0\./);
    assert.equal([...out.matchAll(/pause\(\d+\) for every caller/g)].length, Number(answered[3]), 'each refusal should pause');
  });

  it('observe.ts: four workers learn the server\'s 30 per 10 s from its headers; at most 4 429s in any window', async () => {
    const out = await runChild('examples/observe.ts', {});
    const windows = [...out.matchAll(/window (\d+): (\d+) answered 200, (\d+) answered 429/g)];
    assert.ok(windows.length >= 1, `no window summary in:\n${out}`);
    assert.equal(windows.reduce((n, w) => n + Number(w[2]) + Number(w[3]), 0), 45, 'all 45 requests were answered');
    for (const w of windows) assert.ok(Number(w[3]) <= 4, `window ${w[1]}: ${w[3]} answered 429`);
  });

  it('tokens.ts: a greedy tokens limit never holds more than maxCount in a window; a patient one at most maxCount plus one call', async () => {
    const out = await runChild('examples/tokens.ts', {});
    const most = (mode: string) => Number(new RegExp(`${mode}\\s*: most tokens in any 2 s window: (\\d+)`).exec(out)?.[1]);
    const largest = Number(/largest cost: (\d+)/.exec(out)?.[1]);
    assert.ok(largest > 0, out);
    // The core on a made-up clock: exact figures, no timing tolerance needed.
    assert.ok(most('greedy') <= 3_000, `greedy: ${most('greedy')} tokens in one window`);
    assert.ok(most('patient') > 3_000, `patient: ${most('patient')}; the example is meant to show a window above maxCount`);
    assert.ok(most('patient') < 3_000 + largest, `patient: ${most('patient')} tokens, more than maxCount plus the largest call`);
  });
});
