/**
 * A site's certificate through WebConfig with the real `nginx -t` as the config test: the vhost
 * names the pair the agent wrote; a certificate whose key is not its own fails nginx's test, the
 * previous vhost is put back and still finds its pair (a bad certificate never takes the server
 * down); a good new pair replaces the old, which is then removed; RemoveSite removes them all.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { RootMap, silentLogger } from '@spoke/shared';
import { commandRunner, WebConfig } from '../webconfig.js';
import { NGINX_BIN, recordingScript } from '../testutil.js';
import { SiteTlsStore } from './sitetls.js';

const dir = mkdtempSync(join(tmpdir(), 'spoke-tlsvhost-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const BIN_DIRS = ['/usr/bin', '/bin', '/usr/sbin', '/sbin'];

function pair(cn: string): { certPem: string; keyPem: string } {
  const k = join(dir, `${cn}.key`);
  const c = join(dir, `${cn}.crt`);
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
      `/CN=${cn}`,
      '-addext',
      `subjectAltName=DNS:${cn}`,
      '-keyout',
      k,
      '-out',
      c,
    ],
    { encoding: 'utf8' },
  );
  if (r.status !== 0) throw new Error(r.stderr);
  return { certPem: readFileSync(c, 'utf8'), keyPem: readFileSync(k, 'utf8') };
}

describe('a site certificate through the real nginx -t', () => {
  it('a mismatched pair fails the test and the old vhost and pair stay; a good one replaces them', async () => {
    if (!NGINX_BIN) throw new Error('nginx is not installed: apt-get install nginx-light');
    const prefix = join(dir, 'nginx');
    const confDir = join(prefix, 'conf.d');
    mkdirSync(join(prefix, 'tmp'), { recursive: true });
    mkdirSync(confDir, { recursive: true });
    mkdirSync(join(dir, 'root', 'var/www/p1'), { recursive: true });
    const conf = join(prefix, 'nginx.conf');
    writeFileSync(
      conf,
      `pid ${prefix}/nginx.pid;\nerror_log ${prefix}/error.log;\nevents {}\nhttp {\n  access_log off;\n  client_body_temp_path ${prefix}/tmp;\n  fastcgi_temp_path ${prefix}/tmp;\n  proxy_temp_path ${prefix}/tmp;\n  uwsgi_temp_path ${prefix}/tmp;\n  scgi_temp_path ${prefix}/tmp;\n  include ${confDir}/*.conf;\n}\n`,
    );
    const tls = new SiteTlsStore({ stateDir: join(dir, 'state'), acmeDir: join(dir, 'acme'), log: silentLogger() });
    const web = new WebConfig({
      http: {
        impl: 'nginx',
        confDir,
        listen: ['127.0.0.1:18180'],
        httpsListen: ['127.0.0.1:18543'],
        testCommand: [NGINX_BIN, '-t', '-p', prefix, '-c', conf, '-e', join(prefix, 'error.log')],
        reloadCommand: [recordingScript(dir, 'reload', 0)],
        webGroup: 'www-data',
        templatesDir: '',
        configured: true,
      },
      fpmSocket: '/run/php/php8.2-fpm.sock',
      roots: ['/var/www'],
      rootMap: new RootMap(join(dir, 'root')),
      binDirs: BIN_DIRS,
      detect: async () => [],
      detectFpm: async () => null,
      run: commandRunner(BIN_DIRS, 20_000),
      log: silentLogger(),
      tls,
    });
    const site = {
      domain: 'a.test',
      platform: 'p1',
      tree: '/var/www/p1',
      kind: 'generic',
      aliases: [],
      redirectAliases: false,
      enabled: true,
      webGroupFiles: [],
      pinnedImpl: '',
    };
    const vhost = join(confDir, 'spoke-site-a.test.conf');
    const certDir = join(dir, 'state', 'tls', 'a.test');
    const a = pair('a.test');
    await web.configureSite({ ...site, tls: { ...a, redirect: false, hsts: false } });
    const first = readFileSync(vhost, 'utf8');
    const named = /ssl_certificate (\S+);/.exec(first)?.[1] as string;
    expect(named.startsWith(certDir)).toBe(true);
    expect(readFileSync(named, 'utf8')).toBe(a.certPem.trim() + '\n');

    const b = pair('b.test');
    const bad = await web.configureSite({ ...site, tls: { certPem: b.certPem, keyPem: a.keyPem, redirect: false, hsts: false } }).catch((e: unknown) => e);
    expect(bad).toMatchObject({ code: 'WEBSERVER_CONFIG_INVALID' });
    expect((bad as Error).message).toMatch(/key values mismatch|SSL_CTX_use_PrivateKey/);
    expect(readFileSync(vhost, 'utf8')).toBe(first);
    expect(existsSync(named)).toBe(true);

    await web.configureSite({ ...site, tls: { ...b, redirect: true, hsts: true } });
    const second = readFileSync(vhost, 'utf8');
    expect(second).not.toBe(first);
    expect(existsSync(named)).toBe(false);
    expect(readdirSync(certDir)).toHaveLength(2);
    expect(second).toContain('add_header Strict-Transport-Security');

    await web.removeSite({ domain: 'a.test', tree: '/var/www/p1', deleteFiles: false, pinnedImpl: '' });
    expect(existsSync(certDir)).toBe(false);
  });
});
