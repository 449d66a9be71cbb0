// A copy of ratelimit.ts must carry its license and version, so its header
// (the comment lines before the first line of code) holds these two lines:
//
//   // SPDX-License-Identifier: MIT
//   // ratelimit v1.2.3
//
// The version line may go on after the version, after a space (to say where
// the file comes from, say), and its version must be package.json's. The
// license must agree with package.json and LICENSE.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ROOT } from './helpers.ts';

const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string; license: string };

/** The leading lines of ratelimit.ts that are comments or blank. */
function header(): string[] {
  const lines = readFileSync(join(ROOT, 'ratelimit.ts'), 'utf8').split('\n');
  const end = lines.findIndex((l) => l.trim() !== '' && !l.trimStart().startsWith('//'));
  return lines.slice(0, end < 0 ? lines.length : end);
}

test('package.json has a version of the form X.Y.Z and the MIT license', () => {
  assert.match(pkg.version, /^\d+\.\d+\.\d+$/);
  assert.equal(pkg.license, 'MIT');
});

test('LICENSE is the MIT license of the ratelimit authors', () => {
  const text = readFileSync(join(ROOT, 'LICENSE'), 'utf8');
  assert.match(text, /^MIT License\n/);
  assert.match(text, /^Copyright \(c\) \d{4} the ratelimit authors$/m);
});

test('the header of ratelimit.ts names the license and the version in package.json', () => {
  const lines = header();
  const spdx = lines.filter((l) => /^\/\/\s*SPDX-License-Identifier:/.test(l));
  assert.deepEqual(spdx, [`// SPDX-License-Identifier: ${pkg.license}`], 'expected one line "// SPDX-License-Identifier: MIT" in the header of ratelimit.ts');
  const versions = lines.filter((l) => /^\/\/\s*ratelimit v/.test(l));
  assert.equal(versions.length, 1, 'expected one line "// ratelimit vX.Y.Z" in the header of ratelimit.ts');
  const version = /^\/\/ ratelimit v(\d+\.\d+\.\d+)(?: .*)?$/.exec(versions[0]!)?.[1];
  assert.equal(version, pkg.version, `the header says "${versions[0]}", but package.json's version is ${pkg.version}`);
});

test('the VERSION that ratelimit.ts exports is the same version', async () => {
  const { VERSION } = await import('../ratelimit.ts');
  assert.equal(VERSION, pkg.version);
});
