// The header of ratelimit.ts says how to cut it down to memory only. This
// test follows that recipe to the letter on a copy, then type-checks what is
// left under the strictest settings and runs the memory tests against it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ROOT, tempDir } from './helpers.ts';

// The compiler and the child test run under Node, whatever runtime runs this
// test (under Bun and Deno, the one on PATH): they check the file, not the runtime.
const g = globalThis as { Bun?: unknown; Deno?: unknown };
const NODE = g.Bun || g.Deno ? 'node' : process.execPath;

/** The recipe, as the header states it. */
function memoryOnly(source: string): string {
  const out: string[] = [];
  let cutting = false;
  for (const line of source.split('\n')) {
    if (/^\s*\/\/ BEGIN FILE STORE/.test(line)) { cutting = true; continue; }
    if (cutting && /^\s*\/\/ END FILE STORE/.test(line)) { cutting = false; continue; }
    if (!cutting) out.push(line);
  }
  return out.join('\n');
}

test('the memory-only recipe leaves a file that type-checks under the strictest settings and passes the memory tests', (t) => {
  const source = readFileSync(join(ROOT, 'ratelimit.ts'), 'utf8');
  assert.match(source, /For memory only: delete every region from a BEGIN FILE STORE/, 'the header gives the recipe this test follows');
  const cut = memoryOnly(source);
  assert.ok(!/new FileStore|class FileStore|from 'node:fs'/.test(cut), 'no code of the file store is left');
  const { dir, cleanup } = tempDir('ratelimit-recipe-');
  t.after(cleanup);
  mkdirSync(join(dir, 'test'));
  writeFileSync(join(dir, 'ratelimit.ts'), cut);
  writeFileSync(join(dir, 'package.json'), JSON.stringify({ type: 'module' }));
  writeFileSync(join(dir, 'tsconfig.json'), JSON.stringify({
    extends: join(ROOT, 'node_modules/@tsconfig/strictest/tsconfig.json'),
    compilerOptions: {
      target: 'ES2020', module: 'nodenext', moduleResolution: 'nodenext', types: ['node'], typeRoots: [join(ROOT, 'node_modules/@types')],
      noEmit: true, allowImportingTsExtensions: true, verbatimModuleSyntax: true, isolatedModules: true, erasableSyntaxOnly: true,
      noPropertyAccessFromIndexSignature: true, noUnusedLocals: true, noUnusedParameters: true, skipLibCheck: true,
    },
    files: ['ratelimit.ts'],
  }));
  const tsc = spawnSync(NODE, [join(ROOT, 'node_modules/typescript7/bin/tsc'), '-p', dir], { encoding: 'utf8' });
  assert.equal(tsc.status, 0, `the memory-only file does not type-check:\n${tsc.stdout}${tsc.stderr}`);
  // The memory tests (several limits, permits, pause, status...) against the cut file.
  // It imports '../ratelimit.ts', which in the copy is the cut file.
  const spec = readFileSync(join(ROOT, 'test/limits.test.ts'), 'utf8');
  writeFileSync(join(dir, 'test/limits.test.ts'), spec);
  // Without NODE_TEST_CONTEXT, which would make the child report to this runner instead of printing.
  const { NODE_TEST_CONTEXT: _, ...env } = process.env;
  const run = spawnSync(NODE, ['--import', 'tsx', '--test', '--test-reporter=tap', join(dir, 'test/limits.test.ts')], { cwd: ROOT, encoding: 'utf8', env });
  const out = run.stdout;
  // On a failure, say which test and why, not just that the child exited 1.
  const failing = out.split('\n').filter((l) => /^\s*not ok|^\s*error:|AssertionError/.test(l)).join('\n');
  assert.match(out, /^# fail 0$/m, `the memory tests failed on the cut file:\n${failing}\n${run.stderr}`);
  assert.match(out, /^# pass [1-9]\d*$/m);
});
