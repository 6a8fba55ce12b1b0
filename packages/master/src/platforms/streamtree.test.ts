import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createLogger, fail, type Manifest, sha256Hex, type StreamedEntry, TreeStreamParser, walkTree } from '@spoke/shared';
import { haveSet, serveTree, TreeFeeds } from './streamtree.js';

const log = createLogger({ level: 'silent' });
let root: string;
beforeEach(() => {
  root = mkdtempSync(join(tmpdir(), 'spoke-feed-'));
  for (let d = 0; d < 30; d++) {
    mkdirSync(join(root, `d${d}`), { recursive: true });
    // ~3 MiB in all: several chunks
    for (let f = 0; f < 20; f++) writeFileSync(join(root, `d${d}`, `f${f}.txt`), `${d}/${f}\n${'x'.repeat(5000 + d * f)}`);
  }
  writeFileSync(join(root, 'shared.txt'), 'held by both');
});
afterEach(() => rmSync(root, { recursive: true, force: true }));

/** What a reader got: entries by how their content came, the end record. */
async function read(chunks: AsyncIterable<Buffer>): Promise<{ entries: StreamedEntry[]; bytes: number; rootHash: string }> {
  const out = { entries: [] as StreamedEntry[], bytes: 0, rootHash: '' };
  const p = new TreeStreamParser({
    entry: (s) => out.entries.push(s),
    content: (piece) => (out.bytes += piece.length),
    fileEnd: () => undefined,
    end: (h) => (out.rootHash = h),
  });
  for await (const c of chunks) p.push(c);
  p.finish();
  return out;
}

async function walk(feeds: TreeFeeds, servers: string[]): Promise<{ manifest: Manifest; feed: ReturnType<TreeFeeds['open']> }> {
  const feed = feeds.open('/t', root, servers);
  const manifest = (await walkTree(root, { tap: feed.tap })).manifest;
  void feed.end(manifest);
  return { manifest, feed };
}

describe('TreeFeed', () => {
  it('serves one walk to every expected reader; content both hold is left out', async () => {
    const feeds = new TreeFeeds({ log });
    const shared = sha256Hex('held by both');
    const only1 = sha256Hex(`0/0\n${'x'.repeat(5000)}`);
    const walking = walk(feeds, ['w1', 'w2']);
    const r1 = feeds.expecting('/t', 'w1')?.attach('w1', new Set([shared, only1]));
    const r2 = feeds.expecting('/t', 'w2')?.attach('w2', new Set([shared]));
    expect(r1 && r2).toBeTruthy();
    const [a, b, { manifest }] = await Promise.all([read(r1 as AsyncIterable<Buffer>), read(r2 as AsyncIterable<Buffer>), walking]);
    expect(a).toEqual(b);
    expect(a.rootHash).toBe(manifest.rootHash);
    expect(a.entries.map((s) => s.entry.path).sort()).toEqual(manifest.entries.map((e) => e.path).sort());
    expect(a.entries.filter((s) => s.source === 'held').map((s) => s.entry.path)).toEqual(['shared.txt']);
    // the feed is gone once read: a late call is served from the manifest
    expect(feeds.expecting('/t', 'w1')).toBeUndefined();
  });

  it('a server that declines, or never comes, does not hold the walk back', async () => {
    const feeds = new TreeFeeds({ log, attachMs: 50 });
    const walking = walk(feeds, ['gone', 'declines']);
    feeds.decline('/t', 'declines');
    const { manifest } = await walking; // 'gone' never attaches: the walk goes on after attachMs
    expect(manifest.entries.length).toBe(631);
    await feeds.walked('/t');
  });

  it('a walk that fails fails its readers with its error', async () => {
    const feeds = new TreeFeeds({ log });
    const feed = feeds.open('/t', root, ['w1']);
    const r = feed.attach('w1', new Set()) as AsyncIterable<Buffer>;
    feed.fail(fail('TREE_UNREADABLE', 'the canonical tree went away'));
    await expect(read(r)).rejects.toThrow(/the canonical tree went away/);
  });

  it('serveTree streams from the manifest when no walk expects the server', async () => {
    const feeds = new TreeFeeds({ log });
    const manifest = (await walkTree(root)).manifest;
    const sent: Buffer[] = [];
    await serveTree(
      { feeds, manifest: () => Promise.resolve({ manifest, root }) },
      { tree: '/t', server: 'w9', have: new Set(), send: (c) => Promise.resolve(void sent.push(Buffer.from(c))), cancelled: () => false },
    );
    const got = await read(
      (async function* () {
        yield* sent;
      })(),
    );
    expect(got.rootHash).toBe(manifest.rootHash);
    expect(got.entries.map((s) => s.entry)).toEqual(manifest.entries);
  });

  it('haveSet reads 32-byte digests and refuses a ragged list', () => {
    const h = sha256Hex('x');
    expect([...haveSet(Buffer.from(h + h, 'hex'))]).toEqual([h]);
    expect(() => haveSet(Buffer.alloc(33))).toThrow(/33 bytes, not a multiple of 32/);
  });
});
