import { readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { expectCode } from '../testkit.js';
import { sha256Hex } from './manifest.js';
import { packBlobs, packTree, unpackBlobs } from './pack.js';
import { chunked, collect, tarOf, tempDir } from './testing.js';

let tmp: string;
let cleanup: () => Promise<void>;
beforeEach(async () => {
  ({ dir: tmp, cleanup } = await tempDir());
});
afterEach(() => cleanup());

async function blobFile(name: string, content: string | Buffer): Promise<{ hash: string; path: string }> {
  const path = join(tmp, name);
  await writeFile(path, content);
  return { hash: sha256Hex(content), path };
}

describe('packBlobs / unpackBlobs', () => {
  it('round-trips blobs named by hash, once per distinct hash', async () => {
    const a = await blobFile('a', 'alpha');
    const b = await blobFile('b', Buffer.alloc(1_000_000, 3));
    const a2 = await blobFile('a-copy', 'alpha');
    const empty = await blobFile('empty', '');
    const staging = join(tmp, 'staging');
    const got = await unpackBlobs(packBlobs([a, b, a2, empty]), staging, { want: [a.hash, b.hash, empty.hash] });
    expect(got.map((g) => g.hash)).toEqual([a.hash, b.hash, empty.hash]);
    expect(got.map((g) => g.size)).toEqual([5, 1_000_000, 0]);
    expect((await readdir(staging)).sort()).toEqual([a.hash, b.hash, empty.hash].sort());
    expect(await readFile(join(staging, a.hash), 'utf8')).toBe('alpha');
    expect(sha256Hex(await readFile(join(staging, b.hash)))).toBe(b.hash);
  });

  it('detects a blob whose bytes do not match its name, deletes it, keeps verified ones', async () => {
    const good = sha256Hex('good');
    const claimed = sha256Hex('what was asked for');
    const tar = await tarOf([
      { header: { name: good, type: 'file' }, body: 'good' },
      { header: { name: claimed, type: 'file' }, body: 'something else' },
    ]);
    const staging = join(tmp, 'staging');
    await expectCode(unpackBlobs(chunked(tar), staging), 'BLOB_HASH_MISMATCH');
    expect(await readdir(staging)).toEqual([good]);
  });

  it('fails at the source when a file changed after its hash was taken', async () => {
    const a = await blobFile('a', 'before');
    await writeFile(a.path, 'after!');
    await expectCode(collect(packBlobs([a])), 'BLOB_HASH_MISMATCH');
  });

  it('fails at the source when a file is gone, or the hash is not a hash', async () => {
    await expectCode(collect(packBlobs([{ hash: sha256Hex('x'), path: join(tmp, 'nope') }])), 'TREE_UNREADABLE');
    await expectCode(collect(packBlobs([{ hash: '../../etc/passwd', path: '/etc/passwd' }])), 'INVALID_ARGUMENT');
  });

  it.each([
    ['a traversal name', { name: '../x', type: 'file' as const }],
    ['an upper-case hash', { name: sha256Hex('x').toUpperCase(), type: 'file' as const }],
    ['a symlink', { name: sha256Hex('x'), type: 'symlink' as const, linkname: '/etc/passwd' }],
    ['a directory', { name: sha256Hex('x'), type: 'directory' as const }],
  ])('refuses %s in a blob stream', async (_what, header) => {
    const tar = await tarOf([{ header, ...(header.type === 'file' ? { body: 'x' } : {}) }]);
    const staging = join(tmp, 'staging');
    await expectCode(unpackBlobs(chunked(tar), staging), 'ARCHIVE_UNSAFE');
    expect(await readdir(staging)).toEqual([]);
    expect(await readdir(tmp)).toEqual(['staging']);
  });

  it('stops reading source files when the consumer goes away', async () => {
    const blobs = await Promise.all(Array.from({ length: 5 }, (_, i) => blobFile(`big${i}`, Buffer.alloc(2_000_000, i))));
    const stream = packBlobs(blobs);
    let got = 0;
    for await (const chunk of stream) {
      got += (chunk as Buffer).length;
      if (got > 100_000) break; // destroys the stream
    }
    expect(stream.destroyed).toBe(true);
    expect(got).toBeLessThan(10_000_000);
  });

  it('refuses blobs that were not requested', async () => {
    const a = await blobFile('a', 'alpha');
    await expectCode(unpackBlobs(packBlobs([a]), join(tmp, 's'), { want: [sha256Hex('other')] }), 'ARCHIVE_UNSAFE');
  });
});

describe('packTree', () => {
  it('refuses a manifest path that would read outside the tree', async () => {
    const manifest = {
      entries: [{ path: '../secret', type: 'file' as const, mode: 0o644, size: 1, hash: sha256Hex('s') }],
      rootHash: '',
    };
    await expectCode(collect(packTree(tmp, manifest)), 'ARCHIVE_UNSAFE');
  });
});
