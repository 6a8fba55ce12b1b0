/**
 * Site tasks end to end, driven by the `spoke` CLI against the built master and agent daemons:
 * a real nginx and php-fpm (private prefixes, a loopback port, as in webconfig.test.ts), a
 * private MariaDB, and Debian's WordPress tree as the platform. One agent is both web and db
 * server. Covered: `site install` (database, settings, converge, vhost, WordPress installer over
 * HTTP) and the page showing the title; disable (503) and enable; alias add/rm; delete (vhost,
 * site dir on master and agent, database and user gone, the names free); and an install that
 * fails after its database step (a broken site template on the agent) rolling everything back.
 * Backups: `site backup` (the archive holds the complete dump with a post and an uploaded file),
 * `site restore` (a deleted post and file come back; a corrupted archive changes nothing), and
 * `site delete` backing up first.
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { promisify } from 'node:util';
import { chmodSync, copyFileSync, createReadStream, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createGunzip } from 'node:zlib';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startMariaDb, type PrivateMariaDb } from '@spoke/agent/testkit';
import { readTar } from '@spoke/shared';
import { AgentUnderTest, MasterUnderTest, scratch } from '../harness.js';
import {
  enrollAgent,
  stopStack,
  webAndDbSettings,
  prepareWordPress,
  startNginx,
  startPhpFpm,
  WORDPRESS,
  type PrivateNginx,
  type PrivatePhpFpm,
  type Reply,
} from '../services.js';

const run = promisify(execFile);
const ROOT_PW = 'sites-e2e root #pw';
const TITLE = 'Spoke Test Blog';

const dir = scratch('spoke-sites-');
// nginx workers and php-fpm run as www-data when we are root: they must reach the agent's tree.
chmodSync(dir, 0o755);
const master = new MasterUnderTest(dir);
const w1 = new AgentUnderTest(dir, 'w1');
const ngx = join(dir, 'nginx');
const confDir = join(ngx, 'spoke.d');
const templates = join(dir, 'templates');
const PLATFORM = '/var/www/wp';
const agentTree = () => join(w1.root, PLATFORM);
const masterTree = () => join(master.root, PLATFORM);
const vhost = (domain: string) => join(confDir, `spoke-site-${domain}.conf`);
let nginx: PrivateNginx;
let fpm: PrivatePhpFpm;
let db: PrivateMariaDb;

/** A GET to our nginx with a Host header. */
const get = (host: string, path = '/'): Promise<Reply> => nginx.get(host, path);
const served = (what: string, host: string, path: string, ok: (r: Reply) => boolean): Promise<Reply> => nginx.served(what, host, path, ok);

/** Runs a CLI task in JSON mode: the task and its log lines. */
const task = (...args: string[]) => master.task(...args);

async function q(sql: string): Promise<unknown[]> {
  const c = await db.connect();
  try {
    return (await c.query(sql))[0] as unknown[];
  } finally {
    await c.end();
  }
}

const dbGone = async (name: string) => ({
  databases: await q(`SHOW DATABASES LIKE '${name.replace(/_/g, '\\_')}'`),
  users: await q(`SELECT User, Host FROM mysql.user WHERE User = '${name}'`),
});

beforeAll(async () => {
  if (!existsSync(join(WORDPRESS, 'wp-admin/install.php'))) throw new Error("Debian's WordPress is not installed: apt-get install wordpress");
  // Names no vhost claims land on the default server.
  nginx = await startNginx(ngx, { defaultServerBody: 'default server\n' });
  fpm = await startPhpFpm(dir, { children: 2, catchWorkersOutput: true, mysqli: true }); // WordPress needs mysqli

  db = await startMariaDb(join(dir, 'mariadb'), ROOT_PW);

  // The platform: Debian's WordPress tree on the master with the test's own minimal theme (the
  // home page must show the title), whatever theme packages are installed (see prepareWordPress).
  prepareWordPress(masterTree(), { listPosts: true });

  await master.start();
  await enrollAgent(master, w1, webAndDbSettings({ nginx, templates, fpm, db, rootPassword: ROOT_PW, server: 'w1' }));
  const { t: pv, log } = await task('platform', 'add', 'wp', '--path', PLATFORM, '--server', 'w1');
  expect(pv.state, `${JSON.stringify(pv.error)}\n${log}`).toBe('succeeded');
}, 300_000);

afterAll(async () => {
  await stopStack({ agents: [w1], master, services: [nginx, fpm, db], dir });
});

describe('site tasks (real nginx, php-fpm, MariaDB, WordPress)', () => {
  it('site install: database, settings, converge, vhost and the WordPress installer; the home page shows the title', async () => {
    const r = await master.cli('site', 'install', 'blog.test', '--platform', 'wp', '--title', TITLE);
    expect(r.code, `${r.stdout}\n${r.stderr}\n${w1.daemon?.out.slice(-3000)}`).toBe(0);
    expect(r.stdout).toMatch(/task \d+: site\.install on site:blog\.test/);
    expect(r.stdout).toMatch(/created database blog_test and user blog_test for 127\.0\.0\.1/);
    expect(r.stdout).toContain(`w1: nginx vhost ${vhost('blog.test')} written, tested and reloaded`);
    expect(r.stdout).toContain('site: http://blog.test/');
    const m = /admin: admin <admin@blog\.test>, password (\S+) \(shown once/.exec(r.stdout);
    expect(m, r.stdout).not.toBeNull();
    const adminPassword = (m as RegExpExecArray)[1] as string;
    // the admin password is in the result only, never in the task log
    const id = /task (\d+):/.exec(r.stdout)?.[1] as string;
    const log = await master.cli('task', 'log', id);
    expect(log.stdout).toContain('installer ran for blog.test');
    expect(log.stdout).not.toContain(adminPassword);

    const home = await served('the WordPress home page of blog.test', 'blog.test', '/', (x) => x.status === 200);
    expect(home.body).toContain(`<h1 id="site-title">${TITLE}</h1>`);

    // the settings file: on the master and (converged) on the agent, readable by the web group only
    const settings = readFileSync(join(agentTree(), 'sites/blog.test/wp-config.php'), 'utf8');
    expect(settings).toBe(readFileSync(join(masterTree(), 'sites/blog.test/wp-config.php'), 'utf8'));
    expect(settings).toContain(`define('DB_HOST', '127.0.0.1:${db.port}')`);
    expect(readFileSync(join(agentTree(), 'sites/hosts.php'), 'utf8')).toContain("'blog.test' => 'blog.test'");
    expect(existsSync(join(agentTree(), 'sites/blog.test/files'))).toBe(true);

    const site = await master.json<Record<string, unknown>>('site', 'show', 'blog.test');
    expect(site).toMatchObject({
      domain: 'blog.test',
      platform: 'wp',
      status: 'installed',
      dbServer: 'w1',
      database: 'blog_test',
      dbUser: 'blog_test',
      dbHost: '127.0.0.1',
      dbPort: db.port,
    });
    const dbPassword = /define\('DB_PASSWORD', '([^']+)'\)/.exec(settings)?.[1] as string;
    expect(dbPassword.length).toBeGreaterThanOrEqual(16);
    const all = [
      (await master.cli('-o', 'json', 'site', 'show', 'blog.test')).stdout,
      (await master.cli('site', 'show', 'blog.test')).stdout,
      (await master.cli('-o', 'json', 'site', 'list')).stdout,
    ];
    for (const out of all) expect(out).not.toContain(dbPassword);
    expect((await master.cli('site', 'list')).stdout).toMatch(/blog\.test\s+wp\s+w1\s+w1\s+installed/);
  }, 300_000);

  it('refuses a second install of the same domain at once (DOMAIN_TAKEN)', async () => {
    const again = await master.cli('site', 'install', 'blog.test', '--platform', 'wp');
    expect(again.code).toBe(1);
    expect(again.stderr).toBe('error: DOMAIN_TAKEN: a site named blog.test already exists\n');
  });

  it('site disable answers 503 for every name; site enable serves the site again', async () => {
    const { t, log } = await task('site', 'disable', 'blog.test');
    expect(t.state, log).toBe('succeeded');
    const off = await served('blog.test to answer 503', 'blog.test', '/', (x) => x.status === 503);
    expect(off.body).not.toContain(TITLE);
    expect((await master.json<{ status: string }>('site', 'show', 'blog.test')).status).toBe('disabled');
    const { t: t2, log: log2 } = await task('site', 'enable', 'blog.test');
    expect(t2.state, log2).toBe('succeeded');
    const on = await served('blog.test to answer 200 again', 'blog.test', '/', (x) => x.status === 200);
    expect(on.body).toContain(TITLE);
    expect((await master.json<{ status: string }>('site', 'show', 'blog.test')).status).toBe('installed');
  }, 120_000);

  it('site alias add: the alias reaches the WordPress site; alias rm: it does not any more', async () => {
    const before = await get('www.blog.test', '/wp-login.php');
    expect(before.body).not.toContain(TITLE);
    const { t, log } = await task('site', 'alias', 'add', 'blog.test', 'www.blog.test');
    expect(t.state, log).toBe('succeeded');
    expect(readFileSync(join(agentTree(), 'sites/hosts.php'), 'utf8')).toContain("'www.blog.test' => 'blog.test'");
    // WordPress itself answers for the alias (its login page carries the site's title)
    const login = await served('the alias to reach WordPress', 'www.blog.test', '/wp-login.php', (x) => x.status === 200 && x.body.includes(TITLE));
    expect(login.body).toContain('user_login');
    expect((await master.json<{ aliases: string[] }>('site', 'show', 'www.blog.test')).aliases).toEqual(['www.blog.test']);

    const { t: t2, log: log2 } = await task('site', 'alias', 'rm', 'blog.test', 'www.blog.test');
    expect(t2.state, log2).toBe('succeeded');
    await served('the alias to be gone', 'www.blog.test', '/wp-login.php', (x) => !x.body.includes(TITLE));
    expect(readFileSync(join(agentTree(), 'sites/hosts.php'), 'utf8')).not.toContain('www.blog.test');
    const rm = await master.cli('site', 'alias', 'rm', 'blog.test', 'www.blog.test');
    expect(rm.stderr).toBe('error: ALIAS_NOT_FOUND: www.blog.test is not an alias of blog.test (see: spoke site show blog.test)\n');
  }, 120_000);

  it('site alias redirect on: the alias answers 301 to http://blog.test/...; off: it serves the site again', async () => {
    const { t, log } = await task('site', 'alias', 'add', 'blog.test', 'www.blog.test');
    expect(t.state, log).toBe('succeeded');
    await served('the alias to reach WordPress', 'www.blog.test', '/wp-login.php', (x) => x.status === 200 && x.body.includes(TITLE));
    const on = await task('site', 'alias', 'redirect', 'blog.test', 'on');
    expect(on.t.state, on.log).toBe('succeeded');
    expect(on.log).toContain('the aliases of blog.test answer with a 301 to http://blog.test/');
    const r = await served('the alias to redirect', 'www.blog.test', '/wp-login.php?a=1', (x) => x.status === 301);
    expect(r.headers.location).toBe('http://blog.test/wp-login.php?a=1');
    expect(readFileSync(vhost('blog.test'), 'utf8')).toMatch(
      /server_name www\.blog\.test;[^}]*\}\s+location \/ \{\s+return 301 \$scheme:\/\/blog\.test\$request_uri;/,
    );
    expect((await get('blog.test', '/')).body).toContain(TITLE);
    expect(await master.json<{ redirectAliases: boolean }>('site', 'show', 'blog.test')).toMatchObject({ redirectAliases: true });
    // verify keeps it
    const v = await task('site', 'verify', 'blog.test');
    expect(v.t.state, v.log).toBe('succeeded');
    expect((await get('www.blog.test', '/')).status).toBe(301);
    const bad = await master.cli('site', 'alias', 'redirect', 'blog.test', 'maybe');
    expect([bad.code, bad.stderr.split('\n')[0]]).toEqual([2, 'error: USAGE: site alias redirect takes on or off, got "maybe"']);

    const off = await task('site', 'alias', 'redirect', 'blog.test', 'off');
    expect(off.t.state, off.log).toBe('succeeded');
    await served('the alias to serve the site again', 'www.blog.test', '/wp-login.php', (x) => x.status === 200 && x.body.includes(TITLE));
    expect(await master.json<{ redirectAliases: boolean }>('site', 'show', 'blog.test')).toMatchObject({ redirectAliases: false });
    const rm = await task('site', 'alias', 'rm', 'blog.test', 'www.blog.test');
    expect(rm.t.state, rm.log).toBe('succeeded');
  }, 180_000);

  it('site verify renders, converges and configures again without changes', async () => {
    const { t, log } = await task('site', 'verify', 'blog.test');
    expect(t.state, log).toBe('succeeded');
    expect(log).toContain('platform wp: site files unchanged');
    expect(log).toContain(`w1: nginx vhost ${vhost('blog.test')} unchanged`);
    expect(log).toMatch(/w1: grants for blog_test: 127\.0\.0\.1/);
  }, 120_000);

  it('a failed install after its database step rolls back: no database, no files, no vhost, the name free', async () => {
    // A broken site template on the agent: ConfigureSite fails its nginx test.
    const builtin = readFileSync(join(import.meta.dirname, '../../deploy/templates/nginx/site.conf'), 'utf8');
    mkdirSync(join(templates, 'nginx'), { recursive: true });
    writeFileSync(
      join(templates, 'nginx', 'site.conf'),
      builtin.replace('    index index.php index.html;', '    index index.php index.html;\n    spoke_bogus_directive on;'),
    );
    try {
      const { t, log } = await task('site', 'install', 'shop.test', '--platform', 'wp', '--alias', 'www.shop.test');
      expect(t.state).toBe('failed');
      expect(t.error?.code).toBe('WEBSERVER_CONFIG_INVALID');
      expect(t.error?.message).toMatch(
        /^site shop\.test: web server config failed on w1 \(WEBSERVER_CONFIG_INVALID: .*spoke_bogus_directive.*\); rolled back$/,
      );
      // each undo is in the log, in reverse order
      const undos = log
        .split('\n')
        .filter((l) => /undid /.test(l))
        .map((l) => l.replace(/^.*undid /, ''));
      expect(undos).toEqual(['write-files', 'create-database', 'reserve']);
      expect(log).toMatch(/created database shop_test/);
      expect(log).toMatch(/w1: dropped database shop_test; dropped user shop_test@127\.0\.0\.1/);
      expect(await dbGone('shop_test')).toEqual({ databases: [], users: [] });
      expect(existsSync(vhost('shop.test'))).toBe(false);
      expect(existsSync(join(masterTree(), 'sites/shop.test'))).toBe(false);
      expect(existsSync(join(agentTree(), 'sites/shop.test'))).toBe(false);
      expect(readFileSync(join(agentTree(), 'sites/hosts.php'), 'utf8')).not.toContain('shop.test');
      expect((await master.json<{ domain: string }[]>('site', 'list')).map((s) => s.domain)).toEqual(['blog.test']);
      expect((await master.cli('site', 'show', 'www.shop.test')).stderr).toMatch(/^error: SITE_NOT_FOUND/);
      // blog.test kept serving throughout
      expect((await get('blog.test', '/')).body).toContain(TITLE);
    } finally {
      rmSync(join(templates, 'nginx', 'site.conf'));
    }
  }, 300_000);

  const POST = 'Backup Canary Post';
  const upload = () => join(agentTree(), 'sites/blog.test/files/2024/01/canary.txt');
  const posts = async () => ((await q(`SELECT ID FROM blog_test.wp_posts WHERE post_title = '${POST}'`)) as unknown[]).length;
  let backupId = '';

  it('site backup: one archive with the complete dump (holding a new post), the uploaded file, the site dir and backup.json', async () => {
    mkdirSync(join(upload(), '..'), { recursive: true });
    writeFileSync(upload(), 'uploaded by the e2e test\n');
    await q(
      `INSERT INTO blog_test.wp_posts (post_author, post_date, post_date_gmt, post_content, post_title, post_excerpt, post_status, comment_status, ping_status, post_name, to_ping, pinged, post_modified, post_modified_gmt, post_content_filtered, post_type)
       VALUES (1, NOW(), UTC_TIMESTAMP(), 'canary body', '${POST}', '', 'publish', 'closed', 'closed', 'backup-canary', '', '', NOW(), UTC_TIMESTAMP(), '', 'post')`,
    );
    await served('the post on the home page', 'blog.test', '/', (x) => x.body.includes(`<h2 class="post">${POST}</h2>`));

    const r = await master.cli('site', 'backup', 'blog.test');
    expect(r.code, `${r.stdout}\n${r.stderr}`).toBe(0);
    expect(r.stdout).toMatch(/w1: dumped database blog_test \(.*, complete\)/);
    backupId = /backup: (\S+) \(/.exec(r.stdout)?.[1] as string;
    expect(backupId).toMatch(/^\d{8}T\d{9}Z-[0-9a-f]{6}$/);
    const archive = join(master.stateDir, 'backups/blog.test', `${backupId}.tar.gz`);
    expect(r.stdout).toContain(archive);
    // nothing half-written beside it
    expect(readdirSync(join(master.stateDir, 'backups/blog.test')).sort()).toEqual([`${backupId}.json`, `${backupId}.tar.gz`]);

    const entries = new Map<string, string>();
    for await (const e of readTar(createReadStream(archive).pipe(createGunzip()))) {
      const chunks: Buffer[] = [];
      for await (const c of e.body) chunks.push(c);
      entries.set(e.header.name.replace(/\/$/, ''), Buffer.concat(chunks).toString('utf8'));
    }
    const dump = entries.get('database.sql') as string;
    expect(dump.trimEnd().split('\n').at(-1)).toMatch(/^-- Dump completed/);
    expect(dump).toContain(POST);
    expect(entries.get('files/2024/01/canary.txt')).toBe('uploaded by the e2e test\n');
    expect(entries.get('site/wp-config.php')).toContain("define('DB_NAME', 'blog_test')");
    const meta = JSON.parse(entries.get('backup.json') as string) as Record<string, unknown>;
    expect(meta).toMatchObject({ id: backupId, domain: 'blog.test', platform: 'wp', kind: 'wordpress', dbName: 'blog_test', reason: 'manual' });

    const ls = await master.json<{ id: string; domain: string; reason: string }[]>('site', 'backup', 'ls', 'blog.test');
    expect(ls.map((b) => [b.id, b.domain, b.reason])).toEqual([[backupId, 'blog.test', 'manual']]);
  }, 300_000);

  it('site restore --backup: a deleted post and a deleted upload are back; a safety backup of the state before is kept', async () => {
    await q(`DELETE FROM blog_test.wp_posts WHERE post_title = '${POST}'`);
    rmSync(upload());
    await served('the post to be gone', 'blog.test', '/', (x) => x.status === 200 && !x.body.includes(POST));

    const { t, log } = await task('site', 'restore', 'blog.test', '--backup', backupId);
    expect(t.state, `${JSON.stringify(t.error)}\n${log}`).toBe('succeeded');
    expect(await posts()).toBe(1);
    expect(readFileSync(upload(), 'utf8')).toBe('uploaded by the e2e test\n');
    await served('the restored post on the home page', 'blog.test', '/', (x) => x.body.includes(`<h2 class="post">${POST}</h2>`));
    const safety = (t.result as { safetyBackup: string }).safetyBackup;
    const ls = await master.json<{ id: string; reason: string }[]>('site', 'backup', 'ls', 'blog.test');
    expect(ls.map((b) => [b.id, b.reason])).toEqual([
      [backupId, 'manual'],
      [safety, 'pre-restore'],
    ]);
    // the settings were rendered from the site's facts, as before
    expect(readFileSync(join(agentTree(), 'sites/blog.test/wp-config.php'), 'utf8')).toBe(
      readFileSync(join(masterTree(), 'sites/blog.test/wp-config.php'), 'utf8'),
    );
    // the restore's scratch is gone from the platform tree
    expect(readdirSync(join(masterTree(), 'sites')).filter((n) => n.startsWith('.spoke-staging'))).toEqual([]);
  }, 300_000);

  it('site restore from a corrupted archive fails before changing anything', async () => {
    const dirB = join(master.stateDir, 'backups/blog.test');
    const badId = backupId.replace(/-[0-9a-f]{6}$/, '-bad000');
    const bytes = readFileSync(join(dirB, `${backupId}.tar.gz`));
    bytes[Math.floor(bytes.length / 2)] = (bytes[Math.floor(bytes.length / 2)] ?? 0) ^ 0xff;
    writeFileSync(join(dirB, `${badId}.tar.gz`), bytes);
    copyFileSync(join(dirB, `${backupId}.json`), join(dirB, `${badId}.json`));
    writeFileSync(upload(), 'changed after the backup\n');
    const before = readdirSync(dirB).length;

    const { t, log } = await task('site', 'restore', 'blog.test', '--backup', badId);
    expect(t.state).toBe('failed');
    expect(['BACKUP_INVALID', 'ARCHIVE_UNSAFE']).toContain(t.error?.code);
    expect(log).not.toMatch(/safety|dumped database/);
    expect(await posts()).toBe(1);
    expect(readFileSync(upload(), 'utf8')).toBe('changed after the backup\n');
    expect(readdirSync(dirB).length).toBe(before);
    await served('the site still up', 'blog.test', '/', (x) => x.body.includes(POST));
    expect((await master.cli('site', 'backup', 'rm', badId)).code).toBe(0);
    expect(existsSync(join(dirB, `${badId}.tar.gz`))).toBe(false);
  }, 300_000);

  it('a restore that fails at its last step (a broken site template) puts the database, site dir and files back as they were before it', async () => {
    const AFTER = 'Written After The Backup';
    const later = join(agentTree(), 'sites/blog.test/files/after.txt');
    await q(
      `INSERT INTO blog_test.wp_posts (post_author, post_date, post_date_gmt, post_content, post_title, post_excerpt, post_status, comment_status, ping_status, post_name, to_ping, pinged, post_modified, post_modified_gmt, post_content_filtered, post_type)
       VALUES (1, NOW(), UTC_TIMESTAMP(), 'after body', '${AFTER}', '', 'publish', 'closed', 'closed', 'after-backup', '', '', NOW(), UTC_TIMESTAMP(), '', 'post')`,
    );
    writeFileSync(later, 'written after the backup\n');
    await served('the new post on the home page', 'blog.test', '/', (x) => x.body.includes(AFTER));
    const settingsBefore = readFileSync(join(masterTree(), 'sites/blog.test/wp-config.php'), 'utf8');
    const vhostBefore = readFileSync(vhost('blog.test'), 'utf8');
    const backupsBefore = (await master.json<{ id: string }[]>('site', 'backup', 'ls', 'blog.test')).map((b) => b.id);

    const builtin = readFileSync(join(import.meta.dirname, '../../deploy/templates/nginx/site.conf'), 'utf8');
    mkdirSync(join(templates, 'nginx'), { recursive: true });
    writeFileSync(
      join(templates, 'nginx', 'site.conf'),
      builtin.replace('    index index.php index.html;', '    index index.php index.html;\n    spoke_bogus_directive on;'),
    );
    let log = '';
    try {
      const r = await task('site', 'restore', 'blog.test', '--backup', backupId);
      log = r.log;
      expect(r.t.state, log).toBe('failed');
      expect(r.t.error?.code).toBe('WEBSERVER_CONFIG_INVALID');
      expect(r.t.error?.message).toMatch(
        /^site blog\.test: web server config failed on w1 \(WEBSERVER_CONFIG_INVALID: .*spoke_bogus_directive.*\); rolled back$/,
      );
    } finally {
      rmSync(join(templates, 'nginx', 'site.conf'));
    }
    // the restore did replace the database and the files before it failed
    expect(log).toMatch(/w1: database blog_test emptied and loaded/);
    expect(log).toMatch(/w1: sites\/blog\.test\/files.* put in place/);
    const undos = log
      .split('\n')
      .filter((l) => /undid /.test(l))
      .map((l) => l.replace(/^.*undid /, ''));
    expect(undos).toEqual(['restore-files', 'restore-site-dir', 'restore-database']);
    expect(log).not.toMatch(/UNDO FAILED/);

    // exactly as before: both posts, both files, the same settings and vhost; it serves
    expect(await posts()).toBe(1);
    expect((await q(`SELECT ID FROM blog_test.wp_posts WHERE post_title = '${AFTER}'`)).length).toBe(1);
    expect(readFileSync(upload(), 'utf8')).toBe('changed after the backup\n');
    expect(readFileSync(later, 'utf8')).toBe('written after the backup\n');
    expect(readFileSync(join(masterTree(), 'sites/blog.test/wp-config.php'), 'utf8')).toBe(settingsBefore);
    expect(readFileSync(join(agentTree(), 'sites/blog.test/wp-config.php'), 'utf8')).toBe(settingsBefore);
    expect(readFileSync(vhost('blog.test'), 'utf8')).toBe(vhostBefore);
    expect(readdirSync(join(masterTree(), 'sites')).filter((n) => n.startsWith('.spoke-staging'))).toEqual([]);
    const home = await served('the site with both posts', 'blog.test', '/', (x) => x.status === 200 && x.body.includes(AFTER));
    expect(home.body).toContain(`<h2 class="post">${POST}</h2>`);
    expect((await master.json<{ status: string }>('site', 'show', 'blog.test')).status).toBe('installed');
    // the safety backup it took is kept
    const after = await master.json<{ id: string; reason: string }[]>('site', 'backup', 'ls', 'blog.test');
    expect(after.filter((b) => !backupsBefore.includes(b.id)).map((b) => b.reason)).toEqual(['pre-restore']);
  }, 300_000);

  it("site login-url: a one-time link through Spoke's must-use plugin logs the administrator into wp-admin, once", async () => {
    const r = await master.json<{ url: string; oneTime: boolean; note: string }>('site', 'login-url', 'blog.test');
    expect(r.oneTime).toBe(true);
    expect(r.note).toMatch(/^logs in as admin; valid once, for 15 minutes$/);
    const secret = /^http:\/\/blog\.test\/\?spoke-login=([\w-]{43})$/.exec(r.url)?.[1] as string;
    expect(secret, r.url).toBeTruthy();
    // the site's database holds only the secret's hash
    const stored = (await q("SELECT option_name FROM blog_test.wp_options WHERE option_name LIKE '_transient_spoke_login_%'")) as Array<{
      option_name: string;
    }>;
    expect(stored.map((o) => o.option_name)).toEqual([`_transient_spoke_login_${createHash('sha256').update(secret).digest('hex')}`]);
    const curl = async (jar: string, path: string) => {
      const { stdout } = await run('curl', [
        '-s',
        '-c',
        jar,
        '-b',
        jar,
        '-w',
        '\n@@%{http_code} %{redirect_url}',
        '--resolve',
        `blog.test:${nginx.port}:127.0.0.1`,
        `http://blog.test:${nginx.port}${path}`,
      ]);
      const at = stdout.lastIndexOf('\n@@');
      const [code, location] = stdout.slice(at + 3).split(' ');
      return { status: Number(code), location: location ?? '', body: stdout.slice(0, at) };
    };
    const jar = join(dir, 'wp-login-jar');
    const first = await curl(jar, `/?spoke-login=${secret}`);
    expect(first.status, first.body.slice(0, 300)).toBe(302);
    expect(first.location).toMatch(/\/wp-admin\/$/);
    const admin = await curl(jar, '/wp-admin/');
    expect(admin.status).toBe(200);
    expect(admin.body).toContain('Dashboard');
    // once only: a second use, and a made-up secret, are refused
    const again = await curl(join(dir, 'wp-login-jar-2'), `/?spoke-login=${secret}`);
    expect(again.status).toBe(403);
    expect(again.body).toContain('used already or it expired');
    expect((await curl(join(dir, 'wp-login-jar-3'), '/wp-admin/')).status).toBe(302);
    expect((await q("SELECT option_name FROM blog_test.wp_options WHERE option_name LIKE '_transient_spoke_login_%'")) as unknown[]).toEqual([]);
  });

  // A site found on disk, as an operator moving a site in (from Aegir, say) has it: its dir with
  // its own config in the master's platform tree, its database made by hand (here a copy of
  // blog_test's tables, made as admin), its user files on the web server.
  const LEGACY_PW = 'legacy-site-pw-0123456789';
  const LEGACY_TITLE = 'Legacy Blog From Elsewhere';
  const legacyConfig = () =>
    [
      '<?php',
      '// Hand-written per-site config of legacy.test.',
      "define( 'DB_NAME', 'legacy_blog' );",
      "define( 'DB_USER', 'legacy_blog' );",
      `define( 'DB_PASSWORD', '${LEGACY_PW}' );`,
      `define( 'DB_HOST', '127.0.0.1:${db.port}' );`,
      "define( 'DB_CHARSET', 'utf8mb4' );",
      "define( 'DB_COLLATE', '' );",
      ...['AUTH_KEY', 'SECURE_AUTH_KEY', 'LOGGED_IN_KEY', 'NONCE_KEY', 'AUTH_SALT', 'SECURE_AUTH_SALT', 'LOGGED_IN_SALT', 'NONCE_SALT'].map(
        (k) => `define( '${k}', 'legacy ${k} phrase' );`,
      ),
      "$table_prefix = 'wp_';",
      "define( 'WP_HOME', 'http://legacy.test' );",
      "define( 'WP_SITEURL', 'http://legacy.test' );",
      "define( 'UPLOADS', 'sites/legacy.test/files' );",
      '',
    ].join('\n');
  const legacyFile = () => join(masterTree(), 'sites/legacy.test/wp-config.php');
  /**
   * The database's content and the user's accounts: what an import must never change. (WordPress
   * itself writes its cron transients into wp_options when a page is served: those rows are left
   * out.)
   */
  const legacyState = async () => {
    const tables = (
      (await q(
        "SELECT TABLE_NAME AS t FROM information_schema.TABLES WHERE TABLE_SCHEMA = 'legacy_blog' AND TABLE_NAME <> 'wp_options' ORDER BY TABLE_NAME",
      )) as { t: string }[]
    ).map((r) => `legacy_blog.${r.t}`);
    return {
      tables: ((await q(`CHECKSUM TABLE ${tables.join(', ')} EXTENDED`)) as { Table: string; Checksum: unknown }[]).map(
        (r) => `${r.Table} ${String(r.Checksum)}`,
      ),
      options: await q(
        "SELECT option_name, option_value FROM legacy_blog.wp_options WHERE option_name NOT LIKE '%transient%' AND option_name <> 'cron' ORDER BY option_name",
      ),
      accounts: await q("SELECT Host FROM mysql.user WHERE User = 'legacy_blog' ORDER BY Host"),
    };
  };

  it('site import refuses what it cannot take: a name in use, no site dir, a settings file without a database', async () => {
    const taken = await master.cli('site', 'import', 'blog.test', '--platform', 'wp');
    expect(taken.stderr).toBe('error: DOMAIN_TAKEN: a site named blog.test already exists\n');
    const none = await master.cli('site', 'import', 'nothere.test', '--platform', 'wp');
    expect(none.stderr).toBe(
      `error: SETTINGS_NOT_FOUND: no sites/nothere.test in platform wp (${masterTree()}): put the site dir there first (spoke platform verify wp lists the sites found on disk)\n`,
    );
    mkdirSync(join(masterTree(), 'sites/empty.test'));
    writeFileSync(join(masterTree(), 'sites/empty.test/wp-config.php'), "<?php\ndefine( 'WP_DEBUG', false );\n");
    try {
      const nodb = await master.cli('site', 'import', 'empty.test', '--platform', 'wp');
      expect(nodb.stderr).toBe(
        'error: SETTINGS_UNREADABLE: sites/empty.test/wp-config.php defines no database (DB_NAME not found at the top level of the file); nothing to import\n',
      );
    } finally {
      rmSync(join(masterTree(), 'sites/empty.test'), { recursive: true });
    }
    expect((await master.json<{ domain: string }[]>('site', 'list')).map((x) => x.domain)).toEqual(['blog.test']);
  });

  it('site import that fails at its last step rolls back without dropping or overwriting anything that was there', async () => {
    await q('CREATE DATABASE legacy_blog');
    const tables = ((await q("SELECT TABLE_NAME AS t FROM information_schema.TABLES WHERE TABLE_SCHEMA = 'blog_test'")) as { t: string }[]).map((r) => r.t);
    for (const t of tables) {
      await q(`CREATE TABLE legacy_blog.${t} LIKE blog_test.${t}`);
      await q(`INSERT INTO legacy_blog.${t} SELECT * FROM blog_test.${t}`);
    }
    await q(`UPDATE legacy_blog.wp_options SET option_value = '${LEGACY_TITLE}' WHERE option_name = 'blogname'`);
    await q(`CREATE USER 'legacy_blog'@'127.0.0.1' IDENTIFIED BY '${LEGACY_PW}'`);
    await q("GRANT ALL PRIVILEGES ON legacy_blog.* TO 'legacy_blog'@'127.0.0.1'");
    mkdirSync(join(masterTree(), 'sites/legacy.test'));
    writeFileSync(legacyFile(), legacyConfig(), { mode: 0o640 });
    mkdirSync(join(agentTree(), 'sites/legacy.test/files/2020'), { recursive: true });
    writeFileSync(join(agentTree(), 'sites/legacy.test/files/2020/old-upload.txt'), 'an upload from before\n');
    const before = await legacyState();
    // the registry lists the site dir found on disk
    const pv = await task('platform', 'verify', 'wp');
    expect(pv.log).toContain('sites on disk not in Spoke: legacy.test (import them: spoke site import DOMAIN --platform wp)');
    expect((await master.cli('platform', 'show', 'wp')).stdout).toMatch(/sites on disk:\s+legacy\.test\n/);

    const builtin = readFileSync(join(import.meta.dirname, '../../deploy/templates/nginx/site.conf'), 'utf8');
    mkdirSync(join(templates, 'nginx'), { recursive: true });
    writeFileSync(
      join(templates, 'nginx', 'site.conf'),
      builtin.replace('    index index.php index.html;', '    index index.php index.html;\n    spoke_bogus_directive on;'),
    );
    try {
      const { t, log } = await task('site', 'import', 'legacy.test', '--platform', 'wp');
      expect(t.state, log).toBe('failed');
      expect(t.error?.code).toBe('WEBSERVER_CONFIG_INVALID');
      expect(t.error?.message).toMatch(/; rolled back$/);
      expect(log).toContain('db server w1 (the sites recorded with database address 127.0.0.1:');
      expect(log).toMatch(/w1: database legacy_blog exists; user legacy_blog now has accounts for 127\.0\.0\.1 \(already there\)/);
      const undos = log
        .split('\n')
        .filter((l) => /undid /.test(l))
        .map((l) => l.replace(/^.*undid /, ''));
      expect(undos).toEqual(['write-files', 'adopt-database', 'reserve']);
      expect(log).not.toMatch(/dropped|UNDO FAILED/);
    } finally {
      rmSync(join(templates, 'nginx', 'site.conf'));
    }
    expect(await legacyState()).toEqual(before);
    expect(readFileSync(legacyFile(), 'utf8')).toBe(legacyConfig());
    expect(readFileSync(join(agentTree(), 'sites/legacy.test/files/2020/old-upload.txt'), 'utf8')).toBe('an upload from before\n');
    expect(existsSync(vhost('legacy.test'))).toBe(false);
    expect(readFileSync(join(agentTree(), 'sites/hosts.php'), 'utf8')).not.toContain('legacy.test');
    expect((await master.cli('site', 'show', 'legacy.test')).stderr).toMatch(/^error: SITE_NOT_FOUND/);
  }, 300_000);

  it('site import: the site found on disk is served through nginx with its own settings; its database untouched', async () => {
    const before = await legacyState();
    const r = await master.cli('site', 'import', 'legacy.test', '--platform', 'wp');
    expect(r.code, `${r.stdout}\n${r.stderr}`).toBe(0);
    expect(await legacyState()).toEqual(before);
    expect(r.stdout).toContain('site: http://legacy.test/ (settings kept)');
    expect(r.stdout).toContain("sites/legacy.test/wp-config.php is the site's own (imported); Spoke does not render it");
    expect(r.stdout).not.toContain(LEGACY_PW);
    const home = await served('the imported site', 'legacy.test', '/', (x) => x.status === 200 && x.body.includes(LEGACY_TITLE));
    expect(home.body).toContain(`<h1 id="site-title">${LEGACY_TITLE}</h1>`);
    expect((await get('blog.test', '/')).body).toContain(TITLE);
    // its own config, byte for byte, on the master and the web server
    expect(readFileSync(legacyFile(), 'utf8')).toBe(legacyConfig());
    expect(readFileSync(join(agentTree(), 'sites/legacy.test/wp-config.php'), 'utf8')).toBe(legacyConfig());
    expect(readFileSync(join(agentTree(), 'sites/legacy.test/files/2020/old-upload.txt'), 'utf8')).toBe('an upload from before\n');
    expect(readFileSync(join(agentTree(), 'sites/hosts.php'), 'utf8')).toContain("'legacy.test' => 'legacy.test'");
    const site = await master.json<Record<string, unknown>>('site', 'show', 'legacy.test');
    expect(site).toMatchObject({
      domain: 'legacy.test',
      platform: 'wp',
      status: 'installed',
      dbServer: 'w1',
      database: 'legacy_blog',
      dbUser: 'legacy_blog',
      dbHost: '127.0.0.1',
      dbPort: db.port,
      ownSettings: true,
    });
    expect((await master.cli('site', 'show', 'legacy.test')).stdout).not.toContain(LEGACY_PW);
    // verify keeps the site's own settings
    const beforeVerify = await legacyState();
    const v = await task('site', 'verify', 'legacy.test');
    expect(v.t.state, v.log).toBe('succeeded');
    expect(readFileSync(legacyFile(), 'utf8')).toBe(legacyConfig());
    expect(await legacyState()).toEqual(beforeVerify);
    const again = await master.cli('site', 'import', 'legacy.test', '--platform', 'wp');
    expect(again.stderr).toBe('error: DOMAIN_TAKEN: a site named legacy.test already exists\n');
  }, 300_000);

  it('site delete backs up first (the backup stays); vhost, site dir (agent and master), database and user gone; the name is free', async () => {
    const { t, log } = await task('site', 'delete', 'blog.test');
    expect(t.state, log).toBe('succeeded');
    expect(log).toMatch(/kept backup \S+ of blog\.test/);
    const ls = await master.json<{ reason: string }[]>('site', 'backup', 'ls', 'blog.test');
    expect(ls.map((b) => b.reason)).toEqual(['manual', 'pre-restore', 'pre-restore', 'pre-delete']);
    expect(existsSync(vhost('blog.test'))).toBe(false);
    expect(existsSync(join(agentTree(), 'sites/blog.test'))).toBe(false);
    expect(existsSync(join(masterTree(), 'sites/blog.test'))).toBe(false);
    expect(readFileSync(join(agentTree(), 'sites/hosts.php'), 'utf8')).not.toContain('blog.test');
    expect(await dbGone('blog_test')).toEqual({ databases: [], users: [] });
    expect(readdirSync(join(master.stateDir, 'trash'))).toEqual([]);
    await served('blog.test to be gone', 'blog.test', '/', (x) => !x.body.includes(TITLE));
    expect((await master.json<{ domain: string }[]>('site', 'list')).map((x) => x.domain)).toEqual(['legacy.test']);
    expect((await master.cli('site', 'show', 'blog.test')).stderr).toMatch(/^error: SITE_NOT_FOUND/);
  }, 300_000);
});
