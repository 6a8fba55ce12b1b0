/**
 * The admin connection to MariaDB/MySQL (mysql2), identifier quoting, and turning driver errors
 * into one-line SpokeErrors that never carry a password.
 */
import mysql from 'mysql2/promise';
import { fail, SpokeError } from '@spoke/shared';
import type { DbSettings } from './settings.js';

/** One admin session: plain queries, `?` placeholders for values. */
export interface AdminSession {
  query(sql: string, params?: unknown[]): Promise<Record<string, unknown>[]>;
  end(): Promise<void>;
}

/** Opens an admin session. @throws SpokeError DB_UNREACHABLE */
export type AdminConnect = () => Promise<AdminSession>;

/** Where the settings point, for messages: "127.0.0.1:3306" or the socket path. */
export function describeServer(s: DbSettings): string {
  return s.socket ? s.socket : `${s.host}:${s.port}`;
}

/** The mysql2 connector for the settings' admin account. */
export function mysqlConnector(s: DbSettings): AdminConnect {
  return async () => {
    let conn: mysql.Connection;
    try {
      conn = await mysql.createConnection({
        ...(s.socket ? { socketPath: s.socket } : { host: s.host, port: s.port }),
        user: s.adminUser,
        password: s.adminPassword,
        connectTimeout: 10_000,
        multipleStatements: false,
        charset: 'utf8mb4',
      });
    } catch (e) {
      throw fail(
        'DB_UNREACHABLE',
        `cannot connect to ${s.impl} at ${describeServer(s)} as ${s.adminUser}: ${driverMessage(e, [s.adminPassword])}; check db in agent.json`,
      );
    }
    conn.on('error', () => undefined); // a dropped connection fails the pending query instead
    const session: AdminSession = {
      query: async (sql, params) => {
        const [rows] = await conn.query(sql, params);
        return Array.isArray(rows) ? (rows as Record<string, unknown>[]) : [];
      },
      end: async () => {
        await conn.end().catch(() => conn.destroy());
      },
    };
    // Values are sent escaped with backslashes; make sure the session reads them that way.
    try {
      await run(session, 'prepare the admin session', "SET SESSION sql_mode = REPLACE(@@SESSION.sql_mode, 'NO_BACKSLASH_ESCAPES', '')");
    } catch (e) {
      await session.end();
      throw e;
    }
    return session;
  };
}

/** `name` quoted as an identifier: backticks, inner backticks doubled. */
export function quoteIdent(name: string): string {
  return `\`${name.replace(/`/g, '``')}\``;
}

/**
 * A database name as the database part of a GRANT/REVOKE (`db`.*): there `_` and `%` are
 * wildcards, so they are escaped with a backslash to name exactly one database.
 */
export function grantDbIdent(name: string): string {
  return quoteIdent(name.replace(/[\\_%]/g, (c) => `\\${c}`));
}

/** A driver error as one line: the server's message and code, with every secret masked. */
export function driverMessage(e: unknown, secrets: string[] = []): string {
  const err = e as { sqlMessage?: string; message?: string; code?: string; errno?: number };
  let msg = (err.sqlMessage ?? err.message ?? String(e)).replace(/\s*\n\s*/g, ' ').trim();
  for (const s of secrets) {
    // the raw value and its escaped form inside a quoted statement
    for (const form of s ? [s, mysql.escape(s).slice(1, -1)] : []) msg = msg.split(form).join('***');
  }
  return err.code ? `${msg} (${err.code})` : msg;
}

/** The server error code of a driver error ("ER_DB_CREATE_EXISTS"), or "". */
export function driverCode(e: unknown): string {
  return typeof (e as { code?: unknown }).code === 'string' ? (e as { code: string }).code : '';
}

/**
 * Runs one statement; a failure becomes `DB_FAILED: <what>: <server message>` with secrets
 * masked (the driver's error would otherwise carry the whole statement, password included).
 */
export async function run(
  session: AdminSession,
  what: string,
  sql: string,
  params: unknown[] = [],
  secrets: string[] = [],
): Promise<Record<string, unknown>[]> {
  try {
    return await session.query(sql, params);
  } catch (e) {
    if (e instanceof SpokeError) throw e;
    throw fail('DB_FAILED', `${what}: ${driverMessage(e, secrets)}`, { driverCode: driverCode(e) });
  }
}
