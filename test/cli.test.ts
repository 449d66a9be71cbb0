// ratelimit-cli.mts, the command, in real processes, under the runtime
// running this file (npm test: Node 20 with tsx; npm run test:runtimes: also
// Node 22 and 24 stripping types, `bun ratelimit-cli.mts`,
// `deno run -A ratelimit-cli.mts`).
// Only test() with an async function is used, so every runtime's runner can
// run it.
//
// Timing rules, and why:
// - Each command run under the limit is `cat /proc/uptime`: the boot clock,
//   one clock for every process, not moved by wall-clock steps. It counts in
//   10 ms steps, and a run records its time after its slot: the waiter wakes,
//   spawns `cat`, and `cat` reads the clock, each step delayed by a busy
//   machine. So gaps between recorded runs are checked against half a slot,
//   not a whole one. A limit that the invocations did not share gives many
//   gaps near 0; one late record gives one short gap. With other work
//   loading this 2-core machine to a load average of 11, one run was
//   recorded 0.4 s late, so one gap under half a slot is allowed. That a slot
//   is never given twice is the library's own multi-process tests' job, with
//   exact grant times; here it is that separate invocations share the limit.
// - Where a test needs a process to be waiting, it waits until the state file
//   changes (the waiter's reservation), rather than sleeping a guessed time.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { copyFileSync, existsSync, readdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { RateLimitStatus } from '../ratelimit.ts';
import { ROOT, runtimeCommand, tempDir } from './helpers.ts';

const CLI = runtimeCommand(join(ROOT, 'ratelimit-cli.mts'));

interface Ran { code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string }

function spawnCli(args: string[], onStdout?: (text: string, child: ReturnType<typeof spawn>) => void) {
  const child = spawn(CLI[0]!, [...CLI.slice(1), ...args], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (d) => { stdout += d; onStdout?.(stdout, child); });
  child.stderr!.on('data', (d) => { stderr += d; });
  const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
  const done = new Promise<Ran>((resolve) => child.on('close', (code, signal) => {
    clearTimeout(timer);
    resolve({ code, signal, stdout, stderr });
  }));
  return { child, done };
}

const cli = (args: string[]) => spawnCli(args).done;

// process.kill, not child.kill: Deno (2.9) reports a child that child.kill()
// signalled as killed by that signal, even when it caught it and exited.
function send(child: ReturnType<typeof spawn>, signal: NodeJS.Signals): void {
  process.kill(child.pid!, signal);
}

// Runs a shell script in which `rl` runs ratelimit-cli.mts.
function shell(script: string): Promise<Ran> {
  return new Promise((resolve) => {
    const child = spawn('sh', ['-c', `rl() { ${CLI.map(quote).join(' ')} "$@"; }\n${script}`], {
      cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout!.on('data', (d) => { stdout += d; });
    child.stderr!.on('data', (d) => { stderr += d; });
    const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
    child.on('close', (code, signal) => { clearTimeout(timer); resolve({ code, signal, stdout, stderr }); });
  });
}

function quote(s: string): string {
  return `'${s.replaceAll("'", `'\\''`)}'`;
}

/** Times recorded by `cat /proc/uptime` runs, sorted, in seconds. */
function uptimes(file: string): number[] {
  return readFileSync(file, 'latin1').trim().split('\n').map((l) => parseFloat(l)).sort((a, b) => a - b);
}

function uptime(): number {
  return parseFloat(readFileSync('/proc/uptime', 'latin1'));
}

/** Resolves once the file's text differs from `from` (a waiter wrote its reservation). */
async function changed(file: string, from: string, timeoutMs = 15_000): Promise<void> {
  const started = performance.now();
  while (readFileSync(file, 'utf8') === from) {
    if (performance.now() - started > timeoutMs) throw new Error(`${file} did not change within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** The gaps between consecutive times that are shorter than `seconds`. */
function gapsUnder(times: number[], seconds: number): number[] {
  const bad: number[] = [];
  for (let i = 1; i < times.length; i++) if (times[i]! - times[i - 1]! < seconds) bad.push(times[i]! - times[i - 1]!);
  return bad;
}

test('cli: --help prints usage on stdout; bad arguments exit 64 with one line pointing to --help', async () => {
  const { dir, cleanup } = tempDir();
  try {
    const f = join(dir, 'state.json');
    const help = await cli(['--help']);
    assert.equal(help.code, 0, help.stderr);
    assert.match(help.stdout, /^Usage:/);
    assert.match(help.stdout, /--max-wait/);
    assert.equal(help.stderr, '');
    // The first use makes the state; a later one with other settings is refused.
    assert.equal((await cli(['--file', f, '--max-count', '2', '--per', '60'])).code, 0);
    const bad: [string, string[]][] = [
      ['no --file', ['--max-count', '1', '--per', '1']],
      ['unknown option', ['--file', f, '--bogus']],
      ['--max-count without --per', ['--file', f, '--max-count', '2']],
      ['zero count', ['--file', join(dir, 'other.json'), '--max-count', '0', '--per', '1']],
      ['a command without --', ['--file', f, 'echo', 'hi']],
      ['pause without seconds', ['pause', '--file', f]],
      ['settings that disagree with the state', ['--file', f, '--max-count', '3', '--per', '60']],
    ];
    const results = await Promise.all(bad.map(([, args]) => cli([...args, '--', 'echo', 'ran'])));
    results.forEach((r, i) => {
      const what = bad[i]![0];
      assert.equal(r.code, 64, `${what}: exit ${r.code}, stderr ${r.stderr}`);
      assert.equal(r.stdout, '', `${what}: the command ran`);
      assert.match(r.stderr, /^ratelimit: [^\n]+ \(see ratelimit-cli\.mts --help\)\n$/, `${what}: stderr ${JSON.stringify(r.stderr)}`);
    });
    // Messages name the command's flags, not the library's options.
    assert.match(results[6]!.stderr, /made for --max-count 2 --per 60, not --max-count 3 --per 60/,
      'the mismatch message says, in flags, what the state was made for');
    assert.match(results[3]!.stderr, /--max-count takes a whole number of 1 or more, got "0"/);
    for (const r of results) {
      assert.doesNotMatch(r.stderr, /maxCount|maxWait|maxConcurrent/, 'a library option name in a message of the command');
    }
  } finally {
    cleanup();
  }
});

test('cli: exit status is the command\'s own, 128+n for signal n, 75 for --max-wait, 126/127 when it cannot run', async () => {
  const { dir, cleanup } = tempDir();
  try {
    const f = (name: string) => ['--file', join(dir, `${name}.json`), '--max-count', '1', '--per', '60'];
    const notExecutable = join(dir, 'not-executable');
    writeFileSync(notExecutable, 'echo ran\n', { mode: 0o644 });
    const [echo, three, term, int, missing, denied, verbose] = await Promise.all([
      cli([...f('echo'), '--', 'echo', 'hello', 'world']),
      cli([...f('three'), '--', 'sh', '-c', 'exit 3']),
      cli([...f('term'), '--', 'sh', '-c', 'kill -TERM $$']),
      cli([...f('int'), '--', 'sh', '-c', 'kill -INT $$']),
      cli([...f('missing'), '--', 'no-such-command-here']),
      cli([...f('denied'), '--', notExecutable]),
      cli([...f('verbose'), '--verbose', '--', 'true']),
    ]);
    assert.equal(echo.code, 0);
    assert.equal(echo.stdout, 'hello world\n', 'stdout belongs to the command');
    assert.equal(echo.stderr, '');
    assert.equal(three.code, 3);
    assert.equal(term.code, 128 + 15);
    // Killed by SIGINT, it ends by SIGINT itself, so a shell loop around it stops.
    assert.ok(int.signal === 'SIGINT' || int.code === 130, `SIGINT: ${int.code ?? int.signal}`);
    assert.equal(missing.code, 127);
    assert.match(missing.stderr, /no-such-command-here/);
    assert.equal(denied.code, 126, denied.stderr);
    assert.equal(verbose.code, 0);
    assert.match(verbose.stderr, /^ratelimit: waited \d+\.\d{3} s for a slot of /);
    // The slot of 'echo' is taken for 60 s: --max-wait cannot be met, and the command does not run.
    const late = await cli([...f('echo'), '--max-wait', '1', '--', 'echo', 'ran']);
    assert.equal(late.code, 75, late.stderr);
    assert.equal(late.stdout, '');
    assert.match(late.stderr, /^ratelimit: .*away/);
    const quiet = await cli([...f('echo'), '--max-wait', '1', '--quiet', '--', 'echo', 'ran']);
    assert.equal(quiet.code, 75);
    assert.equal(quiet.stderr, '', '--quiet prints nothing');
    // The shell sees the same statuses.
    const seen = await shell(`rl ${f('three2').map(quote).join(' ')} -- sh -c 'exit 3'; echo "$?"; rl ${f('int2').map(quote).join(' ')} -- sh -c 'kill -INT $$'; echo "$?"`);
    assert.equal(seen.stdout, '3\n130\n', seen.stderr);
  } finally {
    cleanup();
  }
});

test('cli: 20 invocations from 5 parallel shell loops keep the limit (5 per 2 s, patient)', async () => {
  const { dir, cleanup } = tempDir();
  try {
    const f = join(dir, 'state.json');
    const times = join(dir, 'times');
    const loop = `for i in 1 2 3 4; do rl --file ${quote(f)} --max-count 5 --per 2 -- cat /proc/uptime >> ${quote(times)} || exit 1; done`;
    const loops = await Promise.all(Array.from({ length: 5 }, () => shell(loop)));
    loops.forEach((r) => assert.equal(r.code, 0, r.stderr));
    const t = uptimes(times);
    assert.equal(t.length, 20);
    const slot = 0.4;
    const short = gapsUnder(t, slot / 2);
    assert.ok(short.length <= 1, `${short.length} gaps under half a slot (${short.map((g) => g.toFixed(3)).join(', ')} s) in ${t.map((x) => x.toFixed(2)).join(' ')}`);
    assert.ok(t[19]! - t[0]! >= 19 * slot - slot, `20 runs in ${(t[19]! - t[0]!).toFixed(2)} s, at least ${(19 * slot).toFixed(2)} s expected`);
    assert.ok(!existsSync(`${f}.lock`), 'a lock was left behind');
  } finally {
    cleanup();
  }
});

test('cli: the same file shared with a library user keeps the limit', async () => {
  const { dir, cleanup } = tempDir();
  try {
    const f = join(dir, 'state.json');
    const times = join(dir, 'times');
    const loop = `for i in 1 2 3; do rl --file ${quote(f)} --max-count 5 --per 2 -- cat /proc/uptime >> ${quote(times)} || exit 1; done`;
    const user = runtimeCommand(join(ROOT, 'test', 'cli-child.ts'));
    const library = shell(`${[...user, 'wait', f, times, '5'].map(quote).join(' ')}`);
    const all = await Promise.all([shell(loop), shell(loop), library]);
    all.forEach((r) => assert.equal(r.code, 0, r.stderr));
    const t = uptimes(times);
    assert.equal(t.length, 11);
    const short = gapsUnder(t, 0.2);
    assert.ok(short.length <= 1, `${short.length} gaps under half a slot (${short.map((g) => g.toFixed(3)).join(', ')} s) in ${t.map((x) => x.toFixed(2)).join(' ')}`);
  } finally {
    cleanup();
  }
});

test('cli: SIGTERM and SIGINT reach the command, and its exit status is passed on', async () => {
  const { dir, cleanup } = tempDir();
  try {
    const script = 'trap "echo got TERM; exit 7" TERM; trap "echo got INT; exit 8" INT; echo ready; while :; do sleep 0.05; done';
    const run = (name: string, signal: NodeJS.Signals) => spawnCli(
      ['--file', join(dir, `${name}.json`), '--max-count', '1', '--per', '1', '--', 'sh', '-c', script],
      (out, child) => { if (out === 'ready\n') send(child, signal); },
    ).done;
    const [term, int] = await Promise.all([run('term', 'SIGTERM'), run('int', 'SIGINT')]);
    assert.equal(term.stdout, 'ready\ngot TERM\n');
    assert.equal(term.code, 7, term.stderr);
    assert.equal(int.stdout, 'ready\ngot INT\n');
    assert.equal(int.code, 8, int.stderr);
  } finally {
    cleanup();
  }
});

test('cli: interrupted while waiting, it gives its slot back and leaves no lock', async () => {
  const { dir, cleanup } = tempDir();
  try {
    // One call per 4 s. The first run takes the slot at t0, between tA and
    // tB (its start and end as seen here); the second reserves t0+4 and is
    // interrupted while it waits. If it gave the slot back, a third run gets
    // t0+4 <= tB+4 again; if not, t0+8 >= tA+8. The third's --max-wait ends
    // at tB+4.5, which tells the two apart unless the first run and the
    // third's start-up together take more than 3.5 s.
    const check = async (signal: NodeJS.Signals) => {
      const f = join(dir, `${signal}.json`);
      const limit = ['--file', f, '--max-count', '1', '--per', '4'];
      const tA = uptime();
      assert.equal((await cli([...limit, '--', 'true'])).code, 0);
      const tB = uptime();
      const before = readFileSync(f, 'utf8');
      const waiting = spawnCli([...limit, '--', 'echo', 'ran']);
      await changed(f, before);
      send(waiting.child, signal);
      const r = await waiting.done;
      assert.equal(r.stdout, '', 'the command ran');
      if (signal === 'SIGINT') assert.ok(r.signal === 'SIGINT' || r.code === 130, `SIGINT: ${r.code ?? r.signal}`);
      else assert.equal(r.code, 128 + 15);
      assert.ok(!existsSync(`${f}.lock`), 'a lock was left behind');
      assert.deepEqual(readdirSync(dir).filter((n) => n.startsWith(`${signal}.json.`)), [], 'files were left beside the state');
      const maxWait = (tB + 4.5 - uptime()).toFixed(3);
      assert.ok(tB - tA < 3, `the first run took ${(tB - tA).toFixed(2)} s, too slow for this test to tell anything`);
      const third = await cli([...limit, '--max-wait', maxWait, '--', 'true']);
      assert.equal(third.code, 0, `the slot was not given back: ${third.stderr}`);
    };
    await Promise.all([check('SIGINT'), check('SIGTERM')]);
  } finally {
    cleanup();
  }
});

test('cli: importing ratelimit.ts or ratelimit-cli.mts does nothing, whatever the argv; a symbolic link to the command runs it', async () => {
  const { dir, cleanup } = tempDir();
  try {
    const user = runtimeCommand(join(ROOT, 'test', 'cli-child.ts'));
    for (const mode of ['import', 'import-cli']) {
      const argv = [...user, mode, '--help', 'status', '--file', join(dir, 'x.json'), '--', 'false'];
      const odd = await shell(argv.map(quote).join(' '));
      assert.equal(odd.code, 0, `${mode}: ${odd.stderr}`);
      assert.equal(odd.stdout, '', mode);
      assert.equal(odd.stderr, '', mode);
      assert.ok(!existsSync(join(dir, 'x.json')), mode);
    }
    const link = join(dir, 'rl.mts');
    symlinkSync(join(ROOT, 'ratelimit-cli.mts'), link);
    const linked = await shell(`${runtimeCommand(link).map(quote).join(' ')} --help`);
    assert.equal(linked.code, 0, linked.stderr);
    assert.match(linked.stdout, /^Usage:/);
  } finally {
    cleanup();
  }
});

test('cli: pause holds back an invocation that is already waiting', async () => {
  const { dir, cleanup } = tempDir();
  try {
    const f = join(dir, 'state.json');
    const times = join(dir, 'times');
    // One call per 3 s: the waiter's slot is at most 3 s away when it starts
    // waiting, and the pause (a process that starts in well under that)
    // lands before it, to end 4 s after it was asked for.
    const limit = ['--file', f, '--max-count', '1', '--per', '3'];
    assert.equal((await cli([...limit, '--', 'true'])).code, 0);
    const before = readFileSync(f, 'utf8');
    const waiting = spawnCli([...limit, '--', 'sh', '-c', `cat /proc/uptime >> ${quote(times)}`]);
    await changed(f, before);
    const paused = uptime();
    const p = await cli(['pause', '--file', f, '4']);
    assert.equal(p.code, 0, p.stderr);
    const w = await waiting.done;
    assert.equal(w.code, 0, w.stderr);
    const [ran] = uptimes(times);
    assert.ok(ran! >= paused + 4 - 0.01, `ran ${(ran! - paused).toFixed(3)} s after the pause began, before it ended`);
  } finally {
    cleanup();
  }
});

test('cli: status prints the state as JSON; settings are read back from the state', async () => {
  const { dir, cleanup } = tempDir();
  try {
    const f = join(dir, 'state.json');
    assert.equal((await cli(['--file', f, '--limit', '10/60', '--limit', '1000/60:tokens', '--greedy', '--cost', 'tokens=100'])).code, 0);
    const again = await cli(['--file', f, '--cost', 'tokens=50', '--', 'echo', 'ran']);
    assert.equal(again.code, 0, again.stderr);
    assert.equal(again.stdout, 'ran\n');
    const s = await cli(['status', '--file', f]);
    assert.equal(s.code, 0, s.stderr);
    const status = JSON.parse(s.stdout) as RateLimitStatus;
    assert.deepEqual(status.limits.map((l) => [l.unit, l.maxCount, l.per, l.used]), [['calls', 10, 60, 2], ['tokens', 1000, 60, 150]]);
    assert.equal(status.pausedFor, 0);
    const none = await cli(['status', '--file', join(dir, 'none.json')]);
    assert.equal(none.code, 64, 'status of a state that does not exist, without settings');
  } finally {
    cleanup();
  }
});

test('cli: observe reads the headers curl -D wrote and keeps the server\'s word in the state for every caller', async () => {
  const { dir, cleanup } = tempDir();
  try {
    const f = join(dir, 'state.json');
    const reset = Math.floor(Date.now() / 1000) + 600;
    // A redirect and then the answer, as curl -L -D writes them: only the last answer's headers count.
    writeFileSync(join(dir, 'headers.txt'), 'HTTP/1.1 301 Moved Permanently\r\nx-ratelimit-remaining: 0\r\n\r\n'
      + `HTTP/2 200\r\nx-ratelimit-limit: 60\r\nx-ratelimit-remaining: 2\r\nx-ratelimit-reset: ${reset}\r\n\r\n`);
    writeFileSync(join(dir, '429.txt'), 'HTTP/1.1 429 Too Many Requests\r\nretry-after: 120\r\nx-ratelimit-remaining: -1\r\n\r\n');
    const [F, H] = [quote(f), quote(join(dir, 'headers.txt'))];
    const r = await shell(`rl observe --file ${F} --max-count 100 --per 1 < ${H} && rl --file ${F} && rl --file ${F} `
      + `&& rl --file ${F} --max-wait 5; echo "third: $?"; rl status --file ${F}`);
    assert.match(r.stdout, /"remaining": 2,/, r.stderr);
    assert.match(r.stdout, /third: 75/, 'two calls fit under the server\'s 2 left; the third would wait 10 minutes');
    const status = JSON.parse(r.stdout.slice(r.stdout.lastIndexOf('{\n  "limits"'))) as RateLimitStatus;
    assert.equal(status.limits[0]?.server?.remaining, 0);
    assert.ok((status.limits[0]?.server?.resetIn ?? 0) > 590, JSON.stringify(status.limits[0]?.server));
    const paused = await shell(`rl observe --file ${F} < ${quote(join(dir, '429.txt'))}; echo "rc $?"; rl status --file ${F}`);
    assert.match(paused.stdout, /rc 0/);
    // What it did not trust is in the report it prints (the warning on stderr too, where the runtime prints
    // warnings before the process exits: Bun does not).
    assert.match(paused.stdout, /"ignored": \[\s*"x-ratelimit-remaining: \\"-1\\" is not a whole number/);
    assert.ok((JSON.parse(paused.stdout.slice(paused.stdout.lastIndexOf('{\n  "limits"'))) as RateLimitStatus).pausedFor > 100);
    assert.equal((await cli(['observe', '--file', f])).code, 64, 'an empty stdin (here /dev/null) holds no headers');
  } finally {
    cleanup();
  }
});

test('cli: --max-concurrent holds the slot while the command runs', async () => {
  const { dir, cleanup } = tempDir();
  try {
    const f = join(dir, 'state.json');
    const log = join(dir, 'log');
    writeFileSync(log, '');
    // 3 commands of 0.5 s each, at most one at a time: they cannot overlap.
    const one = `rl --file ${quote(f)} --max-count 100 --per 1 --max-concurrent 1 -- sh -c 'echo start >> ${log}; sleep 0.5; echo end >> ${log}'`;
    const all = await Promise.all([shell(one), shell(one), shell(one)]);
    all.forEach((r) => assert.equal(r.code, 0, r.stderr));
    assert.equal(readFileSync(log, 'utf8'), 'start\nend\n'.repeat(3));
  } finally {
    cleanup();
  }
});

test('cli: a mistyped flag or subcommand gets a suggestion; messages name flags, not library options', async () => {
  const { dir, cleanup } = tempDir();
  try {
    const f = join(dir, 'state.json');
    const cases: [string[], RegExp][] = [
      [['--file', f, '--max-cuont', '2', '--per', '60'], /unknown option --max-cuont; did you mean --max-count\?/],
      [['--file', f, '--maxCount', '2', '--per', '60'], /unknown option --maxCount; did you mean --max-count\?/],
      [['--file', f, '--max-count', '2', '--per', '60', '--window', '60'], /unknown option --window \(see /],
      [['stauts', '--file', f], /unexpected argument "stauts"; did you mean status\?/],
      [['--file', f, '--per', '0', '--max-count', '2'], /--per must be more than 0 seconds, got "0"/],
      [['--file', f, '--max-count', '2', '--per', '60', '--cost', 'tokns=5'],
        /--cost tokns: no limit of .* counts tokns \(they count calls\)/],
      [['--file', f, '--limit', '5/60', '--limit', '5/1m'], /--limit 5\/1m is given twice/],
      [['--file', f, '--max-count', '2', '--per', '60', '--serial', '--max-concurrent', '2'],
        /--serial .* no --max-concurrent 2/],
    ];
    const results = await Promise.all(cases.map(([args]) => cli([...args, '--', 'echo', 'ran'])));
    results.forEach((r, i) => {
      assert.equal(r.code, 64, `${cases[i]![0].join(' ')}: exit ${r.code}, ${r.stderr}`);
      assert.equal(r.stdout, '', 'the command ran');
      assert.match(r.stderr, cases[i]![1]);
      assert.doesNotMatch(r.stderr, /maxCount=|maxWait|maxConcurrent/);
    });
    // A slot too far away for --max-wait: said with the flag's name.
    assert.equal((await cli(['--file', f, '--max-count', '1', '--per', '60'])).code, 0);
    const late = await cli(['--file', f, '--max-wait', '0.5', '--', 'echo', 'ran']);
    assert.equal(late.code, 75, late.stderr);
    assert.match(late.stderr, /more than --max-wait \(0\.5 s\)/);
  } finally {
    cleanup();
  }
});

test('cli: copied with ratelimit.ts into a package that says "type": "commonjs", it still runs', async () => {
  const { dir, cleanup } = tempDir();
  try {
    // What `npm init -y` writes today. The command is a .mts file, an ES
    // module whatever package.json says, and it loads ratelimit.ts as one.
    writeFileSync(join(dir, 'package.json'), JSON.stringify({ name: 'app', version: '1.0.0', type: 'commonjs' }));
    copyFileSync(join(ROOT, 'ratelimit.ts'), join(dir, 'ratelimit.ts'));
    copyFileSync(join(ROOT, 'ratelimit-cli.mts'), join(dir, 'ratelimit-cli.mts'));
    const command = runtimeCommand(join(dir, 'ratelimit-cli.mts'));
    const f = join(dir, 'state.json');
    const rl = `${command.map(quote).join(' ')} --file ${quote(f)}`;
    const r = await shell(`${rl} --max-count 1 --per 60 -- echo ran; echo "$?"`);
    assert.equal(r.stdout, 'ran\n0\n', r.stderr);
    assert.equal(r.stderr, '');
    const again = await shell(`${rl} --max-wait 0 -- echo ran; echo "$?"`);
    assert.equal(again.stdout, '75\n', 'the second run shares the state of the first');
  } finally {
    cleanup();
  }
});

test('cli: the header of ratelimit-cli.mts names the version of ratelimit.ts beside it', async () => {
  const { VERSION } = await import('../ratelimit.ts');
  const head = readFileSync(join(ROOT, 'ratelimit-cli.mts'), 'utf8').split('\n').slice(0, 3);
  assert.equal(head[0], '// SPDX-License-Identifier: MIT');
  assert.match(head[1]!, new RegExp(`^// ratelimit v${VERSION.replaceAll('.', '\\.')}: `));
});
