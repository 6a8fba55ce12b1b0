/**
 * The base of a converge's diff (step 2 of converge.ts): the committed manifest, when every path
 * the diff touches is on disk as committed; otherwise a stat-cached walk of the real tree, and the
 * drift from the committed manifest that the converge then repairs.
 */
import * as fs from 'node:fs';
import { join } from 'node:path';
import { type ExcludeMatcher, type Manifest, type ManifestDiff, type ManifestEntry, MODE_MASK, parentOf } from '@spoke/shared';
import { lstatOrNull } from './fsutil.js';
import { type Drift, driftOf, NO_DRIFT, walkActual } from './observe.js';
import { checkDesired, diffChecked, type Lookup, lookupIn, type Obstacle, obstaclesOf, withoutHolders, withWebGroupBits } from './plan.js';
import type { Committed } from './state.js';
import type { ConvergeOptions } from './types.js';

/** The base of the diff (see the module comment, step 2), and the drift found on the way. */
export async function findBase(
  o: ConvergeOptions,
  desired: Manifest,
  deltaDiff: ManifestDiff | undefined,
  root: string,
  treeDir: string,
  excludes: ExcludeMatcher,
  trusted: Committed | undefined,
  committed: Committed | undefined,
  sameExcludes: boolean,
): Promise<{ baseManifest: Manifest; diff: ManifestDiff; drift: Drift; obstacles: Obstacle[]; holders: ReadonlySet<string> }> {
  if (trusted !== undefined) {
    // Entries equal to the committed ones were checked when they were committed.
    const diff = deltaDiff ?? diffChecked(trusted.manifest, desired, excludes, sameExcludes ? 'changed' : 'all');
    if (touchedAsCommitted(root, lookupIn(trusted.manifest.entries), diff)) {
      return { baseManifest: trusted.manifest, diff, drift: NO_DRIFT, obstacles: [], holders: new Set() };
    }
  } else if (o.delta === undefined) {
    checkDesired(desired, excludes); // before the walk: a bad manifest costs nothing
  }
  const actual = await walkActual(treeDir, root, o.excludes);
  const desiredIn = lookupIn(desired.entries);
  const baseManifest = withWebGroupBits(withoutHolders(actual.manifest, actual.holders, desiredIn), desiredIn);
  const obstacles = obstaclesOf(actual.skipped, desiredIn);
  const diff = diffChecked(baseManifest, desired, excludes, 'none');
  let drift = NO_DRIFT;
  if (committed !== undefined) {
    const committedIn = lookupIn(committed.manifest.entries);
    const asCommitted = withWebGroupBits(withoutHolders(actual.manifest, actual.holders, committedIn), committedIn);
    if (asCommitted.rootHash !== committed.rootHash) drift = repairedOnly(driftOf(diffChecked(committed.manifest, asCommitted, excludes, 'none')), diff);
  }
  return { baseManifest, diff, drift, obstacles, holders: actual.holders };
}

/**
 * The drift this converge repairs: a path that changed since the last commit but already is as
 * desired is no drift to repair — on a one-box host the master writes the served tree itself (the
 * canonical copy is the served copy), and those writes are Spoke's own, not a hand edit.
 */
function repairedOnly(drift: Drift, diff: ManifestDiff): Drift {
  if (drift.changed.length + drift.added.length + drift.removed.length === 0) return drift;
  const repaired = new Set([...diff.added, ...diff.removed, ...diff.changed, ...diff.modeChanged, ...diff.typeChanged].map((e) => e.path));
  return {
    changed: drift.changed.filter((p) => repaired.has(p)),
    added: drift.added.filter((p) => repaired.has(p)),
    removed: drift.removed.filter((p) => repaired.has(p)),
  };
}

/**
 * With a trusted committed manifest: checks that every path the diff touches is on disk as
 * committed (type, mode, size, link target), that added paths are absent, and that their
 * directories are real directories. Any difference means drift: the caller walks the tree.
 */
function touchedAsCommitted(root: string, c: Lookup, d: ManifestDiff): boolean {
  const dirOk = new Set<string>();
  const parentsOk = (rel: string): boolean => {
    const p = parentOf(rel);
    if (p === '' || dirOk.has(p)) return true;
    if (c(p)?.type !== 'dir') return true; // created or replaced by this converge
    if (!parentsOk(p)) return false;
    const st = lstatOrNull(join(root, p));
    if (st === undefined || !st.isDirectory()) return false;
    dirOk.add(p);
    return true;
  };
  const asCommitted = (e: ManifestEntry | undefined): boolean => {
    if (e === undefined || !parentsOk(e.path)) return false;
    const abs = join(root, e.path);
    const st = lstatOrNull(abs);
    if (st === undefined) return false;
    switch (e.type) {
      case 'dir':
        return st.isDirectory() && (st.mode & MODE_MASK) === e.mode;
      case 'file':
        return st.isFile() && st.size === e.size && (st.mode & MODE_MASK) === e.mode;
      case 'symlink':
        return st.isSymbolicLink() && fs.readlinkSync(abs) === e.target;
    }
  };
  for (const e of d.removed) if (!asCommitted(e)) return false;
  for (const t of d.typeChanged) if (!asCommitted(t.from)) return false;
  for (const e of d.changed) if (!asCommitted(c(e.path))) return false;
  for (const e of d.modeChanged) if (!asCommitted(c(e.path))) return false;
  for (const e of d.added) {
    const p = parentOf(e.path);
    if (p !== '' && c(p)?.type !== 'dir') continue; // its parent is new: checked itself
    if (!parentsOk(e.path) || lstatOrNull(join(root, e.path)) !== undefined) return false;
  }
  return true;
}
