/**
 * The converge engine's contract: what a caller passes in (ConvergeOptions, with a BlobFetcher for
 * the transport's side), what it is told while a converge runs (ConvergeProgress) and what it gets
 * back (ConvergeResult). converge.ts re-exports them for its importers.
 */
import type { FileHelper, Manifest } from '@spoke/shared';
import type { Drift } from './observe.js';
import type { Conflict } from './plan.js';
import type { QuarantineEntry, QuarantineOptions } from './quarantine.js';
import type { ManifestDelta } from './state.js';

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
