// npm run lint, part 1: typescript-eslint's recommended rules, as they come,
// on the files that users copy. The rest of the repository is not linted.
import { defineConfig } from 'eslint/config';
import tseslint from 'typescript-eslint';

export default defineConfig({
  files: ['ratelimit.ts', 'ratelimit-cli.mts', 'examples/redis-store.ts'],
  extends: [tseslint.configs.recommended],
});
