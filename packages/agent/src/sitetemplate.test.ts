/**
 * Site vhost templates: sections, checked names (the shared domain rule), the alias redirect
 * block, the disabled page; and nginx -t on every built-in variant.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { BUILTIN_TEMPLATES, renderSiteConfig, renderTemplate, siteVars, type SiteConfigInput } from './webtemplate.js';
import { code, nginxTest } from './testutil.js';

const REPO = join(import.meta.dirname, '../../..');
const dir = mkdtempSync(join(tmpdir(), 'spoke-sitetemplate-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const SITE: SiteConfigInput = {
  impl: 'nginx',
  domain: 'site.test',
  aliases: ['www.site.test', 'old.site.test'],
  redirectAliases: false,
  enabled: true,
  platform: 'wp',
  kind: 'wordpress',
  tree: '/var/www/wp',
  root: '/srv/host1/var/www/wp',
  listen: ['80', '[::]:80'],
  fpm: '/run/php/php8.2-fpm.sock',
  acmeDir: '/srv/host1/var/lib/spoke-agent/acme-challenge',
};

/** A self-signed pair made with openssl once, for the https variants (nginx -t loads it). */
let pair: { cert: string; key: string } | undefined;
function tls(over: Partial<NonNullable<SiteConfigInput['https']>> = {}): NonNullable<SiteConfigInput['https']> {
  if (!pair) {
    pair = { cert: join(dir, 'site.crt'), key: join(dir, 'site.key') };
    const r = spawnSync(
      'openssl',
      [
        'req',
        '-x509',
        '-newkey',
        'ec',
        '-pkeyopt',
        'ec_paramgen_curve:P-256',
        '-nodes',
        '-days',
        '2',
        '-subj',
        '/CN=site.test',
        '-keyout',
        pair.key,
        '-out',
        pair.cert,
      ],
      { encoding: 'utf8' },
    );
    if (r.status !== 0) throw new Error(`openssl: ${r.stderr}`);
  }
  return { listen: ['127.0.0.1:18443'], cert: pair.cert, key: pair.key, redirect: false, hsts: false, ...over };
}

/** The server blocks of an nginx config, each as its text. */
function serverBlocks(text: string): string[] {
  return text.split(/^server \{$/m).slice(1);
}

describe('template sections', () => {
  it('writes the lines of a section only when its variable has a value', () => {
    const t = 'a\n{{#names}}\nserver_name {{names}};\n{{/names}}\nb';
    expect(renderTemplate('t', t, { names: 'x.test y.test' })).toBe('a\nserver_name x.test y.test;\nb');
    expect(renderTemplate('t', t, { names: '' })).toBe('a\nb');
    expect(renderTemplate('t', '{{#l}}\nalias {{l}};\n{{/l}}', { l: ['a', 'b'] })).toBe('alias a;\nalias b;');
    expect(renderTemplate('t', '{{#l}}\nalias {{l}};\n{{/l}}', { l: [] })).toBe('');
  });

  it('refuses unknown, unclosed and crossed sections, and checks variables inside a skipped section', () => {
    expect(() => renderTemplate('t.conf', '{{#nope}}\n{{/nope}}', { a: 'x' })).toThrow(/t\.conf:1: unknown section variable/);
    expect(() => renderTemplate('t.conf', 'x\n{{#a}}\ny', { a: 'x' })).toThrow(/t\.conf:2: section \{\{#a\}\} is never closed/);
    expect(code(() => renderTemplate('t', '{{#a}}\n{{#b}}\n{{/a}}\n{{/b}}', { a: 'x', b: 'y' }))).toBe('TEMPLATE_INVALID');
    expect(code(() => renderTemplate('t', '{{/a}}', { a: 'x' }))).toBe('TEMPLATE_INVALID');
    expect(code(() => renderTemplate('t', '{{#a}}\n{{typo}}\n{{/a}}', { a: '' }))).toBe('TEMPLATE_INVALID');
  });
});

describe('siteVars: names are domains, checked by the shared rule', () => {
  const hostile: [string, Partial<SiteConfigInput>][] = [
    ['a newline in the domain', { domain: 'site.test\nserver' }],
    ['a semicolon', { domain: 'site.test;' }],
    ['a brace', { domain: 'site.test}' }],
    ['a space', { domain: 'site.test evil.test' }],
    ['a variable', { domain: '$host' }],
    ['a wildcard', { domain: '*.site.test' }],
    ['a regex name', { domain: '~^(.+)$' }],
    ['upper case', { domain: 'Site.test' }],
    ['one label', { domain: 'site' }],
    ['an empty domain', { domain: '' }],
    ['a hostile alias', { aliases: ['www.site.test', 'x.test; include /etc/shadow'] }],
    ['an alias with a newline', { aliases: ['x.test\n}'] }],
    ['an alias with quotes', { aliases: ['"x.test"'] }],
    ['an empty alias', { aliases: [''] }],
    ['the domain as its own alias', { aliases: ['site.test'] }],
  ];
  it.each(hostile)('refuses %s', (_what, over) => {
    expect(code(() => siteVars({ ...SITE, ...over }))).toBe('INVALID_DOMAIN');
  });

  it('derives the names each block answers', () => {
    const v = siteVars(SITE);
    expect(v.server_names).toBe('site.test www.site.test old.site.test');
    expect(v.aliases).toEqual(['www.site.test', 'old.site.test']);
    expect(v.redirect_names).toBe('');
    expect(v.all_names).toBe('site.test www.site.test old.site.test');
    const r = siteVars({ ...SITE, redirectAliases: true, aliases: ['www.site.test', 'www.site.test'] });
    expect(r.server_names).toBe('site.test');
    expect(r.aliases).toEqual([]);
    expect(r.redirect_names).toBe('www.site.test');
    expect(r.redirect_aliases).toEqual(['www.site.test']);
    expect(r.redirect_name).toBe('www.site.test');
  });

  it('refuses a hostile domain even with an override template that uses it raw', async () => {
    const t = join(dir, 'override');
    mkdirSync(join(t, 'nginx'), { recursive: true });
    writeFileSync(join(t, 'nginx', 'site.conf'), 'server_name {{domain}};\n');
    await expect(renderSiteConfig({ ...SITE, domain: 'x.test;include' }, t)).rejects.toMatchObject({ code: 'INVALID_DOMAIN' });
    expect((await renderSiteConfig(SITE, t)).text).toBe('server_name site.test;\n');
  });
});

describe('built-in site templates', () => {
  it('are the files in deploy/templates and render without leftovers', async () => {
    for (const impl of ['nginx', 'apache'] as const) {
      for (const name of ['site.conf', 'site-disabled.conf']) {
        expect(BUILTIN_TEMPLATES[impl][name]).toBe(readFileSync(join(REPO, 'deploy/templates', impl, name), 'utf8'));
      }
      for (const over of [{}, { redirectAliases: true }, { aliases: [] }, { enabled: false }, { enabled: false, aliases: [] }]) {
        const r = await renderSiteConfig({ ...SITE, impl, ...over }, '');
        expect(r.text).not.toMatch(/\{\{|\}\}/);
        expect(r.text).toContain('site.test');
      }
    }
  });

  it('nginx: one block for every name; with redirectAliases the aliases get their own 301 block', async () => {
    const plain = (await renderSiteConfig(SITE, '')).text;
    expect(serverBlocks(plain)).toHaveLength(1);
    expect(plain).toMatch(/^\s*server_name site\.test www\.site\.test old\.site\.test;$/m);
    expect(plain).toMatch(/^\s*root \/srv\/host1\/var\/www\/wp;$/m);
    expect(plain).toMatch(/^\s*try_files \$uri \$uri\/ \/index\.php\?\$query_string;$/m);
    expect(plain).toMatch(/location ~ \^\/sites\/\[\^\/\]\+\/private\/ \{\s*deny all;/);
    expect(plain).not.toContain('return 301');

    const redirect = serverBlocks((await renderSiteConfig({ ...SITE, redirectAliases: true }, '')).text);
    expect(redirect).toHaveLength(2);
    expect(redirect[0]).toMatch(/^\s*server_name www\.site\.test old\.site\.test;$/m);
    expect(redirect[0]).toMatch(/^\s*return 301 \$scheme:\/\/site\.test\$request_uri;$/m);
    expect(redirect[0]).toMatch(/^\s*listen \[::\]:80;$/m);
    expect(redirect[1]).toMatch(/^\s*server_name site\.test;$/m);

    // no aliases: no redirect block even when asked
    expect(serverBlocks((await renderSiteConfig({ ...SITE, aliases: [], redirectAliases: true }, '')).text)).toHaveLength(1);
    // Drupal 7 gets its front controller
    expect((await renderSiteConfig({ ...SITE, kind: 'drupal7' }, '')).text).toMatch(/try_files \$uri \$uri\/ \/index\.php\?q=\$uri&\$args;/);
  });

  it("redirect-only names (a renamed site's old name) get the 301 block whatever redirectAliases says; the aliases keep serving", async () => {
    const blocks = serverBlocks((await renderSiteConfig({ ...SITE, redirectNames: ['was.test'] }, '')).text);
    expect(blocks).toHaveLength(2);
    expect(blocks[0]).toMatch(/^\s*server_name was\.test;$/m);
    expect(blocks[0]).toMatch(/^\s*return 301 \$scheme:\/\/site\.test\$request_uri;$/m);
    expect(blocks[1]).toMatch(/^\s*server_name site\.test www\.site\.test old\.site\.test;$/m);
    // with the alias redirect on, the old name joins the redirected aliases
    const both = serverBlocks((await renderSiteConfig({ ...SITE, redirectAliases: true, redirectNames: ['was.test'] }, '')).text);
    expect(both[0]).toMatch(/^\s*server_name www\.site\.test old\.site\.test was\.test;$/m);
    // disabled: the old name answers 503 with the rest
    expect((await renderSiteConfig({ ...SITE, enabled: false, redirectNames: ['was.test'] }, '')).text).toMatch(
      /^\s*server_name site\.test www\.site\.test old\.site\.test was\.test;$/m,
    );
    // a name that is the domain or an alias, or no domain at all, is refused
    expect(() => siteVars({ ...SITE, redirectNames: ['site.test'] })).toThrow(/redirect name site\.test is the site's own domain/);
    expect(() => siteVars({ ...SITE, redirectNames: ['www.site.test'] })).toThrow(/www\.site\.test is both an alias and a redirect-only name/);
    expect(() => siteVars({ ...SITE, redirectNames: ['bad name;'] })).toThrow();
  });

  it('nginx disabled: every name answers 503 with the maintenance page, Retry-After set', async () => {
    const text = (await renderSiteConfig({ ...SITE, enabled: false, redirectAliases: true }, '')).text;
    expect(serverBlocks(text)).toHaveLength(1);
    expect(text).toMatch(/^\s*server_name site\.test www\.site\.test old\.site\.test;$/m);
    expect(text).toMatch(/return 503 '<!DOCTYPE html>.*site\.test is down for maintenance/);
    expect(text).toMatch(/add_header Retry-After \d+ always;/);
    expect(text).not.toContain('fastcgi_pass');
  });

  it('apache: ServerAlias per served alias; redirect vhost; disabled vhost answers 503', async () => {
    const plain = (await renderSiteConfig({ ...SITE, impl: 'apache' }, '')).text;
    expect(plain.match(/<VirtualHost /g)).toHaveLength(1);
    expect(plain).toMatch(/^\s*ServerName site\.test$/m);
    expect(plain.match(/^\s*ServerAlias .*$/gm)).toEqual(['    ServerAlias www.site.test', '    ServerAlias old.site.test']);
    const redirect = (await renderSiteConfig({ ...SITE, impl: 'apache', redirectAliases: true }, '')).text;
    expect(redirect.match(/<VirtualHost \*:80 \[::\]:80>/g)).toHaveLength(2);
    expect(redirect).toMatch(
      /ServerName www\.site\.test\n\s*ServerAlias www\.site\.test\n\s*ServerAlias old\.site\.test\n[\s\S]*?RewriteEngine On\n\s*RewriteCond %\{REQUEST_URI\} !\^\/\\\.well-known\/acme-challenge\/\n\s*RewriteRule \^ %\{REQUEST_SCHEME\}:\/\/site\.test%\{REQUEST_URI\} \[R=301,L\]/,
    );
    const off = (await renderSiteConfig({ ...SITE, impl: 'apache', enabled: false }, '')).text;
    expect(off).toMatch(/RewriteRule \^ - \[R=503,L\]/);
    expect(off).toMatch(/ErrorDocument 503 ".*site\.test is down for maintenance.*"/);
    expect(off.match(/^\s*ServerAlias .*$/gm)).toHaveLength(2);
    const https = (await renderSiteConfig({ ...SITE, impl: 'apache', aliases: [], https: tls({ redirect: true, hsts: true }) }, '')).text;
    const hosts = https.split('<VirtualHost ').slice(1);
    expect(hosts.map((h) => h.split('>')[0])).toEqual(['*:80 [::]:80', '127.0.0.1:18443']);
    expect(hosts[0]).toMatch(
      /Alias \/\.well-known\/acme-challenge\/ \/srv\/host1\/var\/lib\/spoke-agent\/acme-challenge\/[\s\S]*RewriteRule \^ https:\/\/%\{HTTP_HOST\}%\{REQUEST_URI\} \[R=301,L\]/,
    );
    expect(hosts[1]).toContain(`SSLCertificateFile ${tls().cert}`);
    expect(hosts[1]).toContain('Header always set Strict-Transport-Security "max-age=31536000"');
    expect(hosts[1]).toContain('SetHandler');
  });

  it('nginx https: a 443 block with the certificate; redirect leaves port 80 to challenges and the 301; HSTS only when asked', async () => {
    const both = (await renderSiteConfig({ ...SITE, aliases: [], https: tls() }, '')).text;
    const [one] = serverBlocks(both);
    expect(serverBlocks(both)).toHaveLength(1);
    expect(one).toMatch(/listen 80;\n\s+listen \[::\]:80;\n\s+listen 127\.0\.0\.1:18443 ssl;/);
    expect(one).toContain(`ssl_certificate ${tls().cert};`);
    expect(one).toContain(`ssl_certificate_key ${tls().key};`);
    expect(one).toContain('location ^~ /.well-known/acme-challenge/ {\n        alias /srv/host1/var/lib/spoke-agent/acme-challenge/;');
    expect(one).not.toContain('Strict-Transport-Security');
    const redirect = (await renderSiteConfig({ ...SITE, aliases: [], https: tls({ redirect: true, hsts: true }) }, '')).text;
    const [port80, site] = serverBlocks(redirect) as [string, string];
    expect(port80).toMatch(/listen 80;[\s\S]*acme-challenge[\s\S]*return 301 https:\/\/\$host\$request_uri;/);
    expect(port80).not.toContain('ssl');
    expect(site).not.toMatch(/listen 80;/);
    expect(site).toContain('add_header Strict-Transport-Security "max-age=31536000" always;');
    const plain = (await renderSiteConfig({ ...SITE, aliases: [] }, '')).text;
    expect(plain).not.toMatch(/^\s*(listen .*ssl|ssl_certificate)/m);
    expect(plain).toContain('acme-challenge');
    const off = (await renderSiteConfig({ ...SITE, enabled: false, https: tls() }, '')).text;
    expect(off).toMatch(/listen 127\.0\.0\.1:18443 ssl;[\s\S]*acme-challenge[\s\S]*return 503/);
  });

  // nginx judges every variant: the site blocks must load beside each other and a platform.
  it('every nginx variant passes nginx -t', async () => {
    const p = join(dir, 'nginx');
    const root = join(p, 'www');
    mkdirSync(root, { recursive: true });
    const confs: Record<string, string> = {};
    const variants: [string, Partial<SiteConfigInput>][] = [
      ['a.test', {}],
      ['b.test', { redirectAliases: true }],
      ['c.test', { enabled: false }],
      ['d.test', { aliases: [], redirectAliases: true }],
      ['e.test', { enabled: false, aliases: [] }],
      ['h1.test', { https: tls() }],
      ['h2.test', { https: tls({ redirect: true, hsts: true }) }],
      ['h3.test', { https: tls({ redirect: true }), redirectAliases: true }],
      ['h4.test', { https: tls({ redirect: true }), enabled: false }],
      ['h5.test', { https: tls(), redirectAliases: true }],
      ['r1.test', { redirectNames: ['was-r1.test'] }],
      ['r2.test', { redirectNames: ['was-r2.test'], redirectAliases: true, https: tls({ redirect: true }) }],
      ['r3.test', { redirectNames: ['was-r3.test'], enabled: false }],
    ];
    for (const [domain, over] of variants) {
      const aliases = (over.aliases ?? ['www', 'old']).map((a) => `${a}.${domain}`);
      confs[`spoke-site-${domain}.conf`] = (await renderSiteConfig({ ...SITE, root, listen: ['127.0.0.1:18090'], ...over, domain, aliases }, '')).text;
    }
    const r = nginxTest(p, confs);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stderr).not.toMatch(/conflicting server name/);
  });

  // apache judges every variant too (Debian package apache2-bin; CI installs it).
  it('every apache variant passes apache2 -t', async () => {
    const apacheBin = ['/usr/sbin/apache2', '/usr/sbin/httpd'].find((b) => existsSync(b));
    const modules = '/usr/lib/apache2/modules';
    if (!apacheBin) throw new Error('apache2 is not installed: apt-get install apache2-bin');
    const p = join(dir, 'apache');
    const root = join(p, 'www');
    mkdirSync(join(p, 'sites'), { recursive: true });
    mkdirSync(root, { recursive: true });
    const variants: [string, Partial<SiteConfigInput>][] = [
      ['a.test', {}],
      ['b.test', { redirectAliases: true }],
      ['c.test', { enabled: false }],
      ['d.test', { aliases: [], redirectAliases: true }],
      ['e.test', { enabled: false, aliases: [] }],
      ['f.test', { kind: 'drupal7' }],
      ['h1.test', { https: tls({ listen: ['127.0.0.1:18444'] }) }],
      ['h2.test', { https: tls({ listen: ['127.0.0.1:18444'], redirect: true, hsts: true }) }],
      ['h3.test', { https: tls({ listen: ['127.0.0.1:18444'], redirect: true }), redirectAliases: true }],
      ['h4.test', { https: tls({ listen: ['127.0.0.1:18444'] }), enabled: false }],
    ];
    for (const [domain, over] of variants) {
      const aliases = (over.aliases ?? ['www', 'old']).map((a) => `${a}.${domain}`);
      const text = (await renderSiteConfig({ ...SITE, impl: 'apache', root, listen: ['127.0.0.1:18091'], ...over, domain, aliases }, '')).text;
      writeFileSync(join(p, 'sites', `spoke-site-${domain}.conf`), text);
    }
    const mods = ['mpm_event', 'authz_core', 'dir', 'proxy', 'proxy_fcgi', 'rewrite', 'headers', 'alias', 'mime', 'socache_shmcb', 'ssl'];
    const load = mods
      .filter((m) => existsSync(join(modules, `mod_${m}.so`)))
      .map((m) => `LoadModule ${m}_module ${modules}/mod_${m}.so`)
      .join('\n');
    writeFileSync(
      join(p, 'apache2.conf'),
      `ServerRoot ${p}\nDefaultRuntimeDir ${p}\nPidFile ${p}/apache2.pid\nErrorLog ${p}/error.log\nServerName localhost\n${load}\nListen 127.0.0.1:18091\nListen 127.0.0.1:18444\nIncludeOptional ${p}/sites/*.conf\n`,
    );
    const r = spawnSync(apacheBin, ['-t', '-f', join(p, 'apache2.conf')], { encoding: 'utf8' });
    expect(r.status, r.stderr + r.stdout).toBe(0);
    expect(r.stderr + r.stdout).toMatch(/Syntax OK/);
    // The agent's own check for apache (http.testCommand default): `apache2ctl configtest`, here
    // on this private config dir (Debian's apache2ctl reads $APACHE_CONFDIR/apache2.conf).
    if (existsSync('/usr/sbin/apache2ctl')) {
      const ctl = spawnSync('/usr/sbin/apache2ctl', ['configtest'], {
        encoding: 'utf8',
        env: { ...process.env, APACHE_CONFDIR: p, APACHE_ENVVARS: join(p, 'envvars') },
      });
      expect(ctl.status, ctl.stderr + ctl.stdout).toBe(0);
      expect(ctl.stderr + ctl.stdout).toMatch(/Syntax OK/);
    }
  });
});
