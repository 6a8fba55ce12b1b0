/**
 * Web server config end to end: a real nginx (the Debian package, started here on a loopback port
 * with a private prefix) serves a platform through the config the agent rendered, tested and
 * reloaded during `platform verify`; PHP goes to a real php-fpm when one is installed; sites/
 * gets the web group; and a broken template override fails the task with nginx's own message
 * while the previous config stays in place and nginx keeps serving.
 */
import { spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AgentUnderTest, MasterUnderTest, cleanup, scratch, until } from '../harness.js';
import {
  enrollAgent,
  gidOf,
  NGINX,
  PHP_FPM,
  phpFpmSocket,
  startNginx,
  startPhpFpm,
  WEB_GROUP as webGroup,
  type PrivateNginx,
  type PrivatePhpFpm,
} from '../services.js';

const dir = scratch('spoke-webconfig-');
// nginx workers and php-fpm run as www-data when we are root: they must reach the agent's tree.
chmodSync(dir, 0o755);
const master = new MasterUnderTest(dir);
const w1 = new AgentUnderTest(dir, 'w1');
const ngx = join(dir, 'nginx');
const confDir = join(ngx, 'spoke.d');
const templates = join(dir, 'templates');
const PLATFORM = '/var/www/static1';
const CONF = join(confDir, 'spoke-platform-static1.conf');
let nginx: PrivateNginx;
let fpm: PrivatePhpFpm | undefined;

async function get(path: string): Promise<{ status: number; body: string }> {
  const r = await fetch(`http://127.0.0.1:${nginx.port}${path}`, { signal: AbortSignal.timeout(5000) });
  return { status: r.status, body: await r.text() };
}

/** Runs a CLI task in JSON mode: the task and its log lines. */
const task = (...args: string[]) => master.task(...args);

const agentTree = () => join(w1.root, PLATFORM);
/** The trees the agent holds committed state for (head.json under <state>/trees). */
const agentTreeStates = (): string[] => {
  const d = join(w1.stateDir, 'trees');
  if (!existsSync(d)) return [];
  return readdirSync(d).flatMap((k) => {
    const head = join(d, k, 'head.json');
    return existsSync(head) ? [(JSON.parse(readFileSync(head, 'utf8')) as { treeKey: string }).treeKey] : [];
  });
};
const masterTree = () => join(master.root, PLATFORM);

beforeAll(async () => {
  nginx = await startNginx(ngx);
  if (PHP_FPM) fpm = await startPhpFpm(dir);

  // The platform on the master: a static file, a PHP file, a dotfile, a Drupal-like sites/.
  mkdirSync(join(masterTree(), 'sites/default'), { recursive: true });
  writeFileSync(join(masterTree(), 'hello.txt'), 'hello from static1\n');
  writeFileSync(join(masterTree(), 'index.html'), '<h1>static1</h1>\n');
  writeFileSync(join(masterTree(), 'info.php'), '<?php echo "php ok ", PHP_MAJOR_VERSION, " ", $_SERVER["SCRIPT_NAME"];\n');
  writeFileSync(join(masterTree(), '.env'), 'SECRET=1\n');
  writeFileSync(join(masterTree(), 'sites/default/default.settings.php'), '<?php\n');
  chmodSync(join(masterTree(), 'sites'), 0o755);
  // User data already on the web server (never part of the platform's manifest).
  mkdirSync(join(agentTree(), 'sites/default/files'), { recursive: true });
  mkdirSync(join(agentTree(), 'sites/default/private'), { recursive: true });
  writeFileSync(join(agentTree(), 'sites/default/files/upload.txt'), 'uploaded\n');
  writeFileSync(join(agentTree(), 'sites/default/private/secret.txt'), 'private\n');
  for (const d of ['sites', 'sites/default/files', 'sites/default/private']) chmodSync(join(agentTree(), d), 0o755);

  await master.start();
  await enrollAgent(master, w1, { http: nginx.agentHttp(templates), php: { fpmSocket: phpFpmSocket(dir) } });
});

afterAll(async () => {
  await w1.daemon?.stop('SIGKILL');
  await master.daemon?.stop('SIGKILL');
  await nginx?.stop();
  await fpm?.stop();
  cleanup(dir);
});

describe('web server config (real nginx)', () => {
  let firstConfig = '';

  it('platform verify writes, tests and reloads the nginx config; nginx serves the platform', async () => {
    const { t, log } = await task('platform', 'add', 'static1', '--path', PLATFORM, '--server', 'w1');
    expect(t.state, `${JSON.stringify(t.error)}\n${log}\n${w1.daemon?.out}`).toBe('succeeded');
    expect(log).toContain(`w1: nginx config ${CONF} written, tested and reloaded`);
    firstConfig = readFileSync(CONF, 'utf8');
    expect(firstConfig).toContain(`root ${agentTree()};`);
    expect(firstConfig).toContain(`listen 127.0.0.1:${nginx.port};`);
    // nginx applies a reload asynchronously: wait for the new server block
    const hello = await until('nginx to serve hello.txt', async () => {
      const r = await get('/hello.txt').catch(() => undefined);
      return r?.status === 200 ? r : undefined;
    });
    expect(hello.body).toBe('hello from static1\n');
    expect((await get('/')).body).toBe('<h1>static1</h1>\n');
    expect((await get('/sites/default/files/upload.txt')).body).toBe('uploaded\n');
    // dotfiles and private files are not served
    expect((await get('/.env')).status).toBe(403);
    expect((await get('/sites/default/private/secret.txt')).status).toBe(403);
  });

  it('PHP goes to php-fpm through the socket from agent.json', async () => {
    if (!PHP_FPM) throw new Error('php-fpm is not installed: apt-get install php-fpm');
    const r = await get('/info.php');
    expect(r.status, `${r.body}\n${fpm?.log() ?? ''}`).toBe(200);
    expect(r.body).toMatch(/^php ok \d+ \/info\.php$/);
    expect((await get('/missing.php')).status).toBe(404);
  });

  it('sites/ and its files dirs get the web group, group-writable (setgid on files/private), without drift', async () => {
    const st = (rel: string) => statSync(join(agentTree(), rel));
    const gid = gidOf(webGroup);
    for (const rel of ['sites', 'sites/default/files', 'sites/default/private']) expect(st(rel).gid, rel).toBe(gid);
    expect(st('sites').mode & 0o7777).toBe(0o775);
    expect(st('sites/default/files').mode & 0o7777).toBe(0o2775);
    expect(st('sites/default/private').mode & 0o7777).toBe(0o2775);
    // the next verify: nothing to converge, no drift, config unchanged (no reload)
    const { t, log } = await task('platform', 'verify', 'static1');
    expect(t.state, log).toBe('succeeded');
    expect(log).toContain('w1: in sync');
    expect(log).not.toMatch(/drift/);
    expect(log).toContain(`w1: nginx config ${CONF} unchanged`);
    const status = await master.json<{ servers: { server: string; inSync: boolean; drift: { total: number } }[] }>('platform', 'status', 'static1');
    expect(status.servers).toMatchObject([{ server: 'w1', inSync: true, drift: { total: 0 } }]);
  });

  it("a broken template fails the verify with nginx's own message; the previous config stays and nginx keeps serving", async () => {
    const pidBefore = readFileSync(nginx.pidFile, 'utf8').trim();
    const builtin = readFileSync(join(import.meta.dirname, '../../deploy/templates/nginx/platform.conf'), 'utf8');
    mkdirSync(join(templates, 'nginx'), { recursive: true });
    writeFileSync(
      join(templates, 'nginx', 'platform.conf'),
      builtin.replace('    index index.php index.html;', '    index index.php index.html;\n    spoke_bogus_directive on;'),
    );
    writeFileSync(join(masterTree(), 'hello.txt'), 'hello again\n');
    const { t, log } = await task('platform', 'verify', 'static1');
    expect(t.state).toBe('failed');
    expect(t.error?.code).toBe('CONVERGE_FAILED');
    expect(t.error?.message).toMatch(
      /web server config of static1 failed on w1 \(WEBSERVER_CONFIG_INVALID: .*unknown directive "spoke_bogus_directive" in .*spoke-platform-static1\.conf:\d+/,
    );
    expect(t.error?.message).toMatch(/the previous file was restored/);
    expect(log).toMatch(/ERROR w1: WEBSERVER_CONFIG_INVALID: .*nginx: \[emerg\] unknown directive "spoke_bogus_directive"/);
    // the previous config is back, byte for byte; no temp file left beside it
    expect(readFileSync(CONF, 'utf8')).toBe(firstConfig);
    expect(readdirSync(confDir)).toEqual(['spoke-platform-static1.conf']);
    // nginx never reloaded the broken file: same master, still serving (the tree itself converged)
    expect(readFileSync(nginx.pidFile, 'utf8').trim()).toBe(pidBefore);
    const r = await get('/hello.txt');
    expect(r).toEqual({ status: 200, body: 'hello again\n' });
    expect(spawnSync(NGINX as string, ['-t', ...nginx.args]).status).toBe(0);
  });

  it('with the override fixed, verify succeeds again and nothing needs reloading', async () => {
    const builtin = readFileSync(join(import.meta.dirname, '../../deploy/templates/nginx/platform.conf'), 'utf8');
    writeFileSync(join(templates, 'nginx', 'platform.conf'), builtin);
    const { t, log } = await task('platform', 'verify', 'static1');
    expect(t.state, log).toBe('succeeded');
    expect(log).toContain(`w1: nginx config ${CONF} unchanged`);
    expect((await get('/hello.txt')).body).toBe('hello again\n');
  });

  it('platform rm with the agent offline fails with AGENT_OFFLINE and removes nothing', async () => {
    await w1.daemon?.stop('SIGKILL');
    await until('w1 offline', async () => !(await master.json<{ online: boolean }>('server', 'show', 'w1')).online);
    const { t, log } = await task('platform', 'rm', 'static1');
    expect(t.state, log).toBe('failed');
    expect(t.error?.code).toBe('AGENT_OFFLINE');
    expect(t.error?.message).toMatch(/^w1 is offline and would keep serving platform static1; nothing was removed/);
    expect(readFileSync(CONF, 'utf8')).toBe(firstConfig);
    expect((await master.json<{ name: string }>('platform', 'show', 'static1')).name).toBe('static1');
    expect(agentTreeStates()).toEqual([PLATFORM]);
    w1.run();
    await until('w1 online again', async () => (await master.json<{ online: boolean }>('server', 'show', 'w1')).online);
    expect((await get('/hello.txt')).body).toBe('hello again\n');
  });

  it("platform rm removes the config (tested, reloaded) and the agent's tree state; nginx stops serving it; the tree stays", async () => {
    const r = await master.cli('platform', 'rm', 'static1');
    expect(r.code, `${r.stdout}\n${r.stderr}`).toBe(0);
    expect(r.stdout).toMatch(/^task \d+: platform\.remove on platform:static1\n/);
    expect(r.stdout).toMatch(/removed platform static1\n$/);
    expect(r.stdout).toContain(`w1: removed ${CONF} and reloaded; stopped holding the tree; tree ${PLATFORM} left in place`);
    expect(r.stdout).toContain(`master: canonical tree ${masterTree()} left in place`);
    expect(existsSync(CONF)).toBe(false);
    expect(readdirSync(confDir)).toEqual([]);
    expect(spawnSync(NGINX as string, ['-t', ...nginx.args]).status).toBe(0);
    // no server block is left on that port: nginx no longer answers there
    await until('nginx to stop serving static1', async () => {
      const res = await get('/hello.txt').catch(() => undefined);
      return res === undefined || res.status !== 200;
    });
    expect((await master.cli('platform', 'show', 'static1')).stderr).toMatch(/^error: PLATFORM_NOT_FOUND: /);
    expect((await master.json<{ platforms: string[] }>('server', 'show', 'w1')).platforms).toEqual([]);
    expect(agentTreeStates()).toEqual([]);
    // without --delete-files the trees stay, on the agent and on the master
    expect(readFileSync(join(agentTree(), 'hello.txt'), 'utf8')).toBe('hello again\n');
    expect(readFileSync(join(masterTree(), 'hello.txt'), 'utf8')).toBe('hello again\n');
  });

  it('platform add of the same name and path works again; the agent starts from no state', async () => {
    const add = await master.cli('platform', 'add', 'static1', '--path', PLATFORM, '--server', 'w1', '--no-verify');
    expect(add.code, add.stderr).toBe(0);
    const st = await master.json<{ servers: { server: string; committedRootHash: string | null }[] }>('platform', 'status', 'static1');
    expect(st.servers).toMatchObject([{ server: 'w1', committedRootHash: null }]);
    const { t, log } = await task('platform', 'verify', 'static1');
    expect(t.state, log).toBe('succeeded');
    expect(log).toContain(`w1: nginx config ${CONF} written, tested and reloaded`);
    const hello = await until('nginx to serve static1 again', async () => {
      const res = await get('/hello.txt').catch(() => undefined);
      return res?.status === 200 ? res : undefined;
    });
    expect(hello.body).toBe('hello again\n');
    expect(agentTreeStates()).toEqual([PLATFORM]);
  });

  it('platform rm --delete-files deletes the tree on the agent (user files kept) and on the master', async () => {
    const { t, log } = await task('platform', 'rm', 'static1', '--delete-files', '--yes');
    expect(t.state, log).toBe('succeeded');
    expect(log).toContain(`w1: removed ${CONF} and reloaded; stopped holding the tree; deleted ${PLATFORM} except user data`);
    expect(log).toMatch(/WARN w1: kept user data in .*static1: sites\/default\/files, sites\/default\/private/);
    expect(log).toContain(`master: deleted the canonical tree ${masterTree()}`);
    expect(existsSync(CONF)).toBe(false);
    expect(existsSync(masterTree())).toBe(false);
    expect(readdirSync(agentTree())).toEqual(['sites']);
    expect(readFileSync(join(agentTree(), 'sites/default/files/upload.txt'), 'utf8')).toBe('uploaded\n');
    expect(readFileSync(join(agentTree(), 'sites/default/private/secret.txt'), 'utf8')).toBe('private\n');
    expect(agentTreeStates()).toEqual([]);
    expect(readdirSync(join(master.stateDir, 'trash')).flatMap((d) => readdirSync(join(master.stateDir, 'trash', d)))).toEqual([]);
  });
});
