/**
 * The pure difference between what an agent has (observed) and what the master wants (desired).
 * No I/O: the agent turns the result into a staged, journaled transaction.
 */
import { comparePaths } from './paths.js';
import type { Manifest, ManifestEntry } from './manifest.js';

/** A path whose type differs (file ↔ dir ↔ symlink): the old one goes, the new one comes. */
export interface TypeChange {
  path: string;
  from: ManifestEntry;
  to: ManifestEntry;
}

/**
 * What to do to turn observed into desired. Apply in this order and every step finds what it
 * needs in place:
 * 1. `removed` — observed entries not desired, deepest first (children before their directory;
 *    this includes the children of a directory that becomes a file or symlink);
 * 2. `typeChanged` — remove `from`, create `to`, parents first (never nested in each other: a
 *    path that changes type has no children on the non-directory side);
 * 3. `added` — desired entries not observed, parents first (this includes the children of a
 *    file that becomes a directory);
 * 4. `changed` — same type, new content (file bytes or symlink target); written with the
 *    desired mode, so they are not repeated in `modeChanged`;
 * 5. `modeChanged` — same type and content, different mode (files and dirs).
 * Entries are the desired ones, except in `removed` (observed).
 */
export interface ManifestDiff {
  added: ManifestEntry[];
  removed: ManifestEntry[];
  changed: ManifestEntry[];
  typeChanged: TypeChange[];
  modeChanged: ManifestEntry[];
  unchanged: number;
}

/** Diffs two manifests by path (entries need not be sorted). */
export function diffManifests(observed: Manifest, desired: Manifest): ManifestDiff {
  const have = new Map<string, ManifestEntry>();
  for (const e of observed.entries) have.set(e.path, e);
  const out: ManifestDiff = { added: [], removed: [], changed: [], typeChanged: [], modeChanged: [], unchanged: 0 };
  const seen = new Set<string>();
  for (const want of desired.entries) {
    seen.add(want.path);
    const got = have.get(want.path);
    if (got === undefined) out.added.push(want);
    else if (got.type !== want.type) out.typeChanged.push({ path: want.path, from: got, to: want });
    else if (!sameContent(got, want)) out.changed.push(want);
    else if (got.mode !== want.mode) out.modeChanged.push(want);
    else out.unchanged++;
  }
  for (const e of observed.entries) if (!seen.has(e.path)) out.removed.push(e);
  const parentsFirst = (a: { path: string }, b: { path: string }) => comparePaths(a.path, b.path);
  out.added.sort(parentsFirst);
  out.changed.sort(parentsFirst);
  out.typeChanged.sort(parentsFirst);
  out.modeChanged.sort(parentsFirst);
  // A parent sorts before everything below it, so the reverse order is deepest first.
  out.removed.sort((a, b) => parentsFirst(b, a));
  return out;
}

/** True when applying the diff would change nothing. */
export function isDiffEmpty(d: ManifestDiff): boolean {
  return d.added.length + d.removed.length + d.changed.length + d.typeChanged.length + d.modeChanged.length === 0;
}

/** True when two entries of the same type hold the same content (hash + size, or link target). */
export function sameContent(a: ManifestEntry, b: ManifestEntry): boolean {
  switch (a.type) {
    case 'dir':
      return true;
    case 'symlink':
      return a.target === b.target;
    case 'file':
      return a.hash === b.hash && a.size === b.size;
  }
}

/** True when two entries are identical in every field a manifest carries. */
export function sameEntry(a: ManifestEntry, b: ManifestEntry): boolean {
  return a.type === b.type && a.mode === b.mode && sameContent(a, b);
}
