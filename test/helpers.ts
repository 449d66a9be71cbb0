// Shared by the tests: running child programs, and checking merged grant
// times against the limit.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export const ROOT = new URL('..', import.meta.url).pathname;

/** A temporary directory, removed by the returned cleanup. */
export function tempDir(prefix = 'ratelimit-test-'): { dir: string; cleanup: () => void } {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

/**
 * For tests that need a program from a Debian package. Runs `command` with
 * `probe` (arguments that exit 0 when it works) and returns undefined if it
 * ran, or else a reason naming the package and how to install it, for
 * node:test's `skip` option, so that the test is reported as skipped, never
 * as passed. With RATELIMIT_REQUIRE_ALL=1 in the environment (.ci/run sets
 * it) a missing program throws instead, and the test file fails: a run that
 * must test everything cannot pass by skipping.
 */
export function skipUnlessInstalled(command: string, probe: string[], pkg = command): string | undefined {
  const ran = spawnSync(command, probe, { stdio: 'ignore', timeout: 10_000 });
  if (!ran.error && ran.status === 0) return undefined;
  const why = (ran.error as NodeJS.ErrnoException | undefined)?.code === 'ENOENT' ? 'is not installed'
    : ran.error ? `cannot run (${ran.error.message})` : `does not work (\`${[command, ...probe].join(' ')}\` exited with ${ran.status ?? ran.signal})`;
  const reason = `${command} ${why}; install the Debian package ${pkg} (apt-get install ${pkg}) to run this test`;
  if (process.env.RATELIMIT_REQUIRE_ALL === '1') throw new Error(`RATELIMIT_REQUIRE_ALL=1 forbids skipping: ${reason}`);
  return reason;
}

/** Children started by the tests, all killed by killAll (call it in t.after / finally). */
const running = new Set<ChildProcess>();
export function killAll(): void {
  for (const child of running) child.kill('SIGKILL');
  running.clear();
}
process.on('exit', killAll);

/**
 * Runs `node --import tsx <script>` (not the tsx wrapper, so a signal reaches
 * the process under test) and resolves with its stdout when it exits 0.
 */
export function runChild(script: string, env: Record<string, string>, opts: { timeoutMs?: number } = {}): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', script], {
      cwd: ROOT, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'],
    });
    running.add(child);
    let out = '';
    let err = '';
    child.stdout!.on('data', (d) => { out += d; });
    child.stderr!.on('data', (d) => { err += d; });
    const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 60_000);
    child.on('exit', (code, signal) => {
      clearTimeout(timer);
      running.delete(child);
      if (code === 0) resolve(out);
      else reject(new Error(`${script} exited with ${code ?? signal}: ${err.slice(-2000)}`));
    });
  });
}

/**
 * How many slots break the limit: in patient mode, gaps under
 * per/maxCount; in greedy mode, windows [t, t + per) holding more than
 * maxCount. `slots` are sorted times in seconds; `tolerance` shortens the
 * spacing or window it checks (the default allows only float rounding).
 */
export function violations(slots: number[], limit: { maxCount: number; per: number; greedy: boolean }, tolerance = 1e-9): number {
  let bad = 0;
  if (!limit.greedy) {
    for (let i = 1; i < slots.length; i++) if (slots[i] - slots[i - 1] < limit.per / limit.maxCount - tolerance) bad++;
  } else {
    for (let i = 0, j = 0; i < slots.length; i++) {
      while (j < slots.length && slots[j] < slots[i] + limit.per - tolerance) j++;
      if (j - i > limit.maxCount) bad++;
    }
  }
  return bad;
}

/**
 * The brute-force checker of test/limits.test.ts, for the slots processes
 * were given (times, and costs in the limits' order, as a Reservation has
 * them): for each limit, every pair of neighbouring grants charged to it
 * (patient: spaced by the earlier one's cost·per/maxCount) or every window
 * (t - per, t] (greedy: at most maxCount units). Returns what breaks.
 * `tolerance` allows for float rounding: 1e-9 on the boot clock, about 1e-6
 * on epoch seconds (Redis TIME), whose doubles resolve about 0.24 µs.
 */
export function brokenLimits(limits: readonly { maxCount: number; per: number; greedy: boolean; unit: string }[], grants: { at: number; cost: number[] }[], tolerance = 1e-9): string[] {
  const out: string[] = [];
  limits.forEach((l, i) => {
    const mine = grants.filter((g) => (g.cost[i] ?? 0) > 0).sort((a, b) => a.at - b.at);
    if (!l.greedy) {
      for (let k = 1; k < mine.length; k++) {
        const gap = mine[k].at - mine[k - 1].at;
        const need = (mine[k - 1].cost[i] * l.per) / l.maxCount;
        if (gap < need - tolerance) out.push(`limit ${i} (${l.unit}): grants at ${mine[k - 1].at} and ${mine[k].at} are ${gap} s apart, less than ${need}`);
      }
    } else {
      for (const g of mine) {
        const units = mine.filter((h) => h.at > g.at - l.per + tolerance && h.at <= g.at).reduce((sum, h) => sum + h.cost[i], 0);
        if (units > l.maxCount) out.push(`limit ${i} (${l.unit}): ${units} units in the window ending at ${g.at}`);
      }
    }
  });
  return out;
}

/**
 * The largest number of grants in any window [t, t + per - tolerance). Grants
 * are recorded a little after they happen, so a window is shortened by the
 * recording tolerance; a fixed-window or double-grant bug still shows as a
 * whole extra grant in a window.
 */
export function maxInWindow(times: number[], per: number, tolerance: number): number {
  let most = 0;
  for (let i = 0, j = 0; i < times.length; i++) {
    while (j < times.length && times[j] < times[i] + per - tolerance) j++;
    most = Math.max(most, j - i);
  }
  return most;
}

/** Every bad option value, and the error class it must get (added to { maxCount: 2, per: 1 }). */
export const BAD_OPTIONS: [string, Record<string, unknown>, typeof TypeError | typeof RangeError][] = [
  ['maxCount', { maxCount: 0 }, RangeError],
  ['maxCount', { maxCount: -1 }, RangeError],
  ['maxCount', { maxCount: 1.5 }, RangeError],
  ['maxCount', { maxCount: NaN }, RangeError],
  ['maxCount', { maxCount: Infinity }, RangeError],
  ['maxCount', { maxCount: '2' }, TypeError],
  ['maxCount', { maxCount: null }, TypeError],
  ['maxCount', { maxCount: undefined }, TypeError],
  ['per', { per: 0 }, RangeError],
  ['per', { per: -1 }, RangeError],
  ['per', { per: NaN }, RangeError],
  ['per', { per: Infinity }, RangeError],
  ['per', { per: '1' }, TypeError],
  ['per', { per: null }, TypeError],
  ['per', { per: undefined }, TypeError],
  ['per', { per: 99_999_999_999_999 }, RangeError], // a time the state could not hold
  ['slotLease', { slotLease: 2 ** 31 }, RangeError], // longer than a timer can wait
  ['slotLease', { slotLease: NaN }, RangeError],
  ['greedy', { greedy: 'yes' }, TypeError],
  ['greedy', { greedy: 1 }, TypeError],
  ['staleAfter', { staleAfter: 0 }, RangeError],
  ['staleAfter', { staleAfter: -1 }, RangeError],
  ['staleAfter', { staleAfter: NaN }, RangeError],
  ['staleAfter', { staleAfter: Infinity }, RangeError],
  ['staleAfter', { staleAfter: '5' }, TypeError],
  ['staleAfter', { staleAfter: 1e7 }, RangeError],
  ['file', { file: 42 }, TypeError],
  ['file', { file: '' }, RangeError],
  ['store', { store: {} }, TypeError],
  ['store', { store: 'redis' }, TypeError],
];

/**
 * The argument list that runs `script` as a program under the runtime running
 * this code: `deno run -A`, `bun`, `node` where Node strips types itself, and
 * `node --import tsx` under tsx or on Node 20 (never the tsx wrapper, so a
 * signal reaches the process under test).
 */
export function runtimeCommand(script: string): string[] {
  const g = globalThis as { Bun?: unknown; Deno?: { execPath(): string } };
  if (g.Deno) return [g.Deno.execPath(), 'run', '-A', script];
  if (g.Bun) return [process.execPath, script];
  const strips = (process as { features?: { typescript?: unknown } }).features?.typescript;
  const tsx = !strips || process.execArgv.some((a) => a.includes('tsx'));
  return tsx ? [process.execPath, '--import', 'tsx', script] : [process.execPath, script];
}

/** The messages of the process warnings emitted while `f` runs (they come on the next tick, so this waits one turn of the event loop). */
export async function warningsDuring(f: () => Promise<unknown> | unknown): Promise<string[]> {
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

