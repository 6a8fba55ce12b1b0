/**
 * The installer's rules without WordPress: addresses, HTML to one line, kinds without an
 * unattended installer, input checks, and how a refusal from wp-admin/install.php becomes
 * SITE_INSTALL_FAILED (served here by a small HTTP server answering with WordPress's own markup).
 * The real WordPress run is in test/e2e/sitevhost.test.ts.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { silentLogger } from '@spoke/shared';
import type { HttpSettings } from './config.js';
import { htmlText, localAddress, SiteInstaller } from './siteinstall.js';

const FORM = '<html><head><title>WordPress &rsaquo; Installation</title><style>p{}</style></head><body><form><input name="weblog_title" type="text"/></form></body></html>';
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

function installer(listen: string[]): SiteInstaller {
  const http: HttpSettings = { impl: 'nginx', confDir: '/x', listen, testCommand: null, reloadCommand: null, webGroup: 'www-data', templatesDir: '', configured: true };
  return new SiteInstaller({ http, binDirs: ['/nonexistent'], service: async () => undefined, log: silentLogger(), timeoutMs: 5000 });
}

const REQ = { domain: 'wp.test', kind: 'wordpress', title: 'My Blog', adminUser: 'admin', adminEmail: 'admin@wp.test', adminPassword: 'hunter2-secret' };

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
    expect(htmlText('<html><head><title>x</title><script>var a=1;</script></head><body><p>Error &amp; <b>more</b>\n\n text</p></body></html>')).toBe('Error & more text');
    expect(htmlText(`<p>${'a'.repeat(400)}</p>`)).toHaveLength(300);
  });

  it('other kinds do not run, with the reason and the address to finish at', async () => {
    const w = installer([`127.0.0.1:${port}`]);
    expect(await w.install({ ...REQ, kind: 'drupal10' })).toEqual({ ran: false, reason: 'drush not available on this host; finish the install at http://wp.test/install.php', url: 'http://wp.test/' });
    expect((await w.install({ ...REQ, kind: 'mediawiki' })).reason).toMatch(/no non-interactive installer for kind mediawiki/);
  });

  it('refuses input WordPress would refuse, before any request', async () => {
    const w = installer([`127.0.0.1:${port}`]);
    await expect(w.install({ ...REQ, adminUser: 'bad<user>' })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    await expect(w.install({ ...REQ, adminEmail: 'nope' })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    await expect(w.install({ ...REQ, adminPassword: '' })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    await expect(w.install({ ...REQ, domain: 'wp.test/evil' })).rejects.toMatchObject({ code: 'INVALID_DOMAIN' });
    expect(seen).toEqual([]);
  });

  it('posts the install form with the site\'s Host; a refusal is SITE_INSTALL_FAILED with WordPress\'s message and never the password', async () => {
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
