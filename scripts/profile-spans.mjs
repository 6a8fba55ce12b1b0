#!/usr/bin/env node
/**
 * Where the time of a benchmark case goes: reads V8 CPU profiles (`--cpu-prof`) and, optionally,
 * a spans.json written by `bench:sync --profile DIR`, and prints self and inclusive time per
 * function per timed run, counting only samples inside the spans of one case.
 *   node scripts/profile-spans.mjs DIR [--case 1-file] [--skip N] [--top 30]
 * --skip N leaves out the case's first N spans (a warm-up run, or the add before the deltas).
 */
import { readdirSync, readFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';

const { values: args, positionals } = parseArgs({
  allowPositionals: true,
  options: { case: { type: 'string' }, skip: { type: 'string', default: '0' }, top: { type: 'string', default: '30' } },
});
const dir = positionals[0];
if (!dir) {
  process.stderr.write('usage: node scripts/profile-spans.mjs DIR [--case NAME] [--skip N] [--top N]\n');
  process.exit(2);
}
const spansFile = join(dir, 'spans.json');
const allSpans = existsSync(spansFile) ? JSON.parse(readFileSync(spansFile, 'utf8')) : [];
const spans = allSpans.filter((s) => !args.case || s.case === args.case).slice(Number(args.skip));
if (args.case && spans.length === 0) {
  process.stderr.write(`error: no spans of case ${args.case} in ${spansFile}\n`);
  process.exit(2);
}
const top = Number(args.top);
const key = (cf) => `${cf.functionName || '(anon)'} ${cf.url.split('/').pop()}:${cf.lineNumber}`;

for (const f of readdirSync(dir)
  .filter((n) => n.endsWith('.cpuprofile'))
  .sort()) {
  const prof = JSON.parse(readFileSync(join(dir, f), 'utf8'));
  const nodes = new Map(prof.nodes.map((n) => [n.id, n]));
  const parent = new Map();
  for (const n of prof.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const selfTime = new Map();
  let t = prof.startTime;
  let total = 0;
  for (let i = 0; i < prof.samples.length; i++) {
    t += prof.timeDeltas[i];
    if (spans.length && !spans.some((s) => t >= s.from && t <= s.to)) continue;
    const d = prof.timeDeltas[i + 1] ?? 0;
    total += d;
    selfTime.set(prof.samples[i], (selfTime.get(prof.samples[i]) ?? 0) + d);
  }
  const self = new Map();
  const incl = new Map();
  for (const [id, us] of selfTime) {
    const k = key(nodes.get(id).callFrame);
    self.set(k, (self.get(k) ?? 0) + us);
    const seen = new Set();
    for (let cur = id; cur !== undefined; cur = parent.get(cur)) {
      const ck = key(nodes.get(cur).callFrame);
      if (!seen.has(ck)) {
        seen.add(ck);
        incl.set(ck, (incl.get(ck) ?? 0) + us);
      }
    }
  }
  const runs = Math.max(spans.length, 1);
  const list = (m) =>
    [...m]
      .sort((a, b) => b[1] - a[1])
      .slice(0, top)
      .map(([k, v]) => `${(v / 1000 / runs).toFixed(2).padStart(9)} ms  ${k}`)
      .join('\n');
  process.stdout.write(
    `== ${f}: ${(total / 1000 / runs).toFixed(1)} ms per run over ${runs} run(s)\n--- self\n${list(self)}\n--- inclusive\n${list(incl)}\n\n`,
  );
}
