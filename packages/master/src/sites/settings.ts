/**
 * Site settings rendering, the pure part: from a site's stored facts (and, for the platform-level
 * files, the list of every site of the platform) to the files the master writes into its platform
 * tree. No file system, no environment; `newSiteSalt` is the only function using randomness.
 *
 * Per kind (see docs/sites.md):
 * - Drupal 6: `sites/<domain>/settings.php` (`$db_url`); aliases are symlinks `sites/<alias>` →
 *   `<domain>` (Drupal 6 has no sites.php).
 * - Drupal 7: `sites/<domain>/settings.php` (`$databases`, `$drupal_hash_salt`, file paths);
 *   aliases in `sites/sites.php`.
 * - Drupal 8+: `sites/<domain>/settings.php` (`$databases` with the driver namespace of the core
 *   version, `$settings['hash_salt']`, `trusted_host_patterns`, `config_sync_directory`, file
 *   paths); aliases in `sites/sites.php`.
 * - WordPress: the platform's `wp-config.php` is Spoke's dispatcher, which maps the request host
 *   through `sites/hosts.php` to `sites/<domain>/wp-config.php` (DB constants, keys and salts,
 *   `WP_HOME`/`WP_SITEURL`, `UPLOADS`).
 * - MediaWiki, generic: nothing (see `settingsSupported`).
 *
 * Every value that reaches PHP goes through `phpString` (a single-quoted literal); domains and
 * aliases are checked with `checkDomain` first, database fields with the shared db checks.
 */
import { createHmac, randomBytes } from 'node:crypto';
import { checkDbName, checkDbPassword, checkDbUser, checkDomain, fail } from '@spoke/shared';
import type { PlatformKind } from '../platforms/registry/detect.js';

/** A site's database connection as the site's code sees it. */
export interface SiteDb {
  name: string;
  user: string;
  password: string;
  /** Host name, IPv4 or IPv6 address of the database server as the web servers reach it. */
  host: string;
  port: number;
}

/** What the master stores about a site, enough to render its files. */
export interface SiteFacts {
  domain: string;
  aliases: string[];
  /** The platform's kind. */
  kind: PlatformKind;
  /** The platform's core version (Drupal 8+: picks the database driver namespace). */
  coreVersion: string | null;
  db: SiteDb;
  /** Random secret from `newSiteSalt`, stored by the master (32-512 printable ASCII characters). */
  salt: string;
  /** Drupal install profile (machine name); written for Drupal 6/7 only (8+ keeps it in config). */
  profile?: string;
  /**
   * The site is served over HTTPS (`spoke site https`): WordPress gets https `WP_HOME`/`WP_SITEURL`
   * and `FORCE_SSL_ADMIN`, so logins do not loop. Drupal needs nothing: the vhost passes
   * `HTTPS=on` (nginx `$https`, apache mod_ssl) and Drupal builds its URLs from it.
   */
  https?: boolean;
}

/** One file (or symlink) the master writes into its platform tree. */
export interface SiteFile {
  /** Relative to the platform root, POSIX separators. */
  path: string;
  /** File content; '' for symlinks. */
  content: string;
  /** 0o640 for settings files, 0o644 for platform-level files, 0o777 for symlinks (ignored). */
  mode: number;
  /** True when the web group must be able to read the file (settings carrying the DB password). */
  webGroupReadable: boolean;
  /** Absent means 'file'. */
  kind?: 'file' | 'symlink';
  /** Symlinks only: the link target, relative to the link's directory. */
  target?: string;
}

/** A site's name and aliases, as the platform-level files need them. */
export interface SiteNames {
  domain: string;
  aliases: string[];
}

/** Mode of settings files (they carry the database password). */
export const SETTINGS_MODE = 0o640;
/** Mode of platform-level files (sites.php, hosts.php, the WordPress dispatcher). */
export const PLATFORM_FILE_MODE = 0o644;
/** The file a site's settings include last when it exists, for local additions (Drupal). */
export const DRUPAL_LOCAL_SETTINGS = 'local.settings.php';
/** The file a WordPress site's config includes last when it exists, for local additions. */
export const WORDPRESS_LOCAL_CONFIG = 'local-wp-config.php';
/** WordPress keys and salts, in wp-config-sample.php order. */
export const WORDPRESS_KEYS = [
  'AUTH_KEY',
  'SECURE_AUTH_KEY',
  'LOGGED_IN_KEY',
  'NONCE_KEY',
  'AUTH_SALT',
  'SECURE_AUTH_SALT',
  'LOGGED_IN_SALT',
  'NONCE_SALT',
] as const;

const SUPPORTED: ReadonlySet<PlatformKind> = new Set<PlatformKind>(['drupal6', 'drupal7', 'drupal8', 'wordpress']);

/** True for kinds whose settings Spoke renders (drupal6, drupal7, drupal8, wordpress). */
export function settingsSupported(kind: PlatformKind): boolean {
  return SUPPORTED.has(kind);
}

/** The site directory of a domain relative to the platform root: `sites/<domain>`. @throws SpokeError INVALID_DOMAIN */
export function siteDir(domain: string): string {
  return `sites/${checkDomain(domain)}`;
}

/** A new site salt: 48 random bytes, base64url (64 characters). */
export function newSiteSalt(): string {
  return randomBytes(48).toString('base64url');
}

// eslint-disable-next-line no-control-regex
const PHP_UNSAFE = /[\x00-\x1f\x7f]|[\uD800-\uDFFF]/u;

/**
 * A PHP single-quoted string literal for `s`, quotes included: `\` becomes `\\` and `'` becomes
 * `\'`, so nothing else in the value means anything to PHP (`?>`, `$`, `"` are plain text inside
 * a single-quoted string). Control characters (NUL, newlines, tab, DEL) and lone surrogates are
 * refused: no setting needs them and they would corrupt the file or hide content.
 * @throws SpokeError UNSAFE_CONFIG_VALUE
 */
export function phpString(s: string, what = 'value'): string {
  if (typeof s !== 'string') throw fail('UNSAFE_CONFIG_VALUE', `${what} is not a string`);
  const m = PHP_UNSAFE.exec(s);
  if (m) {
    const code = m[0].codePointAt(0) ?? 0;
    throw fail(
      'UNSAFE_CONFIG_VALUE',
      `${what} contains the character U+${code.toString(16).toUpperCase().padStart(4, '0')}, which cannot go into a settings file`,
    );
  }
  return `'${s.replace(/\\/g, '\\\\').replace(/'/g, "\\'")}'`;
}

/** A regular expression matching `s` literally (PCRE, as Drupal's trusted_host_patterns use). */
function pcreQuote(s: string): string {
  return s.replace(/[.\\+*?[^\]$(){}=!<>|:\-#/]/g, '\\$&');
}

const DB_HOST_RE = /^[A-Za-z0-9._-]{1,253}$|^[0-9A-Fa-f:.]{2,45}$/;
const PROFILE_RE = /^[a-z_][a-z0-9_]{0,63}$/;
const SALT_RE = /^[\x21-\x7e]{32,512}$/;

function checkDb(db: SiteDb): SiteDb {
  if (!db || typeof db !== 'object') throw fail('INVALID_ARGUMENT', 'the site database is missing');
  checkDbName(db.name);
  checkDbUser(db.user);
  checkDbPassword(db.password);
  if (typeof db.host !== 'string' || !DB_HOST_RE.test(db.host)) {
    throw fail('INVALID_ARGUMENT', `database host ${JSON.stringify(db.host)} is not valid: use a host name or an IP address`);
  }
  if (!Number.isInteger(db.port) || db.port < 1 || db.port > 65535) {
    throw fail('INVALID_ARGUMENT', `database port ${JSON.stringify(db.port)} is not valid: use 1-65535`);
  }
  return db;
}

/** `host:port`, with brackets around an IPv6 address. */
function hostPort(db: SiteDb): string {
  return db.host.includes(':') ? `[${db.host}]:${db.port}` : `${db.host}:${db.port}`;
}

/**
 * Checks a site's names: domain and aliases valid, no alias repeating the domain or another
 * alias. Returns the aliases sorted.
 * @throws SpokeError INVALID_DOMAIN, DOMAIN_TAKEN
 */
function checkNames(site: SiteNames, seen: Map<string, string> = new Map()): string[] {
  if (!site || typeof site.domain !== 'string') throw fail('INVALID_DOMAIN', 'the site domain is missing');
  if (!Array.isArray(site.aliases)) throw fail('INVALID_ARGUMENT', `the aliases of ${site.domain} are not a list`);
  const claim = (name: string, role: 'domain' | 'alias') => {
    checkDomain(name);
    const prior = seen.get(name);
    if (prior !== undefined) throw fail('DOMAIN_TAKEN', `${role} ${name} is already ${prior}`);
    seen.set(name, role === 'domain' ? `the domain of a site` : `an alias of ${site.domain}`);
  };
  claim(site.domain, 'domain');
  for (const a of site.aliases) claim(a, 'alias');
  return [...site.aliases].sort();
}

function checkFacts(site: SiteFacts): void {
  if (!site || typeof site !== 'object') throw fail('INVALID_ARGUMENT', 'the site facts are missing');
  checkNames(site);
  checkDb(site.db);
  if (typeof site.salt !== 'string' || !SALT_RE.test(site.salt)) {
    throw fail('INVALID_ARGUMENT', `the salt of ${site.domain} is not valid: use 32-512 printable ASCII characters without spaces`);
  }
  if (site.profile !== undefined && (typeof site.profile !== 'string' || !PROFILE_RE.test(site.profile))) {
    throw fail('INVALID_ARGUMENT', `install profile ${JSON.stringify(site.profile)} is not valid: use a machine name (a-z 0-9 _)`);
  }
}

const banner = (what: string) => `// ${what}\n// Generated by Spoke: do not edit, Spoke rewrites this file.\n`;

function settingsFile(path: string, content: string): SiteFile {
  return { path, content, mode: SETTINGS_MODE, webGroupReadable: true, kind: 'file' };
}

function platformFile(path: string, content: string): SiteFile {
  return { path, content, mode: PLATFORM_FILE_MODE, webGroupReadable: false, kind: 'file' };
}

/** PHP lines including a local additions file next to the settings file, when it exists. */
function localInclude(file: string): string {
  return [
    '',
    `// Local additions: ${file} next to this file, when it exists (kept by Spoke).`,
    `if (is_readable(__DIR__ . '/${file}')) {`,
    `  include __DIR__ . '/${file}';`,
    '}',
    '',
  ].join('\n');
}

/** `mysqli://user:pass@host:port/name` for Drupal 6 (which urldecodes each part). */
export function drupal6DbUrl(db: SiteDb): string {
  checkDb(db);
  const enc = (s: string) => encodeURIComponent(s).replace(/[!'()*~]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
  return `mysqli://${enc(db.user)}:${enc(db.password)}@${hostPort(db)}/${enc(db.name)}`;
}

function renderDrupal6(site: SiteFacts): string {
  const dir = siteDir(site.domain);
  const lines = [
    '<?php',
    banner(`Drupal 6 settings of ${site.domain}.`),
    `$db_url = ${phpString(drupal6DbUrl(site.db), 'database URL')};`,
    `$db_prefix = '';`,
    '$update_free_access = FALSE;',
    `$conf['file_directory_path'] = ${phpString(`${dir}/files`)};`,
  ];
  if (site.profile) lines.push(`$conf['install_profile'] = ${phpString(site.profile)};`);
  return lines.join('\n') + '\n' + localInclude(DRUPAL_LOCAL_SETTINGS);
}

function dbArray(site: SiteFacts, extra: [string, string][], short: boolean): string {
  const { db } = site;
  const entries: [string, string][] = [
    ['driver', phpString('mysql')],
    ['database', phpString(db.name, 'database name')],
    ['username', phpString(db.user, 'database user')],
    ['password', phpString(db.password, 'database password')],
    ['host', phpString(db.host, 'database host')],
    ['port', phpString(String(db.port))],
    ['prefix', phpString('')],
    ...extra,
  ];
  const [open, close] = short ? ['[', ']'] : ['array(', ')'];
  return `$databases['default']['default'] = ${open}\n${entries.map(([k, v]) => `  '${k}' => ${v},`).join('\n')}\n${close};`;
}

function renderDrupal7(site: SiteFacts): string {
  const dir = siteDir(site.domain);
  const lines = [
    '<?php',
    banner(`Drupal 7 settings of ${site.domain}.`),
    dbArray(site, [], false),
    '',
    `$drupal_hash_salt = ${phpString(site.salt, 'salt')};`,
    '$update_free_access = FALSE;',
    `$conf['file_public_path'] = ${phpString(`${dir}/files`)};`,
    `$conf['file_private_path'] = DRUPAL_ROOT . ${phpString(`/${dir}/private`)};`,
  ];
  if (site.profile) lines.push(`$conf['install_profile'] = ${phpString(site.profile)};`);
  return lines.join('\n') + '\n' + localInclude(DRUPAL_LOCAL_SETTINGS);
}

/** The major version of a core version string (`10.3.1` → 10), or null. */
function majorOf(version: string | null): number | null {
  const m = version === null ? null : /^(\d+)/.exec(version);
  return m ? Number(m[1]) : null;
}

/**
 * The database driver entries Drupal 8+ needs for MySQL: 8.x and 9.x load the driver from core
 * (`Drupal\Core\Database\Driver\mysql`; 9.4/9.5 keep it as a deprecated shim); 10+ (and an
 * unknown version) from the mysql module, with its autoload path and READ COMMITTED isolation as
 * the 10.x installer writes them.
 */
export function drupal8DriverEntries(coreVersion: string | null): [string, string][] {
  const major = majorOf(coreVersion);
  if (major !== null && major < 10) {
    return [['namespace', phpString('Drupal\\Core\\Database\\Driver\\mysql')]];
  }
  return [
    ['namespace', phpString('Drupal\\mysql\\Driver\\Database\\mysql')],
    ['autoload', phpString('core/modules/mysql/src/Driver/Database/mysql/')],
    ['isolation_level', phpString('READ COMMITTED')],
  ];
}

/** Drupal 8+ trusted host patterns for a site: `^<name>$` for the domain and each alias. */
export function trustedHostPatterns(site: SiteNames): string[] {
  const aliases = checkNames(site);
  return [site.domain, ...aliases].map((n) => `^${pcreQuote(n)}$`);
}

function renderDrupal8(site: SiteFacts): string {
  const dir = siteDir(site.domain);
  const patterns = trustedHostPatterns(site);
  const lines = [
    '<?php',
    banner(`Drupal 8+ settings of ${site.domain}.`),
    dbArray(site, drupal8DriverEntries(site.coreVersion), true),
    '',
    `$settings['hash_salt'] = ${phpString(site.salt, 'salt')};`,
    `$settings['update_free_access'] = FALSE;`,
    `$settings['trusted_host_patterns'] = [`,
    ...patterns.map((p) => `  ${phpString(p)},`),
    '];',
    `$settings['file_public_path'] = ${phpString(`${dir}/files`)};`,
    `$settings['file_private_path'] = $app_root . ${phpString(`/${dir}/private`)};`,
    `$settings['config_sync_directory'] = $app_root . ${phpString(`/${dir}/private/config/sync`)};`,
    `$settings['container_yamls'][] = $app_root . '/' . $site_path . '/services.yml';`,
    `$settings['file_scan_ignore_directories'] = ['node_modules', 'bower_components'];`,
  ];
  return lines.join('\n') + '\n' + localInclude(DRUPAL_LOCAL_SETTINGS);
}

/** WordPress keys and salts of a site, derived from its salt (HMAC-SHA512, base64url, 86 characters). */
export function wordpressKeys(salt: string): Record<(typeof WORDPRESS_KEYS)[number], string> {
  if (typeof salt !== 'string' || !SALT_RE.test(salt)) throw fail('INVALID_ARGUMENT', 'the site salt is not valid');
  const out = {} as Record<(typeof WORDPRESS_KEYS)[number], string>;
  for (const k of WORDPRESS_KEYS) out[k] = createHmac('sha512', salt).update(`spoke wordpress ${k}`).digest('base64url');
  return out;
}

function renderWordpressSite(site: SiteFacts): string {
  const dir = siteDir(site.domain);
  const { db } = site;
  const define = (name: string, value: string) => `define('${name}', ${value});`;
  const keys = wordpressKeys(site.salt);
  const lines = [
    '<?php',
    banner(`WordPress settings of ${site.domain}, loaded by the platform's wp-config.php.`),
    define('DB_NAME', phpString(db.name, 'database name')),
    define('DB_USER', phpString(db.user, 'database user')),
    define('DB_PASSWORD', phpString(db.password, 'database password')),
    define('DB_HOST', phpString(hostPort(db), 'database host')),
    define('DB_CHARSET', phpString('utf8mb4')),
    define('DB_COLLATE', phpString('')),
    '',
    ...WORDPRESS_KEYS.map((k) => define(k, phpString(keys[k]))),
    '',
    `$table_prefix = 'wp_';`,
    '',
    define('WP_HOME', phpString(`${site.https ? 'https' : 'http'}://${site.domain}`)),
    define('WP_SITEURL', phpString(`${site.https ? 'https' : 'http'}://${site.domain}`)),
    ...(site.https ? [define('FORCE_SSL_ADMIN', 'true')] : []),
    `// Uploads, relative to ABSPATH (the platform root).`,
    define('UPLOADS', phpString(`${dir}/files`)),
  ];
  return lines.join('\n') + '\n' + localInclude(WORDPRESS_LOCAL_CONFIG);
}

/** Files of one site (its settings file); [] for kinds without settings (see `settingsSupported`).
 * @throws SpokeError INVALID_DOMAIN, DOMAIN_TAKEN, INVALID_ARGUMENT, UNSAFE_CONFIG_VALUE */
export function renderSiteFiles(site: SiteFacts): SiteFile[] {
  checkFacts(site);
  const dir = siteDir(site.domain);
  switch (site.kind) {
    case 'drupal6':
      return [settingsFile(`${dir}/settings.php`, renderDrupal6(site))];
    case 'drupal7':
      return [settingsFile(`${dir}/settings.php`, renderDrupal7(site))];
    case 'drupal8':
      return [settingsFile(`${dir}/settings.php`, renderDrupal8(site))];
    case 'wordpress':
      return [settingsFile(`${dir}/wp-config.php`, renderWordpressSite(site))];
    case 'mediawiki':
    case 'generic':
      return [];
    default:
      throw fail('INVALID_ARGUMENT', `unknown platform kind ${JSON.stringify(site.kind)}`);
  }
}

/** Checks every site's names and that no name is used twice; returns [name, domain] sorted by name. */
function nameMap(sites: SiteNames[]): { domains: string[]; aliases: [string, string][] } {
  if (!Array.isArray(sites)) throw fail('INVALID_ARGUMENT', 'the sites are not a list');
  const seen = new Map<string, string>();
  const aliases: [string, string][] = [];
  for (const s of sites) {
    for (const a of checkNames(s, seen)) aliases.push([a, s.domain]);
  }
  const domains = sites.map((s) => s.domain).sort();
  aliases.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
  return { domains, aliases };
}

function renderSitesPhp(aliases: [string, string][]): string {
  const lines = [
    '<?php',
    banner('Aliases of the sites of this platform: $sites[alias] = site directory.'),
    '$sites = array();',
    ...aliases.map(([a, d]) => `$sites[${phpString(a)}] = ${phpString(d)};`),
  ];
  return lines.join('\n') + '\n';
}

function renderHostsPhp(domains: string[], aliases: [string, string][]): string {
  const all: [string, string][] = [...domains.map((d): [string, string] => [d, d]), ...aliases];
  all.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
  const lines = [
    '<?php',
    banner("Request host -> site domain, read by the platform's wp-config.php."),
    'return [',
    ...all.map(([h, d]) => `  ${phpString(h)} => ${phpString(d)},`),
    '];',
  ];
  return lines.join('\n') + '\n';
}

/** Host pattern of the dispatcher: lowercase RFC 1123 labels (`D`: no newline before the end). */
const PHP_HOST_RE = '/^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$/D';

/**
 * Spoke's WordPress dispatcher, the platform's wp-config.php. Site choice: the constant
 * SPOKE_SITE, else `$_SERVER['SPOKE_SITE']` (web server env, or the process env under the CLI),
 * else getenv('SPOKE_SITE'), else the request's Host header (WP-CLI sets it from --url). The name
 * is lowercased, its port and one trailing dot removed, checked against a strict host pattern and
 * looked up in sites/hosts.php; anything else is a 404 (web) or exit 1 with a hint (CLI).
 * WP-CLI evaluates this file without its wp-settings.php line (and with __DIR__ replaced by the
 * directory), so exactly one line loads wp-settings.php, and it is the last.
 */
export function renderWordpressDispatcher(): string {
  return `<?php
/**
 * Spoke's WordPress dispatcher: this platform serves several sites. It picks the site by the
 * request's host through sites/hosts.php and loads sites/<domain>/wp-config.php.
 * Under WP-CLI or cron without a host, set SPOKE_SITE=<domain> or pass --url=<domain>.
 * Generated by Spoke: do not edit, Spoke rewrites this file.
 */
if (!defined('ABSPATH')) {
  define('ABSPATH', __DIR__ . '/');
}

$spoke_name = null;
if (defined('SPOKE_SITE')) {
  $spoke_name = SPOKE_SITE;
} elseif (isset($_SERVER['SPOKE_SITE']) && is_string($_SERVER['SPOKE_SITE']) && $_SERVER['SPOKE_SITE'] !== '') {
  $spoke_name = $_SERVER['SPOKE_SITE'];
} elseif (is_string(getenv('SPOKE_SITE')) && getenv('SPOKE_SITE') !== '') {
  $spoke_name = getenv('SPOKE_SITE');
} elseif (isset($_SERVER['HTTP_HOST']) && is_string($_SERVER['HTTP_HOST'])) {
  $spoke_name = $_SERVER['HTTP_HOST'];
}

$spoke_domain = null;
if (is_string($spoke_name) && strlen($spoke_name) <= 260) {
  $spoke_name = preg_replace('/:[0-9]{1,5}$/D', '', strtolower($spoke_name));
  if (substr($spoke_name, -1) === '.') {
    $spoke_name = substr($spoke_name, 0, -1);
  }
  if (strlen($spoke_name) <= 253 && preg_match('${PHP_HOST_RE}', $spoke_name)) {
    $spoke_hosts = include __DIR__ . '/sites/hosts.php';
    if (is_array($spoke_hosts) && isset($spoke_hosts[$spoke_name]) && is_string($spoke_hosts[$spoke_name])
      && preg_match('${PHP_HOST_RE}', $spoke_hosts[$spoke_name])
      && is_file(__DIR__ . '/sites/' . $spoke_hosts[$spoke_name] . '/wp-config.php')) {
      $spoke_domain = $spoke_hosts[$spoke_name];
    }
  }
}

if ($spoke_domain === null) {
  if (PHP_SAPI === 'cli' || PHP_SAPI === 'phpdbg') {
    fwrite(STDERR, "Spoke: no WordPress site of this platform answers to this name; set SPOKE_SITE=<domain> or pass --url=<domain>.\\n");
    exit(1);
  }
  if (!headers_sent()) {
    http_response_code(404);
    header('Content-Type: text/plain; charset=utf-8');
    header('Cache-Control: no-store');
  }
  echo "Site not found.\\n";
  exit;
}

define('SPOKE_SITE_DOMAIN', $spoke_domain);
require __DIR__ . '/sites/' . $spoke_domain . '/wp-config.php';
unset($spoke_name, $spoke_hosts, $spoke_domain);

// The platform's own wp-content (Debian's wp-config.php would point at /var/lib/wordpress).
if (!defined('WP_CONTENT_DIR')) {
  define('WP_CONTENT_DIR', __DIR__ . '/wp-content');
}
// Code comes from the master and is converged to every web server: no updates from inside.
if (!defined('DISALLOW_FILE_MODS')) {
  define('DISALLOW_FILE_MODS', true);
}
if (!defined('AUTOMATIC_UPDATER_DISABLED')) {
  define('AUTOMATIC_UPDATER_DISABLED', true);
}
if (!defined('WP_AUTO_UPDATE_CORE')) {
  define('WP_AUTO_UPDATE_CORE', false);
}
if (!isset($table_prefix)) {
  $table_prefix = 'wp_';
}

require_once ABSPATH . 'wp-settings.php';
`;
}

/**
 * Spoke's WordPress must-use plugin for `spoke site login-url` (see sites/login.ts): a link
 * `/?spoke-login=SECRET` logs in the administrator the agent named, when a transient keyed by the
 * secret's SHA-256 exists; it is deleted before the login, so a link works once (of two racing
 * requests only the one whose delete removed the row logs in).
 */
export const WP_LOGIN_PLUGIN = `<?php
/**
 * Plugin Name: Spoke one-time login
 * Description: Written by Spoke for "spoke site login-url" (rewritten on every site change; do not edit).
 */
if (!defined('ABSPATH')) {
  exit;
}
add_action('init', function () {
  if (!isset($_GET['spoke-login']) || !is_string($_GET['spoke-login'])) {
    return;
  }
  $secret = $_GET['spoke-login'];
  $key = preg_match('/^[A-Za-z0-9_-]{32,128}$/', $secret) ? 'spoke_login_' . hash('sha256', $secret) : '';
  $data = $key === '' ? FALSE : get_transient($key);
  if (!is_array($data) || empty($data['user']) || !delete_transient($key)) {
    wp_die('This login link is not valid: it was used already or it expired. Ask for a new one with: spoke site login-url', 'Login link', ['response' => 403]);
  }
  $user = get_user_by('id', (int) $data['user']);
  if (!$user) {
    wp_die('The account of this login link no longer exists.', 'Login link', ['response' => 403]);
  }
  wp_set_current_user($user->ID);
  wp_set_auth_cookie($user->ID, FALSE, is_ssl());
  nocache_headers();
  wp_safe_redirect(admin_url());
  exit;
}, 1);
`;

/**
 * Platform-level files that depend on every site of the platform: Drupal 7/8+ `sites/sites.php`;
 * WordPress `wp-config.php` (dispatcher) and `sites/hosts.php`; Drupal 6 one symlink
 * `sites/<alias>` → `<domain>` per alias. [] for MediaWiki and generic. Always the complete set
 * for the given sites: render again after every install, delete and alias change, and remove
 * what `staleSiteFiles` reports.
 * @throws SpokeError INVALID_DOMAIN, DOMAIN_TAKEN (a name used twice)
 */
export function renderPlatformSiteFiles(kind: PlatformKind, sites: SiteNames[]): SiteFile[] {
  const { domains, aliases } = nameMap(sites);
  switch (kind) {
    case 'drupal6':
      return aliases.map(([a, d]) => ({ path: `sites/${a}`, content: '', mode: 0o777, webGroupReadable: false, kind: 'symlink', target: d }));
    case 'drupal7':
    case 'drupal8':
      return [platformFile('sites/sites.php', renderSitesPhp(aliases))];
    case 'wordpress':
      return [
        platformFile('wp-config.php', renderWordpressDispatcher()),
        platformFile('sites/hosts.php', renderHostsPhp(domains, aliases)),
        platformFile('wp-content/mu-plugins/spoke-login.php', WP_LOGIN_PLUGIN),
      ];
    case 'mediawiki':
    case 'generic':
      return [];
    default:
      throw fail('INVALID_ARGUMENT', `unknown platform kind ${JSON.stringify(kind)}`);
  }
}

/** Paths in `previous` that are not in `next` (to remove after a re-render), sorted. */
export function staleSiteFiles(previous: readonly SiteFile[], next: readonly SiteFile[]): string[] {
  const keep = new Set(next.map((f) => f.path));
  return [...new Set(previous.map((f) => f.path).filter((p) => !keep.has(p)))].sort();
}
