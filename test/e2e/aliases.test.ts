/**
 * `spoke site aliases` end to end: the built master and CLI, real agents (a stand-in for the
 * one-box server `master`, a web server `w1`, a cluster `web` with member `c1`) whose hellos give
 * the host names, platforms added and verified through the CLI (so their kinds come from the real
 * registry), and sites written into the namespace through its own API while the master is stopped
 * (installing a Drupal site needs drush, which this project has not got). Checked: an empty
 * namespace, the YAML printed and written (it parses to the expected aliases), the drushrc file
 * (`php -l`, then PHP's own reading of `$aliases`), the sites left out and why, the refusals
 * (missing --out dir, unknown format, an ssh user that would be an option) changing nothing, and
 * the one-box server counting as remote when the CLI talks to the master over TCP.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse as parseYaml } from 'yaml';
import { Namespace, openStore } from '@spoke/master';
import { drupal10Tree, drupal7Tree, wordpressTree, writeTree, type TreeSpec } from '@spoke/master/testkit';
import { AgentUnderTest, MasterUnderTest, cleanup, scratch, until, type TaskJson } from '../harness.js';

const dir = scratch('spoke-aliases-');
const master = new MasterUnderTest(dir);
const local = new AgentUnderTest(dir, 'master'); // the one-box server's name
const w1 = new AgentUnderTest(dir, 'w1');
const c1 = new AgentUnderTest(dir, 'c1');
const HOST = hostname(); // every agent here runs on this machine
const out = join(dir, 'out');

async function enrollAndRun(a: AgentUnderTest, ...tokenArgs: string[]): Promise<void> {
  const t = await master.cli('server', 'token', a.name, ...tokenArgs);
  const r = await a.enroll(master.listen, t.stdout.trim());
  if (r.code !== 0) throw new Error(`enrolling ${a.name}: ${r.stderr}`);
  a.run();
}

const online = async (name: string) => (await master.json<{ online: boolean }>('server', 'show', name)).online;

async function addPlatform(name: string, path: string, server: string, tree: TreeSpec): Promise<void> {
  writeTree(join(master.root, path), tree);
  const r = await master.cli('-o', 'json', 'platform', 'add', name, '--path', path, '--server', server);
  const t = JSON.parse(r.stdout.slice(r.stdout.lastIndexOf('\n{') + 1)) as TaskJson;
  expect(t.state, `${r.stdout}\n${r.stderr}`).toBe('succeeded');
}

/** PHP's own reading of an aliases.drushrc.php: lint, include, json_encode($aliases). */
function phpAliases(file: string): unknown {
  expect(execFileSync('/usr/bin/php', ['-l', file], { encoding: 'utf8' })).toContain('No syntax errors detected');
  return JSON.parse(execFileSync('/usr/bin/php', ['-r', 'include $argv[1]; echo json_encode($aliases);', file], { encoding: 'utf8' }));
}

beforeAll(async () => {
  await master.start();
  await enrollAndRun(local);
  await enrollAndRun(w1);
  await enrollAndRun(c1, '--cluster', 'web');
  await until('agents online', async () => (await online('master')) && (await online('w1')) && (await online('c1')), 60_000);
  await addPlatform('d10', '/var/aegir/platforms/d10', 'master', drupal10Tree());
  await addPlatform('d7', '/var/aegir/platforms/d7', 'w1', drupal7Tree());
  await addPlatform('d7c', '/var/aegir/platforms/d7c', 'web', drupal7Tree());
  await addPlatform('wp', '/var/www/wp', 'w1', wordpressTree());
  mkdirSync(out);
}, 300_000);

afterAll(async () => {
  await Promise.all([local, w1, c1].map((a) => a.daemon?.stop('SIGKILL')));
  await master.daemon?.stop('SIGKILL');
  cleanup(dir);
});

describe('spoke site aliases (real master, agents and CLI)', () => {
  it('no sites: an empty YAML mapping, an empty drushrc file', async () => {
    const r = await master.cli('site', 'aliases');
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toBe('');
    expect(parseYaml(r.stdout)).toEqual({});
    const d = await master.cli('site', 'aliases', '--format', 'drushrc', '--out', out);
    expect(d.code, d.stderr).toBe(0);
    expect(d.stdout).toBe(`wrote ${join(out, 'aliases.drushrc.php')}: 0 aliases (none)\n`);
    expect(phpAliases(join(out, 'aliases.drushrc.php'))).toEqual([]);
    const y = await master.cli('site', 'aliases', '--out', out);
    expect([y.code, y.stdout, y.stderr]).toEqual([0, `no aliases to write into ${out}\n`, '']);
  });

  it('with sites: YAML printed and written, drushrc valid PHP with the expected arrays; the rest listed with reasons', async () => {
    // Sites into the namespace through its own API, with the master stopped (one writer).
    await master.daemon?.stop();
    const db = openStore(join(master.stateDir, 'spoke.db'));
    const ns = new Namespace({ db, clock: () => Date.now() });
    ns.createSite({ domain: 'local.example.com', platform: 'd10', status: 'installed' });
    ns.createSite({ domain: 'remote.example.com', platform: 'd7', status: 'disabled' });
    ns.createSite({ domain: 'shop.example.org', platform: 'd7c', status: 'installed' });
    ns.createSite({ domain: 'blog.example.com', platform: 'wp', status: 'installed' });
    ns.createSite({ domain: 'half.example.com', platform: 'd10', status: 'installing' });
    db.close();
    await master.start();
    await until('agents back', async () => (await online('master')) && (await online('w1')) && (await online('c1')), 60_000);

    const live = {
      local: { root: join(local.root, '/var/aegir/platforms/d10'), uri: 'http://local.example.com' },
      remote: { root: join(w1.root, '/var/aegir/platforms/d7'), uri: 'http://remote.example.com', host: HOST, user: 'root' },
      shop: { root: join(c1.root, '/var/aegir/platforms/d7c'), uri: 'http://shop.example.org', host: HOST, user: 'root' },
    };
    const r = await master.cli('site', 'aliases');
    expect(r.code, r.stderr).toBe(0);
    expect(parseYaml(r.stdout)).toEqual({
      'local_example_com.site.yml': { live: live.local },
      'remote_example_com.site.yml': { live: live.remote },
      'shop_example_org.site.yml': { live: live.shop },
    });
    expect(r.stdout).toContain('# cluster web: reached through c1, its first online member by name');
    expect(r.stderr).toBe(
      'note: no alias for blog.example.com: not a Drupal site (platform wp is wordpress); drush cannot bootstrap it\n' +
        'note: no alias for half.example.com: status installing (only installed and disabled sites get aliases)\n',
    );

    // an alias file an earlier run wrote for a site that is gone: named, never removed
    const gone = join(out, 'gone_example_com.site.yml');
    writeFileSync(gone, '# drush 9+ site alias @gone_example_com, written by `spoke site aliases`;\nlive: {}\n');
    const y = await master.cli('site', 'aliases', '--out', out);
    expect(y.code, y.stderr).toBe(0);
    expect(y.stderr).toContain(`warning: ${gone} is from an earlier run and its site has no alias now; remove it if drush should forget it: rm ${gone}\n`);
    expect(existsSync(gone)).toBe(true);
    rmSync(gone);
    expect(y.stdout).toBe(
      `wrote ${join(out, 'local_example_com.site.yml')}: @local_example_com → ${live.local.root}\n` +
        `wrote ${join(out, 'remote_example_com.site.yml')}: @remote_example_com → root@${HOST}:${live.remote.root}\n` +
        `wrote ${join(out, 'shop_example_org.site.yml')}: @shop_example_org → root@${HOST}:${live.shop.root}\n`,
    );
    for (const [name, v] of [
      ['local_example_com', live.local],
      ['remote_example_com', live.remote],
      ['shop_example_org', live.shop],
    ] as const) {
      const f = join(out, `${name}.site.yml`);
      expect(parseYaml(readFileSync(f, 'utf8'))).toEqual({ live: v });
      expect(statSync(f).mode & 0o777).toBe(0o644);
    }

    const d = await master.cli('site', 'aliases', '--format', 'drushrc', '--out', out, '--ssh-user', 'aegir');
    expect(d.code, d.stderr).toBe(0);
    expect(d.stdout).toBe(`wrote ${join(out, 'aliases.drushrc.php')}: 3 aliases (@local.example.com, @remote.example.com, @shop.example.org)\n`);
    expect(phpAliases(join(out, 'aliases.drushrc.php'))).toEqual({
      'local.example.com': { root: live.local.root, uri: 'local.example.com' },
      'remote.example.com': { root: live.remote.root, uri: 'remote.example.com', 'remote-host': HOST, 'remote-user': 'aegir' },
      'shop.example.org': { root: live.shop.root, uri: 'shop.example.org', 'remote-host': HOST, 'remote-user': 'aegir' },
    });
    expect(readdirSync(out).sort()).toEqual(['aliases.drushrc.php', 'local_example_com.site.yml', 'remote_example_com.site.yml', 'shop_example_org.site.yml']);
  });

  it('refusals: one line with a stable code, nothing written', async () => {
    const before = readdirSync(out).map((n) => [n, readFileSync(join(out, n), 'utf8')]);
    const missing = join(dir, 'no-such-dir');
    const m = await master.cli('site', 'aliases', '--out', missing);
    expect(m.code).toBe(1);
    expect(m.stderr).toContain(`error: OUTPUT_NOT_WRITABLE: cannot write drush aliases to ${missing}: no such directory (create it first)\n`);
    expect(existsSync(missing)).toBe(false);
    const f = await master.cli('site', 'aliases', '--format', 'xml', '--out', out);
    expect([f.code, f.stderr]).toEqual([2, 'error: USAGE: --format must be yaml or drushrc, got "xml"\n']);
    const u = await master.cli('site', 'aliases', '--out', out, '--ssh-user=-oProxyCommand=x');
    expect(u.code).toBe(1);
    expect(u.stderr).toMatch(/^error: INVALID_ARGUMENT: --ssh-user must be an account name .*, got "-oProxyCommand=x"\n$/);
    expect(readdirSync(out).map((n) => [n, readFileSync(join(out, n), 'utf8')])).toEqual(before);
  });

  it('over TCP with an operator certificate the one-box server is remote too', async () => {
    const certs = join(dir, 'alice');
    expect((await master.cli('operator', 'cert', 'alice', '--out', certs)).code).toBe(0);
    const r = await master.cli('--master', master.listen, '--cert-dir', certs, 'site', 'aliases');
    expect(r.code, r.stderr).toBe(0);
    expect((parseYaml(r.stdout) as Record<string, unknown>)['local_example_com.site.yml']).toEqual({
      live: { root: join(local.root, '/var/aegir/platforms/d10'), uri: 'http://local.example.com', host: HOST, user: 'root' },
    });
  });
});
