/**
 * What a tree walk is asked and what it answers (walk.ts): its options, the stat cache it may
 * consult, the tap a streamed first sync listens on, its result and what it skips; and the state
 * one walk carries between the metadata pass (walk.ts) and the reads (hashbatch.ts).
 */
import type { Stats } from 'node:fs';
import type { ExcludeMatcher } from './exclude.js';
import type { FileHelper } from './fileworker.js';
import type { Manifest, ManifestEntry } from './manifest.js';

/**
 * What a stat cache remembers about a file. A hit needs ino, size, mtime and ctime to be equal:
 * ctime cannot be set from user space, so it also catches a rewrite that restored the old mtime.
 */
export interface StatCacheRecord {
  ino: number;
  size: number;
  mtimeMs: number;
  ctimeMs: number;
  hash: string;
}

/**
 * Lets the master keep file hashes across restarts (e.g. in SQLite) so an unchanged file is not
 * read again. Keys are absolute paths. Synchronous on purpose: better-sqlite3 is synchronous and an
 * await per file would cost more than the lookup.
 */
export interface StatCache {
  get(absPath: string): StatCacheRecord | undefined;
  set(absPath: string, record: StatCacheRecord): void;
  /**
   * Optional: true when the cache holds no record below the directory `absDir`. walkTree asks
   * once and then skips every lookup: a tree walked for the first time would otherwise pay a
   * miss per file (SQLite: ~6 µs each, ~120 ms for 20,000 files).
   */
  holdsNothingUnder?(absDir: string): boolean;
}

/** Why walkTree left something out (excluded paths are not reported: that was asked for). */
export type SkipReason = 'socket' | 'fifo' | 'char-device' | 'block-device' | 'unsafe-name' | 'non-utf8-name' | 'unsafe-symlink' | 'vanished';

/** A path walkTree saw but did not put in the manifest. */
export interface SkippedEntry {
  path: string;
  reason: SkipReason;
}

/** Options for walkTree and readEntry. */
export interface WalkOptions {
  /** Extra exclude patterns (see exclude.ts for the syntax). */
  exclude?: readonly string[];
  /** Apply DEFAULT_EXCLUDES (VCS dirs, sites/*\/files, sites/*\/private). Default true. */
  defaultExcludes?: boolean;
  /** Hash cache keyed by absolute path, checked against ino/size/mtime/ctime. */
  statCache?: StatCache;
  /**
   * Files read at once. Default 16: measured on 20,000 files / 85 MB with a cold page cache,
   * 1 → 4.2 s, 4 → 2.2 s, 16 → 1.4 s, 64 → 1.3 s.
   */
  concurrency?: number;
  /**
   * A file whose mtime or ctime is less than this many ms old is hashed but not cached: file
   * times are coarse (a jiffy on Linux, seconds on some filesystems), so a second write in the same
   * tick would leave every cached field equal ("racily clean" in git's words). Default 2000.
   */
  racyMs?: number;
  /**
   * Called with every directory the manifest lists, and its lstat, as the walk finds it (before
   * it reads the names in it): the master keeps directory inodes and mtimes without a second
   * lstat of each.
   */
  onDir?: (rel: string, st: Stats) => void;
  /**
   * Read small files synchronously while that is fast (see hashBatch). Default true; false
   * always reads asynchronously, `concurrency` at once.
   */
  syncReads?: boolean;
  /**
   * A second thread that reads and hashes a share of each batch of files the walk reads
   * synchronously (see FileWorker and hashBatch): for a tree the stat cache cannot answer. It
   * keeps its share when a slice is slow (a GC pause or a busy CPU looks the same as a cold
   * disk; turned off then, it measured off for most of a first walk here).
   */
  helper?: FileHelper;
  /**
   * The entries of an earlier walk of the same tree (e.g. the master's live manifest). A path
   * whose entry is unchanged gets that object instead of a new one: a re-walk of a large tree
   * then shares its entries with the manifests still held, instead of holding a second copy of
   * every entry (200,000 files: ~40 MB). The manifest is the same either way.
   */
  previous?: { get(path: string): ManifestEntry | undefined };
  /**
   * Told every entry as the walk records it (a directory before anything in it), with the bytes
   * the walk read and hashed for a file when it holds them whole (files read synchronously, up
   * to 1 MiB), else undefined: a streamed first sync sends them on without a second read.
   * `content` is a view of a buffer the walk reuses: use it before returning. A tap turns the
   * helper thread off (what it reads stays on its side) unless `helper()` says the content is
   * mostly not needed. `pace` is awaited between slices of the walk, so a slow consumer holds
   * the walk back instead of piling up what it read.
   */
  tap?: WalkTap;
}

/** See WalkOptions.tap. */
export interface WalkTap {
  entry(e: ManifestEntry, content: Buffer | undefined): void;
  pace?(): Promise<void> | undefined;
  /** True when the helper thread may take a share of the next batch (its files' content then is not handed over). */
  helper?(): boolean;
}

/** The result of walkTree. */
export interface WalkResult {
  manifest: Manifest;
  skipped: SkippedEntry[];
  /** Bytes actually read and hashed (0 for a fully warm cache). */
  hashedBytes: number;
  /** Files whose hash came from the stat cache. */
  cacheHits: number;
}

/** Longest stretch of synchronous metadata calls before yielding to the event loop. */
export const SLICE_MS = 10;

/** What one walk carries (walkTree builds it; readEntry uses the part it needs). */
export interface WalkState {
  root: string;
  excludes: ExcludeMatcher;
  cache: StatCache | undefined;
  /** False when the cache is known to hold nothing for this tree (see StatCache.holdsNothingUnder). */
  lookups: boolean;
  onDir: WalkOptions['onDir'];
  /**
   * Directories are listed with their entries' types, and regular files are not lstat()ed: set
   * when nothing is looked up in a stat cache and files are read synchronously (see visit).
   */
  typedListing: boolean;
  racyMs: number;
  entries: ManifestEntry[];
  skipped: SkippedEntry[];
  hashedBytes: number;
  cacheHits: number;
  buffers: Buffer[];
  previous: WalkOptions['previous'];
  /** The helper thread (see hashBatch). */
  helper: FileHelper | undefined;
  /** The batch the helper thread is working on (see hashBatch), and whether it is done. */
  helping: Promise<void> | undefined;
  helperDone: boolean;
  /** The helper's share of a batch (see hashBatch). */
  share: number;
  tap: WalkTap | undefined;
  /** With a tap: the buffer small files are read into whole (see WalkOptions.tap). */
  tapBuf: Buffer | undefined;
}

/** What a walk uses of a file's lstat or fstat. */
export type FileFacts = Pick<Stats, 'ino' | 'size' | 'mode' | 'mtimeMs' | 'ctimeMs'>;

/** A regular file that needs reading (not in the stat cache, or changed). */
export interface HashTask {
  rel: string;
  /** lstat of the file; absent when the directory listing said "regular file" (see visit). */
  st?: Stats;
}
