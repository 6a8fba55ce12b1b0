import { availableParallelism } from 'node:os';
import { defineConfig } from 'vitest/config';

/**
 * Package tests that run with the end-to-end files, one at a time: db.test.ts starts a real
 * service (a private mariadbd); buildfuzz.test.ts (200 builds through git, tar and zip) and
 * crash.test.ts (an agent child process killed at dozens of points) each start hundreds of
 * processes and take minutes on a loaded 2-core machine (measured: 491 s and 105 s);
 * build.test.ts and buildsec.test.ts run real git, tar, xz and zip builds (10 s and 20 s, the
 * two slowest package files). None of that is what `pnpm test` is for. Every other package test
 * is a unit test.
 */
const PACKAGE_E2E = [
  'packages/agent/src/db/db.test.ts',
  'packages/master/src/platforms/buildfuzz.test.ts',
  'packages/agent/src/converge/crash.test.ts',
  'packages/master/src/platforms/build.test.ts',
  'packages/master/src/platforms/buildsec.test.ts',
];

/** Static checks in test/ that start nothing: they run with the unit tests. */
const TEST_UNIT = ['test/architecture.test.ts', 'test/launchers.test.ts'];

/**
 * Two projects. `unit` (`pnpm test`): files in parallel (one worker per core), no bundle step,
 * and no fresh module graph per file (`isolate: false`): importing the packages again for each of
 * ~90 files was 170 of 230 s; unit tests therefore pass their dependencies in rather than
 * replacing modules (no vi.mock) and leave no process-wide state behind.
 * `e2e`: real daemons from the built bundles (test/global-setup.ts builds them once) and real
 * services, one file at a time on this 2-core machine; it runs after `unit` has finished
 * (groupOrder), so the two never compete. `pnpm test:all` runs both.
 */
export default defineConfig({
  test: {
    testTimeout: 60_000,
    hookTimeout: 120_000,
    pool: 'forks',
    projects: [
      {
        extends: true,
        test: {
          name: 'unit',
          isolate: false,
          include: ['packages/*/src/**/*.test.ts', ...TEST_UNIT],
          exclude: ['**/node_modules/**', ...PACKAGE_E2E],
          maxWorkers: Math.max(2, availableParallelism()),
          sequence: { groupOrder: 0 },
        },
      },
      {
        extends: true,
        test: {
          name: 'e2e',
          include: ['test/**/*.test.ts', ...PACKAGE_E2E],
          exclude: ['**/node_modules/**', ...TEST_UNIT],
          fileParallelism: false,
          globalSetup: ['test/global-setup.ts'],
          sequence: { groupOrder: 1 },
        },
      },
    ],
  },
});
