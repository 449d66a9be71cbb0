// The stress and fault suite in its bounded form, run by npm
// test. `npm run test:stress` runs the same scenarios longer and prints their
// figures. See test/stress/scenarios.ts and faults.ts for what each one does.
// A scenario this machine cannot run (no root, a namespace refused) is
// reported as skipped, with its reason.
import { describe, it, after } from 'node:test';
import assert from 'node:assert/strict';
import { scenarios, killWorkers } from './stress/scenarios.ts';
import { skipUnlessInstalled } from './helpers.ts';

// Scenarios that need a program from a Debian package: without it they are
// reported as skipped, with the reason.
const skip: Partial<Record<keyof typeof scenarios, string | undefined>> = {
  clockSteps: skipUnlessInstalled('faketime', ['-f', '+1h', 'true']),
};

describe('stress and faults (bounded)', () => {
  after(killWorkers);
  for (const [key, run] of Object.entries(scenarios)) {
    it(key, { skip: skip[key as keyof typeof scenarios] }, async (t) => {
      const outcome = await run('bounded');
      if (outcome.skipped) { t.skip(outcome.skipped); return; }
      for (const [k, v] of Object.entries(outcome.figures)) t.diagnostic(`${k}: ${v}`);
      assert.deepEqual(outcome.failures, [], `${outcome.name}: ${outcome.failures.join('; ')}`);
    });
  }
});
