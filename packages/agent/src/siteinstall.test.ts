/**
 * The installer's rules without WordPress: addresses, HTML to one line, kinds without an
 * unattended installer, input checks, and how a refusal from wp-admin/install.php becomes
 * SITE_INSTALL_FAILED (served here by a small HTTP server answering with WordPress's own markup).
 * The real WordPress run is in test/e2e/sitevhost.test.ts.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fail, silentLogger } from '@spoke/shared';
import type { HttpSettings } from './config.js';
import { htmlText, localAddress, SiteInstaller } from './siteinstall.js';
import type { SitePhp } from './php/sitephp.js';

const FORM =
  '<html><head><title>WordPress &rsaquo; Installation</title><style>p{}</style></head><body><form><input name="weblog_title" type="text"/></form></body></html>';
const REFUSED =
  '<html><head><title>WordPress</title></head><body><h1>Welcome</h1><p class="message">Your passwords do not match. Please try again.</p>' +
  '<input type="password" name="admin_password" data-pw="hunter2-secret" /></body></html>';

let server: Server;
let port = 0;
const seen: { method: string; url: string; host: string; body: string }[] = [];

beforeAll(async () => {
  server = createServer((req, res) => {
    let body = '';
    req.on('data', (c: Buffer) => (body += c.toString()));
    req.on('end', () => {
      seen.push({ method: req.method ?? '', url: req.url ?? '', host: req.headers.host ?? '', body });
      res.writeHead(200, { 'Content-Type': 'text/html' });
      res.end(req.method === 'GET' ? FORM : REFUSED);
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  port = (server.address() as AddressInfo).port;
});
afterAll(() => new Promise<void>((r) => server.close(() => r())));

/** Site tool runs the installer asked for, answered by `answer` (the real tool is tested in test/e2e/drupal.test.ts). */
const toolRuns: Array<{ op: string; site: unknown; params: Record<string, unknown> }> = [];
let answer: () => Promise<Record<string, unknown>> = async () => ({ profile: 'standard' });
/** The platform ships vendor/bin/drush; what `drush` exits with. */
let drush: { ships: boolean; code: number; stderr: string } = { ships: false, code: 0, stderr: '' };
const scripts: Array<{ script: string; args: readonly string[] }> = [];

function installer(listen: string[]): SiteInstaller {
  const http: HttpSettings = {
    impl: 'nginx',
    confDir: '/x',
    listen,
    testCommand: null,
    reloadCommand: null,
    webGroup: 'www-data',
    templatesDir: '',
    configured: true,
  };
  const php = {
    run: async (op: string, site: unknown, params: Record<string, unknown> = {}) => {
      toolRuns.push({ op, site, params });
      return answer();
    },
    hasDrush: async () => drush.ships,
    runScript: async (_site: unknown, script: string, args: readonly string[]) => {
      scripts.push({ script, args });
      return { code: drush.code, signal: null, stdout: '', stderr: drush.stderr, ms: 1 };
    },
  } as unknown as SitePhp;
  return new SiteInstaller({ http, php, service: async () => undefined, log: silentLogger(), timeoutMs: 5000 });
}

const REQ = {
  domain: 'wp.test',
  kind: 'wordpress',
  title: 'My Blog',
  adminUser: 'admin',
  adminEmail: 'admin@wp.test',
  adminPassword: 'hunter2-secret',
  tree: '/var/www/wp',
  profile: '',
  locale: '',
};
const D7 = { ...REQ, domain: 'd7.test', kind: 'drupal7', tree: '/var/www/d7', profile: 'standard', locale: 'en' };

describe('SiteInstaller', () => {
  it('reaches the web server at the first listen address', () => {
    expect(localAddress('80')).toEqual({ host: '127.0.0.1', port: 80 });
    expect(localAddress('*:8080')).toEqual({ host: '127.0.0.1', port: 8080 });
    expect(localAddress('0.0.0.0:81')).toEqual({ host: '127.0.0.1', port: 81 });
    expect(localAddress('[::]:80')).toEqual({ host: '::1', port: 80 });
    expect(localAddress('[2001:db8::1]:80')).toEqual({ host: '2001:db8::1', port: 80 });
    expect(localAddress('10.0.0.5:8080')).toEqual({ host: '10.0.0.5', port: 8080 });
  });

  it('turns an HTML page into one short line', () => {
    expect(htmlText('<html><head><title>x</title><script>var a=1;</script></head><body><p>Error &amp; <b>more</b>\n\n text</p></body></html>')).toBe(
      'Error & more text',
    );
    expect(htmlText(`<p>${'a'.repeat(400)}</p>`)).toHaveLength(300);
  });

  it('other kinds do not run, with the reason and the address to finish at', async () => {
    const w = installer([`127.0.0.1:${port}`]);
    expect(await w.install({ ...REQ, kind: 'mediawiki' })).toEqual({
      ran: false,
      reason: 'Spoke has no non-interactive installer for kind mediawiki; finish the install at http://wp.test/',
      url: 'http://wp.test/',
      profile: '',
    });
    expect(toolRuns).toEqual([]);
  });

  it("Drupal runs the site tool's install with the profile, locale and account; the password goes only to the tool", async () => {
    toolRuns.length = 0;
    answer = async () => ({ profile: 'standard' });
    const w = installer([`127.0.0.1:${port}`]);
    expect(await w.install({ ...D7, locale: '' })).toEqual({ ran: true, reason: '', url: 'http://d7.test/', profile: 'standard' });
    expect(toolRuns).toEqual([
      {
        op: 'install',
        site: { tree: '/var/www/d7', domain: 'd7.test', kind: 'drupal7' },
        params: { profile: 'standard', locale: 'en', title: 'My Blog', adminUser: 'admin', adminEmail: 'admin@wp.test', adminPassword: 'hunter2-secret' },
      },
    ]);
  });

  it('a Drupal 8+ platform that ships drush is installed with its drush site:install; the password is set after, never on its command line', async () => {
    toolRuns.length = 0;
    scripts.length = 0;
    answer = async () => ({});
    drush = { ships: true, code: 0, stderr: '' };
    const D9 = { ...D7, domain: 'd9.test', kind: 'drupal8', tree: '/var/www/d9', profile: 'minimal' };
    expect(await installer([`127.0.0.1:${port}`]).install(D9)).toEqual({ ran: true, reason: '', url: 'http://d9.test/', profile: 'minimal' });
    expect(scripts).toEqual([
      {
        script: 'vendor/bin/drush',
        args: [
          'site:install',
          'minimal',
          '--yes',
          '--uri=http://d9.test',
          '--sites-subdir=d9.test',
          '--site-name=My Blog',
          '--site-mail=admin@wp.test',
          '--account-name=admin',
          '--account-mail=admin@wp.test',
          '--locale=en',
        ],
      },
    ]);
    expect(JSON.stringify(scripts)).not.toContain('hunter2-secret');
    expect(toolRuns.map((r) => [r.op, r.params])).toEqual([
      ['prepareInstall', {}],
      ['setPassword', { adminUser: 'admin', adminPassword: 'hunter2-secret' }],
    ]);
    // drush failing is SITE_INSTALL_FAILED with what it said; the password is never set
    toolRuns.length = 0;
    drush = { ships: true, code: 1, stderr: ' [error]  SQLSTATE[HY000] [2002] Connection refused ' };
    const err = await installer([`127.0.0.1:${port}`])
      .install(D9)
      .catch((e: unknown) => e);
    expect(err).toMatchObject({
      code: 'SITE_INSTALL_FAILED',
      message: 'vendor/bin/drush site:install (profile minimal) exited with 1: [error] SQLSTATE[HY000] [2002] Connection refused',
    });
    expect(toolRuns.map((r) => r.op)).toEqual(['prepareInstall']);
    drush = { ships: false, code: 0, stderr: '' };
  });

  it('Drupal already installed is not run (with the reason); a failing installer is SITE_INSTALL_FAILED without the password', async () => {
    const w = installer([`127.0.0.1:${port}`]);
    answer = async () => {
      throw fail('SITE_ALREADY_INSTALLED', 'd7.test: To start over, you must empty your existing database');
    };
    expect(await w.install(D7)).toEqual({
      ran: false,
      reason: "Drupal is already installed in the site's database (http://d7.test/)",
      url: 'http://d7.test/',
      profile: 'standard',
    });
    answer = async () => {
      throw fail('SITE_TOOL_FAILED', 'd7.test: PDOException: access denied for hunter2-secret');
    };
    const err = await w.install(D7).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'SITE_INSTALL_FAILED', message: 'Drupal installer (profile standard): d7.test: PDOException: access denied for ***' });
    toolRuns.length = 0;
    await expect(w.install({ ...D7, profile: '../x' })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    await expect(w.install({ ...D7, locale: 'en; rm' })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    expect(toolRuns).toEqual([]);
  });

  it('refuses input WordPress would refuse, before any request', async () => {
    const w = installer([`127.0.0.1:${port}`]);
    await expect(w.install({ ...REQ, adminUser: 'bad<user>' })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    await expect(w.install({ ...REQ, adminEmail: 'nope' })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    await expect(w.install({ ...REQ, adminPassword: '' })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    await expect(w.install({ ...REQ, domain: 'wp.test/evil' })).rejects.toMatchObject({ code: 'INVALID_DOMAIN' });
    expect(seen).toEqual([]);
  });

  it("posts the install form with the site's Host; a refusal is SITE_INSTALL_FAILED with WordPress's message and never the password", async () => {
    const err = await installer([`127.0.0.1:${port}`])
      .install(REQ)
      .catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'SITE_INSTALL_FAILED' });
    expect((err as Error).message).toBe(
      `WordPress installer at http://wp.test/wp-admin/install.php (via 127.0.0.1:${port}) answered 200 without success: Your passwords do not match. Please try again.`,
    );
    expect(seen.map((s) => [s.method, s.url, s.host])).toEqual([
      ['GET', '/wp-admin/install.php', 'wp.test'],
      ['POST', '/wp-admin/install.php?step=2', 'wp.test'],
    ]);
    expect(Object.fromEntries(new URLSearchParams(seen[1]?.body))).toEqual({
      weblog_title: 'My Blog',
      user_name: 'admin',
      admin_password: 'hunter2-secret',
      admin_password2: 'hunter2-secret',
      pw_weak: '1',
      admin_email: 'admin@wp.test',
      blog_public: '1',
      language: '',
    });
  });

  it('a web server that is not there is SITE_INSTALL_FAILED naming the address', async () => {
    const closed = createServer();
    await new Promise<void>((r) => closed.listen(0, '127.0.0.1', r));
    const dead = (closed.address() as AddressInfo).port;
    await new Promise<void>((r) => closed.close(() => r()));
    const err = await installer([`127.0.0.1:${dead}`])
      .install(REQ)
      .catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'SITE_INSTALL_FAILED' });
    expect((err as Error).message).toMatch(/^GET http:\/\/wp\.test\/wp-admin\/install\.php \(via 127\.0\.0\.1:\d+\) failed: connection refused/);
  });
});
