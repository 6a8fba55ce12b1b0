import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { isSpokeError } from '@spoke/shared';
import { loadMakefile, loadMakefileText, needsDrupalOrg, nestedMakefileNames, parseMakefile, type Makefile, type MakeProject } from './makefile.js';
import { makeTree, type TreeSpec } from './testTree.js';

const cleanups: Array<() => void> = [];
afterAll(() => cleanups.forEach((c) => c()));
function tree(spec: TreeSpec): string {
  const t = makeTree(spec);
  cleanups.push(t.cleanup);
  return t.root;
}

function project(m: Makefile, name: string): MakeProject {
  const p = m.projects.find((x) => x.name === name);
  if (!p) throw new Error(`no project ${name}`);
  return p;
}

function expectConfigInvalid(fn: () => unknown, pattern: RegExp): void {
  let err: unknown;
  try {
    fn();
  } catch (e) {
    err = e;
  }
  expect(isSpokeError(err, 'CONFIG_INVALID'), String(err)).toBe(true);
  expect((err as Error).message).toMatch(pattern);
}

async function expectConfigInvalidAsync(p: Promise<unknown>, pattern: RegExp): Promise<void> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(isSpokeError(err, 'CONFIG_INVALID'), String(err)).toBe(true);
  expect((err as Error).message).toMatch(pattern);
}

const INI = `; Example makefile
core = 7.x
api = 2

defaults[projects][subdir] = contrib

projects[drupal][version] = 7.38
projects[drupal][patch][] = "https://drupal.org/files/issues/install-redirect-728702-36.patch"

projects[] = views
projects[ctools] = 1.0-rc1

projects[tao][type] = theme
projects[tao][download][type] = git
projects[tao][download][url] = "https://github.com/x/tao.git"
projects[tao][download][branch] = 7.x-3.x
projects[tao][download][tag] = 7.x-3.1
projects[tao][download][revision] = abc123

projects[devel][subdir] = development
projects[devel][version] = 1.5

projects[calendar][patch][rfc-fixes][url] = "http://drupal.org/files/issues/cal-760316-rfc-fixes-2.diff"
projects[calendar][patch][rfc-fixes][md5] = "e4876228f449cb0c37ffa0f2142"
projects[calendar][patch][] = "http://drupal.org/files/issues/cal-2.patch"

projects[context_admin][revision] = "eb9f05e"

projects[grammar_parser][type] = library
projects[grammar_parser][download][type] = get
projects[grammar_parser][download][url] = http://ftp.drupal.org/files/projects/grammar_parser-7.x-1.2.tar.gz
projects[grammar_parser][download][sha256] = deadbeef

projects[myprofile][type] = profile
projects[myprofile][download][type] = copy
projects[myprofile][download][url] = "file://./myprofile"
projects[myprofile][do_recursion] = 0
projects[myprofile][overwrite] = TRUE

projects[oldsvn][download][type] = svn
projects[oldsvn][download][url] = "http://svn.example.com/repo"

libraries[jquery_ui][download][type] = "file"
libraries[jquery_ui][download][url] = "http://example.com/jquery.ui-1.6.zip"
libraries[jquery_ui][download][md5] = "c177d38bc7af59d696b2efd7dda5c605"
libraries[jquery_ui][destination] = "modules/contrib/jquery_ui"
libraries[ckeditor][download] = "git://github.com/ckeditor/ckeditor.git"

translations[] = es
translations[] = fr
`;

const YAML = `# The same makefile in YAML
core: 7.x
api: 2
defaults:
  projects:
    subdir: contrib
projects:
  drupal:
    version: 7.38
    patch:
      - "https://drupal.org/files/issues/install-redirect-728702-36.patch"
  views: ~
  ctools: "1.0-rc1"
  tao:
    type: theme
    download:
      type: git
      url: "https://github.com/x/tao.git"
      branch: 7.x-3.x
      tag: 7.x-3.1
      revision: abc123
  devel:
    subdir: development
    version: 1.5
  calendar:
    patch:
      rfc-fixes:
        url: "http://drupal.org/files/issues/cal-760316-rfc-fixes-2.diff"
        md5: "e4876228f449cb0c37ffa0f2142"
      1: "http://drupal.org/files/issues/cal-2.patch"
  context_admin:
    revision: eb9f05e
  grammar_parser:
    type: library
    download:
      type: get
      url: http://ftp.drupal.org/files/projects/grammar_parser-7.x-1.2.tar.gz
      sha256: deadbeef
  myprofile:
    type: profile
    download:
      type: copy
      url: "file://./myprofile"
    do_recursion: 0
    overwrite: true
  oldsvn:
    download:
      type: svn
      url: "http://svn.example.com/repo"
libraries:
  jquery_ui:
    download:
      type: "file"
      url: "http://example.com/jquery.ui-1.6.zip"
      md5: "c177d38bc7af59d696b2efd7dda5c605"
    destination: "modules/contrib/jquery_ui"
  ckeditor:
    download: "git://github.com/ckeditor/ckeditor.git"
translations:
  - es
  - fr
`;

describe('parseMakefile (INI)', () => {
  const m = parseMakefile(INI, { format: 'ini', name: 'example.make' });

  it('reads core, api, source and the defaults block', () => {
    expect(m).toMatchObject({ source: 'example.make', core: '7.x', core_release: null, api: 2, translations: ['es', 'fr'], includes: [] });
    expect(m.defaults).toEqual({ projects: { subdir: 'contrib' } });
  });

  it('keeps project order and expands the shorthands', () => {
    expect(m.projects.map((p) => p.name)).toEqual([
      'drupal',
      'views',
      'ctools',
      'tao',
      'devel',
      'calendar',
      'context_admin',
      'grammar_parser',
      'myprofile',
      'oldsvn',
    ]);
    expect(project(m, 'views')).toEqual({
      name: 'views',
      type: null,
      version: null,
      subdir: 'contrib',
      directory_name: null,
      contrib_destination: null,
      download: null,
      patch: [],
      patches: [],
      location: null,
      overwrite: false,
      do_recursion: true,
    });
    expect(project(m, 'ctools')).toMatchObject({ version: '1.0-rc1', download: null, subdir: 'contrib' });
    expect(project(m, 'drupal')).toMatchObject({
      type: 'core',
      version: '7.38',
      patch: ['https://drupal.org/files/issues/install-redirect-728702-36.patch'],
    });
  });

  it('applies defaults under project settings', () => {
    expect(project(m, 'devel')).toMatchObject({ subdir: 'development', version: '1.5' });
  });

  it('normalises downloads: git, get→file, copy, revision shorthand, unsupported methods', () => {
    expect(project(m, 'tao').download).toEqual({
      type: 'git',
      url: 'https://github.com/x/tao.git',
      branch: '7.x-3.x',
      tag: '7.x-3.1',
      revision: 'abc123',
      refspec: null,
      working_copy: false,
    });
    expect(project(m, 'grammar_parser')).toMatchObject({
      type: 'library',
      download: { type: 'file', url: 'http://ftp.drupal.org/files/projects/grammar_parser-7.x-1.2.tar.gz', sha256: 'deadbeef', md5: null },
    });
    expect(project(m, 'myprofile')).toMatchObject({
      type: 'profile',
      download: { type: 'copy', url: 'file://./myprofile' },
      do_recursion: false,
      overwrite: true,
    });
    expect(project(m, 'context_admin').download).toMatchObject({ type: 'git', url: null, revision: 'eb9f05e' });
    expect(project(m, 'oldsvn').download).toEqual({ type: 'unsupported', method: 'svn', url: 'http://svn.example.com/repo' });
  });

  it('reads keyed and listed patches with md5', () => {
    expect(project(m, 'calendar').patches).toEqual([
      { url: 'http://drupal.org/files/issues/cal-760316-rfc-fixes-2.diff', md5: 'e4876228f449cb0c37ffa0f2142' },
      { url: 'http://drupal.org/files/issues/cal-2.patch', md5: null },
    ]);
    expect(project(m, 'calendar').patch).toEqual(['http://drupal.org/files/issues/cal-760316-rfc-fixes-2.diff', 'http://drupal.org/files/issues/cal-2.patch']);
  });

  it('reads libraries with destination and download shorthand', () => {
    expect(m.libraries).toEqual([
      {
        name: 'jquery_ui',
        type: 'library',
        destination: 'modules/contrib/jquery_ui',
        subdir: null,
        directory_name: null,
        contrib_destination: null,
        download: {
          type: 'file',
          url: 'http://example.com/jquery.ui-1.6.zip',
          md5: 'c177d38bc7af59d696b2efd7dda5c605',
          sha1: null,
          sha256: null,
          sha512: null,
          subtree: null,
          filename: null,
        },
        patch: [],
        patches: [],
        overwrite: false,
      },
      {
        name: 'ckeditor',
        type: 'library',
        destination: 'libraries',
        subdir: null,
        directory_name: null,
        contrib_destination: null,
        download: { type: 'git', url: 'git://github.com/ckeditor/ckeditor.git', branch: null, tag: null, revision: null, refspec: null, working_copy: false },
        patch: [],
        patches: [],
        overwrite: false,
      },
    ]);
  });

  it('needsDrupalOrg: only-a-version projects and URL-less git downloads', () => {
    const needs = m.projects.filter(needsDrupalOrg).map((p) => p.name);
    expect(needs).toEqual(['drupal', 'views', 'ctools', 'devel', 'calendar', 'context_admin']);
  });

  it('applies defaults[libraries] too, under each library', () => {
    const r = parseMakefile(
      'core = 7.x\ndefaults[libraries][destination] = libs\ndefaults[libraries][download][type] = file\nlibraries[a][download][url] = http://x/a.zip\nlibraries[b][destination] = own\nlibraries[b][download][url] = http://x/b.zip\n',
      { format: 'ini' },
    );
    expect(r.libraries.map((l) => [l.name, l.destination, l.download?.type])).toEqual([
      ['a', 'libs', 'file'],
      ['b', 'own', 'file'],
    ]);
  });

  it('keeps an exact core release', () => {
    const r = parseMakefile('core = 7.44\napi = 2\nprojects[] = drupal\n', { format: 'ini' });
    expect(r).toMatchObject({ core: '7.x', core_release: '7.44', api: 2 });
    expect(r.projects.map((p) => [p.name, p.type])).toEqual([['drupal', 'core']]);
  });
});

describe('parseMakefile (YAML)', () => {
  it('produces the same model as the INI form', () => {
    const ini = parseMakefile(INI, { format: 'ini', name: 'x' });
    const yaml = parseMakefile(YAML, { format: 'yaml', name: 'x' });
    expect(yaml).toEqual({ ...ini, projects: yaml.projects });
    // `views: ~` in YAML removes the entry (drush semantics); everything else matches.
    expect(yaml.projects.map((p) => p.name)).toEqual(ini.projects.map((p) => p.name).filter((n) => n !== 'views'));
    expect(yaml.projects).toEqual(ini.projects.filter((p) => p.name !== 'views'));
  });

  it('reads list-form projects and keeps version numbers as written', () => {
    const m = parseMakefile('core: 7.x\napi: 2\nprojects:\n  - drupal\n  - views\n', { format: 'yaml' });
    expect(m.projects.map((p) => p.name)).toEqual(['drupal', 'views']);
    const v = parseMakefile('core: 7.x\nprojects:\n  drupal:\n    version: 7.10\n  views: 3.0\n', { format: 'yaml' });
    expect(v.projects.map((p) => p.version)).toEqual(['7.10', '3.0']);
  });

  it('accepts a download URL shorthand (git by default)', () => {
    const m = parseMakefile('core: 8.x\nprojects:\n  mytheme:\n    type: theme\n    download: "git://github.com/jane_doe/mytheme.git"\n', { format: 'yaml' });
    expect(m.projects[0]?.download).toMatchObject({ type: 'git', url: 'git://github.com/jane_doe/mytheme.git' });
  });
});

describe('parseMakefile: refusals', () => {
  it.each([
    ['core = 7.x\nprojects[x][subdir] = ../../etc\n', /illegal path "..\/..\/etc" for subdir of project x/],
    ['core = 7.x\nprojects[x][directory_name] = /abs\n', /illegal path/],
    ['core = 7.x\nlibraries[l][destination] = a/../../b\nlibraries[l][download][url] = u\n', /illegal path/],
    ['core = 7.x\nprojects[x][type] = plugin\n', /unknown type "plugin"/],
    ['core = 7.x\napi = 3\n', /api 3 is not supported/],
    ['core = seven\n', /'core' attribute seven has an incorrect format/],
    ['core = 7.x\nprojects[] = views\nprojects[views][subdir] = contrib\n', /project views defined twice/],
    ['core = 7.x\nprojects[x][download][type] = file\n', /download of type file needs a url/],
    ['core = 7.x\nprojects[x][patch][p][md5] = abc\n', /patch p has no url/],
    ['core = 7.x\nlibraries[l] = foo\n', /library l incorrectly specified/],
  ])('INI %j', (text, pattern) => {
    expectConfigInvalid(() => parseMakefile(text, { format: 'ini', name: 'bad.make' }), pattern);
  });

  it('refuses broken YAML and a non-mapping document', () => {
    expectConfigInvalid(() => parseMakefile('core: [7.x\n', { format: 'yaml', name: 'bad.make.yml' }), /^bad\.make\.yml: invalid YAML/);
    expectConfigInvalid(() => parseMakefile('- a\n', { format: 'yaml', name: 'list.yml' }), /top level is not a mapping/);
  });
});

describe('loadMakefile', () => {
  const root = tree({
    'base.make': 'core = 6.x\napi = 2\nprojects[views][subdir] = contrib\nprojects[cck][subdir] = contrib\nprojects[token][version] = 1.0\n',
    'sub/more.make': 'includes[] = ../shared/lib.make\nprojects[token][version] = 2.0\n',
    'shared/lib.make': 'libraries[x][download][type] = file\nlibraries[x][download][url] = http://example.com/x.zip\nprojects[token][subdir] = fromlib\n',
    'extender.make.yml': [
      'includes:',
      '  - base.make',
      '  - sub/more.make',
      'overrides:',
      '  - ov.make',
      'projects:',
      '  views:',
      '    subdir: patched',
      '    type: module',
      '    download:',
      '      type: git',
      '      url: "http://git.drupal.org/project/views.git"',
      '  cck: ~',
      '  token:',
      '    version: "3.0"',
      '',
    ].join('\n'),
    'ov.make': 'projects[token][version] = 4.0\n',
    'cycle/a.make': 'core = 7.x\nincludes[] = b.make\n',
    'cycle/b.make': 'includes[] = a.make\n',
    'missing.make': 'core = 7.x\nincludes[] = nope.make\n',
    'remote.make': 'core = 7.x\nincludes[] = http://example.com/remote.make\n',
    'gitinc.make.yml': 'core: 7.x\nincludes:\n  - makefile: x.make\n    download:\n      type: git\n      url: u\n',
    'order/main.make': 'core = 7.x\nincludes[] = one.make\nincludes[] = two.make\n',
    'order/one.make': 'projects[p][version] = 1.0\nprojects[p][subdir] = one\n',
    'order/two.make': 'projects[p][version] = 2.0\n',
  });

  it('merges includes recursively (includer wins), applies overrides, and drops removed projects', async () => {
    const m = await loadMakefile(join(root, 'extender.make.yml'));
    expect(m.core).toBe('6.x');
    expect(m.projects.map((p) => p.name)).toEqual(['views', 'token']);
    expect(project(m, 'views')).toMatchObject({
      subdir: 'patched',
      type: 'module',
      download: { type: 'git', url: 'http://git.drupal.org/project/views.git' },
    });
    // base 1.0 < more 2.0 < extender 3.0 < override 4.0; subdir from the nested include survives.
    expect(project(m, 'token')).toMatchObject({ version: '4.0', subdir: 'fromlib' });
    expect(m.libraries.map((l) => [l.name, l.download?.type])).toEqual([['x', 'file']]);
    expect(m.includes).toEqual([join(root, 'base.make'), join(root, 'shared/lib.make'), join(root, 'sub/more.make'), join(root, 'ov.make')]);
    expect(m.source).toBe(join(root, 'extender.make.yml'));
  });

  it('lets later includes override earlier ones', async () => {
    const m = await loadMakefile(join(root, 'order/main.make'));
    expect(project(m, 'p')).toMatchObject({ version: '2.0', subdir: 'one' });
  });

  it('detects include cycles', async () => {
    await expectConfigInvalidAsync(loadMakefile(join(root, 'cycle/a.make')), /include cycle: .*a\.make -> .*b\.make -> .*a\.make/);
  });

  it('refuses missing, remote and git includes, and a missing top file', async () => {
    await expectConfigInvalidAsync(loadMakefile(join(root, 'missing.make')), /include file missing: .*nope\.make/);
    await expectConfigInvalidAsync(loadMakefile(join(root, 'remote.make')), /remote includes are not supported: http:\/\/example\.com\/remote\.make/);
    await expectConfigInvalidAsync(loadMakefile(join(root, 'gitinc.make.yml')), /includes from a repository/);
    await expectConfigInvalidAsync(loadMakefile(join(root, 'absent.make')), /makefile not found/);
  });

  it('hands every include and override to checkInclude before reading it, the top file not', async () => {
    const seen: string[] = [];
    const m = await loadMakefile(join(root, 'extender.make.yml'), { checkInclude: async (p) => seen.push(p) });
    expect(m.core).toBe('6.x');
    expect(seen).toEqual([join(root, 'base.make'), join(root, 'sub/more.make'), join(root, 'shared/lib.make'), join(root, 'ov.make')]);
    const refusal = new Error('not here');
    await expect(loadMakefile(join(root, 'missing.make'), { checkInclude: () => Promise.reject(refusal) })).rejects.toBe(refusal);
    await expect(
      loadMakefileText('core = 7.x\nincludes[] = /etc/shadow\n', { name: 'x.make', dir: root, checkInclude: () => Promise.reject(refusal) }),
    ).rejects.toBe(refusal);
  });

  it('parseMakefile lists includes without following them', () => {
    const m = parseMakefile('core = 7.x\nincludes[] = base.make\nincludes[] = ../x.make\n', { format: 'ini' });
    expect(m.includes).toEqual(['base.make', '../x.make']);
  });
});

describe('nestedMakefileNames', () => {
  it('lists the files drush recurses into', () => {
    expect(nestedMakefileNames({ name: 'openatrium' })).toEqual(['openatrium.make.yml', 'openatrium.make', 'drupal-org.make.yml', 'drupal-org.make']);
  });
});
