import { existsSync, readFileSync } from 'node:fs';
import { afterAll, describe, expect, it } from 'vitest';
import { diffRegistries } from './diff.js';
import { wordpressTree } from './fixtures.js';
import { wpHeader } from './addons.js';
import { scanPlatform } from './registry.js';
import { makeTree, type TreeSpec } from './testTree.js';

const cleanups: Array<() => void> = [];
afterAll(() => cleanups.forEach((c) => c()));
function tree(spec: TreeSpec): string {
  const t = makeTree(spec);
  cleanups.push(t.cleanup);
  return t.root;
}

const mediawikiTree = (extra: TreeSpec): TreeSpec => ({
  'index.php': '<?php\n',
  'api.php': '<?php\n',
  'includes/Defines.php': "<?php\ndefine( 'MW_VERSION', '1.39.5' );\n",
  'includes/DefaultSettings.php': '<?php\n$wgVersion = MW_VERSION;\n',
  ...extra,
});

const plugin = (name: string, version: string) => `<?php\n/**\n * Plugin Name: ${name}\n * Version:     ${version} */\n`;

describe('WordPress plugin and theme headers', () => {
  it('reads header fields as get_file_data does', () => {
    expect(wpHeader('<?php\n/*\nPlugin Name: Hello Dolly\nVersion: 1.7.2\n*/', 'Plugin Name')).toBe('Hello Dolly');
    expect(wpHeader('<?php /* Plugin Name: One line */', 'Plugin Name')).toBe('One line');
    expect(wpHeader('/*\nTheme Name: Twenty Twenty\r\nVersion: 2.1\r\n*/', 'Version')).toBe('2.1');
    expect(wpHeader(' * @version 3 \n', 'Version')).toBeNull();
    expect(wpHeader('Plugin Name:   \n', 'Plugin Name')).toBeNull();
  });
});

describe('registry of WordPress and MediaWiki platforms', () => {
  it('WordPress: plugins (dir and single file), must-use plugins and themes with versions; files without a header are not plugins', async () => {
    const r = await scanPlatform(
      tree({
        ...wordpressTree('6.4.2'),
        'wp-content/plugins/akismet/akismet.php': plugin('Akismet Anti-Spam', '5.0.2'),
        'wp-content/plugins/akismet/class.akismet.php': '<?php class Akismet {}\n',
        'wp-content/plugins/hello.php': plugin('Hello Dolly', '1.7.2'),
        'wp-content/plugins/index.php': '<?php // Silence is golden.\n',
        'wp-content/plugins/empty/readme.txt': 'no php here',
        'wp-content/mu-plugins/spoke-login.php': plugin('Spoke login', '1'),
        'wp-content/themes/twentytwentythree/style.css': '/*\nTheme Name: Twenty Twenty-Three\nVersion: 1.2\n*/\nbody {}\n',
        'wp-content/themes/broken/style.css': 'body {}\n',
      }),
    );
    expect(r.modules.map((m) => [m.name, m.type, m.humanName, m.version, m.path])).toEqual([
      ['akismet', 'plugin', 'Akismet Anti-Spam', '5.0.2', 'wp-content/plugins/akismet'],
      ['hello', 'plugin', 'Hello Dolly', '1.7.2', 'wp-content/plugins/hello.php'],
      ['spoke-login', 'mu-plugin', 'Spoke login', '1', 'wp-content/mu-plugins/spoke-login.php'],
    ]);
    expect(r.themes.map((m) => [m.name, m.type, m.humanName, m.version])).toEqual([['twentytwentythree', 'theme', 'Twenty Twenty-Three', '1.2']]);
    expect(r.problems).toEqual([{ path: 'wp-content/themes/broken/style.css', error: expect.stringContaining('no "Theme Name:" header') }]);
  });

  it('MediaWiki: extensions and skins from extension.json/skin.json; an old-style one without a version; broken JSON a problem', async () => {
    const r = await scanPlatform(
      tree(
        mediawikiTree({
          'extensions/Cite/extension.json': JSON.stringify({ name: 'Cite', version: '1.0.0', manifest_version: 2 }),
          'extensions/OldStyle/OldStyle.php': '<?php\n',
          'extensions/Broken/extension.json': '{ nope',
          'skins/Vector/skin.json': JSON.stringify({ name: 'Vector', version: '1.0.0' }),
          'skins/README': 'not a skin',
        }),
      ),
    );
    expect(r.kind).toBe('mediawiki');
    expect(r.modules.map((m) => [m.name, m.type, m.version])).toEqual([
      ['Cite', 'extension', '1.0.0'],
      ['OldStyle', 'extension', null],
    ]);
    expect(r.themes.map((m) => [m.name, m.type, m.version])).toEqual([['Vector', 'skin', '1.0.0']]);
    expect(r.problems).toEqual([{ path: 'extensions/Broken/extension.json', error: expect.stringMatching(/^invalid JSON/) }]);
  });

  it('platform diff between two WordPress platforms: plugin and theme upgrades, missing and added', async () => {
    const a = await scanPlatform(
      tree({
        ...wordpressTree('6.1.9'),
        'wp-content/plugins/akismet/akismet.php': plugin('Akismet Anti-Spam', '5.0.2'),
        'wp-content/plugins/hello.php': plugin('Hello Dolly', '1.7.2'),
        'wp-content/themes/t/style.css': 'Theme Name: T\nVersion: 1.0\n',
      }),
    );
    const b = await scanPlatform(
      tree({
        ...wordpressTree('6.4.2'),
        'wp-content/plugins/akismet/akismet.php': plugin('Akismet Anti-Spam', '5.3'),
        'wp-content/plugins/new/new.php': plugin('New', '0.1'),
        'wp-content/themes/t/style.css': 'Theme Name: T\nVersion: 0.9\n',
      }),
    );
    const d = diffRegistries(a, b);
    expect(d.modules.map((e) => [e.name, e.type, e.from, e.to, e.status])).toEqual([
      ['akismet', 'plugin', '5.0.2', '5.3', 'upgrade'],
      ['hello', 'plugin', '1.7.2', null, 'missing'],
      ['new', 'plugin', null, '0.1', 'added'],
    ]);
    expect(d.themes.map((e) => [e.name, e.status])).toEqual([['t', 'downgrade']]);
    expect(d.core.status).toBe('upgrade');
  });

  it.skipIf(!existsSync('/usr/share/wordpress/wp-content/plugins/akismet/akismet.php'))(
    "Debian's WordPress: akismet with the version its header says",
    async () => {
      const r = await scanPlatform('/usr/share/wordpress');
      const want = /^\s*\*?\s*Version:\s*(\S+)/m.exec(readFileSync('/usr/share/wordpress/wp-content/plugins/akismet/akismet.php', 'utf8'))?.[1];
      expect(r.modules.find((m) => m.name === 'akismet')).toMatchObject({ type: 'plugin', humanName: 'Akismet Anti-Spam', version: want });
    },
  );

  it.skipIf(!existsSync('/usr/share/mediawiki/skins/Vector/skin.json'))("Debian's MediaWiki: its bundled extensions and skins", async () => {
    const r = await scanPlatform('/usr/share/mediawiki');
    expect(r.kind).toBe('mediawiki');
    const vector = JSON.parse(readFileSync('/usr/share/mediawiki/skins/Vector/skin.json', 'utf8')) as { version?: string };
    expect(r.themes.find((t) => t.name === 'Vector')).toMatchObject({ type: 'skin', version: vector.version ?? null });
    expect(r.modules.map((m) => m.name)).toContain('Cite');
  });
});
