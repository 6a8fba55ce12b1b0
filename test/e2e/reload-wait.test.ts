/**
 * "Reloaded" only once the new config serves (issue 18): the agent's web config (WebConfig, as
 * the agent runs it) against a real nginx started here. Each round configures a new site (a new
 * vhost, so nginx must reload to know the name) and sends ONE request right after ConfigureSite
 * returned — no polling: before the wait, `nginx -s reload` returned as soon as the signal was
 * sent and the request often reached an old worker, which answered from the default server.
 * Also: the report says what was waited for (the master puts it in the task log), and removing a
 * vhost waits the same way (the next request gets the default server, not the removed site).
 */
import { chmodSync, mkdirSync, writeFileSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RootMap, silentLogger } from '@spoke/shared';
import { commandRunner, WebConfig } from '@spoke/agent/testkit';
import { cleanup, scratch } from '../harness.js';
import { startNginx, WEB_GROUP, type PrivateNginx } from '../services.js';

const BIN_DIRS = ['/usr/bin', '/bin', '/usr/sbin', '/sbin'];
const TREE = '/var/www/static';
const ROUNDS = 12;

const dir = scratch('spoke-reloadwait-');
chmodSync(dir, 0o755);
const root = join(dir, 'root');
let nginx: PrivateNginx;
let web: WebConfig;

const site = (i: number) => `s${i}.reload.test`;

/**
 * One GET on a new connection (as a browser's first request; a kept-alive connection to an old
 * worker is closed by it when it shuts down, which no reload wait can change).
 */
const fresh = (host: string): Promise<{ status: number; body: string }> =>
  new Promise((resolve, reject) => {
    const req = httpRequest({ host: '127.0.0.1', port: nginx.port, path: '/', headers: { Host: host }, agent: false, timeout: 20_000 }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', reject);
    req.end();
  });
const request = (domain: string) => ({
  domain,
  platform: 'static',
  tree: TREE,
  kind: 'generic',
  aliases: [],
  redirectAliases: false,
  enabled: true,
  webGroupFiles: [],
  pinnedImpl: '',
});

beforeAll(async () => {
  nginx = await startNginx(join(dir, 'nginx'), { name: 'reload-wait', defaultServerBody: 'default server\n' });
  mkdirSync(join(root, TREE, 'sites'), { recursive: true });
  writeFileSync(join(root, TREE, 'index.html'), '<h1>the site</h1>\n');
  for (const d of [root, join(root, 'var'), join(root, 'var/www'), join(root, TREE)]) chmodSync(d, 0o755);
  web = new WebConfig({
    http: { ...nginx.agentHttp(join(dir, 'templates')), webGroup: WEB_GROUP, configured: true },
    fpmSocket: join(dir, 'php-fpm.sock'),
    roots: ['/var/www'],
    rootMap: new RootMap(root),
    binDirs: BIN_DIRS,
    detect: async () => [],
    detectFpm: async () => null,
    run: commandRunner(BIN_DIRS, 30_000),
    log: silentLogger(),
  });
}, 60_000);

afterAll(async () => {
  await nginx?.stop();
  cleanup(dir);
});

describe('a reload is reported once the new config serves (real nginx)', () => {
  it(`the first request right after each of ${ROUNDS} new vhosts is answered by the site, not the default server`, async () => {
    const answers: string[] = [];
    for (let i = 0; i < ROUNDS; i++) {
      const r = await web.configureSite(request(site(i)));
      expect(r.reloaded, JSON.stringify(r)).toBe(true);
      expect(r.reloadWait).toMatch(/^waited for new nginx workers up and the old ones shutting down \(master pid \d+\): serving the new config after \d+ ms$/);
      expect(r.problems).toEqual([]);
      const got = await fresh(site(i));
      answers.push(`${site(i)}: ${got.status} ${got.body.trim()}`);
    }
    expect(answers).toEqual(Array.from({ length: ROUNDS }, (_, i) => `${site(i)}: 200 <h1>the site</h1>`));
  }, 300_000);

  it('a removed vhost: the first request after RemoveSite gets the default server', async () => {
    const answers: string[] = [];
    for (let i = 0; i < ROUNDS; i++) {
      const r = await web.removeSite({ domain: site(i), tree: TREE, deleteFiles: false, pinnedImpl: '' });
      expect([r.removed, r.reloaded]).toEqual([true, true]);
      expect(r.reloadWait).toMatch(/^waited for new nginx workers/);
      const got = await fresh(site(i));
      answers.push(`${site(i)}: ${got.body.trim()}`);
    }
    expect(answers).toEqual(Array.from({ length: ROUNDS }, (_, i) => `${site(i)}: default server`));
  }, 300_000);
});
