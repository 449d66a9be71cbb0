// npm run lint, part 1: typescript-eslint's recommended rules, as they come,
// on the two files that users copy. The rest of the repository is not linted.
import { defineConfig } from 'eslint/config';
import tseslint from 'typescript-eslint';

export default defineConfig({
  files: ['ratelimit.ts', 'examples/redis-store.ts'],
  extends: [tseslint.configs.recommended],
});
