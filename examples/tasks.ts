// Twenty concurrent async tasks, three ways:
//   1. unlimited: all twenty start at once;
//   2. limited at task creation: the loop that creates the tasks waits
//      before creating each one, so tasks come into being at the allowed rate;
//   3. limited at the start of each task: all twenty tasks exist at once and
//      each waits for its own turn before doing its work.
// The limit is 10 calls per second, patient (evenly spaced), so each limited
// run takes about 1.9 s: the first task goes at once, then one every 0.1 s.
//
//   npx tsx examples/tasks.ts      (or: npm run example)

import { RateLimit } from '../ratelimit.ts';

const TASKS = 20;
const MAX_COUNT = 10;
const PER = 1; // seconds

let start = performance.now();
const since = () => ((performance.now() - start) / 1000).toFixed(3).padStart(6);

// Stands in for real work, such as a request to a rate-limited API.
const pretendRequest = () => new Promise((resolve) => setTimeout(resolve, 50));

async function task(id: number, waited: number): Promise<void> {
  console.log(`${since()} s   task ${String(id).padStart(2)}    ${waited.toFixed(3)} s`);
  await pretendRequest();
}

function heading(text: string): void {
  console.log(`\n${text}\n  time     who        waited`);
  start = performance.now();
}

// 1. No limit.
heading('1. Unlimited: all twenty tasks start at once.');
{
  const tasks: Promise<void>[] = [];
  for (let id = 1; id <= TASKS; id++) tasks.push(task(id, 0));
  await Promise.all(tasks);
}

// 2. Limited where tasks are created. wait() resolves to the seconds this
//    call was held back; the task is created only after that.
heading(`2. Limited at task creation (${MAX_COUNT} per ${PER} s): the loop waits before creating each task.`);
{
  const limit = new RateLimit({ maxCount: MAX_COUNT, per: PER });
  const tasks: Promise<void>[] = [];
  for (let id = 1; id <= TASKS; id++) {
    const waited = await limit.wait();
    tasks.push(task(id, waited));
  }
  await Promise.all(tasks);
}

// 3. Limited inside each task. All tasks are created at once; each one waits
//    for its slot. Slots are handed out first come, first served.
heading(`3. Limited at the start of each task (${MAX_COUNT} per ${PER} s): all tasks exist, each waits its turn.`);
{
  const limit = new RateLimit({ maxCount: MAX_COUNT, per: PER });
  const limitedTask = async (id: number) => task(id, await limit.wait());
  const tasks: Promise<void>[] = [];
  for (let id = 1; id <= TASKS; id++) tasks.push(limitedTask(id));
  await Promise.all(tasks);
}

console.log(`\nIn 2 and 3 the tasks start ${PER / MAX_COUNT} s apart: ${MAX_COUNT} per ${PER} s, evenly spaced.`);
