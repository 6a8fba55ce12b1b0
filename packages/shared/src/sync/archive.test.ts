import { mkdir, readdir, readFile, readlink, stat, symlink, writeFile, lstat, chmod } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { isSpokeError } from '../errors.js';
import { checkArchiveEntry, extractArchive, type SafeEntry } from './archive.js';
import { walkTree } from './walk.js';
import { packTree } from './pack.js';
import { chunked, listAll, type RawEntry, tarOf, tempDir } from './testing.js';

let tmp: string;
let outer: string; // stands for "the rest of the filesystem": only dest may ever change in here
let dest: string;
let cleanup: () => Promise<void>;
beforeEach(async () => {
  ({ dir: tmp, cleanup } = await tempDir());
  outer = join(tmp, 'outer');
  dest = join(outer, 'dest');
  await mkdir(dest, { recursive: true });
  await mkdir(join(tmp, 'outside'));
});
afterEach(() => cleanup());

const file = (name: string, body = 'x', mode?: number): RawEntry => ({
  header: { name, type: 'file', ...(mode === undefined ? {} : { mode }) },
  body,
});
const dir = (name: string, mode?: number): RawEntry => ({
  header: { name, type: 'directory', ...(mode === undefined ? {} : { mode }) },
});
const link = (name: string, linkname: string): RawEntry => ({ header: { name, type: 'symlink', linkname } });
const hard = (name: string, linkname: string): RawEntry => ({ header: { name, type: 'link', linkname } });

async function extractRaw(entries: RawEntry[]) {
  return extractArchive(chunked(await tarOf(entries)), dest);
}

describe('extractArchive refuses hostile archives and leaves nothing behind', () => {
  const hostile: Array<[string, () => RawEntry[]]> = [
    ['absolute path', () => [file(join(tmp, 'outside', 'abs'))]],
    ['../x', () => [file('../x')]],
    ['a/../../x', () => [file('a/../../x')]],
    ['backslash traversal', () => [file('a\\..\\..\\x')]],
    ['link -> /etc, then link/passwd', () => [link('link', '/etc'), file('link/spoke-must-not-exist')]],
    ['link -> abs outside dir, then a file through it', () => [link('link', join(tmp, 'outside')), file('link/pwn')]],
    ['link -> inside dir, then a file through it', () => [dir('sub'), link('link', 'sub'), file('link/pwn')]],
    ['link to ../../..', () => [link('a', '../../..')]],
    ['nested link climbing out', () => [dir('d'), link('d/l', '../..')]],
    ['link chain that only lexically stays inside', () => [dir('x'), link('x/l1', '..'), link('l2', 'x/l1/..')]],
    ['character device', () => [{ header: { name: 'tty', type: 'character-device', devmajor: 5, devminor: 0 } }]],
    ['block device', () => [{ header: { name: 'sda', type: 'block-device', devmajor: 8, devminor: 0 } }]],
    ['fifo', () => [{ header: { name: 'pipe', type: 'fifo' } }]],
    ['setuid file', () => [file('ok', 'fine'), file('suid', '#!/bin/sh', 0o4755)]],
    ['setgid dir', () => [dir('g', 0o2775)]],
    ['sticky dir', () => [dir('t', 0o1777)]],
    ['hardlink to outside', () => [hard('h', '../../outside/secret')]],
    ['hardlink to absolute', () => [hard('h', join(tmp, 'outside', 'secret'))]],
    ['hardlink to a path not in the archive', () => [hard('h', 'nothing')]],
    ['hardlink to an in-archive symlink', () => [dir('d'), link('d/l', '../x'), hard('l2', 'd/l')]],
    ['duplicate path (dir then symlink)', () => [dir('a'), dir('b'), link('a', 'b'), file('a/x')]],
    ['duplicate file', () => [file('a', '1'), file('a', '2')]],
    ['file below a file', () => [file('a'), file('a/b')]],
    ['NUL in a pax path', () => [{ header: { name: 'a\u0000b', type: 'file', pax: {} }, body: 'x' }]],
  ];

  it.each(hostile)('%s', async (_name, build) => {
    await writeFile(join(tmp, 'outside', 'secret'), 'secret');
    const before = await listAll(tmp);
    const err = await extractRaw(build()).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(isSpokeError(err, 'ARCHIVE_UNSAFE'), String(err)).toBe(true);
    expect(await readdir(dest)).toEqual([]);
    expect(await listAll(tmp)).toEqual(before);
    expect(await readFile(join(tmp, 'outside', 'secret'), 'utf8')).toBe('secret');
    expect(existsSync('/etc/spoke-must-not-exist')).toBe(false);
  });

  it('refuses a truncated archive as malformed', async () => {
    const tar = await tarOf([file('a', 'x'.repeat(5000))]);
    const err = await extractArchive(chunked(tar.subarray(0, 2048)), dest).catch((e: unknown) => e);
    expect(isSpokeError(err, 'ARCHIVE_UNSAFE')).toBe(true);
    expect(String((err as Error).message)).toMatch(/malformed/);
    expect(await readdir(dest)).toEqual([]);
  });

  it('refuses garbage', async () => {
    const err = await extractArchive(chunked(Buffer.alloc(1024, 0x41)), dest).catch((e: unknown) => e);
    expect(isSpokeError(err, 'ARCHIVE_UNSAFE')).toBe(true);
  });

  it('enforces entry and byte limits before writing', async () => {
    const tar = await tarOf([file('a', '12345'), file('b', '12345')]);
    await expect(extractArchive(chunked(tar), dest, { maxBytes: 9 })).rejects.toThrow(/more than 9 bytes/);
    await expect(extractArchive(chunked(tar), dest, { maxEntries: 1 })).rejects.toThrow(/more than 1 entries/);
    expect(await readdir(dest)).toEqual([]);
  });

  it('asks beforeEntry about each accepted entry before writing it; its refusal leaves nothing', async () => {
    const tar = await tarOf([file('a', '12345'), file('b', '12345')]);
    const seen: string[] = [];
    const limit = new Error("the caller's own limit");
    const beforeEntry = (e: { path: string; size: number }) => {
      seen.push(`${e.path}:${e.size}`);
      if (e.path === 'b') throw limit;
    };
    await expect(extractArchive(chunked(tar), dest, { beforeEntry })).rejects.toBe(limit);
    expect(seen).toEqual(['a:5', 'b:5']);
    expect(await readdir(dest)).toEqual([]);
  });

  it('fails with ARCHIVE_PATH_EXISTS, touching nothing, when a top-level name exists', async () => {
    await writeFile(join(dest, 'b'), 'mine');
    const err = await extractRaw([file('a'), file('b', 'theirs')]).catch((e: unknown) => e);
    expect(isSpokeError(err, 'ARCHIVE_PATH_EXISTS')).toBe(true);
    expect(await readdir(dest)).toEqual(['b']);
    expect(await readFile(join(dest, 'b'), 'utf8')).toBe('mine');
  });

  it('passes errors of the source itself through', async () => {
    const tar = await tarOf([file('a', 'x'.repeat(10_000))]);
    async function* broken() {
      yield tar.subarray(0, 1024);
      throw new Error('connection reset');
    }
    await expect(extractArchive(broken(), dest)).rejects.toThrow(/connection reset/);
    expect(await readdir(dest)).toEqual([]);
  });
});

describe('extractArchive writes good archives', () => {
  it('extracts files, dirs, safe links and hardlinks with modes, reporting each entry', async () => {
    const seen: SafeEntry[] = [];
    const result = await extractArchive(
      chunked(
        await tarOf([
          dir('./'),
          dir('app', 0o750),
          file('app/index.php', '<?php', 0o640),
          file('app/run', '#!/bin/sh', 0o755),
          dir('ro', 0o555),
          file('ro/file', 'r', 0o444),
          file('implicit/parent/f.txt', 'deep'),
          link('app/up', '../implicit'),
          link('current', 'app'),
          hard('app/again.php', 'app/index.php'),
          file('日本/é x.txt', 'ü'),
        ]),
      ),
      dest,
      { onEntry: (e) => seen.push(e) },
    );
    expect(result.topLevel).toEqual(['app', 'current', 'implicit', 'ro', '日本']);
    expect(result.entries).toBe(10);
    expect(seen.map((e) => e.path)).toContain('app/again.php');
    const mode = async (p: string) => (await stat(join(dest, p))).mode & 0o7777;
    expect(await mode('app')).toBe(0o750);
    expect(await mode('app/index.php')).toBe(0o640);
    expect(await mode('app/run')).toBe(0o755);
    expect(await mode('ro')).toBe(0o555);
    expect(await mode('ro/file')).toBe(0o444);
    expect(await mode('implicit')).toBe(0o755);
    expect(await readFile(join(dest, 'implicit/parent/f.txt'), 'utf8')).toBe('deep');
    expect(await readlink(join(dest, 'current'))).toBe('app');
    expect((await lstat(join(dest, 'app/again.php'))).ino).toBe((await lstat(join(dest, 'app/index.php'))).ino);
    expect(await readFile(join(dest, '日本/é x.txt'), 'utf8')).toBe('ü');
    expect((await readdir(dest)).some((n) => n.startsWith('.spoke-staging-'))).toBe(false);
  });

  it('round-trips a tree through packTree with an equal root hash', async () => {
    const src = join(tmp, 'src');
    await mkdir(join(src, 'a/b'), { recursive: true });
    await writeFile(join(src, 'a/b/c.php'), 'c');
    await writeFile(join(src, 'empty'), '');
    await writeFile(join(src, 'bin.dat'), Buffer.from([0, 1, 2, 255, 254]));
    await writeFile(join(src, 'big'), Buffer.alloc(700_000, 9));
    await writeFile(join(src, `${'long-name-'.repeat(12)}.txt`), 'long');
    await mkdir(join(src, 'deep/'.repeat(30)), { recursive: true });
    await writeFile(join(src, 'deep/'.repeat(30), 'f'), 'deep');
    await mkdir(join(src, '日本 dir'));
    await writeFile(join(src, '日本 dir/é.txt'), 'é');
    await chmod(join(src, 'a'), 0o750);
    await chmod(join(src, 'a/b/c.php'), 0o600);
    await symlink('a/b/c.php', join(src, 'link'));
    await symlink('../a', join(src, '日本 dir/up'));
    const before = await walkTree(src);
    await extractArchive(packTree(src, before.manifest, { verify: true }), join(dest, 'copy'));
    const after = await walkTree(join(dest, 'copy'));
    expect(after.manifest.entries).toEqual(before.manifest.entries);
    expect(after.manifest.rootHash).toBe(before.manifest.rootHash);
  });
});

describe('checkArchiveEntry', () => {
  it('normalises and accepts ordinary entries', () => {
    expect(checkArchiveEntry({ name: './a/b/', type: 'directory', mode: 0o40755 })).toEqual({
      path: 'a/b',
      type: 'dir',
      mode: 0o755,
      size: 0,
    });
    expect(checkArchiveEntry({ name: 'f', type: 'contiguous-file', mode: 0o644, size: 3 }).type).toBe('file');
  });

  it.each([
    [{ name: 'x', type: null }],
    [{ name: 'x', type: 'gnu-long-path' }],
    [{ name: 'x', type: 'directory', size: 10 }],
    [{ name: 'x', type: 'symlink', linkname: null }],
    [{ name: '.', type: 'file' }],
    [{ name: 'x', type: 'link', linkname: 'x' }],
  ])('refuses %j', (header) => {
    expect(() => checkArchiveEntry(header)).toThrow();
  });
});
