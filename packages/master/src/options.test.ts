/** Master options: the build options' defaults and checks. */
import { resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { compileMasterOptions } from './options.js';

describe('compileMasterOptions: builds', () => {
  it('defaults: no extra source dirs (each makefile\'s own), 1 GiB, 100,000 entries, ratio 100', () => {
    const o = compileMasterOptions({ stateDir: '/tmp/x', buildEnv: {} });
    expect(o).toMatchObject({ buildSourceDirs: [], buildMaxBytes: 1024 ** 3, buildMaxEntries: 100_000, buildMaxRatio: 100 });
  });

  it('resolves source dirs and keeps what was set', () => {
    const o = compileMasterOptions({ stateDir: '/tmp/x', buildEnv: {}, buildSourceDirs: ['rel/makefiles', '/srv/tarballs'], buildMaxBytes: 5, buildMaxEntries: 6, buildMaxRatio: 7 });
    expect(o).toMatchObject({ buildSourceDirs: [resolve('rel/makefiles'), '/srv/tarballs'], buildMaxBytes: 5, buildMaxEntries: 6, buildMaxRatio: 7 });
  });

  it('refuses limits that are not positive numbers', () => {
    for (const bad of [{ buildMaxBytes: 0 }, { buildMaxEntries: -1 }, { buildMaxRatio: Number.NaN }]) {
      expect(() => compileMasterOptions({ stateDir: '/tmp/x', buildEnv: {}, ...bad }), JSON.stringify(bad)).toThrow(expect.objectContaining({ code: 'CONFIG_INVALID' }));
    }
  });
});
