/**
 * Converge end to end: a real master and agents ("hosts" with their own --root) keep a platform
 * tree identical everywhere — initial sync to a two-member cluster and a single server, deltas,
 * removals, corruption in transit, a member enrolled later, hand edits (drift), user files, live
 * sync, and an agent that was offline.
 */
import { chmodSync, mkdirSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync, existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { walkTree } from '@spoke/shared';
import { AgentUnderTest, MasterUnderTest, cleanup, scratch, until } from '../harness.js';

interface TaskJson {
  id: number;
  state: string;
  error: { code: string; message: string } | null;
  result: {
    rootHash: string;
    files: number;
    servers: { server: string; inSync: boolean; filesFetched: number; filesReused: number; removed: number; drift: { total: number } }[];
    sent: { files: number; bytes: number };
  } | null;
}

const dir = scratch('spoke-converge-');
const master = new MasterUnderTest(dir);
const w1 = new AgentUnderTest(dir, 'w1');
const w2 = new AgentUnderTest(dir, 'w2');
const w3 = new AgentUnderTest(dir, 'w3');
const solo = new AgentUnderTest(dir, 'solo');
const D7 = '/var/aegir/platforms/d7';
// FetchBlobs in batches of 1,000 hashes: the ~5,000-file tree crosses several (and the
// corrupted stream below is retried within one).
const AGENT_ENV = { SPOKE_DRIFT_INTERVAL_MS: '400', SPOKE_FETCH_BATCH: '1000' };

const masterTree = () => join(master.root, D7);
const agentTree = (a: AgentUnderTest) => join(a.root, D7);

/** A ~5,000-file platform-shaped tree with links, empty dirs, modes and awkward names. */
function makeTree(root: string): void {
  for (let m = 0; m < 50; m++) {
    const d = join(root, 'modules', `mod${m}`);
    mkdirSync(join(d, 'src', 'Plugin'), { recursive: true });
    writeFileSync(join(d, `mod${m}.info.yml`), `name: Mod ${m}\ntype: module\ncore_version_requirement: ^10\n`);
    for (let f = 0; f < 98; f++) writeFileSync(join(d, 'src', f % 2 ? 'Plugin' : '', `F${f}.php`), `<?php // mod ${m} file ${f}\n${'x'.repeat(f * 13)}\n`);
  }
  mkdirSync(join(root, 'sites/default'), { recursive: true });
  writeFileSync(join(root, 'sites/default/default.settings.php'), '<?php\n');
  mkdirSync(join(root, 'sites/all/libraries/empty dir'), { recursive: true });
  writeFileSync(join(root, 'index.php'), '<?php require "core/index.php";\n');
  writeFileSync(join(root, 'scripts.sh'), '#!/bin/sh\necho hi\n');
  chmodSync(join(root, 'scripts.sh'), 0o755);
  writeFileSync(join(root, 'naïve café — notes.txt'), 'accents and spaces\n');
  mkdirSync(join(root, '日本'), { recursive: true });
  writeFileSync(join(root, '日本', 'ファイル.txt'), 'non-ascii\n');
  symlinkSync('modules/mod1', join(root, 'link-to-mod1'));
  symlinkSync('../index.php', join(root, 'sites/index-link.php'));
  // A .git dir and user data on the master are never part of the platform.
  mkdirSync(join(root, '.git'), { recursive: true });
  writeFileSync(join(root, '.git/HEAD'), 'ref: refs/heads/main\n');
}

async function same(a: string, b: string): Promise<void> {
  const [x, y] = await Promise.all([walkTree(a), walkTree(b)]);
  expect(y.manifest.entries.length).toBe(x.manifest.entries.length);
  expect(y.manifest.rootHash).toBe(x.manifest.rootHash);
}

async function task(args: string[]): Promise<TaskJson> {
  const r = await master.cli('-o', 'json', ...args);
  const t = JSON.parse(r.stdout.slice(r.stdout.lastIndexOf('\n{') + 1)) as TaskJson;
  return t;
}

async function enrollAndRun(a: AgentUnderTest, ...tokenArgs: string[]): Promise<void> {
  const t = await master.cli('server', 'token', a.name, ...tokenArgs);
  const r = await a.enroll(master.listen, t.stdout.trim());
  expect(r.code, r.stderr).toBe(0);
  a.run(AGENT_ENV);
}

async function online(name: string): Promise<boolean> {
  const s = await master.json<{ online: boolean }>('server', 'show', name);
  return s.online;
}

beforeAll(async () => {
  makeTree(masterTree());
  // The first blob stream the master serves is corrupted in transit.
  await master.start({ SPOKE_FAULT_CORRUPT_BLOBS: '1' });
  await enrollAndRun(w1, '--cluster', 'web');
  await enrollAndRun(w2, '--cluster', 'web');
  await enrollAndRun(solo);
  await until('agents online', async () => (await online('w1')) && (await online('w2')) && (await online('solo')));
});

afterAll(async () => {
  await Promise.all([w1, w2, w3, solo].map((a) => a.daemon?.stop('SIGKILL')));
  await master.daemon?.stop('SIGKILL');
  cleanup(dir);
});

describe('converge', () => {
  it('platform add converges a ~5,000-file tree to every cluster member, byte-identical', async () => {
    // user data already on a member before the first converge
    mkdirSync(join(agentTree(w1), 'sites/default/files'), { recursive: true });
    writeFileSync(join(agentTree(w1), 'sites/default/files/upload.jpg'), 'user upload');
    const r = await master.cli('platform', 'add', 'd7', '--path', D7, '--server', 'web');
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(r.stdout).toMatch(/w1: \+\d+/);
    expect(r.stdout).toMatch(/summary: 2 server\(s\); sent/);
    await same(masterTree(), agentTree(w1));
    await same(masterTree(), agentTree(w2));
    expect(existsSync(join(agentTree(w1), '.git'))).toBe(false);
    expect(readFileSync(join(agentTree(w1), 'sites/default/files/upload.jpg'), 'utf8')).toBe('user upload');
    // the corrupted blob was detected and fetched again by whichever member got it
    const logs = [w1, w2].map((a) => a.daemon?.out ?? '').join('\n');
    expect(logs).toMatch(/blob transfer failed; fetching the rest again/);
    expect(logs).toMatch(/BLOB_HASH_MISMATCH|does not match|hash/i);
  });

  it('the same tree converges to a single server, byte-identical', async () => {
    const { cpSync } = await import('node:fs');
    const single = '/var/aegir/platforms/d7-single';
    cpSync(masterTree(), join(master.root, single), { recursive: true, verbatimSymlinks: true });
    const t = await task(['platform', 'add', 'd7-single', '--path', single, '--server', 'solo']);
    expect(t.state, JSON.stringify(t.error)).toBe('succeeded');
    await same(join(master.root, single), join(solo.root, single));
  });

  it('a second platform on a cluster reuses what its hosts already hold', async () => {
    const p2 = '/var/www/d7-copy';
    // 95 % the same files
    const src = masterTree();
    const dst = join(master.root, p2);
    mkdirSync(dirname(dst), { recursive: true });
    const { cpSync } = await import('node:fs');
    cpSync(src, dst, { recursive: true, verbatimSymlinks: true });
    writeFileSync(join(dst, 'modules/mod3/src/F0.php'), '<?php // changed in the copy\n');
    const t = await task(['platform', 'add', 'copy', '--path', p2, '--server', 'web']);
    expect(t.state).toBe('succeeded');
    for (const s of t.result?.servers ?? []) {
      expect(s.filesReused).toBeGreaterThan(4000);
      expect(s.filesFetched).toBeLessThan(50);
    }
    await same(dst, join(w1.root, p2));
  });

  it('one changed file moves only that file; a removed file disappears', async () => {
    writeFileSync(join(masterTree(), 'modules/mod7/src/F4.php'), '<?php // edited on the master\n');
    rmSync(join(masterTree(), 'modules/mod8/src/F6.php'));
    const t = await task(['platform', 'verify', 'd7']);
    expect(t.state, JSON.stringify(t.error)).toBe('succeeded');
    for (const s of t.result?.servers ?? []) {
      expect(s.filesFetched).toBe(1);
      expect(s.removed).toBe(1);
    }
    expect(readFileSync(join(agentTree(w2), 'modules/mod7/src/F4.php'), 'utf8')).toContain('edited on the master');
    expect(existsSync(join(agentTree(w2), 'modules/mod8/src/F6.php'))).toBe(false);
    await same(masterTree(), agentTree(w1));
  });

  it('a directory replaced on the master reaches the servers whole, without the user data in it', async () => {
    const dirA = join(masterTree(), 'modules/replaced');
    mkdirSync(dirA, { recursive: true });
    writeFileSync(join(dirA, 'old.php'), 'old');
    expect((await task(['platform', 'verify', 'd7'])).state).toBe('succeeded');
    rmSync(dirA, { recursive: true });
    mkdirSync(join(dirA, 'sub'), { recursive: true });
    writeFileSync(join(dirA, 'sub/new.php'), 'new');
    // user data inside a new site dir is never part of the platform
    mkdirSync(join(masterTree(), 'sites/newsite/files'), { recursive: true });
    writeFileSync(join(masterTree(), 'sites/newsite/files/master-upload.jpg'), 'not platform code');
    writeFileSync(join(masterTree(), 'sites/newsite/settings.php'), '<?php\n');
    await new Promise((r) => setTimeout(r, 300));
    const t = await task(['platform', 'verify', 'd7']);
    expect(t.state).toBe('succeeded');
    expect(readFileSync(join(agentTree(w1), 'modules/replaced/sub/new.php'), 'utf8')).toBe('new');
    expect(existsSync(join(agentTree(w1), 'modules/replaced/old.php'))).toBe(false);
    expect(existsSync(join(agentTree(w1), 'sites/newsite/settings.php'))).toBe(true);
    expect(existsSync(join(agentTree(w1), 'sites/newsite/files/master-upload.jpg'))).toBe(false);
    rmSync(join(masterTree(), 'sites/newsite'), { recursive: true });
    rmSync(dirA, { recursive: true });
    expect((await task(['platform', 'verify', 'd7'])).state).toBe('succeeded');
  });

  it('a verify with nothing changed moves nothing', async () => {
    const t = await task(['platform', 'verify', 'd7']);
    expect(t.result?.servers.every((s) => s.inSync)).toBe(true);
    expect(t.result?.sent.files).toBe(0);
  });

  it("platform add refuses a path outside an agent's roots, or a tree the master does not have; nothing is registered", async () => {
    const before = await master.json<{ name: string }[]>('platform', 'ls');
    const outside = await master.cli('platform', 'add', 'elsewhere', '--path', '/srv/elsewhere', '--server', 'web');
    expect(outside.code).not.toBe(0);
    expect(outside.stderr).toMatch(/^error: PATH_OUTSIDE_ROOTS: path \/srv\/elsewhere is outside the roots of w1 \(\/var\/aegir, \/var\/www\)/);
    // the namespace's own rules come first
    const taken = await master.cli('platform', 'add', 'd7', '--path', '/var/www/missing', '--server', 'solo');
    expect(taken.stderr).toMatch(/^error: PLATFORM_NAME_TAKEN: /);
    const missing = await master.cli('platform', 'add', 'missing', '--path', '/var/www/missing', '--server', 'solo');
    expect(missing.code).not.toBe(0);
    expect(missing.stderr).toMatch(/^error: TREE_UNREADABLE: the canonical tree \S*\/var\/www\/missing does not exist on the master/);
    expect(await master.json<{ name: string }[]>('platform', 'ls')).toEqual(before);
  });

  it('a file edited by hand on an agent is reported as drift, then repaired by itself', async () => {
    const victim = join(agentTree(w2), 'modules/mod2/src/F2.php');
    // Stop w2 briefly so its drift check does not repair before we look.
    w2.daemon?.proc.kill('SIGSTOP');
    writeFileSync(victim, 'hacked by hand');
    w2.daemon?.proc.kill('SIGCONT');
    const st = await master.json<{ servers: { server: string; drift: { changed: string[] } }[] }>('platform', 'status', 'd7');
    const w2s = st.servers.find((s) => s.server === 'w2');
    // Either the status caught the drift, or the agent's drift check already repaired it.
    if (w2s?.drift.changed.length) expect(w2s.drift.changed).toContain('modules/mod2/src/F2.php');
    await until('drift repaired', () => readFileSync(victim, 'utf8').includes('mod 2 file 2'), 20_000);
    await same(masterTree(), agentTree(w2));
    const tasks = await master.json<{ kind: string; params: { server?: string; why?: string } }[]>('task', 'ls', '--entity', 'platform:d7');
    expect(tasks.some((t) => t.kind === 'platform.converge' && t.params.server === 'w2')).toBe(true);
  });

  it('platform status shows desired vs observed per server and names drifted paths', async () => {
    w1.daemon?.proc.kill('SIGSTOP');
    try {
      writeFileSync(join(agentTree(w1), 'index.php'), 'drifted');
      writeFileSync(join(agentTree(w1), 'extra.php'), 'added by hand');
      w1.daemon?.proc.kill('SIGCONT');
      const r = await master.cli('platform', 'status', 'd7');
      expect(r.code, r.stderr).toBe(0);
      // the agent may already have repaired it; when not, the drift is listed
      if (/drift on w1/.test(r.stdout)) {
        expect(r.stdout).toMatch(/~ index\.php/);
        expect(r.stdout).toMatch(/\+ extra\.php/);
      }
      expect(r.stdout).toMatch(/^SERVER\s+STATE/m);
    } finally {
      w1.daemon?.proc.kill('SIGCONT');
    }
    await until('w1 repaired', () => !existsSync(join(agentTree(w1), 'extra.php')), 20_000);
    await same(masterTree(), agentTree(w1));
  });

  it('user files under sites/*/files survive every converge, even when their site dir leaves the platform', async () => {
    writeFileSync(join(masterTree(), 'sites/default/settings.php'), '<?php $x = 1;\n');
    expect((await task(['platform', 'verify', 'd7'])).state).toBe('succeeded');
    rmSync(join(masterTree(), 'sites/default'), { recursive: true });
    expect((await task(['platform', 'verify', 'd7'])).state).toBe('succeeded');
    expect(readFileSync(join(agentTree(w1), 'sites/default/files/upload.jpg'), 'utf8')).toBe('user upload');
    expect(existsSync(join(agentTree(w1), 'sites/default/settings.php'))).toBe(false);
  });

  it('a third member enrolled later converges by itself', async () => {
    await enrollAndRun(w3, '--cluster', 'web');
    await until(
      'w3 has the platform',
      async () => {
        if (!existsSync(agentTree(w3))) return false;
        const [a, b] = await Promise.all([walkTree(masterTree()), walkTree(agentTree(w3))]);
        return a.manifest.rootHash === b.manifest.rootHash;
      },
      30_000,
    );
  });

  it('an agent that was offline catches up when it returns', async () => {
    await master.cli('platform', 'add', 'solo-p', '--path', '/var/www/solo-p', '--server', 'solo', '--no-verify');
    mkdirSync(join(master.root, '/var/www/solo-p'), { recursive: true });
    writeFileSync(join(master.root, '/var/www/solo-p/index.php'), 'v1');
    expect((await task(['platform', 'verify', 'solo-p'])).state).toBe('succeeded');
    await solo.daemon?.stop('SIGKILL');
    writeFileSync(join(master.root, '/var/www/solo-p/index.php'), 'v2');
    const t = await task(['platform', 'verify', 'solo-p']);
    expect(t).toMatchObject({ state: 'failed', error: { code: 'CONVERGE_FAILED' } });
    expect(t.error?.message).toMatch(/solo \(AGENT_OFFLINE/);
    solo.run(AGENT_ENV);
    await until('solo caught up', () => readFileSync(join(solo.root, '/var/www/solo-p/index.php'), 'utf8') === 'v2', 30_000);
  });

  it('after the machine went down under it, an agent trusts none of its tree state and is repaired by itself', async () => {
    // solo holds solo-p (v2, above). Its run marker names this boot while it runs.
    const marker = join(solo.stateDir, 'run.json');
    const bootId = readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();
    expect(JSON.parse(readFileSync(marker, 'utf8'))).toMatchObject({ bootId });
    await solo.daemon?.stop('SIGKILL');
    // What power loss can leave: the marker of an earlier boot, a torn head, a torn file.
    writeFileSync(marker, JSON.stringify({ v: 1, bootId: 'an-earlier-boot' }));
    const trees = join(solo.stateDir, 'trees');
    const treeDir = readdirSync(trees)
      .map((d) => join(trees, d))
      .find((d) => readFileSync(join(d, 'head.json'), 'utf8').includes('/var/www/solo-p'));
    writeFileSync(join(treeDir as string, 'head.json'), '');
    writeFileSync(join(solo.root, '/var/www/solo-p/index.php'), '\0\0');
    const d = solo.run(AGENT_ENV);
    await until('solo repaired its torn copy', () => readFileSync(join(solo.root, '/var/www/solo-p/index.php'), 'utf8') === 'v2', 30_000);
    expect(d.out).toMatch(/the machine went down while the agent ran/);
    // A clean stop flushes and removes the marker; the next start trusts its state again.
    expect(await d.stop('SIGTERM')).toBe(0);
    expect(existsSync(marker)).toBe(false);
    const again = solo.run(AGENT_ENV);
    await until('solo back', () => again.out.includes('agent started'), 20_000);
    expect(again.out).not.toMatch(/the machine went down/);
    // the next test converges to solo: wait until the master has it back, not only its process
    await until('solo online again', () => online('solo'), 20_000);
  });

  it('with --live, an edit on the master reaches the servers without a verify', async () => {
    mkdirSync(join(master.root, '/var/www/live'), { recursive: true });
    writeFileSync(join(master.root, '/var/www/live/a.php'), 'one');
    const t = await task(['platform', 'add', 'live', '--path', '/var/www/live', '--server', 'solo', '--live']);
    expect(t.state).toBe('succeeded');
    writeFileSync(join(master.root, '/var/www/live/a.php'), 'two');
    writeFileSync(join(master.root, '/var/www/live/b.php'), 'new');
    await until(
      'live change arrived',
      () => existsSync(join(solo.root, '/var/www/live/b.php')) && readFileSync(join(solo.root, '/var/www/live/a.php'), 'utf8') === 'two',
      20_000,
    );
  });
});

describe('platform registry on verify', () => {
  it('verify records what the tree is, and platform diff compares two platforms', async () => {
    // two small Drupal 10 trees on the master
    for (const [name, v, modv] of [
      ['d10a', '10.2.1', '1.0.0'],
      ['d10b', '10.3.0', '1.2.0'],
    ] as const) {
      const root = join(master.root, '/var/www', name);
      mkdirSync(join(root, 'core/lib'), { recursive: true });
      mkdirSync(join(root, 'core/modules/system'), { recursive: true });
      mkdirSync(join(root, 'modules/contrib/views_extra'), { recursive: true });
      writeFileSync(join(root, 'core/lib/Drupal.php'), `<?php\nclass Drupal {\n  const VERSION = '${v}';\n}\n`);
      writeFileSync(join(root, 'core/core.services.yml'), 'services: {}\n');
      writeFileSync(join(root, 'core/modules/system/system.info.yml'), 'name: System\ntype: module\nversion: VERSION\npackage: Core\n');
      writeFileSync(
        join(root, 'modules/contrib/views_extra/views_extra.info.yml'),
        `name: Views extra\ntype: module\nversion: '${modv}'\nproject: views_extra\n`,
      );
      const t = await task(['platform', 'add', name, '--path', `/var/www/${name}`, '--server', 'solo']);
      expect(t.state, JSON.stringify(t.error)).toBe('succeeded');
    }
    const show = await master.json<{ registry: { kind: string; coreVersion: string; modules: { name: string; version: string | null }[] } }>(
      'platform',
      'show',
      'd10a',
    );
    expect(show.registry).toMatchObject({ kind: 'drupal8', coreVersion: '10.2.1' });
    expect(show.registry.modules.find((m) => m.name === 'views_extra')?.version).toBe('1.0.0');
    const d = await master.json<{ core: { status: string }; modules: { name: string; status: string }[] }>('platform', 'diff', 'd10a', 'd10b');
    expect(d.core.status).toBe('upgrade');
    expect(d.modules.find((m) => m.name === 'views_extra')?.status).toBe('upgrade');
    const human = await master.cli('platform', 'diff', 'd10b', 'd10a');
    expect(human.stdout).toMatch(/views_extra\s+module\s+1\.2\.0\s+1\.0\.0\s+downgrade/);
  });
});
