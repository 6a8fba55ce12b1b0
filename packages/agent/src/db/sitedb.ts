/**
 * Site databases on this agent's MariaDB/MySQL server: create (database + one account per web
 * host, granted on that database only), change the granted hosts, dump, restore, drop.
 * Every name is checked against the naming rules before it reaches SQL; passwords are never
 * logged and are masked out of server messages.
 */
import { Transform, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createReadStream, createWriteStream } from 'node:fs';
import { join } from 'node:path';
import { DumpTail, checkDbHost, checkDbName, checkDbPassword, checkDbUser, fail, isSpokeError, type Logger } from '@spoke/shared';
import { siteAddress, type DbSettings } from './settings.js';
import { describeServer, grantDbIdent, mysqlConnector, quoteIdent, run, type AdminConnect, type AdminSession } from './sql.js';
import { DUMP_ARGS, RESTORE_ARGS, StderrTail, defaultsArgs, findProgram, makeScratch, spawnTool } from './tools.js';

/** What SiteDatabases needs. */
export interface SiteDatabasesDeps {
  settings: DbSettings;
  log: Logger;
  /** Where the client tools are looked for. */
  binDirs: string[];
  /** Private scratch space (option files, spooled restores), e.g. `<state-dir>/tmp`. */
  tmpDir: string;
  /** Opens admin sessions. @default mysql2 with the settings' admin account */
  connect?: AdminConnect;
  /**
   * This agent's own server name. A web server of that name is this host: it connects from where
   * it connects to (the site address: `localhost` over the socket). "" = unknown.
   * @default ""
   */
  server?: string;
}

/** A site database and its account. */
export interface SiteDbSpec {
  database: string;
  user: string;
  password: string;
  /** Hosts the web servers connect from, as the master names them (mapped by `grantHosts`). */
  hosts: string[];
}

/** What createSiteDb / setGrants did. */
export interface SiteDbGrants {
  database: string;
  user: string;
  /** Account hosts that now hold the grant (after `grantHosts` mapping), sorted. */
  hosts: string[];
  added: string[];
  removed: string[];
}

/** What dropSiteDb did. */
export interface SiteDbDropped {
  databaseExisted: boolean;
  /** Account hosts whose account was dropped, sorted. */
  usersDropped: string[];
}

/** Site database operations against one server, as its administrator. */
export class SiteDatabases {
  private readonly s: DbSettings;
  private readonly log: Logger;
  private readonly binDirs: string[];
  private readonly tmpDir: string;
  private readonly connect: AdminConnect;
  private readonly server: string;

  constructor(deps: SiteDatabasesDeps) {
    this.server = deps.server ?? '';
    this.s = deps.settings;
    this.log = deps.log;
    this.binDirs = deps.binDirs;
    this.tmpDir = deps.tmpDir;
    this.connect = deps.connect ?? mysqlConnector(deps.settings);
  }

  /** How web servers reach this database server (agent.json db.siteHost/sitePort or host/port). */
  siteAddress(): { host: string; port: number } {
    return siteAddress(this.s);
  }

  /**
   * The account hosts for the hosts the master sent (web server names): each is checked, then
   * replaced by its `grantHosts` entry when there is one. Without an entry, this host's own name
   * (a single-server setup: web and db on one host) becomes the host the sites connect to —
   * `localhost` with a socket (MariaDB sees socket clients as localhost), 127.0.0.1 over
   * loopback TCP — since that is where such a client comes from; other names are used as sent.
   * Duplicates go.
   * @throws SpokeError INVALID_ARGUMENT
   */
  accountHosts(hosts: string[]): string[] {
    if (!Array.isArray(hosts) || hosts.length === 0) throw fail('INVALID_ARGUMENT', 'a site database needs at least one web host to grant access to');
    const out = new Set<string>();
    const self = (h: string): string[] => (this.server !== '' && h === this.server ? [siteAddress(this.s).host] : [h]);
    for (const h of hosts) for (const a of this.s.grantHosts[checkDbHost(h)] ?? self(h)) out.add(checkDbHost(a));
    return [...out].sort();
  }

  private checkSpec(spec: { database: string; user: string; password?: string; hosts: string[] }): string[] {
    checkDbName(spec.database);
    checkDbUser(spec.user);
    if (spec.user === this.s.adminUser) throw fail('INVALID_ARGUMENT', `database user ${spec.user} is this server's admin account`);
    if (spec.password !== undefined) checkDbPassword(spec.password);
    return this.accountHosts(spec.hosts);
  }

  private async session<T>(fn: (c: AdminSession) => Promise<T>): Promise<T> {
    const c = await this.connect();
    try {
      return await fn(c);
    } finally {
      await c.end();
    }
  }

  private async databaseExists(c: AdminSession, database: string): Promise<boolean> {
    const rows = await run(c, `look up database ${database}`, 'SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = ?', [database]);
    return rows.length > 0;
  }

  private async userHosts(c: AdminSession, user: string): Promise<string[]> {
    const rows = await run(c, `look up accounts of ${user}`, 'SELECT Host AS host FROM mysql.user WHERE User = ?', [user]);
    return rows.map((r) => String(r.host)).sort();
  }

  private async addAccount(c: AdminSession, database: string, user: string, host: string, password: string): Promise<void> {
    await run(c, `create account ${user}@${host}`, 'CREATE USER ?@? IDENTIFIED BY ?', [user, host, password], [password]);
    await run(c, `grant ${user}@${host} on ${database}`, `GRANT ALL PRIVILEGES ON ${grantDbIdent(database)}.* TO ?@?`, [user, host]);
  }

  /**
   * Creates the database (utf8mb4) and one account per host with the password, granted all
   * privileges on that database only. Refuses when the database or any account of the user
   * already exists, changing nothing; a failure half-way drops what this call created.
   * @throws SpokeError INVALID_ARGUMENT, DB_EXISTS, DB_UNREACHABLE, DB_FAILED
   */
  async createSiteDb(spec: SiteDbSpec): Promise<SiteDbGrants> {
    const hosts = this.checkSpec(spec);
    const { database, user, password } = spec;
    return this.session(async (c) => {
      if (await this.databaseExists(c, database)) {
        throw fail('DB_EXISTS', `database ${database} already exists on ${describeServer(this.s)}; it was left as it is`);
      }
      const existing = await this.userHosts(c, user);
      if (existing.length) {
        throw fail('DB_EXISTS', `database user ${user} already exists on ${describeServer(this.s)} (hosts: ${existing.join(', ')}); it was left as it is`);
      }
      try {
        await run(c, `create database ${database}`, `CREATE DATABASE ${quoteIdent(database)} CHARACTER SET utf8mb4 COLLATE utf8mb4_general_ci`);
      } catch (e) {
        if (isSpokeError(e) && e.details?.driverCode === 'ER_DB_CREATE_EXISTS') {
          throw fail('DB_EXISTS', `database ${database} already exists on ${describeServer(this.s)}; it was left as it is`);
        }
        throw e;
      }
      const created: string[] = [];
      try {
        for (const host of hosts) {
          await this.addAccount(c, database, user, host, password);
          created.push(host);
        }
      } catch (e) {
        const undone = await this.undoCreate(c, database, user, [...created, hosts[created.length] as string]);
        throw fail(isSpokeError(e) ? e.code : 'DB_FAILED', `${(e as Error).message}; ${undone}`);
      }
      this.log.info({ database, user, hosts }, 'site database created');
      return { database, user, hosts, added: hosts, removed: [] };
    });
  }

  /** Drops the accounts and the database a failed create made; says what it did. */
  private async undoCreate(c: AdminSession, database: string, user: string, hosts: string[]): Promise<string> {
    const problems: string[] = [];
    for (const host of hosts.reverse()) {
      await run(c, `drop account ${user}@${host}`, 'DROP USER IF EXISTS ?@?', [user, host]).catch((e: Error) => problems.push(e.message));
    }
    await run(c, `drop database ${database}`, `DROP DATABASE IF EXISTS ${quoteIdent(database)}`).catch((e: Error) => problems.push(e.message));
    this.log.warn({ database, user, problems }, 'site database create failed; undone');
    return problems.length ? `undo incomplete: ${problems.join('; ')}` : `undone: database ${database} and user ${user} dropped`;
  }

  /**
   * Makes the user's accounts exactly the given hosts: creates missing ones (with the
   * password) and grants them the database, re-sets the password and grant of the ones that
   * stay, then drops the others. Additions come first, so a failure never cuts a host off
   * that was meant to stay; a retry finishes the job.
   * @throws SpokeError INVALID_ARGUMENT, DB_NOT_FOUND, DB_UNREACHABLE, DB_FAILED
   */
  async setGrants(spec: SiteDbSpec): Promise<SiteDbGrants> {
    const hosts = this.checkSpec(spec);
    const { database, user, password } = spec;
    return this.session(async (c) => {
      if (!(await this.databaseExists(c, database))) throw fail('DB_NOT_FOUND', `database ${database} does not exist on ${describeServer(this.s)}`);
      const before = await this.userHosts(c, user);
      const added = hosts.filter((h) => !before.includes(h));
      const removed = before.filter((h) => !hosts.includes(h));
      for (const host of hosts) {
        if (added.includes(host)) {
          await this.addAccount(c, database, user, host, password);
        } else {
          await run(c, `set password of ${user}@${host}`, 'ALTER USER ?@? IDENTIFIED BY ?', [user, host, password], [password]);
          await run(c, `grant ${user}@${host} on ${database}`, `GRANT ALL PRIVILEGES ON ${grantDbIdent(database)}.* TO ?@?`, [user, host]);
        }
      }
      for (const host of removed) await run(c, `drop account ${user}@${host}`, 'DROP USER IF EXISTS ?@?', [user, host]);
      this.log.info({ database, user, hosts, added, removed }, 'site database grants set');
      return { database, user, hosts, added, removed };
    });
  }

  /**
   * Drops every account of the user (the given hosts and any other host it has) and the
   * database. Missing ones are fine, so a retry works.
   * @throws SpokeError INVALID_ARGUMENT, DB_UNREACHABLE, DB_FAILED
   */
  async dropSiteDb(spec: { database: string; user: string; hosts: string[] }): Promise<SiteDbDropped> {
    checkDbName(spec.database);
    checkDbUser(spec.user);
    if (spec.user === this.s.adminUser) throw fail('INVALID_ARGUMENT', `database user ${spec.user} is this server's admin account`);
    const given = spec.hosts.length ? this.accountHosts(spec.hosts) : [];
    const { database, user } = spec;
    return this.session(async (c) => {
      const hosts = [...new Set([...given, ...(await this.userHosts(c, user))])].sort();
      const usersDropped: string[] = [];
      for (const host of hosts) {
        const rows = await run(c, `look up account ${user}@${host}`, 'SELECT 1 AS x FROM mysql.user WHERE User = ? AND Host = ?', [user, host]);
        await run(c, `drop account ${user}@${host}`, 'DROP USER IF EXISTS ?@?', [user, host]);
        if (rows.length) usersDropped.push(host);
      }
      const databaseExisted = await this.databaseExists(c, database);
      await run(c, `drop database ${database}`, `DROP DATABASE IF EXISTS ${quoteIdent(database)}`);
      this.log.info({ database, user, databaseExisted, usersDropped }, 'site database dropped');
      return { databaseExisted, usersDropped };
    });
  }

  /**
   * Dumps a database (`--single-transaction --routines --triggers`, no CREATE DATABASE/USE, so
   * it restores under any name). The stream errors with DB_DUMP_INCOMPLETE when the dump is
   * empty or lacks its completion line, and with DB_FAILED when the tool fails; a consumer
   * that stops reading (destroys the stream) stops the tool.
   * @throws SpokeError INVALID_ARGUMENT, DB_NOT_FOUND, DB_UNREACHABLE, DB_CLIENT_MISSING
   */
  async dumpSiteDb(database: string): Promise<Readable> {
    checkDbName(database);
    const program = findProgram('dump', this.s.impl, this.binDirs);
    await this.session(async (c) => {
      if (!(await this.databaseExists(c, database))) throw fail('DB_NOT_FOUND', `database ${database} does not exist on ${describeServer(this.s)}`);
    });
    const scratch = await makeScratch(this.tmpDir, this.s);
    const child = spawnTool(program, [...defaultsArgs(scratch.optionFile), ...DUMP_ARGS, '--', database]);
    child.stdin.end();
    const stderr = new StderrTail();
    child.stderr.on('data', (d: Buffer) => stderr.push(d));
    // the option file goes as soon as the tool is done, before the stream ends
    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null; err?: Error }>((resolve) => {
      child.once('error', (err) => resolve({ code: null, signal: null, err }));
      child.once('close', (code, signal) => resolve({ code, signal }));
    }).then(async (r) => {
      await scratch.remove().catch(() => undefined);
      return r;
    });
    const tail = new DumpTail();
    const what = `dump of ${database}`;
    const out = new Transform({
      transform(chunk: Buffer, _enc, cb) {
        tail.update(chunk);
        cb(null, chunk);
      },
      flush(cb) {
        void exited.then((r) => {
          if (r.err) return cb(fail('DB_CLIENT_MISSING', `cannot run ${program}: ${r.err.message}`));
          if (r.code !== 0)
            return cb(fail('DB_FAILED', `${program} ${database} failed (${r.signal ?? `exit ${r.code}`}): ${stderr.lastLine() || 'no message'}`));
          try {
            tail.check(what);
            cb();
          } catch (e) {
            cb(e as Error);
          }
        });
      },
    });
    child.stdout.pipe(out);
    child.once('error', (err) => out.destroy(fail('DB_CLIENT_MISSING', `cannot run ${program}: ${err.message}`)));
    out.once('close', () => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
    });
    this.log.info({ database, program }, 'site database dump started');
    return out;
  }

  /**
   * Loads a dump into an existing database with the client tool. The dump is spooled to the
   * agent's scratch dir and checked first: an empty or cut-short dump (no completion line) is
   * refused before anything touches the database. `--one-database` skips statements aimed at
   * another database.
   * @throws SpokeError INVALID_ARGUMENT, DB_NOT_FOUND, DB_DUMP_INCOMPLETE, DB_UNREACHABLE,
   *   DB_CLIENT_MISSING, DB_FAILED
   */
  async restoreSiteDb(database: string, dump: Readable): Promise<{ bytes: number }> {
    checkDbName(database);
    const program = findProgram('client', this.s.impl, this.binDirs);
    await this.session(async (c) => {
      if (!(await this.databaseExists(c, database)))
        throw fail('DB_NOT_FOUND', `database ${database} does not exist on ${describeServer(this.s)}; create it first`);
    });
    const scratch = await makeScratch(this.tmpDir, this.s);
    try {
      const spool = join(scratch.dir, 'restore.sql');
      const tail = new DumpTail();
      await pipeline(
        dump,
        new Transform({
          transform(chunk: Buffer, _enc, cb) {
            tail.update(chunk);
            cb(null, chunk);
          },
        }),
        createWriteStream(spool, { mode: 0o600 }),
      );
      tail.check(`dump to restore into ${database}`);
      const child = spawnTool(program, [...defaultsArgs(scratch.optionFile), ...RESTORE_ARGS, '--', database]);
      const stderr = new StderrTail();
      child.stderr.on('data', (d: Buffer) => stderr.push(d));
      child.stdout.resume();
      const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve, reject) => {
        child.once('error', (err) => reject(fail('DB_CLIENT_MISSING', `cannot run ${program}: ${err.message}`)));
        child.once('close', (code, signal) => resolve({ code, signal }));
      });
      const feed = pipeline(createReadStream(spool), child.stdin).catch(() => undefined); // EPIPE: the exit status says why
      const r = await exited;
      await feed;
      if (r.code !== 0)
        throw fail('DB_FAILED', `${program} restore into ${database} failed (${r.signal ?? `exit ${r.code}`}): ${stderr.lastLine() || 'no message'}`);
      this.log.info({ database, bytes: tail.bytes }, 'site database restored');
      return { bytes: tail.bytes };
    } finally {
      await scratch.remove();
    }
  }
}
