/**
 * Clone and migrate: what is refused at submit (nothing queued or reserved), the task each
 * queues (entity, locks, params), their step lists, and the namespace switch. The steps run
 * against real agents in test/e2e/site-migrate.test.ts.
 */
import { mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { TaskContext } from '../tasks/engine.js';
import { addAgent, expectRefused, siteTasksHarness } from '../testutil.js';
import type { SiteTasks } from './tasks.js';
import type { SiteMover } from './migrate.js';

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function setup() {
  const h = siteTasksHarness('spoke-migrate-');
  dirs.push(h.root);
  const f = h;
  for (const s of ['web1', 'web2']) {
    addAgent(f.ns, s);
    f.ns.recordDetectedServices(s, [
      { kind: 'http', impl: 'nginx', version: '1' },
      { kind: 'db', impl: 'mariadb', version: '10.11' },
    ]);
  }
  const platform = (name: string, server: string, kind: string) => {
    f.ns.addPlatform({ name, path: `/var/www/${name}`, server, source: { kind: 'existing' } });
    f.ns.setRegistry(name, JSON.stringify({ kind, coreVersion: '6.1', sites: [] }));
  };
  platform('wp', 'web1', 'wordpress');
  platform('wp2', 'web2', 'wordpress');
  platform('d7', 'web2', 'drupal7');
  f.ns.createSite({
    domain: 'blog.test',
    platform: 'wp',
    dbServer: 'web1',
    aliases: ['www.blog.test'],
    status: 'installed',
    db: { name: 'blog_test', user: 'blog_test', password: 'p'.repeat(32) },
    salt: 's'.repeat(64),
  });
  f.ns.setSiteDbAddress('blog.test', '127.0.0.1', 3306);
  return h;
}

const mover = (sites: SiteTasks) => (sites as unknown as { mover: SiteMover }).mover;
const ctxOf = (kind: string, params: Record<string, unknown>) => ({ task: { id: 7, kind, params } }) as unknown as TaskContext;

describe('site clone / migrate: refusals at submit', () => {
  it('refuses what cannot work, queueing and reserving nothing', () => {
    const { sites, ns, db, tasks } = setup();
    expectRefused(db, 'SITE_NOT_FOUND', () => sites.clone({ domain: 'www.blog.test', newDomain: 'copy.test' }));
    expectRefused(db, 'SITE_NOT_FOUND', () => sites.clone({ domain: 'nope.test', newDomain: 'copy.test' }));
    expectRefused(db, 'DOMAIN_TAKEN', () => sites.clone({ domain: 'blog.test', newDomain: 'www.blog.test' }));
    expectRefused(db, 'INVALID_DOMAIN', () => sites.clone({ domain: 'blog.test', newDomain: 'not a domain' }));
    expectRefused(db, 'INVALID_ARGUMENT', () => sites.clone({ domain: 'blog.test', newDomain: 'copy.test', platform: 'd7' }));
    expectRefused(db, 'PLATFORM_NOT_FOUND', () => sites.migrate({ domain: 'blog.test', platform: 'nope' }));
    const same = expectRefused(db, 'INVALID_ARGUMENT', () => sites.migrate({ domain: 'blog.test', platform: 'wp' }));
    expect(same.message).toBe('site blog.test is on platform wp already; name another --platform, or a new name with --domain');
    expectRefused(db, 'SERVER_NOT_FOUND', () => sites.migrate({ domain: 'blog.test', platform: 'wp2', dbServer: 'nope' }));
    mkdirSync(join(sites.trees.hostPath('/var/www/wp2'), 'sites/news.test'), { recursive: true });
    expectRefused(db, 'SITE_DIR_EXISTS', () => sites.migrate({ domain: 'blog.test', platform: 'wp2', newDomain: 'news.test' }));
    ns.setSiteStatus('blog.test', 'deleting');
    expectRefused(db, 'SITE_NOT_INSTALLED', () => sites.migrate({ domain: 'blog.test', platform: 'wp2' }));
    expect(tasks.list({})).toEqual([]);
  });
});

describe('site clone / migrate: the task and its steps', () => {
  it('clone: runs on the new name, holds the source site and the target platform; the copy steps then finish', () => {
    const { sites } = setup();
    const t = sites.clone({ domain: 'blog.test', newDomain: 'Copy.Test' });
    expect(t).toMatchObject({ kind: 'site.clone', entity: 'site:copy.test', state: 'queued' });
    expect(t.params).toEqual({ domain: 'blog.test', platform: 'wp', newDomain: 'copy.test', target: 'wp', dbServer: 'web1' });
    const steps = mover(sites).steps(ctxOf('site.clone', t.params), {});
    expect(steps.map((s) => s.name)).toEqual([
      'reserve',
      'dump-database',
      'create-database',
      'restore-database',
      'write-files',
      'converge',
      'copy-files',
      'update-database',
      'configure-site',
      'finish',
    ]);
    expect(steps.filter((s) => s.commit)).toEqual([]);
    // everything that changes something before the end has an undo
    for (const name of ['reserve', 'dump-database', 'create-database', 'write-files', 'copy-files', 'configure-site'])
      expect(steps.find((s) => s.name === name)?.undo, name).toBeDefined();
  });

  it('migrate: runs on the site, holds both platforms and the new name; the switch is the point of no return, the removals come after it', () => {
    const { sites, db } = setup();
    const t = sites.migrate({ domain: 'blog.test', platform: 'wp2', newDomain: 'news.test', dbServer: 'web2' });
    expect(t).toMatchObject({ kind: 'site.migrate', entity: 'site:blog.test' });
    // a rename: the old name redirects for the default grace (30 days)
    expect(t.params).toEqual({ domain: 'blog.test', platform: 'wp', newDomain: 'news.test', target: 'wp2', dbServer: 'web2', redirectOldForS: 2_592_000 });
    const locks = db.prepare('SELECT locks_json FROM tasks WHERE id = ?').get(t.id) as { locks_json: string };
    expect(JSON.parse(locks.locks_json)).toEqual(['site:blog.test', 'platform:wp', 'platform:wp2', 'site:news.test']);
    const steps = mover(sites).steps(ctxOf('site.migrate', t.params), {});
    const names = steps.map((s) => s.name);
    expect(names).toEqual([
      'backup',
      'reserve',
      'dump-database',
      'create-database',
      'restore-database',
      'write-files',
      'converge',
      'copy-files',
      'update-database',
      'configure-site',
      'remove-old-vhost',
      'switch',
      'https-follow',
      'drop-old-database',
      'remove-old-dir',
      'delete-old-files',
      'redirect-old-name',
      'finish',
    ]);
    expect(steps.filter((s) => s.commit).map((s) => s.name)).toEqual(['switch']);
    expect(steps.find((s) => s.name === 'remove-old-vhost')?.undo).toBeDefined();
    // the default db server is the site's own
    const same = sites.migrate({ domain: 'blog.test', platform: 'wp2' });
    expect(same.params).toMatchObject({ newDomain: 'blog.test', dbServer: 'web1' });
    // keeping the name: no old name to redirect
    expect('redirectOldForS' in same.params).toBe(false);
    expect(
      mover(sites)
        .steps(ctxOf('site.migrate', same.params), {})
        .map((s) => s.name),
    ).not.toContain('redirect-old-name');
  });

  it('migrate --redirect-old-for: seconds kept in the params (0: none); anything else refused before a task exists', () => {
    const { sites } = setup();
    expect(sites.migrate({ domain: 'blog.test', platform: 'wp2', newDomain: 'n1.test', redirectOldForS: 0 }).params).toMatchObject({ redirectOldForS: 0 });
    for (const bad of [-1, 1.5]) {
      expect(() => sites.migrate({ domain: 'blog.test', platform: 'wp2', newDomain: 'n2.test', redirectOldForS: bad })).toThrow(
        /--redirect-old-for must be a duration such as 30d, 12h or 0/,
      );
    }
  });
});

describe('namespace: relocateSite (the switch)', () => {
  const to = (domain: string, over: Partial<{ platform: string; dbServer: string; name: string }> = {}) => ({
    domain,
    platform: over.platform ?? 'wp2',
    dbServer: over.dbServer ?? 'web2',
    db: { name: over.name ?? 'news_test', user: over.name ?? 'news_test', password: 'q'.repeat(32) },
    dbHost: '10.0.0.2',
    dbPort: 3307,
    salt: 's'.repeat(64),
  });
  /** The reservation row a migrate to news.test made. */
  const reserveNews = (ns: ReturnType<typeof setup>['ns']) =>
    ns.createSite({
      domain: 'news.test',
      platform: 'wp2',
      dbServer: 'web2',
      status: 'installing',
      db: { name: 'news_test', user: 'news_test', password: 'q'.repeat(32) },
      salt: 's'.repeat(64),
    });

  it('renames: the reservation is replaced, aliases follow, the old name is free; status and install time are kept', () => {
    const { ns } = setup();
    ns.setSiteStatus('blog.test', 'disabled', { installedMs: 42 });
    reserveNews(ns);
    const s = ns.relocateSite('blog.test', to('news.test'));
    expect(s).toMatchObject({
      domain: 'news.test',
      platform: 'wp2',
      server: 'web2',
      dbServer: 'web2',
      dbName: 'news_test',
      dbHost: '10.0.0.2',
      dbPort: 3307,
      aliases: ['www.blog.test'],
      status: 'disabled',
      installedMs: 42,
    });
    expect(ns.getSite('www.blog.test').domain).toBe('news.test');
    expect(() => ns.getSite('blog.test')).toThrow(/SITE_NOT_FOUND|no site named/);
    expect(ns.listSites().map((x) => x.domain)).toEqual(['news.test']);
    expect(ns.siteSecrets('news.test').dbPassword).toBe('q'.repeat(32));
    ns.checkNewSite({ domain: 'blog.test', platform: 'wp', dbServer: 'web1' });
    expect(ns.dbNamesTaken('web1')).toEqual(new Set());
  });

  it("renames: the site's HTTPS row and cron history follow it", () => {
    const { ns, db } = setup();
    db.prepare("INSERT INTO site_https (domain, enabled, source, cert_id) VALUES ('blog.test', 1, 'self-signed', 'abc')").run();
    db.prepare("INSERT INTO cron_runs (site, started_ms, duration_ms, ok, failures, message, kind) VALUES ('blog.test', 1, 2, 1, 0, 'ok', 'schedule')").run();
    reserveNews(ns);
    ns.relocateSite('blog.test', to('news.test'));
    expect(db.prepare('SELECT domain, cert_id FROM site_https').all()).toEqual([{ domain: 'news.test', cert_id: 'abc' }]);
    expect(db.prepare('SELECT site FROM cron_runs').all()).toEqual([{ site: 'news.test' }]);
  });

  it('keeps the domain: the row takes the new platform and database', () => {
    const { ns } = setup();
    const s = ns.relocateSite('blog.test', to('blog.test', { dbServer: 'web1', name: 'blog_test_2' }));
    expect(s).toMatchObject({ domain: 'blog.test', platform: 'wp2', dbServer: 'web1', dbName: 'blog_test_2', aliases: ['www.blog.test'], status: 'installed' });
    expect(ns.dbNamesTaken('web1')).toEqual(new Set(['blog_test_2']));
  });

  it('refuses a new name held by another site or alias, and db names another site uses, changing nothing', () => {
    const { ns, db } = setup();
    ns.createSite({
      domain: 'other.test',
      platform: 'wp2',
      dbServer: 'web2',
      status: 'installed',
      db: { name: 'news_test', user: 'news_test', password: 'q'.repeat(32) },
    });
    expectRefused(db, 'DOMAIN_TAKEN', () => ns.relocateSite('blog.test', to('other.test', { name: 'x_test' })));
    expectRefused(db, 'DB_EXISTS', () => ns.relocateSite('blog.test', to('blog.test')));
    expectRefused(db, 'SITE_NOT_FOUND', () => ns.relocateSite('nope.test', to('news.test')));
  });
});
