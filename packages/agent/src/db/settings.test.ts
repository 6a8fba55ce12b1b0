import { mkdtempSync, rmSync, writeFileSync, chmodSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { expectCode } from '@spoke/shared/testkit';
import { compileAgentOptions } from '../config.js';
import { parseDbSettings } from './settings.js';
import { driverMessage, grantDbIdent, quoteIdent } from './sql.js';
import { clientOptions, optionValue } from './tools.js';

const DEFAULTS = { impl: 'mariadb', host: '127.0.0.1', port: 3306, socket: '', adminUser: 'root', adminPassword: '', grantHosts: {} };

describe('agent.json db', () => {
  it.each([
    [undefined, null],
    [{}, DEFAULTS],
    [{ socket: '/run/mysqld/mysqld.sock' }, { ...DEFAULTS, host: '', port: 0, socket: '/run/mysqld/mysqld.sock' }],
    [
      { impl: 'mysql', host: 'db.internal', port: 3307, adminUser: 'spoke', adminPassword: 'p"w#\\x' },
      { ...DEFAULTS, impl: 'mysql', host: 'db.internal', port: 3307, adminUser: 'spoke', adminPassword: 'p"w#\\x' },
    ],
    [{ host: '::1' }, { ...DEFAULTS, host: '::1' }],
    [
      { siteHost: '10.0.0.5', sitePort: 3307 },
      { ...DEFAULTS, siteHost: '10.0.0.5', sitePort: 3307 },
    ],
    [
      { grantHosts: { 'web-1': ['10.0.0.11', '10.0.0.11'], master: ['localhost', '127.0.0.1'] } },
      { ...DEFAULTS, grantHosts: { 'web-1': ['10.0.0.11'], master: ['localhost', '127.0.0.1'] } },
    ],
  ])('%j → %j', (db, want) => {
    expect(parseDbSettings(db)).toEqual(want);
  });

  it.each([
    [null, 'db must be an object'],
    [[], 'db must be an object'],
    [{ adminPasswd: 'x' }, 'db.adminPasswd is not a known setting'],
    [{ impl: 'postgres' }, 'db.impl must be mariadb or mysql'],
    [{ socket: 'run/mysqld.sock' }, 'db.socket must be an absolute, normalised path'],
    [{ socket: '/run/../x.sock' }, 'db.socket must be an absolute, normalised path'],
    [{ socket: '/run/mysqld.sock', port: 3306 }, 'db.socket and db.host/db.port exclude each other'],
    [{ host: 'a b' }, 'db.host is not a host name or address'],
    [{ host: '' }, 'db.host is not a host name or address'],
    [{ port: 0 }, 'db.port must be a port number'],
    [{ siteHost: 'a b' }, 'db.siteHost is not a host name or address'],
    [{ sitePort: 70000 }, 'db.sitePort must be a port number'],
    [{ port: '3306' }, 'db.port must be a port number'],
    [{ adminUser: '' }, 'db.adminUser must be 1-80 characters'],
    [{ adminUser: 7 }, 'db.adminUser must be a string'],
    [{ adminPassword: 'a\nb' }, 'db.adminPassword must not contain control characters'],
    [{ adminPassword: 12345 }, 'db.adminPassword must be a string'],
    [{ grantHosts: ['x'] }, 'db.grantHosts must be an object'],
    [{ grantHosts: { w: [] } }, 'db.grantHosts.w must be a non-empty array'],
    [{ grantHosts: { w: ["h'"] } }, 'db.grantHosts.w is not valid'],
  ])('refuses %j (CONFIG_INVALID)', (db, msg) => {
    const r = expectCode(() => parseDbSettings(db), 'CONFIG_INVALID').message;
    expect(r).toMatch(new RegExp(`^agent\\.json: ${msg.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}`));
  });

  it('never repeats the admin password in a refusal', () => {
    expect(expectCode(() => parseDbSettings({ adminPassword: 'sekr1t\n' }), 'CONFIG_INVALID').message).not.toContain('sekr1t');
  });

  it('refuses an agent.json with an admin password that others can read', () => {
    const dir = mkdtempSync(join(tmpdir(), 'spoke-dbcfg-'));
    try {
      for (const f of ['agent.crt', 'agent.key']) writeFileSync(join(dir, f), 'x');
      const file = join(dir, 'agent.json');
      const write = (db: unknown) => writeFileSync(file, JSON.stringify({ master: '127.0.0.1:7443', server: 'db1', db }));
      write({ adminPassword: 'pw' });
      chmodSync(file, 0o644);
      expect(expectCode(() => compileAgentOptions({ stateDir: dir }), 'CONFIG_INVALID').message).toBe(
        `${file} holds db.adminPassword but group or others can read it; run: chmod 600 ${file}`,
      );
      chmodSync(file, 0o600);
      expect(compileAgentOptions({ stateDir: dir }).db).toMatchObject({ adminPassword: 'pw', host: '127.0.0.1' });
      write({ socket: '/run/mysqld/mysqld.sock' }); // no password (unix_socket auth): any mode is fine
      chmodSync(file, 0o644);
      expect(compileAgentOptions({ stateDir: dir }).db).toMatchObject({ socket: '/run/mysqld/mysqld.sock' });
      write(undefined);
      expect(compileAgentOptions({ stateDir: dir }).db).toBeNull();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('quoting', () => {
  it.each([
    ['example_com', '`example_com`', '`example\\_com`'],
    ['a%b', '`a%b`', '`a\\%b`'],
    ['a`b', '`a``b`', '`a``b`'],
    ['a\\b', '`a\\b`', '`a\\\\b`'],
  ])('%j → %s, in a grant %s', (name, ident, grant) => {
    expect(quoteIdent(name)).toBe(ident);
    expect(grantDbIdent(name)).toBe(grant);
  });

  it.each([
    ['root', '"root"'],
    ['p"w', '"p\\"w"'],
    ['a\\b', '"a\\\\b"'],
    ["# not a comment; 'x'", '"# not a comment; \'x\'"'],
  ])('option value %j → %s', (v, want) => {
    expect(optionValue(v)).toBe(want);
  });

  it('refuses control characters in option values', () => {
    expectCode(() => optionValue('a\nb'), 'CONFIG_INVALID');
  });

  it('writes a [client] section for TCP or the socket', () => {
    expect(clientOptions({ ...DEFAULTS, impl: 'mariadb', adminPassword: 'p"w' })).toBe(
      '[client]\nuser="root"\npassword="p\\"w"\nhost="127.0.0.1"\nport=3306\nprotocol=tcp\n',
    );
    expect(clientOptions({ ...DEFAULTS, impl: 'mariadb', socket: '/run/mysqld/mysqld.sock', host: '', port: 0 })).toBe(
      '[client]\nuser="root"\nsocket="/run/mysqld/mysqld.sock"\nprotocol=socket\n',
    );
  });

  it('masks secrets, raw and escaped, in driver messages', () => {
    const e = { sqlMessage: "You have an error near 'IDENTIFIED BY 'it\\'s-secret'' at line 1\nmore", code: 'ER_PARSE_ERROR' };
    expect(driverMessage(e, ["it's-secret"])).toBe("You have an error near 'IDENTIFIED BY '***'' at line 1 more (ER_PARSE_ERROR)");
    expect(driverMessage(new Error('connect ECONNREFUSED 127.0.0.1:3306'))).toBe('connect ECONNREFUSED 127.0.0.1:3306');
  });
});
