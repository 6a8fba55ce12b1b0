/**
 * Site databases against a real, private MariaDB (Debian's mariadb-server): create, grants,
 * dump, restore, drop, refusals and undo. One server for the whole file; each step builds on
 * the previous one.
 */
import { chmodSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RootMap, createCA, createLogger, generateDbPassword, type Logger, type wire } from '@spoke/shared';
import { expectCode } from '@spoke/shared/testkit';
import { MasterConnection } from '../connection.js';
import type { AgentTrees } from '../sync.js';
import { startMariaDb, type PrivateMariaDb } from './testserver.js';
import { SiteDatabases } from './sitedb.js';
import type { DbSettings } from './settings.js';

// A root password an option file must quote and escape correctly.
const ROOT_PW = `r00t "pw" #not-a-comment \\ 'q' ;x`;
const scratch = mkdtempSync(join(tmpdir(), 'spoke-db-test-'));
let server: PrivateMariaDb;
let dbs: SiteDatabases;
let settings: DbSettings;
const logLines: string[] = [];
const log: Logger = createLogger({
  level: 'debug',
  destination: { write: (l: string) => void logLines.push(l) },
});
const PW = generateDbPassword();
const DEFAULT_SETTINGS: DbSettings = { impl: 'mariadb', host: '127.0.0.1', port: 3306, socket: '', adminUser: 'root', adminPassword: '', grantHosts: {} };
const SITE = { database: 'example_com', user: 'example_com', password: PW, hosts: ['web-1', '10.9.9.9'] };

function make(over: Partial<DbSettings> = {}, binDirs = ['/usr/bin', '/usr/sbin']): SiteDatabases {
  return new SiteDatabases({ settings: { ...settings, ...over }, log, binDirs, tmpDir: join(scratch, 'tmp') });
}

async function q(sql: string, params: unknown[] = []): Promise<Record<string, unknown>[]> {
  const c = await server.connect();
  try {
    const [rows] = await c.query(sql, params);
    return rows as Record<string, unknown>[];
  } finally {
    await c.end();
  }
}

/** Databases, accounts and grants: what every refusal must leave as it was. */
async function snapshot(): Promise<unknown> {
  const dbsNow = (await q('SHOW DATABASES')).map((r) => r.Database);
  const users = await q("SELECT User, Host FROM mysql.user WHERE User NOT IN ('root', 'mariadb.sys', 'spoke_limited') ORDER BY User, Host");
  const grants = await q('SELECT Db, User, Host FROM mysql.db ORDER BY Db, User, Host');
  const tables = await q(
    "SELECT TABLE_SCHEMA, TABLE_NAME, TABLE_ROWS FROM information_schema.TABLES WHERE TABLE_SCHEMA NOT IN ('mysql', 'information_schema', 'performance_schema', 'sys') ORDER BY 1, 2",
  );
  return { dbsNow, users, grants, tables: tables.map((t) => `${String(t.TABLE_SCHEMA)}.${String(t.TABLE_NAME)}`) };
}

async function readAll(r: Readable): Promise<string> {
  const chunks: Buffer[] = [];
  await pipeline(
    r,
    new Writable({
      write(c: Buffer, _e, cb) {
        chunks.push(c);
        cb();
      },
    }),
  );
  return Buffer.concat(chunks).toString('utf8');
}

beforeAll(async () => {
  server = await startMariaDb(join(scratch, 'mariadb'), ROOT_PW);
  settings = {
    impl: 'mariadb',
    host: '127.0.0.1',
    port: server.port,
    socket: '',
    adminUser: 'root',
    adminPassword: ROOT_PW,
    grantHosts: { 'web-1': ['127.0.0.1'] },
  };
  dbs = make();
  // A database whose name the site's grant would match if `_` were left a wildcard.
  await q('CREATE DATABASE examplexcom');
  await q('CREATE TABLE examplexcom.secret (v TEXT)');
});

afterAll(async () => {
  await server?.stop();
  rmSync(scratch, { recursive: true, force: true });
});

describe('site databases on a real MariaDB', () => {
  it('creates the database and one account per host, granted on that database only', async () => {
    const r = await dbs.createSiteDb(SITE);
    expect(r).toEqual({ database: 'example_com', user: 'example_com', hosts: ['10.9.9.9', '127.0.0.1'], added: ['10.9.9.9', '127.0.0.1'], removed: [] });
    const [schema] = await q('SELECT DEFAULT_CHARACTER_SET_NAME AS cs FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = ?', ['example_com']);
    expect(schema?.cs).toBe('utf8mb4');
    expect(await q("SELECT Host FROM mysql.user WHERE User = 'example_com' ORDER BY Host")).toEqual([{ Host: '10.9.9.9' }, { Host: '127.0.0.1' }]);

    const c = await server.connect('example_com', PW);
    try {
      const [seen] = await c.query('SHOW DATABASES');
      expect((seen as { Database: string }[]).map((x) => x.Database).sort()).toEqual(['example_com', 'information_schema']);
      await c.query('CREATE TABLE example_com.node (nid INT PRIMARY KEY, title VARCHAR(100)) DEFAULT CHARSET=utf8mb4');
      await c.query("INSERT INTO example_com.node VALUES (1, 'héllo wörld'), (2, 'it''s \"quoted\"'), (3, 'ünïcödé ✓')");
      await expect(c.query('SELECT * FROM examplexcom.secret')).rejects.toThrow(/denied/);
      await expect(c.query('CREATE DATABASE example_com_2')).rejects.toThrow(/denied/);
    } finally {
      await c.end();
    }
    const [grants] = await q("SHOW GRANTS FOR 'example_com'@'127.0.0.1'").then((rows) => [rows.map((x) => Object.values(x)[0]).join('\n')]);
    expect(grants).toContain('ON `example\\_com`.*');
    expect(logLines.join('')).not.toContain(PW);
  });

  it('refuses a second create of the same database or user (DB_EXISTS) and changes nothing', async () => {
    const before = await snapshot();
    const again = await expectCode(dbs.createSiteDb({ ...SITE, password: generateDbPassword() }));
    expect(again.code).toBe('DB_EXISTS');
    expect(again.message).toBe('database example_com already exists on 127.0.0.1:' + server.port + '; it was left as it is');
    const sameUser = await expectCode(dbs.createSiteDb({ ...SITE, database: 'other_com' }));
    expect(sameUser).toMatchObject({ code: 'DB_EXISTS' });
    expect(sameUser.message).toContain('database user example_com already exists');
    expect(await snapshot()).toEqual(before);
    // the old password still works: nothing was overwritten
    const c = await server.connect('example_com', PW, 'example_com');
    await c.end();
  });

  it('refuses names, hosts and passwords outside the rules (INVALID_ARGUMENT) before touching the server', async () => {
    const before = await snapshot();
    const bad = [
      { ...SITE, database: 'bad-name' },
      { ...SITE, database: 'x`; DROP DATABASE examplexcom; --' },
      { ...SITE, database: 'mysql' },
      { ...SITE, database: 'new_db', user: 'root' },
      { ...SITE, database: 'new_db', user: "u'@'%" },
      { ...SITE, database: 'new_db', user: 'u'.repeat(33) },
      { ...SITE, database: 'new_db', user: 'new_db', hosts: ["h' IDENTIFIED BY 'x"] },
      { ...SITE, database: 'new_db', user: 'new_db', hosts: [] },
      { ...SITE, database: 'new_db', user: 'new_db', password: 'short' },
    ];
    for (const spec of bad) expect((await expectCode(dbs.createSiteDb(spec))).code, JSON.stringify(spec)).toBe('INVALID_ARGUMENT');
    expect((await expectCode(dbs.dumpSiteDb('a`b'))).code).toBe('INVALID_ARGUMENT');
    expect((await expectCode(dbs.dropSiteDb({ database: 'ok_db', user: 'root', hosts: [] }))).code).toBe('INVALID_ARGUMENT');
    expect(await snapshot()).toEqual(before);
  });

  it('grants for another host only: the user can no longer connect from 127.0.0.1', async () => {
    const r = await dbs.setGrants({ ...SITE, hosts: ['10.9.9.9'] });
    expect(r).toMatchObject({ hosts: ['10.9.9.9'], added: [], removed: ['127.0.0.1'] });
    expect(await q("SELECT Host FROM mysql.user WHERE User = 'example_com'")).toEqual([{ Host: '10.9.9.9' }]);
    await expect(server.connect('example_com', PW)).rejects.toThrow(/Access denied/);
    // and back, with a new password; the host that stays gets it too
    const pw2 = generateDbPassword();
    const back = await dbs.setGrants({ ...SITE, password: pw2, hosts: ['web-1', '10.9.9.9'] });
    expect(back).toMatchObject({ hosts: ['10.9.9.9', '127.0.0.1'], added: ['127.0.0.1'], removed: [] });
    await expect(server.connect('example_com', PW)).rejects.toThrow(/Access denied/);
    const c = await server.connect('example_com', pw2, 'example_com');
    const [rows] = await c.query('SELECT COUNT(*) AS n FROM node');
    expect(rows).toEqual([{ n: 3 }]);
    await c.end();
    await dbs.setGrants({ ...SITE, hosts: ['web-1', '10.9.9.9'] }); // the original password again
    expect((await expectCode(dbs.setGrants({ ...SITE, database: 'nope_com' }))).code).toBe('DB_NOT_FOUND');
  });

  let dump = '';
  it('dumps a database with its rows, routines and triggers, ending with the completion line', async () => {
    const c = await server.connect('root', ROOT_PW, 'example_com'); // as an application would: unqualified names
    await c.query('CREATE TRIGGER node_bi BEFORE INSERT ON node FOR EACH ROW SET NEW.title = TRIM(NEW.title)');
    await c.query('CREATE PROCEDURE count_nodes() SELECT COUNT(*) FROM node');
    await c.end();
    dump = await readAll(await dbs.dumpSiteDb('example_com'));
    expect(dump).toContain('CREATE TABLE `node`');
    expect(dump).toMatch(/INSERT INTO `node` VALUES\s*\(1,'héllo wörld'\),\s*\(2,'it\\'s \\"quoted\\"'\),\s*\(3,'ünïcödé ✓'\);/);
    expect(dump).toContain('node_bi');
    expect(dump).toContain('count_nodes');
    expect(dump).not.toMatch(/CREATE DATABASE|^USE /m);
    expect(dump.trimEnd().split('\n').pop()).toMatch(/^-- Dump completed on /);
    expect(readdirSync(join(scratch, 'tmp'))).toEqual([]); // the option file is gone
  });

  it('refuses a dump the tool cut short or left empty (DB_DUMP_INCOMPLETE), and a missing database', async () => {
    const bin = join(scratch, 'fakebin');
    mkdirSync(bin, { recursive: true });
    const fake = (body: string) => {
      writeFileSync(join(bin, 'mariadb-dump'), `#!/bin/sh\n${body}\n`);
      chmodSync(join(bin, 'mariadb-dump'), 0o755);
      return make({}, [bin]);
    };
    writeFileSync(join(bin, 'cut.sql'), dump.slice(0, 2000));
    const cut = fake(`cat ${join(bin, 'cut.sql')}`);
    expect((await expectCode(readAll(await cut.dumpSiteDb('example_com')))).code).toBe('DB_DUMP_INCOMPLETE');
    const empty = fake('exit 0');
    expect(await expectCode(readAll(await empty.dumpSiteDb('example_com')))).toMatchObject({
      code: 'DB_DUMP_INCOMPLETE',
      message: 'dump of example_com is empty',
    });
    const failing = fake(`printf 'partial'; echo 'mariadb-dump: Got error: 2013: Lost connection' >&2; exit 2`);
    expect(await expectCode(readAll(await failing.dumpSiteDb('example_com')))).toMatchObject({
      code: 'DB_FAILED',
      message: expect.stringContaining('Lost connection'),
    });
    expect((await expectCode(dbs.dumpSiteDb('nope_com'))).code).toBe('DB_NOT_FOUND');
  });

  it('refuses to restore a truncated or empty dump and leaves the database as it was', async () => {
    const before = await snapshot();
    const truncated = dump.slice(0, dump.lastIndexOf('-- Dump completed'));
    expect((await expectCode(dbs.restoreSiteDb('example_com', Readable.from([Buffer.from(truncated)])))).code).toBe('DB_DUMP_INCOMPLETE');
    expect((await expectCode(dbs.restoreSiteDb('example_com', Readable.from([])))).code).toBe('DB_DUMP_INCOMPLETE');
    expect(await snapshot()).toEqual(before);
    expect(readdirSync(join(scratch, 'tmp'))).toEqual([]); // the spool is gone
  });

  it('restores a dump into the emptied database, and into another database (clone)', async () => {
    await q('DROP TABLE example_com.node');
    await q('DROP PROCEDURE example_com.count_nodes');
    expect(await q("SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = 'example_com'")).toEqual([]);
    // delivered in small chunks, as it arrives from the wire
    const chunks = Buffer.from(dump).reduce<Buffer[]>((acc, _b, i, all) => (i % 1000 === 0 ? [...acc, all.subarray(i, i + 1000)] : acc), []);
    const r = await dbs.restoreSiteDb('example_com', Readable.from(chunks));
    expect(r.bytes).toBe(Buffer.byteLength(dump));
    expect(await q('SELECT nid, title FROM example_com.node ORDER BY nid')).toEqual([
      { nid: 1, title: 'héllo wörld' },
      { nid: 2, title: `it's "quoted"` },
      { nid: 3, title: 'ünïcödé ✓' },
    ]);
    expect(await q("SELECT ROUTINE_NAME FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA = 'example_com'")).toEqual([{ ROUTINE_NAME: 'count_nodes' }]);

    await dbs.createSiteDb({ database: 'clone_com', user: 'clone_com', password: generateDbPassword(), hosts: ['web-1'] });
    await dbs.restoreSiteDb('clone_com', Readable.from([dump]));
    expect(await q('SELECT COUNT(*) AS n FROM clone_com.node')).toEqual([{ n: 3 }]);
    // statements aimed at another database are skipped (--one-database)
    const hostile = `USE examplexcom;\nDROP TABLE secret;\n${dump}`;
    await dbs.restoreSiteDb('clone_com', Readable.from([hostile]));
    expect(await q('SELECT COUNT(*) AS n FROM examplexcom.secret')).toEqual([{ n: 0 }]);
    expect((await expectCode(dbs.restoreSiteDb('nope_com', Readable.from([dump])))).code).toBe('DB_NOT_FOUND');
  });

  it('drops the database and every account of the user; a retry is fine', async () => {
    // an account at a host the caller no longer lists goes too
    await q("CREATE USER 'example_com'@'10.7.7.7' IDENTIFIED BY 'whatever-long-pw'");
    const r = await dbs.dropSiteDb({ database: 'example_com', user: 'example_com', hosts: ['web-1'] });
    expect(r).toEqual({ databaseExisted: true, usersDropped: ['10.7.7.7', '10.9.9.9', '127.0.0.1'] });
    expect(await q("SHOW DATABASES LIKE 'example\\_com'")).toEqual([]);
    expect(await q("SELECT Host FROM mysql.user WHERE User = 'example_com'")).toEqual([]);
    expect(await q("SELECT Db FROM mysql.db WHERE User = 'example_com'")).toEqual([]);
    expect(await dbs.dropSiteDb({ database: 'example_com', user: 'example_com', hosts: ['web-1'] })).toEqual({ databaseExisted: false, usersDropped: [] });
    expect(await q('SELECT COUNT(*) AS n FROM examplexcom.secret')).toEqual([{ n: 0 }]); // the look-alike stays
    await dbs.dropSiteDb({ database: 'clone_com', user: 'clone_com', hosts: [] });
  });

  it('undoes a create that fails half-way (the admin may create but not grant)', async () => {
    await q("CREATE USER 'spoke_limited'@'127.0.0.1' IDENTIFIED BY 'limited-admin-pw-1'");
    await q("GRANT CREATE, DROP, CREATE USER, SELECT ON *.* TO 'spoke_limited'@'127.0.0.1'");
    const limited = make({ adminUser: 'spoke_limited', adminPassword: 'limited-admin-pw-1' });
    const before = await snapshot();
    const pw = generateDbPassword();
    const r = await expectCode(limited.createSiteDb({ database: 'half_com', user: 'half_com', password: pw, hosts: ['web-1', '10.9.9.9'] }));
    expect(r.code).toBe('DB_FAILED');
    expect(r.message).toMatch(/^grant half_com@10\.9\.9\.9 on half_com: Access denied .*; undone: database half_com and user half_com dropped$/);
    expect(r.message).not.toContain(pw);
    expect(await snapshot()).toEqual(before);
    expect(logLines.join('')).not.toContain(pw);
  });

  it('says DB_UNREACHABLE for a wrong admin password or a dead server, without the password', async () => {
    const wrong = await expectCode(make({ adminPassword: 'not-the-password' }).createSiteDb({ ...SITE, database: 'x_com', user: 'x_com' }));
    expect(wrong.code).toBe('DB_UNREACHABLE');
    expect(wrong.message).toMatch(/^cannot connect to mariadb at 127\.0\.0\.1:\d+ as root: Access denied.*; check db in agent\.json$/);
    expect(wrong.message).not.toContain('not-the-password');
    const dead = await expectCode(make({ socket: join(scratch, 'no.sock'), host: '' }).dumpSiteDb('x_com'));
    expect(dead.code).toBe('DB_UNREACHABLE');
    expect(dead.message).not.toContain(ROOT_PW);
  });

  it("works over the unix socket with Debian's default root (unix_socket auth, no password), tools included", async () => {
    await q("ALTER USER root@localhost IDENTIFIED VIA mysql_native_password USING 'invalid' OR unix_socket");
    const sock = make({ socket: server.socket, host: '', port: 0, adminPassword: '' });
    await sock.createSiteDb({ database: 'sock_com', user: 'sock_com', password: generateDbPassword(), hosts: ['localhost'] });
    await q('CREATE TABLE sock_com.t (v INT)');
    await q('INSERT INTO sock_com.t VALUES (7)');
    const d = await readAll(await sock.dumpSiteDb('sock_com'));
    await q('DROP TABLE sock_com.t');
    await sock.restoreSiteDb('sock_com', Readable.from([d]));
    expect(await q('SELECT v FROM sock_com.t')).toEqual([{ v: 7 }]);
    expect(await sock.dropSiteDb({ database: 'sock_com', user: 'sock_com', hosts: ['localhost'] })).toEqual({
      databaseExisted: true,
      usersDropped: ['localhost'],
    });
  });
});

describe('account hosts (who the site user is granted to)', () => {
  const hosts = (over: Partial<DbSettings>, server: string, sent: string[]) =>
    new SiteDatabases({
      settings: { ...DEFAULT_SETTINGS, ...over },
      server,
      log,
      binDirs: [],
      tmpDir: scratch,
      connect: () => Promise.reject(new Error('unused')),
    }).accountHosts(sent);
  it.each<[string, Partial<DbSettings>, string[], string[]]>([
    ['its own name over the socket: localhost', { socket: '/run/mysqld/mysqld.sock', host: '', port: 0 }, ['db1'], ['localhost']],
    ['its own name over loopback TCP: 127.0.0.1', { host: '127.0.0.1' }, ['db1'], ['127.0.0.1']],
    ['its own name with siteHost: that host', { socket: '/s.sock', host: '', port: 0, siteHost: '10.0.0.5' }, ['db1'], ['10.0.0.5']],
    [
      'grantHosts wins for its own name',
      { socket: '/s.sock', host: '', port: 0, grantHosts: { db1: ['localhost', '127.0.0.1'] } },
      ['db1'],
      ['127.0.0.1', 'localhost'],
    ],
    [
      'another web server: as sent (or mapped)',
      { socket: '/s.sock', host: '', port: 0, grantHosts: { w2: ['10.0.0.12'] } },
      ['db1', 'w1', 'w2'],
      ['10.0.0.12', 'localhost', 'w1'],
    ],
  ])('%s', (_what, over, sent, want) => {
    expect(hosts(over, 'db1', sent)).toEqual(want);
  });
  it('without its own name (an old caller), names are used as sent', () => {
    expect(hosts({ socket: '/s.sock', host: '', port: 0 }, '', ['db1'])).toEqual(['db1']);
  });
});

describe('site databases over the agent link (connection.ts)', () => {
  async function link(db: SiteDatabases | null) {
    const ca = await createCA();
    const conn = new MasterConnection({
      log,
      master: '127.0.0.1:1',
      identity: { caPem: ca.certPem, certPem: ca.certPem, keyPem: ca.keyPem },
      roots: [],
      rootMap: new RootMap(''),
      sitePhp: { run: async () => ({}) },
      detect: async () => [],
      backoffInitialMs: 100,
      backoffMaxMs: 100,
      trees: { setClient: () => undefined } as unknown as AgentTrees,
      web: {
        configurePlatform: () => Promise.reject(new Error('unused')),
        configureSite: () => Promise.reject(new Error('unused')),
        removeSite: () => Promise.reject(new Error('unused')),
        removePlatform: () => Promise.reject(new Error('unused')),
        settingsToWebGroup: () => Promise.reject(new Error('unused')),
      },
      installer: { install: () => Promise.reject(new Error('unused')) },
      cron: { run: () => Promise.reject(new Error('unused')) },
      driftIntervalMs: 60_000,
      db,
    });
    const written: wire.AgentEvent[] = [];
    const stream = { write: (e: wire.AgentEvent) => written.push(e), cancel: () => undefined };
    (conn as unknown as { stream: unknown }).stream = stream; // as if connected
    const send = async (command: wire.MasterCommand['command']): Promise<wire.CommandResult> => {
      await (conn as unknown as { onCommand(s: unknown, c: wire.MasterCommand): Promise<void> }).onCommand(stream, { id: 'cmd-1', command });
      const ev = written.pop()?.event;
      if (ev?.$case !== 'result') throw new Error(`no result: ${JSON.stringify(ev)}`);
      expect(ev.value.id).toBe('cmd-1');
      return ev.value;
    };
    return { conn, send };
  }

  it('runs DbCreate, DbGrants and DbDrop from the wire and answers with stable codes', async () => {
    const { conn, send } = await link(dbs);
    const pw = generateDbPassword();
    const spec = { database: 'wire_com', user: 'wire_com', password: pw, hosts: ['web-1'] };
    expect(await send({ $case: 'dbCreate', value: spec })).toEqual({
      id: 'cmd-1',
      ok: true,
      errorCode: '',
      errorMessage: '',
      result: { $case: 'dbCreate', value: { hosts: ['127.0.0.1'], siteHost: '127.0.0.1', sitePort: server.port } },
    });
    const again = await send({ $case: 'dbCreate', value: spec });
    expect(again).toMatchObject({ ok: false, errorCode: 'DB_EXISTS', errorMessage: expect.stringContaining('database wire_com already exists') });
    expect(await send({ $case: 'dbGrants', value: { ...spec, hosts: ['10.9.9.9'] } })).toMatchObject({
      ok: true,
      result: { $case: 'dbGrants', value: { hosts: ['10.9.9.9'], added: ['10.9.9.9'], removed: ['127.0.0.1'] } },
    });
    expect(await send({ $case: 'dbCreate', value: { ...spec, database: 'bad-name' } })).toMatchObject({ ok: false, errorCode: 'INVALID_ARGUMENT' });
    expect(await send({ $case: 'dbDrop', value: { database: 'wire_com', user: 'wire_com', hosts: [] } })).toMatchObject({
      ok: true,
      result: { $case: 'dbDrop', value: { databaseExisted: true, usersDropped: ['10.9.9.9'] } },
    });
    expect(logLines.join('')).not.toContain(pw);
    conn.stop();
  });

  it('says DB_NOT_CONFIGURED on an agent without a db section', async () => {
    const { conn, send } = await link(null);
    const r = await send({ $case: 'dbDrop', value: { database: 'wire_com', user: 'wire_com', hosts: [] } });
    expect(r).toMatchObject({ ok: false, errorCode: 'DB_NOT_CONFIGURED', errorMessage: expect.stringContaining('add a db section to its agent.json') });
    conn.stop();
  });
});
