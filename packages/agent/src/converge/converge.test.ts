import * as fs from 'node:fs';
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { buildManifest, FileWorker, type FileHelper, isSpokeError, type Manifest, type ManifestEntry, sha256Hex } from '@spoke/shared';
import { buildReuseIndex, converge, type ConvergeOptions, observe, readCommitted, replayJournals, treeKeyOf } from './index.js';
import { type ManifestDelta, MAX_CHAIN, readManifestFile, treeStateDir } from './state.js';
import { codecFetcher, copyFetcher, deltaOf, framesFetcher, fullManifest, manifestOf, scratch, type Spec, type TestFetcher, writeTree } from './testkit.js';

const KEY = '/var/aegir/platforms/d7';

let base: string;
let cleanup: () => void;
let dst: string;
let stateDir: string;
beforeEach(() => {
  ({ dir: base, cleanup } = scratch());
  dst = join(base, 'host', 'd7');
  stateDir = join(base, 'state');
});
afterEach(() => cleanup());

let srcSeq = 0;
/** A source tree ("the master's copy") from a spec. */
function source(spec: Spec): string {
  const dir = join(base, `src${srcSeq++}`);
  writeTree(dir, spec);
  return dir;
}

async function syncTo(src: string, extra: Partial<ConvergeOptions> = {}) {
  const fetcher = extra.fetcher ?? copyFetcher([src]);
  const result = await converge({ treeKey: KEY, hostRoot: dst, stateDir, desired: await manifestOf(src), fetcher, ...extra });
  return { result, fetcher: fetcher as TestFetcher };
}

/** The target equals the source: same entries, contents, modes, link targets (root hash). */
async function expectSame(target: string, src: string): Promise<void> {
  const a = await manifestOf(target);
  const b = await manifestOf(src);
  expect(a.entries).toEqual(b.entries);
  expect(a.rootHash).toBe(b.rootHash);
}

/** No journal, no staging dir, nothing but the tree in its parent dir. */
function expectClean(): void {
  // blobs kept for a retry (.spoke-staging-partial-*) may stay: they are verified content, excluded
  expect(fs.readdirSync(join(base, 'host')).filter((n) => !n.startsWith('.spoke-staging-partial-'))).toEqual(['d7']);
  expect(fs.existsSync(join(treeStateDir(stateDir, KEY), 'journal.json'))).toBe(false);
  expect(fs.existsSync(join(treeStateDir(stateDir, KEY), 'staging.json'))).toBe(false);
}

const bigA = Buffer.alloc(20000, 'a');
const CASES: { name: string; a: Spec; b: Spec; fetched?: number }[] = [
  { name: 'add a file', a: { x: '1' }, b: { x: '1', y: '2' }, fetched: 1 },
  { name: 'remove a file', a: { x: '1', y: '2' }, b: { x: '1' }, fetched: 0 },
  { name: 'change content', a: { x: '1', 'd/y': 'old' }, b: { x: '1', 'd/y': 'new content' }, fetched: 1 },
  { name: 'file mode change', a: { x: { content: '1', mode: 0o644 } }, b: { x: { content: '1', mode: 0o755 } }, fetched: 0 },
  {
    name: 'dir mode change',
    a: { d: { dir: 0o755 }, 'd/x': '1' },
    b: { d: { dir: 0o700 }, 'd/x': '1' },
    fetched: 0,
  },
  {
    name: 'read-only dir gets a child',
    a: { d: { dir: 0o555 }, 'd/x': '1' },
    b: { d: { dir: 0o555 }, 'd/x': '1', 'd/y': { content: '2', mode: 0o400 } },
  },
  { name: 'empty dirs', a: { k: 'k' }, b: { k: 'k', e: { dir: 0o755 }, 'f/g/h': { dir: 0o711 } }, fetched: 0 },
  {
    name: 'symlinks: add, retarget, remove',
    a: { x: '1', y: '2', l: { link: 'x' }, gone: { link: 'y' } },
    b: { x: '1', y: '2', l: { link: 'y' }, 'd/up': { link: '../x' } },
    fetched: 0,
  },
  { name: 'file -> dir', a: { p: 'file', q: 'q' }, b: { 'p/inner': 'inner', 'p/deep/er': 'x', q: 'q' } },
  { name: 'file -> symlink', a: { p: 'f', t: 't' }, b: { p: { link: 't' }, t: 't' }, fetched: 0 },
  {
    name: 'dir -> symlink',
    a: { 'd/x': '1', 'd/sub/y': '2', t: { dir: 0o755 } },
    b: { d: { link: 't' }, 't/z': '3' },
  },
  {
    name: 'symlink -> dir with children',
    a: { 'real/x': '1', l: { link: 'real' } },
    b: { 'real/x': '1', 'l/x': '2', 'l/y/z': '3' },
  },
  {
    name: 'names with spaces and non-ASCII',
    a: { 'a b/ç ü.php': '1', 'x y': 'z' },
    b: { 'a b/ç ü.php': '2', '日本/ファイル 1.txt': '3', 'emoji 🎉': '4', 'x y': { link: 'a b/ç ü.php' } },
  },
  { name: 'a moved file is reused, not fetched', a: { 'a/big.bin': { content: bigA }, k: '1' }, b: { 'b/moved.bin': { content: bigA }, k: '1' }, fetched: 0 },
  {
    name: 'same content at many paths: one blob',
    a: { k: '1' },
    b: { k: '1', x: 'same', 'd/y': 'same', 'd/e/z': { content: 'same', mode: 0o600 } },
    fetched: 1,
  },
  {
    name: 'mixed',
    a: { 'a/1': '1', 'a/2': '2', 'b/3': '3', c: 'c', 'e/f': 'f', l: { link: 'c' } },
    b: { 'a/1': '1!', b: 'now a file', c: { link: 'a/1' }, 'e/f': { content: 'f', mode: 0o600 }, l: 'now a file too', n: { dir: 0o750 } },
  },
];

/** The delta the master sends from the committed manifest to `src`'s. */
async function deltaTo(src: string): Promise<ManifestDelta> {
  const c = readCommitted(stateDir, KEY);
  if (c === null) throw new Error('nothing committed');
  return deltaOf(c.manifest, await manifestOf(src));
}

async function syncDelta(src: string, extra: Partial<ConvergeOptions> = {}) {
  const fetcher = extra.fetcher ?? copyFetcher([src]);
  const result = await converge({ treeKey: KEY, hostRoot: dst, stateDir, delta: await deltaTo(src), fetcher, ...extra });
  return { result, fetcher: fetcher as TestFetcher };
}

describe('converge from a manifest delta: every change kind, both ways', () => {
  for (const c of CASES) {
    for (const trust of [true, false]) {
      it(`${c.name}${trust ? '' : ' (trustCommitted: false)'}`, async () => {
        const a = source(c.a);
        const b = source(c.b);
        await syncTo(a);
        const fwd = await syncDelta(b, { trustCommitted: trust });
        await expectSame(dst, b);
        expectClean();
        expect(fwd.result.inSync).toBe(false);
        if (c.fetched !== undefined) expect(fwd.fetcher.asked.length).toBe(c.fetched);
        // what was committed reads back from its files (a delta on a's whole manifest) as b
        const treeDir = treeStateDir(stateDir, KEY);
        expect(readManifestFile(treeDir, (await manifestOf(b)).rootHash).manifest).toEqual(await manifestOf(b));
        const back = await syncDelta(a, { trustCommitted: trust });
        await expectSame(dst, a);
        expectClean();
        expect(back.result.drift).toEqual({ changed: [], added: [], removed: [] });
        // back at a's root: its file is written whole again (a file never refers to itself)
        expect(readManifestFile(treeDir, (await manifestOf(a)).rootHash).chain).toHaveLength(1);
        const again = await syncDelta(a, { trustCommitted: trust });
        expect(again.result.inSync).toBe(true);
        expect(again.fetcher.calls).toBe(0);
      });
    }
  }

  it('keeps a bounded chain of small delta files, reads it back after a restart, and repairs drift from a delta', async () => {
    const spec: Spec = {};
    for (let i = 0; i < 80; i++) spec[`d${i % 8}/f${i}.php`] = `<?php // ${i}\n`;
    const src = source(spec);
    await syncTo(src);
    const treeDir = treeStateDir(stateDir, KEY);
    const files = () => fs.readdirSync(treeDir).filter((n) => n.startsWith('manifest-'));
    const sizes: number[] = [];
    for (let round = 0; round < MAX_CHAIN + 3; round++) {
      fs.appendFileSync(join(src, `d${round % 8}/f${round}.php`), `// round ${round}\n`);
      const r = await syncDelta(src);
      expect(r.result.changed).toBe(1);
      await expectSame(dst, src);
      const c = readCommitted(stateDir, KEY);
      expect(c?.rootHash).toBe((await manifestOf(src)).rootHash);
      // on disk: exactly the committed chain, never longer than MAX_CHAIN
      const chain = readManifestFile(treeDir, c?.rootHash as string).chain;
      expect(chain.length).toBeLessThanOrEqual(MAX_CHAIN);
      expect(files().sort()).toEqual(chain.map((h) => `manifest-${h}.json`).sort());
      sizes.push(fs.statSync(join(treeDir, `manifest-${chain[0]}.json`)).size);
    }
    // a delta file is a fraction of the whole manifest
    expect(Math.min(...sizes) * 10).toBeLessThan(Math.max(...sizes));
    // a hand edit on the host is found by the walk (untrusted head) and repaired from a delta
    fs.writeFileSync(join(dst, 'd1/f1.php'), 'hand edit');
    await observe(stateDir, KEY, dst);
    fs.appendFileSync(join(src, 'd2/f2.php'), '// after the edit\n');
    const fix = await syncDelta(src);
    expect(fix.result.drift.changed).toEqual(['d1/f1.php']);
    await expectSame(dst, src);
  });

  it('a tree committed under the v1 root hash (an agent upgraded to capability 8) is adopted by one converge that moves nothing', async () => {
    const a = source({ 'd/x.php': '1', y: '2', l: { link: 'y' } });
    await syncTo(a);
    const treeDir = treeStateDir(stateDir, KEY);
    const head = JSON.parse(fs.readFileSync(join(treeDir, 'head.json'), 'utf8')) as { rootHash: string };
    const whole = JSON.parse(fs.readFileSync(join(treeDir, `manifest-${head.rootHash}.json`), 'utf8')) as { rootHash: string };
    // what an older agent left: the same entries under a root computed the old way
    const v1 = sha256Hex('a v1 root');
    fs.writeFileSync(join(treeDir, `manifest-${v1}.json`), JSON.stringify({ ...whole, rootHash: v1 }));
    fs.writeFileSync(join(treeDir, 'head.json'), JSON.stringify({ ...head, rootHash: v1 }));
    fs.rmSync(join(treeDir, `manifest-${head.rootHash}.json`));
    expect(readCommitted(stateDir, KEY)?.rootHash).toBe(v1);
    const r = await syncTo(a);
    expect(r.fetcher.calls).toBe(0);
    expect(r.result).toMatchObject({ added: 0, changed: 0, removed: 0 });
    expect(readCommitted(stateDir, KEY)?.rootHash).toBe((await manifestOf(a)).rootHash);
    await expectSame(dst, a);
    // and from there deltas work
    const b = source({ 'd/x.php': '1!', y: '2', l: { link: 'y' } });
    const d = await syncDelta(b);
    expect(d.result.changed).toBe(1);
    await expectSame(dst, b);
  });

  it('refuses a delta made against another base: TREE_CHANGED, nothing written', async () => {
    const a = source({ x: '1' });
    const b = source({ x: '2' });
    await syncTo(a);
    const d = await deltaTo(b);
    let err: unknown;
    try {
      await converge({ treeKey: KEY, hostRoot: dst, stateDir, delta: { ...d, base: sha256Hex('other') }, fetcher: copyFetcher([b]) });
    } catch (e) {
      err = e;
    }
    expect(isSpokeError(err, 'TREE_CHANGED')).toBe(true);
    await expectSame(dst, a);
    expectClean();
  });
});

describe('converge: every change kind, both ways, trusted and walked', () => {
  for (const c of CASES) {
    for (const trust of [true, false]) {
      it(`${c.name}${trust ? '' : ' (trustCommitted: false)'}`, async () => {
        const a = source(c.a);
        const b = source(c.b);
        const first = await syncTo(a);
        expect(first.result.inSync).toBe(false);
        await expectSame(dst, a);
        expectClean();
        const fwd = await syncTo(b, { trustCommitted: trust });
        await expectSame(dst, b);
        expectClean();
        expect(fwd.result.inSync).toBe(false);
        if (c.fetched !== undefined) expect(fwd.fetcher.asked.length).toBe(c.fetched);
        expect(readCommitted(stateDir, KEY)?.rootHash).toBe((await manifestOf(b)).rootHash);
        const back = await syncTo(a, { trustCommitted: trust });
        await expectSame(dst, a);
        expectClean();
        expect(back.result.drift).toEqual({ changed: [], added: [], removed: [] });
        // and a repeat is a no-op
        const again = await syncTo(a, { trustCommitted: trust });
        expect(again.result.inSync).toBe(true);
        expect(again.fetcher.calls).toBe(0);
      });
    }
  }
});

describe('converge: initial sync', () => {
  it('publishes a whole tree into a missing root (parents created) and reports counts', async () => {
    const src = source({ 'index.php': '<?php', 'sites/all/m.php': 'm', 'x/l': { link: '../index.php' }, dup1: 'd', dup2: 'd' });
    const progress: string[] = [];
    const { result, fetcher } = await syncTo(src, { onProgress: (p) => progress.push(p.phase) });
    await expectSame(dst, src);
    expectClean();
    expect(result).toMatchObject({ inSync: false, added: 8, changed: 0, removed: 0, filesFetched: 3, filesReused: 0 });
    expect(fetcher.calls).toBe(1);
    expect(new Set(progress)).toEqual(new Set(['scan', 'fetch', 'apply']));
    expect(treeKeyOf(treeStateDir(stateDir, KEY))).toBe(KEY);
  });

  it('fetch progress counts files as they arrive, not only at the end', async () => {
    // 600 files of 5 KB: about three 1 MiB chunks of the real blob framing
    const spec: Spec = {};
    for (let i = 0; i < 600; i++) spec[`f${String(i).padStart(3, '0')}.php`] = `${i}`.padEnd(5000, '.');
    const src = source(spec);
    const seen: { files: number; bytes: number }[] = [];
    await syncTo(src, { fetcher: framesFetcher([src]), onProgress: (p) => p.phase === 'fetch' && seen.push({ files: p.files, bytes: p.bytes }) });
    await expectSame(dst, src);
    const during = seen.slice(1, -1); // between the opening 0 and the closing total
    expect(during.length).toBeGreaterThan(1);
    expect(during.some((p) => p.files > 0 && p.files < 600)).toBe(true);
    for (let i = 1; i < seen.length; i++) expect(seen[i]?.files).toBeGreaterThanOrEqual(seen[i - 1]?.files as number);
    expect(seen.at(-1)?.files).toBe(600);
  });

  it('publishes into an existing empty directory, keeping its mode', async () => {
    fs.mkdirSync(dst, { recursive: true, mode: 0o750 });
    fs.chmodSync(dst, 0o750);
    const src = source({ a: '1' });
    await syncTo(src);
    await expectSame(dst, src);
    expect(fs.statSync(dst).mode & 0o777).toBe(0o750);
  });

  it("asks for the blobs before making the new tree's directories, and makes them before the first blob lands", async () => {
    const src = source({ 'a/b/c.php': 'c', 'a/d.php': 'd', 'e/f/g/h.txt': 'h', 'empty/dir': { dir: 0o755 } });
    const inner = framesFetcher([src]);
    const seen: { dirsAtAsk?: boolean; dirsAtFirstBlob?: boolean } = {};
    const fetcher: TestFetcher = {
      ...inner,
      async fetch(hashes, stagingDir, onBytes, signal, destOf, modeOf) {
        const tree = join(stagingDir, '..', 'tree');
        seen.dirsAtAsk = fs.existsSync(tree);
        const firstPlaced = (hash: string) => {
          const at = destOf?.(hash);
          seen.dirsAtFirstBlob ??= fs.existsSync(join(tree, 'e/f/g')) && fs.existsSync(join(tree, 'empty/dir'));
          return at;
        };
        return inner.fetch(hashes, stagingDir, onBytes, signal, firstPlaced, modeOf);
      },
    };
    await syncTo(src, { fetcher });
    expect(seen).toEqual({ dirsAtAsk: false, dirsAtFirstBlob: true });
    await expectSame(dst, src);
    expectClean();
  });

  it('a new tree with no file to place still gets all its directories', async () => {
    const src = source({ 'a/b/c': { dir: 0o750 }, 'a/l': { link: 'b' }, d: { dir: 0o700 } });
    const { result, fetcher } = await syncTo(src);
    expect(fetcher.calls).toBe(0);
    expect(result).toMatchObject({ inSync: false, filesFetched: 0 });
    await expectSame(dst, src);
    expectClean();
  });

  it('works through the real blob codec (packBlobs -> unpackBlobs)', async () => {
    const src = source({ a: '1', 'b/c': 'two', 'b/d': { content: Buffer.alloc(300000, 7), mode: 0o600 } });
    const { fetcher } = await syncTo(src, { fetcher: codecFetcher([src]) });
    await expectSame(dst, src);
    expect(fetcher.asked.length).toBe(3);
  });

  it('an initial build through the real frames codec gets every mode right, whatever the umask', async () => {
    const big = Buffer.alloc(5 * 1024 * 1024, 9); // over unframeBlobs' in-memory limit: a temp file
    const spec: Spec = {
      'a.php': 'same', // placed first with 0644: created so, no chmod
      'b.php': { content: 'same', mode: 0o600 }, // a copy of a.php's content with its own mode
      'exec.sh': { content: '#!/bin/sh', mode: 0o755 },
      'private.key': { content: 'k', mode: 0o600 },
      'readonly.txt': { content: 'r', mode: 0o444 },
      'writeonly.log': { content: 'w', mode: 0o200 }, // not readable by its owner: 0600, then chmod
      noaccess: { content: 'n', mode: 0o000 },
      'group.php': { content: 'g', mode: 0o664 },
      'dir/big.bin': { content: big, mode: 0o755 },
      'dir/ro': { dir: 0o555 },
      'dir/ro/inside.txt': { content: 'i', mode: 0o640 },
    };
    const old = process.umask(0o077); // also a umask that strips the group and other bits
    try {
      for (const [i, mask] of [0o022, 0o077, 0o002].entries()) {
        process.umask(mask);
        const src = source(spec);
        const target = join(base, 'host', `umask${i}`);
        const fetcher = framesFetcher([src]);
        const r = await converge({ treeKey: `/umask${i}`, hostRoot: target, stateDir, desired: await manifestOf(src), fetcher });
        expect(r.filesFetched).toBe(9);
        await expectSame(target, src);
      }
    } finally {
      process.umask(old);
    }
  });

  it('an empty manifest makes an empty directory', async () => {
    const src = source({});
    const { result } = await syncTo(src);
    expect(result.inSync).toBe(true);
    expect(fs.readdirSync(dst)).toEqual([]);
    expect(readCommitted(stateDir, KEY)?.manifest.entries).toEqual([]);
  });
});

describe('converge: user data', () => {
  const userFiles: Spec = {
    'sites/x/files/upload.jpg': { content: 'JPEG', mode: 0o664 },
    'sites/x/files/styles/thumb.jpg': 'thumb',
    'sites/x/private/secret.txt': { content: 'secret', mode: 0o600 },
    'sites/default/files/a.txt': 'a',
    '.git/HEAD': 'ref: refs/heads/main',
  };
  const snapshot = async () => {
    const m = await fullManifest(dst);
    return m.entries.filter((e) => /^sites\/[^/]+\/(files|private)(\/|$)|^\.git(\/|$)/.test(e.path));
  };

  it('survives every converge, including one that removes sites/x', async () => {
    const a = source({ 'index.php': 'a', 'sites/x/settings.php': 's', 'sites/x/modules/m.php': 'm', 'sites/default/settings.php': 'd' });
    await syncTo(a);
    writeTree(dst, userFiles);
    const before = await snapshot();
    expect(before.length).toBeGreaterThan(5);

    const steps: Spec[] = [
      { 'index.php': 'b', 'sites/x/settings.php': 's2', 'sites/default/settings.php': 'd' }, // change + remove below sites/x
      { 'index.php': 'b' }, // removes sites/x and sites/default entirely
      { 'index.php': 'c', 'sites/x/settings.php': 's3' }, // brings sites/x back
      { 'index.php': 'd', sites: { link: 'elsewhere' }, elsewhere: { dir: 0o755 } }, // would replace sites/ by a link: a conflict
    ];
    for (const [i, spec] of steps.entries()) {
      const src = source(spec);
      for (const trust of [true, false]) {
        const run = syncTo(src, { trustCommitted: trust });
        if (i === 3) {
          // sites/ is kept for its user data; everything else is applied and committed
          const { result } = await run;
          expect(result.conflicts).toEqual([{ path: 'sites', wanted: 'symlink', userData: 'sites/default/files' }]);
          expectClean();
          expect(fs.readFileSync(join(dst, 'index.php'), 'utf8')).toBe('d');
          expect(fs.lstatSync(join(dst, 'elsewhere')).isDirectory()).toBe(true);
          expect(fs.existsSync(join(dst, 'sites/x/settings.php'))).toBe(false);
          const seen = await observe(stateDir, KEY, dst);
          expect(seen.drift).toEqual({ changed: [], added: [], removed: [] });
          expect(readCommitted(stateDir, KEY)?.conflicts).toEqual(result.conflicts);
        } else {
          await run;
          expectClean();
          const seen = await observe(stateDir, KEY, dst);
          expect(seen.rootHash).toBe((await manifestOf(src)).rootHash);
          expect(seen.drift).toEqual({ changed: [], added: [], removed: [] });
        }
        expect(await snapshot()).toEqual(before);
      }
    }
    // the removed site's directory stays as the holder of its user data
    expect(fs.existsSync(join(dst, 'sites/default/files/a.txt'))).toBe(true);
    expect(fs.existsSync(join(dst, 'sites/default/settings.php'))).toBe(false);
  });

  describe('a file or symlink wanted where user data is: that path is skipped and reported, the rest applied', () => {
    const v1: Spec = { 'index.php': 'a', 'sites/x.example.com/settings.php': 's', 'sites/default/settings.php': 'd' };
    const asFile: Spec = { 'index.php': 'b', 'sites/x.example.com': 'a file now', 'sites/default/settings.php': 'd2' };
    const conflict = [{ path: 'sites/x.example.com', wanted: 'file', userData: 'sites/x.example.com/files' }];
    const userFile = () => join(dst, 'sites/x.example.com/files/u.jpg');

    for (const how of ['whole', 'delta', 'walk'] as const) {
      it(`a directory turned into a file (${how})`, async () => {
        await syncTo(source(v1));
        writeTree(dst, { 'sites/x.example.com/files/u.jpg': 'user' });
        const b = source(asFile);
        const run = () => (how === 'delta' ? syncDelta(b) : syncTo(b, { trustCommitted: how === 'whole' }));
        const { result } = await run();
        expect(result.conflicts).toEqual(conflict);
        expect(result.rootHash).not.toBe((await manifestOf(b)).rootHash); // what was committed
        expectClean();
        expect(fs.readFileSync(userFile(), 'utf8')).toBe('user');
        expect(fs.readFileSync(join(dst, 'index.php'), 'utf8')).toBe('b');
        expect(fs.readFileSync(join(dst, 'sites/default/settings.php'), 'utf8')).toBe('d2');
        expect(fs.existsSync(join(dst, 'sites/x.example.com/settings.php'))).toBe(false);
        // no drift: what is on disk is what was committed
        expect((await observe(stateDir, KEY, dst)).drift).toEqual({ changed: [], added: [], removed: [] });
        // later converges of the same tree go on working: a hand edit is repaired, the conflict stays reported
        fs.writeFileSync(join(dst, 'index.php'), 'edited by hand');
        const again = await syncTo(b, { trustCommitted: false });
        expect(again.result.conflicts).toEqual(conflict);
        expect(fs.readFileSync(join(dst, 'index.php'), 'utf8')).toBe('b');
        // and a newer tree too (sites turned into a symlink: the same user data stands in the way)
        const c = source({ 'index.php': 'c', sites: { link: 'shared' }, shared: { dir: 0o755 } });
        const third = await syncTo(c);
        expect(third.result.conflicts).toEqual([{ path: 'sites', wanted: 'symlink', userData: 'sites/x.example.com/files' }]);
        expect(fs.readFileSync(join(dst, 'index.php'), 'utf8')).toBe('c');
        expect(fs.readFileSync(userFile(), 'utf8')).toBe('user');
        // once the user data is moved away, the next converge applies what was wanted
        fs.rmSync(join(dst, 'sites/x.example.com/files'), { recursive: true });
        const fixed = await syncTo(c);
        expect(fixed.result.conflicts).toEqual([]);
        await expectSame(dst, c);
        expect(readCommitted(stateDir, KEY)?.conflicts).toEqual([]);
      });
    }

    it('a file added where a removed site left its user data (the holder directory)', async () => {
      await syncTo(source(v1));
      writeTree(dst, { 'sites/x.example.com/files/u.jpg': 'user' });
      // the site leaves the platform: its directory stays, holding the user data
      await syncTo(source({ 'index.php': 'a', 'sites/default/settings.php': 'd' }));
      expect(fs.lstatSync(join(dst, 'sites/x.example.com')).isDirectory()).toBe(true);
      // now the master has a file there: before, this committed a journal that failed at its
      // first op every time (EISDIR) and stopped every converge of the tree
      const b = source(asFile);
      for (const trust of [true, false]) {
        const { result } = await syncTo(b, { trustCommitted: trust });
        expect(result.conflicts).toEqual(conflict);
        expectClean();
        expect(fs.readFileSync(join(dst, 'index.php'), 'utf8')).toBe('b');
        expect(fs.readFileSync(userFile(), 'utf8')).toBe('user');
      }
    });
  });

  it('extra excludes are protected the same way', async () => {
    const a = source({ 'index.php': 'a', 'cache/keep': 'code' });
    await syncTo(a, { excludes: ['cache/runtime'] });
    writeTree(dst, { 'cache/runtime/x': 'user' });
    const b = source({ 'index.php': 'b' });
    await syncTo(b, { excludes: ['cache/runtime'], trustCommitted: false });
    expect(fs.readFileSync(join(dst, 'cache/runtime/x'), 'utf8')).toBe('user');
    expect(fs.existsSync(join(dst, 'cache/keep'))).toBe(false);
    expect(readCommitted(stateDir, KEY)?.excludes).toEqual(['cache/runtime']);
  });
});

describe('converge: drift', () => {
  it('observe reports hand edits, and the next converge repairs and reports them', async () => {
    const a = source({ 'index.php': 'a', 'lib/x.php': 'x', 'lib/y.php': 'y', 'mod/m.php': 'm' });
    await syncTo(a);
    fs.writeFileSync(join(dst, 'lib/x.php'), 'hacked');
    fs.chmodSync(join(dst, 'index.php'), 0o777);
    fs.rmSync(join(dst, 'lib/y.php'));
    fs.writeFileSync(join(dst, 'extra.php'), 'new');
    const seen = await observe(stateDir, KEY, dst);
    expect(seen.drift).toEqual({ changed: ['index.php', 'lib/x.php'], added: ['extra.php'], removed: ['lib/y.php'] });
    // observe marked the tree drifted, so equal root hashes no longer mean "in sync"
    const { result, fetcher } = await syncTo(a);
    expect(result.inSync).toBe(false);
    expect(result.drift).toEqual(seen.drift);
    expect(fetcher.asked.length).toBe(2); // lib/y.php is gone and lib/x.php's content was overwritten
    await expectSame(dst, a);
    expect((await observe(stateDir, KEY, dst)).drift).toEqual({ changed: [], added: [], removed: [] });
    expect((await syncTo(a)).result.inSync).toBe(true);
  });

  it('changes already as desired (the master writing the served tree on a one-box host) are not drift; a hand edit beside them is', async () => {
    const a = source({ 'index.php': 'a', 'sites/x/settings.php': 'old', 'lib/y.php': 'y' });
    await syncTo(a);
    const b = source({ 'index.php': 'a', 'sites/x/settings.php': 'new', 'sites/z/settings.php': 'z', 'lib/y.php': 'y' });
    // the master's own writes, straight into the served tree: exactly what b holds
    fs.writeFileSync(join(dst, 'sites/x/settings.php'), 'new');
    fs.mkdirSync(join(dst, 'sites/z'), { recursive: true });
    fs.writeFileSync(join(dst, 'sites/z/settings.php'), 'z');
    const own = await syncTo(b);
    expect(own.result.drift).toEqual({ changed: [], added: [], removed: [] });
    await expectSame(dst, b);
    // and a hand edit is still drift, repaired and reported
    fs.writeFileSync(join(dst, 'lib/y.php'), 'hacked');
    const c = source({ 'index.php': 'c', 'sites/x/settings.php': 'new', 'sites/z/settings.php': 'z', 'lib/y.php': 'y' });
    const hand = await syncTo(c, { trustCommitted: false });
    expect(hand.result.drift).toEqual({ changed: ['lib/y.php'], added: [], removed: [] });
    await expectSame(dst, c);
  });

  it('trusts the committed manifest by default, and walks with trustCommitted: false', async () => {
    const a = source({ 'index.php': 'a', 'lib/x.php': 'x' });
    await syncTo(a);
    fs.writeFileSync(join(dst, 'lib/x.php'), 'edited');
    expect((await syncTo(a)).result.inSync).toBe(true); // fast path: one small file read, no walk
    expect(fs.readFileSync(join(dst, 'lib/x.php'), 'utf8')).toBe('edited');
    const { result } = await syncTo(a, { trustCommitted: false });
    expect(result.drift.changed).toEqual(['lib/x.php']);
    await expectSame(dst, a);
  });

  it('a directory swapped for a symlink by hand is never written through', async () => {
    const outside = join(base, 'outside');
    writeTree(outside, { 'victim.txt': 'keep' });
    const a = source({ 'd/x': '1', k: 'k' });
    await syncTo(a);
    fs.rmSync(join(dst, 'd'), { recursive: true });
    fs.symlinkSync(outside, join(dst, 'd'));
    const b = source({ 'd/x': '2', 'd/new': 'n', 'd/victim.txt': 'overwritten?', k: 'k' });
    const { result } = await syncTo(b);
    await expectSame(dst, b);
    // the walk lists the link itself (never what is behind it): d changed type, d/x is gone
    expect(result.drift).toEqual({ changed: ['d'], added: [], removed: ['d/x'] });
    expect(fs.readdirSync(outside)).toEqual(['victim.txt']);
    expect(fs.readFileSync(join(outside, 'victim.txt'), 'utf8')).toBe('keep');
  });

  it('a directory swapped for a symlink inside the tree is not written through either', async () => {
    const a = source({ 'd/x': '1', 't/keep': 'k' });
    await syncTo(a);
    fs.rmSync(join(dst, 'd'), { recursive: true });
    fs.symlinkSync('t', join(dst, 'd')); // a link the manifest could describe: seen as a type change
    const b = source({ 'd/x': '1', 'd/new': 'n', 't/keep': 'k' });
    const { result } = await syncTo(b);
    await expectSame(dst, b);
    expect(result.drift.changed).toEqual(['d']);
    expect(fs.readdirSync(join(dst, 't'))).toEqual(['keep']);
  });

  it('symlinks pointing outside the tree (absolute or climbing out) are kept as links, never followed or written through', async () => {
    // The shape of Debian's packaged trees: wordpress links .htaccess to /etc/wordpress/htaccess
    // and wp-includes/js/*.js to ../../../javascript/…; mediawiki links whole directories
    // (extensions, images) and LocalSettings.php to /var/lib/mediawiki/…
    const outside = join(base, 'outside');
    writeTree(outside, { htaccess: 'etc', 'ext/Foo/Foo.php': 'foo', 'LocalSettings.php': 'secret' });
    const before = await fullManifest(outside);
    const spec: Spec = {
      'index.php': '<?php',
      '.htaccess': { link: join(outside, 'htaccess') },
      extensions: { link: join(outside, 'ext') },
      'LocalSettings.php': { link: join(outside, 'LocalSettings.php') },
      'dangling.php': { link: '/nonexistent/spoke/x.php' },
      'wp-includes/js/underscore.js': { link: '../../../javascript/underscore/underscore.js' },
      'wp-includes/up': { link: '../..' },
    };
    const a = source(spec);
    const first = await syncTo(a);
    expect(first.result).toMatchObject({ inSync: false, added: 9 });
    await expectSame(dst, a);
    for (const [rel, v] of Object.entries(spec)) {
      if (typeof v === 'object' && 'link' in v) expect(fs.readlinkSync(join(dst, rel))).toBe(v.link);
    }
    expectClean();
    // the observed tree (what the agent reports) matches the desired one
    expect((await observe(stateDir, KEY, dst)).rootHash).toBe((await manifestOf(a)).rootHash);

    // retarget, replace a linked dir with a real one (and write into it), remove a link, replace
    // a link by a file: every write lands in the tree, never behind a link
    const b = source({
      'index.php': '<?php',
      '.htaccess': { link: '/etc/wordpress/htaccess' },
      'extensions/Foo/Foo.php': 'mine',
      'LocalSettings.php': 'now a file',
      'wp-includes/js/underscore.js': { link: '../../../javascript/underscore/underscore.js' },
      'wp-includes/up': 'now a file too',
    });
    for (const trust of [true, false]) {
      await syncTo(b, { trustCommitted: trust });
      await expectSame(dst, b);
      expectClean();
      expect(await fullManifest(outside)).toEqual(before);
      await syncTo(a, { trustCommitted: trust });
      await expectSame(dst, a);
      expectClean();
      expect(await fullManifest(outside)).toEqual(before);
    }
  });

  it('observe of a tree never converged reports no drift', async () => {
    writeTree(dst, { a: '1' });
    const seen = await observe(stateDir, KEY, dst);
    expect(seen.drift).toEqual({ changed: [], added: [], removed: [] });
    expect(seen.manifest.entries.map((e) => e.path)).toEqual(['a']);
    expect(readCommitted(stateDir, KEY)).toBeNull();
  });

  it('converges a tree that exists but was never committed (adoption)', async () => {
    writeTree(dst, { keep: 'same', stale: 'x', 'sites/a/files/u': 'user' });
    const a = source({ keep: 'same', fresh: 'y' });
    const { result, fetcher } = await syncTo(a);
    expect(result).toMatchObject({ added: 1, removed: 1, changed: 0 });
    expect(fetcher.asked.length).toBe(1);
    expect(fs.readFileSync(join(dst, 'sites/a/files/u'), 'utf8')).toBe('user');
    expect((await observe(stateDir, KEY, dst)).rootHash).toBe((await manifestOf(a)).rootHash);
  });
});

describe('converge: reuse', () => {
  it('copies content from another tree instead of fetching it', async () => {
    const shared: Spec = { 'core/a.php': 'aaa', 'core/b.php': 'bbb', 'misc/logo.png': { content: Buffer.alloc(5000, 1) } };
    const s1 = source({ ...shared, 'only1.php': '1' });
    const other = join(base, 'host', 'other');
    await converge({ treeKey: '/other', hostRoot: other, stateDir, desired: await manifestOf(s1), fetcher: copyFetcher([s1]) });
    const s2 = source({
      'core/a.php': { content: 'aaa', mode: 0o200 }, // placed first, then the source of the copies below
      'core/b.php': 'bbb',
      'img/logo.png': { content: Buffer.alloc(5000, 1) },
      'x/a-again.php': { content: 'aaa', mode: 0o400 },
      'x/a-third.php': 'aaa',
      'x/new.php': 'fetched',
      'x/new-again.php': { content: 'fetched', mode: 0o600 },
    });
    const reuse = buildReuseIndex(stateDir, new Map([['/other', other]]));
    const fetcher = copyFetcher([s2]);
    const r = await converge({ treeKey: KEY, hostRoot: dst, stateDir, desired: await manifestOf(s2), fetcher, reuse });
    expect(fetcher.asked).toHaveLength(1);
    expect(r).toMatchObject({ filesFetched: 1, filesReused: 3, bytesReused: 5006 });
    await expectSame(dst, s2);
    // the other tree is untouched (copies, not links)
    await expectSame(other, s1);
  });

  it('other trees are not searched when less than reuseMinBytes is left to fetch', async () => {
    const s1 = source({ 'a.php': 'shared content', 'big.bin': { content: Buffer.alloc(5000, 2) } });
    const other = join(base, 'host', 'other');
    await converge({ treeKey: '/other', hostRoot: other, stateDir, desired: await manifestOf(s1), fetcher: copyFetcher([s1]) });
    const s2 = source({ 'b.php': 'shared content', 'c.bin': { content: Buffer.alloc(5000, 2) } });
    let lookups = 0;
    const index = buildReuseIndex(stateDir, new Map([['/other', other]]));
    const reuse = (h: string) => {
      lookups++;
      return index(h);
    };
    const small = copyFetcher([s2]);
    const r = await converge({ treeKey: KEY, hostRoot: dst, stateDir, desired: await manifestOf(s2), fetcher: small, reuse, reuseMinBytes: 5015 });
    expect(lookups).toBe(0);
    expect(r).toMatchObject({ filesFetched: 2, filesReused: 0 });
    await expectSame(dst, s2);
    // at the threshold, the other tree is used
    const dst2 = join(base, 'host', 'third');
    const r2 = await converge({
      treeKey: '/third',
      hostRoot: dst2,
      stateDir,
      desired: await manifestOf(s2),
      fetcher: copyFetcher([s2]),
      reuse,
      reuseMinBytes: 5014,
    });
    expect(lookups).toBe(2);
    expect(r2).toMatchObject({ filesFetched: 0, filesReused: 2 });
  });

  it('a helper thread copies a share of what other trees hold; what it hands back is done here, what does not match is fetched', async () => {
    const spec: Spec = {};
    for (let i = 0; i < 300; i++) spec[`core/m${i % 7}/f${i}.php`] = { content: `<?php // ${i} ${'y'.repeat(i)}`, mode: i % 5 === 0 ? 0o755 : 0o644 };
    const s1 = source(spec);
    const other = join(base, 'host', 'other');
    await converge({ treeKey: '/other', hostRoot: other, stateDir, desired: await manifestOf(s1), fetcher: copyFetcher([s1]) });
    // the other tree's copy of one file no longer holds its content (same size)
    fs.writeFileSync(join(other, 'core/m3/f297.php'), fs.readFileSync(join(other, 'core/m3/f297.php'), 'utf8').toUpperCase());
    const s2 = source({ ...spec, 'core/own.php': 'mine' });
    const worker = new FileWorker();
    let copiedThere = 0;
    const helper: FileHelper = {
      hash: (items, max) => worker.hash(items, max),
      copy: async (items) => {
        const done = await worker.copy(items);
        copiedThere += done.filter((d) => d === true).length;
        // the first ten come back undone: this thread copies them itself
        return done.map((d, k) => (k < 10 ? (fs.rmSync(items[k]?.[1] as string, { force: true }), undefined) : d));
      },
    };
    try {
      const reuse = buildReuseIndex(stateDir, new Map([['/other', other]]));
      const fetcher = copyFetcher([s2]);
      const r = await converge({ treeKey: KEY, hostRoot: dst, stateDir, desired: await manifestOf(s2), fetcher, reuse, helper });
      expect(copiedThere).toBeGreaterThan(100);
      expect(r).toMatchObject({ filesFetched: 2, filesReused: 299 });
      await expectSame(dst, s2);
      expect(fs.readFileSync(join(other, 'core/m0/f0.php'), 'utf8')).toBe('<?php // 0 '); // copied from, not moved
    } finally {
      worker.close();
    }
  });

  it('reports reuse progress while it copies, so a second platform does not sit silent', async () => {
    const spec: Spec = {};
    for (let i = 0; i < 2100; i++) spec[`m${i % 7}/f${i}.php`] = `<?php // ${i}`;
    const s1 = source(spec);
    const other = join(base, 'host', 'other');
    await converge({ treeKey: '/other', hostRoot: other, stateDir, desired: await manifestOf(s1), fetcher: copyFetcher([s1]) });
    const s2 = source({ ...spec, 'own.php': 'mine' });
    const seen: { files: number; filesTotal: number; bytes: number }[] = [];
    const reuse = buildReuseIndex(stateDir, new Map([['/other', other]]));
    await converge({
      treeKey: KEY,
      hostRoot: dst,
      stateDir,
      desired: await manifestOf(s2),
      fetcher: copyFetcher([s2]),
      reuse,
      onProgress: (p) => p.phase === 'reuse' && seen.push({ files: p.files, filesTotal: p.filesTotal, bytes: p.bytes }),
    });
    expect(seen.map((p) => p.files)).toEqual([1024, 2048]);
    expect(seen.every((p) => p.filesTotal === 2101 && p.bytes > 0)).toBe(true);
  });

  it('a reuse source that no longer holds its hash is not used', async () => {
    const s1 = source({ 'a.php': 'original' });
    const other = join(base, 'host', 'other');
    await converge({ treeKey: '/other', hostRoot: other, stateDir, desired: await manifestOf(s1), fetcher: copyFetcher([s1]) });
    fs.writeFileSync(join(other, 'a.php'), 'ORIGINAL'); // same size, other bytes
    const reuse = buildReuseIndex(stateDir, new Map([['/other', other]]));
    const s2 = source({ 'b.php': 'original' });
    const fetcher = copyFetcher([s2]);
    await converge({ treeKey: KEY, hostRoot: dst, stateDir, desired: await manifestOf(s2), fetcher, reuse });
    expect(fetcher.asked.length).toBe(1);
    await expectSame(dst, s2);
  });
});

describe('converge: refusals leave the tree as it was', () => {
  it('a corrupt blob fails with BLOB_HASH_MISMATCH before anything is committed', async () => {
    const a = source({ 'index.php': 'a', 'lib/x.php': 'x' });
    await syncTo(a);
    const b = source({ 'index.php': 'b', 'lib/x.php': 'x', 'lib/new.php': 'new' });
    const bad = (await manifestOf(b)).entries.find((e) => e.path === 'lib/new.php') as ManifestEntry;
    const err = await syncTo(b, { fetcher: copyFetcher([b], { corrupt: new Set([bad.hash]) }) }).catch((e: unknown) => e);
    expect(isSpokeError(err, 'BLOB_HASH_MISMATCH')).toBe(true);
    await expectSame(dst, a);
    expectClean();
    expect(readCommitted(stateDir, KEY)?.rootHash).toBe((await manifestOf(a)).rootHash);
    // and on an initial sync
    fs.rmSync(dst, { recursive: true });
    fs.rmSync(stateDir, { recursive: true });
    const err2 = await syncTo(b, { fetcher: copyFetcher([b], { corrupt: new Set([bad.hash]) }) }).catch((e: unknown) => e);
    expect(isSpokeError(err2, 'BLOB_HASH_MISMATCH')).toBe(true);
    // only the blobs kept for a retry (re-hashed before any use) may remain
    expect(fs.readdirSync(join(base, 'host')).filter((n) => !n.startsWith('.spoke-staging-partial-'))).toEqual([]);
  });

  it('a blob that never arrives fails too', async () => {
    const a = source({ x: '1' });
    const fetcher: TestFetcher = { asked: [], calls: 0, fetch: async () => undefined };
    await expect(syncTo(a, { fetcher })).rejects.toThrow(/did not arrive/);
    expect(fs.existsSync(dst)).toBe(false);
  });

  const entry = (path: string, extra: Partial<ManifestEntry> = {}): ManifestEntry => ({
    path,
    type: 'file',
    mode: 0o644,
    size: 1,
    hash: sha256Hex('x'),
    ...extra,
  });
  const cases: [string, () => Manifest, string][] = [
    ['a path that climbs out', () => buildManifest([entry('../evil')]), 'ARCHIVE_UNSAFE'],
    ['an absolute path', () => buildManifest([entry('/etc/passwd')]), 'ARCHIVE_UNSAFE'],
    [
      'a symlink with a control character in its target',
      () => buildManifest([entry('l', { type: 'symlink', target: 'a\nb', hash: sha256Hex('a\nb') })]),
      'ARCHIVE_UNSAFE',
    ],
    ['a symlink with an empty target', () => buildManifest([entry('l', { type: 'symlink', target: '', hash: sha256Hex('') })]), 'ARCHIVE_UNSAFE'],
    ['a setuid mode', () => buildManifest([entry('x', { mode: 0o4755 })]), 'ARCHIVE_UNSAFE'],
    [
      'a user data path',
      () =>
        buildManifest([
          entry('sites', { type: 'dir', size: 0, hash: '' }),
          entry('sites/x', { type: 'dir', size: 0, hash: '' }),
          entry('sites/x/files', { type: 'dir', size: 0, hash: '' }),
        ]),
      'INVALID_ARGUMENT',
    ],
    ['a missing parent dir', () => buildManifest([entry('a/b')]), 'INVALID_ARGUMENT'],
    ['a wrong root hash', () => ({ ...buildManifest([entry('x')]), rootHash: sha256Hex('nope') }), 'INVALID_ARGUMENT'],
    ['a control character', () => buildManifest([entry('a\nb')]), 'ARCHIVE_UNSAFE'],
  ];
  for (const [name, make, code] of cases) {
    it(`refuses ${name} (${code})`, async () => {
      const fetcher = copyFetcher([]);
      const err = await converge({ treeKey: KEY, hostRoot: dst, stateDir, desired: make(), fetcher }).catch((e: unknown) => e);
      expect(isSpokeError(err, code as 'ARCHIVE_UNSAFE')).toBe(true);
      expect(fetcher.calls).toBe(0);
      expect(fs.existsSync(dst)).toBe(false);
    });
  }

  it('refuses a relative or unnormalised hostRoot', async () => {
    const a = source({ x: '1' });
    await expect(syncTo(a, { hostRoot: 'rel/path' })).rejects.toThrow(/absolute/);
    await expect(syncTo(a, { hostRoot: `${dst}/../x` })).rejects.toThrow(/normalised/);
  });

  it('a cancelled converge changes nothing', async () => {
    const a = source({ x: '1' });
    await syncTo(a);
    const b = source({ x: '2' });
    const ac = new AbortController();
    const fetcher = copyFetcher([b], { onBlob: () => ac.abort() });
    const err = await syncTo(b, { fetcher, signal: ac.signal }).catch((e: unknown) => e);
    expect(isSpokeError(err, 'TASK_CANCELLED')).toBe(true);
    await expectSame(dst, a);
    expectClean();
  });
});

describe('replayJournals', () => {
  /** Runs a converge that "crashes" (throws) at the first step whose description matches. */
  async function crashAt(src: string, match: RegExp): Promise<void> {
    const crash = new Error('crash');
    const err = await syncTo(src, {
      onStep: (_n, what) => {
        if (match.test(what)) throw crash;
      },
    }).catch((e: unknown) => e);
    expect(err).toBe(crash);
  }

  it('finishes an interrupted apply', async () => {
    const a = source({ 'a/1': '1', 'a/2': '2', b: 'b', l: { link: 'b' } });
    const b = source({ a: 'file now', b: 'B', 'c/d': 'd', l: { link: 'a' } });
    await syncTo(a);
    await crashAt(b, /^op 3 /);
    expect(fs.existsSync(join(treeStateDir(stateDir, KEY), 'journal.json'))).toBe(true);
    expect(await replayJournals(stateDir)).toEqual([KEY]);
    await expectSame(dst, b);
    expectClean();
    expect(readCommitted(stateDir, KEY)?.rootHash).toBe((await manifestOf(b)).rootHash);
    expect(await replayJournals(stateDir)).toEqual([]);
  });

  it('a journal whose ops are done and whose staging dir is gone replays fine', async () => {
    const a = source({ x: '1', y: '2' });
    const b = source({ x: '11', z: '3', d: { dir: 0o700 } });
    await syncTo(a);
    await crashAt(b, /^commit head$/);
    const staging = fs.readdirSync(join(base, 'host')).find((n) => n.startsWith('.spoke-staging-')) as string;
    fs.rmSync(join(base, 'host', staging), { recursive: true });
    expect(await replayJournals(stateDir)).toEqual([KEY]);
    await expectSame(dst, b);
    expectClean();
  });

  it('a journal that cannot be completed fails replay loudly; the next converge abandons it and works from what is on disk', async () => {
    const a = source({ x: '1' });
    const b = source({ x: '1', y: 'new', z: 'other' });
    await syncTo(a);
    await crashAt(b, /^op 0 /);
    const staging = fs.readdirSync(join(base, 'host')).find((n) => n.startsWith('.spoke-staging-')) as string;
    fs.rmSync(join(base, 'host', staging), { recursive: true });
    const err = await replayJournals(stateDir).catch((e: unknown) => e);
    expect(isSpokeError(err, 'BLOB_HASH_MISMATCH')).toBe(true);
    expect(fs.existsSync(join(treeStateDir(stateDir, KEY), 'journal.json'))).toBe(true);
    // before, every converge of the tree refused from here on ("gone from staging")
    const { result } = await syncTo(b);
    expect(result.abandonedJournal).toMatch(/gone from staging/);
    await expectSame(dst, b);
    expectClean();
    expect(readCommitted(stateDir, KEY)?.rootHash).toBe((await manifestOf(b)).rootHash);
    expect((await syncTo(b)).result.abandonedJournal).toBeUndefined();
  });

  it('discards a staging dir whose journal was never written', async () => {
    const a = source({ x: '1' });
    const b = source({ x: '2' });
    await syncTo(a);
    // an in-process throw before the journal cleans up after itself…
    await crashAt(b, /^journal$/);
    expectClean();
    // …a SIGKILL leaves the staging dir and its intent record: replay removes them
    const staging = join(base, 'host', '.spoke-staging-d7-0123456789ab');
    writeTree(staging, { 'blobs/abc': 'partial' });
    fs.writeFileSync(join(treeStateDir(stateDir, KEY), 'staging.json'), JSON.stringify({ path: staging }));
    expect(await replayJournals(stateDir)).toEqual([]);
    await expectSame(dst, a);
    expectClean();
  });
});

describe('a converge that fails half-way', () => {
  it('keeps the blobs that arrived, and the retry does not fetch them again', async () => {
    const { mkdtempSync, mkdirSync, writeFileSync, rmSync, readdirSync, copyFileSync } = await import('node:fs');
    const { tmpdir } = await import('node:os');
    const { join } = await import('node:path');
    const { walkTree } = await import('@spoke/shared');
    const base = mkdtempSync(join(tmpdir(), 'spoke-partial-'));
    try {
      const src = join(base, 'src');
      mkdirSync(src);
      for (let i = 0; i < 10; i++) writeFileSync(join(src, `f${i}.txt`), `content ${i}`);
      const desired = (await walkTree(src)).manifest;
      const byHash = new Map(desired.entries.filter((e) => e.type === 'file').map((e) => [e.hash, join(src, e.path)]));
      const asked: string[][] = [];
      let failNext = true;
      const fetcher = {
        async fetch(hashes: string[], dir: string) {
          asked.push([...hashes]);
          for (const [i, h] of hashes.entries()) {
            if (failNext && i === 5) {
              failNext = false;
              throw new Error('link lost');
            }
            copyFileSync(byHash.get(h) as string, join(dir, h));
          }
        },
      };
      const hostRoot = join(base, 'host', 'tree');
      const stateDir = join(base, 'state');
      await expect(converge({ treeKey: '/t', hostRoot, stateDir, desired, fetcher })).rejects.toThrow('link lost');
      expect(readdirSync(join(base, 'host')).some((n) => n.includes('partial'))).toBe(true);
      const r = await converge({ treeKey: '/t', hostRoot, stateDir, desired, fetcher });
      expect(asked[1]).toHaveLength(5);
      expect(r.filesFetched).toBe(5);
      expect((await walkTree(hostRoot)).manifest.rootHash).toBe(desired.rootHash);
      expect(readdirSync(join(base, 'host')).filter((n) => n.startsWith('.spoke'))).toEqual([]);
    } finally {
      rmSync(base, { recursive: true, force: true });
    }
  });
});

describe('a full disk', () => {
  // A real full file system: a 2 MiB tmpfs (mounting needs root, as the CI has).
  const canMount = process.getuid?.() === 0;
  it.runIf(canMount)('fails with DISK_LOW, and the tree keeps its last complete version', async () => {
    const base = fs.mkdtempSync('/tmp/spoke-full-');
    const mnt = join(base, 'mnt');
    fs.mkdirSync(mnt);
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=2m', 'tmpfs', mnt]);
    try {
      const src = join(base, 'src');
      const dst = join(mnt, 'www', 'p');
      const stateDir = join(mnt, 'state');
      writeTree(src, { 'index.php': '<?php v1', 'small.txt': 'small' });
      await converge({ treeKey: 'p', hostRoot: dst, stateDir, desired: await manifestOf(src), fetcher: copyFetcher([src]) });
      const v1 = await manifestOf(dst);
      // v2 needs ~3 MiB of new content: more than the file system holds
      fs.writeFileSync(join(src, 'index.php'), '<?php v2');
      for (let i = 0; i < 3; i++) fs.writeFileSync(join(src, `big${i}.bin`), Buffer.alloc(1024 * 1024, i + 1));
      const err = await converge({ treeKey: 'p', hostRoot: dst, stateDir, desired: await manifestOf(src), fetcher: copyFetcher([src]) }).catch(
        (e: unknown) => e,
      );
      expect(isSpokeError(err) && err.code).toBe('DISK_LOW');
      expect((err as Error).message).toMatch(/no space left for .*file system full.*free space/);
      expect((await manifestOf(dst)).rootHash).toBe(v1.rootHash);
    } finally {
      execFileSync('umount', [mnt]);
      fs.rmSync(base, { recursive: true, force: true });
    }
  });
});
