// Draws who got a slot when: 4 processes share one limit of 5 calls per
// second through one state file, each calling wait() again and again for 3 s.
// One picture for patient mode, one for greedy; one row per process, one tick
// per grant, and the limit's window of 1 s drawn as bands with their counts.
// Plain SVG text, no plotting library.
//
//   node --import tsx bench/timeline.ts   (writes docs/timeline-patient.svg and docs/timeline-greedy.svg)
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { benchDir, startAll, startChild, tempDir } from './lib.ts';

const PROCS = 4;
const MAX_COUNT = 5;
const PER = 1;
const SECONDS = 3;
const OUT = process.env.TIMELINE_DIR ?? join(benchDir, '..', 'docs');
const hrMs = () => Number(process.hrtime.bigint()) / 1e6;
const COLORS = ['#1f77b4', '#d62728', '#2ca02c', '#9467bd'];

const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

/** An SVG of grant times (ms after the start), one row per process. */
export function drawTimeline(title: string, subtitle: string, rows: number[][]): string {
  const W = 900, left = 92, right = 24, top = 84, rowH = 34, bottom = 64;
  const H = top + rows.length * rowH + bottom;
  const span = SECONDS * 1000;
  const x = (ms: number) => left + (ms / span) * (W - left - right);
  const all = rows.flat().sort((a, b) => a - b);
  const out: string[] = [];
  out.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="system-ui, -apple-system, Segoe UI, Helvetica, Arial, sans-serif">`);
  out.push(`<rect width="${W}" height="${H}" fill="#ffffff"/>`);
  out.push(`<text x="${left}" y="24" font-size="16" font-weight="600" fill="#222">${esc(title)}</text>`);
  out.push(`<text x="${left}" y="44" font-size="12" fill="#555">${esc(subtitle)}</text>`);
  // The limit's window: bands of `per` seconds from the first grant. Ticks are
  // when wait() returned, a little after the slot, so counts are given per
  // burst (grants less than 50 ms apart), not per band, where a late tick
  // could seem to cross into the next band.
  const first = all.length ? all[0] : 0;
  for (let k = 0, from = first; from < span; k++, from += PER * 1000) {
    const to = Math.min(span, from + PER * 1000);
    out.push(`<rect x="${x(from).toFixed(1)}" y="${top - 8}" width="${(x(to) - x(from)).toFixed(1)}" height="${rows.length * rowH + 8}" fill="${k % 2 ? '#f3f3f3' : '#e6eef7'}"/>`);
  }
  out.push(`<text x="${(x(first) + 4).toFixed(1)}" y="${top - 12}" font-size="11" fill="#555">one window: ${PER} s, at most ${MAX_COUNT} grants</text>`);
  const bursts: number[][] = [];
  for (const t of all) {
    const last = bursts[bursts.length - 1];
    if (last && t - last[last.length - 1] < 50) last.push(t); else bursts.push([t]);
  }
  if (bursts.length < all.length) {
    for (const b of bursts) {
      out.push(`<text x="${(x(b[0]) + 4).toFixed(1)}" y="${top + rows.length * rowH + 16}" font-size="11" fill="#555">${b.length} grant${b.length === 1 ? '' : 's'} at ${(b[0] / 1000).toFixed(2)} s</text>`);
    }
  }
  // Process rows and their grants.
  rows.forEach((grants, i) => {
    const y = top + i * rowH;
    out.push(`<text x="${left - 10}" y="${y + rowH / 2 + 4}" font-size="12" fill="#333" text-anchor="end">process ${i + 1}</text>`);
    out.push(`<line x1="${left}" y1="${y + rowH / 2}" x2="${W - right}" y2="${y + rowH / 2}" stroke="#c8c8c8" stroke-width="1"/>`);
    // Grants within 30 ms of each other look like one tick: draw one, marked with how many.
    const groups: number[][] = [];
    for (const t of [...grants].sort((a, b) => a - b)) {
      const last = groups[groups.length - 1];
      if (last && t - last[0] < 30) last.push(t); else groups.push([t]);
    }
    for (const g of groups) {
      const gx = x(g[0]).toFixed(1);
      const times = g.map((t) => `${(t / 1000).toFixed(3)} s`).join(', ');
      out.push(`<line x1="${gx}" y1="${y + 6}" x2="${gx}" y2="${y + rowH - 6}" stroke="${COLORS[i % COLORS.length]}" stroke-width="2.5"><title>process ${i + 1}: ${times}</title></line>`);
      if (g.length > 1) out.push(`<text x="${(x(g[0]) + 5).toFixed(1)}" y="${y + 13}" font-size="11" font-weight="600" fill="${COLORS[i % COLORS.length]}">×${g.length}</text>`);
    }
  });
  // Time axis.
  const axisY = top + rows.length * rowH + 26;
  out.push(`<line x1="${left}" y1="${axisY}" x2="${W - right}" y2="${axisY}" stroke="#888"/>`);
  for (let ms = 0; ms <= span; ms += 500) {
    out.push(`<line x1="${x(ms)}" y1="${axisY}" x2="${x(ms)}" y2="${axisY + 5}" stroke="#888"/>`);
    out.push(`<text x="${x(ms)}" y="${axisY + 18}" font-size="11" fill="#555" text-anchor="middle">${(ms / 1000).toFixed(1)} s</text>`);
  }
  out.push('</svg>');
  return `${out.join('\n')}\n`;
}

async function run(greedy: boolean, dir: string) {
  const job = { file: join(dir, `${greedy ? 'greedy' : 'patient'}.json`), maxCount: MAX_COUNT, per: PER, greedy, seconds: SECONDS };
  return Array.from({ length: PROCS }, () => startChild('timeline-child.ts', job, 90_000));
}

const { dir, remove } = tempDir('timeline');
try {
  // Both modes at once, on their own files: the processes mostly sleep.
  const patient = await run(false, dir);
  const greedy = await run(true, dir);
  await startAll([...patient, ...greedy], hrMs, 400);
  const rowsOf = async (children: Awaited<ReturnType<typeof run>>) =>
    (await Promise.all(children.map((c) => c.done))).map((lines) => lines.find((l) => l.grants)!.grants as number[]);
  const p = await rowsOf(patient);
  const g = await rowsOf(greedy);
  mkdirSync(OUT, { recursive: true });
  const limitText = `new RateLimit({ maxCount: ${MAX_COUNT}, per: ${PER}, file })`;
  writeFileSync(join(OUT, 'timeline-patient.svg'), drawTimeline(
    `Patient: ${PROCS} processes, one state file, ${MAX_COUNT} per ${PER} s`,
    `${limitText}; every process calls wait() in a loop. Each tick is a grant: ${(PER * 1000) / MAX_COUNT} ms apart.`, p));
  writeFileSync(join(OUT, 'timeline-greedy.svg'), drawTimeline(
    `Greedy: ${PROCS} processes, one state file, ${MAX_COUNT} per ${PER} s`,
    `${limitText.replace(' file', ' greedy: true, file')}; same loop. Bursts of ${MAX_COUNT}, ${PER} s apart.`, g));
  const count = (rows: number[][]) => rows.map((r) => r.length).join(' + ');
  console.log(`\nTimeline pictures written to ${OUT}/timeline-patient.svg (grants per process ${count(p)}) and timeline-greedy.svg (${count(g)}).`);
} finally {
  remove();
}
