import { chmodSync, mkdirSync, mkdtempSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeEach, describe, expect, it } from 'vitest';
import { fixSitesPermissions, lookupGroup } from './sitesperms.js';

const base = mkdtempSync(join(tmpdir(), 'spoke-sitesperms-'));
afterAll(() => rmSync(base, { recursive: true, force: true }));

const gid = process.getgid?.() ?? 0;
let seq = 0;
let root: string;
let groupFile: string;

beforeEach(() => {
  const dir = join(base, `case${seq++}`);
  root = join(dir, 'platform');
  // "web" is a group this process belongs to, so the test needs no root.
  groupFile = join(dir, 'group');
  mkdirSync(dir, { recursive: true });
  writeFileSync(groupFile, `root:x:0:\nweb:x:${gid}:\nother:x:4242:\n`);
});

const mode = (rel: string) => statSync(join(root, rel)).mode & 0o7777;

describe('lookupGroup', () => {
  it('finds names and numeric ids; unknown names are undefined', async () => {
    expect(await lookupGroup('web', groupFile)).toBe(gid);
    expect(await lookupGroup('4242', groupFile)).toBe(4242);
    expect(await lookupGroup('www-nobody', groupFile)).toBeUndefined();
  });
});

describe('fixSitesPermissions', () => {
  it('makes sites/ group-writable and files/private setgid group-writable; a second run changes nothing', async () => {
    for (const d of ['sites/default/files/styles', 'sites/default/private', 'sites/all/modules', 'sites/example.com/files'])
      mkdirSync(join(root, d), { recursive: true });
    for (const d of ['sites', 'sites/default/files', 'sites/default/private', 'sites/example.com/files']) chmodSync(join(root, d), 0o755);
    writeFileSync(join(root, 'sites/default/settings.php'), '<?php\n');
    chmodSync(join(root, 'sites/default/settings.php'), 0o440);
    const r = await fixSitesPermissions(root, 'web', { groupFile });
    expect(r.problems).toEqual([]);
    expect(r.fixed).toEqual([
      'sites: mode 0755 → 0775',
      'sites/default/files: mode 0755 → 2775',
      'sites/default/private: mode 0755 → 2775',
      'sites/example.com/files: mode 0755 → 2775',
    ]);
    expect(mode('sites')).toBe(0o775);
    expect(mode('sites/default/files')).toBe(0o2775);
    // not touched: the site dir, its settings, subdirs of files, other code dirs
    expect(mode('sites/default/settings.php')).toBe(0o440);
    expect(mode('sites/default/files/styles') & 0o2000).toBe(0);
    expect(mode('sites/all/modules') & 0o7777).not.toBe(0o2775);
    expect(await fixSitesPermissions(root, 'web', { groupFile })).toEqual({ fixed: [], problems: [] });
  });

  it('changes the group when it differs, and reports what it may not change', async () => {
    mkdirSync(join(root, 'sites/default/files'), { recursive: true });
    const calls: number[] = [];
    const r = await fixSitesPermissions(root, 'other', {
      groupFile,
      chgrp: async (_fd, g) => {
        calls.push(g);
        throw Object.assign(new Error('operation not permitted'), { code: 'EPERM' });
      },
    });
    expect(calls).toEqual([4242, 4242]);
    expect(r.problems).toEqual([
      `sites: cannot change its group to other (EPERM); run: chgrp other ${join(root, 'sites')}`,
      `sites/default/files: cannot change its group to other (EPERM); run: chgrp other ${join(root, 'sites/default/files')}`,
    ]);
    // the mode is still fixed
    expect(mode('sites/default/files') & 0o2070).toBe(0o2070);
  });

  it('a web group that does not exist is reported, nothing changes', async () => {
    mkdirSync(join(root, 'sites/default/files'), { recursive: true });
    chmodSync(join(root, 'sites'), 0o755);
    const r = await fixSitesPermissions(root, 'www-nobody', { groupFile });
    expect(r.fixed).toEqual([]);
    expect(r.problems).toEqual([
      'web group www-nobody does not exist on this host; sites/ permissions left as they are (create it, or set http.webGroup in agent.json)',
    ]);
    expect(mode('sites')).toBe(0o755);
  });

  it('never follows a symlink: a files dir pointing elsewhere is reported and left alone', async () => {
    const outside = join(root, '..', 'outside');
    mkdirSync(outside, { recursive: true });
    chmodSync(outside, 0o700);
    mkdirSync(join(root, 'sites/evil'), { recursive: true });
    symlinkSync(outside, join(root, 'sites/evil/files'));
    mkdirSync(join(root, 'sites', 'linked-site-target', 'files'), { recursive: true });
    symlinkSync(outside, join(root, 'sites/linked'));
    const r = await fixSitesPermissions(root, 'web', { groupFile });
    expect(r.problems).toEqual(['sites/evil/files: is not a directory (a symlink or file); left as it is']);
    expect(statSync(outside).mode & 0o7777).toBe(0o700);
  });

  it('a platform without sites/ (WordPress, generic) needs nothing; a sites file is a problem', async () => {
    mkdirSync(root, { recursive: true });
    expect(await fixSitesPermissions(root, 'web', { groupFile })).toEqual({ fixed: [], problems: [] });
    writeFileSync(join(root, 'sites'), 'not a dir');
    expect((await fixSitesPermissions(root, 'web', { groupFile })).problems).toEqual([
      'sites: is not a directory (a file); the web server cannot write site files there',
    ]);
  });
});
