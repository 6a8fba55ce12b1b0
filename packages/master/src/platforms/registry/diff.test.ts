import { afterAll, describe, expect, it } from 'vitest';
import { diffRegistries, effectiveExtensions, versionStatus } from './diff.js';
import { drupal7Tree } from './fixtures.js';
import { scanPlatform, type Extension, type Registry } from './registry.js';
import { makeTree } from './testTree.js';

function ext(name: string, version: string | null, more: Partial<Extension> = {}): Extension {
  return {
    name,
    humanName: name,
    version,
    project: null,
    package: null,
    schemaVersion: null,
    path: `sites/all/modules/${name}`,
    type: 'module',
    site: null,
    ...more,
  };
}

function reg(more: Partial<Registry>): Registry {
  return {
    kind: 'drupal7',
    coreVersion: '7.98',
    distribution: null,
    profiles: [],
    modules: [],
    themes: [],
    sites: [],
    composer: null,
    problems: [],
    ...more,
  };
}

describe('versionStatus', () => {
  it.each([
    ['7.x-1.0', '7.x-1.1', 'upgrade'],
    ['7.x-1.1', '7.x-1.0', 'downgrade'],
    ['7.x-1.0', '7.x-1.0', 'same'],
    [null, '7.x-1.0', 'unknown'],
    ['7.x-1.0', null, 'unknown'],
    [null, null, 'unknown'],
    ['7.x-1.x-dev', '7.x-1.2', 'unknown'],
    ['weird', 'weird', 'same'],
    ['weird', 'other', 'unknown'],
  ] as const)('%j → %j: %s', (a, b, s) => {
    expect(versionStatus(a, b)).toBe(s);
  });
});

describe('diffRegistries', () => {
  const a = reg({
    modules: [
      ext('views', '7.x-3.20', { schemaVersion: 7301 }),
      ext('ctools', '7.x-1.15'),
      ext('token', '7.x-1.7'),
      ext('gone', '7.x-1.0'),
      ext('custom', null),
      ext('devel', '7.x-1.x-dev'),
      ext('node', '7.98', { path: 'modules/node', schemaVersion: 7016 }),
      ext('sitemod', '7.x-9.0', { site: 'example.com', path: 'sites/example.com/modules/sitemod' }),
    ],
    themes: [ext('zen', '7.x-5.6', { type: 'theme', path: 'sites/all/themes/zen' })],
    profiles: [{ name: 'standard', humanName: 'Standard', version: '7.98', hidden: false, path: 'profiles/standard' }],
  });
  const b = reg({
    coreVersion: '7.100',
    modules: [
      ext('views', '7.x-3.24', { schemaVersion: 7302 }),
      ext('ctools', '7.x-1.14'),
      ext('token', '7.x-1.7'),
      ext('newmod', '7.x-2.0'),
      ext('custom', null),
      ext('devel', '7.x-1.5'),
      // Core copy older, sites/all copy newer: the sites/all copy is what Drupal loads.
      ext('node', '7.100', { path: 'modules/node', schemaVersion: 7015 }),
      ext('node', '7.101', { path: 'sites/all/modules/node', schemaVersion: 7015 }),
    ],
    themes: [ext('zen', '7.x-5.6', { type: 'theme', path: 'sites/all/themes/zen' })],
    profiles: [
      { name: 'standard', humanName: 'Standard', version: '7.100', hidden: false, path: 'profiles/standard' },
      { name: 'kick', humanName: 'Kick', version: '7.x-2.0', hidden: false, path: 'profiles/kick' },
    ],
  });
  const d = diffRegistries(a, b);

  it('classifies every module by machine name', () => {
    expect(Object.fromEntries(d.modules.map((m) => [m.name, m.status]))).toEqual({
      ctools: 'downgrade',
      custom: 'unknown',
      devel: 'unknown',
      gone: 'missing',
      newmod: 'added',
      node: 'upgrade',
      token: 'same',
      views: 'upgrade',
    });
  });

  it('carries versions, paths and schema comparison', () => {
    expect(d.modules.find((m) => m.name === 'views')).toEqual({
      name: 'views',
      type: 'module',
      from: '7.x-3.20',
      to: '7.x-3.24',
      status: 'upgrade',
      schemaFrom: 7301,
      schemaTo: 7302,
      schema: 'upgrade',
      pathFrom: 'sites/all/modules/views',
      pathTo: 'sites/all/modules/views',
    });
    expect(d.modules.find((m) => m.name === 'node')).toMatchObject({ to: '7.101', pathTo: 'sites/all/modules/node', schema: 'downgrade' });
    expect(d.modules.find((m) => m.name === 'gone')).toMatchObject({ from: '7.x-1.0', to: null, schema: 'unknown', pathTo: null });
    expect(d.schemaDowngrades).toEqual(['node']);
  });

  it('leaves site-specific extensions out', () => {
    expect(d.modules.map((m) => m.name)).not.toContain('sitemod');
  });

  it('compares themes, profiles and core', () => {
    expect(d.themes).toEqual([expect.objectContaining({ name: 'zen', type: 'theme', status: 'same' })]);
    expect(d.profiles.map((p) => [p.name, p.status])).toEqual([
      ['kick', 'added'],
      ['standard', 'upgrade'],
    ]);
    expect(d.core).toEqual({ kindFrom: 'drupal7', kindTo: 'drupal7', from: '7.98', to: '7.100', status: 'upgrade' });
    expect(d.summary).toEqual({ upgrade: 3, downgrade: 1, missing: 1, added: 2, same: 2, unknown: 2 });
  });

  it('compares core across Drupal majors but not across products', () => {
    expect(diffRegistries(reg({}), reg({ kind: 'drupal8', coreVersion: '10.3.1' })).core.status).toBe('upgrade');
    expect(diffRegistries(reg({}), reg({ kind: 'wordpress', coreVersion: '6.4.2' })).core.status).toBe('unknown');
    expect(diffRegistries(reg({ coreVersion: null }), reg({})).core.status).toBe('unknown');
  });

  it('picks the effective copy of a duplicated module', () => {
    const eff = effectiveExtensions(
      [
        ext('x', '1', { path: 'profiles/p/modules/x' }),
        ext('x', '2', { path: 'sites/all/modules/x' }),
        ext('x', '3', { path: 'modules/x' }),
        ext('x', '4', { path: 'sites/s/modules/x', site: 's' }),
      ],
      'drupal7',
    );
    expect(eff.get('x')?.version).toBe('2');
  });
});

describe('diffRegistries on scanned trees', () => {
  const ta = makeTree(drupal7Tree({ core: '7.97', views: '7.x-3.29', viewsSchema: 7303 }));
  const tb = makeTree(drupal7Tree({ core: '7.98', views: '7.x-3.24' }));
  afterAll(() => {
    ta.cleanup();
    tb.cleanup();
  });

  it('flags the views downgrade (version and schema) and the core upgrade', async () => {
    const d = diffRegistries(await scanPlatform(ta.root), await scanPlatform(tb.root));
    expect(d.core.status).toBe('upgrade');
    expect(d.modules.find((m) => m.name === 'views')).toMatchObject({ status: 'downgrade', schema: 'downgrade', schemaFrom: 7303, schemaTo: 7302 });
    expect(d.modules.find((m) => m.name === 'system')).toMatchObject({ from: '7.97', to: '7.98', status: 'upgrade', schema: 'same' });
    expect(d.schemaDowngrades).toEqual(['views']);
  });
});
