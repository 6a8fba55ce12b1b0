import { mkdirSync, readFileSync, utimesSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { isSpokeError } from '@spoke/shared';
import { detectPlatform } from './detect.js';
import { drupal10Tree, drupal6Tree, drupal7Tree, wordpressTree } from './fixtures.js';
import { scanPlatform, scanPlatformCached, type Extension, type Registry } from './registry.js';
import { makeTree, type TreeSpec } from './testTree.js';

const cleanups: Array<() => void> = [];
afterAll(() => cleanups.forEach((c) => c()));

function tree(spec: TreeSpec): string {
  const t = makeTree(spec);
  cleanups.push(t.cleanup);
  return t.root;
}

function byName(list: Extension[], name: string, site: string | null = null): Extension {
  const e = list.find((x) => x.name === name && x.site === site);
  if (!e) throw new Error(`no ${name} (site ${site}) in ${list.map((x) => x.name).join(', ')}`);
  return e;
}

describe('scanPlatform: Drupal 7', () => {
  let reg: Registry;
  it('scans', async () => {
    reg = await scanPlatform(tree(drupal7Tree()));
    expect(reg.kind).toBe('drupal7');
    expect(reg.coreVersion).toBe('7.98');
  });

  it('lists modules with versions (VERSION → core), projects, packages and schema versions', () => {
    expect(byName(reg.modules, 'system')).toEqual({
      name: 'system',
      humanName: 'System',
      version: '7.98',
      project: null,
      package: 'Core',
      schemaVersion: 7081,
      path: 'modules/system',
      type: 'module',
      site: null,
    });
    expect(byName(reg.modules, 'node')).toMatchObject({ version: '7.98', project: 'drupal', schemaVersion: null });
    expect(byName(reg.modules, 'views')).toEqual({
      name: 'views',
      humanName: 'Views',
      version: '7.x-3.24',
      project: 'views',
      package: 'Views',
      schemaVersion: 7302,
      path: 'sites/all/modules/contrib/views',
      type: 'module',
      site: null,
    });
    expect(byName(reg.modules, 'mymod')).toMatchObject({ version: null, project: null, package: null });
    expect(byName(reg.modules, 'ck_blocks')).toMatchObject({ path: 'profiles/commerce_kickstart/modules/ck_blocks', version: '7.x-2.14' });
  });

  it('includes site-specific modules with their site, and skips hidden, info-less, dot and node_modules entries', () => {
    expect(byName(reg.modules, 'sitemod', 'example.com')).toMatchObject({ path: 'sites/example.com/modules/sitemod', version: '7.x-1.0' });
    const names = reg.modules.map((m) => m.name);
    expect(names).toEqual(['ck_blocks', 'mymod', 'node', 'noname', 'sitemod', 'system', 'views']);
  });

  it('lists themes and the core theme engine', () => {
    expect(reg.themes.map((t) => [t.name, t.type, t.version])).toEqual([
      ['bartik', 'theme', '7.98'],
      ['phptemplate', 'theme_engine', '7.98'],
      ['zen', 'theme', '7.x-5.6'],
    ]);
  });

  it('lists visible profiles and picks the distribution', () => {
    expect(reg.profiles).toEqual([
      { name: 'commerce_kickstart', humanName: 'Commerce Kickstart', version: '7.x-2.14', hidden: false, path: 'profiles/commerce_kickstart' },
      { name: 'standard', humanName: 'Standard', version: '7.98', hidden: false, path: 'profiles/standard' },
    ]);
    expect(reg.distribution).toEqual({ name: 'Commerce Kickstart', version: '7.x-2.14', profile: 'commerce_kickstart' });
    // hidden ones are recorded apart: a site can be installed with one by naming it
    expect(reg.hiddenProfiles).toEqual(['testing']);
  });

  it('lists sites with settings.php, without default, all, symlinks or settings-less dirs', () => {
    expect(reg.sites).toEqual(['example.com']);
  });

  it('reports broken and nameless info files without failing', () => {
    expect(reg.problems).toEqual([
      { path: 'sites/all/modules/contrib/broken/broken.info', error: 'empty info file' },
      { path: 'sites/all/modules/contrib/noname/noname.info', error: 'missing "name"' },
    ]);
    expect(byName(reg.modules, 'noname').humanName).toBe('noname');
    expect(reg.composer).toBeNull();
  });

  it('is JSON-serialisable as is', () => {
    expect(JSON.parse(JSON.stringify(reg))).toEqual(reg);
  });
});

describe('scanPlatform: Drupal 6', () => {
  it('detects D6 from system.module and reads .profile details', async () => {
    const reg = await scanPlatform(tree(drupal6Tree()));
    expect(reg.kind).toBe('drupal6');
    expect(reg.coreVersion).toBe('6.38');
    expect(reg.profiles).toEqual([
      { name: 'default', humanName: 'Drupal', version: null, hidden: false, path: 'profiles/default' },
      { name: 'openatrium', humanName: 'Open Atrium', version: null, hidden: false, path: 'profiles/openatrium' },
    ]);
    expect(reg.distribution).toEqual({ name: 'Open Atrium', version: null, profile: 'openatrium' });
    expect(reg.modules.map((m) => [m.name, m.version, m.schemaVersion])).toEqual([
      ['atrium', '6.x-1.7', null],
      ['block', '6.38', null],
      ['content', '6.x-2.9', 6010],
      ['system', '6.38', 6055],
    ]);
    expect(reg.themes.map((t) => t.name)).toEqual(['garland', 'phptemplate']);
    expect(reg.sites).toEqual(['d6.example.net']);
    expect(reg.problems).toEqual([]);
  });
});

describe('scanPlatform: Drupal 8+', () => {
  let reg: Registry;
  it('detects Drupal 10 from core/lib/Drupal.php', async () => {
    reg = await scanPlatform(tree(drupal10Tree()));
    expect(reg.kind).toBe('drupal8');
    expect(reg.coreVersion).toBe('10.3.1');
  });

  it('finds modules by type, skipping hidden ones, src/ and fixtures/ and node_modules/', () => {
    expect(reg.modules.map((m) => `${m.name}@${m.version ?? '-'}:${m.site ?? ''}`)).toEqual([
      'local@-:mysite.org',
      'mine@-:',
      'myprofile_feature@1.2.0:',
      'node@10.3.1:',
      'system@10.3.1:',
      'token@8.x-1.13:',
      'visible_test@10.3.1:',
    ]);
    expect(byName(reg.modules, 'token')).toEqual({
      name: 'token',
      humanName: 'Token',
      version: '8.x-1.13',
      project: 'token',
      package: null,
      schemaVersion: 8002,
      path: 'modules/contrib/token',
      type: 'module',
      site: null,
    });
    expect(byName(reg.modules, 'system').schemaVersion).toBe(10201);
  });

  it('lists themes and theme engines', () => {
    expect(reg.themes.map((t) => [t.name, t.type, t.version])).toEqual([
      ['gin', 'theme', '8.x-3.0-rc10'],
      ['olivero', 'theme', '10.3.1'],
      ['twig', 'theme_engine', '10.3.1'],
    ]);
  });

  it('lists profiles and the distribution declared by a non-core profile', () => {
    expect(reg.profiles.map((p) => [p.name, p.version, p.path])).toEqual([
      ['myprofile', '1.2.0', 'profiles/contrib/myprofile'],
      ['standard', '10.3.1', 'core/profiles/standard'],
    ]);
    expect(reg.distribution).toEqual({ name: 'My Distro', version: '1.2.0', profile: 'myprofile' });
    // a hidden profile is recorded apart; a hidden module is not a profile
    expect(reg.hiddenProfiles).toEqual(['testing']);
  });

  it('reports the broken info.yml, reads composer.json, lists sites', () => {
    expect(reg.problems).toHaveLength(1);
    expect(reg.problems[0]).toMatchObject({ path: 'modules/contrib/broken/broken.info.yml', error: expect.stringMatching(/^invalid YAML/) });
    expect(reg.composer).toEqual({ name: 'drupal/recommended-project', version: null, description: 'Project template' });
    expect(reg.sites).toEqual(['mysite.org']);
  });

  it('has no distribution when only core profiles exist', async () => {
    const spec = drupal10Tree();
    delete spec['profiles/contrib/myprofile/myprofile.info.yml'];
    const r = await scanPlatform(tree(spec));
    expect(r.distribution).toBeNull();
    expect(r.profiles.map((p) => p.name)).toEqual(['standard']);
  });

  it('is not fooled by a stray Drupal.php without the rest of core', async () => {
    const r = await scanPlatform(tree({ 'core/lib/Drupal.php': "<?php class Drupal { const VERSION = '10.1.0'; }" }));
    expect(r.kind).toBe('generic');
    expect(r.coreVersion).toBeNull();
    expect(r.problems).toEqual([{ path: 'core/lib/Drupal.php', error: expect.stringContaining('not treated as Drupal') }]);
  });

  it('detects Drupal 11 and keeps a core whose VERSION cannot be read as unknown', async () => {
    expect((await scanPlatform(tree(drupal10Tree({ core: '11.0.5' })))).coreVersion).toBe('11.0.5');
    const r = await scanPlatform(
      tree({ 'core/lib/Drupal.php': '<?php class Drupal {}', 'core/modules/system/system.info.yml': 'name: System\ntype: module\n' }),
    );
    expect(r.kind).toBe('drupal8');
    expect(r.coreVersion).toBeNull();
    expect(r.problems.map((p) => p.path)).toEqual(['core/lib/Drupal.php']);
  });
});

describe('detectPlatform: structural checks', () => {
  it('needs system.info and system.module besides a D7 bootstrap.inc', async () => {
    const d = await detectPlatform(tree({ 'includes/bootstrap.inc': "<?php define('VERSION', '7.98');" }));
    expect(d.kind).toBe('generic');
    expect(d.problems[0]?.path).toBe('includes/bootstrap.inc');
  });

  it('does not take a Drupal 5 tree for Drupal 6', async () => {
    const d = await detectPlatform(
      tree({
        'modules/system/system.module': "<?php define('VERSION', '5.23');",
        'modules/system/system.info': 'name = System\n',
        'includes/bootstrap.inc': '<?php\n',
      }),
    );
    expect(d).toEqual({ kind: 'generic', coreVersion: null, problems: [] });
  });
});

describe('scanPlatform: WordPress, MediaWiki, generic', () => {
  it('detects WordPress', async () => {
    const r = await scanPlatform(tree(wordpressTree('6.4.2')));
    expect(r).toMatchObject({ kind: 'wordpress', coreVersion: '6.4.2', modules: [], themes: [], profiles: [], sites: [], distribution: null });
    expect(r.problems).toEqual([]);
  });

  it("lists WordPress sites by Spoke's per-site sites/<domain>/wp-config.php", async () => {
    const r = await scanPlatform(
      tree({
        ...wordpressTree('6.4.2'),
        'sites/old.test/wp-config.php': "<?php define('DB_NAME', 'x');",
        'sites/hosts.php': '<?php return [];',
        'sites/no-config.test/files/a.txt': 'x',
        'sites/.spoke-staging-1/wp-config.php': '<?php',
      }),
    );
    expect(r.sites).toEqual(['old.test']);
  });

  it('refuses a WordPress version.php without wp-load.php/wp-settings.php', async () => {
    const r = await scanPlatform(tree({ 'wp-includes/version.php': "<?php $wp_version = '6.4.2';" }));
    expect(r.kind).toBe('generic');
    expect(r.problems).toEqual([{ path: 'wp-includes/version.php', error: expect.stringContaining('not treated as WordPress') }]);
  });

  it('detects MediaWiki from includes/Defines.php (1.35+)', async () => {
    const r = await scanPlatform(
      tree({
        'index.php': '<?php\n',
        'api.php': '<?php\n',
        'includes/Defines.php': "<?php\n/**\n * @since 1.35\n */\ndefine( 'MW_VERSION', '1.39.5' );\n",
        'includes/DefaultSettings.php': '<?php\n$wgVersion = MW_VERSION;\n',
      }),
    );
    expect(r).toMatchObject({ kind: 'mediawiki', coreVersion: '1.39.5', problems: [] });
  });

  it('detects older MediaWiki from $wgVersion in includes/DefaultSettings.php', async () => {
    const r = await scanPlatform(tree({ 'index.php': '<?php\n', 'includes/DefaultSettings.php': "<?php\n$wgVersion = '1.31.0';\n" }));
    expect(r).toMatchObject({ kind: 'mediawiki', coreVersion: '1.31.0' });
  });

  it('falls back to generic with composer.json details', async () => {
    const r = await scanPlatform(
      tree({ 'composer.json': JSON.stringify({ name: 'acme/app', version: '2.1.0', description: 'An app' }), 'public/index.php': '<?php\n' }),
    );
    expect(r).toEqual({
      kind: 'generic',
      coreVersion: null,
      distribution: null,
      profiles: [],
      hiddenProfiles: [],
      modules: [],
      themes: [],
      sites: [],
      composer: { name: 'acme/app', version: '2.1.0', description: 'An app' },
      problems: [],
    });
  });

  it('reports an invalid composer.json and leaves composer null', async () => {
    const r = await scanPlatform(tree({ 'composer.json': '{ "name": ' }));
    expect(r.composer).toBeNull();
    expect(r.problems).toEqual([{ path: 'composer.json', error: expect.stringMatching(/^invalid JSON/) }]);
  });

  it('throws INVALID_ARGUMENT for a missing directory or a file', async () => {
    const root = tree({ 'file.txt': 'x' });
    for (const p of [join(root, 'nope'), join(root, 'file.txt')]) {
      const err = await scanPlatform(p).catch((e: unknown) => e);
      expect(isSpokeError(err, 'INVALID_ARGUMENT')).toBe(true);
    }
  });
});

describe('scanPlatformCached', () => {
  it('re-parses only files whose mtime or size changed', async () => {
    const root = tree(drupal7Tree());
    const nodeInfo0 = join(root, 'modules/node/node.info');
    utimesSync(nodeInfo0, 1_700_000_000, 1_700_000_000);
    const first = await scanPlatformCached(root);
    const viewsInfo = join(root, 'sites/all/modules/contrib/views/views.info');
    const nodeInfo = join(root, 'modules/node/node.info');
    expect(first.cache.get(viewsInfo)?.parsed.kind).toBe('info');
    expect(first.cache.has(join(root, 'includes/bootstrap.inc'))).toBe(true);

    // Same size, same mtime, different content: the cache must win (proves it is used).
    writeFileSync(nodeInfo, readFileSync(nodeInfo, 'utf8').replace('name = Node', 'name = Edon'));
    utimesSync(nodeInfo, 1_700_000_000, 1_700_000_000);
    // A real change (different size) must be re-read.
    writeFileSync(viewsInfo, 'name = Views\ncore = 7.x\nversion = "7.x-3.29"\nproject = "views"\n');

    const second = await scanPlatformCached(root, { previous: first.cache });
    expect(byName(second.registry.modules, 'node').humanName).toBe('Node');
    expect(byName(second.registry.modules, 'views').version).toBe('7.x-3.29');
    expect(second.cache.get(nodeInfo)).toBe(first.cache.get(nodeInfo));
    expect(second.cache.get(viewsInfo)).not.toBe(first.cache.get(viewsInfo));

    // Without the cache the edited node.info is read again.
    const fresh = await scanPlatform(root);
    expect(byName(fresh.modules, 'node').humanName).toBe('Edon');
  });

  it('drops entries for files that disappeared', async () => {
    const root = tree(drupal7Tree());
    const first = await scanPlatformCached(root);
    const second = await scanPlatformCached(root, {
      previous: new Map([...first.cache, ['/gone/x.info', { mtimeMs: 1, size: 1, parsed: { kind: 'schema', module: 'x', schema: 1 } }]]),
    });
    expect(second.cache.has('/gone/x.info')).toBe(false);
    expect([...second.cache.keys()].sort()).toEqual([...first.cache.keys()].sort());
  });
});

describe('scanPlatform: symlinks', () => {
  it('follows symlinked extension directories once and survives symlink loops', async () => {
    const shared = tree({ 'linked/linked.info': 'name = Linked\ncore = 7.x\nversion = "7.x-1.1"\n', 'linked/linked.module': '<?php\n' });
    const root = tree({
      ...drupal7Tree(),
      'sites/all/modules/linked': { symlink: join(shared, 'linked') },
      'sites/all/modules/custom/mymod/loop': { symlink: '..' },
      'sites/all/modules/custom/self': { symlink: '.' },
    });
    const r = await scanPlatform(root);
    expect(byName(r.modules, 'linked')).toMatchObject({ path: 'sites/all/modules/linked', version: '7.x-1.1' });
    expect(r.modules.filter((m) => m.name === 'mymod')).toHaveLength(1);
  });
});

describe('scanPlatform: performance', () => {
  it('scans a 20,000-file Drupal 10 tree, finding every contrib module', async () => {
    const root = tree(drupal10Tree());
    // 200 contrib modules × 100 files: code in src/, assets, templates, tests, config.
    for (let m = 0; m < 200; m++) {
      const dir = join(root, 'modules/contrib', `mod${m}`);
      for (const sub of ['src/Plugin/Block', 'css', 'js', 'templates', 'config/install', 'tests/src/Functional']) {
        mkdirSync(join(dir, sub), { recursive: true });
      }
      writeFileSync(join(dir, `mod${m}.info.yml`), `name: Mod ${m}\ntype: module\nversion: '8.x-1.${m}'\n`);
      for (let f = 0; f < 99; f++) {
        const sub = ['src/Plugin/Block', 'css', 'js', 'templates', 'config/install', 'tests/src/Functional'][f % 6];
        writeFileSync(join(dir, sub!, `f${f}.txt`), 'x');
      }
    }
    const t0 = performance.now();
    const r = await scanPlatform(root);
    const ms = performance.now() - t0;
    console.log(`scanned 20k-file tree in ${ms.toFixed(0)} ms`);
    expect(r.modules.filter((x) => x.name.startsWith('mod'))).toHaveLength(200);
  });

  it('scans a 20,000-file Drupal 7 tree (where every directory is walked)', async () => {
    const root = tree(drupal7Tree());
    for (let m = 0; m < 400; m++) {
      const dir = join(root, 'sites/all/modules/contrib', `mod${m}`);
      for (let d = 0; d < 5; d++) mkdirSync(join(dir, `d${d}`, 'sub'), { recursive: true });
      writeFileSync(join(dir, `mod${m}.info`), `name = Mod ${m}\ncore = 7.x\nversion = "7.x-1.${m}"\n`);
      writeFileSync(join(dir, `mod${m}.module`), '<?php\n');
      writeFileSync(join(dir, `mod${m}.install`), `<?php\nfunction mod${m}_update_7001() {}\n`);
      for (let f = 0; f < 47; f++) writeFileSync(join(dir, `d${f % 5}`, f % 2 ? 'sub' : '', `f${f}.inc`), 'x');
    }
    const t0 = performance.now();
    const r = await scanPlatform(root);
    const ms = performance.now() - t0;
    console.log(`scanned 20k-file D7 tree in ${ms.toFixed(0)} ms`);
    expect(r.modules.filter((x) => x.name.startsWith('mod') && x.schemaVersion === 7001)).toHaveLength(400);
  });
});
