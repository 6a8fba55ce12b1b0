import { describe, expect, it } from 'vitest';
import { addAgent, expectRefused, freshNamespace, snapshot } from '../testutil.js';
import { SITE_STATUS_TRANSITIONS } from './sites.js';

const existing = { kind: 'existing' as const };
const DB = { name: 'example_com', user: 'example_com', password: 'p'.repeat(32) };

function setup() {
  const f = freshNamespace();
  addAgent(f.ns, 'web1');
  addAgent(f.ns, 'db1');
  addAgent(f.ns, 'm1');
  f.ns.createCluster('web', ['m1']);
  f.ns.addPlatform({ name: 'wp', path: '/var/www/wp', server: 'web1', source: existing });
  f.ns.createSite({ domain: 'example.com', platform: 'wp', dbServer: 'db1', aliases: ['www.example.com'], status: 'installing', db: DB, salt: 's'.repeat(64) });
  return f;
}

describe('site rows for the site tasks', () => {
  it('stores the database facts and salt; the password and salt only come back through siteSecrets', () => {
    const { ns } = setup();
    const s = ns.getSite('example.com');
    expect(s).toMatchObject({
      status: 'installing',
      dbServer: 'db1',
      dbName: 'example_com',
      dbUser: 'example_com',
      dbHost: null,
      dbPort: null,
      installedMs: null,
    });
    expect(JSON.stringify(s)).not.toContain(DB.password);
    expect(JSON.stringify(ns.listSites())).not.toContain(DB.password);
    expect(ns.siteSecrets('example.com')).toEqual({ dbPassword: DB.password, salt: 's'.repeat(64) });
    ns.setSiteDbAddress('example.com', '10.0.0.5', 3307);
    ns.setSiteStatus('example.com', 'installed', { installedMs: 42 });
    expect(ns.getSite('www.example.com')).toMatchObject({ dbHost: '10.0.0.5', dbPort: 3307, status: 'installed', installedMs: 42 });
    ns.setSiteStatus('example.com', 'disabled');
    expect(ns.getSite('example.com')).toMatchObject({ status: 'disabled', installedMs: 42 });
  });

  it('knows the database names taken per db server', () => {
    const { ns } = setup();
    expect([...ns.dbNamesTaken('db1')]).toEqual(['example_com']);
    expect([...ns.dbNamesTaken('web1')]).toEqual([]);
  });

  it('refuses a database name already used on the same db server (DB_EXISTS), not on another', () => {
    const { db, ns } = setup();
    expectRefused(db, 'DB_EXISTS', () => ns.createSite({ domain: 'other.com', platform: 'wp', dbServer: 'db1', db: DB }));
    expect(ns.createSite({ domain: 'other.com', platform: 'wp', dbServer: 'web1', db: DB }).dbName).toBe('example_com');
  });

  it('refuses a database without a db server, and a cluster as db server', () => {
    const { db, ns } = setup();
    expectRefused(db, 'INVALID_ARGUMENT', () => ns.createSite({ domain: 'x.com', platform: 'wp', db: { ...DB, name: 'x_com', user: 'x_com' } }));
    expectRefused(db, 'SERVER_IS_CLUSTER', () => ns.createSite({ domain: 'x.com', platform: 'wp', dbServer: 'web' }));
    expectRefused(db, 'SERVER_NOT_FOUND', () => ns.createSite({ domain: 'x.com', platform: 'wp', dbServer: 'nope' }));
  });

  it('checkNewSite refuses like createSite and never writes', () => {
    const { db, ns } = setup();
    expectRefused(db, 'DOMAIN_TAKEN', () => ns.checkNewSite({ domain: 'www.example.com', platform: 'wp' }));
    expectRefused(db, 'PLATFORM_NOT_FOUND', () => ns.checkNewSite({ domain: 'new.com', platform: 'nope' }));
    const before = JSON.stringify(snapshot(db));
    ns.checkNewSite({ domain: 'new.com', platform: 'wp', dbServer: 'db1', aliases: ['www.new.com'] });
    expect(JSON.stringify(snapshot(db))).toBe(before);
  });
});

describe('aliases', () => {
  it('adds and removes an alias; a removed alias is free again', () => {
    const { ns } = setup();
    expect(ns.addAlias('example.com', 'blog.example.com').aliases).toEqual(['blog.example.com', 'www.example.com']);
    expect(ns.removeAlias('example.com', 'www.example.com').aliases).toEqual(['blog.example.com']);
    expect(ns.createSite({ domain: 'www.example.com', platform: 'wp' }).domain).toBe('www.example.com');
  });

  it('refuses to remove what is not an alias of that site (ALIAS_NOT_FOUND), changing nothing', () => {
    const { db, ns } = setup();
    ns.createSite({ domain: 'other.com', platform: 'wp', aliases: ['www.other.com'] });
    expectRefused(db, 'ALIAS_NOT_FOUND', () => ns.removeAlias('example.com', 'www.other.com'));
    expectRefused(db, 'ALIAS_NOT_FOUND', () => ns.removeAlias('example.com', 'nothing.example.com'));
    const e = expectRefused(db, 'ALIAS_NOT_FOUND', () => ns.removeAlias('example.com', 'example.com'));
    expect(e.message).toContain("the site's own domain");
    expectRefused(db, 'SITE_NOT_FOUND', () => ns.removeAlias('nope.com', 'www.example.com'));
  });

  it('alias operations name the site by its own domain', () => {
    const { db, ns } = setup();
    expectRefused(db, 'SITE_NOT_FOUND', () => ns.addAlias('www.example.com', 'blog.example.com'));
    expectRefused(db, 'INVALID_DOMAIN', () => ns.addAlias('example.com', 'Bad_Name'));
  });

  it('checkNewAlias / checkRemoveAlias refuse like the real thing and never write', () => {
    const { db, ns } = setup();
    expectRefused(db, 'DOMAIN_TAKEN', () => ns.checkNewAlias('example.com', 'www.example.com'));
    expectRefused(db, 'ALIAS_NOT_FOUND', () => ns.checkRemoveAlias('example.com', 'x.example.com'));
    const before = JSON.stringify(snapshot(db));
    ns.checkNewAlias('example.com', 'new.example.com');
    ns.checkRemoveAlias('example.com', 'www.example.com');
    expect(JSON.stringify(snapshot(db))).toBe(before);
  });
});

describe('deleting a site', () => {
  it('frees its domain and aliases; its database names are free on that server again', () => {
    const { ns } = setup();
    ns.deleteSite('example.com');
    expect(ns.listSites()).toEqual([]);
    expect(ns.dbNamesTaken('db1').size).toBe(0);
    expect(ns.createSite({ domain: 'www.example.com', platform: 'wp', aliases: ['example.com'], dbServer: 'db1', db: DB }).aliases).toEqual(['example.com']);
    expect(ns.getPlatform('wp').sites).toEqual(['www.example.com']);
  });

  it('refuses an unknown site or an alias name (SITE_NOT_FOUND), changing nothing', () => {
    const { db, ns } = setup();
    expectRefused(db, 'SITE_NOT_FOUND', () => ns.deleteSite('nope.com'));
    expectRefused(db, 'SITE_NOT_FOUND', () => ns.deleteSite('www.example.com'));
    expectRefused(db, 'SITE_NOT_FOUND', () => ns.setSiteStatus('nope.com', 'installed'));
    expectRefused(db, 'SITE_NOT_FOUND', () => ns.setSiteDbAddress('nope.com', 'h', 1));
  });

  it('a server holding a site database cannot be removed until the site is deleted', () => {
    const { db, ns } = setup();
    expectRefused(db, 'SERVER_HAS_SITE_DATABASES', () => ns.removeServer('db1'));
    ns.deleteSite('example.com');
    ns.removeServer('db1');
    expect(ns.hasServer('db1')).toBe(false);
  });
});

describe('site status transitions', () => {
  it('every status has a row in the table, naming only known statuses', () => {
    const all = Object.keys(SITE_STATUS_TRANSITIONS).sort();
    expect(all).toEqual(['deleting', 'disabled', 'failed', 'installed', 'installing', 'pending']);
    for (const to of Object.values(SITE_STATUS_TRANSITIONS).flat()) expect(all).toContain(to);
  });

  it('the changes the site tasks make pass: install, disable/enable, delete and its undo', () => {
    const { ns } = setup();
    expect(ns.setSiteStatus('example.com', 'installed')).toBe('installing');
    expect(ns.setSiteStatus('example.com', 'installed')).toBe('installed'); // the same status again
    ns.setSiteStatus('example.com', 'disabled');
    ns.setSiteStatus('example.com', 'installed');
    const before = ns.setSiteStatus('example.com', 'deleting');
    ns.setSiteStatus('example.com', before);
    expect(ns.getSite('example.com').status).toBe('installed');
  });

  it('refuses a change the table does not allow (INTERNAL) and changes nothing', () => {
    const { db, ns } = setup();
    const e = expectRefused(db, 'INTERNAL', () => ns.setSiteStatus('example.com', 'disabled'));
    expect(e.message).toBe('site example.com: illegal status change installing -> disabled');
    ns.setSiteStatus('example.com', 'installed');
    expectRefused(db, 'INTERNAL', () => ns.setSiteStatus('example.com', 'installing'));
    expectRefused(db, 'INTERNAL', () => ns.setSiteStatus('example.com', 'pending'));
    expectRefused(db, 'SITE_NOT_FOUND', () => ns.setSiteStatus('nope.test', 'installed'));
  });
});
