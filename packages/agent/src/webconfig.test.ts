/**
 * Write → test → restore → reload, with real commands standing in for the web server: /bin/true,
 * /bin/false and small scripts that print what nginx prints and record that they ran.
 */
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeEach, describe, expect, it } from 'vitest';
import { RootMap, silentLogger } from '@spoke/shared';
import type { HttpSettings } from './config.js';
import type { DetectedService } from './detect.js';
import { commandRunner, serverMessage, WebConfig, type WebConfigDeps } from './webconfig.js';
import { recordingScript, scriptsRan } from './testutil.js';

const base = mkdtempSync(join(tmpdir(), 'spoke-webconfig-'));
afterAll(() => rmSync(base, { recursive: true, force: true }));

const BIN_DIRS = ['/usr/bin', '/bin', '/usr/sbin', '/sbin'];
const TREE = '/var/www/d7';
let dir: string;
let seq = 0;

/** A script that appends its name to dir/ran.log, prints `out` on stderr and exits with `code`. */
const script = (name: string, code: number, out = ''): string => recordingScript(dir, name, code, out);
/** The scripts that ran, in order. */
const ran = (): string[] => scriptsRan(dir);

function http(over: Partial<HttpSettings> = {}): HttpSettings {
  return {
    impl: 'nginx',
    confDir: join(dir, 'conf.d'),
    listen: ['127.0.0.1:8080'],
    testCommand: [script('test', 0)],
    reloadCommand: [script('reload', 0)],
    webGroup: 'www-data',
    templatesDir: '',
    configured: true,
    ...over,
  };
}

function web(over: Partial<WebConfigDeps> = {}, httpOver: Partial<HttpSettings> = {}): WebConfig {
  return new WebConfig({
    http: http(httpOver),
    fpmSocket: '/run/php/php8.2-fpm.sock',
    roots: ['/var/www'],
    rootMap: new RootMap(join(dir, 'root')),
    binDirs: BIN_DIRS,
    detect: async () => [],
    detectFpm: async () => null,
    run: commandRunner(BIN_DIRS, 10_000),
    log: silentLogger(),
    ...over,
  });
}

const REQ = { platform: 'd7', tree: TREE, kind: 'drupal7', pinnedImpl: '' };
const confFile = () => join(dir, 'conf.d', 'spoke-platform-d7.conf');

beforeEach(() => {
  dir = join(base, `case${seq++}`);
  mkdirSync(join(dir, 'root', 'var/www/d7'), { recursive: true });
});

describe('WebConfig', () => {
  it('writes, tests and reloads a new config; an identical render does nothing at all', async () => {
    const w = web();
    const r = await w.configurePlatform(REQ);
    expect(r).toMatchObject({ impl: 'nginx', path: confFile(), changed: true, tested: true, reloaded: true });
    expect(ran()).toEqual(['test', 'reload']);
    const text = readFileSync(confFile(), 'utf8');
    expect(text).toContain(`root ${join(dir, 'root', 'var/www/d7')};`);
    expect(text).toMatch(/listen 127\.0\.0\.1:8080;/);
    expect(text).toMatch(/try_files \$uri \$uri\/ \/index\.php\?q=\$uri&\$args;/);
    const again = await w.configurePlatform(REQ);
    expect(again).toMatchObject({ changed: false, tested: false, reloaded: false });
    expect(ran()).toEqual(['test', 'reload']);
    // no temp files left beside it
    expect(readdirSync(join(dir, 'conf.d'))).toEqual(['spoke-platform-d7.conf']);
  });

  it('a failing test restores the previous file, fails with the server message, and does not reload', async () => {
    await web().configurePlatform(REQ);
    const before = readFileSync(confFile(), 'utf8');
    const emerg = 'nginx: [emerg] unknown directive "bogus" in /etc/nginx/conf.d/spoke-platform-d7.conf:12';
    const failing = web(
      {},
      { testCommand: [script('badtest', 1, `${emerg}\nnginx: configuration file /etc/nginx/nginx.conf test failed`)], listen: ['127.0.0.1:9090'] },
    );
    const err = await failing.configurePlatform(REQ).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'WEBSERVER_CONFIG_INVALID' });
    const msg = (err as Error).message;
    expect(msg).toContain(emerg);
    expect(msg).toMatch(/the previous file was restored/);
    expect(msg).not.toContain('\n');
    expect(readFileSync(confFile(), 'utf8')).toBe(before);
    expect(ran()).toEqual(['test', 'reload', 'badtest']);
    expect(readdirSync(join(dir, 'conf.d'))).toEqual(['spoke-platform-d7.conf']);
  });

  it('a failing test of a first config removes the new file', async () => {
    const err = await web({}, { testCommand: ['/bin/false'] })
      .configurePlatform(REQ)
      .catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'WEBSERVER_CONFIG_INVALID' });
    expect((err as Error).message).toMatch(/the new file was removed/);
    expect(existsSync(confFile())).toBe(false);
    expect(ran()).toEqual([]);
  });

  it('a failing reload is WEBSERVER_RELOAD_FAILED; the tested file stays and the next call reloads even if unchanged', async () => {
    const w = web({}, { reloadCommand: [script('badreload', 1, 'nginx: [alert] kill(1234, 1) failed (1: Operation not permitted)')] });
    const err = await w.configurePlatform(REQ).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'WEBSERVER_RELOAD_FAILED' });
    expect((err as Error).message).toMatch(/failed: nginx: \[alert\] kill\(1234, 1\) failed .* the tested config stays in .*spoke-platform-d7\.conf/);
    expect(existsSync(confFile())).toBe(true);
    await expect(w.configurePlatform(REQ)).rejects.toMatchObject({ code: 'WEBSERVER_RELOAD_FAILED' });
    expect(ran()).toEqual(['test', 'badreload', 'badreload']);
  });

  it.each([
    ['an empty pid file', 'nginx: [error] invalid PID number "" in "/run/nginx.pid"'],
    ['no pid file', 'nginx: [error] open() "/run/nginx.pid" failed (2: No such file or directory)'],
  ])('a web server that is not running (%s) is a problem, not a failure; removing works too', async (_why, said) => {
    const w = web({}, { reloadCommand: [script('downreload', 1, said)] });
    const r = await w.configurePlatform(REQ);
    expect(r).toMatchObject({ changed: true, tested: true, reloaded: false });
    expect(r.problems.join('\n')).toMatch(
      /^nginx is not running, so nothing was reloaded; the tested config in \S+ loads when it starts \(systemctl start nginx\)$/m,
    );
    expect(existsSync(confFile())).toBe(true);
    // nothing is left pending: an unchanged config runs nothing
    expect(await w.configurePlatform(REQ)).toMatchObject({ changed: false, reloaded: false });
    expect(ran()).toEqual(['test', 'downreload']);
    // and `platform rm` is not stuck behind it
    const gone = await w.removePlatform({ platform: 'd7', pinnedImpl: '' });
    expect(gone).toMatchObject({ removed: true, reloaded: false });
    expect(gone.problems.join('\n')).toMatch(/nginx is not running/);
    expect(existsSync(confFile())).toBe(false);
  });

  it('a render that cannot be made (hostile name, unsafe path) writes nothing and runs nothing', async () => {
    await expect(web().configurePlatform({ ...REQ, platform: '../../etc/x' })).rejects.toMatchObject({ code: 'INVALID_NAME' });
    await expect(web().configurePlatform({ ...REQ, tree: '/var/www/a;b' })).rejects.toMatchObject({ code: 'UNSAFE_CONFIG_VALUE' });
    await expect(web().configurePlatform({ ...REQ, tree: '/etc/nginx' })).rejects.toMatchObject({ code: 'PATH_OUTSIDE_ROOTS' });
    expect(existsSync(join(dir, 'conf.d'))).toBe(false);
    expect(ran()).toEqual([]);
  });

  it('a broken override template is TEMPLATE_INVALID before anything is written', async () => {
    const t = join(dir, 'tpl');
    mkdirSync(join(t, 'nginx'), { recursive: true });
    writeFileSync(join(t, 'nginx', 'platform.conf'), 'server { root {{docroot}}; }\n');
    await expect(web({}, { templatesDir: t }).configurePlatform(REQ)).rejects.toMatchObject({ code: 'TEMPLATE_INVALID' });
    expect(existsSync(confFile())).toBe(false);
  });

  it('a test command that is not installed is CONFIG_INVALID, before anything is written', async () => {
    const err = await web({}, { testCommand: ['no-such-nginx-binary', '-t'] })
      .configurePlatform(REQ)
      .catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'CONFIG_INVALID' });
    expect((err as Error).message).toMatch(/http\.testCommand: no-such-nginx-binary is not installed/);
    expect(existsSync(confFile())).toBe(false);
  });

  it('calls are serialised: the config test never sees another platform half-written', async () => {
    const w = web();
    const rs = await Promise.all(['a1', 'a2', 'a3'].map((p) => w.configurePlatform({ ...REQ, platform: p })));
    expect(rs.every((r) => r.changed && r.reloaded)).toBe(true);
    expect(ran()).toEqual(['test', 'reload', 'test', 'reload', 'test', 'reload']);
  });

  describe('which web server', () => {
    const detected = (impls: string[]) => async (): Promise<DetectedService[]> =>
      impls.map((impl) => ({ kind: 'http', impl, version: '1', binary: `/usr/sbin/${impl}` }));

    it('http.impl none: NO_HTTP_SERVICE', async () => {
      await expect(web({}, { impl: 'none' }).configurePlatform(REQ)).rejects.toMatchObject({ code: 'NO_HTTP_SERVICE' });
    });

    it('an agent with --root and no http section manages no web server, even with nginx installed', async () => {
      const err = await web({ detect: detected(['nginx']) }, { impl: '', configured: false })
        .configurePlatform(REQ)
        .catch((e: unknown) => e);
      expect(err).toMatchObject({ code: 'NO_HTTP_SERVICE' });
      expect((err as Error).message).toMatch(/--root .* has no http section/);
    });

    it('nothing detected: NO_HTTP_SERVICE', async () => {
      await expect(web({}, { impl: '' }).configurePlatform(REQ)).rejects.toMatchObject({ code: 'NO_HTTP_SERVICE' });
    });

    it('detection picks nginx before apache; a pin picks apache; agent.json wins over a pin, with a warning', async () => {
      const svc = (httpOver: Partial<HttpSettings>, pin: string, impls: string[]) => web({ detect: detected(impls) }, httpOver).service(pin);
      expect((await svc({ impl: '' }, '', ['nginx', 'apache'])).impl).toBe('nginx');
      expect((await svc({ impl: '' }, '', ['apache'])).impl).toBe('apache');
      const pinned = await svc({ impl: '', confDir: '', testCommand: null, reloadCommand: null }, 'apache', ['nginx', 'apache']);
      expect(pinned).toMatchObject({
        impl: 'apache',
        confDir: '/etc/apache2/sites-enabled',
        test: ['apache2ctl', 'configtest'],
        reload: ['apache2ctl', 'graceful'],
      });
      const conflict = await svc({ impl: 'nginx', confDir: '', testCommand: null, reloadCommand: null }, 'apache', []);
      expect(conflict).toMatchObject({ impl: 'nginx', confDir: '/etc/nginx/conf.d', test: ['nginx', '-t'], reload: ['nginx', '-s', 'reload'] });
      expect(conflict.problems).toEqual(['the master pins apache for this server but agent.json sets http.impl nginx; using nginx']);
    });

    it('renders the apache template for apache', async () => {
      await web({}, { impl: 'apache' }).configurePlatform(REQ);
      const text = readFileSync(confFile(), 'utf8');
      expect(text).toMatch(/<VirtualHost 127\.0\.0\.1:8080>/);
      expect(text).toContain('SetHandler "proxy:unix:/run/php/php8.2-fpm.sock|fcgi://localhost"');
    });
  });

  it('php-fpm: agent.json wins; else detection; a missing socket or none at all is a warning', async () => {
    const fromDetect = await web({
      fpmSocket: '',
      detectFpm: async () => ({ address: '/run/php/php9.1-fpm.sock', source: 'pool www', exists: false }),
    }).configurePlatform(REQ);
    expect(readFileSync(confFile(), 'utf8')).toContain('fastcgi_pass unix:/run/php/php9.1-fpm.sock;');
    expect(fromDetect.problems).toEqual([
      'php-fpm socket /run/php/php9.1-fpm.sock (from pool www) does not exist: is php-fpm running? PHP requests fail until it is',
    ]);
    const none = await web({ fpmSocket: '' }).configurePlatform(REQ);
    expect(readFileSync(confFile(), 'utf8')).toContain('fastcgi_pass unix:/run/php/php-fpm.sock;');
    expect(none.problems[0]).toMatch(/no php-fpm pool or socket found/);
  });
});

describe('WebConfig: sites', () => {
  const SITE = {
    domain: 'site.test',
    platform: 'd7',
    tree: TREE,
    kind: 'drupal7',
    aliases: ['www.site.test'],
    redirectAliases: false,
    enabled: true,
    webGroupFiles: [] as string[],
    pinnedImpl: '',
  };
  const siteFile = () => join(dir, 'conf.d', 'spoke-site-site.test.conf');
  const platformRoot = () => join(dir, 'root', 'var/www/d7');

  it('writes, tests and reloads the vhost and creates the files dirs; the same request again does nothing', async () => {
    const w = web();
    const r = await w.configureSite(SITE);
    expect(r).toMatchObject({ impl: 'nginx', path: siteFile(), changed: true, tested: true, reloaded: true });
    expect(ran()).toEqual(['test', 'reload']);
    expect(readFileSync(siteFile(), 'utf8')).toMatch(/server_name site\.test www\.site\.test;/);
    expect(r.fixed).toEqual(expect.arrayContaining(['sites/site.test/files: created', 'sites/site.test/private: created']));
    expect(existsSync(join(platformRoot(), 'sites/site.test/files'))).toBe(true);
    const again = await w.configureSite(SITE);
    expect(again).toMatchObject({ changed: false, tested: false, reloaded: false, fixed: [] });
    expect(ran()).toEqual(['test', 'reload']);
  });

  it('disable swaps in the maintenance page through the same write/test/reload', async () => {
    const w = web();
    await w.configureSite(SITE);
    const r = await w.configureSite({ ...SITE, enabled: false });
    expect(r).toMatchObject({ changed: true, tested: true, reloaded: true });
    expect(readFileSync(siteFile(), 'utf8')).toMatch(/return 503 /);
    expect(ran()).toEqual(['test', 'reload', 'test', 'reload']);
  });

  it('a failing test restores the previous vhost and names the site', async () => {
    await web().configureSite(SITE);
    const before = readFileSync(siteFile(), 'utf8');
    const failing = web({}, { testCommand: [script('badtest', 1, 'nginx: [emerg] unknown directive "x" in spoke-site-site.test.conf:9')] });
    const err = await failing.configureSite({ ...SITE, aliases: [] }).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'WEBSERVER_CONFIG_INVALID' });
    expect((err as Error).message).toMatch(
      /rejected the config of site site\.test \(from built-in nginx\/site\.conf\): nginx: \[emerg\] unknown directive "x".*the previous file was restored/,
    );
    expect(readFileSync(siteFile(), 'utf8')).toBe(before);
  });

  it('a hostile domain or alias writes nothing and runs nothing', async () => {
    await expect(web().configureSite({ ...SITE, domain: '../x' })).rejects.toMatchObject({ code: 'INVALID_DOMAIN' });
    await expect(web().configureSite({ ...SITE, aliases: ['a.test;b'] })).rejects.toMatchObject({ code: 'INVALID_DOMAIN' });
    await expect(web().configureSite({ ...SITE, webGroupFiles: ['../../etc/shadow'] })).rejects.toMatchObject({ code: 'INVALID_PATH' });
    expect(existsSync(siteFile())).toBe(false);
    expect(ran()).toEqual([]);
  });

  it('no web server: NO_HTTP_SERVICE, as for platforms', async () => {
    await expect(web({}, { impl: 'none' }).configureSite(SITE)).rejects.toMatchObject({ code: 'NO_HTTP_SERVICE' });
    await expect(web({}, { impl: 'none' }).removeSite({ domain: 'site.test', tree: TREE, deleteFiles: false, pinnedImpl: '' })).rejects.toMatchObject({
      code: 'NO_HTTP_SERVICE',
    });
  });

  it('remove: the vhost goes (test, reload); a retry finds nothing to do; deleteFiles removes the files dirs', async () => {
    const w = web();
    await w.configureSite(SITE);
    const r = await w.removeSite({ domain: 'site.test', tree: TREE, deleteFiles: false, pinnedImpl: '' });
    expect(r).toMatchObject({ impl: 'nginx', path: siteFile(), removed: true, reloaded: true, deleted: [] });
    expect(existsSync(siteFile())).toBe(false);
    expect(existsSync(join(platformRoot(), 'sites/site.test/files'))).toBe(true);
    const again = await w.removeSite({ domain: 'site.test', tree: TREE, deleteFiles: true, pinnedImpl: '' });
    // nothing else was in sites/site.test (no settings file here): the dir goes too
    expect(again).toMatchObject({ removed: false, reloaded: false, deleted: ['sites/site.test/files', 'sites/site.test/private', 'sites/site.test'] });
    expect(ran()).toEqual(['test', 'reload', 'test', 'reload']);
  });

  it('remove: a failing test puts the vhost back', async () => {
    await web().configureSite(SITE);
    const before = readFileSync(siteFile(), 'utf8');
    const err = await web({}, { testCommand: ['/bin/false'] })
      .removeSite({ domain: 'site.test', tree: TREE, deleteFiles: true, pinnedImpl: '' })
      .catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'WEBSERVER_CONFIG_INVALID' });
    expect((err as Error).message).toMatch(/rejected the config without site site\.test .*the previous file was restored/);
    expect(readFileSync(siteFile(), 'utf8')).toBe(before);
    // the files were not deleted either
    expect(existsSync(join(platformRoot(), 'sites/site.test/files'))).toBe(true);
  });
});

describe('serverMessage', () => {
  it('keeps the lines that say what is wrong, as one line', () => {
    expect(
      serverMessage(
        'nginx: [warn] conflicting server name "x" on 0.0.0.0:80, ignored\nnginx: [emerg] unexpected "}" in /etc/nginx/conf.d/a.conf:3\nnginx: configuration file /etc/nginx/nginx.conf test failed\n',
      ),
    ).toBe('nginx: [emerg] unexpected "}" in /etc/nginx/conf.d/a.conf:3');
    expect(
      serverMessage(
        "AH00526: Syntax error on line 7 of /etc/apache2/sites-enabled/spoke-platform-d7.conf:\nInvalid command 'Bogus', perhaps misspelled\nAction 'configtest' failed.",
      ),
    ).toBe("AH00526: Syntax error on line 7 of /etc/apache2/sites-enabled/spoke-platform-d7.conf: | Invalid command 'Bogus', perhaps misspelled");
    expect(serverMessage('')).toBe('no output');
  });
});
