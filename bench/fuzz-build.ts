/**
 * `pnpm fuzz:build [--cases N] [--seed S] [--only N] [--keep] [--dir DIR] [--concurrency N]`: runs generated build
 * cases (packages/master/src/buildfuzz.ts) and prints a summary; exits 1 when any case broke an invariant. Defaults:
 * 10,000 cases, seed from the clock (printed, so a failing run can be replayed), a temp dir, 2 at once.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { runBuildFuzz } from '../packages/master/src/platforms/buildfuzz.js';

const { values } = parseArgs({
  options: {
    cases: { type: 'string', default: '10000' },
    seed: { type: 'string' },
    only: { type: 'string' },
    keep: { type: 'boolean', default: false },
    dir: { type: 'string' },
    concurrency: { type: 'string', default: '2' },
  },
  strict: true,
});
const seed = values.seed !== undefined ? Number(values.seed) : Date.now() % 1_000_000;
const cases = Number(values.cases);
if (!Number.isInteger(seed) || !Number.isInteger(cases) || cases <= 0) {
  process.stderr.write('usage: pnpm fuzz:build [--cases N] [--seed S] [--only N] [--keep] [--dir DIR] [--concurrency N]\n');
  process.exit(2);
}
const dir = values.dir ?? mkdtempSync(join(tmpdir(), 'spoke-fuzz-build-'));
process.stdout.write(`fuzz:build seed ${seed}, ${values.only !== undefined ? `case ${values.only}` : `${cases} cases`}, in ${dir}\n`);
const report = await runBuildFuzz({
  cases,
  seed,
  dir,
  keep: values.keep,
  env: { PATH: process.env.PATH, HOME: process.env.HOME },
  concurrency: Number(values.concurrency),
  ...(values.only !== undefined ? { only: Number(values.only) } : {}),
  log: (line) => process.stdout.write(`${line}\n`),
});
const refused = Object.entries(report.refused)
  .sort((a, b) => b[1] - a[1])
  .map(([c, n]) => `${c} ${n}`)
  .join(', ');
process.stdout.write(
  `${report.cases} cases in ${(report.ms / 1000).toFixed(1)} s (${(report.ms / Math.max(report.cases, 1)).toFixed(0)} ms each): ${report.built} built` +
    ` (${report.followedLinks} through a link inside the tree), refused: ${refused || 'none'}; ${report.violations.length} violations\n`,
);
if (!values.keep || report.violations.length === 0) rmSync(dir, { recursive: true, force: true });
process.exit(report.violations.length ? 1 : 0);
