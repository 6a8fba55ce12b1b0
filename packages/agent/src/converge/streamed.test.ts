import * as fs from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { buildManifest, FileWorker, isSpokeError, type ManifestEntry, sha256Hex, TreeStreamWriter } from '@spoke/shared';
import { convergeStreamed, type StreamedOptions } from './streamed.js';
import { converge, readCommitted } from './index.js';
import { treeStateDir } from './state.js';
import { copyFetcher, manifestOf, scratch, type Spec, treeStreamOf as streamOf, writeTree } from './testkit.js';

const KEY = '/var/aegir/platforms/d7';

let base: string;
let cleanup: () => void;
let dst: string;
let stateDir: string;
beforeEach(() => {
  ({ dir: base, cleanup } = scratch('spoke-streamed-'));
  dst = join(base, 'host', 'd7');
  stateDir = join(base, 'state');
});
afterEach(() => cleanup());

const SPEC: Spec = {
  'index.php': '<?php\n',
  'core/lib/a.php': 'a'.repeat(5000),
  'core/lib/b.php': { content: Buffer.alloc(3 * 1024 * 1024 + 11, 'b') }, // spans several chunks
  'core/LICENSE.txt': 'same',
  'modules/LICENSE.txt': 'same',
  'empty.txt': '',
  'run.sh': { content: '#!/bin/sh\n', mode: 0o750 },
  'secret.pem': { content: 'k', mode: 0o200 },
  ro: { dir: 0o555 },
  'ro/kept.txt': 'kept',
  link: { link: 'core/lib' },
  outside: { link: '/etc/wordpress/htaccess' },
};

let srcSeq = 0;
function source(spec: Spec): string {
  const dir = join(base, `src${srcSeq++}`);
  writeTree(dir, spec);
  return dir;
}

/** A hand-made record stream (for entries a walk would never produce). */
function recordsOf(
  entries: { e: ManifestEntry; content?: string }[],
  end?: { rootHash: string; entries: number },
  held: ReadonlySet<string> = new Set(),
): Buffer[] {
  const chunks: Buffer[] = [];
  const w = new TreeStreamWriter((c) => chunks.push(Buffer.from(c)), held);
  for (const { e, content } of entries) w.entry(e, content === undefined ? undefined : Buffer.from(content));
  if (end) w.end(end.rootHash, end.entries);
  else w.flush();
  return chunks;
}

async function* source2(chunks: Buffer[], opts: { cutAfter?: number; failAfter?: number } = {}): AsyncGenerator<Uint8Array> {
  for (let i = 0; i < chunks.length; i++) {
    if (opts.cutAfter !== undefined && i >= opts.cutAfter) return;
    if (opts.failAfter !== undefined && i >= opts.failAfter) throw Object.assign(new Error('14 UNAVAILABLE: connection reset'), { code: 14 });
    yield chunks[i] as Buffer;
  }
}

function receive(chunks: Buffer[], extra: Partial<StreamedOptions> = {}, cut: { cutAfter?: number; failAfter?: number } = {}) {
  return convergeStreamed({ treeKey: KEY, hostRoot: dst, stateDir, open: () => source2(chunks, cut), ...extra });
}

/** Nothing live: no tree, no committed state, no journal, no staging dir left. */
function nothingLive(): void {
  expect(fs.existsSync(dst)).toBe(false);
  expect(readCommitted(stateDir, KEY)).toBeNull();
  expect(fs.existsSync(join(treeStateDir(stateDir, KEY), 'journal.json'))).toBe(false);
  const parent = join(base, 'host');
  expect(fs.existsSync(parent) ? fs.readdirSync(parent) : []).toEqual([]);
}

async function code(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (e) {
    if (isSpokeError(e)) return `${e.code}: ${e.message}`;
    throw e;
  }
  throw new Error('expected a refusal');
}

const dirE = (path: string, mode = 0o755): ManifestEntry => ({ path, type: 'dir', mode, size: 0, hash: '' });
const fileE = (path: string, content: string, mode = 0o644): ManifestEntry => ({
  path,
  type: 'file',
  mode,
  size: Buffer.byteLength(content),
  hash: sha256Hex(content),
});

describe('convergeStreamed', () => {
  it('builds a new tree from the stream and commits it: same entries, contents, modes and links as the source', async () => {
    const src = source(SPEC);
    const r = await receive(await streamOf(src));
    expect(r?.inSync).toBe(false);
    const want = await manifestOf(src);
    expect(r?.rootHash).toBe(want.rootHash);
    expect((await manifestOf(dst)).entries).toEqual(want.entries);
    expect(readCommitted(stateDir, KEY)?.rootHash).toBe(want.rootHash);
    // duplicate content crossed once and was copied here
    expect(r?.filesReused).toBe(1);
    expect(fs.readdirSync(join(base, 'host'))).toEqual(['d7']);
    // the next converge to the same manifest is in sync: committed like any initial build
    const again = await converge({ treeKey: KEY, hostRoot: dst, stateDir, desired: want, fetcher: copyFetcher([src]) });
    expect(again.inSync).toBe(true);
  });

  it('gives every directory its mode: made with it where the owner may write and search it, else set at the end', async () => {
    const src = source({
      shared: { dir: 0o775 }, // the umask (022 here) takes g+w away at creation: set at the end
      'shared/a.txt': 'a',
      search: { dir: 0o711 },
      'search/deep': { dir: 0o700 },
      'search/deep/b.txt': 'b',
      locked: { dir: 0o500 }, // not writable by the owner: made 0700, its children inside, then 0500
      'locked/c.txt': 'c',
    });
    const r = await receive(await streamOf(src));
    const want = await manifestOf(src);
    expect(r?.rootHash).toBe(want.rootHash);
    expect((await manifestOf(dst)).entries).toEqual(want.entries);
    const mode = (p: string) => fs.statSync(join(dst, p)).mode & 0o777;
    expect([mode('shared'), mode('search'), mode('search/deep'), mode('locked')]).toEqual([0o775, 0o711, 0o700, 0o500]);
    fs.chmodSync(join(dst, 'locked'), 0o700); // so the test's cleanup can remove it
  });

  it('arrives the same cut at every byte: records and content spanning messages', async () => {
    const src = source({ 'a/b/c.txt': 'hello', 'a/d': { link: 'b' }, 'x.bin': { content: Buffer.alloc(3000, 'x') } });
    const joined = Buffer.concat(await streamOf(src));
    for (const size of [1, 7, 64, 1000]) {
      const pieces: Buffer[] = [];
      for (let i = 0; i < joined.length; i += size) pieces.push(joined.subarray(i, i + size));
      fs.rmSync(join(base, 'host'), { recursive: true, force: true });
      fs.rmSync(stateDir, { recursive: true, force: true });
      const r = await receive(pieces);
      expect(r?.rootHash).toBe((await manifestOf(src)).rootHash);
    }
  });

  it('does not open the stream for a tree this host holds something of', async () => {
    let opened = 0;
    const open = () => {
      opened++;
      return source2([]);
    };
    fs.mkdirSync(dst, { recursive: true });
    fs.writeFileSync(join(dst, 'not-from-spoke.txt'), 'x');
    expect(await convergeStreamed({ treeKey: KEY, hostRoot: dst, stateDir, open })).toBeUndefined();
    fs.rmSync(dst, { recursive: true });
    await receive(await streamOf(source({ a: '1' })));
    expect(await convergeStreamed({ treeKey: KEY, hostRoot: dst, stateDir, open })).toBeUndefined(); // committed now
    expect(opened).toBe(0);
  });

  const HOSTILE: { name: string; entries: { e: ManifestEntry; content?: string }[]; code: RegExp; held?: string[] }[] = [
    { name: 'a path that climbs out', entries: [{ e: fileE('../evil.php', 'x'), content: 'x' }], code: /^ARCHIVE_UNSAFE: .*"\.\."/ },
    { name: 'an absolute path', entries: [{ e: fileE('/etc/cron.d/x', 'x'), content: 'x' }], code: /^ARCHIVE_UNSAFE: .*absolute/ },
    {
      name: 'a file before its directory',
      entries: [{ e: fileE('d/x', 'x'), content: 'x' }, { e: dirE('d') }],
      code: /^INVALID_ARGUMENT: .*before \(or without\) its directory/,
    },
    {
      name: 'a path listed twice',
      entries: [
        { e: fileE('x', 'a'), content: 'a' },
        { e: fileE('x', 'b'), content: 'b' },
      ],
      code: /^INVALID_ARGUMENT: .*twice/,
    },
    {
      name: 'a file below a symlink',
      entries: [
        { e: { path: 'l', type: 'symlink', mode: 0o777, size: 4, hash: sha256Hex('/etc'), target: '/etc' } },
        { e: fileE('l/passwd', 'x'), content: 'x' },
      ],
      code: /^INVALID_ARGUMENT: .*its directory/,
    },
    {
      name: 'user data',
      entries: [{ e: dirE('sites') }, { e: dirE('sites/default') }, { e: dirE('sites/default/files') }],
      code: /^INVALID_ARGUMENT: manifest lists excluded path "sites\/default\/files"/,
    },
    { name: 'a setuid bit', entries: [{ e: fileE('su', 'x', 0o4755), content: 'x' }], code: /^ARCHIVE_UNSAFE: .*mode 4755/ },
    {
      name: 'content that does not match its hash',
      entries: [{ e: fileE('x', 'what it says'), content: 'what it is!!' }],
      code: /^BLOB_HASH_MISMATCH: x arrived with content/,
    },
    {
      name: 'content announced as held that this host does not have',
      entries: [{ e: fileE('a', 'once'), content: 'once' }, { e: fileE('b', 'never') }],
      held: [sha256Hex('never')],
      code: /^BLOB_HASH_MISMATCH: 1 file\(s\) of the streamed tree are not on this host/,
    },
  ];
  for (const h of HOSTILE) {
    it(`refuses ${h.name}, and nothing becomes live`, async () => {
      let rootHash = '0'.repeat(64);
      try {
        rootHash = buildManifest(h.entries.map((x) => x.e)).rootHash;
      } catch {
        // a manifest could not even hold these entries (a path twice)
      }
      const end = { rootHash, entries: h.entries.length };
      expect(await code(receive(recordsOf(h.entries, end, new Set(h.held))))).toMatch(h.code);
      nothingLive();
    });
  }

  it('refuses a tree whose root hash is not the one the stream ends with; nothing becomes live', async () => {
    const chunks = recordsOf([{ e: dirE('d') }, { e: fileE('d/x', 'x'), content: 'x' }], { rootHash: sha256Hex('another tree'), entries: 2 });
    expect(await code(receive(chunks))).toMatch(
      /^TREE_CHANGED: the tree the master streamed \(2 entries\) hashes to [0-9a-f]{12}…, not [0-9a-f]{12}… \(2 entries\)/,
    );
    nothingLive();
  });

  it('a stream that ends in the middle, or breaks, leaves nothing live', async () => {
    const chunks = await streamOf(source(SPEC));
    expect(chunks.length).toBeGreaterThan(3);
    expect(await code(receive(chunks, {}, { cutAfter: 2 }))).toMatch(/^BLOB_HASH_MISMATCH: the tree stream ended before its end record/);
    nothingLive();
    await expect(receive(chunks, {}, { failAfter: 2 })).rejects.toThrow(/UNAVAILABLE/);
    nothingLive();
  });

  it('a half-received tree stays in staging, never live (crash.test.ts kills it there and sweeps it at start-up)', async () => {
    const chunks = await streamOf(source(SPEC));
    let release: () => void = () => undefined;
    const stalled = new Promise<void>((r) => (release = r));
    const open = async function* () {
      yield chunks[0] as Buffer;
      yield chunks[1] as Buffer;
      await stalled; // the process dies here
      throw new Error('killed');
    };
    const p = convergeStreamed({ treeKey: KEY, hostRoot: dst, stateDir, open });
    p.catch(() => undefined);
    const parent = join(base, 'host');
    for (let i = 0; i < 100 && !(fs.existsSync(parent) && fs.readdirSync(parent).length > 0); i++) await new Promise((r) => setTimeout(r, 10));
    const staging = fs.readdirSync(parent);
    expect(staging).toHaveLength(1);
    expect(staging[0]).toMatch(/^\.spoke-staging-d7-/);
    expect(fs.existsSync(dst)).toBe(false);
    expect(readCommitted(stateDir, KEY)).toBeNull();
    expect(fs.existsSync(join(treeStateDir(stateDir, KEY), 'staging.json'))).toBe(true); // swept at start-up by it
    release();
    await expect(p).rejects.toThrow(/killed/);
    nothingLive();
  });

  it('content the host holds in another tree is announced as held and copied; a copy that fails is fetched', async () => {
    const src = source(SPEC);
    const other = source(SPEC); // "another platform" this host holds
    fs.writeFileSync(join(other, 'index.php'), 'changed since it was committed');
    const m = await manifestOf(src);
    const files = m.entries.filter((e) => e.type === 'file');
    const held = new Set(files.map((e) => e.hash));
    const at = new Map(files.map((e) => [e.hash, join(other, e.path)]));
    const fetcher = copyFetcher([src]);
    let sent: readonly string[] = [];
    const r = await convergeStreamed({
      treeKey: KEY,
      hostRoot: dst,
      stateDir,
      open: (have) => {
        sent = have;
        return source2([]);
      },
      reuse: (h) => at.get(h),
      reusable: () => held.keys(),
      fetcher,
    }).catch(() => undefined);
    expect(r).toBeUndefined(); // the empty stream above: refused, but it said what it holds
    expect([...sent].sort()).toEqual([...held].sort());
    fs.rmSync(join(base, 'host'), { recursive: true, force: true });
    // the copies shared with a second thread, as the agent does
    const helper = new FileWorker();
    try {
      const done = await receive(await streamOf(src, held), { reuse: (h) => at.get(h), reusable: () => held.keys(), fetcher, helper });
      expect(done?.rootHash).toBe(m.rootHash);
      expect(done?.filesFetched).toBe(1); // index.php changed in the other tree: fetched
      expect(done?.filesReused).toBe(files.length - 1);
    } finally {
      helper.close();
    }
    expect(fetcher.asked).toEqual([sha256Hex('<?php\n')]);
    expect((await manifestOf(dst)).entries).toEqual(m.entries);
  });
});
