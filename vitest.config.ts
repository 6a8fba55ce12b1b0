import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['packages/*/src/**/*.test.ts', 'test/**/*.test.ts'],
    testTimeout: 60_000,
    hookTimeout: 120_000,
    // End-to-end files start real daemons; run files one at a time on this 2-core machine.
    fileParallelism: false,
    pool: 'forks',
    globalSetup: ['test/global-setup.ts'],
  },
});
