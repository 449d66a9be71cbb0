// Every example runs to completion on its own, as the README promises, and
// its timeline shows the limit it sets. Each runs as `node --import tsx
// examples/<name>.ts` (what `npx tsx` does, without the wrapper process).
//
// Times are read from what the examples print just after each grant, so
// they trail the slot by however late the process got to run. Gaps are
// checked against the slot spacing minus 30 ms: a broken limit shows up as a
// gap near 0 (a slot given twice), far below that.
import { describe, it, after } from 'node:test';
import assert from 'node:assert/strict';
import { runChild, killAll } from './helpers.ts';

after(killAll);
const LATE = 0.03;

// The "  1.234 s" times at the start of the timeline lines, in order.
function times(output: string): number[] {
  return [...output.matchAll(/^\s*(\d+\.\d{3}) s\s/gm)].map((m) => Number(m[1]));
}
function assertSpaced(ts: number[], spacing: number, what: string): void {
  const sorted = [...ts].sort((a, b) => a - b);
  for (let i = 1; i < sorted.length; i++) {
    assert.ok(sorted[i] - sorted[i - 1] >= spacing - LATE, `${what}: grants ${sorted[i - 1]} and ${sorted[i]} are closer than ${spacing} s`);
  }
}

describe('examples', () => {
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
    // 3 per second: the 4th call comes a whole second after the 1st.
    for (let i = 3; i < greedy.length; i++) assert.ok(greedy[i] - greedy[i - 3] >= 1 - LATE, `greedy call ${i + 1} too early`);
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
});
