/**
 * One cron run per kind without the applications: the request each kind sends (path, Host
 * header; the cron key never in a report or error), which answers count as success, how a
 * refusal, a disabled site and a stopped web server read (served by a small HTTP server standing
 * in for nginx), and MediaWiki's runJobs.php command line — run for real with the PHP command line
 * against a stand-in maintenance/runJobs.php that prints its arguments. The real Drupal 7 and
 * WordPress runs are in test/e2e/site-cron.test.ts.
 */
import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RootMap, silentLogger } from '@spoke/shared';
import { expectCode } from '@spoke/shared/testkit';
import type { HttpSettings } from './config.js';
import { SitePhp, scriptArgs, type PhpRun } from './php/sitephp.js';
import { runJobsArgs, runJobsOutcome, SiteCron } from './sitecron.js';

const KEY = 'Zq3-secret_cron_key';
let server: Server;
let port = 0;
const seen: { url: string; host: string }[] = [];
/** What the stand-in web server answers, by request path. */
let reply: (url: string) => { status: number; body: string; expires?: string } = () => ({ status: 200, body: '' });
const D7_EXPIRES = 'Sun, 19 Nov 1978 05:00:00 GMT';
const WP_EXPIRES = 'Wed, 11 Jan 1984 05:00:00 GMT';

beforeAll(async () => {
  server = createServer((req, res) => {
    seen.push({ url: req.url ?? '', host: req.headers.host ?? '' });
    const r = reply(req.url ?? '');
    res.writeHead(r.status, { 'Content-Type': 'text/html', ...(r.expires ? { Expires: r.expires } : {}) });
    res.end(r.body);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  port = (server.address() as AddressInfo).port;
});
afterAll(() => new Promise<void>((r) => server.close(() => r())));

const toolRuns: { op: string; kind: string }[] = [];

function cron(listen = [`127.0.0.1:${port}`], key = KEY): SiteCron {
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
    run: async (op: string, site: { kind: string }) => {
      toolRuns.push({ op, kind: site.kind });
      return { key };
    },
    runScript: async () => {
      throw new Error('unused');
    },
  };
  return new SiteCron({ http, php, service: async () => undefined, log: silentLogger(), timeoutMs: 5000 });
}

describe('SiteCron over HTTP', () => {
  it("Drupal 7: reads the cron key with the site tool, GETs /cron.php?cron_key=KEY with the Host header; 200 with Drupal's headers is success", async () => {
    seen.length = 0;
    reply = () => ({ status: 200, body: '', expires: D7_EXPIRES });
    const r = await cron().run({ tree: '/var/www/d7', domain: 'd7.test', kind: 'drupal7' });
    expect(seen).toEqual([{ url: `/cron.php?cron_key=${KEY}`, host: 'd7.test' }]);
    expect(toolRuns.at(-1)).toEqual({ op: 'cronKey', kind: 'drupal7' });
    expect(r).toMatchObject({ method: `GET /cron.php?cron_key=… via 127.0.0.1:${port}`, status: 200, message: '200' });
    expect(JSON.stringify(r)).not.toContain(KEY);
  });

  it("a 200 without the application's header is another site answering (the vhost is gone): SITE_CRON_FAILED", async () => {
    reply = () => ({ status: 200, body: '<html><body><h1>Welcome to nginx!</h1></body></html>' });
    const d7 = await expectCode(cron().run({ tree: '/var/www/d7', domain: 'd7.test', kind: 'drupal7' }));
    expect([d7.code, d7.message]).toEqual([
      'SITE_CRON_FAILED',
      `GET http://d7.test/cron.php?cron_key=… (via 127.0.0.1:${port}) answered 200 without Drupal's headers: not the site's answer (is its vhost in place?): Welcome to nginx!`,
    ]);
    reply = () => ({ status: 200, body: '', expires: D7_EXPIRES });
    const wp = await expectCode(cron().run({ tree: '/var/www/wp', domain: 'wp.test', kind: 'wordpress' }));
    expect(wp.message).toBe(
      `GET http://wp.test/wp-cron.php?doing_wp_cron (via 127.0.0.1:${port}) answered 200 without WordPress's wp-cron.php's headers: not the site's answer (is its vhost in place?)`,
    );
  });

  it('Drupal 8+: GET /cron/KEY, 204 is success; a 403 is SITE_CRON_FAILED saying why, without the key', async () => {
    seen.length = 0;
    reply = () => ({ status: 204, body: '' });
    const ok = await cron().run({ tree: '/var/www/d9', domain: 'd9.test', kind: 'drupal8' });
    expect(seen).toEqual([{ url: `/cron/${KEY}`, host: 'd9.test' }]);
    expect(ok).toMatchObject({ status: 204, method: `GET /cron/… via 127.0.0.1:${port}` });
    reply = () => ({ status: 403, body: '<html><body><h1>Access denied</h1><p>You are not authorized to access this page.</p></body></html>' });
    const e = await expectCode(cron().run({ tree: '/var/www/d9', domain: 'd9.test', kind: 'drupal8' }));
    expect(e.code).toBe('SITE_CRON_FAILED');
    expect(e.message).toBe(
      `GET http://d9.test/cron/… (via 127.0.0.1:${port}) answered 403 (the cron key was refused, or the site is in maintenance mode): Access denied You are not authorized to access this page.`,
    );
    expect(e.message).not.toContain(KEY);
  });

  it('WordPress: GET /wp-cron.php?doing_wp_cron without the site tool; a 503 (disabled) and a 500 fail', async () => {
    seen.length = 0;
    toolRuns.length = 0;
    reply = () => ({ status: 200, body: '', expires: WP_EXPIRES });
    const r = await cron().run({ tree: '/var/www/wp', domain: 'wp.test', kind: 'wordpress' });
    expect(seen).toEqual([{ url: '/wp-cron.php?doing_wp_cron', host: 'wp.test' }]);
    expect(toolRuns).toEqual([]);
    expect(r.status).toBe(200);
    reply = () => ({ status: 503, body: 'maintenance' });
    expect((await expectCode(cron().run({ tree: '/var/www/wp', domain: 'wp.test', kind: 'wordpress' }))).message).toMatch(
      /answered 503 \(the site is disabled or in maintenance\): maintenance$/,
    );
    reply = () => ({ status: 500, body: '' });
    expect((await expectCode(cron().run({ tree: '/var/www/wp', domain: 'wp.test', kind: 'wordpress' }))).message).toMatch(/answered 500$/);
  });

  it('a stopped web server is SITE_CRON_FAILED "connection refused"; an unusable key is refused before any request', async () => {
    const closed = createServer();
    await new Promise<void>((r) => closed.listen(0, '127.0.0.1', r));
    const deadPort = (closed.address() as AddressInfo).port;
    await new Promise<void>((r) => closed.close(() => r()));
    const e = await expectCode(cron([`127.0.0.1:${deadPort}`]).run({ tree: '/var/www/wp', domain: 'wp.test', kind: 'wordpress' }));
    expect([e.code, e.message]).toEqual([
      'SITE_CRON_FAILED',
      `GET http://wp.test/wp-cron.php?doing_wp_cron (via 127.0.0.1:${deadPort}) failed: connection refused (is the web server running?)`,
    ]);
    seen.length = 0;
    const k = await expectCode(cron(undefined, '').run({ tree: '/var/www/d7', domain: 'd7.test', kind: 'drupal7' }));
    expect([k.code, k.message]).toEqual(['SITE_CRON_FAILED', 'd7.test: the site has no usable cron key (empty)']);
    expect(seen).toEqual([]);
  });

  it('refuses kinds without cron and bad domains', async () => {
    expect((await expectCode(cron().run({ tree: '/var/www/g', domain: 'g.test', kind: 'generic' }))).code).toBe('SITE_TOOL_UNSUPPORTED');
    expect((await expectCode(cron().run({ tree: '/var/www/g', domain: '../etc', kind: 'wordpress' }))).code).toBe('INVALID_DOMAIN');
    expect((await expectCode(cron([]).run({ tree: '/var/www/wp', domain: 'wp.test', kind: 'wordpress' }))).code).toBe('NO_HTTP_SERVICE');
  });
});

describe('MediaWiki: maintenance/runJobs.php', () => {
  const run = (over: Partial<PhpRun>): PhpRun => ({ code: 0, signal: null, stdout: '', stderr: '', ms: 1, ...over });

  it('the command line: the site as --server, a time limit, JSON out', () => {
    expect(runJobsArgs('wiki.test', 300)).toEqual(['--server', 'http://wiki.test', '--maxtime', '300', '--result', 'json']);
    expect(scriptArgs('maintenance/runJobs.php', ['--maxtime', '300'])).toEqual([
      '-d',
      'display_errors=stderr',
      '-d',
      'max_execution_time=0',
      'maintenance/runJobs.php',
      '--maxtime',
      '300',
    ]);
    expect(() => runJobsArgs('x; rm -rf /', 300)).toThrow(/INVALID_DOMAIN|not a valid domain|domain/);
  });

  it('reads what runJobs.php --result json printed; a non-zero exit or a kill fails', () => {
    expect(
      runJobsOutcome('w.test', run({ stdout: '{\n    "jobs": [{"type": "refreshLinks"}, {"type": "htmlCacheUpdate"}],\n    "reached": "none-ready"\n}\n' })),
    ).toBe('runJobs.php ran 2 jobs (none-ready)');
    expect(runJobsOutcome('w.test', run({ stdout: 'notice: something\n{"jobs": [], "reached": "none-ready"}' }))).toBe('runJobs.php ran 0 jobs (none-ready)');
    expect(() => runJobsOutcome('w.test', run({ code: 255, stderr: 'PHP Fatal error: LocalSettings.php not found' }))).toThrow(
      'w.test: maintenance/runJobs.php exited with 255: PHP Fatal error: LocalSettings.php not found',
    );
    expect(() => runJobsOutcome('w.test', run({ code: null, signal: 'SIGKILL' }))).toThrow(/was killed \(SIGKILL\)/);
  });

  it("runs the platform's runJobs.php with the PHP command line in the tree, with those arguments", async () => {
    const dir = mkdtempSync(join(tmpdir(), 'spoke-cron-mw-'));
    try {
      chmodSync(dir, 0o755);
      const tree = join(dir, 'var/www/wiki');
      mkdirSync(join(tree, 'maintenance'), { recursive: true });
      // A stand-in for MediaWiki's script: prints its working directory and arguments as the JSON
      // result runJobs.php --result json would print.
      writeFileSync(
        join(tree, 'maintenance/runJobs.php'),
        '<?php echo json_encode(["jobs" => [["type" => getcwd()]], "reached" => implode(" ", array_slice($argv, 1))]);\n',
      );
      const php = new SitePhp({
        rootMap: new RootMap(dir),
        roots: ['/var/www'],
        binDirs: ['/usr/bin', '/usr/local/bin'],
        phpCli: '',
        phpUser: 'www-data',
        log: silentLogger(),
        uid: 4242,
      });
      const http: HttpSettings = {
        impl: 'nginx',
        confDir: '/x',
        listen: ['80'],
        testCommand: null,
        reloadCommand: null,
        webGroup: 'www-data',
        templatesDir: '',
        configured: true,
      };
      const c = new SiteCron({ http, php, service: async () => undefined, log: silentLogger(), maxJobSeconds: 120 });
      const r = await c.run({ tree: '/var/www/wiki', domain: 'wiki.test', kind: 'mediawiki' });
      expect(r).toMatchObject({
        method: 'php maintenance/runJobs.php',
        status: 0,
        message: 'runJobs.php ran 1 job (--server http://wiki.test --maxtime 120 --result json)',
      });
      const out = await php.runScript({ tree: '/var/www/wiki', domain: 'wiki.test', kind: 'mediawiki' }, 'maintenance/runJobs.php', []);
      expect(JSON.parse(out.stdout)).toMatchObject({ jobs: [{ type: tree }] });
      const e = await expectCode(php.runScript({ tree: '/var/www/wiki', domain: 'wiki.test', kind: 'mediawiki' }, 'maintenance/nope.php', []));
      expect(e.code).toBe('SITE_TOOL_FAILED');
      expect((await expectCode(php.runScript({ tree: '/var/www/wiki', domain: 'wiki.test', kind: 'mediawiki' }, '../x.php', []))).code).toBe(
        'INVALID_ARGUMENT',
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
