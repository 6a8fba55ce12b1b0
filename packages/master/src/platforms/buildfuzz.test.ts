/**
 * The build fuzz suite in CI (buildfuzz.ts): 200 generated cases (~45-90 s here, by load) with a fixed seed
 * (override with SPOKE_FUZZ_SEED / SPOKE_FUZZ_CASES), each built by the real builder with real
 * tar, zip, git and patch; nothing outside a case's target may change, a built target holds no
 * link leaving it, refusals carry a stable code. The mix is checked too, so a generator that
 * stopped producing hostile or buildable cases fails rather than passing vacuously.
 * `pnpm fuzz:build` runs 10,000 by hand.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { runBuildFuzz } from './buildfuzz.js';

const dir = mkdtempSync(join(tmpdir(), 'spoke-buildfuzz-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const seed = Number(process.env.SPOKE_FUZZ_SEED ?? 20261206);
const cases = Number(process.env.SPOKE_FUZZ_CASES ?? 200);

describe('build fuzz', () => {
  it(`${cases} generated cases (seed ${seed}) leave everything outside their target as it was`, { timeout: 600_000 }, async () => {
    const lines: string[] = [];
    const env = { PATH: process.env.PATH, HOME: process.env.HOME };
    const report = await runBuildFuzz({ cases, seed, dir, env, concurrency: 2, log: (l) => lines.push(l) });
    expect(report.violations, lines.join('\n')).toEqual([]);
    expect(report.cases).toBe(cases);
    // The mix: builds that succeeded (some placing through a link inside the tree) and hostile
    // cases refused for leaving the tree and for reading what they may not.
    expect(report.built).toBeGreaterThan(cases / 5);
    expect(report.followedLinks).toBeGreaterThan(0);
    expect(report.refused.BUILD_PATH_ESCAPE ?? 0).toBeGreaterThan(0);
    expect(report.refused.ARCHIVE_UNSAFE ?? 0).toBeGreaterThan(0);
    expect(report.refused.BUILD_SOURCE_NOT_ALLOWED ?? 0).toBeGreaterThan(0);
    expect(report.refused.NOT_A_SPOKE_ERROR).toBeUndefined();
  });
});
