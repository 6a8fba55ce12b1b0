/** Master options: the build options' defaults and checks. */
import { resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { compileMasterOptions } from './options.js';

describe('compileMasterOptions: builds', () => {
  it("defaults: no extra source dirs (each makefile's own), 1 GiB, 100,000 entries, ratio 100", () => {
    const o = compileMasterOptions({ stateDir: '/tmp/x', buildEnv: {} });
    expect(o).toMatchObject({ buildSourceDirs: [], buildMaxBytes: 1024 ** 3, buildMaxEntries: 100_000, buildMaxRatio: 100 });
  });

  it('resolves source dirs and keeps what was set', () => {
    const o = compileMasterOptions({
      stateDir: '/tmp/x',
      buildEnv: {},
      buildSourceDirs: ['rel/makefiles', '/srv/tarballs'],
      buildMaxBytes: 5,
      buildMaxEntries: 6,
      buildMaxRatio: 7,
    });
    expect(o).toMatchObject({ buildSourceDirs: [resolve('rel/makefiles'), '/srv/tarballs'], buildMaxBytes: 5, buildMaxEntries: 6, buildMaxRatio: 7 });
  });

  it('refuses limits that are not positive numbers', () => {
    for (const bad of [{ buildMaxBytes: 0 }, { buildMaxEntries: -1 }, { buildMaxRatio: Number.NaN }]) {
      expect(() => compileMasterOptions({ stateDir: '/tmp/x', buildEnv: {}, ...bad }), JSON.stringify(bad)).toThrow(
        expect.objectContaining({ code: 'CONFIG_INVALID' }),
      );
    }
  });
});

describe('compileMasterOptions: the environment by schema', () => {
  it('takes the settings, and their defaults when unset or empty', () => {
    expect(compileMasterOptions({ stateDir: '/tmp/x' }, {})).toMatchObject({
      heartbeatIntervalMs: 5000,
      heartbeatTtlMs: 15_000,
      agentReconnectGraceMs: 60_000,
      cron: true,
      cronTickMs: 10_000,
      logLevel: 'info',
    });
    const o = compileMasterOptions(
      { stateDir: '/tmp/x' },
      { SPOKE_HEARTBEAT_MS: '250', SPOKE_RECONNECT_GRACE_MS: '0', SPOKE_CRON: 'off', SPOKE_CRON_TICK_MS: '', SPOKE_LOG_LEVEL: 'warn' },
    );
    expect(o).toMatchObject({ heartbeatIntervalMs: 250, heartbeatTtlMs: 750, agentReconnectGraceMs: 0, cron: false, cronTickMs: 10_000, logLevel: 'warn' });
  });

  it('an option set by the caller wins over the environment', () => {
    expect(compileMasterOptions({ stateDir: '/tmp/x', heartbeatIntervalMs: 100 }, { SPOKE_HEARTBEAT_MS: '250' }).heartbeatIntervalMs).toBe(100);
  });

  it.each([
    [{ SPOKE_HEARTBEAT_MS: '5s' }, 'SPOKE_HEARTBEAT_MS must be a whole number of at least 1 (got "5s")'],
    [{ SPOKE_CRON_CONCURRENCY: '0' }, 'SPOKE_CRON_CONCURRENCY must be a whole number of at least 1 (got "0")'],
    [{ SPOKE_RECONNECT_GRACE_MS: '-1' }, 'SPOKE_RECONNECT_GRACE_MS must be a whole number of at least 0 (got "-1")'],
    [{ SPOKE_LOG_LEVEL: 'loud' }, 'SPOKE_LOG_LEVEL must be one of fatal, error, warn, info, debug, trace, silent (got "loud")'],
  ])('refuses %j with one line', (env, msg) => {
    expect(() => compileMasterOptions({ stateDir: '/tmp/x' }, env)).toThrow(expect.objectContaining({ code: 'CONFIG_INVALID', message: msg }));
  });
});
