/**
 * Issue 16 (builds): a makefile build never writes, reads or publishes anything outside its own
 * staging dir and the directories the operator allows. Each case is the attack as the issue
 * filed it, built by the real builder with real tar, zip, git and patch, inside a "jail"
 * directory whose snapshot must not change (only the build's own target may appear in it).
 */
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, readlinkSync, rmSync, symlinkSync, writeFileSync, existsSync, lstatSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { silentLogger, type SpokeError } from '@spoke/shared';
import { PlatformBuilder, type BuildRequest } from './build.js';
import { checkMakefileSource } from './buildplan.js';
import { ARCHIVE_FORMATS, commitRepo, packArchive, rawZip, snapshot, snapshotDiff, symlinkPatch } from './buildfixtures.js';
import { writeTree } from './registry/testTree.js';

const dir = mkdtempSync(join(tmpdir(), 'spoke-buildsec-'));
/** Everything a build may not touch lives in here; escapes with up to 4 `..` land in it. */
const jail = join(dir, 'j1', 'j2', 'jail');
const src = join(jail, 'src'); // the makefiles' directory (default allowed source dir)
const out = join(jail, 'out'); // targets: out/<platform>; staging dirs beside them
const stateDir = join(jail, 'state');
const env = { PATH: process.env.PATH, HOME: process.env.HOME };
const builder = new PlatformBuilder({ env, log: silentLogger(), stateDir, commandTimeoutMs: 60_000 });
mkdirSync(src, { recursive: true });
mkdirSync(out, { recursive: true });
writeTree(join(stateDir, 'pki'), { 'ca.key': '-----BEGIN PRIVATE KEY-----\nsecret\n' });
writeTree(join(jail, 'outside'), { 'secret.txt': 'not for the web\n', 'inc.make': 'projects[x][download][url] = /nonexistent\n' });
// The default core: a Drupal 8+ shaped tree (contrib goes to the root).
writeTree(join(src, 'stage/core8/drupal-10.1.0'), { 'index.php': '<?php\n', 'core/lib/Drupal.php': "<?php const VERSION = '10.1.0';\n" });
const core8 = packArchive(join(src, 'stage/core8'), ['drupal-10.1.0'], join(src, 'core8.tar.gz'), 'tar.gz');
writeTree(join(src, 'payload'), { 'pwned.txt': 'pwned\n' });

afterAll(() => rmSync(dir, { recursive: true, force: true }));

function makefile(name: string, lines: string[]): BuildRequest {
  const text = ['core = 10.x', 'api = 2', ...lines, ''].join('\n');
  writeFileSync(join(src, `${name}.make`), text);
  return { platform: name, target: join(out, name), source: { kind: 'makefile', makefile: text, makefileName: `${name}.make`, makefileDir: src } };
}

const coreLines = (url = core8) => ['projects[drupal][type] = core', 'projects[drupal][download][type] = file', `projects[drupal][download][url] = ${url}`];
const payloadAt = (destination: string) => [
  'libraries[payload][download][type] = copy',
  'libraries[payload][download][url] = payload',
  `libraries[payload][destination] = ${destination}`,
];

interface Outcome {
  err: SpokeError | null;
  lines: string[];
  /** Changes inside the jail other than the target (must be none). */
  outside: string[];
}

/** Runs a build and reports what it changed in the jail besides its own target. */
async function build(req: BuildRequest, b: PlatformBuilder = builder): Promise<Outcome> {
  const targetRel = `out/${req.platform}`;
  const skip = (rel: string) => rel === targetRel || rel.startsWith(`${targetRel}/`);
  const before = snapshot(jail, skip);
  const lines: string[] = [];
  const err = await b.ensure({ log: (m, level) => lines.push(`${level ?? 'info'} ${m}`), signal: new AbortController().signal }, req).then(
    () => null,
    (e: unknown) => e as SpokeError,
  );
  if (err) expect(err.message).not.toMatch(/\n/);
  return { err, lines, outside: snapshotDiff(before, snapshot(jail, skip)) };
}

/** A build that must be refused with `code`, leaving the jail as it was and no target. */
async function refused(req: BuildRequest, code: string, b: PlatformBuilder = builder): Promise<SpokeError> {
  const r = await build(req, b);
  expect(r.err?.code, r.err?.message ?? 'the build succeeded').toBe(code);
  expect(r.outside).toEqual([]);
  expect(existsSync(req.target)).toBe(false);
  return r.err as SpokeError;
}

describe('item 1: nothing is written through a link planted earlier in the build', () => {
  it('a core placed with subtree whose link is legal in the archive but climbs out once placed', async () => {
    writeTree(join(src, 'stage/sub'), { 'pkg/a/b/drupal/index.php': '<?php\n', 'pkg/a/b/drupal/esc': { symlink: '../../..' } });
    const tgz = packArchive(join(src, 'stage/sub'), ['pkg'], join(src, 'sub.tar.gz'), 'tar.gz');
    const err = await refused(
      makefile('subtree', [...coreLines(tgz), 'projects[drupal][download][subtree] = pkg/a/b/drupal', ...payloadAt('esc/OUT')]),
      'BUILD_PATH_ESCAPE',
    );
    expect(err.message).toMatch(/^platform subtree: core drupal: check \.: core drupal: link esc -> \.\.\/\.\.\/\.\. points outside the platform/);
    expect(existsSync(join(jail, 'OUT'))).toBe(false);
  });

  it('a copy download keeping an absolute link', async () => {
    writeTree(join(src, 'withabs'), { 'a.txt': 'a', esc: { symlink: join(jail, 'outside') } });
    const err = await refused(
      makefile('copyabs', [...coreLines(), 'libraries[a][download][type] = copy', 'libraries[a][download][url] = withabs', ...payloadAt('libraries/a/esc')]),
      'BUILD_PATH_ESCAPE',
    );
    expect(err.message).toContain(`library a: link libraries/a/esc -> ${join(jail, 'outside')} points outside the platform`);
    expect(readdirSync(join(jail, 'outside')).sort()).toEqual(['inc.make', 'secret.txt']);
  });

  it('a git repository with a committed absolute link', async () => {
    writeTree(join(src, 'repos/absgit'), { 'm.module': '<?php\n', esc: { symlink: jail } });
    const repo = commitRepo(join(src, 'repos/absgit'));
    const err = await refused(makefile('gitabs', [...coreLines(), `projects[m][download][url] = ${repo}`, ...payloadAt('modules/m/esc')]), 'BUILD_PATH_ESCAPE');
    expect(err.message).toContain(`project m: link modules/m/esc -> ${jail} points outside`);
  });

  it('a git-style patch creating a link', async () => {
    writeTree(join(src, 'repos/plain'), { 'p.module': '<?php\n' });
    const repo = commitRepo(join(src, 'repos/plain'));
    writeFileSync(join(src, 'link.patch'), symlinkPatch('esc', '../../../..'));
    const err = await refused(
      makefile('patchlink', [...coreLines(), `projects[p][download][url] = ${repo}`, 'projects[p][patch][] = link.patch', ...payloadAt('modules/p/esc/OUT')]),
      'BUILD_PATH_ESCAPE',
    );
    expect(err.message).toMatch(/project p: check modules\/p after its patches: project p: link modules\/p\/esc -> \.\.\/\.\.\/\.\.\/\.\. points outside/);
  });

  it('a top dir link drupal-7.99/up -> .. would become a platform-root link up -> ..', async () => {
    writeTree(join(src, 'stage/up'), { 'drupal-7.99/index.php': '<?php\n', 'drupal-7.99/up': { symlink: '..' } });
    const tgz = packArchive(join(src, 'stage/up'), ['drupal-7.99'], join(src, 'up.tar.gz'), 'tar.gz');
    const err = await refused(makefile('uplink', coreLines(tgz)), 'BUILD_PATH_ESCAPE');
    expect(err.message).toContain('link up -> .. points outside the platform');
  });

  it('links that stay inside are kept, and a destination through one lands where it points', async () => {
    writeTree(join(src, 'stage/inlinks'), {
      'drupal/index.php': '<?php\n',
      'drupal/libraries/README.txt': 'libraries\n',
      'drupal/libs': { symlink: 'libraries' },
      'drupal/core/up': { symlink: '../libraries' },
    });
    const tgz = packArchive(join(src, 'stage/inlinks'), ['drupal'], join(src, 'inlinks.tar.gz'), 'tar.gz');
    const r = await build(
      makefile('inlinks', [
        ...coreLines(tgz),
        ...payloadAt('libs'),
        'libraries[two][download][type] = copy',
        'libraries[two][download][url] = payload',
        'libraries[two][destination] = core/up',
      ]),
    );
    expect(r.err).toBeNull();
    expect(r.outside).toEqual([]);
    const t = join(out, 'inlinks');
    expect(readFileSync(join(t, 'libraries/payload/pwned.txt'), 'utf8')).toBe('pwned\n');
    expect(readFileSync(join(t, 'libraries/two/pwned.txt'), 'utf8')).toBe('pwned\n');
    expect(readlinkSync(join(t, 'libs'))).toBe('libraries');
    expect(lstatSync(join(t, 'libs')).isSymbolicLink()).toBe(true);
  });
});

describe('item 2: local sources come only from allowed directories, never the state dir', () => {
  it('a file download of the CA key in the state dir is refused at add and at build, even when its parent is allowed', async () => {
    const req = makefile('cakey', [...coreLines(), 'libraries[k][download][type] = file', `libraries[k][download][url] = ${join(stateDir, 'pki/ca.key')}`]);
    if (req.source.kind !== 'makefile') throw new Error('unreachable');
    await expect(checkMakefileSource(req.source, builder.policy)).rejects.toMatchObject({ code: 'BUILD_SOURCE_NOT_ALLOWED' });
    const err = await refused(req, 'BUILD_SOURCE_NOT_ALLOWED');
    expect(err.message).toContain("is in the master's state directory");
    const wide = new PlatformBuilder({ env, log: silentLogger(), stateDir, sourceDirs: [jail] });
    await refused(req, 'BUILD_SOURCE_NOT_ALLOWED', wide);
    // Through a link in the makefile's directory: the real path decides.
    symlinkSync(join(stateDir, 'pki/ca.key'), join(src, 'innocent.txt'));
    await refused(
      makefile('cakeylink', [...coreLines(), 'libraries[k][download][type] = file', 'libraries[k][download][url] = innocent.txt']),
      'BUILD_SOURCE_NOT_ALLOWED',
    );
  });

  it('includes[] = /etc/shadow and an include outside the makefile directory are refused before they are read', async () => {
    for (const inc of ['/etc/shadow', join(jail, 'outside/inc.make')]) {
      const req = makefile('inc', [`includes[] = ${inc}`, ...coreLines()]);
      if (req.source.kind !== 'makefile') throw new Error('unreachable');
      await expect(checkMakefileSource(req.source, builder.policy)).rejects.toMatchObject({ code: 'BUILD_SOURCE_NOT_ALLOWED' });
      const err = await refused(req, 'BUILD_SOURCE_NOT_ALLOWED');
      expect(err.message).toContain(`${inc} is outside the directories builds may read (${src})`);
    }
  });

  it('a file, copy, patch or local git repository outside the makefile directory is refused', async () => {
    const repo = commitRepo(join(jail, 'outside'));
    const cases: [string, string[]][] = [
      ['file', ['libraries[s][download][type] = file', `libraries[s][download][url] = ${join(jail, 'outside/secret.txt')}`]],
      ['fileurl', ['libraries[s][download][type] = file', `libraries[s][download][url] = file://${join(jail, 'outside/secret.txt')}`]],
      ['copy', ['libraries[s][download][type] = copy', 'libraries[s][download][url] = ../outside']],
      [
        'patch',
        ['libraries[s][download][type] = copy', 'libraries[s][download][url] = payload', `libraries[s][patch][] = ${join(jail, 'outside/secret.txt')}`],
      ],
      ['git', [`projects[s][download][url] = ${repo}`]],
      ['gitfile', [`projects[s][download][url] = file://${repo}`]],
    ];
    for (const [name, lines] of cases) {
      const err = await refused(makefile(`out-${name}`, [...coreLines(), ...lines]), 'BUILD_SOURCE_NOT_ALLOWED');
      expect(err.message, name).toContain('is outside the directories builds may read');
    }
  });

  it('a nested makefile inside a downloaded project may not reach outside either (patch, include, file)', async () => {
    const nested: [string, string][] = [
      ['patch', `projects[p][patch][] = ${join(jail, 'outside/secret.txt')}`],
      ['include', `includes[] = ${join(jail, 'outside/inc.make')}`],
      ['file', `libraries[s][download][type] = file\nlibraries[s][download][url] = ${join(stateDir, 'pki/ca.key')}`],
    ];
    for (const [name, line] of nested) {
      writeTree(join(src, `repos/nest-${name}`), {
        'n.module': '<?php\n',
        [`nest${name}.make`]: `api = 2\nprojects[p][download][type] = copy\nprojects[p][download][url] = .\n${line}\n`,
      });
      const repo = commitRepo(join(src, `repos/nest-${name}`));
      const err = await refused(makefile(`nest-${name}`, [...coreLines(), `projects[nest${name}][download][url] = ${repo}`]), 'BUILD_SOURCE_NOT_ALLOWED');
      expect(err.message, name).toMatch(/(is outside the directories builds may read|is in the master's state directory)/);
    }
  });

  it('--build-source-dir replaces the default: the listed directory is allowed, the makefile directory no longer is', async () => {
    const extra = new PlatformBuilder({ env, log: silentLogger(), stateDir, sourceDirs: [join(jail, 'outside'), join(src, 'stage')] });
    const core = packArchive(join(src, 'stage/core8'), ['drupal-10.1.0'], join(src, 'stage/core8-again.tar.gz'), 'tar.gz');
    const ok = await build(
      makefile('allowed', [...coreLines(core), 'libraries[s][download][type] = file', `libraries[s][download][url] = ${join(jail, 'outside/secret.txt')}`]),
      extra,
    );
    expect(ok.err).toBeNull();
    expect(readFileSync(join(out, 'allowed/libraries/s/secret.txt'), 'utf8')).toBe('not for the web\n');
    await refused(makefile('notallowed', coreLines()), 'BUILD_SOURCE_NOT_ALLOWED', extra);
  });
});

describe('item 3: no tool ever waits for input', () => {
  it('a zip with a duplicate entry name is refused at once instead of hanging on "replace?"', async () => {
    writeFileSync(
      join(src, 'dup.zip'),
      rawZip([
        { name: 'lib/a.txt', body: 'one' },
        { name: 'lib/a.txt', body: 'two' },
      ]),
    );
    const err = await refused(
      makefile('dupzip', [...coreLines(), 'libraries[d][download][type] = file', 'libraries[d][download][url] = dup.zip']),
      'ARCHIVE_UNSAFE',
    );
    expect(err.message).toContain('"lib/a.txt" appears twice in the archive');
  });
});

describe('item 4: every archive format extracts, small and large', () => {
  const big = randomBytes(1024 * 1024 + 17);
  writeTree(join(src, 'stage/small'), { 'lib/tiny.txt': 'tiny\n' });
  writeTree(join(src, 'stage/large'), {
    'lib/big.bin': big,
    ...Object.fromEntries(Array.from({ length: 300 }, (_, i) => [`lib/many/f${i}.txt`, `file ${i}\n`])),
  });
  for (const format of ARCHIVE_FORMATS) {
    it(`${format}: a 5-byte file and a 1 MiB file with 300 others`, async () => {
      const lines = [...coreLines()];
      for (const size of ['small', 'large']) {
        const file = packArchive(join(src, 'stage', size), ['lib'], join(src, `${size}-${format.replace('.', '-')}.${format}`), format);
        lines.push(`libraries[${size}][download][type] = file`, `libraries[${size}][download][url] = ${file}`);
      }
      const name = `fmt-${format.replace('.', '-')}`;
      const r = await build(makefile(name, lines));
      expect(r.err).toBeNull();
      expect(r.outside).toEqual([]);
      expect(readFileSync(join(out, name, 'libraries/small/tiny.txt'), 'utf8')).toBe('tiny\n');
      expect(readFileSync(join(out, name, 'libraries/large/big.bin')).equals(big)).toBe(true);
      expect(readdirSync(join(out, name, 'libraries/large/many'))).toHaveLength(300);
    });
  }
});

describe('item 5: limits on bytes, entries and expansion per build', () => {
  const small = new PlatformBuilder({ env, log: silentLogger(), stateDir, limits: { maxBytes: 2 * 1024 * 1024, maxEntries: 100, maxRatio: 10 } });
  writeTree(join(src, 'stage/zeros'), { 'bomb/zeros.bin': Buffer.alloc(8 * 1024 * 1024) });
  writeTree(join(src, 'stage/random'), { 'big/random.bin': randomBytes(3 * 1024 * 1024) });
  writeTree(join(src, 'stage/many/many'), Object.fromEntries(Array.from({ length: 150 }, (_, i) => [`f${i}.txt`, 'x'])));
  const lib = (url: string, type = 'file') => [...coreLines(), `libraries[l][download][type] = ${type}`, `libraries[l][download][url] = ${url}`];

  it('an archive expanding more than --build-max-ratio times its size (tar.gz, tar.xz, zip)', async () => {
    for (const format of ['tar.gz', 'tar.xz', 'zip'] as const) {
      const file = packArchive(join(src, 'stage/zeros'), ['bomb'], join(src, `bomb.${format}`), format);
      const err = await refused(makefile(`ratio-${format.replace('.', '-')}`, lib(file)), 'BUILD_LIMIT_EXCEEDED', small);
      expect(err.message, format).toMatch(/library l: .*expands to more than 10 times its size \(limit --build-max-ratio 10\)/);
    }
  });

  it('a build holding more than --build-max-bytes', async () => {
    const file = packArchive(join(src, 'stage/random'), ['big'], join(src, 'random.tar'), 'tar');
    const err = await refused(makefile('bytes', lib(file)), 'BUILD_LIMIT_EXCEEDED', small);
    expect(err.message).toContain('the build would hold more than 2.0 MiB (limit --build-max-bytes 2097152)');
  });

  it('more than --build-max-entries from an archive, a git repository or a copy', async () => {
    const tgz = packArchive(join(src, 'stage/many'), ['many'], join(src, 'many.tar.gz'), 'tar.gz');
    const repo = commitRepo(join(src, 'stage/many/many'));
    for (const [name, lines] of [
      ['entries-tar', lib(tgz)],
      ['entries-git', [...coreLines(), `projects[m][download][url] = ${repo}`]],
      ['entries-copy', lib('stage/many/many', 'copy')],
    ] as const) {
      const err = await refused(makefile(name, [...lines]), 'BUILD_LIMIT_EXCEEDED', small);
      expect(err.message, name).toContain('files, directories and links (limit --build-max-entries 100)');
    }
  });
});

describe('item 10: staging dirs of interrupted builds are swept', () => {
  it('sweepInterrupted removes every .spoke-build-<name>-<8 hex> directory in the given parents, and nothing else', async () => {
    const parent = join(dir, 'sweep');
    mkdirSync(join(parent, '.spoke-build-d7-0123abcd/tree/sites'), { recursive: true });
    mkdirSync(join(parent, '.spoke-build-other-name-89abcdef'), { recursive: true });
    mkdirSync(join(parent, '.spoke-build-keep-notahex'), { recursive: true });
    writeFileSync(join(parent, '.spoke-build-file-0123abcd'), 'a file, not a staging dir');
    mkdirSync(join(parent, 'd7'), { recursive: true });
    symlinkSync(join(parent, 'd7'), join(parent, '.spoke-build-link-0123abcd'));
    const removed = await builder.sweepInterrupted([parent, parent, join(dir, 'missing')]);
    expect(removed.sort()).toEqual([join(parent, '.spoke-build-d7-0123abcd'), join(parent, '.spoke-build-other-name-89abcdef')]);
    expect(readdirSync(parent).sort()).toEqual(['.spoke-build-file-0123abcd', '.spoke-build-keep-notahex', '.spoke-build-link-0123abcd', 'd7']);
  });
});
