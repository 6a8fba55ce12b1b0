/**
 * converge: make the tree at hostRoot exactly equal to a desired manifest, as one transaction.
 *
 * 1. Fast path: the committed root hash equals the desired one (and nothing marked the tree as
 *    drifted) → in sync, after reading one small file.
 * 2. Base: with trustCommitted (default) the committed manifest, after lstat'ing every path the
 *    diff touches (and their parents) to confirm they are as committed; otherwise, or when that
 *    check finds a difference, a stat-cached walk of the real tree — which is how hand edits
 *    (drift) get repaired by the same path.
 * 3. Stage: every blob needed goes to `<dirname(hostRoot)>/.spoke-staging-<name>-<random>/blobs`,
 *    copied from this tree (a moved file) or another tree (`reuse`) and verified by hashing the
 *    copy, or fetched and verified. The tree is not touched.
 * 4. Journal, then the ops, then the commit (see journal.ts). For an initial sync into a
 *    missing or empty root the whole tree is built in staging and published with one rename.
 *
 * This module runs those steps in order; step 2 is base.ts, step 3 stage.ts, the initial build
 * initial.ts, unfinished journals replay.ts; the contract (options, progress, result, fetcher) is
 * types.ts and the operator-facing errors failures.ts.
 */
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { excludeMatcher, fail, isDiffEmpty, type Manifest, type ManifestDiff, type ManifestEntry, RootIndex, STAGING_PREFIX } from '@spoke/shared';
import { buildInitialTree, makeInitialDirs } from './initial.js';
import { findBase } from './base.js';
import { cancelled, diskFull, driftFound } from './failures.js';
import { creationMode, isDiskFull, lstatOrNull, probeUmask, removeAll } from './fsutil.js';
import { type Journal, readJournal, runJournal, Stepper, writeJournal } from './journal.js';
import { checkHostRoot, type Drift, NO_DRIFT } from './observe.js';
import { type Op, stagingTree } from './ops.js';
import { quarantine, quarantineCandidates, type QuarantineEntry } from './quarantine.js';
import { buildOps, checkDesired, type Conflict, findConflicts, withoutConflicts, diffFromDelta, lookupIn, neededBlobs } from './plan.js';
import { abandonJournal } from './replay.js';
import { type Counters, keepPartial, stageBlobs } from './stage.js';
import {
  loadCommitted,
  type ManifestDelta,
  pruneManifestFiles,
  readHead,
  rememberCommitted,
  sweepStagingIntent,
  treeStateDir,
  withTreeLock,
  writeHead,
  writeManifestFile,
  writeStagingIntent,
} from './state.js';
import type { ConvergeOptions, ConvergeResult } from './types.js';

export { diskFull } from './failures.js';
export type { BlobFetcher, ConvergeOptions, ConvergeProgress, ConvergeResult } from './types.js';

/**
 * Makes the tree at `o.hostRoot` exactly equal to `o.desired`, transactionally (see the module
 * comment). A pending journal of this tree is finished first.
 * @throws SpokeError INVALID_ARGUMENT / ARCHIVE_UNSAFE (bad manifest), BLOB_HASH_MISMATCH,
 *   PATH_OUTSIDE_ROOTS (a symlink where a directory must be), TASK_CANCELLED, INTERNAL
 */
export async function converge(o: ConvergeOptions): Promise<ConvergeResult> {
  const t0 = performance.now();
  const root = checkHostRoot(o.hostRoot);
  const treeDir = treeStateDir(o.stateDir, o.treeKey);
  if ((o.desired === undefined) === (o.delta === undefined)) throw fail('INTERNAL', 'converge needs exactly one of desired and delta');
  // A private copy of a delta (the caller may reuse its objects; the committed entries it merges into are ours).
  const own: ConvergeOptions =
    o.delta === undefined ? o : { ...o, delta: { ...o.delta, upserts: o.delta.upserts.map(copyEntry), removed: o.delta.removed.slice() } };
  try {
    return await withTreeLock(treeDir, () => convergeLocked(own, root, treeDir, t0));
  } catch (e) {
    throw diskFull(e, root) ?? e;
  }
}

async function convergeLocked(o: ConvergeOptions, root: string, treeDir: string, t0: number): Promise<ConvergeResult> {
  const stepper = new Stepper(o.onStep);
  const target = o.desired?.rootHash ?? (o.delta as ManifestDelta).rootHash;
  let conflicts: Conflict[] = [];
  let committedRoot = target;
  let abandonedJournal: string | undefined;
  let quarantined: QuarantineEntry | undefined;
  const result = (inSync: boolean, diff: ManifestDiff | undefined, drift: Drift, c?: Counters): ConvergeResult => ({
    inSync,
    rootHash: committedRoot,
    conflicts,
    ...(abandonedJournal === undefined ? {} : { abandonedJournal }),
    ...(quarantined === undefined ? {} : { quarantined }),
    added: diff?.added.length ?? 0,
    changed: diff === undefined ? 0 : diff.changed.length + diff.typeChanged.length + diff.modeChanged.length,
    removed: diff?.removed.length ?? 0,
    filesFetched: c?.filesFetched ?? 0,
    bytesFetched: c?.bytesFetched ?? 0,
    filesReused: c?.filesReused ?? 0,
    bytesReused: c?.bytesReused ?? 0,
    ms: Math.round((performance.now() - t0) * 10) / 10,
    drift,
  });

  // An interrupted transaction of this tree is finished before anything else. One that cannot
  // be finished (an op that fails every time, a torn journal) would stop every converge of the
  // tree for good: it is abandoned, and this converge starts from what is really on disk.
  let head = readHead(treeDir);
  try {
    const pending = readJournal(treeDir);
    if (pending !== undefined) runJournal(treeDir, pending);
  } catch (err) {
    if (isDiskFull(err)) throw err; // kept: it completes once there is space
    abandonedJournal = (err as Error).message;
    abandonJournal(treeDir);
  }
  head = readHead(treeDir);
  const trust = (o.trustCommitted ?? true) && head !== undefined && head.drift !== true && head.hostRoot === root;
  const sameExcludes = head !== undefined && sameList(head.excludes ?? [], o.excludes ?? []);
  if (trust && sameExcludes && head?.rootHash === target && !head.conflicts?.length) return result(true, undefined, NO_DRIFT);

  cancelled(o.signal);
  fs.mkdirSync(treeDir, { recursive: true });
  sweepStagingIntent(treeDir);
  const excludes = excludeMatcher({ exclude: o.excludes ?? [] });
  const committed = head === undefined ? undefined : loadCommitted(treeDir, head);
  const rootSt = lstatOrNull(root);
  if (rootSt !== undefined && !rootSt.isDirectory()) {
    throw fail(rootSt.isSymbolicLink() ? 'PATH_OUTSIDE_ROOTS' : 'INTERNAL', `tree root ${root} is not a directory`);
  }
  // A delta is merged into the committed manifest it was made against, and checked.
  let desired: Manifest;
  let deltaDiff: ManifestDiff | undefined;
  let index: RootIndex | undefined;
  if (o.delta !== undefined) {
    if (committed?.rootHash !== o.delta.base) {
      throw fail(
        'TREE_CHANGED',
        `the manifest delta is against ${o.delta.base.slice(0, 12)}…, but this tree committed ${committed?.rootHash.slice(0, 12) ?? 'nothing'}`,
      );
    }
    committed.index ??= RootIndex.ofSorted(committed.manifest.entries);
    const d = diffFromDelta(committed.manifest, o.delta, excludes, committed.index);
    desired = d.desired;
    index = d.index;
    if (sameExcludes) deltaDiff = d.diff;
    else checkDesired(desired, excludes); // excludes changed: committed entries were checked against others
  } else desired = copyManifest(o.desired as Manifest); // private: it becomes the committed manifest
  // The base (what the tree has now), the diff, and the desired manifest checked on the way.
  const found = await findBase(o, desired, deltaDiff, root, treeDir, excludes, trust ? committed : undefined, committed, sameExcludes);
  const { baseManifest, drift, obstacles } = found;
  let diff = found.diff;
  const drifted = drift.changed.length + drift.added.length + drift.removed.length;
  if (o.reportDrift === true && drifted > 0) throw driftFound(o.treeKey, drift);
  // User data where a file or symlink is wanted: skip those paths, apply and commit the rest.
  conflicts = findConflicts(root, diff, excludes, found.holders);
  /** The delta the new manifest file is written from (none when conflicts changed the manifest). */
  let delta = o.delta;
  if (conflicts.length > 0) {
    ({ diff, desired } = withoutConflicts(diff, desired, conflicts));
    delta = undefined;
    index = undefined;
  }
  committedRoot = desired.rootHash;
  const base = lookupIn(baseManifest.entries);
  o.onProgress?.({ phase: 'scan', files: baseManifest.entries.length, filesTotal: baseManifest.entries.length, bytes: 0, bytesTotal: 0 });

  if (isDiffEmpty(diff) && obstacles.length === 0) {
    if (rootSt === undefined) fs.mkdirSync(root, { recursive: true, mode: 0o755 }); // an empty tree is an empty dir
    const excl = o.excludes ?? [];
    if (head?.rootHash !== desired.rootHash || head.drift === true || head.hostRoot !== root || !sameExcludes || !sameConflicts(head.conflicts, conflicts)) {
      const chain = await writeManifestFile(treeDir, o.treeKey, desired, delta, committed);
      writeHead(treeDir, {
        v: 1,
        treeKey: o.treeKey,
        hostRoot: root,
        rootHash: desired.rootHash,
        excludes: excl,
        ...(conflicts.length ? { conflicts, wanted: target } : {}),
      });
      pruneManifestFiles(treeDir, chain);
      rememberCommitted(treeDir, { rootHash: desired.rootHash, manifest: desired, chain, index });
    }
    return result(true, diff, drift);
  }

  // Staging: a sibling of the root, so renames into the tree are atomic and it is never inside
  // it. A root that is a mount point has no sibling on its filesystem: staging goes inside it
  // then (the default excludes keep `.spoke-staging-*` out of every manifest and walk).
  const parent = dirname(root);
  fs.mkdirSync(parent, { recursive: true });
  const mountPoint = rootSt !== undefined && fs.statSync(parent).dev !== rootSt.dev;
  const initial = !mountPoint && baseManifest.entries.length === 0 && (rootSt === undefined || fs.readdirSync(root).length === 0);
  const ops: Op[] = initial ? [{ op: 'publish' }] : buildOps(root, base, diff, excludes, obstacles);
  const needs = neededBlobs(diff);
  const staging = join(mountPoint ? root : parent, `${STAGING_PREFIX}${truncate(basename(root))}-${randomBytes(6).toString('hex')}`);
  // Blobs that arrived before an earlier attempt failed (master restart, lost link) wait here,
  // so the retry does not fetch them again. Same filesystem, and excluded like staging dirs.
  const partial = join(mountPoint ? root : parent, `${STAGING_PREFIX}partial-${truncate(basename(root))}`);
  writeStagingIntent(treeDir, staging);
  stepper.step('staging');
  const counters: Counters = { filesFetched: 0, bytesFetched: 0, filesReused: 0, bytesReused: 0 };
  let journal: Journal;
  let chain: string[] = [];
  /** Blobs an initial build put where they are used: hash → path in the staging tree. */
  const placed = new Map<string, string>();
  /** Placed blobs known to be created with modeAt(hash) (a fetcher may ignore modeOf). */
  const withMode = new Set<string>();
  const manifest = desired;
  let manifestWrite: Promise<string[]> | undefined;
  try {
    // Written on the thread pool while the blobs are staged (a 20,000-entry manifest is ~2 MB).
    // Awaited before the journal.
    manifestWrite = writeManifestFile(treeDir, o.treeKey, manifest, delta, committed);
    manifestWrite.catch(() => undefined); // awaited below, or in the catch
    fs.mkdirSync(staging, { mode: 0o700 });
    fs.mkdirSync(join(staging, 'blobs'), { mode: 0o700 });
    // An initial build puts content (copied from this host, or fetched) straight where it is
    // used in the new tree. Its directories are made when the first file is placed: for a
    // fetch, once the request is out and the first blob is in, so the master reads and sends
    // while they are made (2,200 directories: ~100 ms) instead of after.
    const ensureDirs = initial ? once(() => makeInitialDirs(staging, manifest)) : () => undefined;
    const treeAt = `${stagingTree(staging)}/`;
    const firstPath = (hash: string) => (needs.get(hash) as { paths: string[] }).paths[0] as string;
    const placeAt = initial
      ? (hash: string) => {
          ensureDirs();
          return `${treeAt}${firstPath(hash)}`;
        }
      : undefined;
    // created with the final mode of that first path where it allows (see creationMode)
    const modeAt = (hash: string) => creationMode((needs.get(hash) as { mode: number }).mode);
    await stageBlobs(o, root, { manifest: baseManifest, lookup: base, diff }, needs, staging, counters, stepper, partial, placeAt, placed, modeAt, withMode);
    cancelled(o.signal);
    if (initial) {
      ensureDirs(); // nothing placed: a tree of directories, symlinks and resumed blobs
      buildInitialTree(staging, manifest, needs, rootSt, stepper, placed, { umask: probeUmask(staging), withMode });
    }
    cancelled(o.signal);
    // Hand-made content the apply removes or overwrites is kept before the commit (a crash
    // before the journal leaves the tree as it was and, at worst, an extra copy).
    if (o.quarantine !== undefined && !initial && (drifted > 0 || committed === undefined)) {
      const lost = quarantineCandidates(base, diff, committed === undefined ? undefined : lookupIn(committed.manifest.entries));
      quarantined = quarantine(o.quarantine, o.treeKey, root, lost);
    }
    stepper.step('manifest');
    chain = await manifestWrite;
    journal = {
      v: 1,
      treeKey: o.treeKey,
      hostRoot: root,
      staging,
      rootHash: desired.rootHash,
      excludes: o.excludes ?? [],
      ops,
      ...(conflicts.length ? { conflicts, wanted: target } : {}),
    };
    stepper.step('journal');
    writeJournal(treeDir, journal);
  } catch (err) {
    await manifestWrite?.catch(() => undefined); // no write left running behind a failed converge
    keepPartial(staging, partial, placed);
    removeAll(staging);
    sweepStagingIntent(treeDir);
    throw err;
  }
  // Committed: from here on the transaction completes (now, or by replay after a crash).
  stepper.step('journal written');
  runJournal(treeDir, journal, {
    stepper,
    committed: { rootHash: manifest.rootHash, manifest, chain, index },
    onOp: (done, total) => o.onProgress?.({ phase: 'apply', files: done, filesTotal: total, bytes: 0, bytesTotal: 0 }),
  });
  return result(false, diff, drift, counters);
}

/** Same conflicts (by path and what was wanted). */
function sameConflicts(a: readonly Conflict[] | undefined, b: readonly Conflict[]): boolean {
  const x = a ?? [];
  return x.length === b.length && x.every((c, i) => c.path === b[i]?.path && c.wanted === b[i]?.wanted && c.userData === b[i]?.userData);
}

function sameList(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

function truncate(name: string): string {
  let s = name;
  while (Buffer.byteLength(s) > 100) s = s.slice(0, -1);
  return s;
}

/** A private copy (the caller may reuse its objects); entries are already validated and sorted. */
function copyManifest(m: Manifest): Manifest {
  return { rootHash: m.rootHash, entries: m.entries.map(copyEntry) };
}

function copyEntry(e: ManifestEntry): ManifestEntry {
  const c: ManifestEntry = { path: e.path, type: e.type, mode: e.mode, size: e.size, hash: e.hash };
  if (e.target !== undefined) c.target = e.target;
  return c;
}

/** `fn` run at the first call only; its error, if it threw, is thrown again by every later call. */
function once(fn: () => void): () => void {
  let state: { done: true } | { error: unknown } | undefined;
  return () => {
    if (state === undefined) {
      try {
        fn();
        state = { done: true };
      } catch (error) {
        state = { error };
      }
    }
    if ('error' in state) throw state.error;
  };
}
