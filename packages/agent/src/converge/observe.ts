/**
 * Read side of the converge engine: the committed state of a tree, what is really on disk (a
 * stat-cached walk), drift between the two, and the host-wide content index for reuse.
 */
import { isAbsolute, join, normalize } from 'node:path';
import { computeRootHash, excludeMatcher, fail, type Manifest, type ManifestDiff, type SkippedEntry, walkTree } from '@spoke/shared';
import { lstatOrNull } from './fsutil.js';
import { diffChecked, holderDirs, lookupIn, withoutHolders, withWebGroupBits } from './plan.js';
import { type HeadConflict, loadCommitted, openStatCache, readHead, treeStateDir, withTreeLock, writeHead } from './state.js';

/** Paths where a tree differs from its committed manifest. */
export interface Drift {
  changed: string[];
  added: string[];
  removed: string[];
}

const NO_EXCLUDES = excludeMatcher({ defaultExcludes: false });

export const NO_DRIFT: Drift = Object.freeze({ changed: [], added: [], removed: [] }) as unknown as Drift;

/** Drift as seen from the committed manifest: `added` = on disk but not committed, etc. */
export function driftOf(d: ManifestDiff): Drift {
  const changed = [...d.changed, ...d.modeChanged, ...d.typeChanged].map((e) => e.path).sort();
  return { changed, added: d.added.map((e) => e.path), removed: d.removed.map((e) => e.path).reverse() };
}

/** An absolute, normalised host root (never '/'). */
export function checkHostRoot(hostRoot: string): string {
  if (!isAbsolute(hostRoot) || normalize(hostRoot) !== hostRoot || hostRoot === '/' || hostRoot.endsWith('/')) {
    throw fail('INVALID_PATH', `tree root ${JSON.stringify(hostRoot)} must be an absolute, normalised path`);
  }
  return hostRoot;
}

/**
 * The committed state of a tree: root hash + manifest as last converged (null if never). Reads
 * one small file; the manifest itself is parsed once per process and memoised.
 */
export function readCommitted(
  stateDir: string,
  treeKey: string,
): { rootHash: string; manifest: Manifest; hostRoot: string; excludes: string[]; conflicts: HeadConflict[] } | null {
  const treeDir = treeStateDir(stateDir, treeKey);
  const head = readHead(treeDir);
  if (head === undefined) return null;
  const c = loadCommitted(treeDir, head);
  return { rootHash: c.rootHash, manifest: c.manifest, hostRoot: head.hostRoot, excludes: head.excludes ?? [], conflicts: head.conflicts ?? [] };
}

/** The tree key recorded in a tree state dir (`<stateDir>/trees/<id>`), if it was ever committed. */
export function treeKeyOf(treeDir: string): string | undefined {
  return readHead(treeDir)?.treeKey;
}

/** What is on disk: a stat-cached walk, and the holder dirs of excluded content found in it. */
export async function walkActual(
  treeDir: string,
  hostRoot: string,
  excludes: readonly string[] | undefined,
): Promise<{ manifest: Manifest; holders: Set<string>; skipped: SkippedEntry[] }> {
  const st = lstatOrNull(hostRoot);
  if (st === undefined) return { manifest: { entries: [], rootHash: computeRootHash([]) }, holders: new Set(), skipped: [] };
  if (!st.isDirectory()) {
    throw fail(st.isSymbolicLink() ? 'PATH_OUTSIDE_ROOTS' : 'TREE_UNREADABLE', `tree root ${hostRoot} is not a directory`);
  }
  const cache = openStatCache(treeDir, hostRoot);
  const walked = await walkTree(hostRoot, { exclude: excludes ?? [], statCache: cache });
  cache.finish();
  const holders = holderDirs(hostRoot, walked.manifest, excludeMatcher({ exclude: excludes ?? [] }));
  return { manifest: walked.manifest, holders, skipped: walked.skipped };
}

/**
 * Walks the real tree (stat cache in the state dir, so an unchanged tree costs metadata calls
 * only) and reports drift against the committed manifest. Directories kept only because they
 * hold user data are not drift. Marks the tree as drifted in its head, so the next converge
 * re-walks it instead of trusting the committed manifest (and so repairs the drift). With no
 * committed manifest, drift is empty (there is nothing to drift from).
 */
export async function observe(
  stateDir: string,
  treeKey: string,
  hostRoot: string,
  excludes?: string[],
): Promise<{ rootHash: string; manifest: Manifest; drift: Drift }> {
  checkHostRoot(hostRoot);
  const treeDir = treeStateDir(stateDir, treeKey);
  return withTreeLock(treeDir, async () => {
    const head = readHead(treeDir);
    const committed = head === undefined ? undefined : loadCommitted(treeDir, head);
    const actual = await walkActual(treeDir, hostRoot, excludes);
    const reference = committed && lookupIn(committed.manifest.entries);
    const manifest = withWebGroupBits(withoutHolders(actual.manifest, actual.holders, reference), reference);
    let drift = NO_DRIFT;
    if (head !== undefined && committed !== undefined) {
      if (manifest.rootHash !== committed.rootHash) drift = driftOf(diffChecked(committed.manifest, manifest, NO_EXCLUDES, 'none'));
      const drifted = manifest.rootHash !== committed.rootHash || head.hostRoot !== hostRoot;
      if ((head.drift === true) !== drifted) writeHead(treeDir, { ...head, drift: drifted });
    }
    return { rootHash: manifest.rootHash, manifest, drift: { changed: [...drift.changed], added: [...drift.added], removed: [...drift.removed] } };
  });
}

/**
 * An index hash → host path over all committed trees, for converge's `reuse`. Paths come from the
 * committed manifests; converge verifies the bytes before using them.
 */
export function buildReuseIndex(stateDir: string, treeRoots: Map<string, string>): (hash: string) => string | undefined {
  const map = reuseMap(stateDir, treeRoots);
  return (hash) => map.get(hash);
}

/** buildReuseIndex's map: content hash → a host path holding it, from every committed manifest. */
export function reuseMap(stateDir: string, treeRoots: Map<string, string>): Map<string, string> {
  const map = new Map<string, string>();
  for (const [treeKey, root] of treeRoots) {
    const c = readCommitted(stateDir, treeKey);
    if (c === null) continue;
    for (const e of c.manifest.entries) {
      if (e.type === 'file' && !map.has(e.hash)) map.set(e.hash, join(root, e.path));
    }
  }
  return map;
}
