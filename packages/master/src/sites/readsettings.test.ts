import { describe, expect, it } from 'vitest';
import { expectCode } from '@spoke/shared/testkit';
import { readPhpLiterals, readSiteSettings, settingsFileOf } from './readsettings.js';
import { renderSiteFiles, wordpressKeys, type SiteFacts } from './settings.js';

const PW = 'Xy7-long-enough-password';

const D7_INSTALLER = `<?php

/**
 * @file
 * Drupal site-specific configuration file.
 *
 * $databases['default']['default'] = array(
 *   'database' => 'example_in_a_comment',
 * );
 */
# $databases = array('default' => array('default' => array('database' => 'hashed_out')));
// $drupal_hash_salt = 'commented';
$databases = array (
  'default' =>
  array (
    'default' =>
    array (
      'database' => 'd7site',
      'username' => 'd7user',
      'password' => '${PW}',
      'host' => 'db1.example.net',
      'port' => '',
      'driver' => 'mysql',
      'prefix' => '',
    ),
  ),
);
$update_free_access = FALSE;
$drupal_hash_salt = 'Zp0c1cS4t9mJjQ2s7JfV3bLxQeXh5aK2mN8uTyR6wE4';
ini_set('session.gc_probability', 1);
$conf['404_fast_paths_exclude'] = '/\\/(?:styles)|(?:system\\/files)\\//';
$cookie_domain = '.' . $_SERVER['HTTP_HOST'];
if (file_exists(DRUPAL_ROOT . '/sites/d7.test/local.settings.php')) {
  include DRUPAL_ROOT . '/sites/d7.test/local.settings.php';
}
`;

const D8 = `<?php
// phpcs:ignoreFile
$databases = [];
$settings['hash_salt'] = 'f2Wq9n0dR8uPz3sJxL5vKmY1cB7aE4tH6gQ0iO2wZ9';
$settings['update_free_access'] = FALSE;
$settings['container_yamls'][] = $app_root . '/' . $site_path . '/services.yml';
$settings['file_scan_ignore_directories'] = [
  'node_modules',
  'bower_components',
];
$databases['default']['default'] = [
  'database' => "d8site",
  'username' => 'd8user',
  'password' => '${PW.replace(/-/g, "\\'")}',
  'prefix' => '',
  'host' => '127.0.0.1',
  'port' => 3307,
  'isolation_level' => 'READ COMMITTED',
  'namespace' => 'Drupal\\\\mysql\\\\Driver\\\\Database\\\\mysql',
  'driver' => 'mysql',
  'autoload' => 'core/modules/mysql/src/Driver/Database/mysql/',
];
$settings['config_sync_directory'] = 'sites/default/files/config_' . 'abc/sync';
if (file_exists($app_root . '/' . $site_path . '/settings.local.php')) {
  include $app_root . '/' . $site_path . '/settings.local.php';
}
`;

const WP = `<?php
/**
 * The base configuration for WordPress
 */
// ** Database settings - You can get this info from your web host ** //
/** The name of the database for WordPress */
define( 'DB_NAME', 'wpold' );
define( 'DB_USER', 'wpold' );
define( 'DB_PASSWORD', '${PW}' );
define( 'DB_HOST', 'localhost:/run/mysqld/mysqld.sock' );
define( 'DB_CHARSET', 'utf8mb4' );
define( 'DB_COLLATE', '' );
define( 'AUTH_KEY',         'put your unique phrase here' );
define( 'UPLOADS', 'sites/old.test/files' );
$table_prefix = 'wp_';
define( 'WP_DEBUG', false );
if ( ! defined( 'ABSPATH' ) ) {
	define( 'ABSPATH', __DIR__ . '/' );
}
`;

describe('readPhpLiterals', () => {
  it('reads top-level literal assignments and defines; comments, calls and blocks do not count', () => {
    const p = readPhpLiterals(`<?php
$a = 'x' . "y\\n" . 'z';
$b['k']['l'] = array('one', 'two' => [1, -2, true, null]);
$c = some_call('q');
$d = "interpolated $a";
define('K', 'v'); define('K', 'second');
if ($x) { $e = 'in a block'; define('N', 'nested'); }
/* $f = 'comment'; */ ?>html <?php $g = 7;`);
    expect(p.vars.get('a')).toBe('xy\nz');
    expect([...p.vars.keys()].sort()).toEqual(['a', 'b', 'c', 'd', 'g']);
    expect(p.vars.get('g')).toBe(7);
    expect(p.consts.get('K')).toBe('v');
    expect([...p.nested].sort()).toEqual(['N', 'e']);
    const b = p.vars.get('b') as { get(k: string): unknown };
    const inner = (b.get('k') as { get(k: string): unknown }).get('l') as { get(k: string): unknown };
    expect([inner.get('0'), inner.get('1')]).toEqual(['one', undefined]);
    const two = inner.get('two') as { get(k: string): unknown };
    expect([two.get('0'), two.get('1'), two.get('2'), two.get('3')]).toEqual([1, -2, true, null]);
    expect(typeof p.vars.get('c')).toBe('object');
  });

  it('survives broken input: unterminated strings, stray brackets, no PHP at all', () => {
    for (const src of [
      "<?php $a = 'never closed",
      '<?php $a = array(1, 2',
      '<?php }}} $a = ]];',
      'no php here $databases = 1;',
      '\u0000\u0001binary',
      '<?php $x = <<<EOT\n$databases = 1;\nEOT;\n',
    ]) {
      expect(() => readPhpLiterals(src)).not.toThrow();
    }
    expect(readPhpLiterals('no php here $databases = 1;').vars.size).toBe(0);
    expect(readPhpLiterals('<?php $x = <<<EOT\n$databases = 1;\nEOT;\n').vars.has('databases')).toBe(false);
  });
});

describe('readSiteSettings', () => {
  it("Drupal 7 (the installer's nested array form): database, salt; the examples in comments are ignored", () => {
    const r = readSiteSettings('drupal7', 'd7.test', D7_INSTALLER);
    expect(r).toMatchObject({
      file: 'sites/d7.test/settings.php',
      db: { name: 'd7site', user: 'd7user', password: PW, host: 'db1.example.net', port: 3306 },
      socket: null,
      salt: 'Zp0c1cS4t9mJjQ2s7JfV3bLxQeXh5aK2mN8uTyR6wE4',
      prefix: '',
    });
  });

  it('Drupal 8+ (short arrays, escapes, an integer port, the include of settings.local.php ignored)', () => {
    const r = readSiteSettings('drupal8', 'd8.test', D8);
    expect(r.db).toEqual({ name: 'd8site', user: 'd8user', password: PW.replace(/-/g, "'"), host: '127.0.0.1', port: 3307 });
    expect(r.salt).toBe('f2Wq9n0dR8uPz3sJxL5vKmY1cB7aE4tH6gQ0iO2wZ9');
    expect(r.file).toBe(settingsFileOf('drupal8', 'd8.test'));
  });

  it('Drupal 8+ with the salt read from a file: kept out (a note), the database still read', () => {
    const r = readSiteSettings(
      'drupal8',
      'd8.test',
      D8.replace(/\$settings\['hash_salt'\] = '[^']+';/, "$settings['hash_salt'] = file_get_contents('/home/salt.txt');"),
    );
    expect(r.salt).toBeNull();
    expect(r.notes.join('\n')).toMatch(/hash salt \(\$settings\['hash_salt'\]\) is not a literal \(file_get_contents\('\/home\/salt\.txt'\)\)/);
  });

  it('Drupal 6 $db_url, %-escapes decoded', () => {
    const r = readSiteSettings(
      'drupal6',
      'd6.test',
      `<?php\n$db_url = 'mysqli://d6user:${encodeURIComponent('p@ss:word/with%chars')}@db.local:3308/d6site';\n$db_prefix = '';\n`,
    );
    expect(r.db).toEqual({ name: 'd6site', user: 'd6user', password: 'p@ss:word/with%chars', host: 'db.local', port: 3308 });
    const arr = readSiteSettings('drupal6', 'd6.test', `<?php\n$db_url['default'] = 'mysql://d6user:${PW}@localhost/d6site';\n`);
    expect(arr.db).toMatchObject({ host: 'localhost', port: 3306, name: 'd6site' });
  });

  it('WordPress: constants, a socket in DB_HOST, the prefix and UPLOADS', () => {
    const r = readSiteSettings('wordpress', 'old.test', WP);
    expect(r).toMatchObject({
      file: 'sites/old.test/wp-config.php',
      db: { name: 'wpold', user: 'wpold', password: PW, host: 'localhost', port: 3306 },
      socket: '/run/mysqld/mysqld.sock',
      prefix: 'wp_',
      uploads: 'sites/old.test/files',
      salt: null,
    });
    expect(r.notes).toEqual([]);
    const noUploads = readSiteSettings(
      'wordpress',
      'old.test',
      WP.replace(/define\( 'UPLOADS'.*\n/, '').replace('localhost:/run/mysqld/mysqld.sock', '10.0.0.5:3310'),
    );
    expect(noUploads.db).toMatchObject({ host: '10.0.0.5', port: 3310 });
    expect(noUploads.notes.join('\n')).toMatch(/UPLOADS is not defined/);
  });

  it("reads Spoke's own rendered settings back to the same facts (every kind)", () => {
    for (const kind of ['drupal6', 'drupal7', 'drupal8', 'wordpress'] as const) {
      const facts: SiteFacts = {
        domain: 'rt.test',
        aliases: ['www.rt.test'],
        kind,
        coreVersion: kind === 'drupal8' ? '10.2.0' : null,
        db: { name: 'rt_test', user: 'rt_test', password: `${PW}'\\x`, host: '10.1.2.3', port: 3307 },
        salt: 'S'.repeat(64),
      };
      const [file] = renderSiteFiles(facts);
      const r = readSiteSettings(kind, 'rt.test', file?.content ?? '');
      expect(r.db, kind).toEqual(facts.db);
      expect(r.salt, kind).toBe(kind === 'drupal7' || kind === 'drupal8' ? facts.salt : null);
      if (kind === 'wordpress') expect(readPhpLiterals(file?.content ?? '').consts.get('AUTH_KEY')).toBe(wordpressKeys(facts.salt).AUTH_KEY);
    }
  });

  it('refuses settings it cannot read, saying why', () => {
    const aegir = expectCode(() =>
      readSiteSettings(
        'drupal7',
        'a.test',
        `<?php\n$databases['default']['default'] = array(\n  'driver' => $_SERVER['db_type'],\n  'database' => $_SERVER['db_name'],\n  'username' => $_SERVER['db_user'],\n  'password' => $_SERVER['db_passwd'],\n  'host' => $_SERVER['db_host'],\n);\n`,
      ),
    );
    expect(aegir.code).toBe('SETTINGS_UNREADABLE');
    expect(aegir.message).toBe(
      "sites/a.test/settings.php: the database 'driver' is not a literal ($_SERVER['db_type']); the value comes from the environment (Aegir keeps database credentials in the vhost): write it into the settings file as a literal before the import",
    );
    const none = expectCode(() => readSiteSettings('drupal8', 'b.test', "<?php\n$settings['hash_salt'] = 'x';\n"));
    expect([none.code, none.message]).toEqual([
      'SETTINGS_UNREADABLE',
      "sites/b.test/settings.php sets no database ($databases['default']['default'] not found at the top level of the file); nothing to import",
    ]);
    const included = expectCode(() => readSiteSettings('drupal8', 'b.test', "<?php\ninclude '/etc/drupal/db.php';\n"));
    expect(included.message).toMatch(
      /not found at the top level of the file; the file includes \/etc\/drupal\/db\.php, which Spoke does not follow\); nothing to import$/,
    );
    const nested = expectCode(() => readSiteSettings('wordpress', 'c.test', `<?php\nif (getenv('X')) {\n  define('DB_NAME', 'x');\n}\n`));
    expect(nested.message).toBe(
      'sites/c.test/wp-config.php defines no database (DB_NAME not found at the top level of the file; DB_NAME is only defined inside a block (if/function), which Spoke does not evaluate); nothing to import',
    );
    const pg = expectCode(() => readSiteSettings('drupal7', 'd.test', D7_INSTALLER.replace("'driver' => 'mysql'", "'driver' => 'pgsql'")));
    expect(pg.message).toBe('sites/d.test/settings.php: the database driver is pgsql; Spoke manages MySQL/MariaDB databases only');
    const short = expectCode(() => readSiteSettings('wordpress', 'e.test', WP.replace(PW, 'secret')));
    expect(short.message).toMatch(
      /^sites\/e\.test\/wp-config\.php: the database password is not valid: use 16-128 .*change the password \(in the database and in the settings file\), then import again$/,
    );
    const badName = expectCode(() => readSiteSettings('wordpress', 'e.test', WP.replace("'DB_NAME', 'wpold'", "'DB_NAME', 'my-site'")));
    expect(badName.message).toMatch(/^sites\/e\.test\/wp-config\.php: database name "my-site" is not valid/);
    const env = expectCode(() => readSiteSettings('wordpress', 'e.test', WP.replace(`'${PW}'`, "getenv('DB_PASSWORD')")));
    expect(env.message).toMatch(
      /^sites\/e\.test\/wp-config\.php: DB_PASSWORD is not a literal \(getenv\('DB_PASSWORD'\)\); the value comes from the environment/,
    );
    const truncated = expectCode(() => readSiteSettings('drupal7', 'f.test', D7_INSTALLER.slice(0, D7_INSTALLER.indexOf("'password'"))));
    expect(truncated.code).toBe('SETTINGS_UNREADABLE');
    const binary = expectCode(() => readSiteSettings('drupal7', 'f.test', '\u0000\u0001\u0002'));
    expect(binary.message).toBe('sites/f.test/settings.php is not a text file');
    expect(expectCode(() => readSiteSettings('mediawiki', 'g.test', '<?php')).code).toBe('PLATFORM_KIND_UNSUPPORTED');
  });
});
