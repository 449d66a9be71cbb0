// npm run test:stress: every fault scenario at full size, with its figures.
// Stops by itself (each scenario has its own end time and kills stragglers)
// and exits non-zero if any scenario found something wrong.
//   npm run test:stress                 all scenarios
//   npm run test:stress -- killStorm    only the ones named
//   npm run test:stress -- --bounded x  the bounded form (as npm test runs it)
import { scenarios, killWorkers, type Outcome } from './scenarios.ts';

const bounded = process.argv.includes('--bounded');
const only = process.argv.slice(2).filter((a) => a !== '--bounded');
const started = performance.now();
const outcomes: Outcome[] = [];
for (const [key, run] of Object.entries(scenarios)) {
  if (only.length && !only.includes(key)) continue;
  const t0 = performance.now();
  const outcome = await run(bounded ? 'bounded' : 'full');
  outcomes.push(outcome);
  const verdict = outcome.skipped ? 'skip' : outcome.failures.length ? 'FAIL' : 'ok  ';
  console.log(`\n${verdict} ${outcome.name} (${((performance.now() - t0) / 1000).toFixed(1)} s)${outcome.skipped ? `: ${outcome.skipped}` : ''}`);
  for (const [k, v] of Object.entries(outcome.figures)) console.log(`     ${k}: ${v}`);
  for (const f of outcome.failures) console.log(`     ! ${f}`);
}
killWorkers();
const failed = outcomes.filter((o) => o.failures.length);
const skipped = outcomes.filter((o) => o.skipped);
console.log(`\n${outcomes.length - failed.length - skipped.length} passed, ${failed.length} failed, ${skipped.length} skipped (${((performance.now() - started) / 1000).toFixed(0)} s)`);
process.exit(failed.length ? 1 : 0);
