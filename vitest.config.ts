import { availableParallelism } from 'node:os';
import { defineConfig } from 'vitest/config';

/**
 * Package tests that start a real service (here: a private mariadbd), so they run with the
 * end-to-end files, one at a time. Every other package test is a unit test.
 */
const PACKAGE_E2E = ['packages/agent/src/db/db.test.ts'];

/** Static checks in test/ that start nothing: they run with the unit tests. */
const TEST_UNIT = ['test/architecture.test.ts', 'test/launchers.test.ts'];

/**
 * Two projects. `unit` (`pnpm test`): files in parallel, no bundle step; most of them wait on
 * the file system or a child process (php, git, a tsx child), so more workers than cores pays.
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
          include: ['packages/*/src/**/*.test.ts', ...TEST_UNIT],
          exclude: ['**/node_modules/**', ...PACKAGE_E2E],
          maxWorkers: Math.max(4, availableParallelism()),
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
