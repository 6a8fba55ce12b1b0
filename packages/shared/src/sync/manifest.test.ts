import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmod, mkdir, readFile, symlink, utimes, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { isSpokeError } from '../errors.js';
import { hashFile } from './filehash.js';
import { buildManifest, computeRootHash, type ManifestEntry, sha256Hex } from './manifest.js';
import { excludeMatcher, readEntry, walkTree } from './walk.js';
import type { StatCache, StatCacheRecord } from './walktypes.js';
import { tempDir } from './testing.js';

let dir: string;
let cleanup: () => Promise<void>;
beforeEach(async () => {
  ({ dir, cleanup } = await tempDir());
});
afterEach(() => cleanup());

async function put(rel: string, content: string | Buffer, mode = 0o644): Promise<void> {
  const abs = join(dir, rel);
  await mkdir(join(abs, '..'), { recursive: true });
  await writeFile(abs, content);
  await chmod(abs, mode);
}

/** A Map-backed stat cache (the master keeps the same records in SQLite). */
function mapCache(): StatCache & { map: Map<string, StatCacheRecord> } {
  const map = new Map<string, StatCacheRecord>();
  const c = {
    map,
    get(p: string) {
      return map.get(p);
    },
    set(p: string, r: StatCacheRecord) {
      map.set(p, r);
    },
  };
  return c;
}

async function age(rel: string): Promise<void> {
  const old = new Date(Date.now() - 3600_000);
  await utimes(join(dir, rel), old, old);
}

describe('walkTree', () => {
  it('lists files, dirs and symlinks with modes, sizes and hashes, sorted', async () => {
    await put('index.php', '<?php echo 1;');
    await put('bin/run', '#!/bin/sh\n', 0o4755); // setuid is dropped from the manifest
    await put('sites/default/settings.php', 'x', 0o440);
    await mkdir(join(dir, 'empty'), { mode: 0o750 });
    await chmod(join(dir, 'empty'), 0o750);
    await symlink('../index.php', join(dir, 'bin/link'));
    await put('日本/é file.txt', 'ü');

    const { manifest, skipped } = await walkTree(dir);
    expect(skipped).toEqual([]);
    const byPath = new Map(manifest.entries.map((e) => [e.path, e]));
    expect(manifest.entries.map((e) => e.path)).toEqual([
      'bin',
      'bin/link',
      'bin/run',
      'empty',
      'index.php',
      'sites',
      'sites/default',
      'sites/default/settings.php',
      '日本',
      '日本/é file.txt',
    ]);
    expect(byPath.get('index.php')).toEqual({
      path: 'index.php',
      type: 'file',
      mode: 0o644,
      size: 13,
      hash: sha256Hex('<?php echo 1;'),
    });
    expect(byPath.get('bin/run')?.mode).toBe(0o755);
    expect(byPath.get('sites/default/settings.php')?.mode).toBe(0o440);
    expect(byPath.get('empty')).toEqual({ path: 'empty', type: 'dir', mode: 0o750, size: 0, hash: '' });
    expect(byPath.get('bin/link')).toEqual({
      path: 'bin/link',
      type: 'symlink',
      mode: 0o777,
      size: 12,
      hash: sha256Hex('../index.php'),
      target: '../index.php',
    });
    expect(byPath.get('日本/é file.txt')?.size).toBe(2);
    expect(manifest.rootHash).toBe(computeRootHash(manifest.entries));
  });

  it('never follows symlinks, keeps absolute and escaping ones as links, skips uncarriable ones', async () => {
    const { dir: outside, cleanup: rmOutside } = await tempDir();
    try {
      await writeFile(join(outside, 'secret'), 's');
      await put('real/inner.txt', 'i');
      await symlink('real', join(dir, 'alias'));
      // Debian's packaged trees have both kinds (wordpress: .htaccess -> /etc/wordpress/htaccess,
      // wp-includes/js/underscore.js -> ../../../javascript/underscore/underscore.js)
      await symlink(outside, join(dir, 'abs'));
      await symlink('../..', join(dir, 'real/up'));
      await symlink('../../../javascript/x.js', join(dir, 'real/x.js'));
      await symlink('a\nb', join(dir, 'ctl'));
      const { manifest, skipped } = await walkTree(dir);
      expect(manifest.entries.map((e) => [e.path, e.type, e.target])).toEqual([
        ['abs', 'symlink', outside],
        ['alias', 'symlink', 'real'],
        ['real', 'dir', undefined],
        ['real/inner.txt', 'file', undefined],
        ['real/up', 'symlink', '../..'],
        ['real/x.js', 'symlink', '../../../javascript/x.js'],
      ]);
      const abs = manifest.entries[0];
      expect(abs).toMatchObject({ mode: 0o777, size: Buffer.byteLength(outside), hash: sha256Hex(outside) });
      // nothing from behind the links: the outside dir's file is not listed anywhere
      expect(manifest.entries.some((e) => e.path.endsWith('secret'))).toBe(false);
      expect(skipped).toEqual([{ path: 'ctl', reason: 'unsafe-symlink' }]);
      // the same entries come from readEntry (the master's watcher path)
      expect(await readEntry(dir, 'abs')).toEqual(abs);
      expect(await readEntry(dir, 'ctl')).toBeUndefined();
    } finally {
      await rmOutside();
    }
  });

  it('applies default excludes (VCS anywhere, user files) and extra globs', async () => {
    await put('.git/HEAD', 'ref');
    await put('modules/x/.git/config', 'c');
    await put('modules/x/.svn/entries', 'c');
    await put('modules/x/x.module', 'm');
    await put('sites/default/files/pic.jpg', 'p');
    await put('sites/example.com/private/key', 'k');
    await put('sites/example.com/settings.php', 's');
    await put('cache/a/b.tmp', 't');
    await put('error.log', 'e');
    const { manifest } = await walkTree(dir, { exclude: ['cache', '*.log'] });
    expect(manifest.entries.map((e) => e.path)).toEqual([
      'modules',
      'modules/x',
      'modules/x/x.module',
      'sites',
      'sites/default',
      'sites/example.com',
      'sites/example.com/settings.php',
    ]);
    const all = await walkTree(dir, { defaultExcludes: false });
    expect(all.manifest.entries.map((e) => e.path)).toContain('sites/default/files/pic.jpg');
  });

  it('skips and reports sockets, FIFOs, unsafe and non-UTF-8 names', async () => {
    await put('ok', 'x');
    execFileSync('mkfifo', [join(dir, 'fifo')]);
    const server = createServer();
    await new Promise<void>((resolve) => server.listen(join(dir, 'sock'), resolve));
    try {
      await writeFile(join(dir, 'back\\slash'), 'x');
      await writeFile(join(dir, 'new\nline'), 'x');
      await writeFile(Buffer.concat([Buffer.from(`${dir}/bad`), Buffer.from([0xff])]), 'x');
      const { manifest, skipped } = await walkTree(dir);
      expect(manifest.entries.map((e) => e.path)).toEqual(['ok']);
      expect(skipped).toEqual([
        { path: 'back\\slash', reason: 'unsafe-name' },
        { path: 'bad\uFFFD', reason: 'non-utf8-name' },
        { path: 'fifo', reason: 'fifo' },
        { path: 'new\nline', reason: 'unsafe-name' },
        { path: 'sock', reason: 'socket' },
      ]);
    } finally {
      server.close();
    }
  });

  it('reuses the unchanged entries of a previous walk, and gives the same manifest', async () => {
    await put('a.txt', 'aaaa');
    await put('d/b.txt', 'bbbb');
    const first = await walkTree(dir);
    await put('d/b.txt', 'BBBB');
    const byPath = new Map(first.manifest.entries.map((e) => [e.path, e]));
    const again = await walkTree(dir, { previous: byPath });
    expect(again.manifest).toEqual((await walkTree(dir)).manifest);
    const got = new Map(again.manifest.entries.map((e) => [e.path, e]));
    expect(got.get('a.txt')).toBe(byPath.get('a.txt'));
    expect(got.get('d')).toBe(byPath.get('d'));
    expect(got.get('d/b.txt')).not.toBe(byPath.get('d/b.txt'));
    expect(got.get('d/b.txt')?.hash).not.toBe(byPath.get('d/b.txt')?.hash);
  });

  it('keeps a valid name that contains U+FFFD next to an invalid one', async () => {
    await put('ok\uFFFD', 'x');
    await put('sub/plain', 'y');
    await writeFile(Buffer.concat([Buffer.from(`${dir}/bad`), Buffer.from([0xc3])]), 'x');
    const { manifest, skipped } = await walkTree(dir);
    expect(manifest.entries.map((e) => e.path)).toEqual(['ok\uFFFD', 'sub', 'sub/plain']);
    expect(skipped).toEqual([{ path: 'bad\uFFFD', reason: 'non-utf8-name' }]);
  });

  it('uses a warm stat cache instead of reading, and notices changes', async () => {
    await put('a.txt', 'aaaa');
    await put('b.txt', 'bbbb');
    await age('a.txt');
    await age('b.txt');
    const cache = mapCache();
    // utimes() just moved ctime to now; a zero racy window lets this test cache right away, once
    // the clock has left ctime's millisecond (ctime has sub-millisecond digits, Date.now() not).
    await new Promise((r) => setTimeout(r, 5));
    const opts = { statCache: cache, racyMs: 0 };
    const cold = await walkTree(dir, opts);
    expect(cold.cacheHits).toBe(0);
    expect(cold.hashedBytes).toBe(8);
    expect(cache.map.size).toBe(2);

    const warm = await walkTree(dir, opts);
    expect(warm.cacheHits).toBe(2);
    expect(warm.hashedBytes).toBe(0);
    expect(warm.manifest.rootHash).toBe(cold.manifest.rootHash);

    // Same size, mtime restored: ctime still moves, so the file is read again. (Wait out the
    // timestamp tick first: racyMs 0 cached a file whose ctime was "now".)
    await new Promise((r) => setTimeout(r, 30));
    await writeFile(join(dir, 'a.txt'), 'AAAA');
    await age('a.txt');
    const after = await walkTree(dir, opts);
    expect(after.cacheHits).toBe(1);
    expect(after.manifest.entries.find((e) => e.path === 'a.txt')?.hash).toBe(sha256Hex('AAAA'));
  });

  it('does not cache a file modified just now (racily clean)', async () => {
    await put('fresh.txt', 'x');
    const cache = mapCache();
    await walkTree(dir, { statCache: cache });
    expect(cache.map.size).toBe(0);
  });

  it('accepts a symlinked root but fails on a missing one', async () => {
    await put('real/a', 'a');
    await symlink('real', join(dir, 'current'));
    const { manifest } = await walkTree(join(dir, 'current'));
    expect(manifest.entries.map((e) => e.path)).toEqual(['a']);
    await expect(walkTree(join(dir, 'nope'))).rejects.toSatisfy((e) => isSpokeError(e, 'TREE_UNREADABLE'));
  });

  it('reads synchronously or through the thread pool with the same result, cache records included', async () => {
    for (let i = 0; i < 300; i++) await put(`d${i % 7}/f${i}.php`, `content ${i}`.repeat(i % 50), i % 3 === 0 ? 0o755 : 0o644);
    await put('big/over-a-mebibyte.bin', Buffer.alloc(1024 * 1024 + 5, 3)); // always read asynchronously
    for (let i = 0; i < 7; i++) await age(`d${i}`);
    await new Promise((r) => setTimeout(r, 5)); // see the next test
    const sync = mapCache();
    const async = mapCache();
    const a = await walkTree(dir, { statCache: sync, racyMs: 0 });
    const b = await walkTree(dir, { statCache: async, racyMs: 0, syncReads: false });
    expect(a.manifest).toEqual(b.manifest);
    expect(a.hashedBytes).toBe(b.hashedBytes);
    expect([...sync.map].sort()).toEqual([...async.map].sort());
    expect(sync.map.size).toBe(301);
    // Without lookups (no cache), regular files are listed by type and never lstat()ed; the
    // file over 1 MiB is found large once opened and read through the thread pool.
    await symlink('d1/f1.php', join(dir, 'link'));
    execFileSync('mkfifo', [join(dir, 'd2/pipe')]);
    const typed = await walkTree(dir);
    const plain = await walkTree(dir, { syncReads: false });
    expect(typed.manifest).toEqual(plain.manifest);
    expect(typed.skipped).toEqual(plain.skipped);
    expect(typed.skipped).toEqual([{ path: 'd2/pipe', reason: 'fifo' }]);
    expect(typed.manifest.entries.find((e) => e.path === 'link')).toMatchObject({ type: 'symlink', target: 'd1/f1.php' });
    expect(typed.manifest.entries.find((e) => e.path === 'big/over-a-mebibyte.bin')?.hash).toBe(sha256Hex(Buffer.alloc(1024 * 1024 + 5, 3)));
  });

  it('skips every lookup when the cache says it holds nothing for the tree', async () => {
    await put('a.txt', 'aaaa');
    await put('sub/b.txt', 'bbbb');
    const cache = mapCache();
    let gets = 0;
    const asked: string[] = [];
    const counting: StatCache = {
      get: (p) => {
        gets++;
        return cache.get(p);
      },
      set: (p, r) => cache.set(p, r),
      holdsNothingUnder: (d) => {
        asked.push(d);
        return cache.map.size === 0;
      },
    };
    await age('a.txt');
    await age('sub/b.txt');
    // utimes() set ctime to now: let a millisecond pass (Date.now() has no fraction, ctime has)
    await new Promise((r) => setTimeout(r, 5));
    const first = await walkTree(dir, { statCache: counting, racyMs: 0 });
    expect(asked).toEqual([dir]);
    expect(gets).toBe(0);
    expect(cache.map.size).toBe(2); // still recorded
    const second = await walkTree(dir, { statCache: counting, racyMs: 0 });
    expect(gets).toBe(2);
    expect(second.cacheHits).toBe(2);
    expect(second.manifest).toEqual(first.manifest);
  });

  it('reports every directory of the manifest, with its lstat, to onDir', async () => {
    await put('a/b/c.txt', 'c');
    await put('a/d.txt', 'd');
    await put('.git/HEAD', 'ref'); // excluded: not reported
    await mkdir(join(dir, 'empty'));
    const seen = new Map<string, number>();
    const { manifest } = await walkTree(dir, { onDir: (rel, st) => seen.set(rel, st.ino) });
    const dirs = manifest.entries.filter((e) => e.type === 'dir').map((e) => e.path);
    expect([...seen.keys()].sort()).toEqual(dirs);
    expect(dirs).toEqual(['a', 'a/b', 'empty']);
    const { statSync } = await import('node:fs');
    expect(seen.get('a/b')).toBe(statSync(join(dir, 'a/b')).ino);
  });

  it('hashes large files in chunks', async () => {
    const big = Buffer.alloc(3 * 1024 * 1024 + 17, 7);
    await put('big.bin', big);
    const { manifest } = await walkTree(dir, { concurrency: 2 });
    expect(manifest.entries[0]?.hash).toBe(sha256Hex(big));
    expect(await hashFile(join(dir, 'big.bin'))).toEqual({ hash: sha256Hex(big), size: big.length });
  });

  it('hashes a large file read ahead in pieces in the order of its bytes', async () => {
    // Distinct bytes in every piece: hashing two read-ahead buffers out of order, or one twice,
    // gives another digest (uniform content would not show it).
    const big = randomBytes(5 * 1024 * 1024 + 4321);
    await put('big.bin', big);
    await put('exact.bin', big.subarray(0, 2 * 1024 * 1024));
    const { manifest } = await walkTree(dir, { concurrency: 2 });
    expect(manifest.entries.map((e) => [e.path, e.hash, e.size])).toEqual([
      ['big.bin', sha256Hex(big), big.length],
      ['exact.bin', sha256Hex(big.subarray(0, 2 * 1024 * 1024)), 2 * 1024 * 1024],
    ]);
    expect(await hashFile(join(dir, 'big.bin'))).toEqual({ hash: sha256Hex(big), size: big.length });
  });
});

describe('computeRootHash', () => {
  const entries: ManifestEntry[] = [
    { path: 'a', type: 'dir', mode: 0o755, size: 0, hash: '' },
    { path: 'a/f', type: 'file', mode: 0o644, size: 1, hash: sha256Hex('x') },
    { path: 'l', type: 'symlink', mode: 0o777, size: 1, hash: sha256Hex('a'), target: 'a' },
  ];

  it('does not depend on input order', () => {
    expect(computeRootHash([...entries].reverse())).toBe(computeRootHash(entries));
  });

  it('changes with every field', () => {
    const base = computeRootHash(entries);
    const variants: Array<Partial<ManifestEntry>> = [{ path: 'a/g' }, { mode: 0o600 }, { size: 2 }, { hash: sha256Hex('y') }, { type: 'symlink', target: 'x' }];
    for (const v of variants) {
      const changed = entries.map((e, i) => (i === 1 ? { ...e, ...v } : e));
      expect(computeRootHash(changed)).not.toBe(base);
    }
    expect(computeRootHash([])).not.toBe(base);
  });

  it('buildManifest refuses duplicate paths', () => {
    expect(() => buildManifest([...entries, entries[0] as ManifestEntry])).toThrow(/twice/);
  });
});

describe('readEntry', () => {
  it('reads one path the way walkTree would, honouring excludes', async () => {
    await put('a/b.txt', 'hello');
    await symlink('b.txt', join(dir, 'a/l'));
    const { manifest } = await walkTree(dir);
    for (const e of manifest.entries) expect(await readEntry(dir, e.path)).toEqual(e);
    await put('sites/x/files/p.jpg', 'p');
    expect(await readEntry(dir, 'sites/x/files/p.jpg', { excludes: excludeMatcher() })).toBeUndefined();
    expect(await readEntry(dir, 'gone')).toBeUndefined();
    expect(await readEntry(dir, '../etc/passwd')).toBeUndefined();
    expect(await readFile(join(dir, 'a/b.txt'), 'utf8')).toBe('hello');
  });
});
