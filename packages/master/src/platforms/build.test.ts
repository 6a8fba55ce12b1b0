/**
 * The platform builder against real git, patch, tar and unzip: local repositories made with
 * `git init`, local archives, patch files; successful builds (drush layouts for D7 and D8+,
 * includes, defaults, nested makefiles, git platforms) and failures that must leave nothing behind.
 */
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, lstatSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, readlinkSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { silentLogger, type SpokeError } from '@spoke/shared';
import { PlatformBuilder, type BuildRequest } from './build.js';
import { checkMakefileSource } from './buildplan.js';
import { rawZip } from './buildfixtures.js';

const dir = mkdtempSync(join(tmpdir(), 'spoke-build-'));
const src = join(dir, 'src'); // repositories, archives, makefiles, patches
const out = join(dir, 'out'); // build targets live under here
const builder = new PlatformBuilder({ env: { PATH: process.env.PATH, HOME: process.env.HOME }, log: silentLogger() });

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

/** A git repository with `files`, committed and tagged `tag` (if given); returns its path. */
function repo(name: string, files: Record<string, string>, tag?: string): string {
  const r = join(src, 'repos', name);
  mkdirSync(r, { recursive: true });
  git(r, 'init', '-q');
  for (const [f, text] of Object.entries(files)) {
    mkdirSync(dirname(join(r, f)), { recursive: true });
    writeFileSync(join(r, f), text);
  }
  git(r, 'add', '-A');
  git(r, 'commit', '-q', '-m', 'first');
  if (tag) git(r, 'tag', tag);
  return r;
}

function write(rel: string, text: string): string {
  const f = join(src, rel);
  mkdirSync(dirname(f), { recursive: true });
  writeFileSync(f, text);
  return f;
}

/** A .tar.gz of `files` under a single top-level directory, made by GNU tar. */
function tarball(name: string, top: string, files: Record<string, string>): string {
  const stage = join(src, 'stage', name);
  for (const [f, text] of Object.entries(files)) {
    mkdirSync(dirname(join(stage, top, f)), { recursive: true });
    writeFileSync(join(stage, top, f), text);
  }
  const file = join(src, name);
  execFileSync('tar', ['-czf', file, '-C', stage, top]);
  return file;
}

/** A raw tar (ustar) with the given entries, to make archives GNU tar would not write. */
function rawTar(entries: { name: string; body?: string; type?: '0' | '2' | '5'; link?: string }[]): Buffer {
  const blocks: Buffer[] = [];
  for (const e of entries) {
    const body = Buffer.from(e.body ?? '');
    const h = Buffer.alloc(512);
    h.write(e.name, 0, 100, 'utf8');
    h.write('0000644\0', 100);
    h.write('0000000\0', 108);
    h.write('0000000\0', 116);
    h.write(`${body.length.toString(8).padStart(11, '0')}\0`, 124);
    h.write('00000000000\0', 136);
    h.write('        ', 148);
    h.write(e.type ?? '0', 156);
    h.write(e.link ?? '', 157, 100);
    h.write('ustar\u000000', 257, 'latin1');
    let sum = 0;
    for (const b of h) sum += b;
    h.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148);
    blocks.push(h, body, Buffer.alloc((512 - (body.length % 512)) % 512));
  }
  blocks.push(Buffer.alloc(1024));
  return Buffer.concat(blocks);
}

function sha256(file: string): string {
  return createHash('sha256').update(readFileSync(file)).digest('hex');
}

interface Run {
  lines: string[];
  ctx: { log: (m: string, level?: string) => void; signal: AbortSignal };
}
function ctx(): Run {
  const lines: string[] = [];
  return { lines, ctx: { log: (m, level) => lines.push(`${level ?? 'info'} ${m}`), signal: new AbortController().signal } };
}

function makefileReq(platform: string, makefileName: string, text: string, target: string): BuildRequest {
  const f = write(makefileName, text);
  return { platform, target, source: { kind: 'makefile', makefile: text, makefileName, makefileDir: dirname(f) } };
}

/** Runs a build that must fail; returns the error and the log. */
async function failing(req: BuildRequest): Promise<{ err: SpokeError; lines: string[] }> {
  const r = ctx();
  const err = await builder.ensure(r.ctx, req).then(
    () => {
      throw new Error('the build succeeded');
    },
    (e: unknown) => e as SpokeError,
  );
  expect(err.message).not.toMatch(/\n/);
  return { err, lines: r.lines };
}

/** Nothing under `parent` but what was there before. */
function leftovers(parent: string): string[] {
  return existsSync(parent) ? readdirSync(parent).filter((n) => n.startsWith('.spoke-build-')) : [];
}

let core7: string;
let views: string;
let theme: string;

beforeAll(() => {
  core7 = repo(
    'drupal7',
    { 'index.php': '<?php // drupal 7\n', 'includes/bootstrap.inc': "define('VERSION', '7.99');\n", 'modules/node/node.info': 'name = Node\ncore = 7.x\n' },
    '7.99',
  );
  views = repo(
    'views',
    { 'views.info': 'name = Views\ncore = 7.x\nversion = 7.x-3.0\n', 'views.module': '<?php\nfunction views_api() { return 2; }\n' },
    '7.x-3.0',
  );
  // a later commit the tag does not contain
  writeFileSync(join(views, 'views.module'), '<?php\nfunction views_api() { return 3; }\n');
  git(views, 'commit', '-qam', 'later');
  theme = repo('zen', { 'zen.info': 'name = Zen\ncore = 7.x\n' });
  git(theme, 'checkout', '-qb', '7.x-5.x');
  writeFileSync(join(theme, 'zen.info'), 'name = Zen\ncore = 7.x\nversion = 7.x-5.x-dev\n');
  git(theme, 'commit', '-qam', 'branch');
  git(theme, 'checkout', '-q', 'main');
  write(
    'patches/views-api.patch',
    [
      '--- a/views.module',
      '+++ b/views.module',
      '@@ -1,2 +1,2 @@',
      ' <?php',
      '-function views_api() { return 2; }',
      '+function views_api() { return 2; } // patched',
      '',
    ].join('\n'),
  );
  mkdirSync(out, { recursive: true });
});

afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('makefile builds', () => {
  it('builds a Drupal 7 platform: git core at a tag, a patched module, a branch, a tarball library, includes and defaults', async () => {
    const lib = tarball('ckeditor-4.0.tar.gz', 'ckeditor', { 'ckeditor.js': '/* ck */\n', 'lang/en.js': '/* en */\n' });
    write('common.make', 'defaults[projects][subdir] = contrib\n');
    const req = makefileReq(
      'd7',
      'd7.make',
      [
        'core = 7.x',
        'api = 2',
        'includes[] = common.make',
        `projects[drupal][download][type] = git`,
        `projects[drupal][download][url] = file://${core7}`,
        `projects[drupal][download][tag] = 7.99`,
        `projects[views][download][url] = ${views}`,
        `projects[views][download][tag] = 7.x-3.0`,
        'projects[views][patch][] = patches/views-api.patch',
        'projects[zen][type] = theme',
        `projects[zen][download][url] = ${theme}`,
        'projects[zen][download][branch] = 7.x-5.x',
        'projects[zen][subdir] = ""',
        'libraries[ckeditor][download][type] = file',
        'libraries[ckeditor][download][url] = ckeditor-4.0.tar.gz',
        `libraries[ckeditor][download][sha256] = ${sha256(lib)}`,
        '',
      ].join('\n'),
      join(out, 'd7'),
    );
    const r = ctx();
    const res = await builder.ensure(r.ctx, req);
    expect(res).toMatchObject({ built: true, projects: 3, libraries: 1, patches: 1 });
    const t = req.target;
    expect(readFileSync(join(t, 'index.php'), 'utf8')).toContain('drupal 7');
    expect(readFileSync(join(t, 'sites/all/modules/contrib/views/views.module'), 'utf8')).toBe('<?php\nfunction views_api() { return 2; } // patched\n');
    expect(readFileSync(join(t, 'sites/all/modules/contrib/views/PATCHES.txt'), 'utf8')).toContain('- patches/views-api.patch');
    expect(readFileSync(join(t, 'sites/all/themes/zen/zen.info'), 'utf8')).toContain('7.x-5.x-dev');
    expect(readFileSync(join(t, 'sites/all/libraries/ckeditor/lang/en.js'), 'utf8')).toBe('/* en */\n');
    // drush make's default: no working copies
    expect(existsSync(join(t, '.git'))).toBe(false);
    expect(existsSync(join(t, 'sites/all/modules/contrib/views/.git'))).toBe(false);
    expect(lstatSync(t).mode & 0o777).toBe(0o755);
    expect(leftovers(out)).toEqual([]);
    const log = r.lines.join('\n');
    expect(log).toMatch(/core drupal: cloned file:\/\/.* at tag 7\.99/);
    expect(log).toMatch(/project views: patched with views-api\.patch \(-p1\)/);
    expect(log).toMatch(/library ckeditor: extracted ckeditor-4\.0\.tar\.gz \(sha256 ok\) into sites\/all\/libraries\/ckeditor/);
  });

  it('does not rebuild an existing tree', async () => {
    const target = join(out, 'd7');
    writeFileSync(join(target, 'marker.txt'), 'hand-made');
    const r = ctx();
    const req = makefileReq('d7', 'd7-again.make', `core = 7.x\nprojects[drupal][download][url] = ${core7}\n`, target);
    expect((await builder.ensure(r.ctx, req)).built).toBe(false);
    expect(readFileSync(join(target, 'marker.txt'), 'utf8')).toBe('hand-made');
    expect(r.lines.join('\n')).toMatch(/exists; not rebuilding it/);
  });

  it('builds a Drupal 10 platform from YAML: tarball core, root contrib dirs, a profile with a nested makefile, zip and copy', async () => {
    const core = tarball('drupal-10.tar.gz', 'drupal-10.2.0', { 'index.php': '<?php // d10\n', 'core/lib/Drupal.php': "const VERSION = '10.2.0';\n" });
    const prof = repo('myprofile', {
      'myprofile.info.yml': 'name: My profile\ntype: profile\ncore_version_requirement: ^10\n',
      'myprofile.make.yml': [
        'core: 10.x',
        'api: 2',
        'projects:',
        '  token:',
        `    download: { type: git, url: "${views}", tag: 7.x-3.0 }`,
        '  admin_toolbar:',
        '    download:',
        '      type: copy',
        `      url: ${join(src, 'copies/admin_toolbar')}`,
        'libraries:',
        '  dropzone:',
        '    download: { type: file, url: "file://' + join(src, 'dropzone.zip') + '" }',
        '',
      ].join('\n'),
    });
    // (a nested makefile's relative paths would resolve against its own directory, inside the build)
    write('copies/admin_toolbar/admin_toolbar.info.yml', 'name: Admin toolbar\ntype: module\n');
    writeFileSync(join(src, 'dropzone.zip'), rawZip([{ name: 'dropzone/dropzone.js', body: '/* dz */\n' }]));
    const mf = [
      'core: 10.x',
      'api: 2',
      'projects:',
      '  drupal:',
      '    type: core',
      `    download: { type: file, url: "${core}", sha256: "${sha256(core)}" }`,
      '  myprofile:',
      '    type: profile',
      `    download: { type: git, url: "${prof}" }`,
      '  views:',
      '    subdir: contrib',
      `    download: { url: "${views}", revision: "${git(views, 'rev-parse', '7.x-3.0')}" }`,
      'libraries:',
      '  ckeditor:',
      `    download: { type: file, url: "${join(src, 'ckeditor-4.0.tar.gz')}" }`,
      '    destination: libraries',
      '',
    ].join('\n');
    const target = join(out, 'd10', 'platform');
    const req = makefileReq('d10', 'd10.make.yml', mf, target);
    const r = ctx();
    const res = await builder.ensure(r.ctx, req);
    expect(res.built).toBe(true);
    expect(readFileSync(join(target, 'core/lib/Drupal.php'), 'utf8')).toContain('10.2.0');
    expect(existsSync(join(target, 'modules/contrib/views/views.module'))).toBe(true);
    expect(existsSync(join(target, 'profiles/myprofile/myprofile.info.yml'))).toBe(true);
    // nested makefile of a profile: its projects go inside the profile
    expect(readFileSync(join(target, 'profiles/myprofile/modules/token/views.module'), 'utf8')).toContain('return 2;');
    expect(existsSync(join(target, 'profiles/myprofile/modules/admin_toolbar/admin_toolbar.info.yml'))).toBe(true);
    expect(readFileSync(join(target, 'profiles/myprofile/libraries/dropzone/dropzone.js'), 'utf8')).toBe('/* dz */\n');
    expect(existsSync(join(target, 'libraries/ckeditor/ckeditor.js'))).toBe(true);
    expect(r.lines.join('\n')).toMatch(/project myprofile: found myprofile\.make\.yml/);
    expect(leftovers(join(out, 'd10'))).toEqual([]);
  });

  it('does not let a nested makefile redefine a top-level project, and skips its core', async () => {
    const mod = repo('bundle', {
      'bundle.info': 'name = Bundle\ncore = 7.x\n',
      'bundle.make': `core = 7.x\nprojects[drupal][download][url] = ${core7}\nprojects[zen][type] = theme\nprojects[zen][download][url] = ${views}\n`,
    });
    const req = makefileReq(
      'nest',
      'nest.make',
      `core = 7.x\nprojects[drupal][download][url] = ${core7}\nprojects[bundle][download][url] = ${mod}\nprojects[zen][type] = theme\nprojects[zen][download][url] = ${theme}\n`,
      join(out, 'nest'),
    );
    const r = ctx();
    await builder.ensure(r.ctx, req);
    expect(existsSync(join(req.target, 'sites/all/themes/zen/zen.info'))).toBe(true);
    expect(r.lines.join('\n')).toMatch(/skipped project zen \(defined by the top-level makefile/);
    expect(r.lines.join('\n')).toMatch(/skipped core drupal/);
  });

  it('keeps .git with working-copy, places a plain file download, fetches a refspec, honours contrib_destination', async () => {
    write('files/robots.txt', 'User-agent: *\n');
    const req = makefileReq(
      'wc',
      'wc.make',
      [
        'core = 7.x',
        `projects[drupal][download][url] = ${core7}`,
        `projects[views][download][url] = ${views}`,
        'projects[views][download][working-copy] = 1',
        'libraries[robots][download][type] = file',
        'libraries[robots][download][url] = files/robots.txt',
        'libraries[robots][download][filename] = robots.txt',
        `projects[zen][type] = theme`,
        `projects[zen][download][url] = ${theme}`,
        'projects[zen][download][refspec] = refs/heads/7.x-5.x',
        `projects[ctools][download][url] = ${views}`,
        'projects[ctools][contrib_destination] = sites/example.com',
        '',
      ].join('\n'),
      join(out, 'wc'),
    );
    await builder.ensure(ctx().ctx, req);
    expect(existsSync(join(req.target, 'sites/all/modules/views/.git'))).toBe(true);
    expect(readFileSync(join(req.target, 'sites/all/libraries/robots/robots.txt'), 'utf8')).toBe('User-agent: *\n');
    expect(readFileSync(join(req.target, 'sites/all/themes/zen/zen.info'), 'utf8')).toContain('7.x-5.x-dev');
    expect(existsSync(join(req.target, 'sites/example.com/modules/ctools/views.info'))).toBe(true);
  });
});

describe('git platforms', () => {
  it('clones at a tag, a branch or a commit and keeps .git', async () => {
    const tagged = { platform: 'g1', target: join(out, 'git', 'g1'), source: { kind: 'git' as const, url: views, ref: '7.x-3.0' } };
    await builder.ensure(ctx().ctx, tagged);
    expect(readFileSync(join(tagged.target, 'views.module'), 'utf8')).toContain('return 2;');
    expect(existsSync(join(tagged.target, '.git'))).toBe(true);
    const branch = { platform: 'g2', target: join(out, 'git', 'g2'), source: { kind: 'git' as const, url: `file://${theme}`, ref: '7.x-5.x' } };
    await builder.ensure(ctx().ctx, branch);
    expect(readFileSync(join(branch.target, 'zen.info'), 'utf8')).toContain('7.x-5.x-dev');
    const head = { platform: 'g3', target: join(out, 'git', 'g3'), source: { kind: 'git' as const, url: views, ref: '' } };
    await builder.ensure(ctx().ctx, head);
    expect(readFileSync(join(head.target, 'views.module'), 'utf8')).toContain('return 3;');
  });

  it('fails on a ref the repository does not have, naming the step, leaving nothing', async () => {
    const target = join(out, 'git-bad', 'p');
    const { err, lines } = await failing({ platform: 'gbad', target, source: { kind: 'git', url: views, ref: 'no-such-ref' } });
    expect(err.code).toBe('PLATFORM_BUILD_FAILED');
    expect(err.message).toMatch(/^platform gbad: git checkout no-such-ref: git exited 1: .*no-such-ref/);
    expect(lines.join('\n')).toMatch(/step failed: git checkout no-such-ref/);
    expect(existsSync(join(out, 'git-bad'))).toBe(false); // the parent it created is gone too
  });
});

describe('refused and failed builds leave nothing behind', () => {
  it('a project with a bare version needs drupal.org: refused, naming it, before anything is created', async () => {
    const target = join(out, 'needs', 'p');
    const { err } = await failing(
      makefileReq('needs', 'needs.make', `core = 7.x\nprojects[drupal][download][url] = ${core7}\nprojects[views] = 3.0\nprojects[] = ctools\n`, target),
    );
    expect(err.code).toBe('MAKEFILE_NEEDS_DRUPAL_ORG');
    expect(err.message).toMatch(/projects views \(version 3\.0\), ctools have no download URL and would need drupal\.org/);
    expect(existsSync(join(out, 'needs'))).toBe(false);
  });

  it('the same check refuses the makefile at add time', async () => {
    const f = write('add.make', 'core = 7.x\nprojects[drupal][version] = 7.99\n');
    await expect(
      checkMakefileSource({ kind: 'makefile', makefile: readFileSync(f, 'utf8'), makefileName: 'add.make', makefileDir: dirname(f) }),
    ).rejects.toMatchObject({
      code: 'MAKEFILE_NEEDS_DRUPAL_ORG',
      message: expect.stringMatching(/project drupal \(version 7\.99\) has no download URL/),
    });
    await expect(checkMakefileSource({ kind: 'makefile', makefile: 'core = 7.x\nincludes[] = common.make\n', makefileName: 'x.make' })).rejects.toMatchObject({
      code: 'CONFIG_INVALID',
      message: expect.stringMatching(/directory is not known/),
    });
    await expect(
      checkMakefileSource({ kind: 'makefile', makefile: 'core = 7.x\nprojects[x][download][url] = /r\n', makefileName: 'x.make' }),
    ).rejects.toMatchObject({
      code: 'CONFIG_INVALID',
      message: expect.stringMatching(/no core project/),
    });
    await expect(
      checkMakefileSource({
        kind: 'makefile',
        makefile: `core = 7.x\nprojects[drupal][download][type] = file\nprojects[drupal][download][url] = https://ftp.drupal.org/d.tgz\n`,
        makefileName: 'x.make',
      }),
    ).rejects.toMatchObject({ code: 'CONFIG_INVALID', message: expect.stringMatching(/remote URL https:\/\/ftp\.drupal\.org\/d\.tgz is not supported/) });
  });

  it('a bad checksum fails before extraction, naming the library and the step', async () => {
    const target = join(out, 'sum');
    const { err, lines } = await failing(
      makefileReq(
        'sum',
        'sum.make',
        `core = 7.x\nprojects[drupal][download][url] = ${core7}\nlibraries[ck][download][type] = file\nlibraries[ck][download][url] = ckeditor-4.0.tar.gz\nlibraries[ck][download][md5] = 0123456789abcdef0123456789abcdef\n`,
        target,
      ),
    );
    expect(err.code).toBe('CHECKSUM_MISMATCH');
    expect(err.message).toMatch(
      /^platform sum: library ck: verify checksum of ckeditor-4\.0\.tar\.gz: ckeditor-4\.0\.tar\.gz: md5 is [0-9a-f]{32}, the makefile expects 0123/,
    );
    expect(lines.join('\n')).toMatch(/build failed; removed .*\.spoke-build-sum-/);
    expect(existsSync(target)).toBe(false);
    expect(leftovers(out)).toEqual([]);
  });

  it('a patch that does not apply fails naming the patch; no staging dir is left', async () => {
    write('patches/bad.patch', '--- a/views.module\n+++ b/views.module\n@@ -1,2 +1,2 @@\n <?php\n-function nothing_like_this() {}\n+function x() {}\n');
    const target = join(out, 'badpatch');
    const { err, lines } = await failing(
      makefileReq(
        'badpatch',
        'badpatch.make',
        `core = 7.x\nprojects[drupal][download][url] = ${core7}\nprojects[views][download][url] = ${views}\nprojects[views][patch][] = patches/bad.patch\n`,
        target,
      ),
    );
    expect(err.code).toBe('PLATFORM_BUILD_FAILED');
    expect(err.message).toMatch(/^platform badpatch: project views: patch bad\.patch: does not apply \(tried -p1 and -p0\): .*FAILED/);
    expect(lines.join('\n')).toMatch(/step failed: project views: patch bad\.patch/);
    expect(existsSync(target)).toBe(false);
    expect(leftovers(out)).toEqual([]);
  });

  it('a hostile tarball (.. and a symlink out) and a zip with a symlink out are refused', async () => {
    writeFileSync(
      join(src, 'dotdot.tar'),
      rawTar([
        { name: 'lib/ok.txt', body: 'ok' },
        { name: '../escape.txt', body: 'evil' },
      ]),
    );
    writeFileSync(
      join(src, 'link.tar'),
      rawTar([
        { name: 'lib/', type: '5' },
        { name: 'lib/passwd', type: '2', link: '../../../../etc/passwd' },
      ]),
    );
    writeFileSync(
      join(src, 'link.zip'),
      rawZip([
        { name: 'lib/a.txt', body: 'a' },
        { name: 'lib/out', body: '../../../../etc', link: true },
      ]),
    );
    for (const [name, file] of [
      ['t1', 'dotdot.tar'],
      ['t2', 'link.tar'],
      ['t3', 'link.zip'],
    ] as const) {
      const target = join(out, name);
      const { err } = await failing(
        makefileReq(
          name,
          `${name}.make`,
          `core = 7.x\nprojects[drupal][download][url] = ${core7}\nlibraries[x][download][type] = file\nlibraries[x][download][url] = ${file}\n`,
          target,
        ),
      );
      expect(err.code, err.message).toBe('ARCHIVE_UNSAFE');
      expect(err.message).toMatch(new RegExp(`^platform ${name}: library x: extract ${file.replace('.', '\\.')}: unsafe`));
      expect(existsSync(target)).toBe(false);
    }
    expect(existsSync(join(dir, 'escape.txt'))).toBe(false);
    expect(existsSync(join(out, 'escape.txt'))).toBe(false);
    expect(leftovers(out)).toEqual([]);
  });

  it('a project directory that already exists fails unless overwrite is set', async () => {
    const target = join(out, 'dup');
    const { err } = await failing(
      makefileReq(
        'dup',
        'dup.make',
        `core = 7.x\nprojects[drupal][download][url] = ${core7}\nprojects[node][download][url] = ${views}\nprojects[node][subdir] = ../../modules\n`,
        target,
      ),
    );
    // subdir may not climb out; the parser refuses the path outright
    expect(err.code).toBe('CONFIG_INVALID');
    const { err: e2 } = await failing(
      makefileReq(
        'dup',
        'dup2.make',
        `core = 7.x\nprojects[drupal][download][url] = ${core7}\nprojects[node][type] = profile\nprojects[node][download][url] = ${views}\nprojects[again][type] = profile\nprojects[again][directory_name] = node\nprojects[again][download][url] = ${theme}\n`,
        target,
      ),
    );
    expect(e2.code).toBe('PLATFORM_BUILD_FAILED');
    expect(e2.message).toMatch(/^platform dup: project again: prepare profiles\/node: profiles\/node already exists/);
    const r = ctx();
    await builder.ensure(
      r.ctx,
      makefileReq(
        'dup',
        'dup3.make',
        `core = 7.x\nprojects[drupal][download][url] = ${core7}\nprojects[node][type] = profile\nprojects[node][download][url] = ${views}\nprojects[again][type] = profile\nprojects[again][directory_name] = node\nprojects[again][overwrite] = 1\nprojects[again][download][url] = ${theme}\n`,
        target,
      ),
    );
    expect(existsSync(join(target, 'profiles/node/zen.info'))).toBe(true);
    expect(existsSync(join(target, 'profiles/node/views.module'))).toBe(false);
  });

  it('sweeps a staging dir left by an interrupted build of the same platform, and only that one', async () => {
    const parent = join(out, 'sweep');
    mkdirSync(join(parent, '.spoke-build-sw-0123abcd', 'tree'), { recursive: true });
    mkdirSync(join(parent, '.spoke-build-sw-other-0123abcd'), { recursive: true }); // platform "sw-other"
    const r = ctx();
    await builder.ensure(r.ctx, makefileReq('sw', 'sw.make', `core = 7.x\nprojects[drupal][download][url] = ${core7}\n`, join(parent, 'sw')));
    expect(readdirSync(parent).sort()).toEqual(['.spoke-build-sw-other-0123abcd', 'sw']);
    expect(r.lines.join('\n')).toMatch(/left by an interrupted build/);
  });

  it('a cancelled build stops and leaves nothing', async () => {
    const ac = new AbortController();
    ac.abort(new Error('cancelled by the operator'));
    const target = join(out, 'cancel', 'p');
    await expect(
      builder.ensure({ log: () => undefined, signal: ac.signal }, { platform: 'c', target, source: { kind: 'git', url: views, ref: '' } }),
    ).rejects.toThrow('cancelled by the operator');
    expect(existsSync(join(out, 'cancel'))).toBe(false);
  });
});

describe('symlinks in a copy stay as written', () => {
  it('copies a directory with its relative symlinks', async () => {
    mkdirSync(join(src, 'copies/withlink'), { recursive: true });
    writeFileSync(join(src, 'copies/withlink/a.txt'), 'a');
    symlinkSync('a.txt', join(src, 'copies/withlink/b.txt'));
    const req = makefileReq(
      'cp',
      'cp.make',
      `core = 7.x\nprojects[drupal][download][url] = ${core7}\nlibraries[wl][download][type] = copy\nlibraries[wl][download][url] = copies/withlink\n`,
      join(out, 'cp'),
    );
    await builder.ensure(ctx().ctx, req);
    expect(readlinkSync(join(req.target, 'sites/all/libraries/wl/b.txt'))).toBe('a.txt');
  });
});
