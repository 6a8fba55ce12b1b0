import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { expectCode } from '@spoke/shared/testkit';
import type { PlatformKind } from '../platforms/registry/detect.js';
import {
  PLATFORM_FILE_MODE,
  SETTINGS_MODE,
  WORDPRESS_KEYS,
  drupal6DbUrl,
  drupal8DriverEntries,
  newSiteSalt,
  phpString,
  renderPlatformSiteFiles,
  WP_LOGIN_PLUGIN,
  renderSiteFiles,
  settingsSupported,
  siteDir,
  staleSiteFiles,
  trustedHostPatterns,
  wordpressKeys,
  type SiteFacts,
  type SiteFile,
} from './settings.js';

const PHP = '/usr/bin/php';
const tmpRoots: string[] = [];
afterAll(() => {
  for (const d of tmpRoots) rmSync(d, { recursive: true, force: true });
});

function tmp(): string {
  const d = mkdtempSync(join(tmpdir(), 'spoke-settings-'));
  tmpRoots.push(d);
  return d;
}

/** A password with everything PHP and URLs care about (checkDbPassword: printable ASCII, no spaces). */
const HOSTILE_PASSWORD = `p'w\\d?>x$y{$z}"+z@:/#%<?php'\\`;
const SALT = 'aB3_-'.repeat(13);

function facts(over: Partial<SiteFacts> = {}): SiteFacts {
  return {
    domain: 'example.com',
    aliases: ['www.example.com', 'example.org'],
    kind: 'drupal8',
    coreVersion: '10.3.1',
    db: { name: 'example_com', user: 'example_com', password: HOSTILE_PASSWORD, host: 'db1.internal', port: 3307 },
    salt: SALT,
    ...over,
  };
}

/** Writes files into `root` (symlinks as symlinks). */
function writeTree(root: string, files: SiteFile[]): void {
  for (const f of files) {
    const abs = join(root, f.path);
    mkdirSync(dirname(abs), { recursive: true });
    if (f.kind === 'symlink') symlinkSync(f.target!, abs);
    else writeFileSync(abs, f.content, { mode: f.mode });
  }
}

function phpLint(content: string): void {
  const dir = tmp();
  const file = join(dir, 'lint.php');
  writeFileSync(file, content);
  const out = execFileSync(PHP, ['-n', '-l', file], { encoding: 'utf8' });
  expect(out).toContain('No syntax errors detected');
}

/** Runs a PHP script file; returns stdout, stderr and exit status. */
function php(args: string[], env: NodeJS.ProcessEnv = {}): { stdout: string; stderr: string; status: number | null } {
  const r = spawnSync(PHP, ['-n', ...args], { encoding: 'utf8', env: { PATH: process.env.PATH, ...env } });
  return { stdout: r.stdout, stderr: r.stderr, status: r.status };
}

/** Evaluates a PHP literal and returns what PHP holds (via base64, to see every byte). */
function phpValue(literal: string): string {
  const dir = tmp();
  const file = join(dir, 'v.php');
  writeFileSync(file, `<?php\n$v = ${literal};\necho base64_encode($v);\n`);
  const r = php([file]);
  expect(r.status).toBe(0);
  return Buffer.from(r.stdout, 'base64').toString('utf8');
}

describe('phpString', () => {
  it('escapes backslash and quote only', () => {
    expect(phpString('abc')).toBe("'abc'");
    expect(phpString("it's")).toBe("'it\\'s'");
    expect(phpString('a\\b')).toBe("'a\\\\b'");
    expect(phpString('')).toBe("''");
  });

  it('round-trips hostile values through real PHP', () => {
    const hostile = [
      "'",
      '\\',
      "\\'",
      'x\\',
      "'; system('id'); '",
      "');?><?php system('id'); //",
      '?>',
      '<?php echo 1; ?>',
      '$x {$x} ${x} "quoted"',
      '\\\\\\',
      "\\''\\",
      'é 😀 ü',
      '/* */ // #',
      HOSTILE_PASSWORD,
    ];
    for (const v of hostile) expect(phpValue(phpString(v))).toBe(v);
  });

  it('refuses control characters and lone surrogates', () => {
    for (const v of ['a\nb', 'a\rb', 'a\0b', 'a\tb', 'a\x7fb', '\x1b[0m', 'x\uD800y', '\uDC00']) {
      expectCode(() => phpString(v), 'UNSAFE_CONFIG_VALUE');
    }
    expectCode(() => phpString(42 as unknown as string), 'UNSAFE_CONFIG_VALUE');
  });

  it('names the character, never the value, in its error', () => {
    let message = '';
    try {
      phpString('secret\0value', 'database password');
    } catch (e) {
      message = (e as Error).message;
    }
    expect(message).toContain('database password');
    expect(message).toContain('U+0000');
    expect(message).not.toContain('secret');
  });
});

describe('checks before rendering', () => {
  it('supports drupal6/7/8 and wordpress only', () => {
    expect(['drupal6', 'drupal7', 'drupal8', 'wordpress'].every((k) => settingsSupported(k as PlatformKind))).toBe(true);
    expect(settingsSupported('mediawiki')).toBe(false);
    expect(settingsSupported('generic')).toBe(false);
    expect(renderSiteFiles(facts({ kind: 'mediawiki' }))).toEqual([]);
    expect(renderSiteFiles(facts({ kind: 'generic' }))).toEqual([]);
    expect(renderPlatformSiteFiles('mediawiki', [{ domain: 'a.org', aliases: [] }])).toEqual([]);
    expect(renderPlatformSiteFiles('generic', [])).toEqual([]);
  });

  it('refuses invalid domains and aliases', () => {
    for (const d of ['../../etc', 'Example.com', 'example.com.', "ex'ample.com", 'a b.com', 'example.com\n', '', 'a/b.com']) {
      expectCode(() => renderSiteFiles(facts({ domain: d })), 'INVALID_DOMAIN');
      expectCode(() => renderSiteFiles(facts({ aliases: [d] })), 'INVALID_DOMAIN');
      expectCode(() => renderPlatformSiteFiles('wordpress', [{ domain: 'a.org', aliases: [d] }]), 'INVALID_DOMAIN');
      expectCode(() => siteDir(d), 'INVALID_DOMAIN');
    }
  });

  it('refuses a name used twice', () => {
    expectCode(() => renderSiteFiles(facts({ aliases: ['example.com'] })), 'DOMAIN_TAKEN');
    expectCode(() => renderSiteFiles(facts({ aliases: ['www.example.com', 'www.example.com'] })), 'DOMAIN_TAKEN');
    expectCode(
      () =>
        renderPlatformSiteFiles('drupal7', [
          { domain: 'a.org', aliases: ['www.a.org'] },
          { domain: 'b.org', aliases: ['www.a.org'] },
        ]),
      'DOMAIN_TAKEN',
    );
    expectCode(
      () =>
        renderPlatformSiteFiles('drupal6', [
          { domain: 'a.org', aliases: ['b.org'] },
          { domain: 'b.org', aliases: [] },
        ]),
      'DOMAIN_TAKEN',
    );
  });

  it('refuses bad database fields, salts and profiles', () => {
    const db = facts().db;
    for (const bad of [
      { ...db, name: "x'; drop" },
      { ...db, name: 'mysql' },
      { ...db, user: 'root' },
      { ...db, password: 'short' },
      { ...db, password: 'has space in the password' },
      { ...db, password: 'line\nbreak-0123456789abcdef' },
      { ...db, host: "db'.x" },
      { ...db, host: 'db.x/../../' },
      { ...db, host: '' },
      { ...db, port: 0 },
      { ...db, port: 65536 },
      { ...db, port: 3306.5 },
    ]) {
      expectCode(() => renderSiteFiles(facts({ db: bad })), 'INVALID_ARGUMENT');
    }
    expectCode(() => renderSiteFiles(facts({ salt: 'short' })), 'INVALID_ARGUMENT');
    expectCode(() => renderSiteFiles(facts({ salt: `${SALT} with space` })), 'INVALID_ARGUMENT');
    expectCode(() => renderSiteFiles(facts({ kind: 'drupal7', profile: "standard'" })), 'INVALID_ARGUMENT');
    expectCode(() => renderSiteFiles(facts({ kind: 'bogus' as PlatformKind })), 'INVALID_ARGUMENT');
  });
});

describe('newSiteSalt', () => {
  it('is 64 url-safe characters and random', () => {
    const a = newSiteSalt();
    const b = newSiteSalt();
    expect(a).toMatch(/^[A-Za-z0-9_-]{64}$/);
    expect(a).not.toBe(b);
    expect(() => renderSiteFiles(facts({ salt: a }))).not.toThrow();
  });
});

describe('Drupal 6', () => {
  const site = facts({ kind: 'drupal6', coreVersion: '6.38', profile: 'default' });

  it('renders settings.php with $db_url and no $base_url', () => {
    const files = renderSiteFiles(site);
    expect(files).toHaveLength(1);
    const [f] = files;
    expect(f).toMatchObject({ path: 'sites/example.com/settings.php', mode: SETTINGS_MODE, webGroupReadable: true, kind: 'file' });
    expect(f!.content).toContain(`$db_url = 'mysqli://example_com:`);
    expect(f!.content).toContain(`@db1.internal:3307/example_com';`);
    expect(f!.content).toContain(`$db_prefix = '';`);
    expect(f!.content).toContain('$update_free_access = FALSE;');
    expect(f!.content).toContain(`$conf['file_directory_path'] = 'sites/example.com/files';`);
    expect(f!.content).toContain(`$conf['install_profile'] = 'default';`);
    expect(f!.content).not.toContain('$base_url');
    phpLint(f!.content);
  });

  it('encodes the URL so that Drupal 6 gets every part back', () => {
    const dir = tmp();
    writeTree(dir, renderSiteFiles(site));
    const runner = join(dir, 'run.php');
    // What database.mysqli.inc db_connect() does with $db_url.
    writeFileSync(
      runner,
      `<?php
require $argv[1];
$u = parse_url($db_url);
echo json_encode(array('scheme' => $u['scheme'], 'user' => urldecode($u['user']), 'pass' => urldecode($u['pass']),
  'host' => urldecode($u['host']), 'port' => $u['port'], 'db' => substr(urldecode($u['path']), 1), 'conf' => $conf));
`,
    );
    const r = php([runner, join(dir, 'sites/example.com/settings.php')]);
    expect(r.stderr).toBe('');
    expect(JSON.parse(r.stdout)).toEqual({
      scheme: 'mysqli',
      user: 'example_com',
      pass: HOSTILE_PASSWORD,
      host: 'db1.internal',
      port: 3307,
      db: 'example_com',
      conf: { file_directory_path: 'sites/example.com/files', install_profile: 'default' },
    });
    expect(drupal6DbUrl({ ...site.db, host: '::1' })).toContain('@[::1]:3307/');
  });

  it('renders aliases as relative symlinks sites/<alias> -> <domain>', () => {
    const files = renderPlatformSiteFiles('drupal6', [
      { domain: 'example.com', aliases: ['www.example.com', 'example.org'] },
      { domain: 'b.org', aliases: [] },
    ]);
    expect(files).toEqual([
      { path: 'sites/example.org', content: '', mode: 0o777, webGroupReadable: false, kind: 'symlink', target: 'example.com' },
      { path: 'sites/www.example.com', content: '', mode: 0o777, webGroupReadable: false, kind: 'symlink', target: 'example.com' },
    ]);
    const dir = tmp();
    writeTree(dir, [...renderSiteFiles(site), ...files]);
    // conf_path() finds sites/<alias>/settings.php through the link.
    const r = php(['-r', `require $argv[1]; echo $db_prefix === '' ? 'ok' : 'bad';`, join(dir, 'sites/www.example.com/settings.php')]);
    expect(r.stdout).toBe('ok');
  });
});

describe('Drupal 7', () => {
  const site = facts({ kind: 'drupal7', coreVersion: '7.98', profile: 'standard' });

  it('renders settings.php with $databases, $drupal_hash_salt and file paths', () => {
    const [f] = renderSiteFiles(site);
    expect(f).toMatchObject({ path: 'sites/example.com/settings.php', mode: 0o640, webGroupReadable: true });
    const c = f!.content;
    expect(c).toContain(`$databases['default']['default'] = array(`);
    expect(c).toContain(`  'driver' => 'mysql',`);
    expect(c).toContain(`  'password' => ${phpString(HOSTILE_PASSWORD)},`);
    expect(c).toContain(`  'port' => '3307',`);
    expect(c).toContain(`$drupal_hash_salt = '${SALT}';`);
    expect(c).toContain(`$conf['file_public_path'] = 'sites/example.com/files';`);
    expect(c).toContain(`$conf['file_private_path'] = DRUPAL_ROOT . '/sites/example.com/private';`);
    expect(c).toContain(`$conf['install_profile'] = 'standard';`);
    expect(c).not.toContain('$base_url');
    phpLint(c);
  });

  it('gives Drupal 7 the values when included', () => {
    const dir = tmp();
    writeTree(dir, renderSiteFiles(site));
    const r = php([
      '-r',
      `define('DRUPAL_ROOT', $argv[2]); require $argv[1]; echo json_encode(array('db' => $databases, 'salt' => $drupal_hash_salt, 'conf' => $conf, 'ufa' => $update_free_access));`,
      join(dir, 'sites/example.com/settings.php'),
      '/srv/platform',
    ]);
    expect(r.stderr).toBe('');
    expect(JSON.parse(r.stdout)).toEqual({
      db: {
        default: {
          default: {
            driver: 'mysql',
            database: 'example_com',
            username: 'example_com',
            password: HOSTILE_PASSWORD,
            host: 'db1.internal',
            port: '3307',
            prefix: '',
          },
        },
      },
      salt: SALT,
      conf: { file_public_path: 'sites/example.com/files', file_private_path: '/srv/platform/sites/example.com/private', install_profile: 'standard' },
      ufa: false,
    });
  });

  it('renders sites/sites.php for every alias of every site', () => {
    const files = renderPlatformSiteFiles('drupal7', [
      { domain: 'example.com', aliases: ['www.example.com', 'example.org'] },
      { domain: 'b.org', aliases: ['www.b.org'] },
      { domain: 'c.org', aliases: [] },
    ]);
    expect(files).toHaveLength(1);
    expect(files[0]).toMatchObject({ path: 'sites/sites.php', mode: PLATFORM_FILE_MODE, webGroupReadable: false, kind: 'file' });
    const c = files[0]!.content;
    expect(c).toContain(`$sites['example.org'] = 'example.com';`);
    expect(c).toContain(`$sites['www.b.org'] = 'b.org';`);
    expect(c).not.toContain('c.org');
    phpLint(c);
    const dir = tmp();
    writeTree(dir, files);
    const r = php(['-r', `$sites = array(); include $argv[1]; echo json_encode($sites);`, join(dir, 'sites/sites.php')]);
    expect(JSON.parse(r.stdout)).toEqual({ 'example.org': 'example.com', 'www.b.org': 'b.org', 'www.example.com': 'example.com' });
    // No site: a valid file mapping nothing.
    const empty = renderPlatformSiteFiles('drupal7', [])[0]!;
    phpLint(empty.content);
    writeTree(dir, [{ ...empty, path: 'empty.php' }]);
    expect(php(['-r', `include $argv[1]; echo json_encode($sites);`, join(dir, 'empty.php')]).stdout).toBe('[]');
  });
});

describe('Drupal 8+', () => {
  it('picks the driver namespace by core version', () => {
    const core = [['namespace', "'Drupal\\\\Core\\\\Database\\\\Driver\\\\mysql'"]];
    expect(drupal8DriverEntries('8.9.20')).toEqual(core);
    expect(drupal8DriverEntries('9.5.11')).toEqual(core);
    for (const v of ['10.0.0', '10.3.1', '11.1.0', '11.x-dev', null]) {
      expect(drupal8DriverEntries(v)).toEqual([
        ['namespace', "'Drupal\\\\mysql\\\\Driver\\\\Database\\\\mysql'"],
        ['autoload', "'core/modules/mysql/src/Driver/Database/mysql/'"],
        ['isolation_level', "'READ COMMITTED'"],
      ]);
    }
    expect(renderSiteFiles(facts({ coreVersion: '9.5.11' }))[0]!.content).toContain(`'namespace' => 'Drupal\\\\Core\\\\Database\\\\Driver\\\\mysql',`);
    expect(renderSiteFiles(facts({ coreVersion: '9.5.11' }))[0]!.content).not.toContain('autoload');
  });

  it('renders settings.php key lines', () => {
    const [f] = renderSiteFiles(facts({ profile: 'standard' }));
    expect(f).toMatchObject({ path: 'sites/example.com/settings.php', mode: 0o640, webGroupReadable: true });
    const c = f!.content;
    expect(c).toContain(`$databases['default']['default'] = [`);
    expect(c).toContain(`  'namespace' => 'Drupal\\\\mysql\\\\Driver\\\\Database\\\\mysql',`);
    expect(c).toContain(`$settings['hash_salt'] = '${SALT}';`);
    expect(c).toContain(`  '^www\\\\.example\\\\.com$',`);
    expect(c).toContain(`$settings['config_sync_directory'] = $app_root . '/sites/example.com/private/config/sync';`);
    expect(c).toContain(`$settings['file_public_path'] = 'sites/example.com/files';`);
    expect(c).toContain(`$settings['file_private_path'] = $app_root . '/sites/example.com/private';`);
    // The profile lives in config on 8+: not written.
    expect(c).not.toContain('install_profile');
    for (const v of ['8.9.20', '9.5.11', '10.3.1', null]) phpLint(renderSiteFiles(facts({ coreVersion: v }))[0]!.content);
  });

  it('gives Drupal the values when included the way Settings::initialize() does', () => {
    const dir = tmp();
    const files = [
      ...renderSiteFiles(facts()),
      ...renderPlatformSiteFiles('drupal8', [{ domain: 'example.com', aliases: ['www.example.com', 'example.org'] }]),
    ];
    writeTree(dir, files);
    writeFileSync(join(dir, 'sites/example.com/local.settings.php'), "<?php\n$settings['local_marker'] = 'yes';\n");
    const runner = join(dir, 'run.php');
    writeFileSync(
      runner,
      `<?php
function load($app_root, $site_path) {
  $settings = [];
  $databases = [];
  $class_loader = null;
  require $app_root . '/' . $site_path . '/settings.php';
  $sites = [];
  include $app_root . '/sites/sites.php';
  $trusted = [];
  foreach (['example.com', 'www.example.com', 'EXAMPLE.ORG', 'evil.com', 'example.com.evil.com', 'wwwxexample.com', 'xexample.com', "example.com\\n"] as $h) {
    // Symfony Request::isTrustedHost(): sprintf('{%s}i', $pattern).
    $ok = false;
    foreach ($settings['trusted_host_patterns'] as $p) { if (preg_match('{' . $p . '}i', $h)) { $ok = true; } }
    $trusted[$h] = $ok;
  }
  return ['databases' => $databases, 'settings' => $settings, 'sites' => $sites, 'trusted' => $trusted];
}
echo json_encode(load($argv[1], 'sites/example.com'));
`,
    );
    const r = php([runner, dir]);
    expect(r.stderr).toBe('');
    const out = JSON.parse(r.stdout);
    expect(out.databases.default.default).toEqual({
      driver: 'mysql',
      database: 'example_com',
      username: 'example_com',
      password: HOSTILE_PASSWORD,
      host: 'db1.internal',
      port: '3307',
      prefix: '',
      namespace: 'Drupal\\mysql\\Driver\\Database\\mysql',
      autoload: 'core/modules/mysql/src/Driver/Database/mysql/',
      isolation_level: 'READ COMMITTED',
    });
    expect(out.settings).toMatchObject({
      hash_salt: SALT,
      update_free_access: false,
      file_public_path: 'sites/example.com/files',
      file_private_path: `${dir}/sites/example.com/private`,
      config_sync_directory: `${dir}/sites/example.com/private/config/sync`,
      container_yamls: [`${dir}/sites/example.com/services.yml`],
      local_marker: 'yes',
    });
    expect(out.sites).toEqual({ 'www.example.com': 'example.com', 'example.org': 'example.com' });
    expect(out.trusted).toEqual({
      'example.com': true,
      'www.example.com': true,
      'EXAMPLE.ORG': true,
      'evil.com': false,
      'example.com.evil.com': false,
      'wwwxexample.com': false,
      'xexample.com': false,
      // `$` matches before a final newline in PCRE; Symfony rejects such hosts before matching.
      'example.com\n': true,
    });
  });

  it('anchors and escapes trusted host patterns', () => {
    expect(trustedHostPatterns({ domain: 'a-b.example.com', aliases: ['x.org'] })).toEqual(['^a\\-b\\.example\\.com$', '^x\\.org$']);
  });
});

describe('WordPress', () => {
  const site = facts({ kind: 'wordpress', coreVersion: '6.4.2' });
  const other = facts({
    kind: 'wordpress',
    coreVersion: '6.4.2',
    domain: 'blog.b.org',
    aliases: [],
    db: { name: 'blog_b_org', user: 'blog_b_org', password: 'another-password-0123456789', host: '10.0.0.5', port: 3306 },
    salt: newSiteSalt(),
  });
  const platformNames = [
    { domain: site.domain, aliases: site.aliases },
    { domain: other.domain, aliases: other.aliases },
  ];

  it('renders the per-site wp-config.php', () => {
    const [f] = renderSiteFiles(site);
    expect(f).toMatchObject({ path: 'sites/example.com/wp-config.php', mode: 0o640, webGroupReadable: true, kind: 'file' });
    const c = f!.content;
    expect(c).toContain(`define('DB_NAME', 'example_com');`);
    expect(c).toContain(`define('DB_USER', 'example_com');`);
    expect(c).toContain(`define('DB_PASSWORD', ${phpString(HOSTILE_PASSWORD)});`);
    expect(c).toContain(`define('DB_HOST', 'db1.internal:3307');`);
    expect(c).toContain(`define('DB_CHARSET', 'utf8mb4');`);
    expect(c).toContain(`$table_prefix = 'wp_';`);
    expect(c).toContain(`define('WP_HOME', 'http://example.com');`);
    expect(c).toContain(`define('WP_SITEURL', 'http://example.com');`);
    expect(c).toContain(`define('UPLOADS', 'sites/example.com/files');`);
    for (const k of WORDPRESS_KEYS) expect(c).toMatch(new RegExp(`define\\('${k}', '[A-Za-z0-9_-]{86}'\\);`));
    expect(c).not.toContain('wp-settings.php');
    phpLint(c);
    expect(renderSiteFiles({ ...site, db: { ...site.db, host: '::1' } })[0]!.content).toContain(`define('DB_HOST', '[::1]:3307');`);
  });

  it('derives stable, distinct keys from the salt', () => {
    const a = wordpressKeys(SALT);
    expect(wordpressKeys(SALT)).toEqual(a);
    expect(new Set(Object.values(a)).size).toBe(8);
    const b = wordpressKeys(newSiteSalt());
    for (const k of WORDPRESS_KEYS) expect(b[k]).not.toBe(a[k]);
    expect(renderSiteFiles(site)).toEqual(renderSiteFiles(site));
  });

  it('renders the dispatcher, sites/hosts.php and the one-time login plugin', () => {
    const files = renderPlatformSiteFiles('wordpress', platformNames);
    expect(files.map((f) => [f.path, f.mode, f.webGroupReadable])).toEqual([
      ['wp-config.php', 0o644, false],
      ['sites/hosts.php', 0o644, false],
      ['wp-content/mu-plugins/spoke-login.php', 0o644, false],
    ]);
    expect(files[2]!.content).toBe(WP_LOGIN_PLUGIN);
    const [dispatcher, hosts] = files;
    expect(hosts!.content).toContain(`  'example.com' => 'example.com',`);
    expect(hosts!.content).toContain(`  'www.example.com' => 'example.com',`);
    expect(hosts!.content).toContain(`  'example.org' => 'example.com',`);
    expect(hosts!.content).toContain(`  'blog.b.org' => 'blog.b.org',`);
    // WP-CLI drops the lines matching this pattern and evaluates the rest: only the last one may match.
    const lines = dispatcher!.content.split('\n');
    const settingsLines = lines.map((l, i) => [l, i] as const).filter(([l]) => /^\s*require.+wp-settings\.php/.test(l));
    expect(settingsLines).toEqual([["require_once ABSPATH . 'wp-settings.php';", lines.length - 2]]);
    phpLint(dispatcher!.content);
    phpLint(hosts!.content);
    phpLint(renderPlatformSiteFiles('wordpress', [])[1]!.content);
  });

  /** A WordPress platform in a temp dir: dispatcher, hosts.php, two sites, a stub wp-settings.php. */
  function platform(): string {
    const dir = tmp();
    writeTree(dir, [...renderPlatformSiteFiles('wordpress', platformNames), ...renderSiteFiles(site), ...renderSiteFiles(other)]);
    writeFileSync(
      join(dir, 'wp-settings.php'),
      `<?php
echo json_encode(array('site' => SPOKE_SITE_DOMAIN, 'DB_NAME' => DB_NAME, 'DB_PASSWORD' => DB_PASSWORD, 'DB_HOST' => DB_HOST,
  'UPLOADS' => UPLOADS, 'ABSPATH' => ABSPATH, 'WP_CONTENT_DIR' => WP_CONTENT_DIR, 'WP_HOME' => WP_HOME,
  'DISALLOW_FILE_MODS' => DISALLOW_FILE_MODS, 'table_prefix' => $GLOBALS['table_prefix'], 'AUTH_KEY' => AUTH_KEY));
`,
    );
    // What WordPress's index.php -> wp-blog-header.php -> wp-load.php do, at global scope.
    writeFileSync(join(dir, 'index.php'), `<?php\ndefine('ABSPATH', __DIR__ . '/');\nrequire_once ABSPATH . 'wp-config.php';\n`);
    // A CLI runner: sets $_SERVER from the JSON argument, then loads the site.
    writeFileSync(join(dir, 'cli.php'), `<?php\nforeach (json_decode($argv[1], true) as $k => $v) { $_SERVER[$k] = $v; }\nrequire __DIR__ . '/index.php';\n`);
    return dir;
  }

  const cli = (dir: string, server: Record<string, string>, env: Record<string, string> = {}) => php([join(dir, 'cli.php'), JSON.stringify(server)], env);

  it('loads the site of the request host, an alias, a host with port and case', () => {
    const dir = platform();
    const keys = wordpressKeys(SALT);
    for (const host of ['example.com', 'www.example.com', 'EXAMPLE.org', 'www.example.com:8080', 'example.com.']) {
      const r = cli(dir, { HTTP_HOST: host });
      expect(r.stderr, host).toBe('');
      expect(r.status, host).toBe(0);
      expect(JSON.parse(r.stdout), host).toEqual({
        site: 'example.com',
        DB_NAME: 'example_com',
        DB_PASSWORD: HOSTILE_PASSWORD,
        DB_HOST: 'db1.internal:3307',
        UPLOADS: 'sites/example.com/files',
        ABSPATH: `${dir}/`,
        WP_CONTENT_DIR: `${dir}/wp-content`,
        WP_HOME: 'http://example.com',
        DISALLOW_FILE_MODS: true,
        table_prefix: 'wp_',
        AUTH_KEY: keys.AUTH_KEY,
      });
    }
    expect(JSON.parse(cli(dir, { HTTP_HOST: 'blog.b.org' }).stdout)).toMatchObject({ site: 'blog.b.org', DB_NAME: 'blog_b_org', DB_HOST: '10.0.0.5:3306' });
  });

  it('refuses unknown and hostile hosts without loading anything', () => {
    const dir = platform();
    // A decoy: what a path traversal would reach if the name were used as a path.
    mkdirSync(join(dir, 'etc'), { recursive: true });
    writeFileSync(join(dir, 'etc/wp-config.php'), "<?php echo 'DECOY';");
    for (const host of [
      'unknown.org',
      'b.org',
      '../../etc',
      '..',
      'etc',
      'example.com/../../etc',
      'example.com\n',
      'example.com\0',
      "example.com'",
      'example.com:80:80',
      '[::1]:80',
      '',
      'x'.repeat(300),
    ]) {
      const r = cli(dir, { HTTP_HOST: host });
      expect(r.status, JSON.stringify(host)).toBe(1);
      expect(r.stdout, JSON.stringify(host)).toBe('');
      expect(r.stderr).toContain('Spoke: no WordPress site of this platform answers to this name');
      expect(r.stderr).not.toContain(dir);
    }
  });

  it('takes SPOKE_SITE from the environment or $_SERVER when there is no host (WP-CLI, cron)', () => {
    const dir = platform();
    expect(JSON.parse(cli(dir, {}, { SPOKE_SITE: 'www.example.com' }).stdout).site).toBe('example.com');
    expect(JSON.parse(cli(dir, { SPOKE_SITE: 'blog.b.org' }).stdout).site).toBe('blog.b.org');
    // The override wins over the host (it comes from the server config or the operator, never the client).
    expect(JSON.parse(cli(dir, { HTTP_HOST: 'example.com' }, { SPOKE_SITE: 'blog.b.org' }).stdout).site).toBe('blog.b.org');
    const none = cli(dir, {});
    expect(none.status).toBe(1);
    expect(none.stderr).toContain('set SPOKE_SITE=<domain>');
    const bad = cli(dir, {}, { SPOKE_SITE: '../../etc' });
    expect(bad.status).toBe(1);
    expect(bad.stdout).toBe('');
  });

  it('works the way WP-CLI loads it (wp-settings.php line dropped, __DIR__ replaced, eval in a method)', () => {
    const dir = platform();
    // Follows WP_CLI\Runner::get_wp_config_code() and load_wordpress().
    writeFileSync(
      join(dir, 'wpcli.php'),
      `<?php
define('ABSPATH', __DIR__ . '/');
$_SERVER['HTTP_HOST'] = $argv[1];
class Runner {
  public function code($path) {
    $found = 0; $lines = array();
    foreach (explode("\\n", file_get_contents($path)) as $line) {
      if (preg_match('/^\\s*require.+wp-settings\\.php/', $line)) { $found++; continue; }
      $lines[] = $line;
    }
    if ($found !== 1) { fwrite(STDERR, "found $found wp-settings lines\\n"); exit(2); }
    $source = implode("\\n", $lines);
    $source = preg_replace(array('/\\b__FILE__\\b/', '/\\b__DIR__\\b/'), array(var_export($path, true), var_export(dirname($path), true)), $source);
    return preg_replace('|^\\s*\\<\\?php\\s*|', '', $source);
  }
  public function load() {
    eval($this->code(ABSPATH . 'wp-config.php'));
    echo json_encode(array('site' => SPOKE_SITE_DOMAIN, 'DB_NAME' => DB_NAME, 'UPLOADS' => UPLOADS, 'prefix' => $table_prefix,
      'settings_loaded' => function_exists('wp_settings_marker')));
  }
}
(new Runner())->load();
`,
    );
    const r = php([join(dir, 'wpcli.php'), 'www.example.com']);
    expect(r.stderr).toBe('');
    expect(JSON.parse(r.stdout)).toEqual({
      site: 'example.com',
      DB_NAME: 'example_com',
      UPLOADS: 'sites/example.com/files',
      prefix: 'wp_',
      settings_loaded: false,
    });
  });

  it('answers over HTTP (PHP built-in server): site, alias, 404 for unknown and hostile hosts', async () => {
    const dir = platform();
    const port = await freePort();
    const server = spawn(PHP, ['-n', '-S', `127.0.0.1:${port}`, '-t', dir], { stdio: ['ignore', 'pipe', 'pipe'] });
    try {
      await waitForPort(port);
      const get = (host: string) =>
        new Promise<{ status: number; body: string }>((resolve, reject) => {
          const req = request({ host: '127.0.0.1', port, path: '/index.php', headers: { Host: host } }, (res) => {
            let body = '';
            res.setEncoding('utf8');
            res.on('data', (c: string) => (body += c));
            res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
          });
          req.on('error', reject);
          req.end();
        });
      const ok = await get('www.example.com');
      expect(ok.status).toBe(200);
      expect(JSON.parse(ok.body)).toMatchObject({ site: 'example.com', DB_NAME: 'example_com', UPLOADS: 'sites/example.com/files' });
      expect(JSON.parse((await get('blog.b.org:8080')).body)).toMatchObject({ site: 'blog.b.org' });
      for (const host of ['unknown.org', '../../etc', 'example.com..', 'exa_mple.com']) {
        const r = await get(host);
        expect(r.status, host).toBe(404);
        expect(r.body, host).toBe('Site not found.\n');
      }
    } finally {
      server.kill('SIGTERM');
    }
  });
});

describe('staleSiteFiles', () => {
  it('lists what a re-render no longer produces', () => {
    const before = renderPlatformSiteFiles('drupal6', [{ domain: 'a.org', aliases: ['www.a.org', 'old.a.org'] }]);
    const after = renderPlatformSiteFiles('drupal6', [{ domain: 'a.org', aliases: ['www.a.org'] }]);
    expect(staleSiteFiles(before, after)).toEqual(['sites/old.a.org']);
    expect(staleSiteFiles(after, before)).toEqual([]);
  });
});

describe('every rendered PHP file', () => {
  it('passes php -l for every kind and edge values', () => {
    const variants: Partial<SiteFacts>[] = [
      {},
      { aliases: [] },
      { domain: 'a.b', aliases: ['xn--bcher-kva.example'] },
      { db: { name: 'a', user: 'b', password: "\\'\\'\\'\\'\\'\\'\\'\\'", host: '::1', port: 1 } },
      { salt: newSiteSalt(), profile: 'minimal' },
    ];
    let n = 0;
    for (const kind of ['drupal6', 'drupal7', 'drupal8', 'wordpress'] as const) {
      for (const v of variants) {
        const f = facts({ ...v, kind });
        for (const file of [...renderSiteFiles(f), ...renderPlatformSiteFiles(kind, [f])]) {
          if (file.kind === 'symlink') continue;
          phpLint(file.content);
          n++;
        }
      }
    }
    expect(n).toBeGreaterThanOrEqual(30);
  });
});

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.listen(0, '127.0.0.1', () => {
      const a = s.address();
      s.close(() => (typeof a === 'object' && a ? resolve(a.port) : reject(new Error('no port'))));
    });
  });
}

async function waitForPort(port: number): Promise<void> {
  const { connect } = await import('node:net');
  for (let i = 0; i < 100; i++) {
    const ok = await new Promise<boolean>((resolve) => {
      const c = connect(port, '127.0.0.1', () => {
        c.end();
        resolve(true);
      });
      c.on('error', () => resolve(false));
    });
    if (ok) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`php -S did not listen on ${port}`);
}
