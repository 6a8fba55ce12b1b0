/**
 * The streamed first sync (issue 19 item 3, capability 15) end to end: a real master streams a
 * tree it has never walked to agents that hold nothing of it as its walk reads it (StreamTree),
 * to a single server and to both members of a cluster from one walk; a second platform sharing
 * most of its files is streamed without that content, which the agent copies from its other
 * tree; an agent that announces capability 14 still converges through GetManifest + FetchBlobs;
 * and a later change goes by the delta path as before.
 */
import { cpSync, mkdirSync, readdirSync, symlinkSync, writeFileSync, chmodSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { walkTree } from '@spoke/shared';
import { AgentUnderTest, MasterUnderTest, cleanup, scratch, until } from '../harness.js';

interface Report {
  server: string;
  inSync: boolean;
  added: number;
  filesFetched: number;
  filesReused: number;
}

const dir = scratch('spoke-stream-');
const master = new MasterUnderTest(dir);
const s1 = new AgentUnderTest(dir, 's1');
const old = new AgentUnderTest(dir, 'old');
const w1 = new AgentUnderTest(dir, 'w1');
const w2 = new AgentUnderTest(dir, 'w2');
const P1 = '/var/aegir/platforms/p1';

/** ~2,000 files with links, modes, empty dirs, duplicate content, a 3 MB file and awkward names. */
function makeTree(root: string): void {
  for (let m = 0; m < 20; m++) {
    const d = join(root, 'modules', `mod${m}`);
    mkdirSync(join(d, 'src', 'Plugin'), { recursive: true });
    for (let f = 0; f < 100; f++) writeFileSync(join(d, 'src', f % 2 ? 'Plugin' : '', `F${f}.php`), `<?php // mod ${m} file ${f}\n${'x'.repeat(f * 17)}\n`);
    writeFileSync(join(d, 'LICENSE.txt'), 'the same licence in every module\n');
  }
  mkdirSync(join(root, 'sites/default'), { recursive: true });
  writeFileSync(join(root, 'sites/default/default.settings.php'), '<?php\n');
  mkdirSync(join(root, 'sites/all/libraries/empty dir'), { recursive: true });
  writeFileSync(join(root, 'big.bin'), Buffer.alloc(3 * 1024 * 1024 + 7, 7));
  writeFileSync(join(root, 'empty.txt'), '');
  writeFileSync(join(root, 'run.sh'), '#!/bin/sh\necho hi\n');
  chmodSync(join(root, 'run.sh'), 0o750);
  writeFileSync(join(root, 'private-key.pem'), 'secret\n');
  chmodSync(join(root, 'private-key.pem'), 0o200);
  mkdirSync(join(root, 'readonly'), { recursive: true });
  writeFileSync(join(root, 'readonly/kept.txt'), 'kept\n');
  chmodSync(join(root, 'readonly'), 0o555);
  writeFileSync(join(root, 'naïve café.txt'), 'accents\n');
  symlinkSync('modules/mod1', join(root, 'link-to-mod1'));
  symlinkSync('/etc/wordpress/htaccess', join(root, '.htaccess'));
  // user data and VCS dirs on the master are never part of a platform
  mkdirSync(join(root, 'sites/default/files'), { recursive: true });
  writeFileSync(join(root, 'sites/default/files/upload.jpg'), 'user data');
  mkdirSync(join(root, '.git'), { recursive: true });
  writeFileSync(join(root, '.git/HEAD'), 'ref: refs/heads/main\n');
}

async function same(a: string, b: string): Promise<void> {
  const [x, y] = await Promise.all([walkTree(a), walkTree(b)]);
  expect(y.manifest.entries.length).toBe(x.manifest.entries.length);
  expect(y.manifest.rootHash).toBe(x.manifest.rootHash);
}

async function enrollAndRun(a: AgentUnderTest, env: Record<string, string>, ...tokenArgs: string[]): Promise<void> {
  const t = await master.cli('server', 'token', a.name, ...tokenArgs);
  const r = await a.enroll(master.listen, t.stdout.trim());
  expect(r.code, r.stderr).toBe(0);
  a.run({ SPOKE_DRIFT_INTERVAL_MS: '60000', ...env });
}

async function add(name: string, path: string, server: string): Promise<{ reports: Report[]; log: string }> {
  const { t, log } = await master.task('platform', 'add', name, '--path', path, '--server', server);
  expect(t.state, `${log}\n${JSON.stringify(t.error)}`).toBe('succeeded');
  return { reports: (t.result as { servers: Report[] }).servers, log };
}

/** No staging dir left beside the tree. */
function noStaging(parent: string): void {
  expect(readdirSync(parent).filter((n) => n.startsWith('.spoke-staging-'))).toEqual([]);
}

beforeAll(async () => {
  makeTree(join(master.root, P1));
  await master.start();
  await enrollAndRun(s1, {});
  await enrollAndRun(old, { SPOKE_CAPABILITY_VERSION: '14' });
  await enrollAndRun(w1, {}, '--cluster', 'web');
  await enrollAndRun(w2, {}, '--cluster', 'web');
  await until('agents online', async () => {
    const ls = await master.json<{ name: string; online: boolean }[]>('server', 'ls');
    return ['s1', 'old', 'w1', 'w2'].every((n) => ls.find((s) => s.name === n)?.online === true);
  });
});

afterAll(async () => {
  await Promise.all([s1, old, w1, w2].map((a) => a.daemon?.stop('SIGKILL')));
  await master.daemon?.stop('SIGKILL');
  cleanup(dir);
});

describe('streamed first sync', () => {
  it('a tree the master never walked reaches a server that holds nothing of it through the stream, byte-identical', async () => {
    const { reports, log } = await add('p1', P1, 's1');
    expect(log).toMatch(/s1: \+\d+ ~0 -0; sent \d+ files .*streamed as the master read the tree/);
    const r = reports[0] as Report;
    expect(r.added).toBeGreaterThan(2000);
    // duplicate content crossed once (LICENSE.txt in 20 modules)
    expect(r.filesReused).toBe(19);
    await same(join(master.root, P1), join(s1.root, P1));
    noStaging(dirname(join(s1.root, P1)));
    // committed like any converge: the next verify is one message, and a change a delta
    const again = await master.task('platform', 'verify', 'p1');
    expect((again.t.result as { servers: Report[] }).servers[0]?.inSync).toBe(true);
    writeFileSync(join(master.root, P1, 'modules/mod3/src/F2.php'), '<?php // edited\n');
    const edit = await master.task('platform', 'verify', 'p1');
    expect((edit.t.result as { servers: Report[] }).servers[0]?.filesFetched).toBe(1);
    expect(edit.log).not.toMatch(/streamed/);
    await same(join(master.root, P1), join(s1.root, P1));
  });

  it('an agent without capability 15 converges the same tree through GetManifest and FetchBlobs', async () => {
    const p = '/var/aegir/platforms/p1-old';
    cpSync(join(master.root, P1), join(master.root, p), { recursive: true, verbatimSymlinks: true });
    const { reports, log } = await add('p1-old', p, 'old');
    expect(log).not.toMatch(/streamed/);
    expect(reports[0]?.filesFetched).toBeGreaterThan(1900);
    await same(join(master.root, p), join(old.root, p));
  });

  it('both members of a cluster are streamed from one walk', async () => {
    const p = '/var/www/p1-web';
    cpSync(join(master.root, P1), join(master.root, p), { recursive: true, verbatimSymlinks: true });
    const { reports, log } = await add('p1-web', p, 'web');
    expect(log).toMatch(/w1: .*streamed as the master read the tree/);
    expect(log).toMatch(/w2: .*streamed as the master read the tree/);
    expect(reports.map((r) => r.server).sort()).toEqual(['w1', 'w2']);
    await same(join(master.root, p), join(w1.root, p));
    await same(join(master.root, p), join(w2.root, p));
  });

  it('a second platform is streamed without the content the server holds in its first; that is copied there', async () => {
    const p = '/var/aegir/platforms/p2';
    cpSync(join(master.root, P1), join(master.root, p), { recursive: true, verbatimSymlinks: true });
    writeFileSync(join(master.root, p, 'modules/mod5/src/F1.php'), '<?php // only in p2\n');
    const { reports, log } = await add('p2', p, 's1');
    expect(log).toMatch(/s1: .*streamed as the master read the tree/);
    const r = reports[0] as Report;
    expect(r.filesFetched).toBe(1);
    expect(r.filesReused).toBeGreaterThan(2000);
    await same(join(master.root, p), join(s1.root, p));
  });

  it('a server that already holds files at the path (not from Spoke) is converged from the manifest instead', async () => {
    const p = '/var/aegir/platforms/p3';
    cpSync(join(master.root, P1), join(master.root, p), { recursive: true, verbatimSymlinks: true });
    mkdirSync(join(s1.root, p, 'sites/default/files'), { recursive: true });
    writeFileSync(join(s1.root, p, 'sites/default/files/upload.jpg'), 'user upload on the server');
    const { log } = await add('p3', p, 's1');
    expect(log).not.toMatch(/streamed/);
    await same(join(master.root, p), join(s1.root, p));
  });
});
