// readServerReport() (ratelimit.ts): what a response's rate-limit headers say, dialect by
// dialect, from every shape of response it takes, and what it refuses to
// trust. Then the local server that test/observe/server.ts provides, read back
// through the parser. Tables, on a fixed clock; only the server tests do I/O.
//   dialects · shapes · IETF policies · Retry-After · bad headers · structured fields · the server
import { describe, it, after } from 'node:test';
import assert from 'node:assert/strict';
import { readServerReport, type ServerLimit, type ServerReport } from '../ratelimit.ts';
import { startServer, DIALECTS, COST_HEADER, type TestServer } from './observe/server.ts';

const NOW = Date.parse('2026-12-01T12:00:00Z');
const NOW_S = NOW / 1000;
const read = (response: unknown): ServerReport => readServerReport(response, NOW);
const calls = (remaining: number, resetIn: number, limit?: number, name?: string): ServerLimit => ({
  unit: 'calls', remaining, resetIn,
  ...(limit === undefined ? {} : { limit }), ...(name === undefined ? {} : { name }),
});

describe('dialects', () => {
  const table: [string, Record<string, string>, Partial<ServerReport>][] = [
    ['IETF, one policy', { 'RateLimit-Policy': '"default";q=100;w=10', RateLimit: '"default";r=50;t=30' },
      { limits: [calls(50, 30, 100, 'default')] }],
    ['IETF without a policy field: requests, no limit', { RateLimit: '"default";r=7;t=3' },
      { limits: [calls(7, 3, undefined, 'default')] }],
    ['IETF, older form', { 'RateLimit-Limit': '100', 'RateLimit-Remaining': '42', 'RateLimit-Reset': '17' },
      { limits: [calls(42, 17, 100)] }],
    ['IETF, older form with a policy in the limit', { 'RateLimit-Limit': '100, 100;w=60', 'RateLimit-Remaining': '9',
      'RateLimit-Reset': '5' }, { limits: [calls(9, 5, 100)] }],
    ['GitHub', { 'x-ratelimit-limit': '5000', 'x-ratelimit-remaining': '4987', 'x-ratelimit-used': '13',
      'x-ratelimit-reset': String(NOW_S + 1800), 'x-ratelimit-resource': 'core' },
    { limits: [calls(4987, 1800, 5000, 'core')] }],
    ['GitHub, remaining from used', { 'x-ratelimit-limit': '30', 'x-ratelimit-used': '12',
      'x-ratelimit-reset': String(NOW_S + 40), 'x-ratelimit-resource': 'search' },
    { limits: [calls(18, 40, 30, 'search')] }],
    ['GitHub, a reset that has passed is now', { 'x-ratelimit-limit': '60', 'x-ratelimit-remaining': '0',
      'x-ratelimit-reset': String(NOW_S - 3) }, { limits: [calls(0, 0, 60)] }],
    ['OpenAI', { 'x-ratelimit-limit-requests': '5000', 'x-ratelimit-remaining-requests': '4999',
      'x-ratelimit-reset-requests': '12ms', 'x-ratelimit-limit-tokens': '160000',
      'x-ratelimit-remaining-tokens': '159976', 'x-ratelimit-reset-tokens': '6m0s' },
    { limits: [calls(4999, 0.012, 5000), { unit: 'tokens', remaining: 159976, resetIn: 360, limit: 160000 }] }],
    ['OpenAI, hours and fractions',
      { 'x-ratelimit-remaining-requests': '3', 'x-ratelimit-reset-requests': '1h2m3.5s' },
      { limits: [calls(3, 3723.5)] }],
    ['Anthropic, every unit', {
      'anthropic-ratelimit-requests-limit': '1000', 'anthropic-ratelimit-requests-remaining': '999',
      'anthropic-ratelimit-requests-reset': '2026-12-01T12:00:01Z',
      'anthropic-ratelimit-tokens-limit': '96000', 'anthropic-ratelimit-tokens-remaining': '95000',
      'anthropic-ratelimit-tokens-reset': '2026-12-01T12:00:06.5Z',
      'anthropic-ratelimit-input-tokens-limit': '80000', 'anthropic-ratelimit-input-tokens-remaining': '80000',
      'anthropic-ratelimit-input-tokens-reset': '2026-12-01T13:00:00+01:00',
      'anthropic-ratelimit-output-tokens-limit': '16000', 'anthropic-ratelimit-output-tokens-remaining': '15000',
      'anthropic-ratelimit-output-tokens-reset': '2026-12-01T12:01:00Z',
    }, { limits: [calls(999, 1, 1000), { unit: 'tokens', remaining: 95000, resetIn: 6.5, limit: 96000 },
      { unit: 'input-tokens', remaining: 80000, resetIn: 0, limit: 80000 },
      { unit: 'output-tokens', remaining: 15000, resetIn: 60, limit: 16000 }] }],
    ['Discord, reset-after preferred to reset', { 'X-RateLimit-Limit': '5', 'X-RateLimit-Remaining': '1',
      'X-RateLimit-Reset': String(NOW_S + 9), 'X-RateLimit-Reset-After': '1.25', 'X-RateLimit-Bucket': 'abcd1234' },
    { limits: [calls(1, 1.25, 5, 'abcd1234')] }],
    ['Discord told by a fractional reset alone', { 'x-ratelimit-limit': '5', 'x-ratelimit-remaining': '4',
      'x-ratelimit-reset': (NOW_S + 2.5).toFixed(3) }, { limits: [calls(4, 2.5, 5)] }],
    ['a gateway: IETF and OpenAI in one response', { RateLimit: '"gw";r=9;t=1', 'x-ratelimit-remaining-requests': '2',
      'x-ratelimit-reset-requests': '1s' }, { limits: [calls(9, 1, undefined, 'gw'), calls(2, 1)] }],
    ['no rate-limit headers at all', { 'content-type': 'text/html' }, {}],
  ];
  for (const [what, headers, want] of table) {
    it(what, () => assert.deepEqual(read(headers), { limits: [], ignored: [], ...want }));
  }

  it("Discord's global 429: Retry-After is the pause; without it, the reset", () => {
    const global = { 'x-ratelimit-global': 'true', 'x-ratelimit-scope': 'global', 'x-ratelimit-bucket': 'g',
      'x-ratelimit-remaining': '0', 'x-ratelimit-reset-after': '3.5' };
    assert.equal(read({ status: 429, headers: { ...global, 'retry-after': '4' } }).pause, 4);
    assert.equal(read({ status: 429, headers: global }).pause, 3.5);
    assert.equal(read({ status: 200, headers: global }).pause, undefined, 'only a 429 says the global limit is hit');
  });
});

describe('shapes of response', () => {
  const headers = { 'x-ratelimit-limit': '60', 'x-ratelimit-remaining': '59', 'x-ratelimit-reset': String(NOW_S + 60),
    'retry-after': '3' };
  const want = { limits: [calls(59, 60, 60)], ignored: [], pause: 3 };
  const shapes: [string, unknown, Partial<ServerReport>][] = [
    ['a fetch Response with 429', new Response(null, { status: 429, headers }), want],
    ['a fetch Response with 200: its Retry-After is no pause', new Response(null, { status: 200, headers }),
      { limits: want.limits, ignored: [] }],
    ['a Headers (no status: Retry-After is taken)', new Headers(headers), want],
    ['a plain object', headers, want],
    ['a plain object in mixed case', Object.fromEntries(Object.entries(headers).map(([k, v], i) =>
      [i % 2 ? k.toUpperCase() : k.replace(/(^|-)\w/g, (c) => c.toUpperCase()), v])), want],
    ['numbers and one-element arrays', { 'x-ratelimit-limit': 60, 'x-ratelimit-remaining': ['59'],
      'x-ratelimit-reset': NOW_S + 60, 'retry-after': [3] }, want],
    ['{ status, headers } with a 503', { status: 503, headers }, want],
    ['{ status, headers: Headers }', { status: 429, headers: new Headers(headers) }, want],
    ["node:http's { statusCode, headers }", { statusCode: 429, headers }, want],
  ];
  for (const [what, response, expected] of shapes) it(what, () => assert.deepEqual(read(response), expected));

  it('a header sent twice is one list (as fetch joins it); two counts are no count', () => {
    assert.deepEqual(read({ RateLimit: ['"a";r=1;t=2', '"b";r=3;t=4'] }).limits,
      [calls(1, 2, undefined, 'a'), calls(3, 4, undefined, 'b')]);
    const twice = read({ 'X-RateLimit-Remaining': '5', 'x-ratelimit-remaining': '6', 'x-ratelimit-reset': '9' });
    assert.deepEqual(twice.limits, []);
    assert.match(twice.ignored.join('\n'), /x-ratelimit-remaining: "5, 6" is not a whole number/);
  });

  it('rejects what holds no headers, by name', () => {
    for (const bad of [null, undefined, 'retry-after: 3', 42]) {
      assert.throws(() => readServerReport(bad),
        (e: Error) => e instanceof TypeError && /^ratelimit: observe\(\)/.test(e.message));
    }
  });

  it('reads the wall clock when no time is given', () => {
    const headers = { 'x-ratelimit-remaining': '1', 'x-ratelimit-reset': String(Date.now() / 1000 + 100) };
    const [limit] = readServerReport(headers).limits;
    // Within 1 s of 100: the reset was made a moment before the read, and rounding of the epoch stays far inside.
    assert.ok(limit && Math.abs(limit.resetIn - 100) < 1, `resetIn ${limit?.resetIn}`);
  });
});

describe('IETF policies', () => {
  it('several policies: each item takes its unit, quota and name from the policy it names', () => {
    const report = read({
      'RateLimit-Policy': '"burst";q=100;w=60, "daily";q=1000;w=86400, "tpm";q=40000;qu="tokens";w=60',
      RateLimit: '"burst";r=50;t=30, "daily";r=999, "tpm";r=100;t=12',
    });
    assert.deepEqual(report, { ignored: [], limits: [calls(50, 30, 100, 'burst'),
      calls(999, 86400, 1000, 'daily'), { unit: 'tokens', remaining: 100, resetIn: 12, limit: 40000, name: 'tpm' }] },
    'an item without t holds for its policy window');
  });

  it('quota units this limiter does not keep are ignored and said; the other items stand', () => {
    const report = read({
      'RateLimit-Policy': '"peruser";q=65535;qu="content-bytes";w=10;pk=:sdfjLJUOUH==:, ' +
        '"conc";q=4;qu="concurrent-requests", "ok";q=5;w=1',
      RateLimit: '"peruser";r=100;t=5;pk=:sdfjLJUOUH==:, "conc";r=1;t=1, "ok";r=4;t=1',
    });
    assert.deepEqual(report.limits, [calls(4, 1, 5, 'ok')]);
    assert.deepEqual(report.ignored, [
      'ratelimit (policy "peruser"): quota unit "content-bytes" is not a rate this limiter keeps',
      'ratelimit (policy "conc"): quota unit "concurrent-requests" is not a rate this limiter keeps']);
  });

  it('tokens as names, vendor parameters and booleans are read; a missing r or time is said', () => {
    const report = read({ RateLimit: 'default;r=3;t=2;acme-burst=?1;note="x", "nor";t=1, "not";r=1' });
    assert.deepEqual(report.limits, [calls(3, 2, undefined, 'default')]);
    assert.deepEqual(report.ignored, ['ratelimit (policy "nor"): no r, the quota left',
      'ratelimit (policy "not"): no t, and no window (w) in its policy, so no time the quota holds until']);
  });

  it('the older form is read only when the current one is absent', () => {
    const report = read({ RateLimit: '"new";r=1;t=1', 'RateLimit-Remaining': '50', 'RateLimit-Reset': '9' });
    assert.deepEqual(report.limits, [calls(1, 1, undefined, 'new')]);
  });
});

describe('Retry-After', () => {
  const table: [string, number | undefined, string, number | undefined, RegExp?][] = [
    ['seconds on a 429', 429, '120', 120],
    ['fractional seconds on a 503', 503, '1.5', 1.5],
    ['an HTTP date', 429, 'Tue, 01 Dec 2026 12:00:30 GMT', 30],
    ['an HTTP date that has passed: no wait', 429, 'Tue, 01 Dec 2026 11:00:00 GMT', 0],
    ['without a status', undefined, '7', 7],
    ['on a redirect it is not a pause', 301, '7', undefined],
    ['on a 200 it is not a pause', 200, '7', undefined],
    ["on a 403 (GitHub's secondary limit) it is a pause", 403, '60', 60],
    ['negative: ignored', 429, '-5', undefined, /retry-after: "-5" is neither seconds nor an HTTP date/],
    ['garbage: ignored', 429, 'soon', undefined, /retry-after: "soon"/],
    ['a week: held to a day, and said', 429, String(7 * 86400), 86400,
      /retry-after: 604800 s away is more than a day; held to a day/],
    ['a date years away: held to a day', 429, 'Fri, 01 Dec 2034 12:00:00 GMT', 86400, /held to a day/],
  ];
  for (const [what, status, value, pause, ignored] of table) {
    it(what, () => {
      const headers = { 'Retry-After': value };
      const report = read(status === undefined ? headers : { status, headers });
      assert.equal(report.pause, pause);
      if (ignored) assert.match(report.ignored.join('\n'), ignored);
      else assert.deepEqual(report.ignored, []);
    });
  }
});

describe('bad headers are never trusted', () => {
  const github = { 'x-ratelimit-limit': '60', 'x-ratelimit-remaining': '10', 'x-ratelimit-reset': String(NOW_S + 60) };
  const openai = { 'x-ratelimit-limit-requests': '100', 'x-ratelimit-remaining-requests': '10',
    'x-ratelimit-reset-requests': '1s' };
  // Each case: headers, the limits that still stand, and what `ignored` must say (each pattern once, in order).
  const table: [string, Record<string, unknown>, ServerLimit[], RegExp[]][] = [
    ['a negative count (as a proxy sends "-1")', { ...openai, 'x-ratelimit-remaining-requests': '-1' }, [],
      [/^x-ratelimit-remaining-requests: "-1" is not a whole number of 0 or more$/]],
    ['a fractional count', { ...github, 'x-ratelimit-remaining': '2.5' }, [],
      [/^x-ratelimit-remaining: "2.5" is not a whole number/]],
    ['garbage count', { ...github, 'x-ratelimit-remaining': 'lots' }, [], [/x-ratelimit-remaining: "lots"/]],
    ['a count beyond 15 digits', { ...github, 'x-ratelimit-remaining': '1234567890123456' }, [],
      [/not a whole number/]],
    ['NaN and Infinity', { ...github, 'x-ratelimit-remaining': 'NaN', 'x-ratelimit-reset': 'Infinity' }, [],
      [/x-ratelimit-remaining: "NaN"/, /x-ratelimit-reset: "Infinity" is not a number of seconds/]],
    ['NaN as a number value', { ...github, 'x-ratelimit-remaining': Number.NaN }, [],
      [/^x-ratelimit-remaining: not a string or a number$/]],
    ['remaining above the limit', { ...github, 'x-ratelimit-remaining': '61' }, [],
      [/^x-ratelimit-limit, x-ratelimit-remaining, x-ratelimit-reset: remaining 61 is above the limit 60$/]],
    ['IETF remaining above its policy quota', { 'RateLimit-Policy': '"p";q=5;w=1', RateLimit: '"p";r=6;t=1' }, [],
      [/^ratelimit: remaining 6 is above the limit 5$/]],
    ['a reset years away: held to a day, and said',
      { ...github, 'x-ratelimit-reset': String(NOW_S + 3 * 365 * 86400) },
      [calls(10, 86400, 60)], [/^x-ratelimit-reset: 94608000 s away is more than a day; held to a day$/]],
    ['a duration of days: held to a day', { ...openai, 'x-ratelimit-reset-requests': '100h' }, [calls(10, 86400, 100)],
      [/x-ratelimit-reset-requests: 360000 s away is more than a day/]],
    ['a negative reset-after', { ...github, 'x-ratelimit-reset-after': '-1', 'x-ratelimit-bucket': 'b' }, [],
      [/x-ratelimit-reset-after: "-1" is not a number of seconds of 0 or more/]],
    ['a duration that is not one', { ...openai, 'x-ratelimit-reset-requests': '5 minutes' }, [],
      [/x-ratelimit-reset-requests: "5 minutes" is not a duration/]],
    ['an empty duration', { ...openai, 'x-ratelimit-reset-requests': '' }, [],
      [/x-ratelimit-reset-requests: "" is empty/]],
    ['a date that is not RFC 3339', { 'anthropic-ratelimit-requests-remaining': '1',
      'anthropic-ratelimit-requests-reset': 'Tue, 01 Dec 2026 12:00:30 GMT' }, [], [/is not an RFC 3339 time/]],
    ['an impossible date', { 'anthropic-ratelimit-requests-remaining': '1',
      'anthropic-ratelimit-requests-reset': '2026-13-45T99:00:00Z' }, [], [/is not an RFC 3339 time/]],
    ['a remaining with no reset', { 'x-ratelimit-remaining-tokens': '5' }, [],
      [/^x-ratelimit-remaining-tokens: no usable reset beside them$/]],
    ['a reset with no remaining', { 'x-ratelimit-reset-tokens': '5s' }, [],
      [/^x-ratelimit-reset-tokens: no usable remaining beside them$/]],
    ['IETF t negative', { RateLimit: '"p";r=1;t=-3' }, [], [/t is not a number of seconds of 0 or more/]],
    ['IETF r not an integer', { RateLimit: '"p";r=1.5;t=3' }, [], [/r is not a whole number of 0 or more/]],
    ['IETF r a string', { RateLimit: '"p";r="1";t=3' }, [], [/r is not a whole number/]],
    ['an over-long header', { ...github, 'x-ratelimit-remaining': `1${'0'.repeat(1000)}` }, [],
      [/^x-ratelimit-remaining: longer than 1000 characters$/]],
    ['an over-long structured field', { RateLimit: `"p";r=1;t=1${', "q";r=1;t=1'.repeat(100)}` }, [],
      [/^ratelimit: longer than 1000 characters$/]],
    ['a bad header leaves the other dialects standing',
      { ...openai, 'x-ratelimit-remaining': 'x', 'x-ratelimit-reset': '5' },
      [calls(10, 1, 100)], [/x-ratelimit-remaining: "x"/]],
    ['a bad unit leaves its other unit standing', { ...openai, 'x-ratelimit-remaining-tokens': '-1',
      'x-ratelimit-reset-tokens': '1s' }, [calls(10, 1, 100)], [/x-ratelimit-remaining-tokens: "-1"/]],
  ];
  for (const [what, headers, limits, ignored] of table) {
    it(what, () => {
      const report = read(headers);
      assert.deepEqual(report.limits, limits);
      assert.equal(report.ignored.length, ignored.length, `ignored: ${JSON.stringify(report.ignored)}`);
      ignored.forEach((pattern, i) => assert.match(report.ignored[i] as string, pattern));
    });
  }

  it('a quoted bad value is cut short, so the line stays a line', () => {
    const [line] = read({ 'x-ratelimit-remaining': 'x'.repeat(500), 'x-ratelimit-reset': '1' }).ignored;
    assert.ok(line && line.length < 120, line);
  });
});

describe('structured fields', () => {
  // A RateLimit value, and whether it parses (then item "p" gives r=1, t=2).
  const table: [string, boolean][] = [
    ['"p";r=1;t=2', true], ['  "p";r=1;t=2  ', true], ['"p"; r=1; t=2', true], ['"p";r=1;t=2,\t"q";r=0;t=1', true],
    ['"p";r=1;t=2;pk=:cHsdsRa894==:', true], ['"p";r=1;t=2.000', true], ['"p";r=1;t=2;x', true],
    ['"p";r=1;t=2,', false], ['"p";r=1;t=2,,"q";r=1', false], ['"p;r=1;t=2', false], ['("p" "q");r=1;t=2', false],
    ['"p";R=1;t=2', false], ['"p";r=1;t=2 junk', false], ['"p";r=1;t=1234567890123.5', false],
    ['"p\\x";r=1;t=2', false],
    ['"p";r=1;t=2;pk=:abc', false], ['"p";r=1;t=2;b=?2', false], ['"é";r=1;t=2', false],
  ];
  for (const [value, ok] of table) {
    it(`${JSON.stringify(value)} ${ok ? 'parses' : 'is refused as a whole'}`, () => {
      const report = read({ RateLimit: value });
      if (ok) assert.deepEqual(report.limits[0], calls(1, 2, undefined, 'p'));
      else {
        assert.deepEqual(report.limits, []);
        const refused = /^ratelimit: ".*" is not a structured-field list$/;
        assert.match(report.ignored.join('\n'), refused);
      }
    });
  }
  it('escapes in strings are read', () => {
    assert.equal(read({ RateLimit: '"a\\"b\\\\c";r=1;t=1' }).limits[0]?.name, 'a"b\\c');
  });
});

describe('the local server', () => {
  const servers: TestServer[] = [];
  after(() => Promise.all(servers.map((s) => s.stop())));
  const start = async (options: Parameters<typeof startServer>[0]) => {
    const server = await startServer(options);
    servers.push(server);
    return server;
  };

  it('35 requests in one window of a budget of 30: 30 answered 200 and 5 answered 429 with Retry-After', async () => {
    // A 10 s window; 35 requests on the loopback take well under a second, so they all fall in the first.
    const server = await start({ dialect: 'github', budget: 30, window: 10 });
    const answers = await Promise.all(Array.from({ length: 35 }, () => fetch(server.url)));
    await Promise.all(answers.map((a) => a.arrayBuffer()));
    assert.equal(answers.filter((a) => a.status === 200).length, 30);
    const refused = answers.filter((a) => a.status === 429);
    assert.equal(refused.length, 5);
    for (const a of refused) {
      const report = readServerReport(a);
      assert.ok(report.pause !== undefined && report.pause > 0 && report.pause <= 10, `pause ${report.pause}`);
      assert.equal(report.limits[0]?.remaining, 0);
    }
    assert.deepEqual(server.stats(), { ok: 30, refused: 5, windows: [{ index: 0, ok: 30, refused: 5, tokens: 0 }] });
  });

  for (const dialect of DIALECTS) {
    it(`${dialect}: what is left, and when the window ends, read back through the parser`, async () => {
      const server = await start({ dialect, budget: 5, window: 10, tokens: 100 });
      for (let i = 1; i <= 3; i++) {
        const answer = await fetch(server.url, { headers: { [COST_HEADER]: '20' } });
        await answer.arrayBuffer();
        const report = readServerReport(answer);
        assert.deepEqual(report.ignored, []);
        const requests = report.limits.find((l) => l.unit === 'calls');
        assert.equal(requests?.remaining, 5 - i);
        // The reset is the first window's end, under 10 s away; whole-second dialects round it up, by under 1 s.
        assert.ok(requests && requests.resetIn > 0 && requests.resetIn <= 11, `resetIn ${requests?.resetIn}`);
        const tokens = report.limits.find((l) => l.unit === 'tokens');
        if (['ietf', 'openai', 'anthropic'].includes(dialect)) assert.equal(tokens?.remaining, 100 - 20 * i);
        else assert.equal(tokens, undefined, `${dialect} has no tokens headers`);
      }
    });
  }

  it('a tokens budget refuses a request that would pass it, and counts nothing for it', async () => {
    const server = await start({ dialect: 'openai', budget: 10, window: 10, tokens: 50 });
    const statuses: number[] = [];
    for (const cost of [30, 30, 20]) {
      const answer = await fetch(server.url, { headers: { [COST_HEADER]: String(cost) } });
      await answer.arrayBuffer();
      statuses.push(answer.status);
    }
    assert.deepEqual(statuses, [200, 429, 200]);
    assert.deepEqual(server.stats().windows, [{ index: 0, ok: 2, refused: 1, tokens: 50 }]);
  });

  it('with delayMs, answers come back out of order, each with what was left when it was counted', async () => {
    const server = await start({ dialect: 'ietf', budget: 20, window: 10, delayMs: 60 });
    const order: number[] = [];
    // Sent one after another, so the server counts them in this order.
    const pending: Promise<void>[] = [];
    for (let i = 0; i < 20; i++) {
      const answer = fetch(server.url).then(async (a) => {
        await a.arrayBuffer();
        order.push(readServerReport(a).limits[0]?.remaining as number);
      });
      pending.push(answer);
      await new Promise((r) => setTimeout(r, 2));
    }
    await Promise.all(pending);
    assert.deepEqual([...order].sort((a, b) => b - a), Array.from({ length: 20 }, (_, i) => 19 - i));
    // 20 answers delayed at random by up to 60 ms, sent 2 ms apart: the chance they
    // still arrive in order is far below one in a million.
    assert.notDeepEqual(order, [...order].sort((a, b) => b - a), 'no answer overtook another');
  });
});
