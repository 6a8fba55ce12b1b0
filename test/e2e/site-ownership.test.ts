/**
 * A single-server stack end to end (issue 18): one agent, `w1`, is web server and database server,
 * reaching MariaDB over its unix socket exactly as deploy/README.md documents
 * (`"db": { "socket": … }`, no grantHosts), with a real nginx, php-fpm (as www-data, `localhost`
 * meaning that socket as Debian's php.ini does) and Debian's WordPress on two platforms.
 * Covered: the documented socket setup installs a WordPress site (the user granted to
 * `localhost`); `site install localhost` is refused before anything exists (no task, database or
 * vhost); after restore, clone and migrate the user files under `sites/<domain>/files` belong to
 * the web server (www-data, group-writable) so PHP running as www-data can write an upload into
 * them; `site verify` repairs a file and a dir chown'd to root. A cluster `web` (members c1 and c2,
 * each with its own nginx, the database on w1 granted to them as `localhost` by grantHosts): a
 * restore leaves the files www-data's on every member.
 */
import { execFileSync } from 'node:child_process';
import { chmodSync, chownSync, existsSync, lstatSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startMariaDb, type PrivateMariaDb } from '@spoke/agent/testkit';
import { AgentUnderTest, MasterUnderTest, cleanup, scratch } from '../harness.js';
import { ROOT_USER, enrollAgent, prepareWordPress, startNginx, startPhpFpm, WORDPRESS, type PrivateNginx, type PrivatePhpFpm } from '../services.js';

const ROOT_PW = 'ownership-e2e root #pw';
const TITLE = 'Spoke Single Box';
const dir = scratch('spoke-ownership-');
chmodSync(dir, 0o755);
const master = new MasterUnderTest(dir);
const w1 = new AgentUnderTest(dir, 'w1');
const ngx = join(dir, 'nginx');
const confDir = join(ngx, 'spoke.d');
const WP = '/var/www/wp';
const WP2 = '/var/www/wp2';
const agentTree = (path: string, agent: AgentUnderTest = w1) => join(agent.root, path);
const filesDir = (path: string, domain: string, agent: AgentUnderTest = w1) => join(agentTree(path, agent), 'sites', domain, 'files');
const members = ['c1', 'c2'].map((name) => ({
  name,
  agent: new AgentUnderTest(dir, name),
  ngx: join(dir, `nginx-${name}`),
  nginx: undefined as PrivateNginx | undefined,
}));
const WPC = '/var/www/wpc';
let nginx: PrivateNginx;
let fpm: PrivatePhpFpm;
let db: PrivateMariaDb;
let backupId = '';

/** www-data's uid and gid from /etc/passwd. */
function webUser(): { uid: number; gid: number } {
  const line = readFileSync('/etc/passwd', 'utf8')
    .split('\n')
    .find((l) => l.startsWith('www-data:'));
  if (!line) throw new Error('www-data is missing from /etc/passwd');
  const [, , uid, gid] = line.split(':');
  return { uid: Number(uid), gid: Number(gid) };
}
const WEB = webUser();

/** PHP run as www-data (as php-fpm runs) writes an upload (its dir made as WordPress does): null when it worked, else PHP's warning. */
function phpWriteAsWebUser(target: string): string | null {
  const code = `$f = $argv[1]; @mkdir(dirname($f), 0775, true); echo @file_put_contents($f, "uploaded") === false ? error_get_last()['message'] : 'OK';`;
  const out = execFileSync('php', ['-n', '-r', code, '--', target], { uid: WEB.uid, gid: WEB.gid, encoding: 'utf8' });
  return out === 'OK' ? null : out;
}

/** uid, gid and mode of every entry under `root`, relative paths. */
function owners(root: string): Record<string, [number, number, string]> {
  const out: Record<string, [number, number, string]> = {};
  const walk = (rel: string) => {
    const st = lstatSync(join(root, rel));
    out[rel || '.'] = [st.uid, st.gid, (st.mode & 0o7777).toString(8)];
    if (st.isDirectory())
      for (const n of execFileSync('ls', ['-A', join(root, rel)], { encoding: 'utf8' })
        .split('\n')
        .filter(Boolean))
        walk(rel ? `${rel}/${n}` : n);
  };
  walk('');
  return out;
}

/** Every entry belongs to www-data:www-data and is group-writable (dirs setgid). */
function expectWebOwned(root: string): void {
  const all = owners(root);
  expect(Object.keys(all).length).toBeGreaterThan(2);
  for (const [rel, [uid, gid, mode]] of Object.entries(all)) {
    const m = parseInt(mode, 8);
    const dirEntry = lstatSync(join(root, rel)).isDirectory();
    expect({ rel, uid, gid, groupWritable: (m & 0o060) === 0o060, setgid: dirEntry ? (m & 0o2000) !== 0 : false }).toEqual({
      rel,
      uid: WEB.uid,
      gid: WEB.gid,
      groupWritable: true,
      setgid: dirEntry,
    });
  }
}

async function q(sql: string, values: unknown[] = []): Promise<Record<string, unknown>[]> {
  const c = await db.connect();
  try {
    return (await c.query(sql, values))[0] as Record<string, unknown>[];
  } finally {
    await c.end();
  }
}

beforeAll(async () => {
  if (!ROOT_USER) throw new Error('this test needs root (files are given to www-data)');
  if (!existsSync(join(WORDPRESS, 'wp-admin/install.php'))) throw new Error("Debian's WordPress is not installed: apt-get install wordpress");
  nginx = await startNginx(ngx, { defaultServerBody: 'default server\n' });
  db = await startMariaDb(join(dir, 'mariadb'), ROOT_PW);
  // php-fpm's `localhost` is the MariaDB socket, as Debian's php.ini makes it /run/mysqld/mysqld.sock.
  fpm = await startPhpFpm(dir, { children: 2, catchWorkersOutput: true, mysqli: true, mysqlSocket: db.socket });
  prepareWordPress(join(master.root, WP), { listPosts: true });
  prepareWordPress(join(master.root, WP2), { listPosts: true });
  await master.start();
  await enrollAgent(master, w1, {
    http: nginx.agentHttp(join(dir, 'templates')),
    php: { fpmSocket: fpm.socket },
    // deploy/README.md's single-server setup: the socket, nothing else (the password only
    // because this private server's root has one).
    // The cluster members c1 and c2 run on this host too: they reach the socket, as localhost.
    db: { socket: db.socket, adminPassword: ROOT_PW, grantHosts: { c1: ['localhost'], c2: ['localhost'] } },
  });
  for (const m of members) {
    m.nginx = await startNginx(m.ngx, { name: m.name, defaultServerBody: `default server of ${m.name}\n` });
    await enrollAgent(master, m.agent, { http: m.nginx.agentHttp(join(dir, `templates-${m.name}`)), php: { fpmSocket: fpm.socket } }, ['--cluster', 'web']);
  }
  prepareWordPress(join(master.root, WPC), { listPosts: true });
  {
    const { t, log } = await master.task('platform', 'add', 'wpc', '--path', WPC, '--server', 'web');
    expect(t.state, `${JSON.stringify(t.error)}\n${log}`).toBe('succeeded');
  }
  for (const [name, path] of [
    ['wp', WP],
    ['wp2', WP2],
  ] as const) {
    const { t, log } = await master.task('platform', 'add', name, '--path', path, '--server', 'w1');
    expect(t.state, `${JSON.stringify(t.error)}\n${log}`).toBe('succeeded');
  }
}, 300_000);

afterAll(async () => {
  for (const m of members) {
    await m.agent.daemon?.stop('SIGKILL');
    await m.nginx?.stop();
  }
  await w1.daemon?.stop('SIGKILL');
  await master.daemon?.stop('SIGKILL');
  await nginx?.stop();
  await fpm?.stop();
  await db?.stop();
  cleanup(dir);
});

describe('a single-server stack (web and db on one host, MariaDB over its socket)', () => {
  it('the documented socket setup installs a WordPress site: its user is granted to localhost', async () => {
    const r = await master.cli('site', 'install', 'blog.test', '--platform', 'wp', '--title', TITLE);
    expect(r.code, `${r.stdout}\n${r.stderr}\n${w1.daemon?.out.slice(-3000)}`).toBe(0);
    expect(r.stdout).toMatch(/created database blog_test and user blog_test for localhost/);
    expect(await q('SELECT Host FROM mysql.user WHERE User = ?', ['blog_test'])).toEqual([{ Host: 'localhost' }]);
    expect(readFileSync(join(agentTree(WP), 'sites/blog.test/wp-config.php'), 'utf8')).toContain("define('DB_HOST', 'localhost:3306')");
    const home = await nginx.served('the WordPress home page of blog.test', 'blog.test', '/', (x) => x.status === 200);
    expect(home.body).toContain(`<h1 id="site-title">${TITLE}</h1>`);
  }, 300_000);

  it('site install localhost is refused before anything is created: no task, no database, no vhost', async () => {
    const tasksBefore = (await master.json<unknown[]>('task', 'ls')).length;
    const r = await master.cli('site', 'install', 'localhost', '--platform', 'wp');
    expect([r.code, r.stderr]).toEqual([
      1,
      'error: INVALID_DOMAIN: domain "localhost" is not valid: it needs at least two labels (example.com); single-label names such as localhost are not served\n',
    ]);
    expect((await master.json<unknown[]>('task', 'ls')).length).toBe(tasksBefore);
    expect(await q("SHOW DATABASES LIKE 'localhost'")).toEqual([]);
    expect(existsSync(join(confDir, 'spoke-site-localhost.conf'))).toBe(false);
    expect(existsSync(join(agentTree(WP), 'sites/localhost'))).toBe(false);
    // the same rule as alias add
    const a = await master.cli('site', 'alias', 'add', 'blog.test', 'localhost');
    expect(a.stderr).toBe(
      'error: INVALID_DOMAIN: domain "localhost" is not valid: it needs at least two labels (example.com); single-label names such as localhost are not served\n',
    );
  }, 120_000);

  it('site restore: the restored files belong to www-data and PHP as www-data can upload into them', async () => {
    const files = filesDir(WP, 'blog.test');
    // an upload as WordPress makes it: its month dir and file by www-data
    expect(phpWriteAsWebUser(join(files, '2026/12/photo.jpg'))).toBeNull();
    writeFileSync(join(files, '2026/12/photo.jpg'), 'jpg');
    const b = await master.cli('site', 'backup', 'blog.test');
    expect(b.code, `${b.stdout}\n${b.stderr}`).toBe(0);
    backupId = /backup: (\S+) \(/.exec(b.stdout)?.[1] as string;

    const { t, log } = await master.task('site', 'restore', 'blog.test', '--backup', backupId);
    expect(t.state, `${JSON.stringify(t.error)}\n${log}`).toBe('succeeded');
    expect(readFileSync(join(files, '2026/12/photo.jpg'), 'utf8')).toBe('jpg');
    expectWebOwned(files);
    expect(phpWriteAsWebUser(join(files, '2026/12/upload.txt'))).toBeNull();
    expect(lstatSync(join(files, '2026/12/upload.txt')).uid).toBe(WEB.uid);
  }, 300_000);

  it('site clone and site migrate: the copied files belong to www-data; WordPress can upload into sites/<new>/files/2026/12', async () => {
    const c = await master.task('site', 'clone', 'blog.test', 'copy.test');
    expect(c.t.state, `${JSON.stringify(c.t.error)}\n${c.log}`).toBe('succeeded');
    expectWebOwned(filesDir(WP, 'copy.test'));
    expect(phpWriteAsWebUser(join(filesDir(WP, 'copy.test'), '2026/12/clone-upload.txt'))).toBeNull();

    const m = await master.task('site', 'migrate', 'copy.test', '--platform', 'wp2', '--domain', 'news.test');
    expect(m.t.state, `${JSON.stringify(m.t.error)}\n${m.log}`).toBe('succeeded');
    const news = filesDir(WP2, 'news.test');
    expect(readFileSync(join(news, '2026/12/photo.jpg'), 'utf8')).toBe('jpg');
    expectWebOwned(news);
    expect(phpWriteAsWebUser(join(news, '2026/12/migrate-upload.txt'))).toBeNull();
    await nginx.served('news.test on wp2', 'news.test', '/', (x) => x.status === 200 && x.body.includes(TITLE));
  }, 600_000);

  it("site verify repairs ownership drift under files/ and private/ (a file and a dir chown'd to root)", async () => {
    const news = filesDir(WP2, 'news.test');
    chownSync(join(news, '2026/12'), 0, 0);
    chmodSync(join(news, '2026/12'), 0o755);
    chownSync(join(news, '2026/12/photo.jpg'), 0, 0);
    chmodSync(join(news, '2026/12/photo.jpg'), 0o644);
    expect(phpWriteAsWebUser(join(news, '2026/12/drift.txt'))).toMatch(/Permission denied/);

    const { t, log } = await master.task('site', 'verify', 'news.test');
    expect(t.state, `${JSON.stringify(t.error)}\n${log}`).toBe('succeeded');
    // the two chown'd entries, and the uploads PHP wrote 0644 (umask 022) get g+w
    expect(log).toMatch(/w1: sites\/news\.test\/files, private: [2-9] of \d+ entries given to www-data:www-data \(group-writable\)/);
    expectWebOwned(news);
    // a second verify has nothing to repair
    const again = await master.task('site', 'verify', 'news.test');
    expect(again.t.state, again.log).toBe('succeeded');
    expect(again.log).not.toMatch(/entries given to/);
    expect(phpWriteAsWebUser(join(news, '2026/12/drift.txt'))).toBeNull();
  }, 300_000);

  it("on a cluster: a restore leaves the files www-data's on every member", async () => {
    const r = await master.cli('site', 'install', 'c.test', '--platform', 'wpc', '--db-server', 'w1', '--title', TITLE);
    expect(r.code, `${r.stdout}\n${r.stderr}`).toBe(0);
    const [c1, c2] = members as [(typeof members)[0], (typeof members)[0]];
    for (const m of members) {
      await (m.nginx as PrivateNginx).served(`c.test on ${m.name}`, 'c.test', '/', (x) => x.status === 200 && x.body.includes(TITLE));
    }
    expect(phpWriteAsWebUser(join(filesDir(WPC, 'c.test', c1.agent), '2026/12/photo.jpg'))).toBeNull();
    const b = await master.cli('site', 'backup', 'c.test');
    expect(b.code, `${b.stdout}\n${b.stderr}`).toBe(0);
    const id = /backup: (\S+) \(/.exec(b.stdout)?.[1] as string;
    const { t, log } = await master.task('site', 'restore', 'c.test', '--backup', id);
    expect(t.state, `${JSON.stringify(t.error)}\n${log}`).toBe('succeeded');
    for (const m of [c1, c2]) {
      const files = filesDir(WPC, 'c.test', m.agent);
      expect(readFileSync(join(files, '2026/12/photo.jpg'), 'utf8')).toBe('uploaded');
      expectWebOwned(files);
      expect(phpWriteAsWebUser(join(files, '2026/12/after-restore.txt')), m.name).toBeNull();
    }
  }, 300_000);
});
