/**
 * A site's files dirs and settings files on a web server, on a real filesystem: created with the
 * web group, never through a symlink, removed without following links.
 */
import { chmodSync, existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeEach, describe, expect, it } from 'vitest';
import { isSpokeError } from '@spoke/shared';
import { checkRelativePath, deleteSiteFiles, ensureSiteDirs, giveToWebGroup } from './sitefiles.js';

const base = mkdtempSync(join(tmpdir(), 'spoke-sitefiles-'));
afterAll(() => rmSync(base, { recursive: true, force: true }));

const ROOT_USER = process.getuid?.() === 0;
/** A group this process may give files to: www-data as root, else our own. */
function groupOf(gid: number): string {
  const line = readFileSync('/etc/group', 'utf8')
    .split('\n')
    .find((l) => l.split(':')[2] === String(gid));
  return line?.split(':')[0] ?? String(gid);
}
const WEB_GROUP = ROOT_USER && readFileSync('/etc/group', 'utf8').includes('\nwww-data:') ? 'www-data' : groupOf(process.getgid?.() ?? 0);
const WEB_GID = Number(
  readFileSync('/etc/group', 'utf8')
    .split('\n')
    .find((l) => l.split(':')[0] === WEB_GROUP)
    ?.split(':')[2],
);

let seq = 0;
let dir: string;
let root: string;
let outside: string;

beforeEach(() => {
  dir = join(base, `case${seq++}`);
  root = join(dir, 'platform');
  outside = join(dir, 'outside');
  mkdirSync(join(root, 'sites/site.test'), { recursive: true });
  mkdirSync(outside, { recursive: true, mode: 0o755 });
  chmodSync(outside, 0o755);
  writeFileSync(join(outside, 'keep.txt'), 'keep\n');
});

/** What the outside dir looks like: names, modes, groups. */
function snapshot(path: string): string {
  return readdirSync(path)
    .sort()
    .map((n) => {
      const st = lstatSync(join(path, n));
      return `${n}:${(st.mode & 0o7777).toString(8)}:${st.gid}`;
    })
    .concat(`.:${(statSync(path).mode & 0o7777).toString(8)}:${statSync(path).gid}`)
    .join(',');
}

describe('ensureSiteDirs', () => {
  it('creates files (2775) and private (2770) with the web group; a second run changes nothing', async () => {
    const r = await ensureSiteDirs(root, 'site.test', WEB_GROUP);
    expect(r.problems).toEqual([]);
    expect(r.fixed).toContain('sites/site.test/files: created');
    expect(r.fixed).toContain('sites/site.test/private: created');
    const files = statSync(join(root, 'sites/site.test/files'));
    const priv = statSync(join(root, 'sites/site.test/private'));
    expect([files.mode & 0o7777, files.gid]).toEqual([0o2775, WEB_GID]);
    expect([priv.mode & 0o7777, priv.gid]).toEqual([0o2770, WEB_GID]);
    expect(statSync(join(root, 'sites')).gid).toBe(WEB_GID);
    expect(await ensureSiteDirs(root, 'site.test', WEB_GROUP)).toEqual({ fixed: [], problems: [] });
  });

  it('creates sites/<domain> when the tree has no such dir yet', async () => {
    rmSync(join(root, 'sites'), { recursive: true });
    const r = await ensureSiteDirs(root, 'new.test', WEB_GROUP);
    expect(r.problems).toEqual([]);
    expect(statSync(join(root, 'sites/new.test/files')).isDirectory()).toBe(true);
  });

  it('refuses a symlink in place of files/: nothing is created or changed outside the tree', async () => {
    symlinkSync(outside, join(root, 'sites/site.test/files'));
    const before = snapshot(outside);
    const r = await ensureSiteDirs(root, 'site.test', WEB_GROUP);
    expect(r.problems.join('\n')).toMatch(/sites\/site\.test\/files: is a symlink; sites\/site\.test\/files not created/);
    expect(snapshot(outside)).toBe(before);
    expect(lstatSync(join(root, 'sites/site.test/files')).isSymbolicLink()).toBe(true);
    // private, which is not a link, is still made
    expect(statSync(join(root, 'sites/site.test/private')).mode & 0o7777).toBe(0o2770);
  });

  it('refuses a symlink in place of sites/<domain>: private is not created in its target', async () => {
    rmSync(join(root, 'sites/site.test'), { recursive: true });
    symlinkSync(outside, join(root, 'sites/site.test'));
    const before = snapshot(outside);
    const r = await ensureSiteDirs(root, 'site.test', WEB_GROUP);
    expect(r.problems.filter((p) => /^sites\/site\.test: is a symlink/.test(p))).toHaveLength(2);
    expect(snapshot(outside)).toBe(before);
    expect(existsSync(join(outside, 'files'))).toBe(false);
  });

  it('refuses a hostile domain before touching anything', async () => {
    await expect(ensureSiteDirs(root, '../../etc', WEB_GROUP)).rejects.toMatchObject({ code: 'INVALID_DOMAIN' });
  });

  it('reports a missing platform tree instead of creating it', async () => {
    const r = await ensureSiteDirs(join(dir, 'nope'), 'site.test', WEB_GROUP);
    expect(r.problems[0]).toMatch(/platform tree .*nope does not exist on this host/);
    expect(existsSync(join(dir, 'nope'))).toBe(false);
  });
});

describe('giveToWebGroup', () => {
  it('gives a settings file the web group and mode 0640; a missing file is a problem', async () => {
    writeFileSync(join(root, 'sites/site.test/settings.php'), '<?php\n', { mode: 0o600 });
    const r = await giveToWebGroup(root, ['sites/site.test/settings.php', 'sites/site.test/missing.php'], WEB_GROUP);
    const st = statSync(join(root, 'sites/site.test/settings.php'));
    expect([st.mode & 0o7777, st.gid]).toEqual([0o640, WEB_GID]);
    expect(r.fixed).toContain('sites/site.test/settings.php: mode 0600 → 0640');
    expect(r.problems).toEqual([expect.stringMatching(/^sites\/site\.test\/missing\.php: missing/)]);
  });

  it('does not follow a symlink, neither as the file nor on its path', async () => {
    writeFileSync(join(outside, 'secret.php'), '<?php\n', { mode: 0o600 });
    symlinkSync(join(outside, 'secret.php'), join(root, 'sites/site.test/settings.php'));
    symlinkSync(outside, join(root, 'sites/linked'));
    const before = snapshot(outside);
    const r = await giveToWebGroup(root, ['sites/site.test/settings.php', 'sites/linked/secret.php'], WEB_GROUP);
    expect(r.problems).toEqual([
      'sites/site.test/settings.php: is a symlink; left as it is',
      expect.stringMatching(/^sites\/linked\/secret\.php: changed while being checked/),
    ]);
    expect(snapshot(outside)).toBe(before);
  });

  it('refuses paths that are not relative and normalised', () => {
    for (const bad of ['/etc/passwd', '../x', 'sites/../../x', 'sites//x', './x', '']) {
      let code = 'no error';
      try {
        checkRelativePath(bad);
      } catch (e) {
        if (isSpokeError(e)) code = e.code;
      }
      expect(code, bad).toBe('INVALID_PATH');
    }
  });
});

describe('deleteSiteFiles', () => {
  it('removes files and private with their content; a second run finds nothing to do', async () => {
    mkdirSync(join(root, 'sites/site.test/files/2024'), { recursive: true });
    writeFileSync(join(root, 'sites/site.test/files/2024/a.jpg'), 'x');
    mkdirSync(join(root, 'sites/site.test/private'));
    writeFileSync(join(root, 'sites/site.test/settings.php'), '<?php\n');
    const r = await deleteSiteFiles(root, 'site.test');
    expect(r).toEqual({ deleted: ['sites/site.test/files', 'sites/site.test/private'], problems: [] });
    expect(readdirSync(join(root, 'sites/site.test'))).toEqual(['settings.php']);
    expect(await deleteSiteFiles(root, 'site.test')).toEqual({ deleted: [], problems: [] });
  });

  it('removes a symlinked files/ as a link and a link inside files/ without following either', async () => {
    symlinkSync(outside, join(root, 'sites/site.test/files'));
    mkdirSync(join(root, 'sites/site.test/private'));
    symlinkSync(outside, join(root, 'sites/site.test/private/escape'));
    const before = snapshot(outside);
    const r = await deleteSiteFiles(root, 'site.test');
    // nothing else was in sites/site.test: it goes too
    expect(r.deleted).toEqual(['sites/site.test/files (a symlink: only the link)', 'sites/site.test/private', 'sites/site.test']);
    expect(existsSync(join(root, 'sites/site.test'))).toBe(false);
    expect(snapshot(outside)).toBe(before);
    expect(readFileSync(join(outside, 'keep.txt'), 'utf8')).toBe('keep\n');
  });

  it('stops at a symlink in place of sites/<domain>', async () => {
    rmSync(join(root, 'sites/site.test'), { recursive: true });
    mkdirSync(join(outside, 'files'));
    symlinkSync(outside, join(root, 'sites/site.test'));
    const r = await deleteSiteFiles(root, 'site.test');
    expect(r.deleted).toEqual([]);
    expect(r.problems[0]).toMatch(/sites\/site\.test: is not a directory inside the platform/);
    expect(existsSync(join(outside, 'files'))).toBe(true);
  });
});
