// SPDX-License-Identifier: MIT
// ratelimit v0.3.0: the command line (copy it next to ratelimit.ts, and keep this header)
//
// ratelimit-cli.mts waits for a slot under a limit kept in a state file, then
// runs a command, so shell scripts and cron jobs share one limit with every
// program that names the same file:
//
//   node ratelimit-cli.mts --file /var/tmp/api.json --max-count 10 --per 60 -- curl …
//
// It uses only the public API of ratelimit.ts, which must sit beside it.
// `--help` lists what it does; the README has the examples.
//
// Why .mts and not .ts: Node reads a .ts file as CommonJS when the nearest
// package.json says "type": "commonjs" (what `npm init -y` writes), and then
// fails on the first `import` before any of this runs. A .mts file is an ES
// module whatever package.json says, under Node, tsx, Bun and Deno alike;
// loadLibrary() below does the same for ratelimit.ts.
//
// Imported rather than run, it does nothing: see isMain() at the end.

import { realpathSync } from 'node:fs';
import * as nodeModule from 'node:module';
import { constants } from 'node:os';
import { basename, resolve } from 'node:path';
import type { Permit, RateLimit, RateLimitOptions, WaitOptions } from './ratelimit.ts';

type Library = typeof import('./ratelimit.ts');

const HELP = `Usage:
  ratelimit-cli.mts --file F [limit] [options] [-- command [args...]]
  ratelimit-cli.mts pause --file F [limit] SECONDS
  ratelimit-cli.mts status --file F [limit]
  ratelimit-cli.mts observe --file F [limit] < headers.txt

Waits for a slot under the limit kept in F, shared by every process that names
F, then runs the command and exits with its status. With no command it waits
and exits 0. 'pause' holds back every caller of F for SECONDS (or until a
Retry-After HTTP date); 'status' prints F's state as JSON. 'observe' reads the
headers of an API's answer on stdin (as curl -D writes them) and keeps what
they say about the API's limit in F for every caller, as limit.observe() does.

Limit (needed the first time; after that it is read back from F):
  --max-count N --per S   N calls per S seconds; S may be 500ms, 30s, 5m, 1h, 1d
  --limit N/S[:UNIT]      one of several limits, e.g. --limit 30000/1m:tokens
  --greedy                allow bursts up to the limit instead of even spacing
  --max-concurrent N      at most N commands running at once
  --serial                one command at a time, spaced from the end of the last
Options:
  --max-wait S            exit 75 at once if the slot is more than S away
  --cost UNIT=N           this call costs N of UNIT (default calls=1); repeats
  -v, --verbose           say on stderr how long it waited
  -q, --quiet             print only errors in the arguments or the setup
  -h, --help              show this

Exit status: the command's own (128+n if signal n ended it); 64 bad arguments
or a limit that disagrees with F; 75 --max-wait cannot be met; 126 or 127 the
command cannot be run or is not found; 70 any other error. SIGINT, SIGTERM and
SIGHUP go to the command; while waiting, they give the slot back and end this.

Start it with node ratelimit-cli.mts (Node 22.18 or later), bun
ratelimit-cli.mts, or deno run -A ratelimit-cli.mts. On Node 20, install tsx
in the project (npm i -D tsx) and run node --import tsx ratelimit-cli.mts from
there: npx tsx adds its own start-up, and under cron it cannot ask to install.`;

/** A bad command line: exit 64 with a one-line reason. */
class UsageError extends Error {}

interface Args {
  sub: 'run' | 'pause' | 'status' | 'observe';
  file: string;
  /** The settings, or undefined to read them back from the state. */
  settings?: RateLimitOptions;
  maxWait?: number;
  cost?: Record<string, number>;
  quiet: boolean;
  verbose: boolean;
  pauseFor?: number;
  command: string[];
}

const FLAGS = [
  '--file', '--max-count', '--per', '--limit', '--greedy', '--max-concurrent', '--serial',
  '--max-wait', '--cost', '--verbose', '--quiet', '--help',
] as const;
const SUBCOMMANDS = ['pause', 'status', 'observe'] as const;

const DURATION = /^(\d+(?:\.\d*)?|\.\d+)(ms|s|m|h|d)?$/;
const UNIT_SECONDS: Record<string, number> = { ms: 0.001, s: 1, m: 60, h: 3600, d: 86400 };

/** Seconds from `30`, `1.5`, `500ms`, `5m`...; above 0 unless `zero` allows 0. */
function seconds(name: string, text: string, zero = false): number {
  const m = DURATION.exec(text);
  if (!m) throw new UsageError(`${name} takes seconds, such as 60, 1.5, 500ms, 5m or 1h; got ${JSON.stringify(text)}`);
  const s = Number(m[1]) * (UNIT_SECONDS[m[2] ?? 's'] ?? 1);
  if (!zero && s <= 0) throw new UsageError(`${name} must be more than 0 seconds, got ${JSON.stringify(text)}`);
  return s;
}

/** A whole number of 1 or more. */
function count(name: string, text: string): number {
  const n = /^\d+$/.test(text) ? Number(text) : NaN;
  if (!Number.isSafeInteger(n) || n < 1) {
    throw new UsageError(`${name} takes a whole number of 1 or more, got ${JSON.stringify(text)}`);
  }
  return n;
}

/** "; did you mean X?" when one of `known` is a likely intended spelling of `name`, else "". */
function didYouMean(name: string, known: readonly string[]): string {
  let best = '';
  let bestDistance = Infinity;
  for (const k of known) {
    const d = editDistance(name.toLowerCase(), k.toLowerCase());
    if (d < bestDistance) { best = k; bestDistance = d; }
  }
  // Up to a third of the name wrong (at least 2 letters): --max-cuont and
  // --maxCount find --max-count, while --window finds nothing.
  return bestDistance <= Math.max(2, name.length / 3) ? `; did you mean ${best}?` : '';
}

function editDistance(a: string, b: string): number {
  let row = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const next = [i];
    for (let j = 1; j <= b.length; j++) {
      const replace = (row[j - 1] ?? 0) + (a[i - 1] === b[j - 1] ? 0 : 1);
      next[j] = Math.min((row[j] ?? 0) + 1, (next[j - 1] ?? 0) + 1, replace);
    }
    row = next;
  }
  return row[b.length] ?? 0;
}

function parse(argv: string[], retryAfter: Library['retryAfter']): Args {
  let i = 0;
  let sub: Args['sub'] = 'run';
  if (SUBCOMMANDS.some((known) => known === argv[0])) { sub = argv[0] as Args['sub']; i = 1; }
  let file: string | undefined;
  let maxCount: number | undefined;
  let per: number | undefined;
  let greedy = false;
  let maxConcurrent: number | undefined;
  let serial = false;
  const limits: { maxCount: number; per: number; unit?: string }[] = [];
  const args: Args = { sub, file: '', quiet: false, verbose: false, command: [] };
  const positional: string[] = [];
  for (; i < argv.length; i++) {
    const arg = argv[i] ?? '';
    if (arg === '--') { args.command = argv.slice(i + 1); break; }
    if (!arg.startsWith('-') || /^-[\d.]/.test(arg)) { positional.push(arg); continue; }
    const eq = arg.startsWith('--') ? arg.indexOf('=') : -1;
    const name = eq > 0 ? arg.slice(0, eq) : arg;
    const value = (): string => {
      if (eq > 0) return arg.slice(eq + 1);
      const next = argv[++i];
      if (next === undefined) throw new UsageError(`${name} needs a value`);
      return next;
    };
    const flag = (): true => {
      if (eq > 0) throw new UsageError(`${name} takes no value`);
      return true;
    };
    switch (name) {
      case '--file': file = value(); break;
      case '--max-count': maxCount = count(name, value()); break;
      case '--per': per = seconds(name, value()); break;
      case '--greedy': greedy = flag(); break;
      case '--max-concurrent': maxConcurrent = count(name, value()); break;
      case '--serial': serial = flag(); break;
      case '--max-wait': args.maxWait = seconds(name, value(), true); break;
      case '--limit': {
        const text = value();
        const m = /^(\d+)\/([^:]+)(?::([A-Za-z_][\w.-]*))?$/.exec(text);
        if (!m) {
          throw new UsageError('--limit takes COUNT/SECONDS or COUNT/SECONDS:UNIT, such as 500/60 or ' +
            `30000/1m:tokens; got ${JSON.stringify(text)}`);
        }
        const limit: { maxCount: number; per: number; unit?: string } = {
          maxCount: count('--limit\'s count', m[1] ?? ''), per: seconds('--limit', m[2] ?? ''),
        };
        if (m[3] !== undefined) limit.unit = m[3];
        const unit = (l: typeof limit) => l.unit ?? 'calls';
        const same = (l: typeof limit) => l.maxCount === limit.maxCount && l.per === limit.per && unit(l) === unit(limit);
        if (limits.some(same)) {
          throw new UsageError(`--limit ${text} is given twice`);
        }
        limits.push(limit);
        break;
      }
      case '--cost': {
        const text = value();
        const [, unit, amount] = /^([A-Za-z_][\w.-]*)=(\d+)$/.exec(text) ?? [];
        if (unit === undefined) {
          throw new UsageError(`--cost takes UNIT=N, such as tokens=1200; got ${JSON.stringify(text)}`);
        }
        const cost = args.cost ?? {};
        if (unit in cost) throw new UsageError(`--cost ${unit} is given twice`);
        cost[unit] = Number(amount);
        args.cost = cost;
        break;
      }
      case '--quiet': case '-q': args.quiet = flag(); break;
      case '--verbose': case '-v': args.verbose = flag(); break;
      default: throw new UsageError(`unknown option ${name}${didYouMean(name, FLAGS)}`);
    }
  }
  if (file === undefined) {
    throw new UsageError('--file is required: the state file that every caller of this limit names');
  }
  args.file = file;
  if (args.quiet && args.verbose) throw new UsageError('give --quiet or --verbose, not both');
  if (sub === 'pause') {
    const [text, ...more] = positional;
    if (text === undefined || more.length) {
      throw new UsageError('pause takes one argument: the seconds to pause (or a Retry-After date)');
    }
    args.pauseFor = pauseSeconds(text, retryAfter);
  } else if (positional.length) {
    const first = positional[0] ?? '';
    const hint = sub === 'run' && argv[0] === first ? didYouMean(first, SUBCOMMANDS) : '';
    const where = sub === 'run' ? ' (the command to run goes after --)' : '';
    throw new UsageError(`unexpected argument ${JSON.stringify(first)}${hint || where}`);
  }
  if (sub !== 'run' && args.command.length) throw new UsageError(`${sub} runs no command`);
  if (sub !== 'run' && (args.maxWait !== undefined || args.cost)) {
    throw new UsageError(`--max-wait and --cost are for waiting, not for ${sub}`);
  }
  // Settings: all of them, or none (then they are read back from the state).
  if (limits.length && (maxCount !== undefined || per !== undefined)) {
    throw new UsageError('give either --max-count with --per, or --limit, not both');
  }
  if (!limits.length && (maxCount === undefined) !== (per === undefined)) {
    throw new UsageError(maxCount === undefined ? '--per needs --max-count' : '--max-count needs --per');
  }
  if (serial && maxConcurrent !== undefined && maxConcurrent !== 1) {
    throw new UsageError(`--serial runs one command at a time, so it takes no --max-concurrent ${maxConcurrent}`);
  }
  if (limits.length || maxCount !== undefined) {
    const settings: RateLimitOptions = limits.length ? { limits, greedy } : { maxCount, per, greedy };
    if (maxConcurrent !== undefined) settings.maxConcurrent = maxConcurrent;
    if (serial) settings.serial = true;
    args.settings = settings;
  } else if (greedy || serial || maxConcurrent !== undefined) {
    const which = greedy ? '--greedy' : serial ? '--serial' : '--max-concurrent';
    throw new UsageError(`${which} needs the limit too: --max-count and --per, or --limit`);
  }
  return args;
}

// The most of stdin that observe reads: a response's headers are a few KB; curl -D after redirects, a few times that.
const MAX_HEADERS_CHARS = 1_000_000;

// The status and headers of the last response in what curl -D (or -i) wrote: one block per response, after
// redirects or a 100 Continue, each starting with its status line. Without a status line, every line is a header.
function headerBlock(text: string): { status?: number; headers: Record<string, string[]> } {
  const lines = text.replace(/\r/g, '').split('\n');
  const starts = lines.flatMap((line, k) => (/^HTTP\/[\d.]+ \d{3}/.test(line) ? [k] : []));
  const from = starts.length ? (starts[starts.length - 1] as number) : 0;
  const headers: Record<string, string[]> = {};
  for (const line of lines.slice(from)) {
    if (line.trim() === '' && starts.length) break; // the end of the headers; a body may follow (curl -i)
    const m = /^([!#$%&'*+.^_`|~\w-]+):[ \t]*(.*)$/.exec(line);
    const name = m?.[1]?.toLowerCase();
    if (name) headers[name] = [...headers[name] ?? [], (m?.[2] ?? '').trim()];
  }
  const status = /^HTTP\/[\d.]+ (\d{3})/.exec(lines[from] ?? '')?.[1];
  return status ? { status: Number(status), headers } : { headers };
}

// Seconds such as 30 or 5m, or a Retry-After value as the API sent it.
function pauseSeconds(text: string, retryAfter: Library['retryAfter']): number {
  if (DURATION.test(text)) return seconds('pause', text, true);
  const s = retryAfter(text);
  if (s === undefined) {
    throw new UsageError(`pause takes seconds (such as 30 or 5m) or an HTTP date; got ${JSON.stringify(text)}`);
  }
  return s;
}

/** A limiter's settings as this command's flags, e.g. `--max-count 2 --per 60 --greedy`. */
function asFlags(limit: Pick<RateLimit, 'limits' | 'maxConcurrent' | 'serial'>): string {
  const ls = limit.limits;
  const only = ls.length === 1 ? ls[0] : undefined;
  const parts = only && only.unit === 'calls'
    ? [`--max-count ${only.maxCount} --per ${only.per}`]
    : ls.map((l) => `--limit ${l.maxCount}/${l.per}${l.unit === 'calls' ? '' : `:${l.unit}`}`);
  const greedy = ls.filter((l) => l.greedy);
  if (greedy.length === ls.length) parts.push('--greedy');
  else if (greedy.length) parts.push(`(greedy: ${greedy.map((l) => l.unit).join(', ')})`);
  if (limit.serial) parts.push('--serial');
  else if (limit.maxConcurrent !== Infinity) parts.push(`--max-concurrent ${limit.maxConcurrent}`);
  return parts.join(' ');
}

// The library names its options (maxCount); a user of this command knows the
// flags (--max-count). The command checks most values itself, so this only
// renames what reaches it from the library's own checks.
const OPTION_FLAGS: [RegExp, string][] = [
  [/\blimits\[\d+\]\./g, '--limit '],
  [/\blimits\b/g, '--limit'],
  [/\bmaxCount\b/g, '--max-count'],
  [/\bmaxConcurrent\b/g, '--max-concurrent'],
  [/\bmaxWait\b/g, '--max-wait'],
  [/(?<![\w-])per(?==| must)/g, '--per'],
  [/(?<![\w-])cost(?= names| must)/g, '--cost'],
];

function flagNames(message: string): string {
  let text = message.replace(/^ratelimit: /, '');
  for (const [re, flag] of OPTION_FLAGS) text = text.replace(re, flag);
  return text;
}

// Node reads a .ts file as CommonJS under "type": "commonjs", and ratelimit.ts
// is an ES module. From Node 22.15, module.registerHooks can say otherwise
// for that one file; the hook is removed once it has loaded. tsx, Bun and
// Deno load it as an ES module anyway. On an older Node the import fails,
// and the error says what to do.
async function loadLibrary(): Promise<Library> {
  const url = new URL('./ratelimit.ts', import.meta.url).href;
  type Loaded = { format?: string | null | undefined };
  type Load = (url: string, context: object, next: (url: string, context: object) => Loaded) => Loaded;
  const { registerHooks } = nodeModule as { registerHooks?: (hooks: { load: Load }) => { deregister(): void } };
  const g = globalThis as { Bun?: unknown; Deno?: unknown };
  const hooks = typeof registerHooks === 'function' && !g.Bun && !g.Deno ? registerHooks({
    load(at, context, next) {
      const loaded = next(at, context);
      if (at !== url || loaded.format !== 'commonjs-typescript') return loaded;
      return { ...loaded, format: 'module-typescript' };
    },
  }) : undefined;
  try {
    return await import('./ratelimit.ts');
  } catch (error) {
    const e = error as Error;
    if (e instanceof SyntaxError && /import statement outside a module|Unexpected token 'export'/.test(e.message)) {
      throw new Error(`${e.message} in ${url}: this Node reads it as CommonJS because the package.json above it says ` +
        '"type": "commonjs". Set "type": "module" there, or run this with Node 22.15 or later, tsx, Bun or Deno.');
    }
    throw error;
  } finally {
    hooks?.deregister();
  }
}

const SIGNALS = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const;

async function main(argv: string[]): Promise<void> {
  const name = basename(process.argv[1] ?? 'ratelimit-cli.mts');
  let quiet = false;
  const say = (text: string) => { if (!quiet) process.stderr.write(`ratelimit: ${text}\n`); };
  // From the first moment, a signal must not kill this process outright: it
  // could be holding the state's lock, or a slot it should give back.
  const abort = new AbortController();
  let got: NodeJS.Signals | undefined;
  let child: { kill(signal: NodeJS.Signals): boolean } | undefined;
  const onSignal = (signal: NodeJS.Signals) => {
    got ??= signal;
    if (child) child.kill(signal);
    else abort.abort(signal);
  };
  for (const s of SIGNALS) process.on(s, onSignal);
  const finish = (code: number, signal?: NodeJS.Signals): void => {
    for (const s of SIGNALS) process.off(s, onSignal);
    // A program interrupted by SIGINT ends by SIGINT, so that a shell loop
    // around it stops too (the shell shows 130 either way). It is raised in
    // the last 'exit' listener, after the library's own have cleaned up.
    if (signal === 'SIGINT') {
      process.once('exit', () => { try { process.kill(process.pid, 'SIGINT'); } catch { /* then exit 130 */ } });
    }
    process.exitCode = code;
    process.stdout.write('', () => process.exit(code));
  };
  const signalCode = (signal: NodeJS.Signals) => 128 + (constants.signals[signal] ?? 0);

  const head = argv.indexOf('--') < 0 ? argv : argv.slice(0, argv.indexOf('--'));
  if (head.includes('--help') || head.includes('-h')) {
    process.stdout.write(`${HELP.split('ratelimit-cli.mts').join(name)}\n`);
    return finish(0);
  }
  let lib: Library;
  try {
    lib = await loadLibrary();
  } catch (error) {
    const why = (error as Error)?.message ?? String(error);
    process.stderr.write(`ratelimit: cannot load ratelimit.ts, which must sit beside ${name}: ${why}\n`);
    return finish(70);
  }
  let args: Args;
  try {
    args = parse(argv, lib.retryAfter);
    quiet = args.quiet;
    if (quiet) process.removeAllListeners('warning');
  } catch (error) {
    if (!(error instanceof UsageError)) throw error;
    process.stderr.write(`ratelimit: ${error.message} (see ${name} --help)\n`);
    return finish(64);
  }

  // Loaded while waiting, and only when there is a command to run.
  const childProcess = args.command.length ? import('node:child_process') : undefined;
  let permit: Permit | undefined;
  try {
    const limit = args.settings
      ? new lib.RateLimit({ ...args.settings, file: args.file })
      : lib.RateLimit.fromState(args.file);
    if (args.sub === 'pause') {
      await limit.pause(args.pauseFor ?? 0);
      return finish(0);
    }
    if (args.sub === 'status') {
      process.stdout.write(`${JSON.stringify(await limit.status(), null, 2)}\n`);
      return finish(0);
    }
    if (args.sub === 'observe') {
      const how = 'observe --file F < headers.txt';
      if (process.stdin.isTTY) throw new UsageError(`observe reads the headers on stdin: ${how}`);
      let text = '';
      for await (const chunk of process.stdin) {
        text += chunk;
        if (text.length > MAX_HEADERS_CHARS) throw new UsageError(`observe reads ${MAX_HEADERS_CHARS} chars at most`);
      }
      if (text.trim() === '') throw new UsageError(`observe read nothing on stdin: ${how}`);
      const report = await limit.observe(headerBlock(text));
      if (!quiet) process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
      return finish(0);
    }
    const counted = limit.limits.map((l) => l.unit);
    for (const unit of Object.keys(args.cost ?? {})) {
      if (!counted.includes(unit)) {
        const they = `(they count ${counted.join(', ')})${didYouMean(unit, counted)}`;
        throw new UsageError(`--cost ${unit}: no limit of ${args.file} counts ${unit} ${they}`);
      }
    }
    const options: WaitOptions = { signal: abort.signal, maxWait: args.maxWait, cost: args.cost };
    permit = await limit.acquire(options);
    if (args.verbose) say(`waited ${permit.waited.toFixed(3)} s for a slot of ${resolve(args.file)}`);
  } catch (error) {
    await permit?.release();
    if (got) return finish(signalCode(got), got);
    const e = error as Error & { code?: unknown };
    if (e instanceof lib.RateLimitTimeoutError) { say(flagNames(e.message)); return finish(75); }
    const usage = e instanceof UsageError || e instanceof TypeError || e instanceof RangeError ||
      e.code === 'ERR_RATELIMIT_MISMATCH' || e.code === 'ERR_RATELIMIT_NO_STATE';
    let text = flagNames(String(e.message));
    if (e.code === 'ERR_RATELIMIT_NO_STATE') {
      text = `there is no state at ${resolve(args.file)} yet: give its limit (--max-count and --per, or --limit)`;
    } else if (e.code === 'ERR_RATELIMIT_MISMATCH' && args.settings) {
      // Said in flags: what the state was made for, against what was given.
      try {
        const made = asFlags(lib.RateLimit.fromState(args.file));
        const given = asFlags(new lib.RateLimit(args.settings));
        text = `${args.file} was made for ${made}, not ${given}: give the same limit everywhere, ` +
          'or leave it out to use the one in the file (delete the file to start afresh)';
      } catch { /* the library's own message, renamed, then */ }
    }
    process.stderr.write(`ratelimit: ${text}${usage ? ` (see ${name} --help)` : ''}\n`);
    return finish(usage ? 64 : 70);
  }
  const spawn = childProcess && (await childProcess).spawn;
  if (got) { await permit.release(); return finish(signalCode(got), got); }
  if (!spawn) { await permit.release(); return finish(0); }

  const [command, ...rest] = args.command as [string, ...string[]];
  type Ran = { code: number | null; signal: NodeJS.Signals | null; error?: NodeJS.ErrnoException };
  const ran = await new Promise<Ran>((done) => {
    const c = spawn(command, rest, { stdio: 'inherit' });
    // process.kill, not c.kill: Deno (2.9) reports a child that c.kill()
    // signalled as killed by that signal, even when it caught it and exited.
    child = {
      kill: (signal) => { try { return c.pid !== undefined && process.kill(c.pid, signal); } catch { return false; } },
    };
    c.once('error', (error) => done({ code: null, signal: null, error }));
    c.once('exit', (code, signal) => { child = undefined; done({ code, signal }); });
  });
  await permit.release();
  if (ran.error) {
    const missing = ran.error.code === 'ENOENT';
    say(`cannot run ${JSON.stringify(command)}: ${missing ? 'no such command' : ran.error.message}`);
    return finish(missing ? 127 : 126);
  }
  if (ran.signal) return finish(signalCode(ran.signal), ran.signal);
  return finish(ran.code ?? 70);
}

// True when this file is the program being run, not a module imported by
// one. Deno, Bun and Node 22.18+/24 say so in import.meta.main; elsewhere
// (Node 20 with tsx) argv[1] is the script's path, compared through realpath
// so that a symbolic link to this file counts as this file. Only while this
// code is still a .ts/.mts file: folded by a bundler into someone's program
// (a .js or .mjs), it must never take that program over as the command.
function isMain(): boolean {
  const meta = import.meta as ImportMeta & { main?: unknown };
  if (typeof meta.url !== 'string' || !/\.[cm]?ts$/.test(meta.url.split(/[?#]/)[0] ?? '')) return false;
  if (typeof meta.main === 'boolean') return meta.main;
  const script = process.argv[1];
  if (!script || !meta.url.startsWith('file:')) return false;
  try {
    return realpathSync(script) === realpathSync(new URL(meta.url));
  } catch {
    return false;
  }
}

if (isMain()) {
  main(process.argv.slice(2)).catch((error: unknown) => {
    process.stderr.write(`ratelimit: ${(error as Error)?.stack ?? String(error)}\n`);
    process.exit(70);
  });
}
