/**
 * Manifests: the exact list of what is in a tree (path, type, mode, size, content hash) with a root
 * hash over all of it. Two trees with equal root hashes are equal for the sync engine, which is
 * what lets an in-sync agent answer with one message instead of a transfer.
 *
 * Hash: SHA-256 (node:crypto, hardware accelerated here at >1 GB/s). Content addressing trusts the
 * hash as the identity of the bytes: a blob fetched by hash is written wherever that hash is
 * wanted, and equal root hashes skip a converge entirely. A hash with practical collisions (MD5,
 * SHA-1) would let someone who can write one file on the master make an agent serve other bytes
 * under a trusted hash, so only a collision-resistant hash will do. The hash is the whole identity:
 * no mtimes, owners or inode numbers, which differ between hosts.
 */
import { createHash, type Hash } from 'node:crypto';
import * as fs from 'node:fs';
import { constants as FS, type Stats } from 'node:fs';
import * as fsp from 'node:fs/promises';
import { join } from 'node:path';
import { fail } from '../errors.js';
import { compileExcludes, DEFAULT_EXCLUDES, type ExcludeMatcher } from './exclude.js';
import type { FileHelper, HashItem } from './fileworker.js';
import * as fsx from './fsx.js';
import { errnoText, isErrno } from './fsx.js';
import { checkLinkTarget, comparePaths, MAX_PATH_BYTES, nameProblem } from './paths.js';
import { forEachLimit } from './pool.js';
import { canonicalLine, rootHashOfSorted } from './roothash.js';

export { canonicalLine, rootHashOfSorted };

/** What a manifest entry is. Anything else (sockets, FIFOs, devices) is never synced. */
export type EntryType = 'file' | 'dir' | 'symlink';

/**
 * One path in a tree.
 * - `path`: tree-relative, '/'-separated, no leading './' (the root itself is not an entry).
 * - `mode`: permission bits only (`st_mode & 0o777`). setuid, setgid and sticky are dropped on
 *   purpose: the sync engine never creates them (a pushed setuid binary is a privilege escalation)
 *   and archives carrying them are refused. Symlinks are always 0o777 (Linux cannot chmod them).
 * - `size`: bytes of a file, bytes of a symlink's target, 0 for a directory (st_size of a
 *   directory depends on the filesystem, not on the content).
 * - `hash`: SHA-256 hex of the content (file), of the target string (symlink), '' (dir).
 * - `target`: symlink target, verbatim.
 */
export interface ManifestEntry {
  path: string;
  type: EntryType;
  mode: number;
  size: number;
  hash: string;
  target?: string;
}

/** A tree: entries sorted by path in UTF-8 byte order (see comparePaths), and their root hash. */
export interface Manifest {
  entries: ManifestEntry[];
  rootHash: string;
}

/** Permission bits kept in a manifest (see ManifestEntry.mode). */
export const MODE_MASK = 0o777;
/** The mode every symlink entry carries. */
export const SYMLINK_MODE = 0o777;

/** SHA-256 hex of a string (UTF-8) or bytes. */
export function sha256Hex(data: string | Uint8Array): string {
  return createHash('sha256').update(data).digest('hex');
}

/** True when `s` looks like a SHA-256 hex digest (64 lowercase hex digits). */
export function isHash(s: string): boolean {
  return /^[0-9a-f]{64}$/.test(s);
}

/**
 * Root hash of a manifest's entries (see roothash.ts for its definition). Independent of the
 * input order (sorts a copy when needed).
 */
export function computeRootHash(entries: readonly ManifestEntry[]): string {
  return rootHashOfSorted(isSorted(entries) ? entries : [...entries].sort(byPath));
}

/** Compares entries by path (UTF-8 byte order). */
export function byPath(a: ManifestEntry, b: ManifestEntry): number {
  return comparePaths(a.path, b.path);
}

/**
 * In entries sorted by path, the index of the first entry whose path is not before `path`
 * (entries.length when there is none): the entry at `path` if there is one, else where it would
 * go. Everything below a directory D is one run starting at lowerBound(entries, `D/`).
 */
export function lowerBound(entries: readonly ManifestEntry[], path: string): number {
  let lo = 0;
  let hi = entries.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (comparePaths((entries[mid] as ManifestEntry).path, path) < 0) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

function isSorted(entries: readonly ManifestEntry[]): boolean {
  for (let i = 1; i < entries.length; i++) {
    if (byPath(entries[i - 1] as ManifestEntry, entries[i] as ManifestEntry) >= 0) return false;
  }
  return true;
}

/**
 * Builds a manifest from entries in any order: sorts, refuses duplicate paths, computes the root hash.
 * @throws SpokeError INVALID_ARGUMENT on a duplicate path
 */
export function buildManifest(entries: readonly ManifestEntry[]): Manifest {
  const sorted = [...entries].sort(byPath);
  for (let i = 1; i < sorted.length; i++) {
    const p = (sorted[i] as ManifestEntry).path;
    if (p === (sorted[i - 1] as ManifestEntry).path) {
      throw fail('INVALID_ARGUMENT', `manifest lists ${JSON.stringify(p)} twice`);
    }
  }
  return { entries: sorted, rootHash: rootHashOfSorted(sorted) };
}

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

/** The exclude matcher walkTree uses for these options (for filtering watcher events the same way). */
export function excludeMatcher(opts: Pick<WalkOptions, 'exclude' | 'defaultExcludes'> = {}): ExcludeMatcher {
  const base = opts.defaultExcludes === false ? [] : DEFAULT_EXCLUDES;
  return compileExcludes([...base, ...(opts.exclude ?? [])]);
}

const RACY_MS = 2000;
const READ_CHUNK = 256 * 1024;
// Files below this size are read into a buffer of their own size, not a pooled READ_CHUNK one.
const SMALL_FILE = 64 * 1024;
// Longest stretch of synchronous metadata calls before yielding to the event loop.
const SLICE_MS = 10;
// Files read per batch during a walk (see scanTree): large enough that the tail of a batch, when
// fewer than `concurrency` reads are in flight, costs nothing measurable.
const HASH_BATCH = 1024;

interface WalkState {
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
type FileFacts = Pick<Stats, 'ino' | 'size' | 'mode' | 'mtimeMs' | 'ctimeMs'>;

/** A regular file that needs reading (not in the stat cache, or changed). */
interface HashTask {
  rel: string;
  /** lstat of the file; absent when the directory listing said "regular file" (see visit). */
  st?: Stats;
}

/**
 * Walks and hashes the tree at `dir`. Never follows symlinks below `dir` (`dir` itself may be a
 * symlink to a directory, e.g. a `current -> releases/42` publish path). Sockets, FIFOs,
 * devices, names and symlinks the sync engine refuses are reported in `skipped`.
 *
 * Two phases, each with the I/O style that measured fastest (20,000 files on a 2-core host):
 * 1. metadata — readdir/lstat/readlink, synchronously, in slices of at most ~10 ms with a yield
 *    to the event loop between slices. These calls are microseconds each from the inode cache,
 *    and the libuv thread-pool hand-off costs more than the call (async lstat of 20k paths: ~110
 *    to 230 ms; sync: ~55 ms). The stat cache is consulted here, so a warm walk never leaves it.
 * 2. content — files the cache could not answer are read and hashed asynchronously, at most
 *    `concurrency` at once: reads may wait on a disk, and parallel reads keep a cold SSD busy.
 *    The two alternate: the metadata walk pauses whenever it has found HASH_BATCH files to read,
 *    so memory stays bounded by the batch, not the tree (200,000 small files, empty stat cache:
 *    peak RSS of the walk ~390 → ~220 MB, time unchanged within run-to-run noise).
 * @throws SpokeError TREE_UNREADABLE when the root or an entry cannot be read
 */
export async function walkTree(dir: string, opts: WalkOptions = {}): Promise<WalkResult> {
  const rootStat = await fsp.stat(dir).catch((err: unknown) => {
    throw unreadable(dir, err);
  });
  if (!rootStat.isDirectory()) throw fail('TREE_UNREADABLE', `${dir} is not a directory`);
  const syncReads = opts.syncReads ?? true;
  const lookups = opts.statCache !== undefined && opts.statCache.holdsNothingUnder?.(dir) !== true;
  const state: WalkState = {
    root: dir,
    excludes: excludeMatcher(opts),
    cache: opts.statCache,
    lookups,
    typedListing: syncReads && !lookups,
    onDir: opts.onDir,
    racyMs: opts.racyMs ?? RACY_MS,
    entries: [],
    skipped: [],
    hashedBytes: 0,
    cacheHits: 0,
    buffers: [],
    previous: opts.previous,
    helper: syncReads ? opts.helper : undefined,
    helping: undefined,
    helperDone: false,
    share: 0.5,
    tap: opts.tap,
    tapBuf: opts.tap === undefined ? undefined : Buffer.allocUnsafe(SYNC_MAX_BYTES),
  };
  const concurrency = opts.concurrency ?? 16;
  await scanTree(state, (batch) => hashBatch(state, batch, concurrency, syncReads));
  await state.helping;
  const manifest = buildManifest(state.entries);
  state.skipped.sort((a, b) => comparePaths(a.path, b.path));
  return { manifest, skipped: state.skipped, hashedBytes: state.hashedBytes, cacheHits: state.cacheHits };
}

/**
 * Phase 1 (see walkTree): an iterative walk with a stack, never recursion (trees can be deep).
 * Files to read are handed to `hash` in batches of HASH_BATCH, so the walk never holds a task
 * (path + Stats, a few hundred bytes) for every file of a large tree at once: measured on
 * 200,000 small files, collecting them all first raised the walk's peak RSS by ~170 MB.
 */
async function scanTree(state: WalkState, hash: (batch: HashTask[]) => Promise<void>): Promise<void> {
  const dirs: string[] = [''];
  let toHash: HashTask[] = [];
  let deadline = performance.now() + SLICE_MS;
  for (let rel = dirs.pop(); rel !== undefined; rel = dirs.pop()) {
    for (const raw of listDir(state, rel)) {
      visit(state, rel, raw, dirs, toHash);
      if (toHash.length >= HASH_BATCH) {
        await hash(toHash);
        toHash = [];
        await state.tap?.pace?.();
        deadline = performance.now() + SLICE_MS;
      } else if (performance.now() > deadline) {
        await (state.tap?.pace?.() ?? new Promise((resolve) => setImmediate(resolve)));
        deadline = performance.now() + SLICE_MS;
      }
    }
  }
  if (toHash.length > 0) await hash(toHash);
}

/**
 * The names in a directory: strings when every name is valid UTF-8, else the raw bytes (see visit).
 * A name that is not valid UTF-8 cannot be represented in a manifest, and its lossy decoding would
 * name a different (or no) file. Decoding replaces every invalid sequence with U+FFFD, so names
 * read as strings are exact unless one contains U+FFFD; only then is the directory read again as
 * bytes. (Reading every directory as bytes cost a Buffer, and a malloc, per name.)
 */
function listDir(state: WalkState, rel: string): string[] | Buffer[] | fs.Dirent[] {
  const abs = rel === '' ? state.root : join(state.root, rel);
  try {
    if (state.typedListing) {
      const ents = fs.readdirSync(abs, { withFileTypes: true });
      return ents.some((d) => d.name.includes('\uFFFD')) ? fs.readdirSync(abs, { encoding: 'buffer' }) : ents;
    }
    const names = fs.readdirSync(abs);
    return names.some((n) => n.includes('\uFFFD')) ? fs.readdirSync(abs, { encoding: 'buffer' }) : names;
  } catch (err) {
    if (rel !== '' && (isErrno(err, 'ENOENT') || isErrno(err, 'ENOTDIR'))) {
      skip(state, rel, 'vanished');
      return [];
    }
    throw unreadable(abs, err);
  }
}

/** Classifies one directory entry: dirs are queued, files answered from the cache or queued. */
function visit(state: WalkState, parent: string, raw: string | Buffer | fs.Dirent, dirs: string[], toHash: HashTask[]): void {
  const name = typeof raw === 'string' ? raw : Buffer.isBuffer(raw) ? raw.toString('utf8') : raw.name;
  const rel = parent === '' ? name : `${parent}/${name}`;
  if (Buffer.isBuffer(raw) && !Buffer.from(name, 'utf8').equals(raw)) return skip(state, rel, 'non-utf8-name');
  if (nameProblem(name) !== undefined || Buffer.byteLength(rel) > MAX_PATH_BYTES) {
    return skip(state, rel, 'unsafe-name');
  }
  if (state.excludes.matchesSelf(rel)) return;
  // A regular file with nothing to look up needs no lstat: it is opened anyway, and fstat on
  // that descriptor gives the same facts (20,000 files: ~20,000 fewer system calls).
  if (typeof raw === 'object' && !Buffer.isBuffer(raw) && raw.isFile()) {
    toHash.push({ rel });
    return;
  }
  const abs = join(state.root, rel);
  const st = lstatSyncOrUndefined(abs);
  if (st === undefined) return skip(state, rel, 'vanished');
  if (st.isDirectory()) {
    add(state, { path: rel, type: 'dir', mode: st.mode & MODE_MASK, size: 0, hash: '' });
    state.onDir?.(rel, st);
    dirs.push(rel);
  } else if (st.isFile()) {
    const hit = cachedEntry(state, abs, rel, st);
    if (hit !== undefined) add(state, hit);
    else toHash.push({ rel, st });
  } else if (st.isSymbolicLink()) {
    const entry = symlinkEntry(abs, rel);
    if (typeof entry === 'string') return skip(state, rel, entry);
    add(state, entry);
  } else {
    skip(state, rel, specialReason(st));
  }
}

/** Files up to this size may be read synchronously (larger ones always go to the thread pool). */
const SYNC_MAX_BYTES = 1024 * 1024;
/**
 * A synchronous slice is "slow" (the files are not in the page cache) when it took longer than
 * this per file plus this per byte: a page-cache read of a small file costs ~25 µs here, a read
 * that waits on a disk 100 µs and more.
 */
const SLOW_FILE_MS = 0.12;
const SLOW_BYTE_MS = 1 / 300_000;

/**
 * Hashes one batch of files. Files the page cache holds are read fastest with one synchronous
 * call each: measured on 20,000 files / 85 MB, warm, open/fstat/read/close in a loop took
 * ~0.55 s, the same through the thread pool 16 at once 1.0–2.3 s (a hand-off per call costs
 * more than the call). A cold disk is the opposite: one read at a time waits on every seek
 * (1 → 4.2 s, 16 at once → 1.4 s). So small files are read synchronously, in slices of ~10 ms
 * with a yield between them, for as long as the slices stay fast; a slow slice turns the rest
 * of its batch (HASH_BATCH files) over to `concurrency` parallel reads.
 */
async function hashBatch(state: WalkState, batch: HashTask[], concurrency: number, allowSync: boolean): Promise<void> {
  let async: HashTask[] = [];
  if (!allowSync) async = batch;
  else {
    // The helper thread takes a share of the batch (files known to be large excepted), and
    // works on it while this thread goes on with its share and the next batch: at most one
    // batch waits for it. The share grows while the helper is done before this thread needs it
    // again, and shrinks while this thread waits (as it does while the thread starts, ~70 ms).
    if (state.helper !== undefined && batch.length >= HELPER_MIN_BATCH && (state.tap === undefined || state.tap.helper?.() === true)) {
      if (state.helping !== undefined) {
        state.share = state.helperDone ? Math.min(0.8, state.share + 0.05) : Math.max(0.2, state.share - 0.05);
        await state.helping;
      }
      state.helperDone = false;
      const cut = Math.round(batch.length * (1 - state.share));
      const theirs = batch.slice(cut).filter((t) => t.st === undefined || t.st.size <= SYNC_MAX_BYTES);
      for (const t of batch.slice(cut)) if (t.st !== undefined && t.st.size > SYNC_MAX_BYTES) async.push(t);
      batch = batch.slice(0, cut);
      state.helping = helpedInto(state, state.helper, theirs, concurrency);
      state.helping.catch(() => undefined); // awaited (and thrown) with the next batch or at the end
    }
    let i = 0;
    while (i < batch.length) {
      const t0 = performance.now();
      let files = 0;
      let bytes = 0;
      while (i < batch.length && performance.now() - t0 < SLICE_MS) {
        const t = batch[i++] as HashTask;
        if (t.st !== undefined && t.st.size > SYNC_MAX_BYTES) {
          async.push(t);
          continue;
        }
        const n = hashSyncInto(state, t, async);
        if (n !== undefined) {
          files++;
          bytes += n;
        }
      }
      const ms = performance.now() - t0;
      // slow: the rest of this batch goes to the thread pool; the next batch tries again (one
      // slow slice may only mean this process was descheduled). Not with a tap: what the thread
      // pool reads is not handed over, so a streamed first sync would read those files twice (and
      // on a busy CPU every slice looks slow).
      if (files > 0 && state.tap === undefined && ms > files * SLOW_FILE_MS + bytes * SLOW_BYTE_MS) {
        async.push(...batch.slice(i));
        break;
      }
      if (i < batch.length) await (state.tap?.pace?.() ?? new Promise((resolve) => setImmediate(resolve)));
    }
  }
  if (async.length > 0) await forEachLimit(async, concurrency, (t) => hashInto(state, t));
}

/** Batches smaller than this are not split with the helper thread (a round trip costs ~0.1 ms). */
const HELPER_MIN_BATCH = 64;

/**
 * Hashes `tasks` on the helper thread; what it hands back undone (gone, not a regular file,
 * larger than SYNC_MAX_BYTES, an error) is done here exactly as without a helper.
 */
async function helpedInto(state: WalkState, helper: FileHelper, tasks: HashTask[], concurrency: number): Promise<void> {
  const later: HashTask[] = [];
  const items: HashItem[] = tasks.map((t) => [join(state.root, t.rel), t.st?.size ?? -1]);
  const done = await helper.hash(items, SYNC_MAX_BYTES);
  for (let k = 0; k < tasks.length; k++) {
    const t = tasks[k] as HashTask;
    const d = done[k];
    if (d === undefined) {
      hashSyncInto(state, t, later);
      continue;
    }
    add(state, recordHash(state, (items[k] as HashItem)[0], t.rel, t.st ?? d, { hash: d.hash, size: d.size, stat: d }));
  }
  if (later.length > 0) await forEachLimit(later, concurrency, (t) => hashInto(state, t));
  state.helperDone = true;
}

/**
 * Hashes one file synchronously; returns the bytes read, or undefined when it was handed to
 * `later` instead (found larger than SYNC_MAX_BYTES once opened) or vanished.
 */
function hashSyncInto(state: WalkState, t: HashTask, later: HashTask[]): number | undefined {
  const abs = join(state.root, t.rel);
  const buf = state.tapBuf ?? state.buffers.pop() ?? Buffer.allocUnsafe(READ_CHUNK);
  let got;
  try {
    got = hashPathSync(abs, t.st, buf, state.cache !== undefined);
  } finally {
    if (buf !== state.tapBuf) state.buffers.push(buf);
  }
  if (got !== undefined && 'large' in got) {
    later.push({ rel: t.rel, st: got.large });
    return undefined;
  }
  const st = t.st ?? got?.stat;
  if (got === undefined || st === undefined) {
    state.skipped.push({ path: t.rel, reason: 'vanished' });
    return undefined;
  }
  add(state, recordHash(state, abs, t.rel, st, got), got.whole ? buf.subarray(0, got.size) : undefined);
  return got.size;
}

async function hashInto(state: WalkState, t: HashTask): Promise<void> {
  const abs = join(state.root, t.rel);
  // listed as a regular file, not lstat()ed (see visit): looked at now
  const st = t.st ?? lstatSyncOrUndefined(abs);
  const entry = st?.isFile() ? await hashEntry(abs, t.rel, st, state) : undefined;
  if (entry === undefined) state.skipped.push({ path: t.rel, reason: 'vanished' });
  else add(state, entry);
}

/** Records an entry, or the equal one from `previous` (see WalkOptions.previous); tells the tap. */
function add(state: WalkState, e: ManifestEntry, content?: Buffer): void {
  const old = state.previous?.get(e.path);
  const same =
    old !== undefined &&
    old.path === e.path &&
    old.type === e.type &&
    old.mode === e.mode &&
    old.size === e.size &&
    old.hash === e.hash &&
    old.target === e.target;
  const entry = same ? old : e;
  state.entries.push(entry);
  state.tap?.entry(entry, content);
}

/** The entry from the stat cache, when ino/size/mtime/ctime all still match. */
function cachedEntry(state: Pick<WalkState, 'cache' | 'cacheHits'> & { lookups?: boolean }, abs: string, rel: string, st: Stats): ManifestEntry | undefined {
  const hit = state.lookups === false ? undefined : state.cache?.get(abs);
  if (!hit || hit.ino !== st.ino || hit.size !== st.size || hit.mtimeMs !== st.mtimeMs || hit.ctimeMs !== st.ctimeMs) {
    return undefined;
  }
  state.cacheHits++;
  return { path: rel, type: 'file', mode: st.mode & MODE_MASK, size: hit.size, hash: hit.hash };
}

/** Reads and hashes a file, and records the hash in the stat cache when that is safe. */
async function hashEntry(
  abs: string,
  rel: string,
  st: Stats,
  state: Pick<WalkState, 'cache' | 'racyMs' | 'hashedBytes' | 'buffers'>,
): Promise<ManifestEntry | undefined> {
  const cache = state.cache;
  // A small file gets a buffer of its size (from Node's shared pool under 4 KiB): a READ_CHUNK
  // buffer for each file re-read after an edit made the master collect ~27 ms of garbage per
  // 100 changed files.
  const pooled = st.size >= SMALL_FILE ? (state.buffers.pop() ?? Buffer.allocUnsafe(READ_CHUNK)) : undefined;
  const buf = pooled ?? Buffer.allocUnsafe(Math.max(st.size, 1));
  let got;
  try {
    got = await hashPath(abs, st.size, buf, cache !== undefined);
  } finally {
    if (pooled !== undefined) state.buffers.push(pooled);
  }
  if (got === undefined) return undefined;
  return recordHash(state, abs, rel, st, got);
}

/** The entry for a file just hashed; records the hash in the stat cache when that is safe. */
function recordHash(
  state: Pick<WalkState, 'cache' | 'racyMs' | 'hashedBytes'>,
  abs: string,
  rel: string,
  st: FileFacts,
  got: { hash: string; size: number; stat: FileFacts | undefined },
): ManifestEntry {
  const cache = state.cache;
  state.hashedBytes += got.size;
  const f = got.stat;
  // Cache only what provably belongs together: the file we opened is the one lstat saw, it was
  // read whole, and it has not been touched for racyMs.
  const sameFile = f !== undefined && f.ino === st.ino && f.size === got.size && f.mtimeMs === st.mtimeMs;
  if (cache && sameFile && Date.now() - Math.max(f.mtimeMs, f.ctimeMs) >= state.racyMs) {
    cache.set(abs, { ino: f.ino, size: got.size, mtimeMs: f.mtimeMs, ctimeMs: f.ctimeMs, hash: got.hash });
  }
  return { path: rel, type: 'file', mode: st.mode & MODE_MASK, size: got.size, hash: got.hash };
}

/**
 * Hashes the first `size` bytes (lstat's size) of a file, opened without following a symlink
 * and without blocking on a FIFO (either could have been swapped in since lstat). Bounding the
 * read by lstat's size means nothing swapped in can make it read forever; growth during the read
 * is not chased (it changes mtime, so the watcher or the next walk sees it), a shrink ends at the
 * short read. With `withStat` the open file is also fstat'ed, checked to be a regular file and
 * returned for cache keys; that is skipped without a cache because it measured ~25% of a walk.
 * Returns undefined when the path vanished or is no longer a regular file.
 */
async function hashPath(
  abs: string,
  size: number,
  buf: Buffer,
  withStat: boolean,
): Promise<{ hash: string; size: number; stat: Stats | undefined } | undefined> {
  let fd: number;
  try {
    fd = await fsx.open(abs, HASH_OPEN_FLAGS);
  } catch (err) {
    return goneOnOpen(abs, err);
  }
  try {
    const stat = withStat ? fs.fstatSync(fd) : undefined;
    if (stat !== undefined && !stat.isFile()) return undefined;
    const h = createHash('sha256');
    let pos = 0;
    if (size > SYNC_MAX_BYTES) pos = await hashLarge(fd, size, h);
    else {
      while (pos < size) {
        const n = await fsx.read(fd, buf, Math.min(buf.length, size - pos), pos);
        if (n === 0) break;
        h.update(buf.subarray(0, n));
        pos += n;
      }
    }
    return { hash: h.digest('hex'), size: pos, stat };
  } catch (err) {
    return goneOnRead(abs, err);
  } finally {
    await fsx.close(fd);
  }
}

/** Piece size of hashLarge's reads. */
const LARGE_CHUNK = 1024 * 1024;

/**
 * Hashes the first `size` bytes of a large file in 1 MiB pieces, the read of the next piece in
 * flight on the thread pool while this thread hashes the last: a 50 MB file took ~200 ms as 200
 * reads of 256 KiB, each awaited before its hash (the hash is most of the work, ~1 ms per MiB
 * here, and the reads waited on it). Returns the bytes read (less at a short read: the end).
 */
async function hashLarge(fd: number, size: number, h: Hash): Promise<number> {
  let cur = Buffer.allocUnsafe(LARGE_CHUNK);
  let spare = Buffer.allocUnsafe(LARGE_CHUNK);
  let pos = 0;
  let next = fsx.read(fd, cur, Math.min(LARGE_CHUNK, size), 0);
  for (;;) {
    const n = await next;
    if (n === 0) return pos;
    pos += n;
    next = pos < size ? fsx.read(fd, spare, Math.min(LARGE_CHUNK, size - pos), pos) : Promise.resolve(0);
    h.update(cur.subarray(0, n));
    [cur, spare] = [spare, cur];
  }
}

/** Never through a symlink (swapped in since lstat), never blocking on a FIFO. */
const HASH_OPEN_FLAGS = FS.O_RDONLY | FS.O_NOFOLLOW | FS.O_NONBLOCK;

/** A file that vanished or stopped being a regular file before it was opened: undefined. */
function goneOnOpen(abs: string, err: unknown): undefined {
  if (isErrno(err, 'ENOENT') || isErrno(err, 'ELOOP') || isErrno(err, 'ENOTDIR')) return undefined;
  throw unreadable(abs, err);
}

/** A directory or a FIFO with a writer swapped in after lstat: gone as far as this walk goes. */
function goneOnRead(abs: string, err: unknown): undefined {
  if (isErrno(err, 'EISDIR') || isErrno(err, 'EAGAIN')) return undefined;
  throw unreadable(abs, err);
}

/**
 * hashPath with synchronous calls (see hashBatch for when that is faster). Without `known` (the
 * file's lstat), the size comes from fstat, and a file larger than SYNC_MAX_BYTES is not read:
 * `{ large: its fstat }` says so.
 */
function hashPathSync(
  abs: string,
  known: Stats | undefined,
  buf: Buffer,
  withStat: boolean,
): { hash: string; size: number; stat: Stats | undefined; whole: boolean } | { large: Stats } | undefined {
  let fd: number;
  try {
    fd = fs.openSync(abs, HASH_OPEN_FLAGS);
  } catch (err) {
    return goneOnOpen(abs, err);
  }
  try {
    const stat = withStat || known === undefined ? fs.fstatSync(fd) : undefined;
    if (stat !== undefined && !stat.isFile()) return undefined;
    const size = known?.size ?? (stat as Stats).size;
    if (known === undefined && size > SYNC_MAX_BYTES) return { large: stat as Stats };
    const h = createHash('sha256');
    let pos = 0;
    // a file that fits is read whole into buf (a short read continues after it), so a tap can
    // send the bytes that were hashed
    const whole = size <= buf.length;
    while (pos < size) {
      const at = whole ? pos : 0;
      const n = fs.readSync(fd, buf, at, whole ? size - pos : Math.min(buf.length, size - pos), pos);
      if (n === 0) break;
      h.update(buf.subarray(at, at + n));
      pos += n;
    }
    return { hash: h.digest('hex'), size: pos, stat, whole };
  } catch (err) {
    return goneOnRead(abs, err);
  } finally {
    fs.closeSync(fd);
  }
}

/**
 * SHA-256 and size of one file on disk (no symlink following).
 * @throws SpokeError TREE_UNREADABLE when it is missing, not a regular file, or unreadable
 */
export async function hashFile(abs: string): Promise<{ hash: string; size: number }> {
  const st = lstatSyncOrUndefined(abs);
  const got = st?.isFile() ? await hashPath(abs, st.size, Buffer.allocUnsafe(READ_CHUNK), true) : undefined;
  if (got === undefined) throw fail('TREE_UNREADABLE', `${abs} is not a regular file`);
  return { hash: got.hash, size: got.size };
}

/**
 * A symlink's entry (kept as a link whatever it points to, absolute or out of the tree: see
 * checkLinkTarget), or why it is skipped: a target that is not UTF-8 cannot be represented, and
 * one the agent would refuse (control characters, …) is reported here, at walk time, instead of
 * failing every converge later.
 */
function symlinkEntry(abs: string, rel: string): ManifestEntry | SkipReason {
  let raw: Buffer;
  try {
    raw = fs.readlinkSync(abs, { encoding: 'buffer' });
  } catch (err) {
    if (isErrno(err, 'ENOENT') || isErrno(err, 'EINVAL')) return 'vanished';
    throw unreadable(abs, err);
  }
  const target = raw.toString('utf8');
  if (!Buffer.from(target, 'utf8').equals(raw)) return 'non-utf8-name';
  try {
    checkLinkTarget(rel, target);
  } catch {
    return 'unsafe-symlink';
  }
  return { path: rel, type: 'symlink', mode: SYMLINK_MODE, size: raw.length, hash: sha256Hex(raw), target };
}

/**
 * The current manifest entry for one tree-relative path, for keeping a manifest current from
 * watcher events. Returns undefined when the path is gone, excluded (or below an excluded dir),
 * or something walkTree would skip.
 * @throws SpokeError TREE_UNREADABLE when it exists but cannot be read
 */
export async function readEntry(
  root: string,
  rel: string,
  opts: { statCache?: StatCache; excludes?: ExcludeMatcher; racyMs?: number } = {},
): Promise<ManifestEntry | undefined> {
  if (rel === '' || rel.split('/').some((seg) => nameProblem(seg) !== undefined)) return undefined;
  if (opts.excludes?.excludes(rel)) return undefined;
  const abs = join(root, rel);
  const st = lstatSyncOrUndefined(abs);
  if (st === undefined) return undefined;
  if (st.isDirectory()) return { path: rel, type: 'dir', mode: st.mode & MODE_MASK, size: 0, hash: '' };
  if (st.isSymbolicLink()) {
    const entry = symlinkEntry(abs, rel);
    return typeof entry === 'string' ? undefined : entry;
  }
  if (!st.isFile()) return undefined;
  const state = { cache: opts.statCache, racyMs: opts.racyMs ?? RACY_MS, hashedBytes: 0, cacheHits: 0, buffers: [] };
  return cachedEntry(state, abs, rel, st) ?? hashEntry(abs, rel, st, state);
}

function specialReason(st: Stats): SkipReason {
  if (st.isSocket()) return 'socket';
  if (st.isFIFO()) return 'fifo';
  if (st.isCharacterDevice()) return 'char-device';
  return 'block-device';
}

function skip(state: WalkState, path: string, reason: SkipReason): undefined {
  state.skipped.push({ path, reason });
  return undefined;
}

function lstatSyncOrUndefined(abs: string): Stats | undefined {
  try {
    return fs.lstatSync(abs);
  } catch (err) {
    if (isErrno(err, 'ENOENT') || isErrno(err, 'ENOTDIR')) return undefined;
    throw unreadable(abs, err);
  }
}

function unreadable(path: string, err: unknown) {
  return fail('TREE_UNREADABLE', `cannot read ${path}: ${errnoText(err)}`, { path });
}
