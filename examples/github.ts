// Staying inside GitHub-style limits, against a small local server that
// imposes them. The example starts the server itself (127.0.0.1, a free
// port) and exits by itself after 3 to 5 seconds.
//
// The server, like GitHub's API:
// - allows 6 requests per window of 1 s (GitHub: 5,000 an hour), and says so
//   on every answer with x-ratelimit-limit, -remaining and -reset (the
//   window's end, in epoch seconds);
// - answers 429 with Retry-After (seconds) once a window is used up, and 403
//   with Retry-After if more than 3 requests are in flight at once (GitHub's
//   secondary limit on concurrent requests);
// - charges each request "points" it only tells in the answer (GitHub's
//   GraphQL reports `rateLimit.cost`; OpenAI reports `usage.total_tokens`).
// Partway through the first window (once this client has made 2 requests in
// it), another program using the same token spends what is left of it: this
// client cannot see that coming, and gets a 429.
//
// The client keeps all of that with one limiter, shared through a state file
// by every process that names it (here: one process, 18 requests at once):
// - limits: 6 requests per 1 s, greedy, like the server's window, and a
//   budget of 16 points per 1 s, charged an estimate of 2 before each request
//   and settled to the real cost from the answer (permit.settle);
// - maxConcurrent: 3, the server's concurrency cap, held by run() for the
//   whole request;
// - on a 429 or 403 with Retry-After: pause(retryAfter(headers)) while still
//   holding the permit, which holds every caller in every process, including
//   those already asleep on a slot; the request is tried again after the
//   pause. On x-ratelimit-remaining 0, a pause until x-ratelimit-reset.
// What to see in the timeline: the 429s all answer requests sent before the
// first pause (at most the 3 in flight); none sent after it gets one.
//
//   npx tsx examples/github.ts

import { createServer, type ServerResponse } from 'node:http';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { RateLimit, retryAfter } from '../ratelimit.ts';

const REQUESTS = 18;
const SERVER = { perWindow: 6, concurrent: 3 };
const ESTIMATE = 2; // points charged before a request; the answer tells the real cost

// The server's windows are whole seconds of the wall clock, as GitHub's reset
// is whole epoch seconds; start at the top of one, so the first window is whole.
await new Promise((r) => setTimeout(r, 1000 - (Date.now() % 1000)));
const start = performance.now();
const since = (t = performance.now()) => ((t - start) / 1000).toFixed(3).padStart(6);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

// --- the server ---------------------------------------------------------------

let window = -1; // the current window: whole seconds of the wall clock
let used = 0;
let inFlight = 0;
let mostInFlight = 0;
const answered: number[] = []; // the status of every answer, in order
let otherProgramStruck = false;

const server = createServer((req, res) => {
  const nowS = Date.now() / 1000;
  if (Math.floor(nowS) !== window) { window = Math.floor(nowS); used = 0; }
  const reset = window + 1;
  const headers = (remaining: number) => ({
    'content-type': 'application/json',
    'x-ratelimit-limit': String(SERVER.perWindow),
    'x-ratelimit-remaining': String(remaining),
    'x-ratelimit-reset': String(reset),
  });
  const refuse = (status: number, message: string) => {
    answered.push(status);
    res.writeHead(status, { ...headers(Math.max(0, SERVER.perWindow - used)), 'retry-after': String(Math.ceil(reset - nowS)) });
    res.end(JSON.stringify({ message }));
  };
  if (inFlight >= SERVER.concurrent) return refuse(403, 'You have exceeded a secondary rate limit (concurrent requests).');
  if (used >= SERVER.perWindow) return refuse(429, 'API rate limit exceeded.');
  used++;
  // Another program with the same token spends the rest of the first window
  // once this client has made 2 requests in it.
  if (!otherProgramStruck && used === 2) {
    otherProgramStruck = true;
    used = SERVER.perWindow;
    console.log(`${since()} s  another program spends the rest of this window`);
  }
  inFlight++;
  mostInFlight = Math.max(mostInFlight, inFlight);
  // Some work, 40 to 120 ms, and a cost of 1 to 4 points that only the answer tells.
  const cost = 1 + Math.floor(Math.random() * 4);
  const answer = (r: ServerResponse) => {
    inFlight--;
    answered.push(200);
    r.writeHead(200, headers(SERVER.perWindow - used));
    r.end(JSON.stringify({ data: { url: req.url }, cost }));
  };
  setTimeout(() => answer(res), 40 + Math.random() * 80);
});
await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
const { port } = server.address() as { port: number };
const base = `http://127.0.0.1:${port}`;

// --- the client ---------------------------------------------------------------

const dir = mkdtempSync(join(tmpdir(), 'ratelimit-github-'));
const limit = new RateLimit({
  limits: [
    { maxCount: 6, per: 1, greedy: true },                   // requests per window
    { maxCount: 16, per: 1, greedy: true, unit: 'points' },  // points per window
  ],
  maxConcurrent: 3,
  file: join(dir, 'github.ratelimit.json'),
});
let firstPause: number | undefined; // when the first pause() had been recorded
const attempts: { granted: number; status: number }[] = [];

async function get(n: number): Promise<void> {
  for (let attempt = 1; ; attempt++) {
    const answer = await limit.run(async (permit) => {
      const granted = performance.now();
      const response = await fetch(`${base}/graphql?request=${n}`);
      const body = (await response.json()) as { cost?: number };
      attempts.push({ granted, status: response.status });
      let paused: number | undefined;
      if (response.status === 429 || (response.status === 403 && response.headers.has('retry-after'))) {
        // Pause before the permit is released: a caller waiting for this
        // concurrency slot would otherwise take it, and go, before the pause.
        paused = retryAfter(response.headers) ?? 60;
        await limit.pause(paused);
        firstPause ??= performance.now();
      } else if (body.cost !== undefined) {
        // Charge what the answer says it cost: a refund or an overrun of the estimate.
        await permit.settle({ points: body.cost });
      }
      return { response, cost: body.cost, paused };
    }, { cost: { points: ESTIMATE } });
    const { response, paused } = answer;
    const h = response.headers;
    const tag = `${since()} s  #${String(n).padStart(2)}${attempt > 1 ? ` (try ${attempt})` : '        '}  ${response.status}`;
    if (paused !== undefined) {
      console.log(`${tag}  Retry-After ${h.get('retry-after')}: pause(${paused}) for every caller`);
      continue; // the next try goes after the pause, like every other caller
    }
    console.log(`${tag}  remaining ${h.get('x-ratelimit-remaining')}, cost ${answer.cost} point${answer.cost === 1 ? '' : 's'} (estimated ${ESTIMATE}, settled)`);
    if (h.get('x-ratelimit-remaining') === '0') {
      const reset = Number(h.get('x-ratelimit-reset'));
      if (reset) await limit.pause(Math.max(0, reset - Date.now() / 1000));
    }
    return;
  }
}

console.log(`A server allowing ${SERVER.perWindow} requests per 1 s window and ${SERVER.concurrent} at once; ${REQUESTS} requests started together.`);
console.log('  time     request     answer');
await Promise.all(Array.from({ length: REQUESTS }, (_, i) => get(i + 1)));
const status = await limit.status();
limit.close();
server.close();
rmSync(dir, { recursive: true, force: true });
await sleep(0);

const refused = attempts.filter((a) => a.status !== 200);
const afterPause = refused.filter((a) => firstPause !== undefined && a.granted > firstPause);
const refusedByServer = answered.filter((status) => status !== 200);
console.log(`\nDone in ${since()} s. The server answered ${answered.length} requests: ${answered.length - refusedByServer.length} with 200, ` +
  `${refusedByServer.length} refused (${refusedByServer.join(', ') || 'none'}).`);
console.log(`Refused of those sent after the first pause: ${afterPause.length}. Most in flight at once: ${mostInFlight} (the cap is ${SERVER.concurrent}).`);
console.log(`In flight now: ${status.inFlight}.`);
