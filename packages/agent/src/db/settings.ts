/**
 * agent.json `db`: how this agent reaches its MariaDB/MySQL server as an administrator. The
 * admin credentials live only here, on the database host; they never travel on the wire.
 */
import { checkDbHost, fail } from '@spoke/shared';

/** The file format of agent.json `db`. */
export interface DbConfigFile {
  /** mariadb | mysql: which client tools are preferred (mariadb-dump or mysqldump). @default mariadb */
  impl?: 'mariadb' | 'mysql';
  /** TCP host of the server (ignored when `socket` is set). @default 127.0.0.1 */
  host?: string;
  /** TCP port. @default 3306 */
  port?: number;
  /** Unix socket path, e.g. /run/mysqld/mysqld.sock; when set, TCP is not used. */
  socket?: string;
  /** Administrative account: creates databases and users, grants, dumps, restores. @default root */
  adminUser?: string;
  /**
   * Its password ("" = none, e.g. root over the socket with unix_socket authentication on
   * Debian). When set, agent.json must not be readable by group or others (chmod 600).
   */
  adminPassword?: string;
  /**
   * How the web servers the master names appear to this database server: a host the master
   * sends that is a key here is replaced by the listed account hosts (addresses or patterns),
   * e.g. `{ "web-1": ["10.0.0.11"], "master": ["localhost", "127.0.0.1"] }`. Hosts without
   * an entry are used as sent.
   */
  grantHosts?: Record<string, string[]>;
  /**
   * How the web servers reach this database server (written into the sites' settings files).
   * @default `host` (or "localhost" when `socket` is used)
   */
  siteHost?: string;
  /** @default `port` (3306 when `socket` is used) */
  sitePort?: number;
}

/** agent.json `db`, checked, with defaults applied. */
export interface DbSettings {
  impl: 'mariadb' | 'mysql';
  /** "" when `socket` is used. */
  host: string;
  port: number;
  /** "" = TCP. */
  socket: string;
  adminUser: string;
  adminPassword: string;
  grantHosts: Record<string, string[]>;
  /** Only when set in agent.json (see `siteAddress` for the defaults). */
  siteHost?: string;
  sitePort?: number;
}

/** How web servers reach the database server: `siteHost`/`sitePort`, else the admin's host/port. */
export function siteAddress(s: DbSettings): { host: string; port: number } {
  return { host: s.siteHost ?? (s.socket ? 'localhost' : s.host), port: s.sitePort ?? (s.socket ? 3306 : s.port) };
}

const DB_KEYS = ['impl', 'host', 'port', 'socket', 'adminUser', 'adminPassword', 'grantHosts', 'siteHost', 'sitePort'];
const HOST_RE = /^([A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?|[0-9a-fA-F:.]+)$/;
// eslint-disable-next-line no-control-regex
const CONTROL = /[\x00-\x1f\x7f]/;

/**
 * Checks agent.json's `db` section; `undefined` means this agent manages no database server.
 * Messages never repeat the admin password.
 * @throws SpokeError CONFIG_INVALID
 */
export function parseDbSettings(db: unknown): DbSettings | null {
  if (db === undefined) return null;
  const bad = (key: string, why: string) => fail('CONFIG_INVALID', `agent.json: db${key ? `.${key}` : ''} ${why}`);
  if (db === null || typeof db !== 'object' || Array.isArray(db)) throw bad('', 'must be an object');
  const d = db as Record<string, unknown>;
  const unknown = Object.keys(d).filter((k) => !DB_KEYS.includes(k));
  if (unknown.length) throw bad(unknown[0] as string, `is not a known setting (known: ${DB_KEYS.join(', ')})`);
  const str = (key: string): string | undefined => {
    const v = d[key];
    if (v !== undefined && typeof v !== 'string') throw bad(key, 'must be a string');
    if (typeof v === 'string' && CONTROL.test(v)) throw bad(key, 'must not contain control characters or newlines');
    return v;
  };
  const impl = str('impl') ?? 'mariadb';
  if (impl !== 'mariadb' && impl !== 'mysql') throw bad('impl', `must be mariadb or mysql (got ${JSON.stringify(impl)})`);
  const socket = str('socket') ?? '';
  if (socket && (!socket.startsWith('/') || socket.split('/').some((s, i) => i > 0 && (s === '' || s === '.' || s === '..')))) {
    throw bad('socket', `must be an absolute, normalised path (got ${JSON.stringify(socket)})`);
  }
  if (socket && (d.host !== undefined || d.port !== undefined)) throw bad('socket', 'and db.host/db.port exclude each other: use one way to reach the server');
  const host = socket ? '' : (str('host') ?? '127.0.0.1');
  if (!socket && !HOST_RE.test(host)) throw bad('host', `is not a host name or address (got ${JSON.stringify(host)})`);
  const port = d.port ?? 3306;
  if (typeof port !== 'number' || !Number.isInteger(port) || port < 1 || port > 65535) throw bad('port', 'must be a port number 1-65535');
  const adminUser = str('adminUser') ?? 'root';
  if (adminUser === '' || adminUser.length > 80) throw bad('adminUser', 'must be 1-80 characters');
  const pw = d.adminPassword;
  if (pw !== undefined && typeof pw !== 'string') throw bad('adminPassword', 'must be a string');
  if (typeof pw === 'string' && CONTROL.test(pw)) throw bad('adminPassword', 'must not contain control characters or newlines');
  const gh = d.grantHosts ?? {};
  if (gh === null || typeof gh !== 'object' || Array.isArray(gh)) throw bad('grantHosts', 'must be an object: { "web-1": ["10.0.0.11"] }');
  const grantHosts: Record<string, string[]> = {};
  for (const [k, v] of Object.entries(gh as Record<string, unknown>)) {
    if (!Array.isArray(v) || v.length === 0 || v.some((h) => typeof h !== 'string')) {
      throw bad(`grantHosts.${k}`, 'must be a non-empty array of hosts, e.g. ["10.0.0.11"]');
    }
    for (const h of [k, ...(v as string[])]) {
      try {
        checkDbHost(h);
      } catch (e) {
        throw bad(`grantHosts.${k}`, `is not valid: ${(e as Error).message}`);
      }
    }
    grantHosts[k] = [...new Set(v as string[])];
  }
  const siteHost = str('siteHost');
  if (siteHost !== undefined && !HOST_RE.test(siteHost)) throw bad('siteHost', `is not a host name or address (got ${JSON.stringify(siteHost)})`);
  const sitePort = d.sitePort;
  if (sitePort !== undefined && (typeof sitePort !== 'number' || !Number.isInteger(sitePort) || sitePort < 1 || sitePort > 65535)) {
    throw bad('sitePort', 'must be a port number 1-65535');
  }
  return {
    impl,
    host,
    port: socket ? 0 : port,
    socket,
    adminUser,
    adminPassword: pw ?? '',
    grantHosts,
    ...(siteHost !== undefined ? { siteHost } : {}),
    ...(sitePort !== undefined ? { sitePort } : {}),
  };
}

/** True when a file mode lets group or others read it. */
export function exposesSecrets(mode: number): boolean {
  return (mode & 0o077) !== 0;
}
