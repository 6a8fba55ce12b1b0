import { linkSync, lstatSync, mkdirSync, mkdtempSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeEach, describe, expect, it } from 'vitest';
import { describeUserFiles, giveUserFilesToWebServer, type UserFilesOwner } from './siteowner.js';

const base = mkdtempSync(join(tmpdir(), 'spoke-siteowner-'));
afterAll(() => rmSync(base, { recursive: true, force: true }));
const ROOT = process.getuid?.() === 0;
const gid = process.getgid?.() ?? 0;
let seq = 0;
let dir: string;
let root: string;
let owner: UserFilesOwner;

// As root the files go to uid/gid 4242 ("web"); otherwise to this process's own group.
const WEB_UID = ROOT ? 4242 : (process.getuid?.() ?? 0);
const WEB_GID = ROOT ? 4242 : gid;

beforeEach(() => {
  dir = join(base, `case${seq++}`);
  root = join(dir, 'platform');
  mkdirSync(root, { recursive: true });
  writeFileSync(join(dir, 'passwd'), `root:x:0:0::/root:/bin/sh\nweb:x:${WEB_UID}:${WEB_GID}::/var/www:/bin/sh\n`);
  writeFileSync(join(dir, 'group'), `root:x:0:\nweb:x:${WEB_GID}:\n`);
  owner = { user: 'web', webGroup: 'web', passwdFile: join(dir, 'passwd'), groupFile: join(dir, 'group') };
});

const st = (rel: string) => lstatSync(join(root, rel));
const mode = (rel: string) => st(rel).mode & 0o7777;

/** sites/a.test/files with a nested dir and files, and private/, as an unpack leaves them (0755/0644). */
function tree(): void {
  mkdirSync(join(root, 'sites/a.test/files/2026/12'), { recursive: true, mode: 0o755 });
  mkdirSync(join(root, 'sites/a.test/private'), { mode: 0o700 });
  writeFileSync(join(root, 'sites/a.test/files/2026/12/photo.jpg'), 'jpg', { mode: 0o644 });
  writeFileSync(join(root, 'sites/a.test/private/secret.txt'), 's', { mode: 0o600 });
  writeFileSync(join(root, 'sites/a.test/settings.php'), '<?php\n', { mode: 0o640 });
}

describe('giveUserFilesToWebServer', () => {
  it('gives every entry under files/ and private/ the web user and group, g+rw (dirs g+rwxs); a second run changes nothing', async () => {
    tree();
    const r = await giveUserFilesToWebServer(root, 'a.test', { ...owner, isRoot: () => ROOT });
    expect(r.problems).toEqual([]);
    expect([r.checked, r.changed]).toEqual([6, 6]);
    for (const rel of ['files', 'files/2026', 'files/2026/12', 'private', 'private/secret.txt', 'files/2026/12/photo.jpg']) {
      expect([rel, st(`sites/a.test/${rel}`).uid, st(`sites/a.test/${rel}`).gid]).toEqual([rel, WEB_UID, WEB_GID]);
    }
    expect(mode('sites/a.test/files/2026/12')).toBe(0o2775);
    expect(mode('sites/a.test/private')).toBe(0o2770);
    expect(mode('sites/a.test/files/2026/12/photo.jpg')).toBe(0o664);
    expect(mode('sites/a.test/private/secret.txt')).toBe(0o660);
    // outside files/ and private/: untouched
    expect(mode('sites/a.test/settings.php')).toBe(0o640);
    expect(describeUserFiles('a.test', r)).toBe('sites/a.test/files, private: 6 of 6 entries given to web:web (group-writable)');
    const again = await giveUserFilesToWebServer(root, 'a.test', { ...owner, isRoot: () => ROOT });
    expect([again.checked, again.changed, again.problems]).toEqual([6, 0, []]);
  });

  it('never follows a symlink: a link to a file or dir outside keeps its target as it was', async () => {
    tree();
    const outside = join(dir, 'outside');
    mkdirSync(outside);
    writeFileSync(join(outside, 'victim'), 'v', { mode: 0o600 });
    symlinkSync(join(outside, 'victim'), join(root, 'sites/a.test/files/link-file'));
    symlinkSync(outside, join(root, 'sites/a.test/files/link-dir'));
    const before = [statSync(join(outside, 'victim')), statSync(outside)].map((s) => [s.uid, s.gid, s.mode]);
    const r = await giveUserFilesToWebServer(root, 'a.test', { ...owner, isRoot: () => ROOT });
    expect(r.problems).toEqual([]);
    expect([statSync(join(outside, 'victim')), statSync(outside)].map((s) => [s.uid, s.gid, s.mode])).toEqual(before);
    expect(r.checked).toBe(8);
  });

  it('a repair leaves a hard-linked file as it is (it may be a file outside the site); an unpack trusts its own links', async () => {
    tree();
    const outside = join(dir, 'shadow');
    writeFileSync(outside, 'x', { mode: 0o600 });
    linkSync(outside, join(root, 'sites/a.test/files/hard'));
    const r = await giveUserFilesToWebServer(root, 'a.test', { ...owner, isRoot: () => ROOT });
    expect(r.problems).toEqual(['sites/a.test/files/hard: has 2 hard links; left as it is (a link could reach a file outside the site)']);
    expect(mode(`../shadow`)).toBe(0o600);
    const u = await giveUserFilesToWebServer(root, 'a.test', { ...owner, isRoot: () => ROOT }, { trustHardlinks: true });
    expect([u.changed, u.problems]).toEqual([1, []]);
    expect(statSync(outside).mode & 0o7777).toBe(0o660);
  });

  it('a site dir that is a symlink is not walked; missing parts and a missing site are fine', async () => {
    expect(await giveUserFilesToWebServer(root, 'none.test', owner)).toEqual({ checked: 0, changed: 0, owner: ROOT ? 'web:web' : ':web', problems: [] });
    mkdirSync(join(dir, 'elsewhere/files'), { recursive: true });
    mkdirSync(join(root, 'sites'));
    symlinkSync(join(dir, 'elsewhere'), join(root, 'sites/l.test'));
    const before = statSync(join(dir, 'elsewhere/files')).mode;
    const r = await giveUserFilesToWebServer(root, 'l.test', { ...owner, isRoot: () => ROOT });
    expect(r.problems).toEqual(['sites/l.test: is not a directory inside the platform (a symlink?); its files were left as they are']);
    expect(statSync(join(dir, 'elsewhere/files')).mode).toBe(before);
  });

  it('when the agent is not root, owners are left and only group and modes change', async () => {
    tree();
    const uid = st('sites/a.test/files').uid;
    const r = await giveUserFilesToWebServer(root, 'a.test', { ...owner, isRoot: () => false });
    expect(r.owner).toBe(':web');
    expect(st('sites/a.test/files/2026/12/photo.jpg').uid).toBe(uid);
    expect(st('sites/a.test/files/2026/12/photo.jpg').gid).toBe(WEB_GID);
    expect(mode('sites/a.test/files/2026/12/photo.jpg')).toBe(0o664);
  });

  it('an unknown web group or php.user is one problem line, and nothing changes', async () => {
    tree();
    const r = await giveUserFilesToWebServer(root, 'a.test', { ...owner, webGroup: 'nogroup-here', isRoot: () => ROOT });
    expect(r.problems).toEqual([
      'web group nogroup-here does not exist on this host; sites/a.test/files left as they are (create it, or set http.webGroup in agent.json)',
    ]);
    expect(mode('sites/a.test/files/2026/12/photo.jpg')).toBe(0o644);
    if (!ROOT) return;
    const u = await giveUserFilesToWebServer(root, 'a.test', { ...owner, user: 'nobody-here', isRoot: () => true });
    expect(u.problems[0]).toBe(
      "php.user nobody-here does not exist on this host; owners under sites/a.test/files left as they are (set php.user in agent.json to php-fpm's pool user)",
    );
    expect(st('sites/a.test/files/2026/12/photo.jpg').uid).toBe(0);
  });
});
