// A local HTTP server that enforces a hidden rate limit and reports it in the
// headers of one dialect, for tests and examples of observe(). It listens on
// 127.0.0.1, on a free port.
//
// The budget: `budget` requests per window of `window` seconds, and, with
// `tokens`, that many tokens per window as well; each request says its token
// cost in an `x-cost-tokens` header (none: 0). Windows are fixed, one after
// another from the moment the server starts listening. A request that fits
// is counted and answered 200; one that does not is answered 429 with
// Retry-After (whole seconds to the window's end, rounded up), and counts
// nothing. Both carry the dialect's headers: what is left of the window and
// when it ends, as of the moment the request arrived.
//
// With `delayMs`, each answer is sent 0 to delayMs ms after the request was
// counted, at random, so answers arrive late and out of order, carrying what
// was left when they were counted, as a busy real server's do.
//
// Dialects, each as the API sends it (readServerReport() in ratelimit.ts reads them):
//   ietf       RateLimit-Policy and RateLimit ("requests" policy; "tokens" with qu="tokens")
//   ietf-old   RateLimit-Limit, -Remaining, -Reset (seconds from now, rounded up)
//   github     x-ratelimit-limit, -remaining, -used, -reset (epoch seconds, rounded up), -resource: core
//   openai     x-ratelimit-{limit,remaining,reset}-{requests,tokens}; resets as durations ("1.234s")
//   anthropic  anthropic-ratelimit-{requests,tokens}-{limit,remaining,reset}; resets as RFC 3339 times
//   discord    x-ratelimit-limit, -remaining, -reset (epoch seconds with ms), -reset-after, -bucket
// A tokens budget is enforced in every dialect, but only ietf, openai and
// anthropic have headers to report it in: in the others it stays hidden.

import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

export type Dialect = 'ietf' | 'ietf-old' | 'github' | 'openai' | 'anthropic' | 'discord';
export const DIALECTS: readonly Dialect[] = ['ietf', 'ietf-old', 'github', 'openai', 'anthropic', 'discord'];

export interface ServerOptions {
  dialect: Dialect;
  /** Requests allowed per window. */
  budget: number;
  /** The window, in seconds. */
  window: number;
  /** Tokens allowed per window, each request costing its `x-cost-tokens`; no limit when absent. */
  tokens?: number;
  /** Delay each answer by 0 to this many ms, at random. Default 0. */
  delayMs?: number;
}

/** What the server did in one window. */
export interface WindowStats {
  /** The window's number, 0 for the first. */
  index: number;
  /** Requests answered 200 (or counted and still to be answered, with delayMs). */
  ok: number;
  /** Requests answered 429. */
  refused: number;
  /** Tokens spent by the requests answered 200. */
  tokens: number;
}

export interface ServerStats {
  ok: number;
  refused: number;
  /** Only the windows in which some request arrived, in order. */
  windows: WindowStats[];
}

export interface TestServer {
  url: string;
  port: number;
  /** Closes the server and every connection to it. */
  stop(): Promise<void>;
  stats(): ServerStats;
}

// The header that says what a request costs in tokens.
export const COST_HEADER = 'x-cost-tokens';

export async function startServer(options: ServerOptions): Promise<TestServer> {
  const { dialect, budget, window, tokens, delayMs = 0 } = options;
  if (!DIALECTS.includes(dialect)) throw new TypeError(`startServer: unknown dialect ${JSON.stringify(dialect)}`);
  if (!(Number.isInteger(budget) && budget > 0)) {
    throw new RangeError('startServer: budget must be a whole number above 0');
  }
  if (!(window > 0)) throw new RangeError('startServer: window must be a number of seconds above 0');
  const windows = new Map<number, WindowStats>();
  let start = 0; // performance.now() when listening began
  const timers = new Set<NodeJS.Timeout>();

  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const now = performance.now();
    const index = Math.floor((now - start) / (window * 1000));
    const endsIn = (start + (index + 1) * window * 1000 - now) / 1000; // seconds to the window's end
    let w = windows.get(index);
    if (!w) windows.set(index, (w = { index, ok: 0, refused: 0, tokens: 0 }));
    const cost = Number(req.headers[COST_HEADER] ?? 0);
    const fits = w.ok < budget && (tokens === undefined || w.tokens + (Number.isFinite(cost) ? cost : 0) <= tokens);
    if (fits) {
      w.ok++;
      w.tokens += Number.isFinite(cost) ? cost : 0;
    } else w.refused++;
    const left = { requests: budget - w.ok, tokens: tokens === undefined ? undefined : tokens - w.tokens };
    const headers = dialectHeaders(dialect, { budget, tokens, window, left, endsIn, used: w.ok });
    if (!fits) headers['retry-after'] = String(Math.ceil(endsIn));
    const answer = () => {
      res.writeHead(fits ? 200 : 429, { 'content-type': 'application/json', ...headers });
      res.end(JSON.stringify(fits ? { ok: true } : { message: 'rate limit exceeded' }));
    };
    // Drain the request body, if any, so keep-alive connections stay usable.
    req.resume();
    if (delayMs <= 0) return answer();
    const timer = setTimeout(() => { timers.delete(timer); answer(); }, Math.random() * delayMs);
    timers.add(timer);
  });

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  start = performance.now();
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/`,
    port,
    async stop() {
      for (const timer of timers) clearTimeout(timer);
      timers.clear();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
    stats() {
      const list = [...windows.values()].sort((a, b) => a.index - b.index).map((s) => ({ ...s }));
      const sum = (key: 'ok' | 'refused') => list.reduce((n, s) => n + s[key], 0);
      return { ok: sum('ok'), refused: sum('refused'), windows: list };
    },
  };
}

interface Snapshot {
  budget: number;
  tokens: number | undefined;
  window: number;
  left: { requests: number; tokens: number | undefined };
  /** Seconds to the window's end. */
  endsIn: number;
  used: number;
}

// The dialect's headers for what is left of the window.
function dialectHeaders(dialect: Dialect, s: Snapshot): Record<string, string> {
  const wallEnd = Date.now() / 1000 + s.endsIn; // the window's end in epoch seconds
  const h: Record<string, string> = {};
  switch (dialect) {
    case 'ietf': {
      const policies = [`"requests";q=${s.budget};w=${Math.ceil(s.window)}`];
      const current = [`"requests";r=${s.left.requests};t=${Math.ceil(s.endsIn)}`];
      if (s.tokens !== undefined) {
        policies.push(`"tokens";q=${s.tokens};qu="tokens";w=${Math.ceil(s.window)}`);
        current.push(`"tokens";r=${s.left.tokens};t=${Math.ceil(s.endsIn)}`);
      }
      h['ratelimit-policy'] = policies.join(', ');
      h.ratelimit = current.join(', ');
      break;
    }
    case 'ietf-old':
      h['ratelimit-limit'] = String(s.budget);
      h['ratelimit-remaining'] = String(s.left.requests);
      h['ratelimit-reset'] = String(Math.ceil(s.endsIn));
      break;
    case 'github':
      h['x-ratelimit-limit'] = String(s.budget);
      h['x-ratelimit-remaining'] = String(s.left.requests);
      h['x-ratelimit-used'] = String(s.used);
      h['x-ratelimit-reset'] = String(Math.ceil(wallEnd));
      h['x-ratelimit-resource'] = 'core';
      break;
    case 'openai':
      h['x-ratelimit-limit-requests'] = String(s.budget);
      h['x-ratelimit-remaining-requests'] = String(s.left.requests);
      h['x-ratelimit-reset-requests'] = goDuration(s.endsIn);
      if (s.tokens !== undefined) {
        h['x-ratelimit-limit-tokens'] = String(s.tokens);
        h['x-ratelimit-remaining-tokens'] = String(s.left.tokens);
        h['x-ratelimit-reset-tokens'] = goDuration(s.endsIn);
      }
      break;
    case 'anthropic': {
      const at = new Date(Math.ceil(wallEnd * 1000)).toISOString();
      h['anthropic-ratelimit-requests-limit'] = String(s.budget);
      h['anthropic-ratelimit-requests-remaining'] = String(s.left.requests);
      h['anthropic-ratelimit-requests-reset'] = at;
      if (s.tokens !== undefined) {
        h['anthropic-ratelimit-tokens-limit'] = String(s.tokens);
        h['anthropic-ratelimit-tokens-remaining'] = String(s.left.tokens);
        h['anthropic-ratelimit-tokens-reset'] = at;
      }
      break;
    }
    case 'discord':
      h['x-ratelimit-limit'] = String(s.budget);
      h['x-ratelimit-remaining'] = String(s.left.requests);
      h['x-ratelimit-reset'] = (Math.ceil(wallEnd * 1000) / 1000).toFixed(3);
      h['x-ratelimit-reset-after'] = (Math.ceil(s.endsIn * 1000) / 1000).toFixed(3);
      h['x-ratelimit-bucket'] = 'b1e5d0c4a2';
      break;
  }
  return h;
}

// A duration as OpenAI writes one: "20ms", "1.234s", "6m0s" (rounded up to the ms).
function goDuration(seconds: number): string {
  const ms = Math.ceil(seconds * 1000);
  if (ms < 1000) return `${ms}ms`;
  const minutes = Math.floor(ms / 60_000);
  const rest = `${Number(((ms % 60_000) / 1000).toFixed(3))}s`;
  return minutes > 0 ? `${minutes}m${rest}` : rest;
}
