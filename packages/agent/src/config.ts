/**
 * Agent configuration: `<stateDir>/agent.json` (written by `enroll`, editable by hand) plus
 * command-line flags. Only this module reads the environment.
 */
import { existsSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { checkPublishPath, fail, parseHostPort } from '@spoke/shared';
import { SERVICE_BIN_DIRS } from './detect.js';
import { FETCH_BATCH } from './sync.js';
import { exposesSecrets, parseDbSettings, type DbConfigFile, type DbSettings } from './db/settings.js';
import { checkConfigPath, checkConfigValue, checkFpmAddress, checkListen } from './webtemplate.js';

/** Default namespace roots an agent may write under. */
export const DEFAULT_ROOTS = ['/var/aegir', '/var/www'];

/** The file format of agent.json. */
export interface AgentConfigFile {
  /** Master TLS address, HOST:PORT. */
  master: string;
  /** Server name (the certificate's identity; informational here). */
  server: string;
  /** Cluster joined at enrollment ("" for none). */
  cluster?: string;
  /** Namespace paths this agent may write under. @default ["/var/aegir", "/var/www"] */
  roots?: string[];
  /** The web server the agent configures (see HttpConfigFile). */
  http?: HttpConfigFile;
  /** php-fpm. */
  php?: PhpConfigFile;
  /** The MariaDB/MySQL server this agent manages site databases on (see DbConfigFile); absent = none. */
  db?: DbConfigFile;
}

/** agent.json `php`. */
export interface PhpConfigFile {
  /** Socket path or HOST:PORT. @default detected from the pools in /etc/php, else /run/php */
  fpmSocket?: string;
  /** The PHP command line binary that runs site installers, updates and one-time logins. @default `php` found on $PATH or in the sbin/bin dirs */
  cli?: string;
  /** The account those PHP runs use when the agent is root, so what they write belongs to the web server (php-fpm's pool user). @default www-data */
  user?: string;
}

/** agent.json `http`: paths here are host paths (never mapped through --root). */
export interface HttpConfigFile {
  /** nginx | apache | none (do not manage a web server). @default detected: nginx, else apache */
  impl?: 'nginx' | 'apache' | 'none';
  /** Where platform and site configs are written. @default /etc/nginx/conf.d, /etc/apache2/sites-enabled */
  confDir?: string;
  /** Addresses the platform and site configs listen on: PORT, HOST:PORT, [IPv6]:PORT. The first is where the agent runs site installers (WordPress) against its own server. @default ["80"] */
  listen?: string | string[];
  /** Config test, argv. @default ["nginx","-t"], ["apache2ctl","configtest"] */
  testCommand?: string[];
  /** Reload, argv. @default ["nginx","-s","reload"], ["apache2ctl","graceful"] */
  reloadCommand?: string[];
  /** Group the web server runs as; owns sites/ and its files dirs. @default www-data */
  webGroup?: string;
  /** Overrides: `<templatesDir>/<impl>/platform.conf`, `site.conf`, `site-disabled.conf` replace the built-in templates. */
  templatesDir?: string;
  /** Addresses the 443 blocks of HTTPS sites listen on (PORT, HOST:PORT, [IPv6]:PORT). @default ["443"] */
  httpsListen?: string | string[];
  /** Where ACME HTTP-01 challenge files go (served at /.well-known/acme-challenge/). @default /var/lib/spoke-agent/acme-challenge (under --root) */
  acmeDir?: string;
}

/** The web server settings, checked; "" / null mean "the default for the impl". */
export interface HttpSettings {
  /** "" = detect. */
  impl: 'nginx' | 'apache' | 'none' | '';
  confDir: string;
  listen: string[];
  testCommand: string[] | null;
  reloadCommand: string[] | null;
  webGroup: string;
  templatesDir: string;
  /** Where HTTPS sites listen. @default ["443"] */
  httpsListen?: string[];
  /** Host path of the ACME challenge dir ("" or absent = the default under --root). */
  acmeDir?: string;
  /** True when agent.json has an `http` section (an agent with --root manages only an explicit one). */
  configured: boolean;
}

/** Fully-set agent options. */
export interface CompiledAgentOptions {
  stateDir: string;
  master: string;
  server: string;
  cluster: string;
  roots: string[];
  /** `--root` prefix that stands for `/` on this host ("" = real root). */
  rootPrefix: string;
  /** Reconnect backoff: first delay and cap. @default 500 ms, 15 s (env SPOKE_BACKOFF_MAX_MS) */
  backoffInitialMs: number;
  backoffMaxMs: number;
  logLevel: string;
  /** How often held trees are re-walked to find drift. @default 60000 (env SPOKE_DRIFT_INTERVAL_MS) */
  driftIntervalMs: number;
  /** Hashes per FetchBlobs request (SPOKE_FETCH_BATCH; tests set it low to cross batches). */
  fetchBatch: number;
  /** Where service binaries are looked for: $PATH, then the sbin/bin dirs. */
  binDirs: string[];
  /** Web server management (agent.json `http`). */
  http: HttpSettings;
  /** php-fpm socket or HOST:PORT from agent.json ("" = detect). */
  fpmSocket: string;
  /** PHP command line for site tools (agent.json `php.cli`; "" = find `php`). */
  phpCli: string;
  /** Account the PHP command line runs as when the agent is root (agent.json `php.user`). */
  phpUser: string;
  /** Site databases (agent.json `db`); null = this agent manages no database server. */
  db: DbSettings | null;
}

/** Paths of the agent's identity files. */
export function identityFiles(stateDir: string): { key: string; cert: string; ca: string; config: string } {
  return {
    key: join(stateDir, 'agent.key'),
    cert: join(stateDir, 'agent.crt'),
    ca: join(stateDir, 'ca.crt'),
    config: join(stateDir, 'agent.json'),
  };
}

/** Checks a roots list: absolute normalised paths. @throws SpokeError CONFIG_INVALID */
export function checkRoots(roots: string[]): string[] {
  if (roots.length === 0) throw fail('CONFIG_INVALID', 'an agent needs at least one root');
  return roots.map((r) => {
    try {
      return checkPublishPath(r);
    } catch (e) {
      throw fail('CONFIG_INVALID', `root ${JSON.stringify(r)} is not an absolute normalised path`);
    }
  });
}

const PHP_KEYS = ['fpmSocket', 'cli', 'user'];
const HTTP_KEYS = ['impl', 'confDir', 'listen', 'testCommand', 'reloadCommand', 'webGroup', 'templatesDir', 'httpsListen', 'acmeDir'];

/**
 * Checks agent.json's `http` and `php` sections.
 * @throws SpokeError CONFIG_INVALID
 */
export function parseWebSettings(cfg: Pick<AgentConfigFile, 'http' | 'php'>): { http: HttpSettings; fpmSocket: string; phpCli: string; phpUser: string } {
  const bad = (key: string, why: string) => fail('CONFIG_INVALID', `agent.json: ${key} ${why}`);
  const checked = <T>(key: string, fn: () => T): T => {
    try {
      return fn();
    } catch (e) {
      throw bad(key, `is not valid: ${(e as Error).message}`);
    }
  };
  const h = cfg.http;
  if (h !== undefined && (h === null || typeof h !== 'object' || Array.isArray(h))) throw bad('http', 'must be an object');
  const unknown = Object.keys(h ?? {}).filter((k) => !HTTP_KEYS.includes(k));
  if (unknown.length) throw bad(`http.${unknown[0]}`, `is not a known setting (known: ${HTTP_KEYS.join(', ')})`);
  const str = (key: keyof HttpConfigFile): string | undefined => {
    const v = h?.[key];
    if (v !== undefined && typeof v !== 'string') throw bad(`http.${key}`, 'must be a string');
    return v;
  };
  const argv = (key: 'testCommand' | 'reloadCommand'): string[] | null => {
    const v = h?.[key];
    if (v === undefined) return null;
    // eslint-disable-next-line no-control-regex
    if (!Array.isArray(v) || v.length === 0 || v.some((a) => typeof a !== 'string' || a === '' || /[\x00\n]/.test(a))) {
      throw bad(`http.${key}`, 'must be a non-empty array of arguments, e.g. ["nginx", "-t"] (no shell string)');
    }
    return [...v];
  };
  const impl = str('impl') ?? '';
  if (!['', 'nginx', 'apache', 'none'].includes(impl)) throw bad('http.impl', `must be nginx, apache or none (got ${JSON.stringify(impl)})`);
  const confDir = str('confDir') ?? '';
  if (confDir) checked('http.confDir', () => checkConfigPath('confDir', confDir));
  const templatesDir = str('templatesDir') ?? '';
  if (templatesDir) checked('http.templatesDir', () => checkConfigPath('templatesDir', templatesDir));
  const rawListen = h?.listen ?? ['80'];
  const listen = typeof rawListen === 'string' ? [rawListen] : rawListen;
  if (!Array.isArray(listen) || listen.length === 0 || listen.some((l) => typeof l !== 'string')) {
    throw bad('http.listen', 'must be an address or a non-empty array of addresses, e.g. ["80"] or "127.0.0.1:8080"');
  }
  listen.forEach((l) => checked('http.listen', () => checkListen(l)));
  const rawHttps = h?.httpsListen ?? ['443'];
  const httpsListen = typeof rawHttps === 'string' ? [rawHttps] : rawHttps;
  if (!Array.isArray(httpsListen) || httpsListen.length === 0 || httpsListen.some((l) => typeof l !== 'string')) {
    throw bad('http.httpsListen', 'must be an address or a non-empty array of addresses, e.g. ["443"] or "127.0.0.1:8443"');
  }
  httpsListen.forEach((l) => checked('http.httpsListen', () => checkListen(l)));
  const acmeDir = str('acmeDir') ?? '';
  if (acmeDir) checked('http.acmeDir', () => checkConfigPath('acmeDir', acmeDir));
  const webGroup = str('webGroup') ?? 'www-data';
  if (!/^([a-z_][a-z0-9_.-]{0,31}|\d+)$/i.test(webGroup)) throw bad('http.webGroup', `is not a group name (got ${JSON.stringify(webGroup)})`);
  const php = cfg.php;
  if (php !== undefined && (php === null || typeof php !== 'object' || Array.isArray(php))) throw bad('php', 'must be an object');
  const unknownPhp = Object.keys(php ?? {}).filter((k) => !PHP_KEYS.includes(k));
  if (unknownPhp.length) throw bad(`php.${unknownPhp[0]}`, `is not a known setting (known: ${PHP_KEYS.join(', ')})`);
  const fpm = php?.fpmSocket ?? '';
  if (typeof fpm !== 'string') throw bad('php.fpmSocket', 'must be a string');
  if (fpm) checked('php.fpmSocket', () => checkFpmAddress(fpm));
  const phpCli = php?.cli ?? '';
  if (typeof phpCli !== 'string') throw bad('php.cli', 'must be a string');
  if (phpCli) checked('php.cli', () => checkConfigPath('cli', phpCli));
  const phpUser = php?.user ?? 'www-data';
  if (typeof phpUser !== 'string' || !/^([a-z_][a-z0-9_.-]{0,31}|\d+)$/i.test(phpUser)) throw bad('php.user', `is not a user name (got ${JSON.stringify(phpUser)})`);
  return {
    http: {
      impl: impl as HttpSettings['impl'],
      confDir,
      listen: [...listen],
      testCommand: argv('testCommand'),
      reloadCommand: argv('reloadCommand'),
      webGroup: checked('http.webGroup', () => checkConfigValue('webGroup', webGroup)),
      templatesDir,
      httpsListen: [...httpsListen],
      acmeDir,
      configured: h !== undefined,
    },
    fpmSocket: fpm,
    phpCli,
    phpUser,
  };
}

/** Writes agent.json. */
export function writeAgentConfig(stateDir: string, cfg: AgentConfigFile): void {
  writeFileSync(identityFiles(stateDir).config, `${JSON.stringify(cfg, null, 2)}\n`, { mode: 0o644 });
}

/**
 * Reads agent.json and applies flags.
 * @throws SpokeError NOT_ENROLLED when the state dir has no enrollment, CONFIG_INVALID
 */
export function compileAgentOptions(flags: { stateDir: string; root?: string; master?: string }): CompiledAgentOptions {
  const stateDir = resolve(flags.stateDir);
  const files = identityFiles(stateDir);
  if (!existsSync(files.config) || !existsSync(files.cert) || !existsSync(files.key)) {
    throw fail('NOT_ENROLLED', `no enrollment in ${stateDir}; run: spoke-agent enroll --master HOST:PORT --token TOKEN --state-dir ${flags.stateDir}`);
  }
  let cfg: AgentConfigFile;
  try {
    cfg = JSON.parse(readFileSync(files.config, 'utf8')) as AgentConfigFile;
  } catch (e) {
    throw fail('CONFIG_INVALID', `${files.config} is not valid JSON: ${(e as Error).message}`);
  }
  const master = flags.master ?? cfg.master;
  parseHostPort(master);
  const web = parseWebSettings(cfg);
  const db = parseDbSettings(cfg.db);
  if (db?.adminPassword && exposesSecrets(statSync(files.config).mode)) {
    throw fail('CONFIG_INVALID', `${files.config} holds db.adminPassword but group or others can read it; run: chmod 600 ${files.config}`);
  }
  const envInt = (name: string, d: number) => {
    const v = Number(process.env[name]);
    return Number.isFinite(v) && v > 0 ? v : d;
  };
  return {
    stateDir,
    master,
    server: cfg.server,
    cluster: cfg.cluster ?? '',
    roots: checkRoots(cfg.roots ?? DEFAULT_ROOTS),
    rootPrefix: flags.root && flags.root !== '/' ? resolve(flags.root) : '',
    backoffInitialMs: envInt('SPOKE_BACKOFF_INITIAL_MS', 500),
    backoffMaxMs: envInt('SPOKE_BACKOFF_MAX_MS', 15_000),
    logLevel: process.env.SPOKE_LOG_LEVEL ?? 'info',
    driftIntervalMs: envInt('SPOKE_DRIFT_INTERVAL_MS', 60_000),
    fetchBatch: envInt('SPOKE_FETCH_BATCH', FETCH_BATCH),
    binDirs: [...new Set([...(process.env.PATH ?? '').split(':').filter((d) => d.startsWith('/')), ...SERVICE_BIN_DIRS])],
    http: web.http,
    fpmSocket: web.fpmSocket,
    phpCli: web.phpCli,
    phpUser: web.phpUser,
    db,
  };
}
