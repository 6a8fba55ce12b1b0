import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { fail, frameChunk, isSpokeError, unframeBlobs, type SizedBlobSource } from '@spoke/shared';
import { BlobFanout, type BlobTransfer } from './blobcache.js';

const dirs: string[] = [];
afterEach(() => dirs.splice(0).forEach((d) => rmSync(d, { recursive: true, force: true })));
function tmp(): string {
  const d = mkdtempSync(join(tmpdir(), 'spoke-blobcache-'));
  dirs.push(d);
  return d;
}
const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

/** `n` files of 1–3 KB with distinct content under a temp dir: their sources, by hash. */
function tree(n: number): { dir: string; sources: Map<string, SizedBlobSource>; hashes: string[] } {
  const dir = tmp();
  const sources = new Map<string, SizedBlobSource>();
  for (let i = 0; i < n; i++) {
    const data = Buffer.alloc(1000 + ((i * 977) % 2000), i % 251);
    data.writeUInt32BE(i, 0);
    const path = join(dir, `f${i}`);
    writeFileSync(path, data);
    sources.set(sha(data), { hash: sha(data), path, size: data.length });
  }
  return { dir, sources, hashes: [...sources.keys()] };
}

/** A fanout over `sources`, counting framed chunks and the files read through its frame function. */
function fanout(sources: Map<string, SizedBlobSource>, opts: { maxBytes?: number; chunkBytes?: number; lingerMs?: number } = {}) {
  const reads = new Map<string, number>();
  let resolves = 0;
  const f = new BlobFanout({
    resolve: (_tree, hashes) => {
      resolves++;
      const missing = hashes.filter((h) => !sources.has(h));
      if (missing.length) return Promise.reject(fail('BLOB_HASH_MISMATCH', `${missing.length} requested blob(s) are no longer in the tree`));
      return Promise.resolve(hashes.map((h) => sources.get(h) as SizedBlobSource));
    },
    frame: (srcs, from, out) => {
      const r = frameChunk(srcs, from, out);
      // the files this chunk read from: from.blob up to the blob it ends in
      const last = r.next.done > 0 ? r.next.blob : r.next.blob - 1;
      for (let b = from.blob; b <= Math.min(last, srcs.length - 1); b++) {
        const p = (srcs[b] as SizedBlobSource).path;
        reads.set(p, (reads.get(p) ?? 0) + 1);
      }
      return r;
    },
    chunkBytes: opts.chunkBytes ?? 8192,
    maxBytes: opts.maxBytes,
    lingerMs: opts.lingerMs ?? 0,
  });
  return { f, reads, resolves: () => resolves };
}

/** Receives one stream's chunks as an agent does (every blob verified) into a fresh dir. */
async function receive(t: BlobTransfer, want: string[], each?: () => void) {
  async function* bytes() {
    try {
      for await (const c of t.chunks()) {
        each?.();
        yield c;
      }
    } finally {
      t.close();
    }
  }
  return unframeBlobs(bytes(), tmp(), { want });
}

describe('BlobFanout', () => {
  it('serves two concurrent fetches of the same blobs from one read of each file', async () => {
    const { sources, hashes } = tree(60);
    const { f, reads, resolves } = fanout(sources);
    const [a, b] = await Promise.all([receive(f.open('/var/www/p', hashes), hashes), receive(f.open('/var/www/p', hashes), hashes)]);
    expect(a.map((x) => x.hash).sort()).toEqual([...hashes].sort());
    expect(b.map((x) => x.hash).sort()).toEqual([...hashes].sort());
    expect(reads.size).toBe(60);
    // each file read once — one that straddles two chunks is read once for each part
    const straddling = [...reads.values()].filter((n) => n > 1);
    expect(straddling.every((n) => n === 2)).toBe(true);
    expect(straddling.length).toBeLessThan(f.stats.framed);
    expect(f.stats.shared).toBe(f.stats.framed);
    expect(resolves()).toBe(1);
    expect(f.transferCount).toBe(0); // dropped once nobody uses it (lingerMs 0)
    expect(f.heldBytes).toBe(0);
  });

  it('keeps another blob list, or another tree, apart', async () => {
    const { sources, hashes } = tree(20);
    const { f } = fanout(sources);
    const half = hashes.slice(0, 10);
    const [whole, part, other] = await Promise.all([
      receive(f.open('/var/www/p', hashes), hashes),
      receive(f.open('/var/www/p', half), half),
      receive(f.open('/var/www/q', hashes), hashes),
    ]);
    expect([whole.length, part.length, other.length]).toEqual([20, 10, 20]);
    expect(f.stats.shared).toBe(0);
  });

  it('never holds more than its bound, and a member far behind still gets every blob', async () => {
    const { sources, hashes } = tree(200); // ~400 KB: ~50 chunks of 8 KiB
    const max = 5 * 8192;
    const { f } = fanout(sources, { maxBytes: max });
    let peak = 0;
    const watch = () => (peak = Math.max(peak, f.heldBytes));
    const leader = f.open('/var/www/p', hashes);
    const laggard = f.open('/var/www/p', hashes);
    const first = await receive(leader, hashes, watch);
    expect(first.length).toBe(200);
    expect(f.stats.framed).toBeGreaterThan(40);
    const framedOnce = f.stats.framed;
    const second = await receive(laggard, hashes, watch);
    expect(second.length).toBe(200);
    expect(peak).toBeGreaterThan(0);
    expect(peak).toBeLessThanOrEqual(max);
    expect(f.stats.evicted).toBeGreaterThan(0);
    // the laggard waited at chunk 0: the head of the list was kept for it, the rest framed again
    expect(f.stats.shared).toBeGreaterThanOrEqual(4);
    expect(f.stats.framed).toBe(2 * framedOnce - f.stats.shared);
  });

  it('sends a blob that changed on disk since its hash to every member alike, and each refuses it', async () => {
    const { sources, hashes } = tree(30);
    const victim = sources.get(hashes[7] as string) as SizedBlobSource;
    writeFileSync(victim.path, Buffer.alloc(victim.size, 0xee)); // same size, other content
    const solo = fanout(sources);
    await receive(solo.f.open('/var/www/p', hashes), hashes).catch(() => undefined);
    const once = solo.reads.get(victim.path) ?? 0; // 2 when it straddles two chunks
    expect(once).toBeGreaterThan(0);
    const { f, reads } = fanout(sources);
    const got = await Promise.allSettled([0, 1, 2].map(() => receive(f.open('/var/www/p', hashes), hashes)));
    for (const r of got) {
      expect(r.status).toBe('rejected');
      const e = (r as PromiseRejectedResult).reason as Error;
      expect(isSpokeError(e, 'BLOB_HASH_MISMATCH')).toBe(true);
      expect(e.message).toContain(victim.hash.slice(0, 12));
    }
    expect(reads.get(victim.path)).toBe(once);
    // a retry of what is missing is a transfer of its own: read from disk again
    const missing = hashes.slice(7);
    await expect(receive(f.open('/var/www/p', missing), missing)).rejects.toThrow(/BLOB_HASH_MISMATCH|arrived with hash/);
    expect(reads.get(victim.path)).toBeGreaterThan(once);
  });

  it('does not keep a refusal: the next stream asks the tree again', async () => {
    const { sources, hashes } = tree(5);
    const { f, resolves } = fanout(sources);
    const bad = [...hashes, 'f'.repeat(64)];
    const err = await receive(f.open('/var/www/p', bad), bad).catch((e: unknown) => e);
    expect(isSpokeError(err, 'BLOB_HASH_MISMATCH')).toBe(true);
    expect(f.transferCount).toBe(0);
    await expect(receive(f.open('/var/www/p', bad), bad)).rejects.toThrow('no longer in the tree');
    expect(resolves()).toBe(2);
  });

  it('lets a member that asks a moment after the others share their transfer while it lingers', async () => {
    const { sources, hashes } = tree(40);
    const { f } = fanout(sources, { lingerMs: 60_000 });
    await receive(f.open('/var/www/p', hashes), hashes);
    expect(f.transferCount).toBe(1);
    const framed = f.stats.framed;
    await receive(f.open('/var/www/p', hashes), hashes);
    expect(f.stats.framed).toBe(framed);
    expect(f.stats.shared).toBe(framed);
  });
});
