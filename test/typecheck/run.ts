// npm run test:types: do ratelimit.ts, the command (ratelimit-cli.mts) and
// the Redis store type-check where a user copies them? Each cell of the
// matrix below is a temporary project, made the way the README says:
// ratelimit.ts, with ratelimit-cli.mts and examples/redis-store.ts copied
// beside it, plus a small main.ts that uses the library as a program would.
// Each has its own package.json ("type": "module"), its own tsconfig.json and
// its own node_modules/@types/node, and one compiler checks it.
//
// The axes:
//   compiler     TypeScript 5.9 (the JavaScript compiler) and 7 (the native one)
//   @types/node  18 and current
//   module       nodenext, and esnext with moduleResolution bundler
//   target       ES2020 and ESNext (lib left to follow the target)
// Every combination would be 16 cells. Instead, for each compiler, four
// cells in which every pair of values of the other three axes occurs once
// (an orthogonal array), so every pair of values across all four axes is
// checked: 8 cells. All of them use the strictest settings (STRICT below).
// Two more cells start from each compiler's own `tsc --init`, changed only as
// a user must to compile the files: `types: ["node"]`, and
// allowImportingTsExtensions with noEmit. 10 cells, 20 to 45 s in all here,
// most of it TypeScript 5.9's (the native compiler takes under 1 s a cell).
//
// TypeScript 7.0 reports isolatedDeclarations errors only when it emits
// declarations, not under noEmit as here (TypeScript 5.9 reports them
// either way), so the 5.9 cells are the ones that check isolatedDeclarations.
//
// It prints each cell's result, then every error once with the cells that
// reported it, and exits 1 if there was any.

import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const modules = join(ROOT, 'node_modules');

// The compilers and type packages, pinned in package.json. Each is named by
// its folder in node_modules and checked against the major version the
// matrix claims to test, so a change of pin cannot go unnoticed.
const COMPILERS = { 'ts5.9': { dir: 'typescript', version: /^5\.9\./ }, 'ts7': { dir: 'typescript7', version: /^7\./ } } as const;
const NODE_TYPES = { 'node18': { dir: '@types/node18', version: /^18\./ }, 'node-current': { dir: '@types/node26', version: /^\d+\./ } } as const;
type Compiler = keyof typeof COMPILERS;
type NodeTypes = keyof typeof NODE_TYPES;

// Everything in @tsconfig/strictest (the cells extend it), and on top of it
// the settings issue 11 lists. strictest already sets several of them; they
// are repeated so that this list stands on its own.
const STRICT = {
  strict: true,
  exactOptionalPropertyTypes: true,
  noUncheckedIndexedAccess: true,
  noImplicitOverride: true,
  noPropertyAccessFromIndexSignature: true,
  noImplicitReturns: true,
  noFallthroughCasesInSwitch: true,
  noUnusedLocals: true,
  noUnusedParameters: true,
  verbatimModuleSyntax: true,
  isolatedModules: true,
  isolatedDeclarations: true,
  declaration: true, // isolatedDeclarations needs it; noEmit still writes nothing
  allowImportingTsExtensions: true,
  noEmit: true,
  erasableSyntaxOnly: true, // TypeScript 5.8 and later; both compilers here have it
  types: ['node'],
};
const MODULES = {
  nodenext: { module: 'nodenext' },
  bundler: { module: 'esnext', moduleResolution: 'bundler' },
} as const;
type Module = keyof typeof MODULES;
type Target = 'ES2020' | 'ESNext';

interface Cell { name: string; compiler: Compiler; types: NodeTypes; kind: 'strict' | 'init'; module?: Module; target?: Target }

// The four rows of the orthogonal array over (@types/node, module, target).
const ROWS: [NodeTypes, Module, Target][] = [
  ['node18', 'nodenext', 'ES2020'],
  ['node18', 'bundler', 'ESNext'],
  ['node-current', 'nodenext', 'ESNext'],
  ['node-current', 'bundler', 'ES2020'],
];
const CELLS: Cell[] = (Object.keys(COMPILERS) as Compiler[]).flatMap((compiler) => [
  ...ROWS.map(([types, module, target]): Cell => ({ name: `${compiler} ${types} ${module} ${target}`, compiler, types, kind: 'strict', module, target })),
  { name: `${compiler} node-current tsc --init`, compiler, types: 'node-current', kind: 'init' },
]);

// What a user's program does with the two files: the README's examples, and
// an option that may be undefined, which a caller under
// exactOptionalPropertyTypes must be able to pass as it is.
const MAIN = `import { RateLimit, RateLimitTimeoutError } from './ratelimit.ts';
import { RedisStore } from './redis-store.ts';

const limit = new RateLimit({ maxCount: 2, per: 5, file: '/tmp/github.ratelimit.json' });
const waited: number = await limit.wait();
console.log(\`waited \${waited} s\`);

const signal: AbortSignal | undefined = process.argv.includes('--abortable') ? AbortSignal.timeout(1000) : undefined;
await limit.wait({ signal });

const store = new RedisStore({ url: 'redis://127.0.0.1:6379', key: 'ratelimit:github' });
const shared = new RateLimit({ maxCount: 10, per: 1, store });
try {
  await shared.wait({ maxWait: 0 });
} catch (error) {
  if (!(error instanceof RateLimitTimeoutError)) throw error;
} finally {
  await store.close();
}
`;

function packageVersion(dir: string): string {
  return (JSON.parse(readFileSync(join(modules, dir, 'package.json'), 'utf8')) as { version: string }).version;
}

function tsc(compiler: Compiler, cwd: string, args: string[]): { status: number | null; output: string } {
  const bin = join(modules, COMPILERS[compiler].dir, 'bin', 'tsc');
  const run = spawnSync(process.execPath, [bin, ...args], { cwd, encoding: 'utf8', timeout: 120_000 });
  if (run.error) throw run.error;
  return { status: run.status, output: `${run.stdout}${run.stderr}` };
}

/** Lays out one cell's project in `dir`: the files, package.json, node_modules links, and tsconfig.json. */
function makeProject(cell: Cell, dir: string): string[] {
  const notes: string[] = [];
  mkdirSync(join(dir, 'node_modules', '@types'), { recursive: true });
  mkdirSync(join(dir, 'node_modules', '@tsconfig'), { recursive: true });
  copyFileSync(join(ROOT, 'ratelimit.ts'), join(dir, 'ratelimit.ts'));
  copyFileSync(join(ROOT, 'ratelimit-cli.mts'), join(dir, 'ratelimit-cli.mts'));
  copyFileSync(join(ROOT, 'examples', 'redis-store.ts'), join(dir, 'redis-store.ts'));
  writeFileSync(join(dir, 'main.ts'), MAIN);
  writeFileSync(join(dir, 'package.json'), `${JSON.stringify({ name: 'app', private: true, type: 'module' }, null, 2)}\n`);
  // One @types/node per project, under its usual name; `redis` as npm
  // would install it. The compiler follows the links to the real folders,
  // so the packages' own dependencies resolve from the repository.
  symlinkSync(join(modules, NODE_TYPES[cell.types].dir), join(dir, 'node_modules', '@types', 'node'), 'dir');
  symlinkSync(join(modules, 'redis'), join(dir, 'node_modules', 'redis'), 'dir');
  symlinkSync(join(modules, '@tsconfig', 'strictest'), join(dir, 'node_modules', '@tsconfig', 'strictest'), 'dir');

  if (cell.kind === 'strict') {
    const compilerOptions = { ...STRICT, ...MODULES[cell.module!], target: cell.target };
    writeFileSync(join(dir, 'tsconfig.json'), `${JSON.stringify({ extends: '@tsconfig/strictest/tsconfig.json', compilerOptions }, null, 2)}\n`);
    return notes;
  }
  // `tsc --init`, then the edits a user makes by hand.
  const init = tsc(cell.compiler, dir, ['--init']);
  if (init.status !== 0) throw new Error(`tsc --init failed:\n${init.output}`);
  let config = readFileSync(join(dir, 'tsconfig.json'), 'utf8');
  const open = /"compilerOptions"\s*:\s*\{/;
  if (!open.test(config)) throw new Error(`tsc --init wrote no "compilerOptions" that this script can edit:\n${config}`);
  let add = '\n    "allowImportingTsExtensions": true,\n    "noEmit": true,';
  if (/^\s*"types"\s*:\s*\[\s*\]\s*,/m.test(config)) {
    config = config.replace(/^(\s*)"types"\s*:\s*\[\s*\]\s*,/m, '$1"types": ["node"],');
    notes.push('"types": [] -> ["node"]');
  } else if (/^\s*"types"\s*:/m.test(config)) {
    throw new Error(`tsc --init set "types" to something this script does not know how to edit:\n${config}`);
  } else {
    add += '\n    "types": ["node"],';
    notes.push('added "types": ["node"]');
  }
  config = config.replace(open, (m) => m + add);
  notes.push('added allowImportingTsExtensions, noEmit');
  writeFileSync(join(dir, 'tsconfig.json'), config);
  return notes;
}

interface Diagnostic { file: string; line: number; text: string }

/** tsc's --pretty false output as diagnostics: a first line and its indented continuation lines. */
function parse(output: string): Diagnostic[] {
  const found: Diagnostic[] = [];
  for (const line of output.split('\n')) {
    if (!line.trim()) continue;
    const at = /^(.+?)\((\d+),\d+\): (error|warning) (.*)$/.exec(line);
    if (at) found.push({ file: at[1]!, line: Number(at[2]), text: line });
    else if (/^\s/.test(line) && found.length > 0) found[found.length - 1]!.text += `\n${line}`;
    else found.push({ file: '', line: 0, text: line });
  }
  return found;
}

// A cell reports paths as they are in its project; name them as in the repository.
function repoPath(file: string): string {
  return file === 'redis-store.ts' ? 'examples/redis-store.ts' : file;
}

for (const [name, c] of [...Object.entries(COMPILERS), ...Object.entries(NODE_TYPES)]) {
  const version = packageVersion(c.dir);
  if (!c.version.test(version)) throw new Error(`node_modules/${c.dir} is version ${version}, not what ${name} in this matrix stands for`);
}
console.log(`Compilers: TypeScript ${packageVersion('typescript')} (ts5.9), ${packageVersion('typescript7')} (ts7); ` +
  `@types/node ${packageVersion('@types/node18')} (node18), ${packageVersion('@types/node26')} (node-current)`);

const work = mkdtempSync(join(tmpdir(), 'ratelimit-typecheck-'));
const started = performance.now();
const byError = new Map<string, string[]>();
let failed = 0;
try {
  CELLS.forEach((cell, n) => {
    const dir = join(work, `cell-${n + 1}`);
    mkdirSync(dir);
    const t0 = performance.now();
    let diagnostics: Diagnostic[];
    let notes: string[] = [];
    try {
      notes = makeProject(cell, dir);
      const run = tsc(cell.compiler, dir, ['-p', 'tsconfig.json', '--pretty', 'false']);
      diagnostics = parse(run.output);
      if (run.status !== 0 && diagnostics.length === 0) diagnostics = [{ file: '', line: 0, text: `tsc exited with ${run.status} and said nothing` }];
    } catch (error) {
      diagnostics = [{ file: '', line: 0, text: `could not run this cell: ${(error as Error).message}` }];
    }
    const seconds = ((performance.now() - t0) / 1000).toFixed(1);
    const edits = notes.length ? ` (tsconfig edited: ${notes.join('; ')})` : '';
    console.log(`\n${diagnostics.length === 0 ? 'ok  ' : 'FAIL'} ${cell.name}: ${diagnostics.length} error(s), ${seconds} s${edits}`);
    if (diagnostics.length > 0) failed++;
    for (const d of diagnostics) {
      const text = d.file ? d.text.replace(d.file, repoPath(d.file)) : d.text;
      console.log(`  ${text.replaceAll('\n', '\n  ')}`);
      const cells = byError.get(text) ?? [];
      cells.push(cell.name);
      byError.set(text, cells);
    }
  });
} finally {
  rmSync(work, { recursive: true, force: true });
}

const total = ((performance.now() - started) / 1000).toFixed(1);
if (byError.size === 0) {
  console.log(`\nAll ${CELLS.length} cells type-check with no error (${total} s).`);
} else {
  console.log(`\n${byError.size} distinct error(s), in ${failed} of ${CELLS.length} cells (${total} s):`);
  const sorted = [...byError].sort(([a], [b]) => a.localeCompare(b, 'en', { numeric: true }));
  for (const [text, cells] of sorted) {
    const where = cells.length === CELLS.length ? 'every cell' : cells.join(' | ');
    console.log(`\n${text}\n    in: ${where}`);
  }
  process.exitCode = 1;
}
