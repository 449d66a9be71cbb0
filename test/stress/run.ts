// npm run test:stress: every fault scenario at full size, with its figures.
// Stops by itself (each scenario has its own end time and kills stragglers)
// and exits non-zero if any scenario found something wrong.
//   npm run test:stress                 all scenarios
//   npm run test:stress -- killStorm    only the ones named
import { scenarios, killWorkers, type Outcome } from './scenarios.ts';

const only = process.argv.slice(2);
const started = performance.now();
const outcomes: Outcome[] = [];
for (const [key, run] of Object.entries(scenarios)) {
  if (only.length && !only.includes(key)) continue;
  const t0 = performance.now();
  const outcome = await run('full');
  outcomes.push(outcome);
  console.log(`\n${outcome.failures.length ? 'FAIL' : 'ok  '} ${outcome.name} (${((performance.now() - t0) / 1000).toFixed(1)} s)`);
  for (const [k, v] of Object.entries(outcome.figures)) console.log(`     ${k}: ${v}`);
  for (const f of outcome.failures) console.log(`     ! ${f}`);
}
killWorkers();
const failed = outcomes.filter((o) => o.failures.length);
console.log(`\n${outcomes.length - failed.length} passed, ${failed.length} failed (${((performance.now() - started) / 1000).toFixed(0)} s)`);
process.exit(failed.length ? 1 : 0);
