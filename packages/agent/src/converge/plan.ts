/**
 * From (what the tree has, what is desired) to an ordered list of idempotent ops.
 */
import * as fs from 'node:fs';
import { join } from 'node:path';
import {
  sameContent,
  checkEntryPath,
  checkLinkTarget,
  comparePaths,
  type ExcludeMatcher,
  fail,
  isHash,
  lowerBound,
  type Manifest,
  type ManifestDiff,
  type ManifestEntry,
  MODE_MASK,
  parentOf,
  RootIndex,
  rootHashOfSorted,
  type SkippedEntry,
} from '@spoke/shared';
import { isErrno } from './fsutil.js';
import { findExcluded, type Op } from './ops.js';
import { type ManifestDelta, mergeDelta } from './state.js';

/** Finds an entry by path in entries sorted by path (binary search; no index to build). */
export type Lookup = (path: string) => ManifestEntry | undefined;

export function lookupIn(entries: readonly ManifestEntry[]): Lookup {
  return (path) => {
    const e = entries[lowerBound(entries, path)];
    return e?.path === path ? e : undefined;
  };
}

/**
 * Checks one desired entry: path normalised and safe (checkEntryPath), not excluded (user data is
 * never pushed; its parents are checked as entries of their own), permission bits only (a
 * setuid/setgid/sticky bit is refused, like in archives), a valid hash and size, a symlink target
 * that can be carried (checkLinkTarget: absolute targets and targets leaving the tree are kept as
 * links; no op ever writes through a link, see DirGuard in ops.ts).
 */
export function checkEntry(e: ManifestEntry, excludes: ExcludeMatcher): void {
  const p = e.path;
  if (typeof p !== 'string' || p === '' || checkEntryPath(p) !== p) {
    throw fail('ARCHIVE_UNSAFE', `manifest path ${JSON.stringify(p)} is not normalised`);
  }
  if (excludes.matchesSelf(p)) throw fail('INVALID_ARGUMENT', `manifest lists excluded path ${JSON.stringify(p)} (user data is never pushed)`);
  if (!Number.isInteger(e.mode) || e.mode < 0 || (e.mode & ~MODE_MASK) !== 0) {
    throw fail('ARCHIVE_UNSAFE', `manifest gives ${JSON.stringify(p)} mode ${Number(e.mode).toString(8)} (only permission bits are allowed)`);
  }
  switch (e.type) {
    case 'dir':
      return;
    case 'file':
      if (!isHash(e.hash) || !Number.isSafeInteger(e.size) || e.size < 0) {
        throw fail('INVALID_ARGUMENT', `manifest entry ${JSON.stringify(p)} has no valid hash or size`);
      }
      return;
    case 'symlink':
      if (typeof e.target !== 'string') throw fail('INVALID_ARGUMENT', `symlink ${JSON.stringify(p)} has no target`);
      checkLinkTarget(p, e.target);
      return;
    default:
      throw fail('INVALID_ARGUMENT', `manifest entry ${JSON.stringify(p)} has unknown type ${JSON.stringify(e.type)}`);
  }
}

/**
 * diffManifests for two manifests sorted by path, as one merge pass (no index to build: this is
 * the hot path of a small update to a large tree), checking `desired` on the way:
 * - always: sorted, unique, every parent a directory of the manifest;
 * - `check: 'all'`: every entry (see checkEntry) and the root hash;
 * - `check: 'changed'`: only entries that differ from `base` — for a base that was itself checked
 *   with the same excludes (the committed manifest) — and the root hash;
 * - `check: 'none'`: desired was checked already.
 * The result has diffManifests' shape and order (parents first; `removed` deepest first).
 * @throws SpokeError ARCHIVE_UNSAFE, INVALID_ARGUMENT
 */
export function diffChecked(base: Manifest, desired: Manifest, excludes: ExcludeMatcher, check: 'all' | 'changed' | 'none'): ManifestDiff {
  const out: ManifestDiff = { added: [], removed: [], changed: [], typeChanged: [], modeChanged: [], unchanged: 0 };
  const b = base.entries;
  const d = desired.entries;
  const dirs = new Set<string>();
  let i = 0;
  let prev: string | undefined;
  for (const want of d) {
    const p = want.path;
    if (check !== 'none') {
      if (prev !== undefined && comparePaths(prev, p) >= 0) {
        throw fail('INVALID_ARGUMENT', `manifest is not sorted or lists ${JSON.stringify(p)} twice`);
      }
      prev = p;
      const slash = p.lastIndexOf('/');
      if (slash >= 0 && !dirs.has(p.slice(0, slash))) {
        checkEntry(want, excludes); // an unsafe path says so first
        throw fail('INVALID_ARGUMENT', `manifest lists ${JSON.stringify(p)} but not its directory`);
      }
      if (want.type === 'dir') dirs.add(p);
    }
    // base entries before this path are gone
    let have = b[i];
    while (have !== undefined && have.path !== p && comparePaths(have.path, p) < 0) {
      out.removed.push(have);
      have = b[++i];
    }
    if (have === undefined || have.path !== p) {
      if (check !== 'none') checkEntry(want, excludes);
      out.added.push(want);
      continue;
    }
    i++;
    const same = have.type === want.type && sameContent(have, want);
    if (same && have.mode === want.mode) {
      if (check === 'all') checkEntry(want, excludes);
      out.unchanged++;
      continue;
    }
    if (check !== 'none') checkEntry(want, excludes);
    if (have.type !== want.type) out.typeChanged.push({ path: p, from: have, to: want });
    else if (!same) out.changed.push(want);
    else out.modeChanged.push(want);
  }
  for (; i < b.length; i++) out.removed.push(b[i] as ManifestEntry);
  out.removed.reverse();
  if (check !== 'none' && rootHashOfSorted(d) !== desired.rootHash) {
    throw fail('INVALID_ARGUMENT', 'manifest root hash does not match its entries');
  }
  return out;
}

/** Checks a desired manifest completely (see diffChecked). */
export function checkDesired(d: Manifest, excludes: ExcludeMatcher): void {
  diffChecked({ entries: [], rootHash: '' }, d, excludes, 'all');
}

/**
 * The diff from `base` (a committed manifest: checked when it was committed, with the same
 * excludes) to the manifest that `delta` describes, in time proportional to the change: the
 * desired manifest is merged from base and delta, and only what the delta names is checked —
 * upserts sorted and unique, each a safe entry (checkEntry) whose directory is a directory of the
 * result, removed paths present in base, nothing left below a path that stops being a
 * directory — and then the root hash of the result. Same result as diffChecked(base, merged,
 * excludes, 'changed').
 * @throws SpokeError ARCHIVE_UNSAFE, INVALID_ARGUMENT
 */
export function diffFromDelta(
  base: Manifest,
  delta: ManifestDelta,
  excludes: ExcludeMatcher,
  baseIndex?: RootIndex,
): { diff: ManifestDiff; desired: Manifest; index: RootIndex } {
  const out: ManifestDiff = { added: [], removed: [], changed: [], typeChanged: [], modeChanged: [], unchanged: 0 };
  const inBase = lookupIn(base.entries);
  let prev: string | undefined;
  for (const want of delta.upserts) {
    if (prev !== undefined && comparePaths(prev, want.path) >= 0) {
      throw fail('INVALID_ARGUMENT', `manifest delta is not sorted or lists ${JSON.stringify(want.path)} twice`);
    }
    prev = want.path;
  }
  const removedSorted = [...delta.removed].sort(comparePaths);
  for (let i = 1; i < removedSorted.length; i++) {
    if (removedSorted[i - 1] === removedSorted[i]) throw fail('INVALID_ARGUMENT', `manifest delta removes ${JSON.stringify(removedSorted[i])} twice`);
  }
  const entries = mergeDelta(base.entries, delta.upserts, removedSorted);
  const inDesired = lookupIn(entries);
  /** True when `entries` has something below `dir` (descendants are one contiguous run). */
  const hasBelow = (dir: string): boolean => entries[lowerBound(entries, `${dir}/`)]?.path.startsWith(`${dir}/`) ?? false;
  for (const want of delta.upserts) {
    const p = want.path;
    checkEntry(want, excludes);
    const parent = parentOf(p);
    if (parent !== '' && inDesired(parent)?.type !== 'dir') throw fail('INVALID_ARGUMENT', `manifest lists ${JSON.stringify(p)} but not its directory`);
    const have = inBase(p);
    if (have === undefined) {
      out.added.push(want);
      continue;
    }
    if (have.type === 'dir' && want.type !== 'dir' && hasBelow(p)) {
      throw fail('INVALID_ARGUMENT', `manifest delta turns ${JSON.stringify(p)} into a ${want.type} but keeps what is below it`);
    }
    const same = have.type === want.type && sameContent(have, want);
    if (same && have.mode === want.mode) out.unchanged++;
    else if (have.type !== want.type) out.typeChanged.push({ path: p, from: have, to: want });
    else if (!same) out.changed.push(want);
    else out.modeChanged.push(want);
  }
  for (const p of removedSorted) {
    const have = inBase(p);
    if (have === undefined) throw fail('INVALID_ARGUMENT', `manifest delta removes ${JSON.stringify(p)}, which the base does not have`);
    if (inDesired(p) !== undefined) throw fail('INVALID_ARGUMENT', `manifest delta both removes and lists ${JSON.stringify(p)}`);
    if (have.type === 'dir' && hasBelow(p)) throw fail('INVALID_ARGUMENT', `manifest delta removes ${JSON.stringify(p)} but keeps what is below it`);
    out.removed.push(have);
  }
  out.removed.reverse();
  out.unchanged += base.entries.length - out.removed.length - out.changed.length - out.typeChanged.length - out.modeChanged.length - out.unchanged;
  // The root of the result from the base's index: only the directories the delta touches are hashed.
  const index = (baseIndex ?? RootIndex.ofSorted(base.entries)).withChanges(delta.upserts, removedSorted);
  if (index.rootHash !== delta.rootHash) throw fail('INVALID_ARGUMENT', 'manifest root hash does not match its entries');
  return { diff: out, desired: { entries, rootHash: delta.rootHash }, index };
}

/**
 * Directories of an observed manifest that exist only to hold excluded content (e.g. `sites/x`
 * kept for `sites/x/files` after the code of site x was removed): no observed entry below them,
 * and at least one excluded path or other holder directly inside. Converge leaves them alone and
 * observe does not count them as drift.
 */
export function holderDirs(root: string, observed: Manifest, excludes: ExcludeMatcher): Set<string> {
  const live = new Map<string, number>();
  for (const e of observed.entries) {
    const p = parentOf(e.path);
    live.set(p, (live.get(p) ?? 0) + 1);
  }
  const holders = new Set<string>();
  for (let i = observed.entries.length - 1; i >= 0; i--) {
    const e = observed.entries[i] as ManifestEntry;
    if (e.type !== 'dir' || (live.get(e.path) ?? 0) > 0) continue;
    let names: string[];
    try {
      names = fs.readdirSync(join(root, e.path));
    } catch (err) {
      if (isErrno(err, 'ENOENT') || isErrno(err, 'ENOTDIR')) continue;
      throw err;
    }
    if (names.some((n) => excludes.matchesSelf(`${e.path}/${n}`) || holders.has(`${e.path}/${n}`))) {
      holders.add(e.path);
      const p = parentOf(e.path);
      live.set(p, (live.get(p) ?? 1) - 1);
    }
  }
  return holders;
}

/** `observed` without the holder dirs that `reference` does not list. */
export function withoutHolders(observed: Manifest, holders: Set<string>, reference: Lookup | undefined): Manifest {
  if (holders.size === 0) return observed;
  const entries = observed.entries.filter((e) => !holders.has(e.path) || reference?.(e.path)?.type === 'dir');
  return entries.length === observed.entries.length ? observed : { entries, rootHash: rootHashOfSorted(entries) };
}

/**
 * Directories the web server's group writes into (the agent's web config makes them group-owned
 * and adds the group bits, see sitesperms.ts). Group bits on them that the reference lacks are
 * not a difference: neither drift nor something to chmod back. User-data dirs below them
 * (`sites/*\/files`, `private`) are excluded from manifests anyway.
 */
export const WEB_WRITABLE_DIRS: readonly string[] = ['sites'];

/** `observed` with the web group's extra bits on WEB_WRITABLE_DIRS taken as the reference has them. */
export function withWebGroupBits(observed: Manifest, reference: Lookup | undefined): Manifest {
  if (reference === undefined) return observed;
  let entries: ManifestEntry[] | undefined;
  for (const path of WEB_WRITABLE_DIRS) {
    const list = entries ?? observed.entries;
    const i = list.findIndex((e) => e.path === path);
    const e = list[i];
    const r = reference(path);
    if (e === undefined || e.type !== 'dir' || r?.type !== 'dir' || e.mode === r.mode) continue;
    const extra = e.mode & ~r.mode;
    const missing = r.mode & ~e.mode;
    if (missing !== 0 || (extra & ~0o070) !== 0) continue; // a real difference
    entries ??= [...observed.entries];
    entries[i] = { ...e, mode: r.mode };
  }
  return entries === undefined ? observed : { entries, rootHash: rootHashOfSorted(entries) };
}

/** Something on disk that no manifest can list, at a path the desired manifest uses. */
export interface Obstacle {
  path: string;
  type: 'symlink' | 'other';
}

/** The entries walkTree skipped that stand where `desired` wants something. */
export function obstaclesOf(skipped: readonly SkippedEntry[], desired: Lookup): Obstacle[] {
  const out: Obstacle[] = [];
  for (const s of skipped) {
    if (desired(s.path) === undefined) continue;
    if (s.reason === 'unsafe-symlink') out.push({ path: s.path, type: 'symlink' });
    else if (s.reason === 'socket' || s.reason === 'fifo' || s.reason === 'char-device' || s.reason === 'block-device') {
      out.push({ path: s.path, type: 'other' });
    }
  }
  return out;
}

/**
 * A path the desired manifest wants as a file or symlink where this host has a directory holding
 * user data (`sites/x/files`…): it cannot be replaced without losing that data, so a converge
 * skips it (and keeps the directory), applies everything else, and reports it.
 */
export interface Conflict {
  /** Path in the tree. */
  path: string;
  /** What the desired manifest wants there. */
  wanted: 'file' | 'symlink';
  /** The first user-data path found below it. */
  userData: string;
}

/**
 * The conflicts in a diff: a directory to be replaced by a file or symlink (type change) that
 * holds user data, or a file or symlink to be added where a directory that only holds user data
 * stands (`holders`: such directories are not listed in the base).
 */
export function findConflicts(root: string, diff: ManifestDiff, excludes: ExcludeMatcher, holders: ReadonlySet<string>): Conflict[] {
  const out: Conflict[] = [];
  for (const t of diff.typeChanged) {
    if (t.from.type !== 'dir' || t.to.type === 'dir') continue;
    const user = findExcluded(root, excludes, t.path);
    if (user !== undefined) out.push({ path: t.path, wanted: t.to.type, userData: user });
  }
  if (holders.size > 0) {
    for (const e of diff.added) {
      if (e.type === 'dir' || !holders.has(e.path)) continue;
      const user = findExcluded(root, excludes, e.path);
      if (user !== undefined) out.push({ path: e.path, wanted: e.type, userData: user });
    }
  }
  return out.sort((a, b) => comparePaths(a.path, b.path));
}

/** True when `path` is one of `paths` or below one of them. */
function coveredBy(paths: ReadonlySet<string>, path: string): boolean {
  for (let p = path; p !== ''; p = parentOf(p)) if (paths.has(p)) return true;
  return false;
}

/**
 * A diff and desired manifest without the conflicting paths (and anything the desired manifest
 * lists below them): what a converge with conflicts applies and commits. Removals stay (a
 * removed directory keeps its user data).
 */
export function withoutConflicts(diff: ManifestDiff, desired: Manifest, conflicts: readonly Conflict[]): { diff: ManifestDiff; desired: Manifest } {
  if (conflicts.length === 0) return { diff, desired };
  const skip = new Set(conflicts.map((c) => c.path));
  const keep = (e: { path: string }) => !coveredBy(skip, e.path);
  const entries = desired.entries.filter(keep);
  return {
    diff: {
      ...diff,
      added: diff.added.filter(keep),
      changed: diff.changed.filter(keep),
      typeChanged: diff.typeChanged.filter(keep),
      modeChanged: diff.modeChanged.filter(keep),
    },
    desired: { entries, rootHash: rootHashOfSorted(entries) },
  };
}

/** Files to be written, grouped by content hash (paths in op order). */
export type Needs = Map<string, { size: number; paths: string[]; /** mode of the entry at paths[0] */ mode: number }>;

export function neededBlobs(diff: ManifestDiff): Needs {
  const needs: Needs = new Map();
  const add = (e: ManifestEntry) => {
    if (e.type !== 'file') return;
    const n = needs.get(e.hash);
    if (n === undefined) needs.set(e.hash, { size: e.size, paths: [e.path], mode: e.mode });
    else n.paths.push(e.path);
  };
  for (const t of diff.typeChanged) add(t.to);
  for (const e of diff.added) add(e);
  for (const e of diff.changed) add(e);
  return needs;
}

/**
 * The op list for an incremental converge, in diffManifests' order (see ManifestDiff):
 * 1. directories that will be written into but lack owner write/search get u+rwx (non-root agents);
 * 2. removals, deepest first;
 * 3. type changes: remove the old type (only while it is still the old type), create the new;
 * 4. additions, parents first; 5. content changes; 6. file mode changes;
 * 7. directory modes, deepest first, after everything below them is in place.
 * A blob used at N paths is copied for the first N-1 and renamed for the last.
 * @throws SpokeError INTERNAL when a directory that must go (type change) still holds user data
 */
export function buildOps(root: string, base: Lookup, diff: ManifestDiff, excludes: ExcludeMatcher, obstacles: readonly Obstacle[] = []): Op[] {
  const ops: Op[] = [];
  const remaining = new Map<string, number>();
  const countUse = (e: ManifestEntry) => {
    if (e.type === 'file') remaining.set(e.hash, (remaining.get(e.hash) ?? 0) + 1);
  };
  for (const t of diff.typeChanged) countUse(t.to);
  for (const e of diff.added) countUse(e);
  for (const e of diff.changed) countUse(e);

  const create = (e: ManifestEntry, dirModes: ManifestEntry[]) => {
    switch (e.type) {
      case 'dir':
        ops.push({ op: 'mkdir', path: e.path });
        dirModes.push(e);
        return;
      case 'symlink':
        ops.push({ op: 'symlink', path: e.path, target: e.target as string });
        return;
      case 'file': {
        const left = (remaining.get(e.hash) ?? 1) - 1;
        remaining.set(e.hash, left);
        const op: Op = { op: 'place', path: e.path, hash: e.hash, size: e.size, mode: e.mode };
        if (left > 0) op.copy = true;
        ops.push(op);
      }
    }
  };

  // 1. writable parents
  const unlocked: ManifestEntry[] = [];
  const seen = new Set<string>();
  const touchParent = (rel: string) => {
    const p = parentOf(rel);
    if (p === '' || seen.has(p)) return;
    seen.add(p);
    const e = base(p);
    if (e !== undefined && e.type === 'dir' && (e.mode & 0o700) !== 0o700) unlocked.push(e);
  };
  for (const e of diff.removed) touchParent(e.path);
  for (const t of diff.typeChanged) touchParent(t.path);
  for (const e of diff.added) touchParent(e.path);
  for (const e of diff.changed) touchParent(e.path);
  for (const e of unlocked) ops.push({ op: 'chmod', path: e.path, mode: e.mode | 0o700, ifDir: true });

  // 2. removals: things the walk could not list (symlinks with a target no manifest carries,
  // sockets…) where the manifest wants something, then what the manifest no longer has
  for (const o of obstacles) ops.push({ op: 'rm', path: o.path, ifType: o.type });
  for (const e of diff.removed) ops.push({ op: 'rm', path: e.path });
  // 3. type changes
  const dirModes: ManifestEntry[] = [];
  for (const t of diff.typeChanged) {
    if (t.from.type === 'dir') {
      const user = findExcluded(root, excludes, t.path);
      if (user !== undefined) {
        throw fail('INTERNAL', `cannot replace directory ${JSON.stringify(t.path)} with a ${t.to.type}: it holds user data (${user})`, {
          path: t.path,
        });
      }
    }
    ops.push({ op: 'rm', path: t.path, ifType: t.from.type });
    create(t.to, dirModes);
  }
  // 4.-5.
  for (const e of diff.added) create(e, dirModes);
  for (const e of diff.changed) create(e, dirModes); // same type: a file or a symlink
  // 6.-7.
  for (const e of diff.modeChanged) {
    if (e.type === 'dir') dirModes.push(e);
    else ops.push({ op: 'chmod', path: e.path, mode: e.mode });
  }
  const gone = new Set<string>();
  for (const e of diff.removed) gone.add(e.path);
  for (const t of diff.typeChanged) gone.add(t.path);
  const finalDirs = new Map<string, number>();
  for (const e of unlocked) if (!gone.has(e.path)) finalDirs.set(e.path, e.mode);
  for (const e of dirModes) finalDirs.set(e.path, e.mode);
  const paths = [...finalDirs.keys()].sort((a, b) => comparePaths(b, a));
  for (const p of paths) ops.push({ op: 'chmod', path: p, mode: finalDirs.get(p) as number });
  return ops;
}
