#!/usr/bin/env node
/**
 * Which side was busy when, in one timed run of a benchmark case: reads the CPU profiles and
 * spans.json written by `bench:sync --profile DIR` and prints, per time bin, each process's busy
 * share and its top frame (`bundle caller>bundle function:self function`).
 *   node scripts/profile-timeline.mjs DIR CASE [RUN_INDEX=1] [BIN_MS=100]
 * Columns are the profiles that overlap the run (master and agent), in file-name order; `-` is a
 * bin without samples. scripts/profile-spans.mjs gives the totals per function instead.
 */
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';

const [dir, caseName, runArg = '1', binArg = '100'] = process.argv.slice(2);
if (!dir || !caseName) {
  process.stderr.write('usage: node scripts/profile-timeline.mjs DIR CASE [RUN_INDEX] [BIN_MS]\n');
  process.exit(2);
}
const run = Number(runArg);
const binMs = Number(binArg);
const span = JSON.parse(readFileSync(join(dir, 'spans.json'), 'utf8')).filter((s) => s.case === caseName)[run];
if (!span) {
  process.stderr.write(`error: no run ${run} of case ${caseName} in ${join(dir, 'spans.json')}\n`);
  process.exit(2);
}

const profiles = readdirSync(dir)
  .filter((f) => f.endsWith('.cpuprofile'))
  .sort()
  .map((f) => JSON.parse(readFileSync(join(dir, f), 'utf8')))
  .filter((p) => p.startTime <= span.to && p.endTime >= span.from);

/** Samples per bin per label, for one profile. */
function bins(p) {
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const parent = new Map();
  for (const n of p.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  // the two innermost frames from our bundles, and the function the sample is in
  const label = (id) => {
    const own = byId.get(id).callFrame.functionName || '(anon)';
    if (own.startsWith('(')) return own;
    const ours = [];
    for (let cur = id; cur !== undefined && ours.length < 2; cur = parent.get(cur)) {
      const cf = byId.get(cur).callFrame;
      if (cf.url.includes('spoke-')) ours.push(cf.functionName || '(anon)');
    }
    return `${ours.reverse().join('>') || '?'}:${own}`;
  };
  const out = new Map();
  let t = p.startTime;
  p.samples.forEach((s, i) => {
    t += p.timeDeltas[i];
    if (t < span.from || t > span.to) return;
    const b = Math.floor((t - span.from) / 1000 / binMs);
    const m = out.get(b) ?? new Map();
    const l = label(s);
    m.set(l, (m.get(l) ?? 0) + 1);
    out.set(b, m);
  });
  return out;
}

const columns = profiles.map(bins);
const n = Math.ceil((span.to - span.from) / 1000 / binMs);
for (let b = 0; b < n; b++) {
  const cells = columns.map((col) => {
    const m = col.get(b);
    if (!m) return '-'.padEnd(60);
    const total = [...m.values()].reduce((a, c) => a + c, 0);
    const idle = m.get('(idle)') ?? 0;
    const top = [...m].filter(([k]) => k !== '(idle)').sort((a, c) => c[1] - a[1])[0];
    return `${Math.round(100 * (1 - idle / total))}% ${top ? top[0] : ''}`.slice(0, 60).padEnd(60);
  });
  process.stdout.write(`${String(b * binMs).padStart(6)} ${cells.join(' | ')}\n`);
}
