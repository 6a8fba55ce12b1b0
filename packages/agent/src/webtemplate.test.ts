import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { BUILTIN_TEMPLATES, checkListen, platformVars, renderPlatformConfig, renderTemplate, type PlatformConfigInput } from './webtemplate.js';
import { code, nginxTest } from './testutil.js';

const REPO = join(import.meta.dirname, '../../..');
const dir = mkdtempSync(join(tmpdir(), 'spoke-webtemplate-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const INPUT: PlatformConfigInput = {
  impl: 'nginx',
  platform: 'd7',
  kind: 'drupal7',
  tree: '/var/aegir/platforms/d7',
  root: '/srv/host1/var/aegir/platforms/d7',
  listen: ['80', '[::]:80'],
  fpm: '/run/php/php8.2-fpm.sock',
};

describe('renderTemplate', () => {
  it('substitutes variables and repeats a line per value of a list variable', () => {
    const out = renderTemplate('t', 'server {\n    listen {{listen}};\n    root {{root}}; # {{root}}\n}', { listen: ['80', '127.0.0.1:8080'], root: '/x' });
    expect(out).toBe('server {\n    listen 80;\n    listen 127.0.0.1:8080;\n    root /x; # /x\n}');
  });

  it('refuses unknown variables, malformed braces and two lists on one line, naming the line', () => {
    expect(() => renderTemplate('t.conf', 'a\nroot {{rot}};', { root: '/x' })).toThrow(/t\.conf:2: unknown variable \{\{rot\}\} \(known: root\)/);
    expect(code(() => renderTemplate('t', 'root {{ root }};', { root: '/x' }))).toBe('TEMPLATE_INVALID');
    expect(code(() => renderTemplate('t', 'x {{a}} {{b}}', { a: ['1'], b: ['2'] }))).toBe('TEMPLATE_INVALID');
  });

  it('refuses any value with a line break, whatever the caller checked', () => {
    expect(code(() => renderTemplate('t', 'root {{root}};', { root: '/x;\n}\nserver {' }))).toBe('UNSAFE_CONFIG_VALUE');
    expect(code(() => renderTemplate('t', 'listen {{l}};', { l: ['80', '81\r'] }))).toBe('UNSAFE_CONFIG_VALUE');
  });
});

describe('platformVars: values from the master and agent.json are checked', () => {
  const hostile: [keyof PlatformConfigInput, unknown][] = [
    ['platform', 'd7;'],
    ['platform', 'd7\nserver'],
    ['platform', 'd7{'],
    ['platform', 'd7}'],
    ['platform', 'd"7'],
    ['platform', "d'7"],
    ['kind', 'drupal7 x'],
    ['tree', '/var/www/a b'],
    ['tree', '/var/www/a;b'],
    ['tree', '/var/www/$host'],
    ['tree', 'relative/path'],
    ['tree', '/var/www/../etc'],
    ['root', '/srv/x}#'],
    ['root', '/srv/x\\y'],
    ['root', '/srv/<x>'],
    ['root', '/srv/x*'],
    ['listen', ['80; include /etc/passwd']],
    ['listen', ['80\n']],
    ['listen', ['99999']],
    ['listen', ['host name:80']],
    ['listen', []],
    ['fpm', '/run/php.sock;'],
    ['fpm', 'unix:/run/php.sock'],
    ['fpm', '/run/php|fcgi://evil'],
  ];
  it.each(hostile)('refuses %s = %j', (key, value) => {
    expect(code(() => platformVars({ ...INPUT, [key]: value }))).toBe('UNSAFE_CONFIG_VALUE');
  });

  it('accepts ordinary values and derives the php and apache forms', () => {
    const v = platformVars(INPUT);
    expect(v.fastcgi_pass).toBe('unix:/run/php/php8.2-fpm.sock');
    expect(v.php_handler).toBe('proxy:unix:/run/php/php8.2-fpm.sock|fcgi://localhost');
    expect(v.apache_addresses).toBe('*:80 [::]:80');
    expect(v.front_controller).toBe('/index.php?q=$uri&$args');
    const tcp = platformVars({ ...INPUT, kind: 'wordpress', fpm: '127.0.0.1:9000', listen: ['*:8080'] });
    expect(tcp.fastcgi_pass).toBe('127.0.0.1:9000');
    expect(tcp.php_handler).toBe('proxy:fcgi://127.0.0.1:9000');
    expect(tcp.front_controller).toBe('/index.php?$query_string');
    for (const ok of ['80', '127.0.0.1:8080', '[::1]:8443', '*:80', 'web.example.net:80']) expect(checkListen(ok)).toBe(ok);
  });
});

describe('built-in templates', () => {
  it('are the files in deploy/templates, and use only known variables', async () => {
    for (const impl of ['nginx', 'apache'] as const) {
      expect(BUILTIN_TEMPLATES[impl]['platform.conf']).toBe(readFileSync(join(REPO, 'deploy/templates', impl, 'platform.conf'), 'utf8'));
      const r = await renderPlatformConfig({ ...INPUT, impl }, '');
      expect(r.source).toBe(`built-in ${impl}/platform.conf`);
      expect(r.text).not.toMatch(/\{\{|\}\}/);
      expect(r.text).toContain(INPUT.root);
    }
    const nginx = (await renderPlatformConfig(INPUT, '')).text;
    expect(nginx).toMatch(/^\s*listen 80;$/m);
    expect(nginx).toMatch(/^\s*listen \[::\]:80;$/m);
    expect(nginx).toMatch(/^\s*fastcgi_pass unix:\/run\/php\/php8\.2-fpm\.sock;$/m);
    expect(nginx).toMatch(/^\s*index index\.php index\.html;$/m);
  });

  it('an override in templatesDir wins, per impl; a missing one falls back to the built-in', async () => {
    const t = join(dir, 'override');
    mkdirSync(join(t, 'nginx'), { recursive: true });
    writeFileSync(join(t, 'nginx', 'platform.conf'), 'server { listen {{listen}}; root {{root}}; } # {{platform}}\n');
    const r = await renderPlatformConfig(INPUT, t);
    expect(r.source).toBe(join(t, 'nginx', 'platform.conf'));
    expect(r.text).toBe(`server { listen 80; root ${INPUT.root}; } # d7\nserver { listen [::]:80; root ${INPUT.root}; } # d7\n`);
    expect((await renderPlatformConfig({ ...INPUT, impl: 'apache' }, t)).source).toBe('built-in apache/platform.conf');
  });

  // The real servers judge the built-in templates: nginx -t / apache2 -t on a private config.
  it('the nginx template passes nginx -t', async () => {
    const p = join(dir, 'nginx');
    const root = join(p, 'www');
    mkdirSync(root, { recursive: true });
    const text = (await renderPlatformConfig({ ...INPUT, root, listen: ['127.0.0.1:18080', '127.0.0.1:18081'] }, '')).text;
    const r = nginxTest(p, { 'spoke-platform-d7.conf': text });
    expect(r.status, r.stderr).toBe(0);
  });

  const apacheBin = ['/usr/sbin/apache2', '/usr/sbin/httpd'].find((p) => existsSync(p));
  const modules = '/usr/lib/apache2/modules';
  it('the apache template passes apache2 -t', async () => {
    if (!apacheBin || !existsSync(join(modules, 'mod_proxy_fcgi.so'))) throw new Error('apache2 is not installed: apt-get install apache2-bin');
    const p = join(dir, 'apache');
    const root = join(p, 'www');
    mkdirSync(join(p, 'sites'), { recursive: true });
    mkdirSync(root, { recursive: true });
    const text = (await renderPlatformConfig({ ...INPUT, impl: 'apache', root, listen: ['127.0.0.1:18082'] }, '')).text;
    writeFileSync(join(p, 'sites', 'spoke-platform-d7.conf'), text);
    const load = ['mpm_event', 'authz_core', 'dir', 'proxy', 'proxy_fcgi'].map((m) => `LoadModule ${m}_module ${modules}/mod_${m}.so`).join('\n');
    writeFileSync(
      join(p, 'apache2.conf'),
      `ServerRoot ${p}\nDefaultRuntimeDir ${p}\nPidFile ${p}/apache2.pid\nErrorLog ${p}/error.log\nServerName localhost\n${load}\nListen 127.0.0.1:18082\nIncludeOptional ${p}/sites/*.conf\n`,
    );
    const r = spawnSync(apacheBin as string, ['-t', '-f', join(p, 'apache2.conf')], { encoding: 'utf8' });
    expect(r.status, r.stderr + r.stdout).toBe(0);
    expect(r.stderr + r.stdout).toMatch(/Syntax OK/);
  });

  it('renders nothing from a hostile platform name even with an override template', async () => {
    const t = join(dir, 'override2');
    mkdirSync(join(t, 'nginx'), { recursive: true });
    writeFileSync(join(t, 'nginx', 'platform.conf'), 'server_name {{platform}};\n');
    await expect(renderPlatformConfig({ ...INPUT, platform: 'x; include /etc/shadow' }, t)).rejects.toMatchObject({ code: 'UNSAFE_CONFIG_VALUE' });
  });
});
