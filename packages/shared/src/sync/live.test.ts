import { describe, expect, it } from 'vitest';
import { dir, file } from './testentries.js';
import { LiveManifest, applyChange } from './live.js';
import { buildManifest, computeRootHash, type ManifestEntry } from './manifest.js';

describe('LiveManifest', () => {
  const base = buildManifest([dir('a'), file('a/x'), dir('a/b'), file('a/b/y'), file('z')]);

  it('starts equal to the manifest it wraps', () => {
    const live = LiveManifest.from(base);
    expect(live.rootHash()).toBe(base.rootHash);
    expect(new LiveManifest(base.entries).rootHash()).toBe(base.rootHash);
    expect(live.toManifest()).toEqual(base);
  });

  it('serves one snapshot until a change, and never alters a snapshot already handed out', () => {
    const live = LiveManifest.from(base);
    const first = live.toManifest();
    expect(live.toManifest()).toBe(first);
    const copy = JSON.parse(JSON.stringify(first)) as typeof first;
    live.apply({ op: 'upsert', entry: file('a/x', 'changed') });
    live.apply({ op: 'remove', path: 'a/b' });
    live.apply({ op: 'upsert', entry: file('added') });
    const second = live.toManifest();
    expect(second).not.toBe(first);
    expect(first).toEqual(copy); // history keeps what it was given
    expect(second).toEqual(buildManifest([dir('a'), file('a/x', 'changed'), file('added'), file('z')]));
    // an upsert that changes nothing keeps the snapshot
    live.apply({ op: 'upsert', entry: file('added') });
    expect(live.toManifest()).toBe(second);
  });

  it('content edits between snapshots update the sorted list in place without touching handed-out snapshots', () => {
    const live = LiveManifest.from(base);
    const shots = [live.toManifest()];
    const copies = [JSON.stringify(shots[0])];
    const edits: ManifestEntry[][] = [
      [file('a/x', 'one')],
      [file('a/b/y', 'two'), file('z', 'three', 0o600)],
      [dir('a/b', 0o700)],
      [file('a/x', 'four'), file('a/x', 'five')],
    ];
    let want = base.entries.slice();
    for (const batch of edits) {
      for (const e of batch) {
        live.apply({ op: 'upsert', entry: e });
        want = want.map((w) => (w.path === e.path ? e : w));
      }
      const shot = live.toManifest();
      expect(shot).toEqual(buildManifest(want));
      shots.push(shot);
      copies.push(JSON.stringify(shot));
    }
    // every snapshot handed out is still exactly what it was
    shots.forEach((m, i) => expect(JSON.stringify(m)).toBe(copies[i]));
    // an add after in-place edits rebuilds the order
    live.apply({ op: 'upsert', entry: file('a/0') });
    expect(live.toManifest()).toEqual(buildManifest([...want, file('a/0')]));
  });

  it('upserts and removes, always matching a full recompute', () => {
    const live = LiveManifest.from(base);
    expect(applyChange(live, { op: 'upsert', entry: file('a/x', 'new') })).toBe(true);
    expect(applyChange(live, { op: 'upsert', entry: file('new.txt') })).toBe(true);
    expect(applyChange(live, { op: 'remove', path: 'z' })).toBe(true);
    const want = buildManifest([dir('a'), file('a/x', 'new'), dir('a/b'), file('a/b/y'), file('new.txt')]);
    expect(live.toManifest()).toEqual(want);
  });

  it('reports no-ops (same entry again, removing what is not there)', () => {
    const live = LiveManifest.from(base);
    expect(live.apply({ op: 'upsert', entry: file('a/x') })).toBe(false);
    expect(live.apply({ op: 'remove', path: 'nope' })).toBe(false);
    expect(live.rootHash()).toBe(base.rootHash);
  });

  it('removing a directory removes its subtree', () => {
    const live = LiveManifest.from(base);
    live.apply({ op: 'remove', path: 'a' });
    expect(live.toManifest().entries.map((e) => e.path)).toEqual(['z']);
    expect(live.rootHash()).toBe(computeRootHash([file('z')]));
  });

  it('a directory replaced by a file loses its children; removing a child keeps siblings', () => {
    const live = LiveManifest.from(base);
    live.apply({ op: 'upsert', entry: file('a/b', 'now a file') });
    expect(live.toManifest().entries.map((e) => e.path)).toEqual(['a', 'a/b', 'a/x', 'z']);
    live.apply({ op: 'remove', path: 'a/x' });
    expect(live.toManifest().entries.map((e) => e.path)).toEqual(['a', 'a/b', 'z']);
    expect(live.size).toBe(3);
    expect(live.get('a/b')?.type).toBe('file');
  });

  it('keeps the root hash right across edits on 20,000 entries', () => {
    const entries: ManifestEntry[] = [];
    for (let d = 0; d < 200; d++) {
      entries.push(dir(`d${d}`));
      for (let f = 0; f < 100; f++) entries.push(file(`d${d}/f${f}.php`));
    }
    const live = new LiveManifest(entries);
    let t = performance.now();
    const first = live.rootHash();
    const coldMs = performance.now() - t;
    expect(first).toBe(computeRootHash(entries));
    t = performance.now();
    const rounds = 20;
    for (let i = 0; i < rounds; i++) {
      live.apply({ op: 'upsert', entry: file('d7/f7.php', `edit ${i}`) });
      live.rootHash();
    }
    const editMs = (performance.now() - t) / rounds;
    t = performance.now();
    live.apply({ op: 'upsert', entry: file('d7/new.php') });
    live.rootHash();
    const addMs = performance.now() - t;
    expect(live.rootHash()).toBe(computeRootHash(live.toManifest().entries));
    console.log(
      `LiveManifest 20,100 entries: first root hash ${coldMs.toFixed(1)} ms, after a content edit ` +
        `${editMs.toFixed(1)} ms, after an add (re-sort) ${addMs.toFixed(1)} ms`,
    );
  });
});
