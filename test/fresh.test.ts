// Builds new projects the way the README tells a new user to, and runs the
// README's snippets in them:
//
//   - ES modules: `npm init -y`, then `"type": "module"` in package.json,
//     TypeScript (5.9 and 7) and @types/node, `tsc --init` as the compiler
//     writes it (with its `"types": []` and `verbatimModuleSyntax`), a copy of
//     ratelimit.ts, and the README's first snippet as app.ts. `tsc` must find
//     no error in ratelimit.ts with the generated tsconfig left as it is, and
//     none at all with the one edit the README names for a `.ts` import
//     (`allowImportingTsExtensions` with `noEmit`). Then app.ts runs under
//     tsx, Node 22, Node 24, Bun and Deno.
//   - CommonJS: `npm init -y` (which writes `"type": "commonjs"`), `tsc
//     --init`, the README's two tsconfig changes (`"module": "commonjs"`,
//     `"verbatimModuleSyntax": false`), the README's CommonJS snippet, built
//     by tsc and run by node; and plain JavaScript that require()s the build.
//   - `await using`: the README says which runtimes accept it; each is run.
//
// No network: the TypeScript compilers and @types/node are linked from this
// project's node_modules instead of `npm i`, but `npm init -y` and each
// compiler's own `tsc --init` run for real. The runtimes come from `npm ci` in
// test/runtimes (see test/runtimes/runtimes.ts). A missing runtime is a skip
// with the reason, and with RATELIMIT_REQUIRE_ALL=1 a failure.
import { describe, it, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ROOT, tempDir } from './helpers.ts';
import { runtime, type Runtime } from './runtimes/runtimes.ts';

const { dir: TMP, cleanup } = tempDir('ratelimit-fresh-');
after(cleanup);

const README = readFileSync(join(ROOT, 'README.md'), 'utf8');
const tsBlocks = [...README.matchAll(/^```ts\n([\s\S]*?)^```$/gm)].map((m) => m[1] ?? '');
// The README's first snippet: the first ts block, which is the opening example.
const FIRST = tsBlocks[0] ?? '';
// The README's CommonJS snippet, marked by its first line.
const CJS = tsBlocks.find((b) => b.startsWith('// app.ts, compiled to CommonJS')) ?? '';
// What the snippets print once they got their slot.
const WENT = /waited \d+\.\d{3} s; now call the API/;

const COMPILERS = [
  { name: 'TypeScript 5.9', dir: join(ROOT, 'node_modules', 'typescript') },
  { name: 'TypeScript 7', dir: join(ROOT, 'node_modules', 'typescript7') },
];

const run = (cmd: string, args: string[], cwd: string) =>
  spawnSync(cmd, args, { cwd, encoding: 'utf8', timeout: 60_000, env: { ...process.env, NO_COLOR: '1' } });

/** A project as `npm init -y` makes it, with `type` set as given (undefined: as npm wrote it), TypeScript linked in and `tsc --init` run. */
function freshProject(name: string, compiler: string, type: 'module' | undefined): string {
  const dir = join(TMP, name);
  mkdirSync(dir, { recursive: true });
  const init = run('npm', ['init', '-y'], dir);
  assert.equal(init.status, 0, `npm init -y: ${init.stderr}`);
  if (type) {
    const pkg = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as Record<string, unknown>;
    pkg.type = type;
    writeFileSync(join(dir, 'package.json'), `${JSON.stringify(pkg, null, 2)}\n`);
  }
  // What `npm i -D typescript @types/node` would put there, without the network.
  mkdirSync(join(dir, 'node_modules', '@types'), { recursive: true });
  symlinkSync(compiler, join(dir, 'node_modules', 'typescript'));
  symlinkSync(join(ROOT, 'node_modules', '@types', 'node'), join(dir, 'node_modules', '@types', 'node'));
  const tsInit = run(process.execPath, [join(dir, 'node_modules', 'typescript', 'bin', 'tsc'), '--init'], dir);
  assert.equal(tsInit.status, 0, `tsc --init: ${tsInit.stdout}${tsInit.stderr}`);
  copyFileSync(join(ROOT, 'ratelimit.ts'), join(dir, 'ratelimit.ts'));
  return dir;
}

/** tsc's error lines for the project in `dir`, with extra command-line options. */
function tscErrors(dir: string, extra: string[]): string[] {
  const r = run(process.execPath, [join(dir, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', '.', '--pretty', 'false', ...extra], dir);
  const errors = `${r.stdout}${r.stderr}`.split('\n').filter((l) => /error TS\d+/.test(l));
  // A failing run must say why: exit 0 with no errors, or errors listed.
  assert.ok(r.status === 0 || errors.length > 0, `tsc exited ${r.status} without an error line: ${r.stdout}${r.stderr}`);
  return errors;
}

/** undefined when the runtime's binary is there, else why not (and with RATELIMIT_REQUIRE_ALL=1, a failure). */
function missingRuntime(rt: Runtime): string | undefined {
  if (existsSync(rt.bin)) return undefined;
  const why = `${rt.name} is not installed (${rt.bin}); run npm ci in test/runtimes`;
  if (process.env.RATELIMIT_REQUIRE_ALL === '1') throw new Error(`RATELIMIT_REQUIRE_ALL=1 forbids skipping: ${why}`);
  return why;
}

// How each runtime runs app.ts, as the README's set-up says. tsx is the
// wrapper that `npx --yes tsx app.ts` runs, from this project's install.
const TSX = join(ROOT, 'node_modules', '.bin', 'tsx');
const RUNNERS: { name: string; rt?: Runtime; argv: (file: string) => string[] }[] = [
  { name: 'tsx (Node 20)', argv: (file) => [TSX, file] },
  ...['node22', 'node24', 'bun', 'deno'].map((name) => {
    const rt = runtime(name);
    return { name, rt, argv: (file: string) => [rt.bin, ...rt.script(file)] };
  }),
];

describe('a new ES module project, as the README sets it up', () => {
  it('the README has the snippets this test builds', () => {
    assert.match(FIRST, /from '\.\/ratelimit\.ts'/, 'the first ts block of the README should import ./ratelimit.ts');
    assert.match(FIRST, /new RateLimit\(/);
    assert.match(CJS, /from '\.\/ratelimit'/, 'the README should have a ts block starting "// app.ts, compiled to CommonJS"');
    // The README's first screen names the set-up this test follows.
    const firstScreen = README.slice(0, README.indexOf('\n## '));
    for (const needed of ['"type": "module"', 'npm i -D typescript @types/node', '"allowImportingTsExtensions": true', '"noEmit": true', '/// <reference types="node" />', '"types": ["node"]']) {
      assert.ok(firstScreen.includes(needed), `the README's first screen does not say ${needed}`);
    }
  });

  for (const c of COMPILERS) {
    it(`${c.name}: tsc --init as generated finds no error in ratelimit.ts, and with the README's edit none at all`, () => {
      const dir = freshProject(`esm-${c.name.replace(/\W+/g, '')}`, c.dir, 'module');
      writeFileSync(join(dir, 'app.ts'), FIRST);
      const tsconfig = readFileSync(join(dir, 'tsconfig.json'), 'utf8');
      // The defaults this test is about, as today's compilers write them.
      assert.match(tsconfig, /^\s*"types": \[\],?$/m, 'tsc --init no longer writes "types": []; revisit this test and the README');
      assert.match(tsconfig, /^\s*"verbatimModuleSyntax": true,?$/m);
      const asGenerated = tscErrors(dir, ['--noEmit']);
      assert.deepEqual(asGenerated.filter((e) => e.startsWith('ratelimit.ts')), [], 'errors located in ratelimit.ts');
      // app.ts's only complaint may be the .ts extension the README's edit allows.
      assert.deepEqual(asGenerated.filter((e) => !e.startsWith('ratelimit.ts') && !/TS5097/.test(e)), []);
      assert.deepEqual(tscErrors(dir, ['--allowImportingTsExtensions', '--noEmit']), []);
    });
  }

  for (const r of RUNNERS) {
    it(`the README's first snippet runs under ${r.name}`, (t) => {
      const skip = r.rt && missingRuntime(r.rt);
      if (skip) { t.skip(skip); return; }
      // A project of its own per runtime, so that no run waits on another's slot.
      const dir = join(TMP, `run-${r.name.replace(/\W+/g, '')}`);
      mkdirSync(dir, { recursive: true });
      writeFileSync(join(dir, 'package.json'), `${JSON.stringify({ name: 'app', private: true, type: 'module' })}\n`);
      copyFileSync(join(ROOT, 'ratelimit.ts'), join(dir, 'ratelimit.ts'));
      writeFileSync(join(dir, 'app.ts'), FIRST);
      const [bin, ...args] = r.argv('app.ts');
      const out = run(bin!, args, dir);
      assert.equal(out.status, 0, `${r.name}: exit ${out.status ?? out.signal}: ${out.stderr}`);
      assert.match(out.stdout, WENT);
      assert.ok(existsSync(join(dir, 'api.ratelimit.json')), 'the snippet should keep its state beside app.ts');
    });
  }
});

describe('a new CommonJS project, as the README sets it up', () => {
  for (const c of COMPILERS) {
    it(`${c.name}: "module": "commonjs" and "verbatimModuleSyntax": false build with no error, and node runs it`, () => {
      const dir = freshProject(`cjs-${c.name.replace(/\W+/g, '')}`, c.dir, undefined);
      const pkg = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as { type?: string };
      assert.notEqual(pkg.type, 'module', 'npm init -y made an ES module package; this test is about CommonJS');
      writeFileSync(join(dir, 'app.ts'), CJS);
      assert.deepEqual(tscErrors(dir, ['--module', 'commonjs', '--verbatimModuleSyntax', 'false', '--outDir', 'out']), []);
      const app = run(process.execPath, [join(dir, 'out', 'app.js')], dir);
      assert.equal(app.status, 0, app.stderr);
      assert.match(app.stdout, WENT);
      // Plain JavaScript requires the build, as the README says.
      writeFileSync(join(dir, 'use.js'), "const { RateLimit } = require('./out/ratelimit.js');\n" +
        "new RateLimit({ maxCount: 10, per: 1 }).wait().then((w) => console.log(`required, waited ${w}`));\n");
      const js = run(process.execPath, [join(dir, 'use.js')], dir);
      assert.equal(js.status, 0, js.stderr);
      assert.match(js.stdout, /^required, waited 0$/m);
    });
  }
});

describe('await using, where the README says it works', () => {
  // docs/compatibility.md: Node 24, Bun, Deno and tsx accept it; Node 22 rejects it.
  const USING = "import { RateLimit } from './ratelimit.ts';\n" +
    'const limit = new RateLimit({ maxCount: 5, per: 1, maxConcurrent: 1 });\n' +
    '{\n  await using permit = await limit.acquire();\n  void permit;\n}\n' +
    'console.log(`in flight after the block: ${(await limit.status()).inFlight}`);\n';
  const accepts: Record<string, boolean> = { 'tsx (Node 20)': true, node22: false, node24: true, bun: true, deno: true };
  for (const r of RUNNERS) {
    it(`${r.name} ${accepts[r.name] ? 'releases the permit at the end of the block' : 'rejects it as a SyntaxError'}`, (t) => {
      const skip = r.rt && missingRuntime(r.rt);
      if (skip) { t.skip(skip); return; }
      const dir = join(TMP, `using-${r.name.replace(/\W+/g, '')}`);
      mkdirSync(dir, { recursive: true });
      writeFileSync(join(dir, 'package.json'), `${JSON.stringify({ name: 'app', private: true, type: 'module' })}\n`);
      copyFileSync(join(ROOT, 'ratelimit.ts'), join(dir, 'ratelimit.ts'));
      writeFileSync(join(dir, 'using.ts'), USING);
      const [bin, ...args] = r.argv('using.ts');
      const out = run(bin!, args, dir);
      if (accepts[r.name]) {
        assert.equal(out.status, 0, out.stderr);
        assert.match(out.stdout, /in flight after the block: 0/);
      } else {
        assert.notEqual(out.status, 0);
        assert.match(out.stderr, /SyntaxError/);
      }
    });
  }
});
