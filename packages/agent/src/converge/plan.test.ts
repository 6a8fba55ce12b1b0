import * as fs from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { buildManifest, diffManifests, excludeMatcher, isSpokeError, type ManifestEntry, sha256Hex } from '@spoke/shared';
import { buildOps, diffChecked, diffFromDelta, lookupIn } from './plan.js';
import { type ManifestDelta, mergeDelta, openStatCache } from './state.js';
import { deltaOf, rng, scratch } from './testkit.js';

const ex = excludeMatcher({});
const file = (path: string, content = path, mode = 0o644): ManifestEntry => ({
  path,
  type: 'file',
  mode,
  size: Buffer.byteLength(content),
  hash: sha256Hex(content),
});
const dir = (path: string, mode = 0o755): ManifestEntry => ({ path, type: 'dir', mode, size: 0, hash: '' });
const link = (path: string, target: string): ManifestEntry => ({
  path,
  type: 'symlink',
  mode: 0o777,
  size: Buffer.byteLength(target),
  hash: sha256Hex(target),
  target,
});

/** A random valid manifest over a small name space, so two of them overlap a lot. */
function randomManifest(seed: number): ManifestEntry[] {
  const r = rng(seed);
  const names = ['a', 'a b', 'a.c', 'a-x', 'b', 'é', '日本', 'z0', 'ü'];
  const out: ManifestEntry[] = [];
  const walk = (prefix: string, depth: number) => {
    for (const n of names) {
      if (r() < 0.45) continue;
      const p = prefix === '' ? n : `${prefix}/${n}`;
      const k = r();
      if (k < 0.3 && depth < 3) {
        out.push(dir(p, r() < 0.8 ? 0o755 : 0o700));
        walk(p, depth + 1);
      } else if (k < 0.85) {
        out.push(file(p, String(Math.floor(r() * 4)), r() < 0.8 ? 0o644 : 0o600));
      } else {
        out.push(link(p, r() < 0.5 ? 'a' : 'b'));
      }
    }
  };
  walk('', 0);
  return out;
}

describe('diffChecked', () => {
  it('equals diffManifests (same lists, same order) on 300 random pairs', () => {
    for (let i = 0; i < 300; i++) {
      const a = buildManifest(randomManifest(i));
      const b = buildManifest(randomManifest(i + 1000));
      for (const check of ['all', 'changed', 'none'] as const) {
        expect(diffChecked(a, b, ex, check)).toEqual(diffManifests(a, b));
      }
    }
  });

  it("checks every entry with 'all', only differing ones with 'changed'", () => {
    const bad = { ...file('x'), mode: 0o4755 }; // an entry no check would accept
    const base = { entries: [bad], rootHash: 'r' };
    const desired = buildManifest([bad, file('y')]);
    expect(() => diffChecked(base, desired, ex, 'all')).toThrow(/mode 4755/);
    // equal to the (already checked) base: not checked again
    expect(diffChecked(base, desired, ex, 'changed').added.map((e) => e.path)).toEqual(['y']);
    const changed = buildManifest([{ ...bad, mode: 0o6755 }]);
    expect(() => diffChecked(base, changed, ex, 'changed')).toThrow(/mode 6755/);
  });

  it('always checks order, uniqueness, parents and the root hash', () => {
    const e = { entries: [], rootHash: '' };
    const unsorted = { entries: [file('b'), file('a')], rootHash: '' };
    expect(() => diffChecked(e, unsorted, ex, 'changed')).toThrow(/not sorted/);
    const dup = { entries: [file('a'), file('a')], rootHash: '' };
    expect(() => diffChecked(e, dup, ex, 'changed')).toThrow(/twice/);
    const orphan = { entries: [file('d/x')], rootHash: '' };
    expect(() => diffChecked(e, orphan, ex, 'changed')).toThrow(/not its directory/);
    const notDir = { entries: [file('d'), file('d/x')], rootHash: '' };
    expect(() => diffChecked(e, notDir, ex, 'changed')).toThrow(/not its directory/);
    const wrongRoot = { ...buildManifest([file('a')]), rootHash: sha256Hex('x') };
    const err = (() => {
      try {
        diffChecked(e, wrongRoot, ex, 'changed');
      } catch (x) {
        return x;
      }
    })();
    expect(isSpokeError(err, 'INVALID_ARGUMENT')).toBe(true);
  });
});

describe('diffFromDelta', () => {
  it('equals diffChecked of the merged manifest, and merges to the desired one, on 300 random pairs', () => {
    for (let i = 0; i < 300; i++) {
      const a = buildManifest(randomManifest(i));
      const b = buildManifest(randomManifest(i + 1000));
      const d = deltaOf(a, b);
      const got = diffFromDelta(a, d, ex);
      expect(got.desired).toEqual(b);
      expect(got.diff).toEqual(diffChecked(a, b, ex, 'changed'));
      expect(mergeDelta(a.entries, d.upserts, d.removed)).toEqual(b.entries);
    }
  });

  it('refuses a delta that is unsorted, repeats, removes what is not there, orphans or hides entries, or does not hash to its root', () => {
    const a = buildManifest([dir('d'), file('d/x'), file('f')]);
    const refuse = (d: Partial<ManifestDelta>, msg: RegExp) => {
      const delta: ManifestDelta = { base: a.rootHash, rootHash: a.rootHash, upserts: [], removed: [], ...d };
      let err: unknown;
      try {
        diffFromDelta(a, delta, ex);
      } catch (e) {
        err = e;
      }
      expect(isSpokeError(err, 'INVALID_ARGUMENT') || isSpokeError(err, 'ARCHIVE_UNSAFE')).toBe(true);
      expect((err as Error).message).toMatch(msg);
    };
    refuse({ upserts: [file('b'), file('a')] }, /not sorted/);
    refuse({ upserts: [file('a'), file('a')] }, /twice/);
    refuse({ removed: ['f', 'f'] }, /twice/);
    refuse({ removed: ['nope'] }, /does not have/);
    refuse({ removed: ['d'] }, /keeps what is below/);
    refuse({ upserts: [file('d', 'now a file')] }, /keeps what is below/);
    refuse({ upserts: [file('n/x')] }, /not its directory/);
    refuse({ upserts: [file('f/x')] }, /not its directory/);
    refuse({ upserts: [file('f')], removed: ['f'] }, /both removes and lists/);
    refuse({ upserts: [{ ...file('g'), mode: 0o4755 }] }, /mode 4755/);
    refuse({ upserts: [file('../up')] }, /unsafe path/);
    refuse({ upserts: [file('sites/x/files')] }, /excluded/);
    refuse({ upserts: [file('g')] }, /root hash/);
    // the same changes, well formed, pass
    const ok = buildManifest([dir('d'), file('d/x', 'new'), file('f'), file('g')]);
    expect(diffFromDelta(a, deltaOf(a, ok), ex).diff.changed.map((e) => e.path)).toEqual(['d/x']);
  });
});

describe('lookupIn', () => {
  it('finds every entry by binary search in byte order', () => {
    const m = buildManifest(randomManifest(7));
    const find = lookupIn(m.entries);
    for (const e of m.entries) expect(find(e.path)).toBe(e);
    expect(find('nope')).toBeUndefined();
    expect(find('')).toBeUndefined();
  });
});

describe('buildOps', () => {
  it('orders ops: unlock, removals deepest first, type changes, additions, changes, modes, dir modes last', () => {
    const a = buildManifest([dir('ro', 0o555), file('ro/old'), dir('t'), file('t/x'), file('f'), file('m'), link('l', 'f')]);
    const b = buildManifest([dir('ro', 0o555), file('ro/new'), file('t', 'now a file'), dir('f', 0o750), file('f/in'), file('m', 'm', 0o600), link('l', 'm')]);
    const ops = buildOps('/nonexistent', lookupIn(a.entries), diffManifests(a, b), ex);
    expect(ops.map((o) => `${o.op} ${'path' in o ? o.path : ''}${'ifType' in o && o.ifType ? ` if ${o.ifType}` : ''}`)).toEqual([
      'chmod ro',
      'rm t/x',
      'rm ro/old',
      'rm f if file',
      'mkdir f',
      'rm t if dir',
      'place t',
      'place f/in',
      'place ro/new',
      'symlink l',
      'chmod m',
      'chmod ro',
      'chmod f',
    ]);
    expect(ops[0]).toMatchObject({ mode: 0o755, ifDir: true });
    expect(ops.at(-2)).toMatchObject({ path: 'ro', mode: 0o555 });
  });

  it('copies a blob for all but its last use', () => {
    const a = buildManifest([]);
    const b = buildManifest([file('x', 'same'), file('y', 'same'), file('z', 'same')]);
    const ops = buildOps('/nonexistent', lookupIn(a.entries), diffManifests(a, b), ex);
    expect(ops.map((o) => ('copy' in o ? o.copy : undefined))).toEqual([true, true, undefined]);
  });
});

describe('stat cache', () => {
  it('keeps only the records a walk used or made, and persists them', () => {
    const { dir: d, cleanup } = scratch();
    try {
      const c = openStatCache(join(d, 'tree-state'), '/t');
      c.set('/t/a', { ino: 1, size: 2, mtimeMs: 3, ctimeMs: 4, hash: 'h' });
      c.set('/t/b', { ino: 5, size: 6, mtimeMs: 7, ctimeMs: 8, hash: 'g' });
      c.finish();
      const disk = JSON.parse(fs.readFileSync(join(d, 'tree-state', 'stat.json'), 'utf8')) as { records: object };
      expect(disk.records).toEqual({ a: [1, 2, 3, 4, 'h'], b: [5, 6, 7, 8, 'g'] });
      const c2 = openStatCache(join(d, 'tree-state'), '/t');
      expect(c2.get('/t/a')).toEqual({ ino: 1, size: 2, mtimeMs: 3, ctimeMs: 4, hash: 'h' });
      c2.finish(); // b was not seen: dropped
      const disk2 = JSON.parse(fs.readFileSync(join(d, 'tree-state', 'stat.json'), 'utf8')) as { records: object };
      expect(Object.keys(disk2.records)).toEqual(['a']);
    } finally {
      cleanup();
    }
  });
});
