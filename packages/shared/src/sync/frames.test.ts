import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { ChunkPool, frameBlobs, frameChunk, newFrameChunk, unframeBlobs, type FramePos } from './frames.js';

const dirs: string[] = [];
afterEach(() => dirs.splice(0).forEach((d) => rmSync(d, { recursive: true, force: true })));
function tmp(): string {
  const d = mkdtempSync(join(tmpdir(), 'spoke-frames-'));
  dirs.push(d);
  return d;
}
const sha = (b: Buffer | string) => createHash('sha256').update(b).digest('hex');

function sources(dir: string, contents: (string | Buffer)[]) {
  return contents.map((c, i) => {
    const p = join(dir, `f${i}`);
    writeFileSync(p, c);
    return { hash: sha(c), path: p };
  });
}

async function collect(gen: AsyncIterable<Buffer>): Promise<Buffer[]> {
  const out: Buffer[] = [];
  for await (const b of gen) out.push(b);
  return out;
}

/** Re-chunks a byte stream at awkward boundaries. */
async function* rechunk(chunks: Buffer[], size: number): AsyncGenerator<Buffer> {
  const all = Buffer.concat(chunks);
  for (let i = 0; i < all.length; i += size) yield all.subarray(i, i + size);
}

describe('blob frames', () => {
  it('round-trips blobs of every size, whatever the chunk boundaries, once per hash', async () => {
    const src = tmp();
    const big = Buffer.alloc(5 * 1024 * 1024 + 17, 7);
    // Chunks of 39 and 41 bytes cut every header and blob at every offset; a 200 KB blob is
    // enough for that (the 5 MB one would be 130,000 chunks); larger chunks carry the 5 MB one.
    const mid = Buffer.alloc(200 * 1024 + 3, 9);
    for (const [size, blobs] of [
      [39, mid],
      [41, mid],
      [4096, big],
      [65_536, big],
      [10_000_000, big],
    ] as const) {
      const s = sources(src, ['', 'a', 'hello world', blobs, 'a']);
      const chunks = await collect(frameBlobs(s));
      const dest = tmp();
      const got = await unframeBlobs(rechunk(chunks, size), dest, { want: s.map((x) => x.hash) });
      expect(got.map((g) => g.hash)).toEqual([...new Set(s.map((x) => x.hash))]);
      for (const g of got) expect(sha(readFileSync(g.path))).toBe(g.hash);
      expect(readdirSync(dest).filter((n) => n.startsWith('.in-'))).toEqual([]);
    }
  });

  it('fills a chunk given back to its pool again, and the stream stays the same', async () => {
    const src = tmp();
    const big = randomBytes(3 * 1024 * 1024 + 5); // several chunks, each with other bytes
    const s = sources(src, ['x', big, 'y']);
    const plain = Buffer.concat(await collect(frameBlobs(s)));
    const pool = new ChunkPool();
    const copies: Buffer[] = [];
    const memory = new Set<ArrayBufferLike>();
    for await (const c of frameBlobs(s, pool)) {
      copies.push(Buffer.from(c)); // what a gRPC write copies into its framing
      memory.add(c.buffer);
      pool.give(c);
      pool.give(Buffer.from(c)); // a copy is not a chunk of frameBlobs': ignored
    }
    expect(copies.length).toBeGreaterThan(3);
    // the next chunk is started before this one is handed out: two take turns
    expect(memory.size).toBe(2);
    expect(Buffer.concat(copies).equals(plain)).toBe(true);
    const got = await unframeBlobs(rechunk(copies, 65_536), tmp(), { want: s.map((x) => x.hash) });
    expect(got.map((g) => sha(readFileSync(g.path)))).toEqual(s.map((x) => x.hash));
  });

  it('reports progress per chunk: blob bytes without the framing, and blobs completed', async () => {
    const s = sources(tmp(), ['a'.repeat(100), 'b'.repeat(300), 'c'.repeat(50)]);
    const seen: [number, number][] = [];
    await unframeBlobs(rechunk(await collect(frameBlobs(s)), 128), tmp(), { onProgress: (bytes, blobs) => seen.push([bytes, blobs]) });
    expect(seen.reduce((n, [b]) => n + b, 0)).toBe(450);
    expect(seen.reduce((n, [, k]) => n + k, 0)).toBe(3);
    expect(seen[0]).toEqual([88, 0]); // 128 bytes: a header and 88 of the first blob's 100
  });

  it('survives one-byte chunks', async () => {
    const s = sources(tmp(), ['a', 'bc', '']);
    const got = await unframeBlobs(rechunk(await collect(frameBlobs(s)), 1), tmp());
    expect(got).toHaveLength(3);
  });

  it('detects a blob corrupted in transit, keeps the good ones before it, drops the bad one', async () => {
    const src = tmp();
    const s = sources(src, ['first blob', 'second blob', 'third blob']);
    const bytes = Buffer.concat(await collect(frameBlobs(s)));
    const secondData = 40 + 'first blob'.length + 40;
    bytes[secondData] = (bytes[secondData] ?? 0) ^ 0xff;
    const dest = tmp();
    await expect(unframeBlobs(rechunk([bytes], 7), dest)).rejects.toMatchObject({ code: 'BLOB_HASH_MISMATCH' });
    expect(existsSync(join(dest, s[0]!.hash))).toBe(true);
    expect(existsSync(join(dest, s[1]!.hash))).toBe(false);
    expect(readdirSync(dest).filter((n) => n.startsWith('.in-'))).toEqual([]); // its pieces went to a temp file
  });

  it('a blob spread over chunks lands at its destOf path with its modeOf mode, like one in a single chunk', async () => {
    const src = tmp();
    const s = sources(src, ['spread over three chunks', 'x']);
    const dest = tmp();
    mkdirSync(join(dest, 'tree'));
    const at = (h: string) => join(dest, 'tree', h === s[0]!.hash ? 'spread.php' : 'one.php');
    const chunks = await collect(frameBlobs(s));
    // 64-byte chunks: the first blob's 24 bytes start at 40 and end past 64; the second fits one
    const got = await unframeBlobs(rechunk(chunks, 64), dest, { destOf: at, modeOf: () => 0o640 });
    expect(got.map((g) => g.path)).toEqual([at(s[0]!.hash), at(s[1]!.hash)]);
    expect(readFileSync(at(s[0]!.hash), 'utf8')).toBe('spread over three chunks');
    for (const g of got) expect(statSync(g.path).mode & 0o777).toBe(0o640 & ~process.umask());
    expect(readdirSync(dest).sort()).toEqual(['tree']);
  });

  it('refuses blobs that were not asked for and streams cut short', async () => {
    const src = tmp();
    const s = sources(src, ['x', 'y']);
    const bytes = Buffer.concat(await collect(frameBlobs(s)));
    await expect(unframeBlobs(rechunk([bytes], 100), tmp(), { want: [s[0]!.hash] })).rejects.toMatchObject({ code: 'ARCHIVE_UNSAFE' });
    await expect(unframeBlobs(rechunk([bytes.subarray(0, bytes.length - 1)], 100), tmp())).rejects.toMatchObject({ code: 'BLOB_HASH_MISMATCH' });
  });

  it('a large blob streamed to disk is verified too', async () => {
    const src = tmp();
    const s = sources(src, [Buffer.alloc(6 * 1024 * 1024, 1)]);
    const bytes = Buffer.concat(await collect(frameBlobs(s)));
    bytes[bytes.length - 1] = (bytes[bytes.length - 1] ?? 0) ^ 1;
    const dest = tmp();
    await expect(unframeBlobs(rechunk([bytes], 65536), dest)).rejects.toMatchObject({ code: 'BLOB_HASH_MISMATCH' });
    expect(readdirSync(dest)).toEqual([]);
  });

  it('packs many small blobs into chunks of at most 1 MiB, headers split across chunks intact', async () => {
    // Frames are 40 + 23 bytes: headers and contents land on every offset of a chunk boundary.
    // The hashes are fake (frameBlobs trusts the manifest's names; the receiver verifies them).
    const src = tmp();
    const body = Buffer.from('twenty-three bytes long');
    const path = join(src, 'f');
    writeFileSync(path, body);
    const s = Array.from({ length: 40_000 }, (_, i) => ({ hash: sha(`blob ${i}`), path }));
    const chunks = await collect(frameBlobs(s));
    expect(chunks.length).toBeGreaterThan(2);
    for (const c of chunks) expect(c.length).toBeLessThanOrEqual(1024 * 1024);
    const all = Buffer.concat(chunks);
    expect(all.length).toBe(s.length * (40 + body.length));
    for (let i = 0, off = 0; i < s.length; i++, off += 40 + body.length) {
      expect(all.toString('hex', off, off + 32)).toBe(s[i]!.hash);
      expect(Number(all.readBigUInt64BE(off + 32))).toBe(body.length);
      expect(all.subarray(off + 40, off + 40 + body.length).equals(body)).toBe(true);
    }
  });

  it('a missing source fails the sender with TREE_UNREADABLE', async () => {
    await expect(collect(frameBlobs([{ hash: sha('gone'), path: join(tmp(), 'nope') }]))).rejects.toMatchObject({ code: 'TREE_UNREADABLE' });
  });

  it('a source swapped for a symlink or a directory is never read through: TREE_UNREADABLE', async () => {
    const d = tmp();
    writeFileSync(join(d, 'secret'), 'not part of any tree');
    symlinkSync(join(d, 'secret'), join(d, 'link'));
    mkdirSync(join(d, 'dir'));
    await expect(collect(frameBlobs([{ hash: sha('x'), path: join(d, 'link') }]))).rejects.toMatchObject({
      code: 'TREE_UNREADABLE',
      message: expect.stringContaining('symlink'),
    });
    await expect(collect(frameBlobs([{ hash: sha('x'), path: join(d, 'dir') }]))).rejects.toMatchObject({ code: 'TREE_UNREADABLE' });
    // with the manifest's size (no fstat): the same refusals
    await expect(collect(frameBlobs([{ hash: sha('x'), path: join(d, 'link'), size: 1 }]))).rejects.toMatchObject({
      code: 'TREE_UNREADABLE',
      message: expect.stringContaining('symlink'),
    });
    await expect(collect(frameBlobs([{ hash: sha('x'), path: join(d, 'dir'), size: 1 }]))).rejects.toMatchObject({
      code: 'TREE_UNREADABLE',
      message: expect.stringContaining('not a regular file now'),
    });
  });

  it('with the manifest size: a source changed since (grown, shrunk) is refused by its hash; one only appended to sends its manifest content', async () => {
    const src = tmp();
    const s = sources(src, ['grew', 'shrank here', 'kept']);
    writeFileSync(s[0]!.path, 'GREW since the walk');
    writeFileSync(s[1]!.path, 'shrank');
    const sized = s.map((x, i) => ({ ...x, size: ['grew', 'shrank here', 'kept'][i]!.length }));
    // each alone: the bad one is refused, nothing of it is left
    for (const bad of [sized[0]!, sized[1]!]) {
      const dest = tmp();
      await expect(unframeBlobs(frameBlobs([bad]), dest)).rejects.toMatchObject({ code: 'BLOB_HASH_MISMATCH' });
      expect(readdirSync(dest)).toEqual([]);
    }
    writeFileSync(sized[2]!.path, 'kept, and appended to since');
    const dest = tmp();
    const got = await unframeBlobs(frameBlobs([sized[2]!]), dest);
    expect(readFileSync(got[0]!.path, 'utf8')).toBe('kept');
  });

  it('frameChunk numbers the chunks of a list: the same bytes from the same position, headers never split', async () => {
    const dir = tmp();
    const contents = [Buffer.alloc(0), Buffer.alloc(5000, 1), Buffer.alloc(30, 2), Buffer.alloc(12_000, 3), Buffer.alloc(1, 4)];
    const srcs = sources(dir, contents).map((x, i) => ({ ...x, size: (contents[i] as Buffer).length }));
    const frame = (from: FramePos) => {
      const out = Buffer.alloc(4096);
      const r = frameChunk(srcs, from, out);
      return { bytes: out.subarray(0, r.length), next: r.next };
    };
    const starts: FramePos[] = [{ blob: 0, done: 0 }];
    const chunks: Buffer[] = [];
    for (let at = starts[0] as FramePos; at.blob < srcs.length;) {
      const c = frame(at);
      chunks.push(c.bytes);
      at = c.next;
      starts.push(at);
    }
    // any chunk framed again from its start is the same, whatever came before
    for (let i = chunks.length - 1; i >= 0; i--) expect(frame(starts[i] as FramePos).bytes.equals(chunks[i] as Buffer)).toBe(true);
    // a chunk starts with a header or with the rest of a blob, never inside a header
    expect(chunks.length).toBeGreaterThan(3);
    chunks.forEach((c, i) => {
      const st = starts[i] as FramePos;
      if (st.done === 0) expect(c.toString('hex', 0, 32)).toBe(srcs[st.blob]?.hash);
      else expect(st.done).toBeLessThan(contents[st.blob]?.length ?? 0);
    });
    const got = await unframeBlobs(rechunk(chunks, 777), tmp(), { want: srcs.map((x) => x.hash) });
    expect(got.map((g) => g.hash).sort()).toEqual(srcs.map((x) => x.hash).sort());
    // a newFrameChunk buffer has room in front for the message headers
    expect(newFrameChunk(100).byteOffset).toBeGreaterThanOrEqual(16);
  });

  it('frameChunk zero-fills a file cut short since its manifest, so every chunk keeps its length and the receiver names the blob', async () => {
    const dir = tmp();
    const data = Buffer.alloc(3000, 5);
    const [src] = sources(dir, [data]);
    const s = { ...(src as { hash: string; path: string }), size: data.length };
    writeFileSync(s.path, data.subarray(0, 1000)); // truncated
    const out = Buffer.alloc(8192);
    const r = frameChunk([s], { blob: 0, done: 0 }, out);
    expect(r.length).toBe(40 + 3000);
    expect(out.subarray(40 + 1000, 40 + 3000).every((b) => b === 0)).toBe(true);
    await expect(unframeBlobs(rechunk([out.subarray(0, r.length)], 512), tmp(), { want: [s.hash] })).rejects.toThrow(s.hash.slice(0, 12));
    expect(() => frameChunk([{ ...s, path: join(dir, 'gone') }], { blob: 0, done: 0 }, out)).toThrow(/TREE_UNREADABLE|cannot read/);
  });
});
