/**
 * What the site tasks refuse at once, before anything is queued or reserved (the steps
 * themselves run against real agents in test/e2e/sites.test.ts).
 */
import { mkdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { expectCode } from '@spoke/shared/testkit';
import { addAgent, siteTasksHarness } from '../testutil.js';

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function setup(kind = 'wordpress') {
  const h = siteTasksHarness('spoke-sitetasks-');
  dirs.push(h.root);
  const f = h;
  addAgent(f.ns, 'web1');
  f.ns.recordDetectedServices('web1', [{ kind: 'http', impl: 'nginx', version: '1' }]);
  f.ns.addPlatform({ name: 'wp', path: '/var/www/wp', server: 'web1', source: { kind: 'existing' } });
  f.ns.setRegistry('wp', JSON.stringify({ kind, coreVersion: '6.1', sites: [] }));
  return h;
}

describe('site tasks: refusals before anything is queued', () => {
  it('needs a db server: none offering one, several, or the one named', () => {
    const { sites, ns } = setup();
    const none = expectCode(() => sites.install({ domain: 'blog.test', platform: 'wp' }));
    expect([none.code, none.message]).toEqual([
      'DB_SERVER_REQUIRED',
      'no agent server reports a database service; name the one with a db section in its agent.json: --db-server NAME',
    ]);
    addAgent(ns, 'db1');
    addAgent(ns, 'db2');
    ns.recordDetectedServices('db1', [{ kind: 'db', impl: 'mariadb', version: '10.11' }]);
    expect(sites.chooseDbServer(ns.getPlatform('wp'))).toBe('db1');
    ns.recordDetectedServices('db2', [{ kind: 'db', impl: 'mariadb', version: '10.11' }]);
    const several = expectCode(() => sites.chooseDbServer(ns.getPlatform('wp')));
    expect([several.code, several.message]).toEqual(['DB_SERVER_REQUIRED', 'several servers offer a database (db1, db2); choose one: --db-server NAME']);
    // among several, the platform's own server wins
    ns.recordDetectedServices('web1', [{ kind: 'db', impl: 'mariadb', version: '10.11' }]);
    expect(sites.chooseDbServer(ns.getPlatform('wp'))).toBe('web1');
    expect(expectCode(() => sites.install({ domain: 'blog.test', platform: 'wp', dbServer: 'nope' })).code).toBe('SERVER_NOT_FOUND');
    expect(ns.listSites()).toEqual([]);
  });

  it('refuses an unverified platform and one whose kind has no settings', () => {
    const a = setup();
    a.ns.setRegistry('wp', '');
    expect(expectCode(() => a.sites.install({ domain: 'blog.test', platform: 'wp', dbServer: 'web1' })).code).toBe('PLATFORM_NOT_VERIFIED');
    const b = setup('generic');
    const e = expectCode(() => b.sites.install({ domain: 'blog.test', platform: 'wp', dbServer: 'web1' }));
    expect([e.code, e.message]).toEqual([
      'PLATFORM_KIND_UNSUPPORTED',
      'platform wp is generic; Spoke installs sites on Drupal 6/7/8+ and WordPress platforms only',
    ]);
  });

  it('refuses a taken name, a bad admin account, and a site dir already in the tree — queueing nothing', () => {
    const { sites, ns, tasks, root } = setup();
    ns.createSite({ domain: 'taken.test', platform: 'wp', aliases: ['www.taken.test'] });
    expect(expectCode(() => sites.install({ domain: 'www.taken.test', platform: 'wp', dbServer: 'web1' })).code).toBe('DOMAIN_TAKEN');
    expect(expectCode(() => sites.install({ domain: 'new.test', platform: 'wp', dbServer: 'web1', aliases: ['taken.test'] })).code).toBe('DOMAIN_TAKEN');
    expect(expectCode(() => sites.install({ domain: 'bad_name', platform: 'wp', dbServer: 'web1' })).code).toBe('INVALID_DOMAIN');
    // one domain rule for every verb: install refuses the single-label names alias add refuses
    for (const domain of ['localhost', 'intranet']) {
      const e = expectCode(() => sites.install({ domain, platform: 'wp', dbServer: 'web1' }));
      expect([e.code, e.message]).toEqual([
        'INVALID_DOMAIN',
        `domain "${domain}" is not valid: it needs at least two labels (example.com); single-label names such as localhost are not served`,
      ]);
      expect(expectCode(() => ns.addAlias('taken.test', domain)).code).toBe('INVALID_DOMAIN');
    }
    expect(expectCode(() => sites.install({ domain: 'new.test', platform: 'wp', dbServer: 'web1', adminUser: 'a b;c' })).code).toBe('INVALID_ARGUMENT');
    expect(expectCode(() => sites.install({ domain: 'new.test', platform: 'wp', dbServer: 'web1', adminEmail: 'nope' })).code).toBe('INVALID_ARGUMENT');
    expect(expectCode(() => sites.install({ domain: 'new.test', platform: 'wp', dbServer: 'web1', cronInterval: '1s' })).code).toBe('INVALID_ARGUMENT');
    mkdirSync(join(root, 'var/www/wp/sites/old.test'), { recursive: true });
    const e = expectCode(() => sites.install({ domain: 'old.test', platform: 'wp', dbServer: 'web1' }));
    expect(e.code).toBe('SITE_DIR_EXISTS');
    expect(e.message).toMatch(/^sites\/old\.test already exists in platform wp \(.*\); move it away or import the site$/);
    expect(tasks.list()).toEqual([]);
    // a good one is queued on the site, holding the platform's lock; nothing reserved yet
    expect(expectCode(() => sites.install({ domain: 'new.test', platform: 'wp', dbServer: 'web1', profile: 'standard' })).message).toBe(
      'platform wp is wordpress: --profile and --locale are for Drupal platforms',
    );
    const { task: t, adminPassword } = sites.install({ domain: 'New.Test', platform: 'wp', dbServer: 'web1', aliases: ['WWW.new.test'] });
    expect(t).toMatchObject({ kind: 'site.install', entity: 'site:new.test', state: 'queued' });
    expect(t.params).toEqual({
      domain: 'new.test',
      platform: 'wp',
      dbServer: 'web1',
      aliases: ['www.new.test'],
      kind: 'wordpress',
      title: 'new.test',
      adminUser: 'admin',
      adminEmail: 'admin@new.test',
      redirectAliases: false,
      profile: '',
      locale: '',
      cronIntervalS: 3600,
    });
    // the admin password goes back to the caller and is nowhere in the task row
    expect(adminPassword).toMatch(/^[A-Za-z0-9_-]{24}$/);
    expect(JSON.stringify(tasks.get(t.id))).not.toContain(adminPassword);
    expect(sites.install({ domain: 'redir.test', platform: 'wp', dbServer: 'web1', redirectAliases: true }).task.params).toMatchObject({
      redirectAliases: true,
    });
    expect(sites.install({ domain: 'quarter.test', platform: 'wp', dbServer: 'web1', cronInterval: '15m' }).task.params).toMatchObject({ cronIntervalS: 900 });
    expect(sites.install({ domain: 'nocron.test', platform: 'wp', dbServer: 'web1', cronInterval: 'off' }).task.params).toMatchObject({ cronIntervalS: 0 });
    expect(ns.listSites().map((s) => s.domain)).toEqual(['taken.test']);
  });

  it('delete backs up first unless --no-backup, and names the site by its domain; backup and restore refusals', () => {
    const { sites, ns, tasks } = setup();
    ns.createSite({ domain: 'blog.test', platform: 'wp', aliases: ['www.blog.test'], status: 'installed' });
    expect(expectCode(() => sites.delete('www.blog.test', { noBackup: true })).code).toBe('SITE_NOT_FOUND');
    expect(expectCode(() => sites.delete('nope.test', { noBackup: true })).code).toBe('SITE_NOT_FOUND');
    // restore: an unknown backup is refused at submit; backup and restore need an installed site
    expect(expectCode(() => sites.restore('blog.test', '20240101T000000000Z-abcdef')).code).toBe('BACKUP_NOT_FOUND');
    expect(expectCode(() => sites.restore('blog.test', '../../etc')).code).toBe('BACKUP_NOT_FOUND');
    ns.createSite({ domain: 'new.test', platform: 'wp', status: 'installing' });
    expect(expectCode(() => sites.backup('new.test')).code).toBe('SITE_NOT_INSTALLED');
    expect(tasks.list()).toEqual([]);
    expect(sites.delete('blog.test', { noBackup: false })).toMatchObject({ kind: 'site.delete', entity: 'site:blog.test', params: { noBackup: false } });
    expect(sites.backup('www.blog.test')).toMatchObject({ kind: 'site.backup', entity: 'site:blog.test', params: { domain: 'blog.test', platform: 'wp' } });
  });

  it('alias redirect on/off needs an installed site named by its domain', () => {
    const { sites, ns } = setup();
    ns.createSite({ domain: 'blog.test', platform: 'wp', aliases: ['www.blog.test'], status: 'installing' });
    expect(expectCode(() => sites.setAliasRedirect('blog.test', true)).code).toBe('SITE_NOT_INSTALLED');
    ns.setSiteStatus('blog.test', 'installed');
    expect(expectCode(() => sites.setAliasRedirect('www.blog.test', true)).message).toBe('www.blog.test is an alias of blog.test; name the site by its domain');
    expect(sites.setAliasRedirect('blog.test', true)).toMatchObject({
      kind: 'site.alias.redirect',
      entity: 'site:blog.test',
      params: { domain: 'blog.test', platform: 'wp', on: true },
    });
    expect(ns.getSite('blog.test').redirectAliases).toBe(false); // set by the task
    ns.setSiteRedirectAliases('blog.test', true);
    expect(ns.getSite('blog.test').redirectAliases).toBe(true);
  });

  it('import: refusals at submit (names, site dir, settings, db server, db names in use) queue and reserve nothing; the password stays out of the params', () => {
    const { sites, ns, tasks, root } = setup();
    const tree = join(root, 'var/www/wp');
    const config = (name: string, host = '10.0.0.9:3306') =>
      `<?php\ndefine('DB_NAME', '${name}');\ndefine('DB_USER', '${name}');\ndefine('DB_PASSWORD', 'a-long-legacy-password');\ndefine('DB_HOST', '${host}');\n$table_prefix = 'wp_';\ndefine('UPLOADS', 'sites/old.test/files');\n`;
    const put = (domain: string, content: string) => {
      mkdirSync(join(tree, 'sites', domain), { recursive: true });
      writeFileSync(join(tree, 'sites', domain, 'wp-config.php'), content);
    };
    ns.createSite({ domain: 'taken.test', platform: 'wp' });
    expect(expectCode(() => sites.import({ domain: 'taken.test', platform: 'wp' })).code).toBe('DOMAIN_TAKEN');
    const none = expectCode(() => sites.import({ domain: 'old.test', platform: 'wp' }));
    expect([none.code, none.message]).toEqual([
      'SETTINGS_NOT_FOUND',
      `no sites/old.test in platform wp (${tree}): put the site dir there first (spoke platform verify wp lists the sites found on disk)`,
    ]);
    mkdirSync(join(tree, 'sites/old.test'), { recursive: true });
    expect(expectCode(() => sites.import({ domain: 'old.test', platform: 'wp' })).message).toBe(
      "sites/old.test in platform wp has no wp-config.php; nothing tells Spoke the site's database",
    );
    symlinkSync('/etc/passwd', join(tree, 'sites/old.test/wp-config.php'));
    expect(expectCode(() => sites.import({ domain: 'old.test', platform: 'wp' })).code).toBe('SETTINGS_UNREADABLE');
    rmSync(join(tree, 'sites/old.test/wp-config.php'));
    put('old.test', "<?php\ndefine('WP_DEBUG', false);\n");
    expect(expectCode(() => sites.import({ domain: 'old.test', platform: 'wp' })).code).toBe('SETTINGS_UNREADABLE');
    put('old.test', config('old_db'));
    // no server offers a database: it must be named
    const req = expectCode(() => sites.import({ domain: 'old.test', platform: 'wp' }));
    expect([req.code, req.message]).toEqual([
      'DB_SERVER_REQUIRED',
      'cannot tell which server holds database old_db (the settings connect to 10.0.0.9:3306); name it: --db-server NAME',
    ]);
    addAgent(ns, 'db1');
    ns.recordDetectedServices('db1', [{ kind: 'db', impl: 'mariadb', version: '10' }]);
    addAgent(ns, 'db2');
    ns.recordDetectedServices('db2', [{ kind: 'db', impl: 'mariadb', version: '10' }]);
    expect(expectCode(() => sites.import({ domain: 'old.test', platform: 'wp' })).code).toBe('DB_SERVER_REQUIRED');
    // a site recorded at the same address tells
    ns.createSite({
      domain: 'other.test',
      platform: 'wp',
      dbServer: 'db2',
      status: 'installed',
      db: { name: 'other_test', user: 'other_test', password: 'p'.repeat(20) },
    });
    ns.setSiteDbAddress('other.test', '10.0.0.9', 3306);
    expect(tasks.list()).toEqual([]);
    const t = sites.import({ domain: 'Old.Test', platform: 'wp' });
    expect(t).toMatchObject({ kind: 'site.import', entity: 'site:old.test', state: 'queued' });
    expect(t.params).toEqual({
      domain: 'old.test',
      platform: 'wp',
      dbServer: 'db2',
      dbServerWhy: 'the sites recorded with database address 10.0.0.9:3306 use it',
      kind: 'wordpress',
      rewriteSettings: false,
    });
    expect(JSON.stringify(t.params)).not.toContain('a-long-legacy-password');
    expect(ns.listSites().map((x) => x.domain)).toEqual(['other.test', 'taken.test']);
    // names another site uses on that server
    put('dup.test', config('other_test'));
    expect(expectCode(() => sites.import({ domain: 'dup.test', platform: 'wp', dbServer: 'db2' })).code).toBe('DB_EXISTS');
    // --rewrite-settings refuses what Spoke's settings would not fit
    put('pre.test', config('pre_db').replace("'wp_'", "'legacy_'"));
    expect(expectCode(() => sites.import({ domain: 'pre.test', platform: 'wp', dbServer: 'db1', rewriteSettings: true })).message).toBe(
      `--rewrite-settings: sites/pre.test/wp-config.php uses the table prefix "legacy_" and Spoke's settings use "wp_"; import without --rewrite-settings to keep the site's own settings`,
    );
    expect(sites.import({ domain: 'pre.test', platform: 'wp', dbServer: 'db1' }).params).toMatchObject({
      dbServer: 'db1',
      dbServerWhy: 'named with --db-server',
    });
  });

  it('import on a Drupal platform reads settings.php; a loopback address points at the web server when it offers a database', () => {
    const { sites, ns, root } = setup('drupal8');
    ns.recordDetectedServices('web1', [
      { kind: 'http', impl: 'nginx', version: '1' },
      { kind: 'db', impl: 'mariadb', version: '10' },
    ]);
    addAgent(ns, 'db1');
    ns.recordDetectedServices('db1', [{ kind: 'db', impl: 'mariadb', version: '10' }]);
    mkdirSync(join(root, 'var/www/wp/sites/d8.test'), { recursive: true });
    writeFileSync(
      join(root, 'var/www/wp/sites/d8.test/settings.php'),
      "<?php\n$databases['default']['default'] = ['database' => 'd8', 'username' => 'd8', 'password' => 'a-long-legacy-password', 'host' => 'localhost', 'driver' => 'mysql'];\n",
    );
    expect(sites.import({ domain: 'd8.test', platform: 'wp' }).params).toMatchObject({
      dbServer: 'web1',
      kind: 'drupal8',
      dbServerWhy: 'the settings connect to localhost:3306, the web server web1 itself',
    });
  });

  it('disable, enable, verify and aliases need an installed site; alias changes are checked at once', () => {
    const { sites, ns } = setup();
    ns.createSite({ domain: 'blog.test', platform: 'wp', status: 'installing' });
    const e = expectCode(() => sites.setEnabled('blog.test', false));
    expect([e.code, e.message]).toEqual(['SITE_NOT_INSTALLED', 'site blog.test is installing; cannot disable it (see: spoke task ls --entity site:blog.test)']);
    expect(expectCode(() => sites.verify('blog.test')).code).toBe('SITE_NOT_INSTALLED');
    ns.setSiteStatus('blog.test', 'installed');
    ns.createSite({ domain: 'other.test', platform: 'wp' });
    expect(expectCode(() => sites.addAlias('blog.test', 'other.test')).code).toBe('DOMAIN_TAKEN');
    expect(expectCode(() => sites.removeAlias('blog.test', 'www.blog.test')).code).toBe('ALIAS_NOT_FOUND');
    expect(sites.addAlias('blog.test', 'WWW.blog.test').params).toMatchObject({ domain: 'blog.test', alias: 'www.blog.test' });
    expect(ns.getSite('blog.test').aliases).toEqual([]); // added by the task, not at submit
    expect(sites.setEnabled('blog.test', false).kind).toBe('site.disable');
  });
});
