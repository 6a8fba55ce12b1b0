/**
 * The build's file system guards on their own: resolving inside a root without following a link
 * out, the link scan, the source policy and the limits.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, lstatSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { BuildBudget, checkBuiltTree, countTree, placeInside, resolveDirInside, SourcePolicy } from './buildfs.js';
import { writeTree } from './registry/testTree.js';

const dir = mkdtempSync(join(tmpdir(), 'spoke-buildfs-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

let n = 0;
/** A fresh root inside a fresh outer dir (so `outer` is what an escape would reach). */
function fresh(spec: Parameters<typeof writeTree>[1] = {}): { outer: string; root: string } {
  const outer = join(dir, `case${++n}`);
  const root = join(outer, 'root');
  mkdirSync(root, { recursive: true });
  writeTree(root, spec);
  return { outer, root };
}

describe('resolveDirInside', () => {
  it('creates missing directories and returns the real path', async () => {
    const { root } = fresh();
    expect(await resolveDirInside(root, 'a/b/c')).toBe(join(root, 'a/b/c'));
    expect(lstatSync(join(root, 'a/b/c')).isDirectory()).toBe(true);
    expect(await resolveDirInside(root, '')).toBe(root);
  });

  it('follows relative links that stay inside, including chains and .. within the root', async () => {
    const { root } = fresh({ 'real/x/keep.txt': 'k', l1: { symlink: 'l2' }, l2: { symlink: 'real/x' }, 'real/up': { symlink: '../real' } });
    expect(await resolveDirInside(root, 'l1/new')).toBe(join(root, 'real/x/new'));
    expect(await resolveDirInside(root, 'real/up/x')).toBe(join(root, 'real/x'));
    expect(await resolveDirInside(root, 'dangling-free/../real')).toBe(join(root, 'real'));
  });

  it('refuses a link that climbs above the root, an absolute link, and a loop, creating nothing outside', async () => {
    const { outer, root } = fresh({
      up: { symlink: '..' },
      'a/deep': { symlink: '../../..' },
      abs: { symlink: '/tmp' },
      loop1: { symlink: 'loop2' },
      loop2: { symlink: 'loop1' },
    });
    await expect(resolveDirInside(root, 'up/OUT')).rejects.toMatchObject({ code: 'BUILD_PATH_ESCAPE' });
    await expect(resolveDirInside(root, 'a/deep/OUT')).rejects.toMatchObject({ code: 'BUILD_PATH_ESCAPE' });
    await expect(resolveDirInside(root, 'abs/OUT')).rejects.toMatchObject({
      code: 'BUILD_PATH_ESCAPE',
      message: 'abs/OUT: abs is a link to /tmp, outside the platform',
    });
    await expect(resolveDirInside(root, 'loop1/x')).rejects.toMatchObject({ code: 'BUILD_PATH_ESCAPE' });
    await expect(resolveDirInside(root, '../x')).rejects.toMatchObject({ code: 'BUILD_PATH_ESCAPE' });
    expect(existsSync(join(outer, 'OUT'))).toBe(false);
    expect(existsSync(join(outer, 'x'))).toBe(false);
    expect(existsSync('/tmp/OUT')).toBe(false);
  });

  it('refuses a file on the way, and a missing component without create', async () => {
    const { root } = fresh({ f: 'file' });
    await expect(resolveDirInside(root, 'f/x')).rejects.toMatchObject({ code: 'PLATFORM_BUILD_FAILED', message: 'f/x: f is a file, not a directory' });
    await expect(resolveDirInside(root, 'nope/x', { create: false })).rejects.toMatchObject({
      code: 'PLATFORM_BUILD_FAILED',
      message: 'nope/x: nope does not exist',
    });
    expect(existsSync(join(root, 'nope'))).toBe(false);
  });
});

describe('placeInside', () => {
  it("resolves the parent but not the last name (a link there is the caller's to replace)", async () => {
    const { root } = fresh({ 'lib/x': { symlink: '/etc' }, libs: { symlink: 'lib' } });
    expect(await placeInside(root, 'libs/x')).toBe(join(root, 'lib/x'));
    expect(await placeInside(root, '')).toBe(root);
    await expect(placeInside(root, 'lib/x/y')).rejects.toMatchObject({ code: 'BUILD_PATH_ESCAPE' });
  });
});

describe('checkBuiltTree', () => {
  it('counts entries and bytes and keeps links that stay inside the root', async () => {
    const { root } = fresh({ 'a/f.txt': 'abc', 'a/l': { symlink: '../b' }, 'b/g.txt': 'de', 'b/dangling': { symlink: 'nothing-here' } });
    expect(await checkBuiltTree(root, root, 'core')).toEqual({ entries: 6, bytes: 5 });
    expect(await checkBuiltTree(root, join(root, 'a'), 'core')).toEqual({ entries: 3, bytes: 3 }); // a itself, f.txt, l
  });

  it('refuses, relative to the platform root, a link that leaves it, wherever the scan starts', async () => {
    const { root } = fresh({ 'lib/x/l': { symlink: '../../..' } });
    await expect(checkBuiltTree(root, join(root, 'lib/x'), 'library x')).rejects.toMatchObject({
      code: 'BUILD_PATH_ESCAPE',
      message: expect.stringMatching(/^library x: link lib\/x\/l -> \.\.\/\.\.\/\.\. points outside the platform/),
    });
    const abs = fresh({ l: { symlink: join(dir, 'whatever') } });
    await expect(checkBuiltTree(abs.root, abs.root, 'core')).rejects.toMatchObject({ code: 'BUILD_PATH_ESCAPE' });
  });

  it('refuses a FIFO and a setuid file', async () => {
    const { root } = fresh({ 'ok.txt': 'x' });
    execFileSync('mkfifo', [join(root, 'pipe')]);
    await expect(checkBuiltTree(root, root, 'copy')).rejects.toMatchObject({
      code: 'PLATFORM_BUILD_FAILED',
      message: 'copy: pipe is not a file, directory or symlink (a device, FIFO or socket)',
    });
    const s = fresh({ 'suid.sh': '#!/bin/sh\n' });
    execFileSync('chmod', ['4755', join(s.root, 'suid.sh')]);
    await expect(checkBuiltTree(s.root, s.root, 'copy')).rejects.toMatchObject({ code: 'PLATFORM_BUILD_FAILED' });
  });

  it('countTree counts without judging links', async () => {
    const { root } = fresh({ 'a/f.txt': 'abc', out: { symlink: '/etc' } });
    expect(await countTree(root)).toEqual({ entries: 3, bytes: 3 });
  });
});

describe('SourcePolicy', () => {
  const base = fresh({
    'make/a.tar': 'a',
    'make/sub/b.patch': 'b',
    'other/c.tar': 'c',
    'state/pki/ca.key': 'k',
    'make/state-link': { symlink: '../state/pki/ca.key' },
  });
  const make = join(base.root, 'make');

  it('defaults to the makefile directory tree, compares real paths, and never allows the state dir', async () => {
    const p = new SourcePolicy([], [join(base.root, 'state')]);
    const roots = p.roots(make);
    expect(roots).toEqual([make]);
    await expect(p.check(join(make, 'a.tar'), roots, 'x')).resolves.toBe(join(make, 'a.tar'));
    await expect(p.check(join(make, 'sub/../sub/b.patch'), roots, 'x')).resolves.toBe(join(make, 'sub/b.patch'));
    await expect(p.check(join(make, 'missing.tar'), roots, 'x')).resolves.toBe(join(make, 'missing.tar'));
    await expect(p.check(join(base.root, 'other/c.tar'), roots, 'x')).rejects.toMatchObject({ code: 'BUILD_SOURCE_NOT_ALLOWED' });
    await expect(p.check(join(make, 'state-link'), roots, 'x')).rejects.toMatchObject({
      code: 'BUILD_SOURCE_NOT_ALLOWED',
      message: expect.stringContaining("master's state directory"),
    });
    await expect(p.check(`${make}-sibling/a.tar`, roots, 'x')).rejects.toMatchObject({ code: 'BUILD_SOURCE_NOT_ALLOWED' });
  });

  it('an explicit list replaces the default; extra roots are added; the state dir still loses', async () => {
    const p = new SourcePolicy([join(base.root, 'other'), base.root], [join(base.root, 'state')]);
    const roots = p.roots(make, ['/srv/extra']);
    expect(roots).toEqual([join(base.root, 'other'), base.root, '/srv/extra']);
    await expect(p.check(join(base.root, 'other/c.tar'), roots, 'x')).resolves.toBe(join(base.root, 'other/c.tar'));
    await expect(p.check(join(base.root, 'state/pki/ca.key'), roots, 'x')).rejects.toMatchObject({ code: 'BUILD_SOURCE_NOT_ALLOWED' });
    const none = new SourcePolicy([], []);
    await expect(none.check('/etc/passwd', none.roots(null), 'x')).rejects.toMatchObject({
      code: 'BUILD_SOURCE_NOT_ALLOWED',
      message: expect.stringContaining('nowhere'),
    });
  });
});

describe('BuildBudget', () => {
  it('counts what was placed and names the limit it would pass', () => {
    const b = new BuildBudget({ maxBytes: 1000, maxEntries: 10, maxRatio: 5 });
    b.add({ entries: 4, bytes: 600 }, 'core');
    expect(() => b.add({ entries: 1, bytes: 500 }, 'library x')).toThrow(/^library x: the build would hold more than 1000 B \(limit --build-max-bytes 1000\)$/);
    const c = new BuildBudget({ maxBytes: 1e9, maxEntries: 10, maxRatio: 5 });
    c.add({ entries: 8, bytes: 1 }, 'core');
    expect(() => c.fits({ entries: 3, bytes: 0 }, 'copy')).toThrow(/limit --build-max-entries 10/);
    c.replace({ entries: 8, bytes: 1 }, { entries: 9, bytes: 1 }, 'core');
    expect(c.entries).toBe(9);
  });

  it('holds an archive to its ratio above the 1 MiB floor, and to what the build has left', () => {
    const b = new BuildBudget({ maxBytes: 100 * 1024 * 1024, maxEntries: 1000, maxRatio: 10 });
    const tiny = b.archive(100, 'a.tar.gz');
    expect(() => tiny(1024 * 1024, 1)).not.toThrow();
    expect(() => tiny(1024 * 1024 + 1, 1)).toThrow(/expands to more than 10 times its size \(limit --build-max-ratio 10\)/);
    const big = b.archive(2 * 1024 * 1024, 'b.zip');
    expect(() => big(20 * 1024 * 1024, 1)).not.toThrow();
    expect(() => big(20 * 1024 * 1024 + 1, 1)).toThrow(/--build-max-ratio/);
    b.add({ entries: 999, bytes: 0 }, 'core');
    expect(() => big(1, 2)).toThrow(/--build-max-entries 1000/);
  });
});
