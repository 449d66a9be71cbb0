// The command, ratelimit-cli.mts, under every runtime, the way people start it:
//   node ratelimit-cli.mts (Node 22 and 24), tsx ratelimit-cli.mts and
//   node --import tsx ratelimit-cli.mts (Node 20), bun ratelimit-cli.mts,
//   deno run -A ratelimit-cli.mts.
// For each: --help; a run that waits for nothing and runs its command (its
// stdout passed through, its exit status returned); a second run that cannot
// meet --max-wait (exit 75, the command not run); importing ratelimit.ts, and
// then ratelimit-cli.mts, with argv that would be a command line, which must
// do nothing at all; and both files copied into a package that says
// "type": "commonjs" (what npm init -y writes), where the command must still
// run. Then, in a ring, each runtime takes a slot that the next must see taken.
//
// Run: node --import tsx test/runtimes/cli.ts (npm run test:runtimes runs it).

import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ROOT, RUNTIMES, type Runtime } from './runtimes.ts';

const SCRIPT = join(ROOT, 'ratelimit-cli.mts');
const CHILD = join(ROOT, 'test', 'cli-child.ts');

interface Way { name: string; bin: string; args: (file: string, ...rest: string[]) => string[] }

/** Every way of starting the command that the issue names, for the runtimes given. */
export function ways(runtimes: Runtime[] = RUNTIMES): Way[] {
  const out: Way[] = runtimes.map((rt) => ({ name: rt.name, bin: rt.bin, args: rt.script }));
  if (runtimes.some((rt) => rt.name === 'node20+tsx')) {
    out.push({ name: 'tsx (wrapper)', bin: join(ROOT, 'node_modules', '.bin', 'tsx'), args: (file, ...rest) => [file, ...rest] });
  }
  return out;
}

function run(way: Way, file: string, args: string[]) {
  const r = spawnSync(way.bin, way.args(file, ...args), { cwd: ROOT, encoding: 'utf8', timeout: 60_000 });
  return { code: r.status, signal: r.signal, stdout: r.stdout ?? '', stderr: r.stderr ?? '', error: r.error };
}

export function runCliChecks(runtimes: Runtime[] = RUNTIMES): { ok: boolean; lines: string[] } {
  const dir = mkdtempSync(join(tmpdir(), 'ratelimit-cli-'));
  const lines: string[] = [];
  let ok = true;
  const check = (label: string, pass: boolean, detail: string) => {
    lines.push(`${pass ? 'ok  ' : 'FAIL'} ${label}${pass ? '' : `: ${detail}`}`);
    if (!pass) ok = false;
  };
  try {
    for (const way of ways(runtimes)) {
      const state = join(dir, `${way.name.replace(/\W+/g, '-')}.json`);
      const limit = ['--file', state, '--max-count', '1', '--per', '60'];
      const help = run(way, SCRIPT, ['--help']);
      check(`${way.name}: --help`, help.code === 0 && help.stdout.startsWith('Usage:'), `exit ${help.code ?? help.signal}, ${help.stderr || help.error}`);
      const first = run(way, SCRIPT, [...limit, '--', 'sh', '-c', 'echo ran; exit 3']);
      check(`${way.name}: runs the command, passes its stdout and exit status`, first.code === 3 && first.stdout === 'ran\n',
        `exit ${first.code ?? first.signal}, stdout ${JSON.stringify(first.stdout)}, stderr ${first.stderr}`);
      const second = run(way, SCRIPT, [...limit, '--max-wait', '0', '--', 'echo', 'ran']);
      check(`${way.name}: exit 75 when --max-wait cannot be met`, second.code === 75 && second.stdout === '',
        `exit ${second.code ?? second.signal}, stdout ${JSON.stringify(second.stdout)}, stderr ${second.stderr}`);
      for (const mode of ['import', 'import-cli']) {
        const imported = run(way, CHILD, [mode, '--help', '--file', state, '--', 'false']);
        const what = mode === 'import' ? 'ratelimit.ts' : 'ratelimit-cli.mts';
        check(`${way.name}: importing ${what} does nothing`, imported.code === 0 && imported.stdout === '' && imported.stderr === '',
          `exit ${imported.code ?? imported.signal}, stdout ${JSON.stringify(imported.stdout)}, stderr ${imported.stderr}`);
      }
      const cjs = join(dir, `cjs-${way.name.replace(/\W+/g, '-')}`);
      mkdirSync(cjs);
      writeFileSync(join(cjs, 'package.json'), JSON.stringify({ name: 'app', version: '1.0.0', type: 'commonjs' }));
      copyFileSync(join(ROOT, 'ratelimit.ts'), join(cjs, 'ratelimit.ts'));
      copyFileSync(SCRIPT, join(cjs, 'ratelimit-cli.mts'));
      const copiedArgs = ['--file', join(cjs, 'state.json'), '--max-count', '1', '--per', '60', '--', 'echo', 'ran'];
      const copied = run(way, join(cjs, 'ratelimit-cli.mts'), copiedArgs);
      check(`${way.name}: runs from a copy in a "type": "commonjs" package`,
        copied.code === 0 && copied.stdout === 'ran\n' && copied.stderr === '',
        `exit ${copied.code ?? copied.signal}, stdout ${JSON.stringify(copied.stdout)}, stderr ${copied.stderr}`);
    }
    // In a ring, each runtime takes the one slot a minute of a fresh state
    // file, and the next runtime, with --max-wait 0, must find it taken.
    const all = ways(runtimes);
    all.forEach((way, i) => {
      const next = all[(i + 1) % all.length]!;
      const shared = ['--file', join(dir, `ring-${i}.json`), '--max-count', '1', '--per', '60'];
      const took = run(way, SCRIPT, [...shared, '--', 'true']);
      const found = run(next, SCRIPT, [...shared, '--max-wait', '0', '--', 'echo', 'ran']);
      check(`${next.name} sees the slot that ${way.name} took`, took.code === 0 && found.code === 75 && found.stdout === '',
        `exit ${took.code} then ${found.code}, ${found.stderr}`);
    });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  return { ok, lines };
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const r = runCliChecks();
  console.log(r.lines.join('\n'));
  process.exitCode = r.ok ? 0 : 1;
}
