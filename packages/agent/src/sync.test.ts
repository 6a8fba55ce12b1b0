import { describe, expect, it } from 'vitest';
import { buildManifest, type ManifestEntry } from '@spoke/shared';
import { mergeDelta } from './converge/index.js';

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
