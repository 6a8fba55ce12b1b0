/**
 * Building platforms end to end: the real CLI adds a platform from a drush makefile (core and a
 * module from local git repositories, the module at a tag with a patch, a library from a local
 * tarball with its sha256) or from a git repository; the real master builds it in staging beside
 * the publish path and converges it to a real agent. Failed builds leave nothing behind and say
 * which step failed; a verify of a built platform does not rebuild it. The master runs with
 * `--build-source-dir` (the repositories are not under the makefiles' directory), never reads
 * its state dir, and sweeps interrupted builds at start.
 */
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { walkTree } from '@spoke/shared';
import { AgentUnderTest, MasterUnderTest, cleanup, scratch, until } from '../harness.js';

interface TaskJson {
  id: number;
  state: string;
  error: { code: string; message: string } | null;
}

const dir = scratch('spoke-build-e2e-');
const master = new MasterUnderTest(dir);
const web = new AgentUnderTest(dir, 'web');
const src = join(dir, 'src');
const D7 = '/var/aegir/platforms/d7-made';
const GITP = '/var/aegir/platforms/from-git';

const GIT = [
  '-c',
  'user.name=Spoke Test',
  '-c',
  'user.email=test@example.com',
  '-c',
  'init.defaultBranch=main',
  '-c',
  'commit.gpgsign=false',
  '-c',
  'tag.gpgsign=false',
];
function git(cwd: string, ...args: string[]): string {
  return execFileSync('git', [...GIT, ...args], { cwd, encoding: 'utf8' }).trim();
}

function put(root: string, files: Record<string, string>): void {
  for (const [f, text] of Object.entries(files)) {
    mkdirSync(dirname(join(root, f)), { recursive: true });
    writeFileSync(join(root, f), text);
  }
}

function repo(name: string, files: Record<string, string>, tag?: string): string {
  const r = join(src, 'repos', name);
  mkdirSync(r, { recursive: true });
  git(r, 'init', '-q');
  put(r, files);
  git(r, 'add', '-A');
  git(r, 'commit', '-q', '-m', 'first');
  if (tag) git(r, 'tag', tag);
  return r;
}

/** The last JSON object the CLI printed (the final task). */
async function task(args: string[]): Promise<{ t: TaskJson; stdout: string; stderr: string; code: number }> {
  const r = await master.cli('-o', 'json', ...args);
  const t = JSON.parse(r.stdout.slice(r.stdout.lastIndexOf('\n{') + 1)) as TaskJson;
  return { t, ...r };
}

async function log(id: number): Promise<string> {
  const r = await master.cli('task', 'log', String(id));
  return r.stdout;
}

async function same(a: string, b: string): Promise<void> {
  const [x, y] = await Promise.all([walkTree(a), walkTree(b)]);
  expect(y.manifest.rootHash).toBe(x.manifest.rootHash);
}

let core: string;
let token: string;

beforeAll(async () => {
  core = repo(
    'drupal',
    {
      'index.php': "<?php\nrequire_once DRUPAL_ROOT . '/includes/bootstrap.inc';\n",
      'includes/bootstrap.inc': "<?php\ndefine('VERSION', '7.99');\n",
      'modules/system/system.info': 'name = System\ncore = 7.x\nversion = "7.99"\n',
      'modules/system/system.module': '<?php\n',
      'profiles/standard/standard.info': 'name = Standard\ncore = 7.x\n',
      'sites/default/default.settings.php': '<?php\n',
    },
    '7.99',
  );
  token = repo('token', { 'token.info': 'name = Token\ncore = 7.x\n', 'token.module': "<?php\nfunction token_version() {\n  return '1.0';\n}\n" }, '7.x-1.0');
  // work after the tag: the build must take the tag, not the branch head
  writeFileSync(join(token, 'token.module'), "<?php\nfunction token_version() {\n  return 'dev';\n}\n");
  git(token, 'commit', '-qam', 'dev');
  put(src, {
    'make/patches/token-version.patch': [
      'diff --git a/token.module b/token.module',
      '--- a/token.module',
      '+++ b/token.module',
      '@@ -1,4 +1,4 @@',
      ' <?php',
      ' function token_version() {',
      "-  return '1.0';",
      "+  return '1.0-patched';",
      ' }',
      '',
    ].join('\n'),
    'stage/ckeditor/ckeditor.js': '/* CKEditor 4 */\n',
    'stage/ckeditor/plugins/link/plugin.js': '/* link */\n',
  });
  execFileSync('tar', ['-czf', join(src, 'make', 'ckeditor_4.5.tar.gz'), '-C', join(src, 'stage'), 'ckeditor']);
  await master.start({}, ['--build-source-dir', src]);
  const t = await master.cli('server', 'token', 'web');
  const r = await web.enroll(master.listen, t.stdout.trim());
  expect(r.code, r.stderr).toBe(0);
  web.run();
  await until('agent online', async () => (await master.json<{ online: boolean }>('server', 'show', 'web')).online);
});

afterAll(async () => {
  await web.daemon?.stop('SIGKILL');
  await master.daemon?.stop('SIGKILL');
  cleanup(dir);
});

describe('platform build', () => {
  it('builds a makefile platform from local git repositories and a local tarball, with a patch, and converges it', async () => {
    const sha = createHash('sha256')
      .update(readFileSync(join(src, 'make', 'ckeditor_4.5.tar.gz')))
      .digest('hex');
    const makefile = join(src, 'make', 'd7.make');
    writeFileSync(
      makefile,
      [
        '; a Drupal 7 platform, nothing from drupal.org',
        'core = 7.x',
        'api = 2',
        '',
        'projects[drupal][type] = core',
        'projects[drupal][download][type] = git',
        `projects[drupal][download][url] = file://${core}`,
        'projects[drupal][download][tag] = 7.99',
        '',
        'projects[token][subdir] = contrib',
        'projects[token][download][type] = git',
        `projects[token][download][url] = ${token}`,
        'projects[token][download][tag] = 7.x-1.0',
        'projects[token][patch][] = patches/token-version.patch',
        '',
        'libraries[ckeditor][download][type] = file',
        'libraries[ckeditor][download][url] = ckeditor_4.5.tar.gz',
        `libraries[ckeditor][download][sha256] = ${sha}`,
        '',
      ].join('\n'),
    );
    const { t, stdout, stderr, code } = await task(['platform', 'add', 'd7-made', '--server', 'web', '--path', D7, '--makefile', makefile]);
    expect(code, stdout + stderr).toBe(0);
    expect(t.state).toBe('succeeded');

    const onMaster = join(master.root, D7);
    const onAgent = join(web.root, D7);
    const patched = "<?php\nfunction token_version() {\n  return '1.0-patched';\n}\n";
    expect(readFileSync(join(onAgent, 'sites/all/modules/contrib/token/token.module'), 'utf8')).toBe(patched);
    expect(readFileSync(join(onAgent, 'sites/all/libraries/ckeditor/plugins/link/plugin.js'), 'utf8')).toBe('/* link */\n');
    expect(readFileSync(join(onAgent, 'includes/bootstrap.inc'), 'utf8')).toContain("'7.99'");
    expect(existsSync(join(onAgent, 'sites/all/modules/contrib/token/PATCHES.txt'))).toBe(true);
    expect(existsSync(join(onMaster, 'sites/all/modules/contrib/token/.git'))).toBe(false);
    await same(onMaster, onAgent);
    // the staging dir is gone
    expect(readdirSync(dirname(onMaster)).filter((n) => n.startsWith('.spoke-build-'))).toEqual([]);

    const text = await log(t.id);
    expect(text).toMatch(/core drupal: cloned file:\/\/.* at tag 7\.99/);
    expect(text).toMatch(/project token: patched with token-version\.patch/);
    expect(text).toMatch(/library ckeditor: extracted ckeditor_4\.5\.tar\.gz \(sha256 ok\)/);
    expect(text).toMatch(/d7-made: drupal7 7\.99/); // the registry scan ran on the built tree

    const show = await master.json<{ status: string; source: { kind: string; makefileName: string; makefileDir: string } }>('platform', 'show', 'd7-made');
    expect(show.status).toBe('ready');
    expect(show.source).toEqual({ kind: 'makefile', makefileName: 'd7.make', makefileDir: join(src, 'make') });
  });

  it('a verify of a built platform does not rebuild it', async () => {
    const marker = join(master.root, D7, 'sites/all/modules/contrib/token/token.module');
    const before = readFileSync(marker, 'utf8');
    const { t } = await task(['platform', 'verify', 'd7-made']);
    expect(t.state).toBe('succeeded');
    expect(await log(t.id)).toMatch(/exists; not rebuilding it/);
    expect(readFileSync(marker, 'utf8')).toBe(before);
  });

  it('builds a --git platform at a ref, keeping .git on the master only', async () => {
    const { t, stdout, stderr, code } = await task(['platform', 'add', 'from-git', '--server', 'web', '--path', GITP, '--git', token, '--ref', '7.x-1.0']);
    expect(code, stdout + stderr).toBe(0);
    expect(t.state).toBe('succeeded');
    expect(readFileSync(join(web.root, GITP, 'token.module'), 'utf8')).toContain("return '1.0';");
    expect(existsSync(join(master.root, GITP, '.git'))).toBe(true);
    expect(existsSync(join(web.root, GITP, '.git'))).toBe(false);
    expect(await log(t.id)).toMatch(/cloned .* at 7\.x-1\.0 \([0-9a-f]{12}\)/);
  });

  it('a patch that does not apply fails the build naming the step, and leaves nothing on the master or the agent', async () => {
    writeFileSync(
      join(src, 'make', 'patches', 'stale.patch'),
      '--- a/token.module\n+++ b/token.module\n@@ -1,2 +1,2 @@\n <?php\n-function gone() {\n+function x() {\n',
    );
    const makefile = join(src, 'make', 'broken.make');
    writeFileSync(
      makefile,
      `core = 7.x\napi = 2\nprojects[drupal][download][url] = ${core}\nprojects[token][download][url] = ${token}\nprojects[token][patch][] = patches/stale.patch\n`,
    );
    const path = '/var/aegir/platforms/broken';
    const r = await master.cli('platform', 'add', 'broken', '--server', 'web', '--path', path, '--makefile', makefile);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^error: PLATFORM_BUILD_FAILED: platform broken: project token: patch stale\.patch: does not apply \(tried -p1 and -p0\)/m);
    expect(r.stdout).toMatch(/step failed: project token: patch stale\.patch/);
    expect(existsSync(join(master.root, path))).toBe(false);
    expect(readdirSync(join(master.root, '/var/aegir/platforms')).filter((n) => n.startsWith('.spoke-build-'))).toEqual([]);
    expect(existsSync(join(web.root, path))).toBe(false);
    expect((await master.json<{ status: string }>('platform', 'show', 'broken')).status).toBe('failed');
  });

  it('a makefile that needs drupal.org is refused at add, naming the project, and nothing is registered', async () => {
    const makefile = join(src, 'make', 'dorg.make');
    writeFileSync(makefile, `core = 7.x\napi = 2\nprojects[drupal][download][url] = ${core}\nprojects[views][version] = 3.18\n`);
    const r = await master.cli('platform', 'add', 'dorg', '--server', 'web', '--path', '/var/aegir/platforms/dorg', '--makefile', makefile);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^error: MAKEFILE_NEEDS_DRUPAL_ORG: dorg\.make: project views \(version 3\.18\) has no download URL and would need drupal\.org/m);
    expect((await master.cli('platform', 'show', 'dorg')).stderr).toMatch(/PLATFORM_NOT_FOUND/);
  });

  it('a makefile reading the CA key from the state dir is refused at add, and nothing is registered', async () => {
    const makefile = join(src, 'make', 'key.make');
    writeFileSync(
      makefile,
      `core = 7.x\napi = 2\nprojects[drupal][download][url] = ${core}\nlibraries[k][download][type] = file\nlibraries[k][download][url] = ${join(master.stateDir, 'ca.key')}\n`,
    );
    const r = await master.cli('platform', 'add', 'key', '--server', 'web', '--path', '/var/aegir/platforms/key', '--makefile', makefile);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^error: BUILD_SOURCE_NOT_ALLOWED: key\.make: library k: download .*ca\.key is in the master's state directory/m);
    expect((await master.cli('platform', 'show', 'key')).stderr).toMatch(/PLATFORM_NOT_FOUND/);
  });

  it('a restarted master removes the staging dirs an interrupted build left beside a platform', async () => {
    const parent = join(master.root, '/var/aegir/platforms');
    mkdirSync(join(parent, '.spoke-build-d7-made-0123abcd', 'tree', 'sites'), { recursive: true });
    await master.daemon?.stop('SIGKILL');
    await master.start({}, ['--build-source-dir', src]);
    expect(readdirSync(parent).filter((n) => n.startsWith('.spoke-build-'))).toEqual([]);
    expect(master.daemon?.out).toMatch(/removed staging dirs of builds interrupted by the last stop/);
    expect(existsSync(join(parent, 'd7-made', 'index.php'))).toBe(true);
  });
});
