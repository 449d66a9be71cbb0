// Small helpers shared by the benchmarks: statistics, tables, child processes
// and temporary directories. No dependencies beyond node: built-ins.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const benchDir = dirname(fileURLToPath(import.meta.url));

/** Median of a list (the upper middle for even lengths). NaN when empty. */
export function median(xs: number[]): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

/** The q-quantile (0..1) by the nearest-rank rule. NaN when empty. */
export function quantile(xs: number[], q: number): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil(q * s.length) - 1))];
}

export function mean(xs: number[]): number {
  return xs.reduce((a, b) => a + b, 0) / xs.length;
}

/** Shuffles in place: contenders run in a new order in every round. */
export function shuffle<T>(xs: T[]): T[] {
  for (let i = xs.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1));
    [xs[i], xs[j]] = [xs[j], xs[i]];
  }
  return xs;
}

/** Rotates the list by `by` places: a cheap way to alternate who goes first. */
export function rotate<T>(xs: T[], by: number): T[] {
  const k = ((by % xs.length) + xs.length) % xs.length;
  return [...xs.slice(k), ...xs.slice(0, k)];
}

/** Formats a number with a fixed count of decimals, or a dash when not a number. */
export function fmt(x: number, digits = 1): string {
  return Number.isFinite(x) ? x.toFixed(digits) : '-';
}

/** Prints a table with a title, right-aligning every column but the first. */
export function printTable(title: string, header: string[], rows: string[][], notes: string[] = []): void {
  const all = [header, ...rows];
  const widths = header.map((_, i) => Math.max(...all.map((r) => (r[i] ?? '').length)));
  const line = (r: string[]) => r.map((c, i) => (i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join('  ');
  console.log(`\n${title}`);
  console.log(line(header));
  console.log(widths.map((w) => '-'.repeat(w)).join('  '));
  for (const r of rows) console.log(line(r));
  for (const n of notes) console.log(`  ${n}`);
}

// Temporary directories not yet removed, so an interrupted run removes them too.
const tempDirs = new Set<string>();

/** A temporary directory, removed by the returned function (or when this process exits). */
export function tempDir(prefix: string): { dir: string; remove: () => void } {
  const dir = mkdtempSync(join(process.env.BENCH_DIR ?? tmpdir(), `ratelimit-bench-${prefix}-`));
  tempDirs.add(dir);
  return { dir, remove: () => { rmSync(dir, { recursive: true, force: true }); tempDirs.delete(dir); } };
}

// Every child started by this process, so that none outlives it.
const children = new Set<ChildProcess>();
function killAll(): void {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  for (const dir of tempDirs) rmSync(dir, { recursive: true, force: true });
}
process.once('exit', killAll);
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
  process.once(sig, () => { killAll(); process.exit(130); });
}

export interface Child {
  proc: ChildProcess;
  /** Resolves with every JSON line the child printed, once it exits with status 0. */
  done: Promise<any[]>;
  /** Resolves with the first JSON line the child prints. */
  firstMessage: Promise<any>;
}

/**
 * Starts `node --import tsx bench/<script> <json job>` (the real node
 * process, so a kill hits it and not a wrapper). The child prints its results
 * as JSON lines on stdout. It is killed if it runs past `timeoutMs`.
 */
export function startChild(script: string, job: unknown, timeoutMs = 60_000, nodeFlags: string[] = []): Child {
  const proc = spawn(process.execPath, [...nodeFlags, '--import', 'tsx', join(benchDir, script), JSON.stringify(job)], {
    cwd: benchDir, stdio: ['pipe', 'pipe', 'pipe'],
    // A candidate copy named relative to where the bench was started must still be found from bench/.
    env: process.env.RATELIMIT_CANDIDATE ? { ...process.env, RATELIMIT_CANDIDATE: resolve(process.env.RATELIMIT_CANDIDATE) } : process.env,
  });
  children.add(proc);
  const lines: any[] = [];
  let out = '';
  let err = '';
  let resolveFirst: (v: any) => void;
  let rejectFirst: (e: Error) => void;
  const firstMessage = new Promise<any>((res, rej) => { resolveFirst = res; rejectFirst = rej; });
  firstMessage.catch(() => {});
  proc.stdout!.setEncoding('utf8').on('data', (chunk: string) => {
    out += chunk;
    let nl: number;
    while ((nl = out.indexOf('\n')) >= 0) {
      const text = out.slice(0, nl).trim();
      out = out.slice(nl + 1);
      if (!text) continue;
      try {
        const msg = JSON.parse(text);
        if (lines.length === 0) resolveFirst(msg);
        lines.push(msg);
      } catch {
        err += `${text}\n`;
      }
    }
  });
  proc.stderr!.setEncoding('utf8').on('data', (chunk: string) => { err += chunk; });
  const timer = setTimeout(() => proc.kill('SIGKILL'), timeoutMs);
  const done = new Promise<any[]>((res, rej) => {
    proc.on('exit', (code, signal) => {
      clearTimeout(timer);
      children.delete(proc);
      const failure = new Error(`bench child ${script} exited with ${signal ?? code}\n${err.trim()}`);
      rejectFirst(failure);
      if (code === 0) res(lines);
      else rej(failure);
    });
  });
  done.catch(() => {});
  return { proc, done, firstMessage };
}

/**
 * Waits until every child has said it is ready (see {@link childReady}), then
 * tells them all to begin at `clock() + aheadMs` and returns that moment.
 * Starting only once all are ready keeps a slow start-up (tsx on a busy
 * machine) from shifting one child against the others.
 */
export async function startAll(children: Child[], clock: () => number = Date.now, aheadMs = 300): Promise<number> {
  await Promise.all(children.map((c) => c.firstMessage));
  const start = clock() + aheadMs;
  for (const c of children) c.proc.stdin!.write(`${start}\n`);
  return start;
}

/** Child side of {@link startAll}: says it is ready, and resolves to the start time the parent sends. */
export function childReady(): Promise<number> {
  return new Promise((resolve) => {
    let text = '';
    process.stdin.setEncoding('utf8').on('data', (chunk: string) => {
      text += chunk;
      if (text.includes('\n')) { process.stdin.pause(); resolve(Number(text.trim())); }
    });
    send({ ready: true });
  });
}

/** Sleeps until Date.now() reaches `at`, then spins the last 2 ms so processes start together. */
export async function waitUntilWall(at: number): Promise<void> {
  const left = at - Date.now() - 2;
  if (left > 0) await new Promise((r) => setTimeout(r, left));
  while (Date.now() < at) { /* spin the last moments */ }
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** The job a child was given as its one argument. */
export function jobArg<T>(): T {
  return JSON.parse(process.argv[2] ?? '{}') as T;
}

/** Prints one JSON result line for the parent. */
export function send(msg: unknown): void {
  process.stdout.write(`${JSON.stringify(msg)}\n`);
}
