/**
 * Site database naming and the checks both ends apply to database identifiers, plus the
 * completeness check of a SQL dump (used by the agent that makes a dump and by the master that
 * stores one).
 *
 * Limits (MySQL reference manual, "Identifier Length Limits" and "User Names and Passwords"):
 * a database name is at most 64 characters on MySQL and MariaDB; a user name at most 32 on
 * MySQL ≥ 5.7.8 (16 before; MariaDB allows 80, 128 since 10.4), so Spoke keeps users to 32 to
 * stay portable; a host part at most 255 on MySQL ≥ 8.0.17 and MariaDB ≥ 10.4 (60 before).
 */
import { randomBytes } from 'node:crypto';
import { fail } from './errors.js';
import { checkDomain } from './names.js';

/** Longest database name (MySQL and MariaDB). */
export const DB_NAME_MAX = 64;
/** Longest user name Spoke creates (MySQL ≥ 5.7.8; MariaDB allows more). */
export const DB_USER_MAX = 32;
/** Longest host part of an account (MySQL ≥ 8.0.17, MariaDB ≥ 10.4). */
export const DB_HOST_MAX = 255;

/** Names a site database or user can never take (server schemas, well-known accounts). */
export const DB_RESERVED = new Set(['information_schema', 'performance_schema', 'mysql', 'sys', 'test', 'root', 'mariadb_sys', 'debian_sys_maint']);

const IDENT_RE = /^[a-z_][a-z0-9_]*$/;

/** A site's database and user names. */
export interface SiteDbNames {
  database: string;
  user: string;
}

function base(domain: string): string {
  checkDomain(domain);
  const b = domain.toLowerCase().replace(/[^a-z0-9]/g, '_');
  return /^[0-9]/.test(b) ? `s_${b}` : b;
}

function cut(b: string, max: number, suffix: string): string {
  return b.slice(0, max - suffix.length).replace(/_+$/, '') + suffix;
}

/**
 * Derives a site's database and user name from its domain: lowercase, `[a-z0-9_]` only (dots
 * and dashes become `_`), prefixed `s_` when it would start with a digit, at most 64 characters
 * for the database and 32 for the user. When either name is in `taken` (or reserved), a numeric
 * suffix `_2`, `_3`, … is added to both, within the length limits.
 * @throws SpokeError INVALID_DOMAIN
 */
export function siteDbName(domain: string, taken: ReadonlySet<string>): SiteDbNames {
  const b = base(domain);
  const free = (n: string) => !taken.has(n) && !DB_RESERVED.has(n);
  for (let n = 1; ; n++) {
    const suffix = n === 1 ? '' : `_${n}`;
    const database = cut(b, DB_NAME_MAX, suffix);
    const user = cut(b, DB_USER_MAX, suffix);
    if (free(database) && free(user)) return { database, user };
  }
}

/**
 * Checks a database name Spoke manages: `[a-z_][a-z0-9_]*`, at most 64 characters, not a
 * server schema.
 * @throws SpokeError INVALID_ARGUMENT
 */
export function checkDbName(name: string): string {
  if (typeof name !== 'string' || !IDENT_RE.test(name) || name.length > DB_NAME_MAX || DB_RESERVED.has(name)) {
    throw fail(
      'INVALID_ARGUMENT',
      `database name ${JSON.stringify(name)} is not valid: use 1-${DB_NAME_MAX} characters a-z 0-9 _ not starting with a digit (not a server schema)`,
    );
  }
  return name;
}

/**
 * Checks a database user name Spoke manages: `[a-z_][a-z0-9_]*`, at most 32 characters, not
 * `root` or another reserved account.
 * @throws SpokeError INVALID_ARGUMENT
 */
export function checkDbUser(name: string): string {
  if (typeof name !== 'string' || !IDENT_RE.test(name) || name.length > DB_USER_MAX || DB_RESERVED.has(name)) {
    throw fail(
      'INVALID_ARGUMENT',
      `database user ${JSON.stringify(name)} is not valid: use 1-${DB_USER_MAX} characters a-z 0-9 _ not starting with a digit (not root)`,
    );
  }
  return name;
}

const HOST_RE = /^[A-Za-z0-9.:%_/-]+$/;

/**
 * Checks the host part of an account: a host name, an IPv4/IPv6 address, `localhost`, or a
 * pattern with `%`/`_` wildcards or an address/netmask; at most 255 characters.
 * @throws SpokeError INVALID_ARGUMENT
 */
export function checkDbHost(host: string): string {
  if (typeof host !== 'string' || host.length === 0 || host.length > DB_HOST_MAX || !HOST_RE.test(host)) {
    throw fail(
      'INVALID_ARGUMENT',
      `database grant host ${JSON.stringify(host)} is not valid: use a host name, an address, or a pattern of A-Z a-z 0-9 . : % _ / - (1-${DB_HOST_MAX} characters)`,
    );
  }
  return host;
}

/**
 * Checks a site database password: 16-128 printable ASCII characters without spaces.
 * The message never repeats the password.
 * @throws SpokeError INVALID_ARGUMENT
 */
export function checkDbPassword(password: string): string {
  if (typeof password !== 'string' || password.length < 16 || password.length > 128 || !/^[\x21-\x7e]+$/.test(password)) {
    throw fail('INVALID_ARGUMENT', 'the site database password is not valid: use 16-128 printable ASCII characters without spaces');
  }
  return password;
}

/** A random site database password: 24 random bytes, base64url (32 characters). */
export function generateDbPassword(): string {
  return randomBytes(24).toString('base64url');
}

/** The line mysqldump / mariadb-dump writes last when a dump finished. */
export const DUMP_COMPLETE_MARKER = '-- Dump completed';

/** How many trailing bytes of a dump `checkDumpComplete` needs. */
export const DUMP_TAIL_BYTES = 512;

/**
 * Refuses a dump that is empty or whose last non-empty line is not the completion marker.
 * `tail` is the dump's last bytes (at least the last line; `DUMP_TAIL_BYTES` is plenty),
 * `totalBytes` the dump's whole size.
 * @throws SpokeError DB_DUMP_INCOMPLETE
 */
export function checkDumpComplete(tail: Uint8Array | string, totalBytes: number, what = 'the database dump'): void {
  const text = typeof tail === 'string' ? tail : Buffer.from(tail.buffer, tail.byteOffset, tail.byteLength).toString('latin1');
  if (totalBytes === 0 || text.trim() === '') throw fail('DB_DUMP_INCOMPLETE', `${what} is empty`);
  const lines = text
    .split('\n')
    .map((l) => l.replace(/\r$/, ''))
    .filter((l) => l.trim() !== '');
  const last = lines[lines.length - 1] ?? '';
  if (!last.startsWith(DUMP_COMPLETE_MARKER)) {
    throw fail('DB_DUMP_INCOMPLETE', `${what} (${totalBytes} bytes) lacks its "${DUMP_COMPLETE_MARKER}" line: it was cut short`);
  }
}

/** Keeps the tail and size of a dump as it streams past, for `checkDumpComplete`. */
export class DumpTail {
  private tail = Buffer.alloc(0);
  /** Bytes seen so far. */
  bytes = 0;

  /** Records a chunk. */
  update(chunk: Uint8Array): void {
    this.bytes += chunk.byteLength;
    const c = Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
    if (c.byteLength >= DUMP_TAIL_BYTES) {
      this.tail = Buffer.from(c.subarray(c.byteLength - DUMP_TAIL_BYTES));
      return;
    }
    const joined = Buffer.concat([this.tail, c]);
    this.tail = joined.byteLength > DUMP_TAIL_BYTES ? joined.subarray(joined.byteLength - DUMP_TAIL_BYTES) : joined;
  }

  /** @throws SpokeError DB_DUMP_INCOMPLETE */
  check(what?: string): void {
    checkDumpComplete(this.tail, this.bytes, what);
  }
}
