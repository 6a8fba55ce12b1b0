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
 */
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import { constants as FS } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import {
  type ExcludeMatcher,
  excludeMatcher,
  fail,
  type FileHelper,
  isDiffEmpty,
  isHash,
  isSpokeError,
  type Manifest,
  type ManifestDiff,
  type ManifestEntry,
  MODE_MASK,
  parentOf,
  RootIndex,
  STAGING_PREFIX,
} from '@spoke/shared';
import { copyVerifiedSync, creationMode, errText, hashFileSync, isDiskFull, isErrno, lstatOrNull, probeUmask, removeAll } from './fsutil.js';
import { type Journal, readJournal, runJournal, Stepper, writeJournal } from './journal.js';
import { checkHostRoot, type Drift, driftOf, NO_DRIFT, walkActual } from './observe.js';
import { blobPath, type Op, stagingTree } from './ops.js';
import { quarantine, quarantineCandidates, type QuarantineEntry, type QuarantineOptions } from './quarantine.js';
import {
  buildOps,
  checkDesired,
  type Conflict,
  findConflicts,
  withoutConflicts,
  diffChecked,
  diffFromDelta,
  type Lookup,
  lookupIn,
  neededBlobs,
  type Needs,
  type Obstacle,
  obstaclesOf,
  withoutHolders,
  withWebGroupBits,
} from './plan.js';
import {
  type Committed,
  loadCommitted,
  type ManifestDelta,
  JOURNAL,
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

/** Fetches blobs by hash (the transport's side of a converge). */
export interface BlobFetcher {
  /**
   * Fetch these blobs into stagingDir as files named by their hash, each verified (use
   * unpackBlobs from @spoke/shared on the byte stream the transport gives you). Resolves when all
   * arrived.
   */
  fetch(
    hashes: string[],
    stagingDir: string,
    /** Bytes received since the last call, and blobs completed since (when the fetcher knows). */
    onBytes?: (n: number, files?: number) => void,
    signal?: AbortSignal,
    /**
     * Where a blob may go instead of `<stagingDir>/<hash>`: a new file in a directory that exists,
     * on the same filesystem (an initial build puts content where it is used). May be ignored.
     */
    destOf?: (hash: string) => string | undefined,
    /** The mode to create a blob written to destOf(hash) with (before the umask). May be ignored. */
    modeOf?: (hash: string) => number,
  ): Promise<void | Iterable<{ hash: string; size: number; path: string; mode?: number }>>;
  /**
   * True when this fetcher verifies every blob's hash itself (unpackBlobs does). Converge then
   * checks only presence and size; otherwise it hashes every fetched blob again. Default false.
   * A verifying fetcher may resolve to what it wrote where (unframeBlobs' list): presence and
   * size are then taken from it instead of an lstat per blob (20,000 blobs: ~180 ms), and a
   * reported `mode` (what the file was created with, before the umask) can spare its chmod.
   */
  verifies?: boolean;
}

/** Progress of a converge. */
export interface ConvergeProgress {
  /** reuse: content copied from this host (files and bytes of all that is needed); fetch: from the master */
  phase: 'scan' | 'reuse' | 'fetch' | 'apply';
  files: number;
  filesTotal: number;
  bytes: number;
  bytesTotal: number;
}

export interface ConvergeOptions {
  /** Namespace path of the tree, e.g. /var/aegir/platforms/d7 (identity for journals and manifests). */
  treeKey: string;
  /** Where that tree lives on this host (after --root mapping): absolute and normalised. */
  hostRoot: string;
  /** Agent state dir: committed manifests, journals and stat caches live in `<stateDir>/trees/`. */
  stateDir: string;
  /** The tree to make: a whole manifest, or `delta`. */
  desired?: Manifest;
  /**
   * The tree to make as its change from this tree's committed manifest (what the master sends an
   * agent a few edits behind): the diff, its checks and the commit then cost time in proportion
   * to the change, not to the tree. Its base must be the committed root hash (else TREE_CHANGED).
   */
  delta?: ManifestDelta;
  /** Extra excludes; the defaults (VCS dirs, sites/*\/files, sites/*\/private) always apply. */
  excludes?: string[];
  fetcher: BlobFetcher;
  /** A host path elsewhere that should hold this content (see buildReuseIndex); verified before use. */
  reuse?: (hash: string) => string | undefined;
  /**
   * Other trees are looked in (`reuse`) only when what is left to fetch after this tree's own
   * copies totals at least this many bytes: a caller whose index is costly to build (it reads
   * every held manifest) builds it lazily and skips it for small changes. @default 0
   */
  reuseMinBytes?: number;
  /**
   * A second thread that copies (and verifies) half of the content reused from other trees
   * (a platform sharing its core with one this host holds: ~19,000 copies of small files).
   */
  helper?: FileHelper;
  /**
   * Trust the committed manifest as the description of the tree (default true): equal root hashes
   * mean in sync, and a converge only checks the paths it changes. False walks the whole tree.
   * observe() marks a drifted tree, which turns the trust off until a converge repairs it.
   */
  trustCommitted?: boolean;
  /**
   * Where a drift repair copies what it removes or overwrites (content that differs from the
   * committed manifest: hand edits) before the apply; absent = nothing is kept.
   */
  quarantine?: QuarantineOptions;
  /**
   * Report drift instead of repairing it: a converge that finds the tree differs from what was
   * last committed changes nothing and fails with DRIFT_FOUND (platforms with `--drift report`).
   */
  reportDrift?: boolean;
  onProgress?: (p: ConvergeProgress) => void;
  /** Cancels before the journal is committed; after that the transaction always completes. */
  signal?: AbortSignal;
  /** Test hook: called between every step with a step counter (crash tests kill the process here). */
  onStep?: (n: number, what: string) => void;
}

export interface ConvergeResult {
  /** True when the tree already equalled the desired manifest (nothing was changed). */
  inSync: boolean;
  rootHash: string;
  added: number;
  /** Content, type and mode changes. */
  changed: number;
  removed: number;
  filesFetched: number;
  bytesFetched: number;
  /** Blobs copied from this tree (moved files) or from other trees instead of fetched. */
  filesReused: number;
  bytesReused: number;
  ms: number;
  /** Where the tree differed from its committed manifest before this converge (repaired now). */
  drift: Drift;
  /**
   * Paths skipped because user data stands where the desired manifest wants a file or symlink
   * (see findConflicts); everything else was applied. Then `rootHash` is the root of what was
   * committed (the desired manifest without those paths), not the desired one.
   */
  conflicts: Conflict[];
  /**
   * Set when an earlier converge's journal could not be completed (its message): it was
   * abandoned and this converge worked from what is really on disk instead.
   */
  abandonedJournal?: string;
  /** What the repair copied to the quarantine before removing or overwriting it. */
  quarantined?: QuarantineEntry;
}

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

/**
 * A full disk (or quota) anywhere in a converge, as DISK_LOW with what to do, instead of an
 * INTERNAL error quoting ENOSPC (the steps that wrap file system errors let these through). The
 * tree is as it was (the staging dir is gone; verified blobs are kept for the retry), or a
 * journal finishes it at the next converge.
 */
export function diskFull(e: unknown, root: string): Error | undefined {
  if (!isDiskFull(e)) return undefined;
  const what = isErrno(e, 'EDQUOT') ? 'disk quota exceeded' : 'file system full';
  return fail(
    'DISK_LOW',
    `no space left for ${root} (${what}); the tree keeps its last complete version — free space on this server and run a verify (${errText(e)}: ${(e as Error).message})`,
  );
}

/** Below this many bytes to stage, only the files a converge removes or replaces are looked in. */
const LOCAL_SCAN_MIN_BYTES = 1024 * 1024;
/** Fewer copies than this are not shared with the helper thread. */
const HELPER_MIN_COPIES = 64;
/** Copies per chunk when a helper thread shares them (see stageBlobs). */
const COPY_CHUNK = 256;
/** A `reuse` progress report every this many files reused. */
const REUSE_PROGRESS_EVERY = 1024;

interface Counters {
  filesFetched: number;
  bytesFetched: number;
  filesReused: number;
  bytesReused: number;
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

/** DRIFT_FOUND for a tree whose drift is reported, not repaired. */
function driftFound(tree: string, d: Drift): Error {
  const sample = [...d.changed.map((x) => `~${x}`), ...d.added.map((x) => `+${x}`), ...d.removed.map((x) => `-${x}`)];
  const n = sample.length;
  return fail(
    'DRIFT_FOUND',
    `${tree} differs from what was last converged in ${n} path(s): ${sample.slice(0, 10).join(' ')}${n > 10 ? ' …' : ''}; nothing was changed (drift is reported, not repaired)`,
    { tree, drift: d },
  );
}

/** The base of the diff (see the module comment, step 2), and the drift found on the way. */
async function findBase(
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

/** Same conflicts (by path and what was wanted). */
function sameConflicts(a: readonly Conflict[] | undefined, b: readonly Conflict[]): boolean {
  const x = a ?? [];
  return x.length === b.length && x.every((c, i) => c.path === b[i]?.path && c.wanted === b[i]?.wanted && c.userData === b[i]?.userData);
}

/**
 * Drops a journal that cannot be completed (and its staging dir) and marks the tree drifted, so
 * the next plan walks what is really there: the ops that did run leave a tree between the old and
 * the new version, which the walk sees as it is.
 */
function abandonJournal(treeDir: string): void {
  let staging: string | undefined;
  try {
    staging = readJournal(treeDir)?.staging;
  } catch {
    // torn: its staging dir is swept with the intent record below
  }
  if (staging !== undefined && basename(staging).startsWith(STAGING_PREFIX)) removeAll(staging);
  fs.rmSync(join(treeDir, JOURNAL), { force: true });
  sweepStagingIntent(treeDir);
  const head = readHead(treeDir);
  if (head !== undefined && head.drift !== true) writeHead(treeDir, { ...head, drift: true });
}

function sameList(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

function cancelled(signal: AbortSignal | undefined): void {
  if (signal?.aborted) throw fail('TASK_CANCELLED', 'converge cancelled');
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

/**
 * Puts every needed blob in `<staging>/blobs/<hash>`: copies of content already on this host
 * (verified by hashing the copy), then one fetch for the rest (verified by size, and by hash
 * unless the fetcher verifies).
 */
async function stageBlobs(
  o: ConvergeOptions,
  root: string,
  base: { manifest: Manifest; lookup: Lookup; diff: ManifestDiff },
  needs: Needs,
  staging: string,
  counters: Counters,
  stepper: Stepper,
  partial?: string,
  /** Where a blob's first use lives in a new tree being built: copies from this host go there. */
  placeAt?: (hash: string) => string,
  /** Filled with hash → path for the blobs placed so. */
  placed?: Map<string, string>,
  /** The mode a blob placed so is created with (see creationMode). */
  modeAt?: (hash: string) => number,
  /** Filled with the placed blobs known to be created with modeAt(hash). */
  withMode?: Set<string>,
): Promise<void> {
  if (needs.size === 0) return;
  // Blobs an earlier failed attempt already fetched: verified on arrival then, checked by size
  // now, and hashed again below with everything else when the fetcher does not verify.
  let resumed = 0;
  if (partial !== undefined && fs.existsSync(partial)) {
    for (const [hash, need] of needs) {
      const src = join(partial, hash);
      const st = lstatOrNull(src);
      if (st !== undefined && st.isFile() && st.size === need.size && hashFileSync(src)?.hash === hash) {
        fs.renameSync(src, join(staging, 'blobs', hash));
        resumed++;
      }
    }
    removeAll(partial);
  }
  // Content this tree holds already: for a small fetch only what the converge removes or
  // replaces (moved and renamed files), else every file (a walk of 20,000 entries costs ~5 ms).
  const local = new Map<string, string>();
  const consider = (e: ManifestEntry | undefined) => {
    if (e !== undefined && e.type === 'file' && needs.has(e.hash) && !local.has(e.hash)) local.set(e.hash, e.path);
  };
  let neededBytes = 0;
  for (const n of needs.values()) neededBytes += n.size;
  if (neededBytes >= LOCAL_SCAN_MIN_BYTES) for (const e of base.manifest.entries) consider(e);
  else {
    for (const e of base.diff.removed) consider(e);
    for (const t of base.diff.typeChanged) consider(t.from);
    for (const e of base.diff.changed) consider(base.lookup(e.path));
  }
  const blobs = join(staging, 'blobs');
  let seq = 0;
  // Copied and hashed in one pass; only a copy that holds the wanted content is kept. A copy
  // goes where the blob is used in a new tree (with its creation mode), else to a temp name in
  // blobs/, renamed to its hash once verified.
  const copyTarget = (hash: string): { dest: string; mode: number } => {
    const at = placeAt?.(hash);
    return at === undefined ? { dest: join(blobs, `.copy-${seq++}`), mode: 0o600 } : { dest: at, mode: modeAt?.(hash) ?? 0o600 };
  };
  const keepCopy = (hash: string, dest: string) => {
    if (placeAt === undefined) fs.renameSync(dest, join(blobs, hash));
    else {
      placed?.set(hash, dest);
      if (modeAt) withMode?.add(hash);
    }
  };
  const copyIn = (src: string, hash: string, size: number): boolean => {
    const t = copyTarget(hash);
    if (!copyVerifiedSync(src, t.dest, hash, size, t.mode)) return false;
    keepCopy(hash, t.dest);
    return true;
  };
  let needBytes = 0;
  for (const need of needs.values()) needBytes += need.size;
  const reused = (hash: string, size: number) => {
    counters.filesReused++;
    counters.bytesReused += size;
    if (stepper.active) stepper.step(`stage ${hash.slice(0, 12)}`);
    // a second platform copies ~20,000 files here: say so every REUSE_PROGRESS_EVERY
    if (counters.filesReused % REUSE_PROGRESS_EVERY === 0) {
      o.onProgress?.({ phase: 'reuse', files: counters.filesReused, filesTotal: needs.size, bytes: counters.bytesReused, bytesTotal: needBytes });
    }
  };
  // First what this tree holds already (moved or copied files), then other trees.
  const elsewhere: [string, number][] = [];
  let elsewhereBytes = 0;
  for (const [hash, need] of needs) {
    if (resumed > 0 && fs.existsSync(join(blobs, hash))) {
      // counted as reused: it did not cross the wire this time
      counters.filesReused++;
      counters.bytesReused += need.size;
      continue;
    }
    const rel = local.get(hash);
    if (rel !== undefined && copyIn(join(root, rel), hash, need.size)) reused(hash, need.size);
    else {
      elsewhere.push([hash, need.size]);
      elsewhereBytes += need.size;
    }
  }
  const toFetch: string[] = [];
  let bytesTotal = 0;
  const lookElsewhere = o.reuse !== undefined && elsewhereBytes >= (o.reuseMinBytes ?? 0);
  const fetchIt = (hash: string, size: number) => {
    toFetch.push(hash);
    bytesTotal += size;
  };
  const copies: [hash: string, size: number, src: string][] = [];
  for (const [hash, size] of elsewhere) {
    const src = lookElsewhere ? o.reuse?.(hash) : undefined;
    if (src === undefined) fetchIt(hash, size);
    else copies.push([hash, size, src]);
  }
  // With a helper thread, both threads take chunks of COPY_CHUNK copies from the list until it
  // is empty (so neither waits long for the other: the helper is slower at first); what the
  // helper hands back undone is copied here, exactly as without it.
  let next = 0;
  let end = copies.length;
  const take = () => {
    const from = next;
    next = Math.min(end, next + COPY_CHUNK);
    return copies.slice(from, next);
  };
  // the helper works from the end, in other directories than this thread (a directory takes one
  // file creation at a time)
  const takeLast = () => {
    const to = end;
    end = Math.max(next, end - COPY_CHUNK);
    return copies.slice(end, to);
  };
  const helper = copies.length >= HELPER_MIN_COPIES ? o.helper : undefined;
  const helped = (async () => {
    if (helper === undefined) return;
    for (let chunk = takeLast(); chunk.length > 0; chunk = takeLast()) {
      const targets = chunk.map(([hash]) => copyTarget(hash));
      const done = await helper.copy(chunk.map(([hash, size, src], k) => [src, targets[k]?.dest as string, hash, size, targets[k]?.mode as number]));
      for (let k = 0; k < chunk.length; k++) {
        const [hash, size, src] = chunk[k] as [string, number, string];
        const d = done[k];
        if (d === true) {
          keepCopy(hash, targets[k]?.dest as string);
          reused(hash, size);
        } else if (d === undefined && copyIn(src, hash, size)) reused(hash, size);
        else fetchIt(hash, size);
      }
    }
  })();
  helped.catch(() => undefined); // awaited (and thrown) below, after this thread's share
  for (let chunk = take(); chunk.length > 0; chunk = take()) {
    for (const [hash, size, src] of chunk) {
      if (copyIn(src, hash, size)) reused(hash, size);
      else fetchIt(hash, size);
    }
    if (helper !== undefined) await new Promise((resolve) => setImmediate(resolve)); // the helper's answers, its next chunk
  }
  await helped;
  if (toFetch.length === 0) return;
  cancelled(o.signal);
  let bytes = 0;
  let files = 0;
  const progress = (done: number) => o.onProgress?.({ phase: 'fetch', files: done, filesTotal: toFetch.length, bytes, bytesTotal });
  progress(0);
  const report = await o.fetcher.fetch(
    toFetch,
    blobs,
    (n, f = 0) => {
      bytes += n;
      files += f;
      if (stepper.active) stepper.step('fetch');
      progress(Math.min(files, toFetch.length)); // a retry's blobs count again
    },
    o.signal,
    placeAt,
    placeAt === undefined ? undefined : modeAt,
  );
  cancelled(o.signal);
  const verify = o.fetcher.verifies !== true;
  const reported = new Map<string, { size: number; path: string; mode?: number }>();
  if (!verify && report) for (const r of report) reported.set(r.hash, r);
  for (const hash of toFetch) {
    const size = (needs.get(hash) as { size: number }).size;
    const at = placeAt?.(hash);
    const r = reported.get(hash);
    let path: string;
    let got: number | undefined;
    if (r !== undefined && r.path === at && r.mode !== undefined && r.mode === modeAt?.(hash)) withMode?.add(hash);
    if (r !== undefined) {
      path = r.path;
      got = r.size;
    } else {
      // not reported (a fetcher without a report, or a blob kept from a failed attempt): on disk
      const atSt = at === undefined ? undefined : lstatOrNull(at);
      path = atSt === undefined ? blobPath(staging, hash) : (at as string);
      const st = atSt ?? lstatOrNull(path);
      got = st?.isFile() ? st.size : undefined;
    }
    if (got === undefined) {
      throw fail('BLOB_HASH_MISMATCH', `blob ${hash.slice(0, 12)}… did not arrive`, { hash });
    }
    if (got !== size) {
      throw fail('BLOB_HASH_MISMATCH', `blob ${hash.slice(0, 12)}… arrived with ${got} bytes, expected ${size}`, { hash });
    }
    if (verify) {
      const got = hashFileSync(path);
      if (got?.hash !== hash) {
        throw fail('BLOB_HASH_MISMATCH', `blob ${hash.slice(0, 12)}… arrived with content ${got?.hash.slice(0, 12) ?? '?'}…`, {
          expected: hash,
          actual: got?.hash,
        });
      }
    }
    if (at !== undefined && path === at) placed?.set(hash, path);
  }
  counters.filesFetched = toFetch.length;
  counters.bytesFetched = bytesTotal;
  progress(toFetch.length);
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

/** The directories of a new tree, in `<staging>/tree` (0700 until buildInitialTree sets their modes). */
function makeInitialDirs(staging: string, desired: Manifest): void {
  const tree = stagingTree(staging);
  try {
    fs.mkdirSync(tree, 0o700);
    for (const e of desired.entries) if (e.type === 'dir') fs.mkdirSync(`${tree}/${e.path}`, 0o700);
  } catch (err) {
    if (isDiskFull(err)) throw err; // converge() says DISK_LOW
    throw fail('INTERNAL', `cannot build the new tree in ${tree}: ${errText(err)}`);
  }
}

/**
 * Completes the whole desired tree in `<staging>/tree` (its directories made by makeInitialDirs),
 * in its final layout: the journal is then the single rename that publishes it. Content copied
 * from this host is in place already (`placed`); fetched blobs are renamed in (copied for all but
 * their last use). Fresh private directory, parents before children, and every parent is a
 * directory of the manifest: nothing here can meet a symlink.
 */
function buildInitialTree(
  staging: string,
  desired: Manifest,
  needs: Needs,
  rootSt: fs.Stats | undefined,
  stepper: Stepper,
  placed: ReadonlyMap<string, string>,
  /** This process's umask, and the placed blobs created with creationMode of their first path's mode. */
  created: { umask: number; withMode: ReadonlySet<string> },
): void {
  const tree = stagingTree(staging);
  const blobs = join(staging, 'blobs');
  const left = new Map<string, number>();
  for (const [hash, n] of needs) left.set(hash, n.paths.length);
  const entries = desired.entries;
  try {
    for (const e of entries) {
      if (e.type === 'dir') continue;
      const abs = `${tree}/${e.path}`;
      if (e.type === 'symlink') {
        fs.symlinkSync(e.target as string, abs);
      } else {
        const at = placed.get(e.hash);
        if (at === undefined) {
          const n = (left.get(e.hash) as number) - 1;
          left.set(e.hash, n);
          const src = `${blobs}/${e.hash}`;
          if (n > 0) fs.copyFileSync(src, abs, FS.COPYFILE_FICLONE);
          else fs.renameSync(src, abs);
        } else if (at !== abs) fs.copyFileSync(at, abs, FS.COPYFILE_FICLONE);
      }
      if (stepper.active) stepper.step(`build ${e.path}`);
    }
    // File modes once every copy is made (a placed file may be the source of later copies and
    // must stay readable until then), directory modes last, deepest first: a read-only
    // directory must not block its children.
    // A file placed at its first path (fetched or copied) has its mode already when it was
    // created with it (see creationMode) and the umask kept it; copies, renamed blobs and files
    // of unknown creation mode get this chmod.
    for (const e of entries) {
      if (e.type !== 'file') continue;
      const abs = `${tree}/${e.path}`;
      const kept = placed.get(e.hash) === abs && created.withMode.has(e.hash) && (creationMode(e.mode) & ~created.umask) === (e.mode & MODE_MASK);
      if (kept) continue;
      fs.chmodSync(abs, e.mode & MODE_MASK);
    }
    for (let i = entries.length - 1; i >= 0; i--) {
      const e = entries[i] as ManifestEntry;
      if (e.type === 'dir') fs.chmodSync(`${tree}/${e.path}`, e.mode & MODE_MASK);
    }
    fs.chmodSync(tree, rootSt === undefined ? 0o755 : rootSt.mode & MODE_MASK);
  } catch (err) {
    if (isDiskFull(err)) throw err; // converge() says DISK_LOW
    throw fail('INTERNAL', `cannot build the new tree in ${tree}: ${errText(err)}`);
  }
}

/**
 * Finishes or discards every pending transaction under stateDir: a journal is run to the end
 * (its tree becomes the new one), a staging dir without a journal is removed (its tree stayed the
 * old one). Call once at agent start-up, before connecting. Returns the tree keys it finished.
 * @throws SpokeError the first journal that cannot be completed (after trying all others); that
 *   journal and its staging dir are left in place
 */
export async function replayJournals(stateDir: string): Promise<string[]> {
  const trees = join(stateDir, 'trees');
  let names: string[];
  try {
    names = fs.readdirSync(trees).sort();
  } catch (err) {
    if (isErrno(err, 'ENOENT')) return [];
    throw err;
  }
  const finished: string[] = [];
  const errors: unknown[] = [];
  for (const name of names) {
    const treeDir = join(trees, name);
    await withTreeLock(treeDir, async () => {
      try {
        const j = readJournal(treeDir);
        if (j === undefined) {
          sweepStagingIntent(treeDir);
          return;
        }
        runJournal(treeDir, j);
        finished.push(j.treeKey);
      } catch (err) {
        errors.push(err);
      }
    });
  }
  const first = errors[0];
  if (first !== undefined) {
    if (errors.length > 1 && isSpokeError(first)) {
      throw fail(first.code, `${first.message} (and ${errors.length - 1} more trees could not be replayed)`, first.details);
    }
    throw first;
  }
  return finished;
}

/**
 * Moves the verified blobs of a failed attempt aside for the next one (best effort): those in
 * `<staging>/blobs`, and those an initial build had put in place (`placed`; content copied from
 * this host or fetched, checked either way).
 */
function keepPartial(staging: string, partial: string, placed: ReadonlyMap<string, string>): void {
  try {
    const blobs = join(staging, 'blobs');
    const names = fs.existsSync(blobs) ? fs.readdirSync(blobs).filter((n) => isHash(n)) : [];
    if (names.length === 0 && placed.size === 0) return;
    fs.mkdirSync(partial, { recursive: true, mode: 0o700 });
    for (const n of names) fs.renameSync(join(blobs, n), join(partial, n));
    for (const [hash, at] of placed) if (fs.existsSync(at)) fs.renameSync(at, join(partial, hash));
  } catch {
    // keeping them is an optimisation; losing them only costs a re-fetch
  }
}
