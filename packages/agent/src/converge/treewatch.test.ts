import { chmodSync, mkdirSync, mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { TreeWatches } from './treewatch.js';

const dirs: string[] = [];
const watchers: TreeWatches[] = [];
afterEach(() => {
  for (const w of watchers.splice(0)) w.close();
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

/** A tree with a/b/ and a file in each dir, walked once, then clean (a second walk saw nothing new). */
async function watched(opts: ConstructorParameters<typeof TreeWatches>[0] = {}) {
  const root = mkdtempSync(join(tmpdir(), 'spoke-watch-'));
  dirs.push(root);
  mkdirSync(join(root, 'a/b'), { recursive: true });
  writeFileSync(join(root, 'top.php'), '1');
  writeFileSync(join(root, 'a/b/deep.php'), '2');
  const w = new TreeWatches(opts);
  watchers.push(w);
  const walk = () => {
    w.beginWalk('/t');
    w.afterWalk('/t', root, ['a', 'a/b']);
  };
  walk();
  expect(await w.mayHaveChanged('/t')).toBe(true); // the first walk's dirs were not watched during it
  walk();
  return { root, w, walk };
}

/** Lets inotify's events reach the watchers. */
const settle = () => new Promise((r) => setTimeout(r, 50));

describe('TreeWatches', () => {
  it('says clean after a walk with every directory watched, and dirty after any change in any of them', async () => {
    const changes: [string, (root: string) => void][] = [
      ['edit', (r) => writeFileSync(join(r, 'a/b/deep.php'), 'drift')],
      ['add', (r) => writeFileSync(join(r, 'stray.php'), 'x')],
      ['remove', (r) => rmSync(join(r, 'top.php'))],
      ['chmod', (r) => chmodSync(join(r, 'a/b/deep.php'), 0o600)],
      ['rename', (r) => renameSync(join(r, 'a/b'), join(r, 'a/c'))],
      ['new dir', (r) => mkdirSync(join(r, 'a/b/new'))],
    ];
    for (const [what, change] of changes) {
      const { root, w, walk } = await watched();
      expect(await w.mayHaveChanged('/t'), what).toBe(false);
      change(root);
      // no sleep: the event is queued by the write itself; mayHaveChanged lets the loop read it
      expect(await w.mayHaveChanged('/t'), what).toBe(true);
      // still dirty until a walk begins
      await settle();
      expect(await w.mayHaveChanged('/t'), what).toBe(true);
      walk();
      await settle();
      if (what !== 'rename' && what !== 'new dir') expect(await w.mayHaveChanged('/t'), what).toBe(false);
    }
  });

  it('a change during the walk leaves it dirty; touch and a tree never walked say dirty', async () => {
    const { root, w } = await watched();
    w.beginWalk('/t');
    writeFileSync(join(root, 'a/x.php'), 'during');
    await settle();
    w.afterWalk('/t', root, ['a', 'a/b']);
    expect(await w.mayHaveChanged('/t')).toBe(true);
    expect(await w.mayHaveChanged('/never')).toBe(true);
    w.beginWalk('/t');
    w.afterWalk('/t', root, ['a', 'a/b']);
    expect(await w.mayHaveChanged('/t')).toBe(false);
    w.touch('/t');
    expect(await w.mayHaveChanged('/t')).toBe(true);
  });

  it('does not trust a file system inotify cannot see (NFS), too many directories, or a failed watch', async () => {
    const nfs = await watched({ fsType: () => 0x6969 });
    expect(await nfs.w.mayHaveChanged('/t')).toBe(true);
    expect(nfs.w.offReason('/t')).toMatch(/file system type 0x6969 is not one whose changes inotify sees/);
    expect(nfs.w.total()).toBe(0);

    const many = await watched({ maxDirs: 2 });
    expect(await many.w.mayHaveChanged('/t')).toBe(true);
    expect(many.w.offReason('/t')).toMatch(/3 directories \(more than 2\)/);

    const full = await watched({
      watchFn: () => {
        throw Object.assign(new Error('no space'), { code: 'ENOSPC' });
      },
    });
    expect(await full.w.mayHaveChanged('/t')).toBe(true);
    expect(full.w.offReason('/t')).toBe('watch: ENOSPC');

    const capped = await watched({ maxWatches: 2 });
    expect(await capped.w.mayHaveChanged('/t')).toBe(true);
    expect(capped.w.offReason('/t')).toMatch(/watches 2 directories already/);
    expect(capped.w.total()).toBe(0);
  });

  it('a root not there yet (a status before the first converge) and too many directories are tried again at the next walk', async () => {
    const base = mkdtempSync(join(tmpdir(), 'spoke-watch-'));
    dirs.push(base);
    const root = join(base, 'tree');
    const w = new TreeWatches({ maxDirs: 2 });
    watchers.push(w);
    w.beginWalk('/t');
    w.afterWalk('/t', root, []);
    expect(await w.mayHaveChanged('/t')).toBe(true);
    expect(w.offReason('/t')).toBeUndefined();
    mkdirSync(join(root, 'a', 'b'), { recursive: true });
    const walk = (d: string[]) => {
      w.beginWalk('/t');
      w.afterWalk('/t', root, d);
    };
    walk(['a', 'a/b']);
    expect(w.offReason('/t')).toMatch(/more than 2/);
    walk(['a']);
    walk(['a']);
    expect(w.offReason('/t')).toBe('');
    expect(await w.mayHaveChanged('/t')).toBe(false);
  });

  it('stops watching directories gone from the walk, and everything on drop', async () => {
    const { root, w } = await watched();
    expect(w.total()).toBe(3);
    w.beginWalk('/t');
    w.afterWalk('/t', root, ['a']);
    expect(w.total()).toBe(2);
    w.drop('/t');
    expect(w.total()).toBe(0);
    expect(await w.mayHaveChanged('/t')).toBe(true);
  });
});
