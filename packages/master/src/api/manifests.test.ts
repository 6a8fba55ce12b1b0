import { describe, expect, it } from 'vitest';
import { wire } from '@spoke/shared';
import { ManifestMessages } from './manifests.js';

function msgs(n: number, root = 'r'.repeat(64)): wire.ManifestChunk[] {
  const entries = Array.from({ length: n }, (_, i) => ({ path: `f${i}`, type: 'file', mode: 0o644, size: i, hash: 'a'.repeat(64), target: '' }));
  return [{ entries, rootHash: root, total: n, delta: false, removed: [], baseRootHash: '' }];
}

describe('ManifestMessages', () => {
  it('builds the messages of one manifest once for every member asking, preframed', () => {
    const cache = new ManifestMessages({ lingerMs: 60_000 });
    const a = cache.get('/var/www/p\0r\0', () => msgs(100));
    const b = cache.get('/var/www/p\0r\0', () => msgs(100));
    expect(b).toBe(a);
    expect(cache.built).toBe(1);
    expect(wire.preframedBytes(a[0] as wire.ManifestChunk)).toBe(5 + wire.ManifestChunk.encode(a[0] as wire.ManifestChunk).finish().length);
    expect(cache.heldBytes).toBe(wire.preframedBytes(a[0] as wire.ManifestChunk));
    // another base (a delta) or root hash is another manifest
    cache.get('/var/www/p\0r\0base', () => msgs(3));
    expect(cache.built).toBe(2);
  });

  it('holds no more than its bound: the least recently asked go first, one larger than the bound is sent but not kept', () => {
    const one = wire.preframedBytes(wire.preframe(msgs(50)[0] as wire.ManifestChunk, wire.ManifestChunk));
    const cache = new ManifestMessages({ lingerMs: 60_000, maxBytes: 2 * one + 10 });
    cache.get('a', () => msgs(50));
    cache.get('b', () => msgs(50));
    cache.get('a', () => msgs(50)); // a is now the most recent
    cache.get('c', () => msgs(50)); // b goes
    expect(cache.built).toBe(3);
    expect(cache.heldBytes).toBeLessThanOrEqual(2 * one + 10);
    cache.get('a', () => msgs(50));
    expect(cache.built).toBe(3);
    cache.get('b', () => msgs(50));
    expect(cache.built).toBe(4);
    const big = cache.get('big', () => msgs(5000));
    expect(big[0]?.entries.length).toBe(5000);
    expect(cache.heldBytes).toBeLessThanOrEqual(2 * one + 10);
    cache.get('big', () => msgs(5000));
    expect(cache.built).toBe(6);
  });

  it('forgets a manifest lingerMs after it was last asked for', async () => {
    const cache = new ManifestMessages({ lingerMs: 1 });
    cache.get('a', () => msgs(10));
    await new Promise((r) => setTimeout(r, 30));
    expect(cache.heldBytes).toBe(0);
    cache.get('a', () => msgs(10));
    expect(cache.built).toBe(2);
  });
});
