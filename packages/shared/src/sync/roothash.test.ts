import { describe, expect, it } from 'vitest';
import { dir, file, link } from './testentries.js';
import { buildManifest, computeRootHash, type ManifestEntry } from './manifest.js';
import { comparePaths } from './paths.js';
import { RootIndex, rootHashOfSorted } from './roothash.js';

/** Deterministic pseudo-random numbers. */
function rng(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return (x >>> 0) / 2 ** 32;
  };
}

function randomTree(seed: number): ManifestEntry[] {
  const r = rng(seed);
  const names = ['a', 'a b', 'a.c', 'a-x', 'b', 'é', '日本', 'z0', '🎉'];
  const out: ManifestEntry[] = [];
  const walk = (prefix: string, depth: number) => {
    for (const n of names) {
      if (r() < 0.4) continue;
      const p = prefix === '' ? n : `${prefix}/${n}`;
      const k = r();
      if (k < 0.3 && depth < 3) {
        out.push(dir(p, r() < 0.8 ? 0o755 : 0o700));
        walk(p, depth + 1);
      } else if (k < 0.85) out.push(file(p, String(Math.floor(r() * 5)), r() < 0.8 ? 0o644 : 0o600));
      else out.push(link(p, r() < 0.5 ? 'a' : '../b'));
    }
  };
  walk('', 0);
  return out.sort((x, y) => comparePaths(x.path, y.path));
}

describe('root hash (two levels)', () => {
  it('differs for any difference in any field, and not for input order', () => {
    const base = [dir('d'), file('d/x', 'x'), file('y', 'y'), link('l', 'y')];
    const root = computeRootHash(base);
    expect(computeRootHash([...base].reverse())).toBe(root);
    const variants: ManifestEntry[][] = [
      [dir('d', 0o700), file('d/x', 'x'), file('y', 'y'), link('l', 'y')],
      [dir('d'), file('d/x', 'x2'), file('y', 'y'), link('l', 'y')],
      [dir('d'), file('d/x', 'x', 0o600), file('y', 'y'), link('l', 'y')],
      [dir('d'), file('d/z', 'x'), file('y', 'y'), link('l', 'y')],
      [dir('d'), file('d/x', 'x'), file('y', 'y'), link('l', 'x')],
      [dir('d'), file('d/x', 'x'), file('y', 'y')],
      [dir('d'), file('d/x', 'x'), dir('y'), link('l', 'y')],
      [dir('d'), file('d/x', 'x'), file('y', 'y'), link('l', 'y'), dir('e')],
      // the same lines moved to another group must not hash alike
      [dir('d'), file('x', 'x'), file('y', 'y'), link('l', 'y')],
    ];
    const seen = new Set([root]);
    for (const v of variants) {
      const h = computeRootHash(v);
      expect(seen.has(h)).toBe(false);
      seen.add(h);
    }
    expect(computeRootHash([])).toMatch(/^[0-9a-f]{64}$/);
  });

  it('withChanges equals a full recompute on 300 random pairs, and leaves the old index valid', () => {
    for (let i = 0; i < 300; i++) {
      const a = randomTree(i + 1);
      const b = randomTree(i + 5000);
      const before = new Map(a.map((e) => [e.path, e]));
      const upserts = b.filter((e) => {
        const o = before.get(e.path);
        before.delete(e.path);
        return o === undefined || JSON.stringify(o) !== JSON.stringify(e);
      });
      const ia = RootIndex.ofSorted(a);
      const ib = ia.withChanges(upserts, before.keys());
      expect(ib.rootHash).toBe(rootHashOfSorted(b));
      expect(ib.rootHash).toBe(buildManifest(b).rootHash);
      expect(ia.rootHash).toBe(rootHashOfSorted(a));
      // and back
      expect(
        ib.withChanges(
          a.filter((e) => JSON.stringify(e) !== JSON.stringify(b.find((x) => x.path === e.path))),
          b.filter((e) => !a.some((x) => x.path === e.path)).map((e) => e.path),
        ).rootHash,
      ).toBe(ia.rootHash);
    }
  });

  it('a one-file change on 20,000 entries re-hashes its directory only', () => {
    const entries: ManifestEntry[] = [];
    for (let d = 0; d < 2000; d++) {
      entries.push(dir(`core/modules/m${d}`));
      for (let f = 0; f < 10; f++) entries.push(file(`core/modules/m${d}/f${f}.php`, `${d}.${f}`));
    }
    entries.unshift(dir('core'), dir('core/modules'));
    entries.sort((x, y) => comparePaths(x.path, y.path));
    let t = performance.now();
    const idx = RootIndex.ofSorted(entries);
    const fullMs = performance.now() - t;
    t = performance.now();
    let cur = idx;
    for (let i = 0; i < 20; i++) cur = cur.withChanges([file('core/modules/m7/f3.php', `edit ${i}`)], []);
    const editMs = (performance.now() - t) / 20;
    const changed = entries.map((e) => (e.path === 'core/modules/m7/f3.php' ? file(e.path, 'edit 19') : e));
    expect(cur.rootHash).toBe(rootHashOfSorted(changed));
    console.log(`RootIndex 20,002 entries: full ${fullMs.toFixed(1)} ms, one edit ${editMs.toFixed(2)} ms`);
  });
});
