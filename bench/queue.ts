// Question 10: how well does the queue for concurrency slots serve many
// waiters? The README's own pattern, Promise.all(items.map((x) =>
// limit.run(...))), with 10 to 1,000 tasks of 50 ms under maxConcurrent 10:
// the ideal is 10 tasks per 50 ms, 200 tasks/s. Each row is the median of
// ROUNDS runs:
// - in one process, in memory and on a file;
// - in 4 processes sharing the file (a quarter of the tasks each);
// - the longest stall of an event loop (a 1 ms interval's longest gap);
// - CPU: a process whose 100 calls all wait while another process holds
//   the one slot for 5 s, as a share of one core.
//
//   node --import tsx bench/queue.ts     (ROUNDS=3 by default)
//   TASK_MS=200 TASKS=500 node --import tsx bench/queue.ts   one size, other tasks
import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { benchDir, fmt, median, printTable, tempDir } from './lib.ts';

const ROUNDS = Number(process.env.ROUNDS ?? 3);
const TASK_MS = Number(process.env.TASK_MS ?? 50);
const CAP = 10;
const { dir, remove } = tempDir('queue');
const child = join(benchDir, 'queue-child.ts');

interface Out { end: number; cpuMs: number; gapMs: number; most: number; waited?: { cpuMs: number; ms: number } }
// Starts one process per argument list, waits until every one has loaded
// (tsx takes hundreds of ms per process here), then starts them together,
// 200 ms later plus each one's offset. Resolves to the start time and results.
async function together(argsList: string[][], offsets: number[] = []): Promise<{ startAt: number; outs: Out[] }> {
  const procs: ChildProcess[] = [];
  const loaded: Promise<void>[] = [];
  const results = argsList.map((args) => new Promise<Out>((resolve, reject) => {
    const p = spawn(process.execPath, ['--import', 'tsx', child, ...args], { stdio: ['pipe', 'pipe', 'inherit'] });
    procs.push(p);
    let out = '';
    loaded.push(new Promise((ready) => p.stdout!.on('data', (d) => {
      out += d;
      if (out.startsWith('ready\n')) ready();
    })));
    p.on('exit', (code) => (code === 0 ? resolve(JSON.parse(out.slice('ready\n'.length)) as Out) : reject(new Error(`queue-child exited ${code}`))));
  }));
  await Promise.all(loaded);
  const startAt = Date.now() + 200;
  procs.forEach((p, k) => p.stdin!.end(`${startAt + (offsets[k] ?? 0)}\n`));
  return { startAt, outs: await Promise.all(results) };
}

let round = 0;
async function trial(where: 'memory' | 'file', procs: number, tasks: number): Promise<{ ratio: number; gapMs: number; most: number }> {
  const file = where === 'memory' ? 'memory' : join(dir, `q${round++}.json`);
  const each = Array.from({ length: procs }, (_, k) => Math.floor(tasks / procs) + (k < tasks % procs ? 1 : 0));
  const { startAt, outs } = await together(each.map((n) => [file, String(n), String(TASK_MS), String(CAP)]));
  const took = Math.max(...outs.map((o) => o.end)) - startAt;
  const ideal = Math.ceil(tasks / CAP) * TASK_MS;
  return { ratio: took / ideal, gapMs: Math.max(...outs.map((o) => o.gapMs)), most: Math.max(...outs.map((o) => o.most)) };
}

const rows: string[][] = [];
for (const [where, procs] of process.env.CPU_ONLY ? [] : [['memory', 1], ['file', 1], ['file', 4]] as const) {
  for (const tasks of process.env.TASKS ? [Number(process.env.TASKS)] : [10, 100, 1000]) {
    const rs = [];
    for (let k = 0; k < ROUNDS; k++) rs.push(await trial(where, procs, tasks));
    const ratio = median(rs.map((r) => r.ratio));
    rows.push([`${where}, ${procs} process${procs > 1 ? 'es' : ''}`, String(tasks), fmt((1000 * CAP) / TASK_MS / ratio, 0), fmt(ratio, 3),
      fmt(median(rs.map((r) => r.gapMs)), 1), String(Math.max(...rs.map((r) => r.most)))]);
  }
}
printTable(`Question 10: ${TASK_MS} ms tasks through run() under maxConcurrent ${CAP} (ideal ${(1000 * CAP) / TASK_MS} tasks/s), median of ${ROUNDS}`,
  ['where', 'tasks', 'tasks/s', 'time / ideal', 'longest stall ms', 'most in flight in a process'], rows,
  [`time / ideal: from the common start to the last task's end, over ceil(tasks / 10) x ${TASK_MS} ms; it includes each process's first transaction.`]);

// CPU of waiting: a holder keeps the one slot 5 s; another process's 100
// calls, started 100 ms later, wait for it.
const cpu: number[] = [];
for (let k = 0; k < ROUNDS; k++) {
  const file = join(dir, `cpu${k}.json`);
  const { outs } = await together([[file, '1', '5000', '1', 'holder'], [file, '100', '0', '1', 'quiet']], [0, 100]);
  const w = outs[1] as Out;
  if (w.waited) cpu.push(w.waited.cpuMs / w.waited.ms);
}
printTable('Question 10 (cont.): CPU of a process whose 100 calls all wait 5 s for the slot another process holds',
  ['', 'share of one core'], [['waiting process', `${fmt(100 * median(cpu), 2)}%`]],
  [`median of ${ROUNDS}; the waiter's CPU from 1 s after its start to its first task, over that time (about 3.9 s)`]);
remove();
