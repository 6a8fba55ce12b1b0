import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { RootMap, buildManifest, createLogger, frameBlobs, walkTree, type ManifestEntry, type wire } from '@spoke/shared';
import { mergeDelta, type ManifestDelta } from './converge/index.js';
import { scratch, writeTree } from './converge/testkit.js';
import { AgentTrees } from './sync.js';

const f = (path: string, hash = 'a'.repeat(64)): ManifestEntry => ({ path, type: 'file', mode: 0o644, size: 1, hash });
const d = (path: string): ManifestEntry => ({ path, type: 'dir', mode: 0o755, size: 0, hash: '' });

describe('mergeDelta', () => {
  it('gives the same manifest as the master has, for adds, changes, removals and type changes', () => {
    const base = buildManifest([d('a'), f('a/x'), f('a/y'), f('b'), d('c'), f('c/z'), f('é')]).entries;
    const desired = buildManifest([d('a'), f('a/x', 'b'.repeat(64)), f('a/new'), d('b'), f('b/inner'), f('é'), f('z')]);
    const byPath = new Map(base.map((e) => [e.path, e]));
    const upserts = desired.entries.filter((e) => JSON.stringify(byPath.get(e.path)) !== JSON.stringify(e));
    const keep = new Set(desired.entries.map((e) => e.path));
    const removed = base.filter((e) => !keep.has(e.path)).map((e) => e.path);
    const merged = mergeDelta(base, upserts, removed);
    expect(buildManifest(merged).rootHash).toBe(desired.rootHash);
    expect(merged.map((e) => e.path)).toEqual(desired.entries.map((e) => e.path));
  });

  it('an empty delta returns the base', () => {
    const base = buildManifest([f('a'), f('b')]).entries;
    expect(mergeDelta(base, [], [])).toEqual(base);
  });
});

describe('AgentTrees.converge over the wire', () => {
  /**
   * A fake master client: GetManifest answers with `delta` (when asked against a base and one is
   * set) or the whole manifest of `src`; FetchBlobs frames the files of `src`.
   */
  function fakeClient(src: () => string, delta: () => ManifestDelta | undefined) {
    const asked: { baseRootHash: string }[] = [];
    const client = {
      getManifest: (req: { tree: string; rootHash: string; baseRootHash: string }) => {
        asked.push({ baseRootHash: req.baseRootHash });
        const d = req.baseRootHash ? delta() : undefined;
        const chunks = (async function* () {
          const m = (await walkTree(src())).manifest;
          const wireEntry = (e: ManifestEntry) => ({ path: e.path, type: e.type, mode: e.mode, size: e.size, hash: e.hash, target: e.target ?? '' });
          yield d
            ? { entries: d.upserts.map(wireEntry), removed: d.removed, rootHash: d.rootHash, total: 0, delta: true, baseRootHash: d.base }
            : { entries: m.entries.map(wireEntry), removed: [], rootHash: m.rootHash, total: m.entries.length, delta: false, baseRootHash: '' };
        })();
        return Object.assign(Readable.from(chunks), { cancel: () => undefined });
      },
      fetchBlobs: (req: { hashes: string[] }) => {
        const chunks = (async function* () {
          const m = (await walkTree(src())).manifest;
          const at = new Map(m.entries.filter((e) => e.type === 'file').map((e) => [e.hash, join(src(), e.path)]));
          for await (const data of frameBlobs(req.hashes.map((hash) => ({ hash, path: at.get(hash) as string })))) yield { data };
        })();
        return Object.assign(Readable.from(chunks), { cancel: () => undefined });
      },
    };
    return { client: client as unknown as wire.AgentClient, asked };
  }

  it('re-bases on the whole manifest and the real tree when the committed manifest cannot take the delta', async () => {
    const { dir, cleanup } = scratch('spoke-sync-');
    try {
      const lines: string[] = [];
      const trees = new AgentTrees({
        stateDir: join(dir, 'state'),
        roots: ['/var/www'],
        rootMap: new RootMap(join(dir, 'host')),
        log: createLogger({ level: 'debug', destination: { write: (l: string) => void lines.push(l) } }),
      });
      let src = join(dir, 'v1');
      writeTree(src, { 'index.php': 'v1', 'sites/default/settings.php': 's' });
      // A delta whose removed path the committed manifest does not have: refused by the engine.
      let bad: ManifestDelta | undefined;
      const { client, asked } = fakeClient(
        () => src,
        () => bad,
      );
      trees.setClient(client);
      const req = async () => ({ tree: '/var/www/p', rootHash: (await walkTree(src)).manifest.rootHash, excludes: [], label: 'p' });
      const first = await trees.converge(await req(), () => undefined);
      expect(first.inSync).toBe(false);
      src = join(dir, 'v2');
      writeTree(src, { 'index.php': 'v2', 'sites/default/settings.php': 's' });
      const v2 = (await walkTree(src)).manifest;
      const committed = (await walkTree(join(dir, 'v1'))).manifest;
      bad = { base: committed.rootHash, rootHash: v2.rootHash, upserts: v2.entries.filter((e) => e.path === 'index.php'), removed: ['not/there.php'] };
      const r = await trees.converge(await req(), () => undefined);
      expect(r.rootHash).toBe(v2.rootHash);
      expect(readFileSync(join(dir, 'host/var/www/p/index.php'), 'utf8')).toBe('v2');
      expect(asked.map((a) => a.baseRootHash)).toEqual(['', committed.rootHash, '']);
      expect(lines.join('')).toMatch(/manifest delta refused; converging from the whole manifest against what is on disk/);
    } finally {
      cleanup();
    }
  });
});

describe('AgentTrees.startup', () => {
  it('starts even when an interrupted converge cannot be finished (the agent must come up and connect)', async () => {
    const { dir, cleanup } = scratch('spoke-sync-');
    try {
      const lines: string[] = [];
      const stateDir = join(dir, 'state');
      const treeDir = join(stateDir, 'trees', 'a'.repeat(64));
      mkdirSync(treeDir, { recursive: true });
      writeFileSync(join(treeDir, 'journal.json'), '{"v":1,"ops":[{"op":"pla'); // torn
      const trees = new AgentTrees({
        stateDir,
        roots: ['/var/www'],
        rootMap: new RootMap(join(dir, 'host')),
        log: createLogger({ level: 'debug', destination: { write: (l: string) => void lines.push(l) } }),
      });
      await expect(trees.startup()).resolves.toBeUndefined();
      expect(lines.join('')).toMatch(/an interrupted converge could not be finished; the next converge of its tree starts from what is on disk/);
    } finally {
      cleanup();
    }
  });
});
