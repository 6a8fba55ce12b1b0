/**
 * Site vhosts end to end against a real nginx and php-fpm (started here on a loopback port with
 * private prefixes, as in webconfig.test.ts). The commands travel the real wire edges in process:
 * the master's AgentHub (command and result conversion) writes to the agent's MasterConnection
 * (its command switch), which runs the agent's WebConfig and SiteInstaller against nginx; only
 * gRPC itself is left out (no site CLI or task exists yet to drive a daemon).
 *
 * Covered: a vhost for a domain and its alias serving PHP of a platform; aliases redirecting
 * (301); the disabled 503 page for every name; re-enabling; a broken template failing with
 * nginx's message while the old vhost keeps serving; removal. And WordPress: Debian's tree as a
 * platform, a private MariaDB, a minimal wp-config.php, InstallSite over HTTP, the home page
 * showing the title.
 */
import { spawnSync } from 'node:child_process';
import { EventEmitter } from 'node:events';
import { chmodSync, existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CAPABILITY_VERSION, createCA, RootMap, silentLogger, type wire } from '@spoke/shared';
import { MasterConnection } from '@spoke/agent';
import {
  AgentTrees,
  commandRunner,
  linkInMemory,
  SiteCron,
  SiteInstaller,
  SitePhp,
  startMariaDb,
  WebConfig,
  type HttpSettings,
  type PrivateMariaDb,
} from '@spoke/agent/testkit';
import { addAgent, AgentHub, attachInMemory, freshNamespace, type AgentCommand } from '@spoke/master/testkit';
import { cleanup, scratch } from '../harness.js';
import {
  NGINX,
  prepareWordPress,
  startNginx,
  startPhpFpm,
  WEB_GROUP as webGroup,
  WORDPRESS,
  type PrivateNginx,
  type PrivatePhpFpm,
  type Reply,
} from '../services.js';

const BIN_DIRS = ['/usr/local/sbin', '/usr/local/bin', '/usr/sbin', '/usr/bin', '/sbin', '/bin'];

const dir = scratch('spoke-sitevhost-');
// nginx workers and php-fpm run as www-data when we are root: they must reach the agent's tree.
chmodSync(dir, 0o755);
const hostRoot = join(dir, 'w1'); // the agent's simulated host (--root)
const ngx = join(dir, 'nginx');
const confDir = join(ngx, 'spoke.d');
const templates = join(dir, 'templates');
const PLATFORM = '/var/www/p1';
const tree = () => join(hostRoot, PLATFORM);
const CONF = join(confDir, 'spoke-site-site.test.conf');
let nginx: PrivateNginx;
let fpm: PrivatePhpFpm;
let hub: AgentHub;
let conn: MasterConnection;

/** A GET to our nginx with the given Host header. */
const get = (host: string, path = '/'): Promise<Reply> => nginx.get(host, path);
const served = (what: string, host: string, path: string, ok: (r: Reply) => boolean): Promise<Reply> => nginx.served(what, host, path, ok);

/** Sends one command through the hub to the in-process agent. */
function call<K extends AgentCommand['type']>(cmd: Extract<AgentCommand, { type: K }>) {
  return hub.call('w1', cmd, { timeoutMs: 180_000 });
}

const SITE = {
  type: 'configureSite' as const,
  domain: 'site.test',
  platform: 'p1',
  tree: PLATFORM,
  kind: 'drupal8',
  aliases: ['www.site.test'],
  redirectAliases: false,
  enabled: true,
  webGroupFiles: [] as string[],
  pinnedImpl: '',
};

beforeAll(async () => {
  // Names no site vhost claims land on the default server.
  nginx = await startNginx(ngx, { defaultServerBody: 'default server\n', getTimeoutMs: 10_000 });
  fpm = await startPhpFpm(dir, { children: 2, catchWorkersOutput: true, mysqli: true }); // WordPress needs mysqli

  // The platform as converge leaves it on the web server: code and sites/<domain>/ (no files dirs).
  mkdirSync(join(tree(), 'sites/site.test'), { recursive: true });
  writeFileSync(join(tree(), 'index.php'), '<?php echo "p1 php ok host=", $_SERVER["HTTP_HOST"], " uri=", $_SERVER["REQUEST_URI"], "\\n";\n');
  writeFileSync(join(tree(), 'sites/site.test/settings.php'), '<?php $secret = 1;\n', { mode: 0o600 });

  // The agent: real WebConfig and installer, nginx commands with the private prefix.
  const http: HttpSettings = { ...nginx.agentHttp(templates), configured: true };
  const rootMap = new RootMap(hostRoot);
  const log = silentLogger();
  const web = new WebConfig({
    http,
    fpmSocket: fpm.socket,
    roots: ['/var/www'],
    rootMap,
    binDirs: BIN_DIRS,
    detect: async () => [],
    detectFpm: async () => null,
    run: commandRunner(BIN_DIRS),
    log,
  });
  const sitePhp = new SitePhp({ rootMap, roots: ['/var/www'], binDirs: BIN_DIRS, phpCli: '', phpUser: 'www-data', log });
  const installer = new SiteInstaller({ http, php: sitePhp, service: (p) => web.service(p), log });
  const cron = new SiteCron({ http, php: sitePhp, service: (p) => web.service(p), log });
  const ca = await createCA();
  conn = new MasterConnection({
    log,
    master: '127.0.0.1:1',
    identity: { caPem: ca.certPem, certPem: ca.certPem, keyPem: ca.keyPem },
    sitePhp,
    roots: ['/var/www'],
    rootMap,
    detect: async () => [],
    backoffInitialMs: 100,
    backoffMaxMs: 100,
    trees: new AgentTrees({ stateDir: join(dir, 'agent-state'), roots: ['/var/www'], rootMap, log }),
    web,
    installer,
    cron,
    driftIntervalMs: 60_000,
    db: null,
  });

  // The link: what the hub writes goes to the agent's command switch, what the agent writes comes
  // back as the hub's stream data.
  const masterSide = new (class extends EventEmitter {
    write(m: wire.MasterCommand): boolean {
      if (m.command?.$case !== 'welcome') toAgent(m);
      return true;
    }
    end(): void {}
  })();
  const toAgent = linkInMemory(conn, (e) => setImmediate(() => masterSide.emit('data', e)));
  const { ns } = freshNamespace();
  addAgent(ns, 'w1');
  hub = new AgentHub({ ns, log, clock: Date.now, heartbeatIntervalMs: 1000, heartbeatTtlMs: 3_600_000 });
  attachInMemory(hub, 'w1', masterSide);
  masterSide.emit('data', { event: { $case: 'hello', value: { capabilityVersion: CAPABILITY_VERSION, facts: undefined, services: [], observed: {} } } });
});

afterAll(async () => {
  await nginx?.stop();
  await fpm?.stop();
  cleanup(dir);
});

describe('site vhosts (real nginx, php-fpm)', () => {
  let enabledConfig = '';

  it("ConfigureSite serves the platform's PHP for the domain and its alias, creates the files dirs, gives the settings file to the web group", async () => {
    const r = await call({ ...SITE, webGroupFiles: ['sites/site.test/settings.php'] });
    expect(r).toMatchObject({ impl: 'nginx', path: CONF, changed: true, tested: true, reloaded: true });
    expect(r.problems).toEqual([]);
    expect(r.fixed).toEqual(
      expect.arrayContaining(['sites/site.test/files: created', 'sites/site.test/private: created', 'sites/site.test/settings.php: mode 0600 → 0640']),
    );
    enabledConfig = readFileSync(CONF, 'utf8');
    const home = await served('nginx to serve site.test', 'site.test', '/', (x) => x.status === 200 && x.body.startsWith('p1 php ok'));
    expect(home.body).toBe('p1 php ok host=site.test uri=/\n');
    // a Drupal 8 path goes to the front controller
    expect((await get('www.site.test', '/node/1?x=1')).body).toBe('p1 php ok host=www.site.test uri=/node/1?x=1\n');
    expect((await get('other.test', '/')).body).toBe('default server\n');

    const gid = Number(
      readFileSync('/etc/group', 'utf8')
        .split('\n')
        .find((l) => l.split(':')[0] === webGroup)
        ?.split(':')[2],
    );
    for (const [rel, mode] of [
      ['sites/site.test/files', 0o2775],
      ['sites/site.test/private', 0o2770],
      ['sites/site.test/settings.php', 0o640],
    ] as const) {
      const st = statSync(join(tree(), rel));
      expect([st.mode & 0o7777, st.gid], rel).toEqual([mode, gid]);
    }
    // uploads are static, private files and uploaded PHP are not served
    writeFileSync(join(tree(), 'sites/site.test/files/hello.txt'), 'uploaded\n');
    writeFileSync(join(tree(), 'sites/site.test/files/evil.php'), '<?php echo "ran";\n');
    writeFileSync(join(tree(), 'sites/site.test/private/secret.txt'), 'secret\n');
    expect(await get('site.test', '/sites/site.test/files/hello.txt')).toMatchObject({ status: 200, body: 'uploaded\n' });
    expect((await get('site.test', '/sites/site.test/files/evil.php')).status).toBe(403);
    expect((await get('site.test', '/sites/site.test/private/secret.txt')).status).toBe(403);
  });

  it('redirectAliases: the alias answers 301 to the domain, path and query kept', async () => {
    const r = await call({ ...SITE, redirectAliases: true });
    expect(r).toMatchObject({ changed: true, reloaded: true });
    const moved = await served('the alias to redirect', 'www.site.test', '/a/b?c=1', (x) => x.status === 301);
    expect(moved.headers.location).toBe('http://site.test/a/b?c=1');
    expect((await get('site.test', '/')).status).toBe(200);
  });

  it('disabled: every name answers 503 with the maintenance page', async () => {
    const r = await call({ ...SITE, enabled: false });
    expect(r).toMatchObject({ changed: true, reloaded: true });
    for (const host of ['site.test', 'www.site.test']) {
      const down = await served(`${host} to answer 503`, host, '/any/page', (x) => x.status === 503);
      expect(down.body).toContain('site.test is down for maintenance');
      expect(down.body).toMatch(/^<!DOCTYPE html>\n<html>/);
      expect(down.headers['content-type']).toMatch(/^text\/html/);
      expect(down.headers['retry-after']).toBe('3600');
    }
  });

  it('enabled again: 200', async () => {
    await call(SITE);
    expect(readFileSync(CONF, 'utf8')).toBe(enabledConfig);
    await served('site.test to serve again', 'site.test', '/', (x) => x.status === 200);
    expect((await get('www.site.test', '/')).body).toBe('p1 php ok host=www.site.test uri=/\n');
  });

  it("a broken site template fails with nginx's message; the old vhost stays and keeps serving", async () => {
    const pidBefore = readFileSync(nginx.pidFile, 'utf8').trim();
    const builtin = readFileSync(join(import.meta.dirname, '../../deploy/templates/nginx/site.conf'), 'utf8');
    mkdirSync(join(templates, 'nginx'), { recursive: true });
    writeFileSync(
      join(templates, 'nginx', 'site.conf'),
      builtin.replace('    index index.php index.html;', '    index index.php index.html;\n    spoke_bogus_directive on;'),
    );
    try {
      const err = await call({ ...SITE, aliases: ['www.site.test', 'new.site.test'] }).catch((e: unknown) => e);
      expect(err).toMatchObject({ code: 'WEBSERVER_CONFIG_INVALID' });
      expect((err as Error).message).toMatch(
        /^w1: .*nginx -t .*rejected the config of site site\.test \(from .*templates\/nginx\/site\.conf\): nginx: \[emerg\] unknown directive "spoke_bogus_directive" in .*spoke-site-site\.test\.conf:\d+.*the previous file was restored/,
      );
      expect(readFileSync(CONF, 'utf8')).toBe(enabledConfig);
      expect(readdirSync(confDir)).toEqual(['spoke-site-site.test.conf']);
      expect(readFileSync(nginx.pidFile, 'utf8').trim()).toBe(pidBefore);
      expect((await get('site.test', '/')).status).toBe(200);
      expect((await get('new.site.test', '/')).body).toBe('default server\n');
      expect(spawnSync(NGINX as string, ['-t', ...nginx.args]).status).toBe(0);
    } finally {
      writeFileSync(join(templates, 'nginx', 'site.conf'), builtin);
    }
  });

  it('RemoveSite: the names are no longer served by the vhost; with deleteFiles the files dirs go; a retry is fine', async () => {
    const r = await call({ type: 'removeSite', domain: 'site.test', tree: PLATFORM, deleteFiles: true, pinnedImpl: '' });
    expect(r).toEqual({
      impl: 'nginx',
      path: CONF,
      removed: true,
      reloaded: true,
      deleted: ['sites/site.test/files', 'sites/site.test/private'],
      problems: [],
      // "reloaded" once the new config serves (reloadwait.ts)
      reloadWait: expect.stringMatching(
        /^waited for new nginx workers up and the old ones shutting down \(master pid \d+\): serving the new config after \d+ ms$/,
      ),
    });
    expect(existsSync(CONF)).toBe(false);
    await served('site.test to fall to the default server', 'site.test', '/', (x) => x.body === 'default server\n');
    expect((await get('www.site.test', '/')).body).toBe('default server\n');
    expect(readdirSync(join(tree(), 'sites/site.test'))).toEqual(['settings.php']);
    const again = await call({ type: 'removeSite', domain: 'site.test', tree: PLATFORM, deleteFiles: true, pinnedImpl: '' });
    expect(again).toMatchObject({ removed: false, reloaded: false, deleted: [] });
  });

  it('InstallSite for a kind without an unattended installer says why it did not run', async () => {
    const r = await call({
      type: 'installSite',
      domain: 'site.test',
      kind: 'generic',
      title: 'X',
      adminUser: 'admin',
      adminEmail: 'a@site.test',
      adminPassword: 'pw',
      tree: '/var/www/site',
      profile: '',
      locale: '',
    });
    expect(r.ran).toBe(false);
    expect(r.reason).toMatch(/no non-interactive installer for kind generic/);
    expect(r.url).toBe('http://site.test/');
  });
});

describe("WordPress install over HTTP (Debian's wordpress, private MariaDB)", () => {
  if (!existsSync(join(WORDPRESS, 'wp-admin/install.php'))) throw new Error('Debian package wordpress is not installed: apt-get install wordpress');
  let db: PrivateMariaDb | undefined;
  const WP = '/var/www/wp';
  const wpTree = () => join(hostRoot, WP);
  const TITLE = 'Spoke Test Blog 7c1f';

  beforeAll(async () => {
    db = await startMariaDb(join(dir, 'mariadb'), 'rootpw-sitevhost');
    const c = await db.connect();
    await c.query('CREATE DATABASE wp_site');
    await c.query("CREATE USER 'wp'@'127.0.0.1' IDENTIFIED BY 'wp-pass-1'");
    await c.query("GRANT ALL ON wp_site.* TO 'wp'@'127.0.0.1'");
    await c.end();
    // A minimal theme: Debian's package ships none, and the home page must show the title.
    prepareWordPress(wpTree(), { theme: 'spoketest' });
    // The real per-site settings are another part's job; this is the least WordPress needs.
    const salts = ['AUTH_KEY', 'SECURE_AUTH_KEY', 'LOGGED_IN_KEY', 'NONCE_KEY', 'AUTH_SALT', 'SECURE_AUTH_SALT', 'LOGGED_IN_SALT', 'NONCE_SALT'];
    writeFileSync(
      join(wpTree(), 'wp-config.php'),
      [
        '<?php',
        "define('DB_NAME', 'wp_site');",
        "define('DB_USER', 'wp');",
        "define('DB_PASSWORD', 'wp-pass-1');",
        `define('DB_HOST', '127.0.0.1:${db.port}');`,
        "define('DB_CHARSET', 'utf8mb4');",
        "define('DB_COLLATE', '');",
        ...salts.map((k, i) => `define('${k}', 'spoke-test-salt-${i}-${k.toLowerCase()}');`),
        "define('WP_DEFAULT_THEME', 'spoketest');",
        "define('WP_HOME', 'http://wp.test');",
        "define('WP_SITEURL', 'http://wp.test');",
        "$table_prefix = 'wp_';",
        "if (!defined('ABSPATH')) define('ABSPATH', __DIR__ . '/');",
        "require_once ABSPATH . 'wp-settings.php';",
        '',
      ].join('\n'),
      { mode: 0o600 },
    );
    chmodSync(join(wpTree(), 'wp-config.php'), 0o600);
    const r = await call({ ...SITE, domain: 'wp.test', platform: 'wp', tree: WP, kind: 'wordpress', aliases: [], webGroupFiles: ['wp-config.php'] });
    expect(r.problems).toEqual([]);
  }, 180_000);

  afterAll(async () => {
    await db?.stop();
  });

  it('InstallSite runs the installer; the home page shows the title; a second run says it is installed', async () => {
    const r = await call({
      type: 'installSite',
      domain: 'wp.test',
      kind: 'wordpress',
      title: TITLE,
      adminUser: 'admin',
      adminEmail: 'admin@wp.test',
      adminPassword: 'S3cret-pass-9!',
      tree: '/var/www/wp',
      profile: '',
      locale: '',
    });
    expect(r).toEqual({ ran: true, reason: '', url: 'http://wp.test/', profile: '' });
    const home = await get('wp.test', '/');
    expect(home.status, home.body.slice(0, 500)).toBe(200);
    expect(home.body).toContain(`<h1 id="site-title">${TITLE}</h1>`);
    const again = await call({
      type: 'installSite',
      domain: 'wp.test',
      kind: 'wordpress',
      title: TITLE,
      adminUser: 'admin',
      adminEmail: 'admin@wp.test',
      adminPassword: 'x',
      tree: '/var/www/wp',
      profile: '',
      locale: '',
    });
    expect(again).toMatchObject({ ran: false, reason: 'WordPress is already installed at http://wp.test/' });
  }, 120_000);

  it('SiteCron over the link: wp-cron.php through the same web server answers 200', async () => {
    const r = await call({ type: 'siteCron', tree: '/var/www/wp', domain: 'wp.test', kind: 'wordpress' });
    expect(r).toMatchObject({ status: 200, message: '200' });
    expect(r.method).toMatch(/^GET \/wp-cron\.php\?doing_wp_cron via 127\.0\.0\.1:\d+$/);
  }, 60_000);

  it('a site whose database is unreachable fails with SITE_INSTALL_FAILED and a one-line reason', async () => {
    writeFileSync(join(wpTree(), 'wp-config.php'), readFileSync(join(wpTree(), 'wp-config.php'), 'utf8').replace("'wp-pass-1'", "'wrong-password'"));
    const err = await call({
      type: 'installSite',
      domain: 'wp.test',
      kind: 'wordpress',
      title: TITLE,
      adminUser: 'admin',
      adminEmail: 'admin@wp.test',
      adminPassword: 'pw',
      tree: '/var/www/wp',
      profile: '',
      locale: '',
    }).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'SITE_INSTALL_FAILED' });
    expect((err as Error).message).toMatch(/^w1: http:\/\/wp\.test\/wp-admin\/install\.php \(via 127\.0\.0\.1:\d+\) answered 500: .*database connection/i);
    expect((err as Error).message).not.toContain('\n');
    expect((err as Error).message).not.toContain('<');
  });
});
