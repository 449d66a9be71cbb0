// Checks every fenced code block in README.md and in the documents it links
// to (docs/*.md, bench/README.md, CHANGELOG.md), so none of them can rot.
//
// Convention for README code blocks (the fence's first word decides):
//   ```ts / ```typescript  Type-checked with the project's tsconfig (strict),
//                         each block on its own as an ES module (top-level
//                         await is fine). A block must declare what it uses.
//   ```js / ```javascript  The same, checked as JavaScript (allowJs + checkJs).
//                         In both, a relative import is read from the repository
//                         root, as if the block sat next to a copied
//                         ratelimit.ts: './ratelimit.ts' and './ratelimit' mean
//                         the real file; a name not found at the root is looked
//                         up in examples/ (e.g. './redis-store.ts').
//   ```sh / ```bash / ```shell
//                         Commands. Each block must parse (`sh -n`), and each
//                         is checked to name only what exists: `npm run X` /
//                         `npm test` need that script in package.json, `npx X`
//                         needs X in node_modules/.bin, and a path in the
//                         repository (`examples/x.ts`, `ratelimit.ts`, ...)
//                         must exist. For cp/mv/ln the last argument (the
//                         destination) is not checked. Not run as a whole, but
//                         every use of the command (ratelimit-cli.mts) is:
//                         see cliInvocations() below.
//   ```console            The same for lines starting with `$ `; other lines are output.
//   ```json               Must parse.
//   ```text / ```output   Program output or prose; shown as is, not checked.
// Any other fence (including one with no language) fails: pick one of the
// above, and use ```text for output and for code in other languages.
//
// To prove the checks can fail, each run also feeds them a rotted copy of a
// README block (an option renamed, a script that does not exist) and expects
// them to complain.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { runtimeCommand } from './helpers.ts';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const README = join(ROOT, 'README.md');
// The command line, a file of its own beside ratelimit.ts.
const CLI = 'ratelimit-cli.mts';
// The markdown files whose code blocks are checked, relative to ROOT: the
// README and what it links to for the details.
const DOCS = ['README.md', 'CHANGELOG.md', 'bench/README.md',
  ...(existsSync(join(ROOT, 'docs')) ? readdirSync(join(ROOT, 'docs')).filter((f) => f.endsWith('.md')).sort().map((f) => `docs/${f}`) : [])];

interface Block { lang: string; line: number; text: string; file: string }

/** The fenced code blocks of a markdown text; `line` is the 1-based line of the first line inside the fence. */
function fencedBlocks(markdown: string, file = 'README.md'): Block[] {
  const lines = markdown.split('\n');
  const blocks: Block[] = [];
  for (let i = 0; i < lines.length; i++) {
    const open = /^(\s*)(`{3,}|~{3,})\s*([^`\s]*)/.exec(lines[i]);
    if (!open) continue;
    const indent = open[1].length;
    const fence = open[2];
    const body: string[] = [];
    let j = i + 1;
    for (; j < lines.length; j++) {
      const close = lines[j].trim();
      if (close.startsWith(fence[0].repeat(fence.length)) && /^(`+|~+)$/.test(close)) break;
      // Strip the fence's indentation (blocks inside list items are indented).
      body.push(lines[j].slice(Math.min(indent, lines[j].length - lines[j].trimStart().length)));
    }
    blocks.push({ lang: open[3].toLowerCase(), line: i + 2, text: body.join('\n'), file });
    i = j;
  }
  return blocks;
}

const KINDS: Record<string, 'ts' | 'js' | 'shell' | 'console' | 'json' | 'text'> = {
  ts: 'ts', typescript: 'ts', js: 'js', javascript: 'js', mjs: 'js',
  sh: 'shell', bash: 'shell', shell: 'shell', console: 'console',
  json: 'json', text: 'text', txt: 'text', output: 'text',
};

// --- TypeScript and JavaScript blocks -------------------------------------

// Rewrites relative import specifiers so a block written as if it sat next
// to ratelimit.ts (at the repository root) resolves from `fromDir`.
function rewriteImports(code: string, fromDir: string): string {
  return code.replace(/(\bfrom\s*|\bimport\s*\(\s*|\bimport\s+)(['"])(\.{1,2}\/[^'"]+)\2/g, (_, lead: string, q: string, spec: string) => {
    const candidates = [spec, `${spec}.ts`].flatMap((s) => [join(ROOT, s), join(ROOT, 'examples', s)]);
    const found = candidates.find((p) => existsSync(p) && !p.endsWith('/')) ?? join(ROOT, spec);
    let rel = relative(fromDir, found);
    if (!rel.startsWith('.')) rel = `./${rel}`;
    return `${lead}${q}${rel}${q}`;
  });
}

interface CheckedFile { file: string; block: Block; label: string }

/** Type-checks the blocks in one tsc run; returns its errors, each mapped to a README line. */
function typeCheck(items: { block: Block; label: string }[]): { label: string; message: string }[] {
  const dir = join(ROOT, 'scratch', `readme-check-${process.pid}`);
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  try {
    const files: CheckedFile[] = items.map(({ block, label }, n) => {
      const ext = KINDS[block.lang] === 'js' ? 'js' : 'ts';
      const file = join(dir, `block-${n + 1}.${ext}`);
      // `export {}` makes every block a module of its own; it adds a line at
      // the end, so the block's line numbers stay the README's.
      writeFileSync(file, `${rewriteImports(block.text, dir)}\nexport {};\n`);
      return { file, block, label };
    });
    writeFileSync(join(dir, 'tsconfig.json'), JSON.stringify({
      extends: relative(dir, join(ROOT, 'tsconfig.json')),
      compilerOptions: { allowJs: true, checkJs: true, noEmit: true },
      include: ['*.ts', '*.js'],
      exclude: [],
    }));
    let output = '';
    try {
      execFileSync(process.execPath, [join(ROOT, 'node_modules', 'typescript7', 'bin', 'tsc'), '-p', join(dir, 'tsconfig.json'), '--pretty', 'false'],
        { cwd: ROOT, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
    } catch (error) {
      const e = error as { stdout?: string; stderr?: string };
      output = `${e.stdout ?? ''}${e.stderr ?? ''}`;
      if (!output.trim()) throw error;
    }
    const errors: { label: string; message: string }[] = [];
    for (const line of output.split('\n')) {
      const m = /^(.*?)\((\d+),(\d+)\): (error .*)$/.exec(line.trim());
      if (!m) {
        if (line.trim() && !line.startsWith(' ')) errors.push({ label: 'tsc', message: line.trim() });
        continue;
      }
      const hit = files.find((f) => resolve(ROOT, m[1]) === f.file || resolve(dir, m[1]) === f.file);
      if (!hit) { errors.push({ label: 'tsc', message: line.trim() }); continue; }
      errors.push({ label: hit.label, message: `${hit.block.file} line ${hit.block.line + Number(m[2]) - 1}: ${m[4]}` });
    }
    return errors;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

// --- shell blocks ------------------------------------------------------------

const REPO_PATH = /^(?:\.\/)?(?:[\w.-]+\/)*[\w.-]+\.(?:ts|mts|js|mjs|cjs|json|md)$|^(?:\.\/)?(?:examples|test|bench|scripts)\//;

/** The problems in a shell block: scripts, binaries and repository paths it names that do not exist. */
function checkShell(text: string, kind: 'shell' | 'console'): string[] {
  const scripts: Record<string, string> = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')).scripts ?? {};
  const problems: string[] = [];
  let lines = text.replace(/\\\n/g, ' ').split('\n');
  if (kind === 'console') lines = lines.filter((l) => l.startsWith('$ ')).map((l) => l.slice(2));
  let base = ROOT;
  for (const raw of lines) {
    const line = raw.replace(/(^|\s)#.*$/, '').trim();
    if (!line) continue;
    for (const part of line.split(/&&|\|\||[;&|]/)) {
      let words = part.trim().split(/\s+/).filter(Boolean).map((w) => w.replace(/^['"]|['"]$/g, ''));
      while (words.length && /^(do|then|else|time|exec|nohup|sudo|\(|\{)$|^\w+=/.test(words[0])) words = words.slice(1);
      if (!words.length) continue;
      const [cmd, ...args] = words;
      if (cmd === 'for' || cmd === 'while' || cmd === 'if') continue;
      if (cmd === 'cd') {
        const to = resolve(base, args[0] ?? '~');
        if (base && existsSync(to)) base = to; else base = ''; // unknown directory: stop checking paths
        continue;
      }
      if (cmd === 'npm') {
        const [sub, name] = args;
        if ((sub === 'test' || sub === 't') && !scripts.test) problems.push(`"${part.trim()}": package.json has no "test" script`);
        if ((sub === 'run' || sub === 'run-script') && name && !scripts[name]) {
          problems.push(`"${part.trim()}": package.json has no "${name}" script`);
        }
        if (sub !== 'run' && sub !== 'run-script' && sub !== 'test' && sub !== 't' && sub !== 'install' && sub !== 'i' && sub !== 'ci') {
          problems.push(`"${part.trim()}": npm ${sub} is not one of install, ci, test, run`);
        }
        continue;
      }
      if (cmd === 'npx') {
        const bin = args.find((a) => !a.startsWith('-'));
        if (bin && !existsSync(join(ROOT, 'node_modules', '.bin', bin))) {
          problems.push(`"${part.trim()}": ${bin} is not installed by npm install (node_modules/.bin/${bin})`);
        }
      }
      if (!base) continue;
      const checked = cmd === 'cp' || cmd === 'mv' || cmd === 'ln' ? args.slice(0, -1) : args;
      for (const arg of checked) {
        if (arg.startsWith('-') || !REPO_PATH.test(arg)) continue;
        if (!existsSync(resolve(base, arg))) problems.push(`"${part.trim()}": ${arg} does not exist in the repository`);
      }
    }
  }
  return problems;
}

/** The problem `sh -n` finds in a shell block (a syntax error), or '' when it parses. */
function shellSyntax(text: string): string {
  const r = spawnSync('sh', ['-n'], { input: text, encoding: 'utf8' });
  return r.status === 0 ? '' : (r.stderr || `sh -n exited ${r.status}`).trim();
}

// --- the command (ratelimit-cli.mts) in shell blocks ---------------------------

/** The words of one line of shell, quotes removed; an operator (&&, |, ;, >, ...) is a word of its own. */
function shellWords(line: string): { word: string; literal: boolean }[] {
  const words: { word: string; literal: boolean }[] = [];
  const re = /\s*(&&|\|\||[;|&()<>]|#.*$|(?:'[^']*'|"(?:[^"\\]|\\.)*"|[^\s;|&()<>'"])+)/y;
  for (let m = re.exec(line); m && m[1]; m = re.exec(line)) {
    const raw = m[1];
    if (raw.startsWith('#')) break;
    words.push({ word: raw.replace(/'([^']*)'|"((?:[^"\\]|\\.)*)"/g, (_, a, b) => a ?? b), literal: !/[$`]/.test(raw.replace(/'[^']*'/g, '')) });
  }
  return words;
}

interface Invocation { line: string; args: string[]; hasCommand: boolean }

/**
 * Every use of the command (CLI) in a shell block: the arguments up to
 * `--` (or the end of that simple command), with whether a command follows.
 * Invocations whose arguments are not all literal (`"$file"`) are left out:
 * they are only parsed, by `sh -n`.
 */
function cliInvocations(text: string): { run: Invocation[]; skipped: string[] } {
  const run: Invocation[] = [];
  const skipped: string[] = [];
  for (const line of text.replace(/\\\n/g, ' ').split('\n')) {
    const words = shellWords(line);
    // The command as the script a runtime runs: `node`, `npx --yes tsx`,
    // `bun`, `deno run -A`, `node --import tsx` (not `cp ratelimit-cli.mts ...`).
    const isScript = (w: { word: string }, k: number) => (w.word === CLI || w.word.endsWith(`/${CLI}`)) &&
      (/^(node|tsx|bun|-A|--allow-all)$/.test(words[k - 1]?.word ?? '') || words[k - 2]?.word === '--import');
    for (let i = words.findIndex(isScript); i >= 0; i = words.findIndex((w, k) => k > i && isScript(w, k))) {
      const args: { word: string; literal: boolean }[] = [];
      let hasCommand = false;
      for (const w of words.slice(i + 1)) {
        if (/^(&&|\|\||[;|&()<>])$/.test(w.word)) break;
        if (w.word === '--') { hasCommand = true; break; }
        args.push(w);
      }
      if (args.every((a) => a.literal)) run.push({ line: line.trim(), args: args.map((a) => a.word), hasCommand });
      else skipped.push(line.trim());
    }
  }
  return { run, skipped };
}

/**
 * Runs an invocation for real, under the runtime running this test, with its
 * --file moved into `dir` (the same README path, the same temporary file) and
 * its command replaced by `true`. A wait gets --max-wait 0: an example whose
 * limit holds the call back (exit 75) was still understood. Returns a problem,
 * or '' when the command line was accepted.
 */
function runInvocation(inv: Invocation, dir: string, files: Map<string, string>): string {
  const args = [...inv.args];
  const at = args.indexOf('--file');
  const given = at >= 0 ? args[at + 1] : undefined;
  if (given !== undefined) {
    if (!files.has(given)) files.set(given, join(dir, `state-${files.size}.json`));
    args[at + 1] = files.get(given)!;
  }
  const sub = ['pause', 'status', 'observe'].includes(args[0] ?? '') ? args[0] : 'run';
  if (sub === 'run') args.push('--max-wait', '0');
  if (inv.hasCommand) args.push('--', 'true');
  const [bin, ...pre] = runtimeCommand(join(ROOT, CLI));
  // observe reads an answer's headers on stdin: a GitHub-style one stands in for the file the example names.
  const input = sub === 'observe' ? 'HTTP/1.1 200 OK\r\nx-ratelimit-remaining: 5\r\nx-ratelimit-reset: 60\r\n\r\n' : '';
  const r = spawnSync(bin!, [...pre, ...args], { cwd: ROOT, encoding: 'utf8', timeout: 30_000, input });
  const ok = r.status === 0 || (sub === 'run' && r.status === 75);
  if (!ok) return `"${inv.line}": exit ${r.status ?? r.signal}: ${(r.stderr ?? '').trim()}`;
  if (sub === 'status' || (sub === 'observe' && !args.includes('--quiet'))) {
    try { JSON.parse(r.stdout); } catch { return `"${inv.line}": status printed no JSON: ${r.stdout}`; }
  }
  return '';
}

// --- the tests ---------------------------------------------------------------

const readme = existsSync(README) ? readFileSync(README, 'utf8') : '';
const texts = new Map(DOCS.filter((f) => existsSync(join(ROOT, f))).map((f) => [f, readFileSync(join(ROOT, f), 'utf8')]));
const blocks = [...texts].flatMap(([file, text]) => fencedBlocks(text, file));
const label = (b: Block) => `${b.file} line ${b.line - 1} (\`\`\`${b.lang})`;

test('README.md and its documents exist and have code blocks', () => {
  assert.ok(readme, 'README.md is missing');
  for (const file of ['README.md', 'CHANGELOG.md', 'bench/README.md', 'docs/guarantees.md', 'docs/cli.md', 'docs/editing.md']) {
    assert.ok(texts.has(file), `${file} is missing`);
  }
  assert.ok(blocks.some((b) => b.file === 'README.md'), 'README.md has no fenced code blocks');
});

test('README.md is under 500 lines, and its relative links point at files that exist', () => {
  const lines = readme.split('\n').length;
  assert.ok(lines < 500, `README.md has ${lines} lines; it is meant to be read in five minutes (under 500)`);
  const broken: string[] = [];
  for (const [file, text] of texts) {
    for (const m of text.matchAll(/\]\(([^)#\s]+)(#[^)\s]*)?\)/g)) {
      const target = m[1];
      if (/^[a-z]+:/i.test(target)) continue; // a web address, not checked here
      if (!existsSync(resolve(ROOT, dirname(file), target))) broken.push(`${file}: (${target})`);
    }
  }
  assert.deepEqual(broken, [], 'relative links to files that do not exist');
});

test('README states how much of ratelimit.ts is above the file store, and the file\'s length, to within 20 lines', () => {
  const m = /about ([\d,]+) of the file's ([\d,]+) lines/.exec(readme.replace(/\s+/g, ' '));
  assert.ok(m, 'README.md says "about N of the file\'s M lines"');
  const lines = readFileSync(join(ROOT, 'ratelimit.ts'), 'utf8').split('\n');
  const above = lines.findIndex((l) => l === '// BEGIN FILE STORE');
  const [stated, statedTotal] = [m[1], m[2]].map((n) => Number(n?.replace(/,/g, '')));
  // wc -l counts newlines; the file ends with one, so the split has one more (empty) item.
  assert.ok(Math.abs((above - 1) - (stated as number)) <= 20, `${above - 1} lines above the banner, README says ${stated}`);
  assert.ok(Math.abs((lines.length - 1) - (statedTotal as number)) <= 20, `${lines.length - 1} lines, README says ${statedTotal}`);
});

test('every code block uses a known fence', () => {
  const unknown = blocks.filter((b) => !KINDS[b.lang]).map((b) => `${label(b)}: fence "${b.lang || '(none)'}"`);
  assert.deepEqual(unknown, [], `use one of: ${Object.keys(KINDS).join(', ')} (see the top of test/readme.test.ts)`);
});

test('TypeScript and JavaScript blocks type-check against ratelimit.ts', () => {
  const code = blocks.filter((b) => KINDS[b.lang] === 'ts' || KINDS[b.lang] === 'js');
  assert.ok(code.filter((b) => b.file === 'README.md').length > 0, 'README.md has no ts/js blocks to check');
  // The canary: a copy of the first block that builds a RateLimit, with its
  // maxCount renamed. The same tsc run must reject it, or the check is blind.
  const model = code.find((b) => b.file === 'README.md' && KINDS[b.lang] === 'ts' && /new RateLimit\(\{[^}]*maxCount/.test(b.text));
  assert.ok(model, 'README.md has no ts block that calls new RateLimit({ maxCount, ... })');
  const canary = { ...model, text: model.text.replace(/maxCount/g, 'max_count') };
  const errors = typeCheck([
    ...code.map((block) => ({ block, label: label(block) })),
    { block: canary, label: 'canary' },
  ]);
  const fromReadme = errors.filter((e) => e.label !== 'canary');
  assert.deepEqual(fromReadme.map((e) => `${e.label}: ${e.message}`), []);
  assert.ok(errors.some((e) => e.label === 'canary' && /max_count|maxCount/.test(e.message)),
    `a README block with maxCount renamed to max_count type-checked without error; the check is not working\n${JSON.stringify(errors)}`);
});

test('shell blocks name only scripts and files that exist', () => {
  const shell = blocks.filter((b) => KINDS[b.lang] === 'shell' || KINDS[b.lang] === 'console');
  assert.ok(shell.some((b) => b.file === 'README.md'), 'README.md has no shell blocks (it should show its commands)');
  const problems = shell.flatMap((b) => checkShell(b.text, KINDS[b.lang] as 'shell' | 'console').map((p) => `${label(b)}: ${p}`));
  assert.deepEqual(problems, []);
  // The canary: rotted commands must be reported, each of them.
  const rotted = checkShell('npm install && npm run no-such-script\nnpx tsx examples/no-such-example.ts\nnpx no-such-bin', 'shell');
  assert.equal(rotted.length, 3, `the shell check missed rotted commands: ${JSON.stringify(rotted)}`);
});

test('shell blocks parse as sh', () => {
  const shell = blocks.filter((b) => KINDS[b.lang] === 'shell');
  const problems = shell.map((b) => [label(b), shellSyntax(b.text)]).filter(([, p]) => p).map(([l, p]) => `${l}: ${p}`);
  assert.deepEqual(problems, []);
  // The canary: an unfinished if must be reported.
  assert.notEqual(shellSyntax('if true; then\n  echo yes\n'), '', 'sh -n accepted an if without fi; the check is not working');
});

test(`every ${CLI} command line in a shell block runs`, () => {
  const shell = blocks.filter((b) => KINDS[b.lang] === 'shell');
  const found = shell.map((b) => ({ b, ...cliInvocations(b.text) }));
  const count = found.reduce((n, f) => n + f.run.length, 0);
  assert.ok(count >= 5, `the documents show ${count} ${CLI} command lines with literal arguments; the check expects the section on the shell to show several`);
  const inReadme = found.filter((f) => f.b.file === 'README.md').reduce((n, f) => n + f.run.length, 0);
  assert.ok(inReadme >= 3, `README.md shows ${inReadme} ${CLI} command lines; its shell section should show the main ones`);
  const problems: string[] = [];
  for (const { b, run } of found) {
    if (!run.length) continue;
    // Each block on its own: its own state files, in the order it shows them.
    const dir = mkdtempSync(join(tmpdir(), 'ratelimit-readme-'));
    try {
      const files = new Map<string, string>();
      for (const inv of run) {
        const p = runInvocation(inv, dir, files);
        if (p) problems.push(`${label(b)}: ${p}`);
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }
  assert.deepEqual(problems, []);
  // The canary: a rotted option is reported.
  const dir = mkdtempSync(join(tmpdir(), 'ratelimit-readme-'));
  try {
    const [rotted] = cliInvocations(`node ${CLI} --file /tmp/x.json --max-count 2 --window 60 -- true`).run;
    assert.ok(rotted && runInvocation(rotted, dir, new Map()), 'a command line with an unknown option ran; the check is not working');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test(`the documents show ${CLI} --help as it prints it`, () => {
  const shown = blocks.find((b) => KINDS[b.lang] === 'text' && b.text.startsWith('Usage:'));
  assert.ok(shown, `no \`\`\`text block with the output of ${CLI} --help`);
  const [bin, ...pre] = runtimeCommand(join(ROOT, CLI));
  const r = spawnSync(bin!, [...pre, '--help'], { cwd: ROOT, encoding: 'utf8', timeout: 30_000 });
  assert.equal(r.status, 0, r.stderr);
  assert.equal(shown.text.trimEnd(), r.stdout.trimEnd());
});

test('README shows how to run an example without installing, and the install-and-run and test commands exactly', () => {
  const readmeShell = blocks.filter((b) => b.file === 'README.md' && KINDS[b.lang] === 'shell').map((b) => b.text).join('\n');
  // Trying an example needs no npm install (nor the linters it brings).
  assert.match(readmeShell, /^npx --yes tsx examples\/tasks\.ts\b/m);
  assert.match(readmeShell, /^npm install && npm run example$/m);
  const shellText = blocks.filter((b) => KINDS[b.lang] === 'shell').map((b) => b.text).join('\n');
  assert.match(shellText, /^npm test$/m);
});

test('JSON blocks parse', () => {
  for (const b of blocks.filter((x) => KINDS[x.lang] === 'json')) {
    assert.doesNotThrow(() => JSON.parse(b.text), `${label(b)} is not valid JSON`);
  }
});

test('README mentions every export of ratelimit.ts and every option', () => {
  const source = readFileSync(join(ROOT, 'ratelimit.ts'), 'utf8');
  const exported = [...source.matchAll(/^export\s+(?:declare\s+)?(?:abstract\s+)?(?:class|function|const|let|interface|type)\s+(\w+)/gm)].map((m) => m[1]);
  assert.ok(exported.includes('RateLimit'), 'could not read the exports of ratelimit.ts');
  // Options: the member names of RateLimitOptions and WaitOptions.
  const options = ['RateLimitOptions', 'WaitOptions'].flatMap((name) => {
    const body = new RegExp(`interface ${name}\\s*\\{([\\s\\S]*?)\\n\\}`).exec(source)?.[1] ?? '';
    return [...body.matchAll(/^\s{2}(\w+)\??:/gm)].map((m) => m[1]);
  });
  assert.ok(options.includes('maxCount') && options.includes('maxWait'), 'could not read the option names of ratelimit.ts');
  const missing = [...exported, ...options].filter((name) => !new RegExp(`\\b${name}\\b`).test(readme));
  assert.deepEqual(missing, [], 'README.md does not mention these exports or options of ratelimit.ts');
});

// --- provenance: CHANGELOG checksums and registry.json ------------------------

/** Per version in CHANGELOG.md: the commit it names and the `<sha256>  <file>` lines under it. */
function changelogSums(text: string): { version: string; commit?: string; sums: { sha: string; file: string }[] }[] {
  const out: { version: string; commit?: string; sums: { sha: string; file: string }[] }[] = [];
  for (const part of text.split(/^## /m).slice(1)) {
    const version = /^(?:Unreleased \()?(\d+\.\d+\.\d+)/.exec(part)?.[1];
    if (!version) continue;
    const commit = /as of commit ([0-9a-f]{7,40})/.exec(part)?.[1];
    const sums = [...part.matchAll(/^([0-9a-f]{64}) {2}(\S+)$/gm)].map((m) => ({ sha: m[1]!, file: m[2]! }));
    out.push({ version, ...(commit ? { commit } : {}), sums });
  }
  return out;
}

const sha256 = (data: string | Buffer) => createHash('sha256').update(data).digest('hex');

test('CHANGELOG.md: every checksum is that of the file in the commit it names', (t) => {
  const versions = changelogSums(texts.get('CHANGELOG.md') ?? '');
  const withSums = versions.filter((v) => v.sums.length);
  assert.ok(withSums.length >= 2, `CHANGELOG.md lists checksums for ${withSums.length} versions; expected 0.1.0 and 0.2.0 at least`);
  const git = spawnSync('git', ['rev-parse', '--git-dir'], { cwd: ROOT, encoding: 'utf8' });
  if (git.status !== 0) {
    // Not a git checkout (an unpacked archive): the history is not here to compare with.
    if (process.env.RATELIMIT_REQUIRE_ALL === '1') throw new Error('RATELIMIT_REQUIRE_ALL=1: the checksum test needs a git checkout');
    t.skip('not a git checkout');
    return;
  }
  const problems: string[] = [];
  for (const v of withSums) {
    if (!v.commit) { problems.push(`${v.version}: lists checksums but names no commit ("as of commit <hash>")`); continue; }
    for (const { sha, file } of v.sums) {
      const shown = spawnSync('git', ['show', `${v.commit}:${file}`], { cwd: ROOT, maxBuffer: 64 << 20 });
      if (shown.status !== 0) { problems.push(`${v.version}: ${file} is not in commit ${v.commit}`); continue; }
      if (sha256(shown.stdout) !== sha) problems.push(`${v.version}: ${file} in ${v.commit} has sha256 ${sha256(shown.stdout)}, not ${sha}`);
    }
  }
  assert.deepEqual(problems, []);
  // The canary: a wrong sum is told apart.
  assert.notEqual(sha256('ratelimit'), withSums[0]!.sums[0]!.sha);
});

test('CHANGELOG.md: a version whose checksum is listed is that file exactly; the version in the header has an entry', () => {
  const source = readFileSync(join(ROOT, 'ratelimit.ts'), 'utf8');
  const version = /^\/\/ ratelimit v(\d+\.\d+\.\d+)/m.exec(source)?.[1];
  assert.ok(version, 'the header of ratelimit.ts names no version ("// ratelimit vX.Y.Z")');
  const entry = changelogSums(texts.get('CHANGELOG.md') ?? '').find((v) => v.version === version);
  assert.ok(entry, `CHANGELOG.md has no section for ${version}, the version ratelimit.ts says it is`);
  // A released version's sums are its contents: a file that says it is that
  // version and differs was changed without a new version.
  for (const { sha, file } of entry.sums) {
    const here = join(ROOT, file);
    assert.ok(existsSync(here), `CHANGELOG.md lists ${file} for ${version}, and there is no ${file}`);
    assert.equal(sha256(readFileSync(here)), sha, `${file} says it is ${version} but differs from that version's checksum in CHANGELOG.md: give it a new version (and a CHANGELOG entry)`);
  }
});

test('registry.json is a shadcn registry whose item lists files that exist', () => {
  const registry = JSON.parse(readFileSync(join(ROOT, 'registry.json'), 'utf8')) as {
    $schema?: string; name?: string; homepage?: string;
    items?: { name?: string; type?: string; files?: { path?: string; type?: string }[] }[];
  };
  assert.equal(registry.$schema, 'https://ui.shadcn.com/schema/registry.json');
  assert.equal(typeof registry.name, 'string');
  assert.equal(typeof registry.homepage, 'string');
  assert.ok(Array.isArray(registry.items) && registry.items.length === 1, 'registry.json should have one item');
  const [item] = registry.items;
  assert.equal(item!.name, 'ratelimit');
  assert.equal(item!.type, 'registry:lib');
  const paths = (item!.files ?? []).map((f) => f.path);
  assert.deepEqual(paths, ['ratelimit.ts', CLI]);
  for (const f of item!.files ?? []) {
    assert.equal(f.type, 'registry:lib', `${f.path}: type`);
    assert.ok(existsSync(join(ROOT, f.path!)), `registry.json lists ${f.path}, which does not exist`);
  }
});

test('the documents: one pause-bound placeholder, no await using as the way to release, no made-up repository address', () => {
  const all = [...texts.values()].join('\n');
  assert.equal(all.split('<!-- PAUSE_BOUND -->').length - 1, 1, 'the pause bound is stated in exactly one place, marked <!-- PAUSE_BOUND -->');
  // Node 22 rejects `await using` (a SyntaxError): no ts block in the README may use it.
  const using = blocks.filter((b) => b.file === 'README.md' && KINDS[b.lang] === 'ts' && /\bawait using\b/.test(b.text)).map(label);
  assert.deepEqual(using, [], 'README.md blocks use await using, which Node 22 rejects');
  assert.match(readme, /<REPOSITORY-URL>/, 'the README keeps a marked place for the repository address');
});
