// test/observe/headers.ts: reading what a server says about its rate limit,
// from the headers of one response: the first part of limit.observe(), staged
// here with its tests (test/observe-headers.test.ts) until observe() moves into
// ratelimit.ts, which it is written for (types and readServerReport in
// section 1, helpers in section 3). Only built-ins; nothing here keeps state
// or reads a clock (the caller passes `now`).
//
// The dialects read, and how each is told apart (several may sit in one
// response, from a gateway in front of an API; each gives its own limits):
//   - IETF draft-ietf-httpapi-ratelimit-headers: `RateLimit` (with the units
//     and quotas of `RateLimit-Policy`), as structured-field lists. Without
//     `RateLimit`, the draft's older form `RateLimit-Limit`, `-Remaining`,
//     `-Reset`.
//   - OpenAI: `x-ratelimit-{limit,remaining,reset}-{requests,tokens}`; the
//     resets are durations such as `6m0s`.
//   - Anthropic: `anthropic-ratelimit-{requests,tokens,input-tokens,
//     output-tokens}-{limit,remaining,reset}`; the resets are RFC 3339 times.
//   - GitHub and Discord share `x-ratelimit-limit`, `-remaining`, `-reset`.
//     Discord's when `-reset-after` or `-bucket` is there, or the reset has a
//     fraction (Discord sends milliseconds); GitHub's otherwise.
//   - `Retry-After` on a 429 or a 503, or beside headers that carry no status.

/** One limit a server reported: `remaining` units of `unit` are left until `resetIn` seconds from now. */
export interface ServerLimit {
  /** What it counts, in this file's units: 'calls' for requests; 'tokens', 'input-tokens', 'output-tokens'. */
  unit: string;
  /** Units left in the server's current window. */
  remaining: number;
  /** Seconds from now until the window resets (the budget grows back). */
  resetIn: number;
  /** The server's limit for the window, when it says. */
  limit?: number;
  /**
   * The server's name for this limit (an IETF policy name, GitHub's resource, Discord's bucket), when it gives
   * one.
   */
  name?: string;
}

/** What a response's headers say about the rate limit. */
export interface ServerReport {
  limits: ServerLimit[];
  /** Seconds to hold every call, from Retry-After on a 429 or 503 (or Discord's global limit); undefined when none. */
  pause?: number;
  /** One line per header that was present but could not be trusted, saying which and why (the caller warns). */
  ignored: string[];
}

/**
 * Reads a fetch Response, a Headers, a plain headers object (any case; values string, number or string[]),
 * or { status, headers }. `now` is wall time in ms (Date.now()), for the dialects that send absolute times.
 *
 * Guarantees: it never throws for what the headers say, only for an argument that holds no headers
 * (TypeError). Every limit it returns has a whole `remaining` of 0 or more, never above its `limit`, and a
 * `resetIn` from 0 to a day; `pause` is from 0 to a day. A header it could not trust is named in `ignored`
 * and used for nothing; a reset or pause longer than a day is held to a day and also named there.
 */
export function readServerReport(response: unknown, now: number = Date.now()): ServerReport {
  const r = headerReading(response, now);
  if (!readIetf(r)) readIetfOld(r);
  readOpenAi(r);
  readAnthropic(r);
  readGitHubOrDiscord(r);
  readRetryAfter(r);
  const report: ServerReport = { limits: r.limits, ignored: r.ignored };
  if (r.pause !== undefined) report.pause = r.pause;
  return report;
}

// The longest reset or pause trusted: a day, the longest pause the limiter
// accepts (MAX_DURATION_S in ratelimit.ts; use that one when pasting).
const SERVER_MAX_WAIT_S = 86_400;
// The longest header value read. The longest real one here is a list of a few
// IETF policies, some 100 characters; the bound caps the parser's work on a
// header that is garbage or hostile.
const HEADER_MAX_CHARS = 1_000;
// A reset of x-ratelimit-reset or RateLimit-Reset at or above this is epoch
// seconds, below it seconds from now: 10^9 s is 31 years, longer than any
// window, and an epoch clock last read that little in September 2001.
const EPOCH_FLOOR_S = 1e9;
// How much of a bad value an `ignored` line quotes, so that a long one stays a line.
const QUOTE_MAX_CHARS = 40;
// What the IETF quota units ("qu") count, in this file's units. "requests" is
// the draft's default. The token units are not in the draft's registry, but
// they are what a gateway in front of a language model would count, and the
// names this file uses for them. "content-bytes" and "concurrent-requests"
// are not rates this limiter keeps, so they are ignored.
const IETF_UNITS = new Map([['requests', 'calls'], ['tokens', 'tokens'], ['input-tokens', 'input-tokens'],
  ['output-tokens', 'output-tokens']]);

// One response being read: its headers, its status if known, and the report so far.
interface HeaderReading {
  /** A header's value, trimmed; undefined when absent or unreadable (which is then reported once). */
  get(name: string): string | undefined;
  status: number | undefined;
  now: number;
  limits: ServerLimit[];
  pause: number | undefined;
  ignored: string[];
}

// Where the headers are: the argument, or its `headers`, which is a Headers
// (anything with get()) or a plain object. A status comes from `status` (fetch)
// or `statusCode` (node:http's IncomingMessage).
function headerReading(response: unknown, now: number): HeaderReading {
  if (typeof response !== 'object' || response === null) {
    throw new TypeError('ratelimit: observe() takes a fetch Response, a Headers, a plain object of headers or ' +
      `{ status, headers }, got ${response === null ? 'null' : typeof response}`);
  }
  const outer = response as { headers?: unknown; status?: unknown; statusCode?: unknown };
  const nested = typeof outer.headers === 'object' && outer.headers !== null;
  const source = (nested ? outer.headers : response) as { get?: unknown };
  const code = nested ? outer.status ?? outer.statusCode : undefined;
  const raw = typeof source.get === 'function'
    ? (name: string): unknown => (source.get as (n: string) => unknown).call(source, name)
    : plainHeaders(source as Record<string, unknown>);
  const seen = new Map<string, string | undefined>();
  const r: HeaderReading = {
    status: typeof code === 'number' && Number.isInteger(code) ? code : undefined,
    now: Number.isFinite(now) ? now : Date.now(),
    limits: [],
    pause: undefined,
    ignored: [],
    get(name) {
      if (!seen.has(name)) seen.set(name, headerText(r, name, raw(name)));
      return seen.get(name);
    },
  };
  return r;
}

// Looks up a plain object's headers in any case; the same name twice in
// different cases is one header, as it is on the wire.
function plainHeaders(headers: Record<string, unknown>): (name: string) => unknown {
  const byName = new Map<string, unknown[]>();
  for (const [key, value] of Object.entries(headers)) {
    const name = key.toLowerCase();
    byName.set(name, [...(byName.get(name) ?? []), ...(Array.isArray(value) ? value : [value])]);
  }
  return (name) => byName.get(name);
}

// A header's text: several values joined as a fetch Headers joins them (", ",
// which is also how structured-field lists split over lines rejoin).
function headerText(r: HeaderReading, name: string, value: unknown): string | undefined {
  const parts = (Array.isArray(value) ? value : [value]).filter((v) => v !== undefined && v !== null);
  if (parts.length === 0) return undefined;
  if (!parts.every((v) => typeof v === 'string' || (typeof v === 'number' && Number.isFinite(v)))) {
    r.ignored.push(`${name}: not a string or a number`);
    return undefined;
  }
  const text = parts.join(', ').trim();
  if (text.length > HEADER_MAX_CHARS) {
    r.ignored.push(`${name}: longer than ${HEADER_MAX_CHARS} characters`);
    return undefined;
  }
  return text;
}

function bad(r: HeaderReading, name: string, value: string, why: string): undefined {
  const shown = value.length > QUOTE_MAX_CHARS ? `${value.slice(0, QUOTE_MAX_CHARS)}...` : value;
  r.ignored.push(`${name}: ${JSON.stringify(shown)} ${why}`);
  return undefined;
}

// --- the values ---------------------------------------------------------------

// A count: a whole number of 0 or more, of at most 15 digits (every such
// number is exact in a double, and it is the structured-field integer's bound).
function countOf(r: HeaderReading, name: string): number | undefined {
  const text = r.get(name);
  if (text === undefined) return undefined;
  return /^\d{1,15}$/.test(text) ? Number(text) : bad(r, name, text, 'is not a whole number of 0 or more');
}

// Seconds from now, given as seconds (fractions allowed, as Discord sends).
function secondsOf(r: HeaderReading, name: string): number | undefined {
  const text = r.get(name);
  if (text === undefined) return undefined;
  if (!/^\d{1,15}(\.\d{1,9})?$/.test(text)) return bad(r, name, text, 'is not a number of seconds of 0 or more');
  return held(r, name, Number(text));
}

// Seconds from now, given as epoch seconds or as seconds from now (see EPOCH_FLOOR_S).
function resetOf(r: HeaderReading, name: string): number | undefined {
  const text = r.get(name);
  if (text === undefined) return undefined;
  if (!/^\d{1,15}(\.\d{1,9})?$/.test(text)) return bad(r, name, text, 'is not a number of seconds of 0 or more');
  const value = Number(text);
  return held(r, name, value >= EPOCH_FLOOR_S ? value - r.now / 1000 : value);
}

// Seconds from now, given as an RFC 3339 time (Anthropic).
function dateOf(r: HeaderReading, name: string): number | undefined {
  const text = r.get(name);
  if (text === undefined) return undefined;
  const at = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?(Z|[+-]\d\d:\d\d)$/i.test(text) ? Date.parse(text) : NaN;
  return Number.isNaN(at) ? bad(r, name, text, 'is not an RFC 3339 time') : held(r, name, (at - r.now) / 1000);
}

// Seconds from now, given as a duration such as "1s", "6m0s", "20ms" or "1h2m3.5s" (OpenAI).
function durationOf(r: HeaderReading, name: string): number | undefined {
  const text = r.get(name);
  if (text === undefined) return undefined;
  if (text === '') return bad(r, name, text, 'is empty');
  const scale: Record<string, number> = { h: 3600, m: 60, s: 1, ms: 1e-3, us: 1e-6, 'µs': 1e-6, ns: 1e-9 };
  let seconds = 0;
  let rest = text;
  while (rest !== '') {
    const part = /^(\d{1,15}(?:\.\d{1,9})?)(h|ms|m|s|us|µs|ns)/.exec(rest);
    if (!part) return bad(r, name, text, 'is not a duration such as "6m0s" or "20ms"');
    seconds += Number(part[1]) * (scale[part[2] as string] as number);
    rest = rest.slice(part[0].length);
  }
  return held(r, name, seconds);
}

// A time that has passed is a reset now; one more than a day away is held to a day, and said.
function held(r: HeaderReading, name: string, seconds: number): number | undefined {
  if (!Number.isFinite(seconds)) return bad(r, name, String(seconds), 'is not a finite time');
  if (seconds <= SERVER_MAX_WAIT_S) return Math.max(0, seconds);
  r.ignored.push(`${name}: ${Math.round(seconds)} s away is more than a day; held to a day`);
  return SERVER_MAX_WAIT_S;
}

// --- the limits ---------------------------------------------------------------

// Adds one limit once both its remaining and its reset are known and agree
// with its limit. `names` are the headers it came from, for the report: when
// some were there but no limit could be made of them and nothing was said
// about why yet, one line says so.
interface Found {
  unit: string;
  remaining: number | undefined;
  resetIn: number | undefined;
  limit?: number | undefined;
  name?: string | undefined;
}

function addLimit(r: HeaderReading, names: string[], found: Found, reportedBefore: number): void {
  const { remaining, resetIn, limit } = found;
  const said = r.ignored.length > reportedBefore;
  const present = names.filter((n) => r.get(n) !== undefined);
  if (remaining === undefined || resetIn === undefined) {
    const missing = remaining === undefined ? 'remaining' : 'reset';
    if (present.length > 0 && !said) r.ignored.push(`${present.join(', ')}: no usable ${missing} beside them`);
    return;
  }
  if (limit !== undefined && remaining > limit) {
    r.ignored.push(`${present.join(', ')}: remaining ${remaining} is above the limit ${limit}`);
    return;
  }
  const out: ServerLimit = { unit: found.unit, remaining, resetIn };
  if (limit !== undefined) out.limit = limit;
  if (found.name !== undefined && found.name !== '') out.name = found.name;
  r.limits.push(out);
}

// IETF, current form. False when there is no RateLimit field (try the older form).
function readIetf(r: HeaderReading): boolean {
  const current = r.get('ratelimit');
  if (current === undefined) return false;
  const items = sfListOf(r, 'ratelimit', current);
  const policyText = r.get('ratelimit-policy');
  const policies = new Map<string, SfParams>();
  for (const item of policyText === undefined ? [] : sfListOf(r, 'ratelimit-policy', policyText) ?? []) {
    const name = sfName(item.value);
    if (name !== undefined) policies.set(name, item.params);
  }
  for (const item of items ?? []) readIetfItem(r, item, policies);
  return true;
}

function readIetfItem(r: HeaderReading, item: SfItem, policies: Map<string, SfParams>): void {
  const before = r.ignored.length;
  const name = sfName(item.value);
  if (name === undefined) {
    r.ignored.push('ratelimit: an item that names no policy');
    return;
  }
  const label = `ratelimit (policy ${JSON.stringify(name)})`;
  const policy = policies.get(name);
  const unitName = sfText(policy?.get('qu')) ?? 'requests';
  const unit = IETF_UNITS.get(unitName);
  if (unit === undefined) {
    r.ignored.push(`${label}: quota unit ${JSON.stringify(unitName)} is not a rate this limiter keeps`);
    return;
  }
  const remaining = sfCount(r, label, 'r', item.params.get('r'));
  if (!item.params.has('r')) r.ignored.push(`${label}: no r, the quota left`);
  const limit = sfCount(r, `ratelimit-policy (policy ${JSON.stringify(name)})`, 'q', policy?.get('q'));
  // Without t, the policy's window bounds how long the quota can last.
  const t = item.params.get('t') ?? policy?.get('w');
  let resetIn: number | undefined;
  if (typeof t === 'number' && t >= 0) resetIn = held(r, `${label} t`, t);
  else if (t !== undefined) r.ignored.push(`${label}: t is not a number of seconds of 0 or more`);
  else r.ignored.push(`${label}: no t, and no window (w) in its policy, so no time the quota holds until`);
  addLimit(r, ['ratelimit'], { unit, remaining, resetIn, limit, name }, before);
}

function sfCount(r: HeaderReading, label: string, key: string, value: SfValue | undefined): number | undefined {
  if (value === undefined) return undefined;
  if (typeof value === 'number' && Number.isInteger(value) && value >= 0) return value;
  r.ignored.push(`${label}: ${key} is not a whole number of 0 or more`);
  return undefined;
}

function sfListOf(r: HeaderReading, name: string, text: string): SfItem[] | undefined {
  try {
    return parseSfList(text);
  } catch (error) {
    return bad(r, name, text, `is not a structured-field list (${(error as Error).message})`);
  }
}

// IETF, the older form, which many servers still send.
function readIetfOld(r: HeaderReading): void {
  const before = r.ignored.length;
  const names = ['ratelimit-limit', 'ratelimit-remaining', 'ratelimit-reset'];
  // The limit was once a list whose first item is the quota ("100, 100;w=60").
  const limitText = r.get('ratelimit-limit');
  let limit: number | undefined;
  if (limitText !== undefined) {
    const first = sfListOf(r, 'ratelimit-limit', limitText)?.[0]?.value;
    limit = sfCount(r, 'ratelimit-limit', 'the quota', first);
  }
  const remaining = countOf(r, 'ratelimit-remaining');
  addLimit(r, names, { unit: 'calls', remaining, resetIn: resetOf(r, 'ratelimit-reset'), limit }, before);
}

function readOpenAi(r: HeaderReading): void {
  for (const [kind, unit] of [['requests', 'calls'], ['tokens', 'tokens']] as const) {
    const before = r.ignored.length;
    const names = ['limit', 'remaining', 'reset'].map((part) => `x-ratelimit-${part}-${kind}`) as
      [string, string, string];
    addLimit(r, names, { unit, limit: countOf(r, names[0]), remaining: countOf(r, names[1]),
      resetIn: durationOf(r, names[2]) }, before);
  }
}

function readAnthropic(r: HeaderReading): void {
  const kinds = [['requests', 'calls'], ['tokens', 'tokens'], ['input-tokens', 'input-tokens'],
    ['output-tokens', 'output-tokens']] as const;
  for (const [kind, unit] of kinds) {
    const before = r.ignored.length;
    const names = ['limit', 'remaining', 'reset'].map((part) => `anthropic-ratelimit-${kind}-${part}`) as
      [string, string, string];
    addLimit(r, names, { unit, limit: countOf(r, names[0]), remaining: countOf(r, names[1]),
      resetIn: dateOf(r, names[2]) }, before);
  }
}

// GitHub and Discord: the same three headers, and one more each.
function readGitHubOrDiscord(r: HeaderReading): void {
  const before = r.ignored.length;
  const reset = r.get('x-ratelimit-reset');
  const after = r.get('x-ratelimit-reset-after');
  const bucket = r.get('x-ratelimit-bucket');
  const discord = after !== undefined || bucket !== undefined || (reset?.includes('.') ?? false);
  const limit = countOf(r, 'x-ratelimit-limit');
  let remaining = countOf(r, 'x-ratelimit-remaining');
  // GitHub also says how many were used; that and the limit give what is left.
  const used = countOf(r, 'x-ratelimit-used');
  if (remaining === undefined && r.get('x-ratelimit-remaining') === undefined && used !== undefined &&
    limit !== undefined && used <= limit) remaining = limit - used;
  // Discord's reset-after is read on its own clock, so it is preferred to an epoch time.
  const resetIn = after !== undefined ? secondsOf(r, 'x-ratelimit-reset-after') : resetOf(r, 'x-ratelimit-reset');
  const name = discord ? bucket : r.get('x-ratelimit-resource');
  const names = ['x-ratelimit-limit', 'x-ratelimit-remaining', 'x-ratelimit-used', 'x-ratelimit-reset',
    'x-ratelimit-reset-after'];
  addLimit(r, names, { unit: 'calls', remaining, resetIn, limit, name }, before);
  // Discord's global limit holds every route; its 429 says how long in
  // Retry-After (read below), or else the reset is all there is to go on.
  if (discord && r.get('x-ratelimit-global')?.toLowerCase() === 'true' && (r.status ?? 429) === 429 &&
    r.get('retry-after') === undefined && resetIn !== undefined) r.pause = resetIn;
}

// Retry-After: delta seconds or an HTTP date (RFC 9110, 10.2.3). Only on a 429
// or a 503, where it means "back off"; elsewhere (a redirect, say) it does not.
// A fraction of a second is taken, as some servers send one.
function readRetryAfter(r: HeaderReading): void {
  const text = r.get('retry-after');
  if (text === undefined || (r.status !== undefined && r.status !== 429 && r.status !== 503)) return;
  let seconds: number | undefined;
  if (/^\d{1,15}(\.\d{1,9})?$/.test(text)) seconds = held(r, 'retry-after', Number(text));
  // An HTTP date starts with the day's name; Date.parse alone would also take "-5".
  else if (/^[A-Za-z]{3}, /.test(text) && !Number.isNaN(Date.parse(text))) {
    seconds = held(r, 'retry-after', (Date.parse(text) - r.now) / 1000);
  } else bad(r, 'retry-after', text, 'is neither seconds nor an HTTP date');
  if (seconds !== undefined) r.pause = Math.max(r.pause ?? 0, seconds);
}

// --- structured fields (RFC 9651), as far as these headers use them --------------

// A bare item: integers and decimals as numbers, strings as strings, tokens
// as { token }, byte sequences as { bytes } (base64, not decoded), booleans.
type SfValue = number | string | boolean | { token: string } | { bytes: string };
type SfParams = Map<string, SfValue>;
interface SfItem { value: SfValue; params: SfParams }

// A policy's name: a string, as the draft says, or a token, as some servers send.
function sfName(value: SfValue): string | undefined {
  if (typeof value === 'string') return value;
  return typeof value === 'object' && 'token' in value ? value.token : undefined;
}

function sfText(value: SfValue | undefined): string | undefined {
  return value === undefined ? undefined : sfName(value);
}

/** Parses a structured-field List of Items. Throws an Error saying what is wrong; inner lists are not read. */
function parseSfList(text: string): SfItem[] {
  let i = 0;
  const fail = (what: string): never => { throw new Error(`${what} at character ${i + 1}`); };
  const skip = (pattern: RegExp) => { while (i < text.length && pattern.test(text[i] as string)) i++; };
  const take = (pattern: RegExp): string => {
    const m = pattern.exec(text.slice(i))?.[0] ?? '';
    i += m.length;
    return m;
  };

  function bareItem(): SfValue {
    const c = text[i] ?? '';
    if (c === '-' || /\d/.test(c)) {
      const number = take(/^-?\d+(\.\d+)?/);
      const [whole = '', fraction] = number.replace('-', '').split('.');
      // At most 15 digits for an integer; 12 before the point and 3 after it for a decimal.
      const tooLong = fraction === undefined ? whole.length > 15 : whole.length > 12 || fraction.length > 3;
      if (tooLong) fail('a number too long');
      return Number(number);
    }
    if (c === '"') {
      const m = take(/^"((?:[\x20\x21\x23-\x5b\x5d-\x7e]|\\["\\])*)"/);
      return m ? m.slice(1, -1).replace(/\\(["\\])/g, '$1') : fail('a bad string');
    }
    if (c === '*' || /[A-Za-z]/.test(c)) return { token: take(/^[A-Za-z*][!#$%&'*+\-.^_`|~\w:/]*/) };
    if (c === ':') {
      const m = take(/^:[A-Za-z0-9+/=]*:/);
      return m ? { bytes: m.slice(1, -1) } : fail('a bad byte sequence');
    }
    if (c === '?') {
      const m = take(/^\?[01]/);
      return m ? m === '?1' : fail('a bad boolean');
    }
    return fail(c === '(' ? 'an inner list, which these fields do not use,' : 'an unexpected character');
  }

  function params(): SfParams {
    const out: SfParams = new Map();
    while (text[i] === ';') {
      i++;
      skip(/ /);
      const key = take(/^[a-z*][a-z0-9_\-.*]*/);
      if (key === '') fail('a bad parameter name');
      let value: SfValue = true;
      if (text[i] === '=') {
        i++;
        value = bareItem();
      }
      out.set(key, value);
    }
    return out;
  }

  const items: SfItem[] = [];
  skip(/ /);
  while (i < text.length) {
    items.push({ value: bareItem(), params: params() });
    skip(/[ \t]/);
    if (i >= text.length) break;
    if (text[i] !== ',') fail('a missing comma');
    i++;
    skip(/[ \t]/);
    if (i >= text.length) fail('a trailing comma');
  }
  return items;
}
