/**
 * A platform leaving an agent (ForgetPlatform): the config goes through write/test/restore/reload
 * (scripts stand in for nginx), the tree state goes so the tree is no longer reported, and
 * removeTree deletes the tree but keeps user data.
 */
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeEach, describe, expect, it } from 'vitest';
import { RootMap, removeTreeKeepingUserData, silentLogger } from '@spoke/shared';
import { commandRunner, WebConfig } from './webconfig.js';
import { AgentTrees } from './sync.js';
import { forgetPlatform } from './forget.js';
import { converge, treeStateDir } from './converge/index.js';
import { hasMemos } from './converge/state.js';
import { copyFetcher, manifestOf, writeTree } from './converge/testkit.js';
import { recordingScript, scriptsRan } from './testutil.js';

const base = mkdtempSync(join(tmpdir(), 'spoke-forget-'));
afterAll(() => rmSync(base, { recursive: true, force: true }));

const BIN_DIRS = ['/usr/bin', '/bin', '/usr/sbin', '/sbin'];
const TREE = '/var/www/d7';
let dir: string;
let seq = 0;

/** A script that appends its name to dir/ran.log, prints `out` on stderr and exits with `code`. */
const script = (name: string, code: number, out = ''): string => recordingScript(dir, name, code, out);
/** The scripts that ran, in order. */
const ran = (): string[] => scriptsRan(dir);
const rootMap = () => new RootMap(join(dir, 'root'));
const hostTree = () => join(dir, 'root', 'var/www/d7');
const confFile = () => join(dir, 'conf.d', 'spoke-platform-d7.conf');

function web(testCode = 0, http: { impl?: 'nginx' | 'none'; configured?: boolean } = {}): WebConfig {
  return new WebConfig({
    http: {
      impl: http.impl ?? 'nginx',
      confDir: join(dir, 'conf.d'),
      listen: ['127.0.0.1:8080'],
      testCommand: [script('test', testCode, testCode ? 'nginx: [emerg] host not found in upstream "x" in spoke-site-a.conf:3' : '')],
      reloadCommand: [script('reload', 0)],
      webGroup: 'www-data',
      templatesDir: '',
      configured: http.configured ?? true,
    },
    fpmSocket: '/run/php/php8.2-fpm.sock',
    roots: ['/var/www'],
    rootMap: rootMap(),
    binDirs: BIN_DIRS,
    detect: async () => [],
    detectFpm: async () => null,
    run: commandRunner(BIN_DIRS, 10_000),
    log: silentLogger(),
  });
}

/** An agent holding TREE, converged from a source tree (committed state under <state>/trees). */
async function heldTree(): Promise<{ trees: AgentTrees; stateDir: string }> {
  const src = join(dir, 'src');
  writeTree(src, { 'index.php': '<?php', 'modules/a.module': 'a', 'sites/default/settings.php': '<?php', 'sites/all/README': 'x' });
  const stateDir = join(dir, 'state');
  await converge({ treeKey: TREE, hostRoot: hostTree(), stateDir, desired: await manifestOf(src), fetcher: copyFetcher([src]) });
  const trees = new AgentTrees({ stateDir, roots: ['/var/www'], rootMap: rootMap(), log: silentLogger() });
  await trees.startup();
  return { trees, stateDir };
}

beforeEach(() => {
  dir = join(base, `case${seq++}`);
  mkdirSync(join(dir, 'root', 'var/www'), { recursive: true });
});

describe('WebConfig.removePlatform', () => {
  it('removes the platform config, tests and reloads; already gone: nothing runs', async () => {
    mkdirSync(join(dir, 'conf.d'));
    writeFileSync(confFile(), 'server { }\n');
    writeFileSync(join(dir, 'conf.d', 'spoke-site-a.test.conf'), 'server { }\n');
    const w = web();
    const r = await w.removePlatform({ platform: 'd7', pinnedImpl: '' });
    expect(r).toEqual({ impl: 'nginx', path: confFile(), removed: true, reloaded: true, problems: [] });
    expect(existsSync(confFile())).toBe(false);
    expect(readdirSync(join(dir, 'conf.d'))).toEqual(['spoke-site-a.test.conf']);
    expect(ran()).toEqual(['test', 'reload']);
    const again = await w.removePlatform({ platform: 'd7', pinnedImpl: '' });
    expect(again).toMatchObject({ removed: false, reloaded: false });
    expect(ran()).toEqual(['test', 'reload']);
  });

  it('a failing config test puts the file back, byte for byte, and does not reload', async () => {
    mkdirSync(join(dir, 'conf.d'));
    writeFileSync(confFile(), 'server { listen 80; }\n');
    const err = await web(1)
      .removePlatform({ platform: 'd7', pinnedImpl: '' })
      .catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'WEBSERVER_CONFIG_INVALID' });
    expect((err as Error).message).toMatch(
      /rejected the config without platform d7 .*spoke-platform-d7\.conf removed.*\[emerg\] host not found.*the previous file was restored/,
    );
    expect(readFileSync(confFile(), 'utf8')).toBe('server { listen 80; }\n');
    expect(ran()).toEqual(['test']);
  });

  it('refuses a platform name that is not a name', async () => {
    await expect(web().removePlatform({ platform: '../x', pinnedImpl: '' })).rejects.toMatchObject({ code: 'INVALID_NAME' });
  });
});

describe('AgentTrees.forget', () => {
  it('drops the tree from the held set and observed hashes and removes its state dir; a restart does not report it', async () => {
    const { trees, stateDir } = await heldTree();
    expect(Object.keys(trees.observed())).toEqual([TREE]);
    expect(existsSync(treeStateDir(stateDir, TREE))).toBe(true);
    expect(hasMemos(treeStateDir(stateDir, TREE))).toBe(true);
    const r = await trees.forget(TREE, false);
    expect(r).toEqual({ stateRemoved: true, treeRemoved: false, kept: [], problems: [] });
    // nothing of it stays in memory either (a removed platform's manifest was kept until a restart)
    expect(hasMemos(treeStateDir(stateDir, TREE))).toBe(false);
    expect(trees.observed()).toEqual({});
    expect(existsSync(treeStateDir(stateDir, TREE))).toBe(false);
    expect(await trees.checkDrift()).toBe(false);
    // the tree itself stays without removeTree
    expect(readFileSync(join(hostTree(), 'index.php'), 'utf8')).toBe('<?php');
    const restarted = new AgentTrees({ stateDir, roots: ['/var/www'], rootMap: rootMap(), log: silentLogger() });
    await restarted.startup();
    expect(restarted.observed()).toEqual({});
    // idempotent
    expect(await trees.forget(TREE, false)).toMatchObject({ stateRemoved: false });
  });

  it('removeTree deletes the tree but keeps sites/*/files and private that hold anything, with their parents', async () => {
    const { trees } = await heldTree();
    writeTree(hostTree(), {
      'sites/default/files/upload.jpg': 'photo',
      'sites/default/private/key.txt': 'secret',
      'sites/b.test/files': { dir: 0o755 },
      'sites/b.test/settings.php': '<?php',
      'sites/c.test/files/nested/x.txt': 'x',
    });
    const r = await trees.forget(TREE, true);
    expect(r.treeRemoved).toBe(false);
    expect(r.kept.sort()).toEqual(['sites/c.test/files', 'sites/default/files', 'sites/default/private']);
    expect(r.problems).toEqual([expect.stringMatching(/^kept user data in .*var\/www\/d7: sites\//)]);
    expect(readFileSync(join(hostTree(), 'sites/default/files/upload.jpg'), 'utf8')).toBe('photo');
    expect(readFileSync(join(hostTree(), 'sites/default/private/key.txt'), 'utf8')).toBe('secret');
    expect(readFileSync(join(hostTree(), 'sites/c.test/files/nested/x.txt'), 'utf8')).toBe('x');
    expect(readdirSync(hostTree())).toEqual(['sites']);
    expect(readdirSync(join(hostTree(), 'sites')).sort()).toEqual(['c.test', 'default']);
    expect(readdirSync(join(hostTree(), 'sites/default')).sort()).toEqual(['files', 'private']);
    expect(readdirSync(join(hostTree(), 'sites/c.test'))).toEqual(['files']);
  });

  it('removeTree without user data removes the tree dir itself', async () => {
    const { trees } = await heldTree();
    mkdirSync(join(hostTree(), 'sites/default/files'));
    expect(await trees.forget(TREE, true)).toMatchObject({ treeRemoved: true, kept: [], problems: [] });
    expect(existsSync(hostTree())).toBe(false);
    expect(existsSync(join(dir, 'root', 'var/www'))).toBe(true);
  });
});

describe('removeTreeKeepingUserData', () => {
  it('never follows a symlink: a linked files dir is kept as a link, a link elsewhere is removed as a link', async () => {
    const outside = join(dir, 'outside');
    writeTree(outside, { 'keep.txt': 'k' });
    const root = join(dir, 'tree');
    writeTree(root, { 'a.php': 'a', lib: { link: outside }, 'sites/x/files': { link: outside } });
    const r = await removeTreeKeepingUserData(root);
    expect(r.kept).toEqual(['sites/x/files']);
    expect(readdirSync(root)).toEqual(['sites']);
    expect(readFileSync(join(outside, 'keep.txt'), 'utf8')).toBe('k');
  });

  it('leaves a root that is a symlink alone; a missing root is nothing to do', async () => {
    const real = join(dir, 'real');
    writeTree(real, { 'a.php': 'a' });
    const link = join(dir, 'link');
    writeTree(dir, { link: { link: real } });
    expect(await removeTreeKeepingUserData(link)).toMatchObject({
      existed: true,
      removed: false,
      problems: [expect.stringMatching(/not a directory \(a symlink\); left alone/)],
    });
    expect(existsSync(join(real, 'a.php'))).toBe(true);
    expect(await removeTreeKeepingUserData(join(dir, 'none'))).toEqual({ existed: false, removed: false, kept: [], problems: [] });
  });
});

describe('forgetPlatform', () => {
  it('removes the config, then forgets the tree', async () => {
    const { trees, stateDir } = await heldTree();
    mkdirSync(join(dir, 'conf.d'));
    writeFileSync(confFile(), 'server { }\n');
    const r = await forgetPlatform({ web: web(), trees }, { platform: 'd7', tree: TREE, pinnedImpl: '', removeTree: true });
    expect(r).toEqual({ configRemoved: true, reloaded: true, treeRemoved: true, problems: [], configPath: confFile(), kept: [] });
    expect(existsSync(confFile())).toBe(false);
    expect(existsSync(treeStateDir(stateDir, TREE))).toBe(false);
    expect(existsSync(hostTree())).toBe(false);
  });

  it('a failed config test fails it and leaves the tree held, its state and files untouched', async () => {
    const { trees, stateDir } = await heldTree();
    mkdirSync(join(dir, 'conf.d'));
    writeFileSync(confFile(), 'server { }\n');
    await expect(forgetPlatform({ web: web(1), trees }, { platform: 'd7', tree: TREE, pinnedImpl: '', removeTree: true })).rejects.toMatchObject({
      code: 'WEBSERVER_CONFIG_INVALID',
    });
    expect(existsSync(confFile())).toBe(true);
    expect(Object.keys(trees.observed())).toEqual([TREE]);
    expect(existsSync(treeStateDir(stateDir, TREE))).toBe(true);
    expect(existsSync(join(hostTree(), 'index.php'))).toBe(true);
  });

  it('an agent without a web server (NO_HTTP_SERVICE) only forgets the tree, with a note', async () => {
    const { trees } = await heldTree();
    const r = await forgetPlatform({ web: web(0, { impl: 'none' }), trees }, { platform: 'd7', tree: TREE, pinnedImpl: '', removeTree: false });
    expect(r).toMatchObject({ configRemoved: false, reloaded: false, treeRemoved: false, configPath: '' });
    expect(r.problems).toEqual([expect.stringMatching(/^no web server config to remove: agent\.json sets http\.impl to none/)]);
    expect(trees.observed()).toEqual({});
    expect(existsSync(join(hostTree(), 'index.php'))).toBe(true);
  });
});
