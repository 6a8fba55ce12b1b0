import { describe, expect, it } from 'vitest';
import { diffManifests, isDiffEmpty, type ManifestDiff } from './diff.js';
import { buildManifest, type ManifestEntry } from './manifest.js';
import { dir, file, link } from './testentries.js';

const d = dir;
const f = (path: string, content = 'x', mode = 0o644): ManifestEntry => file(path, content, mode);
const l = link;

/** The diff reduced to paths, for readable tables. */
function summary(diff: ManifestDiff) {
  return {
    added: diff.added.map((e) => e.path),
    removed: diff.removed.map((e) => e.path),
    changed: diff.changed.map((e) => e.path),
    typeChanged: diff.typeChanged.map((t) => `${t.path}:${t.from.type}>${t.to.type}`),
    modeChanged: diff.modeChanged.map((e) => e.path),
    unchanged: diff.unchanged,
  };
}

const none = { added: [], removed: [], changed: [], typeChanged: [], modeChanged: [], unchanged: 0 };

const cases: Array<{
  name: string;
  observed: ManifestEntry[];
  desired: ManifestEntry[];
  want: Partial<ReturnType<typeof summary>>;
}> = [
  { name: 'both empty', observed: [], desired: [], want: {} },
  {
    name: 'identical',
    observed: [d('a'), f('a/b'), l('c', 'a/b')],
    desired: [d('a'), f('a/b'), l('c', 'a/b')],
    want: { unchanged: 3 },
  },
  {
    name: 'added, parents first',
    observed: [],
    desired: [f('a/b/c'), d('a/b'), d('a'), f('a b'), f('a/z')],
    want: { added: ['a', 'a b', 'a/b', 'a/b/c', 'a/z'] },
  },
  {
    name: 'removed, deepest first',
    observed: [d('a'), d('a/b'), f('a/b/c'), f('a/z'), f('a b')],
    desired: [],
    want: { removed: ['a/z', 'a/b/c', 'a/b', 'a b', 'a'] },
  },
  {
    name: 'content changed',
    observed: [f('x', 'old'), f('y', 'same')],
    desired: [f('x', 'new'), f('y', 'same')],
    want: { changed: ['x'], unchanged: 1 },
  },
  {
    name: 'content and mode changed: only in changed',
    observed: [f('x', 'old', 0o644)],
    desired: [f('x', 'new', 0o755)],
    want: { changed: ['x'] },
  },
  {
    name: 'mode changed (file and dir)',
    observed: [d('a', 0o755), f('a/run', 'x', 0o644)],
    desired: [d('a', 0o750), f('a/run', 'x', 0o755)],
    want: { modeChanged: ['a', 'a/run'] },
  },
  {
    name: 'symlink target changed',
    observed: [l('current', 'releases/1')],
    desired: [l('current', 'releases/2')],
    want: { changed: ['current'] },
  },
  {
    name: 'file becomes dir: children are added after the type change',
    observed: [f('x')],
    desired: [d('x'), f('x/inner'), d('x/sub')],
    want: { typeChanged: ['x:file>dir'], added: ['x/inner', 'x/sub'] },
  },
  {
    name: 'dir becomes file: children are removed before the type change',
    observed: [d('x'), d('x/sub'), f('x/sub/deep'), f('x/inner')],
    desired: [f('x')],
    want: { typeChanged: ['x:dir>file'], removed: ['x/sub/deep', 'x/sub', 'x/inner'] },
  },
  {
    name: 'symlink becomes file and file becomes symlink',
    observed: [l('a', 'b'), f('b')],
    desired: [f('a'), l('b', 'a')],
    want: { typeChanged: ['a:symlink>file', 'b:file>symlink'] },
  },
  {
    name: 'names with spaces and non-ASCII',
    observed: [d('日本'), f('日本/é x.txt', 'v1'), f('z z')],
    desired: [d('日本'), f('日本/é x.txt', 'v2'), f('日本/新しい.php'), f('ü')],
    want: { changed: ['日本/é x.txt'], added: ['ü', '日本/新しい.php'], removed: ['z z'], unchanged: 1 },
  },
  {
    name: 'empty dirs',
    observed: [d('keep'), d('gone')],
    desired: [d('keep'), d('new'), d('new/empty')],
    want: { added: ['new', 'new/empty'], removed: ['gone'], unchanged: 1 },
  },
];

describe('diffManifests', () => {
  it.each(cases)('$name', ({ observed, desired, want }) => {
    const diff = diffManifests(buildManifest(observed), buildManifest(desired));
    expect(summary(diff)).toEqual({ ...none, ...want });
    const changes = Object.entries({ ...none, ...want }).some(([k, v]) => k !== 'unchanged' && (v as []).length > 0);
    expect(isDiffEmpty(diff)).toBe(!changes);
  });

  it('returns desired entries (hash, mode) for what must be written, observed ones for removals', () => {
    const diff = diffManifests(buildManifest([f('x', 'old'), f('gone')]), buildManifest([f('x', 'new', 0o600)]));
    expect(diff.changed[0]).toEqual(f('x', 'new', 0o600));
    expect(diff.removed[0]).toEqual(f('gone'));
  });

  it('does not need sorted input', () => {
    const desired = { entries: [f('b/c'), d('b'), f('a')], rootHash: '' };
    expect(summary(diffManifests({ entries: [], rootHash: '' }, desired)).added).toEqual(['a', 'b', 'b/c']);
  });
});
