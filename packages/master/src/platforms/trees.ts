/**
 * The master's canonical trees: a manifest per platform path, built once by a walk (file hashes
 * cached in SQLite by inode/size/mtime/ctime, so a restart re-reads only changed files) and then
 * kept current from chokidar events while the master runs.
 */
import { watch, type FSWatcher } from 'chokidar';
import { basename, join, relative, sep } from 'node:path';
import {
  LiveManifest,
  comparePaths,
  excludeMatcher,
  fail,
  lowerBound,
  parentOf,
  readEntry,
  sameEntry,
  walkTree,
  type FileHelper,
  type Logger,
  type Manifest,
  type ManifestEntry,
  type RootMap,
  type StatCache,
  type StatCacheRecord,
  type WalkTap,
} from '@spoke/shared';
import { existsSync, lstatSync, readdirSync, statSync, type Stats } from 'node:fs';
import type { Statement } from 'better-sqlite3';
import type { Db } from '../namespace/store.js';

/** How many recent manifests per tree are kept for sending differences. */
const HISTORY = 4;

/**
 * Rows written at once when the pending records reach this many (a walk of a very large tree).
 * Below it, a walk's records wait for flushSoon.
 */
const FLUSH_AT = 50_000;
/** How long after a walk its hash records are written (see flushSoon). */
const FLUSH_DELAY_MS = 3_000;
/** While `busy`, the write is put off by this much at a time, up to FLUSH_MAX_DELAY_MS. */
const FLUSH_RETRY_MS = 500;
const FLUSH_MAX_DELAY_MS = 60_000;

/**
 * Hash cache over the `file_hashes` table. Writes are batched: records wait in memory (where
 * get() sees them) and are written in one transaction, on flush() or, after a walk, a few
 * seconds later (flushSoon): writing 20,000 rows blocks the event loop ~100–400 ms, which then
 * delayed the first converge of the tree it was walked for. Losing unwritten records (a crash)
 * costs a re-read of those files, nothing else.
 */
export class SqliteStatCache implements StatCache {
  private readonly db: Db;
  private pending = new Map<string, StatCacheRecord>();
  private timer: NodeJS.Timeout | undefined;
  private readonly select: ReturnType<Db['prepare']>;
  private readonly anyUnder: Statement<[string, string]>;

  /**
   * @param busy true while a converge is serving a tree: the deferred write waits for it to end
   *   (it blocks the event loop ~100 ms per 20,000 rows, which then stalled the blob stream of a
   *   first sync that lasted longer than FLUSH_DELAY_MS), at most FLUSH_MAX_DELAY_MS after the walk
   */
  constructor(
    db: Db,
    private readonly busy: () => boolean = () => false,
  ) {
    this.db = db;
    // Prepared once: a walk looks up every file.
    this.select = db.prepare('SELECT ino, size, mtime_ms, ctime_ms, hash FROM file_hashes WHERE path = ?');
    this.anyUnder = db.prepare<[string, string]>('SELECT 1 AS one FROM file_hashes WHERE path >= ? AND path < ? LIMIT 1');
  }

  holdsNothingUnder(absDir: string): boolean {
    const base = absDir.endsWith('/') ? absDir.slice(0, -1) : absDir;
    // every path below base starts with `base/`; '0' is the character after '/'
    if (this.anyUnder.get(`${base}/`, `${base}0`) !== undefined) return false;
    for (const p of this.pending.keys()) if (p.startsWith(`${base}/`)) return false;
    return true;
  }

  get(absPath: string): StatCacheRecord | undefined {
    const mine = this.pending.get(absPath);
    if (mine !== undefined) return mine;
    const r = this.select.get(absPath) as { ino: number; size: number; mtime_ms: number; ctime_ms: number; hash: string } | undefined;
    return r ? { ino: r.ino, size: r.size, mtimeMs: r.mtime_ms, ctimeMs: r.ctime_ms, hash: r.hash } : undefined;
  }

  set(absPath: string, rec: StatCacheRecord): void {
    this.pending.set(absPath, rec);
    if (this.pending.size >= FLUSH_AT) this.flush();
  }

  /**
   * Writes the pending records FLUSH_DELAY_MS from now, or once nothing is `busy` after that
   * (once; flush() and close() write them sooner).
   */
  flushSoon(): void {
    if (this.timer !== undefined || this.pending.size === 0) return;
    const until = Date.now() + FLUSH_MAX_DELAY_MS;
    const tick = () => {
      if (this.busy() && Date.now() < until) {
        this.timer = setTimeout(tick, FLUSH_RETRY_MS);
        this.timer.unref();
        return;
      }
      this.flush();
    };
    this.timer = setTimeout(tick, FLUSH_DELAY_MS);
    this.timer.unref();
  }

  /** Writes the batched records. */
  flush(): void {
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
    if (this.pending.size === 0 || !this.db.open) return;
    const rows = this.pending;
    this.pending = new Map();
    const up = this.db.prepare('INSERT OR REPLACE INTO file_hashes (path, ino, size, mtime_ms, ctime_ms, hash) VALUES (?, ?, ?, ?, ?, ?)');
    this.db.transaction(() => {
      for (const [p, r] of rows) up.run(p, r.ino, r.size, r.mtimeMs, r.ctimeMs, r.hash);
    })();
    // Checkpoint the WAL now, while nothing waits (this runs seconds after a walk): left to
    // SQLite's auto-checkpoint, the next commit past 1,000 WAL pages — often an operator's
    // `platform add` — paid its fsync, 60–170 ms measured when the disk held a fresh tree's
    // dirty data (ext4 writes that out first).
    this.db.pragma('wal_checkpoint(PASSIVE)');
  }
}

interface Tree {
  /** Recent manifests by root hash (newest last), so agents can be sent a difference. */
  history: Map<string, Manifest>;
  /** Recent differences between versions, by `base>desired`. */
  deltas: Map<string, { upserts: ManifestEntry[]; removed: string[] }>;
  nsPath: string;
  hostPath: string;
  excludes: string[];
  live: LiveManifest;
  watcher?: FSWatcher;
  /** Watcher events not yet applied (applied before every read of the manifest). */
  pending: Set<string>;
  /**
   * Set when the watcher became ready: changes made between the walk and that moment produced
   * no events, so the next read re-walks once (stat-cached, cheap).
   */
  rewalk: boolean;
  /** The watcher has every directory watch in place. */
  watchReady?: boolean;
  /** The deferred start of the watcher (see scheduleWatch). */
  watchTimer?: NodeJS.Timeout;
  /** When the tree's manifest was last read or a converge of it ended (Date.now()). */
  lastUse: number;
  /** Converges of this tree under way (see hold). */
  holds: number;
  /** Entries counted against the watch budget (0 when not watched). */
  watched?: number;
  /** Inode and mtime of every directory at the last walk: an add/remove/rename changes them. */
  dirs: ReadonlyMap<string, { ino: number; mtimeMs: number }>;
  /**
   * Once the watcher is ready and trusted: the directories whose watch may be missing, the only
   * ones a verify's checkDirs looks at (see checkDirs). Undefined: every directory is checked.
   */
  suspect?: Set<string>;
  /** The directories when the watcher started (see suspectsAfterReady). */
  preWatch?: ReadonlyMap<string, { ino: number; mtimeMs: number }>;
  /** The watcher lost events once (storm, error): every directory is checked from then on. */
  distrusted?: boolean;
}

/**
 * Directory inodes and mtimes as a walk finds them (WalkOptions.onDir), and the root's (not when
 * it is a symlink: checkDirs would take it for gone); taken before each directory is read, so
 * a name added meanwhile shows as a changed mtime at the next check, never the reverse.
 */
function dirSnapshot(hostPath: string): { map: Map<string, { ino: number; mtimeMs: number }>; onDir: (rel: string, st: Stats) => void } {
  const map = new Map<string, { ino: number; mtimeMs: number }>();
  try {
    const st = lstatSync(hostPath);
    if (st.isDirectory()) map.set('', { ino: st.ino, mtimeMs: st.mtimeMs });
  } catch {
    /* the walk says what is wrong with the root */
  }
  return { map, onDir: (rel, st) => map.set(rel, { ino: st.ino, mtimeMs: st.mtimeMs }) };
}

/** A new tree's watcher starts after its reads have paused this long (see scheduleWatch). */
const WATCH_QUIET_MS = 500;
/** …or this long after the tree was first read, whatever the traffic. */
const WATCH_MAX_DELAY_MS = 60_000;

/** Canonical trees and their manifests. */
export class TreeStore {
  private readonly rootMap: RootMap;
  private readonly log: Logger;
  private readonly cache: SqliteStatCache;
  private readonly trees = new Map<string, Tree>();
  private readonly watchEnabled: boolean;
  private readonly watchMaxEntries: number;
  private readonly stormEvents: number;
  private watchedEntries = 0;
  /** Re-walks done because the watcher could not be trusted (event storm, watcher error). */
  untrustedRewalks = 0;
  /**
   * Called (debounced by the caller) when a watched tree changed: with the path in the tree that
   * an event named, or without one when the whole tree is to be re-read (watcher ready, storm).
   */
  onChange: (nsPath: string, rel?: string) => void = () => undefined;
  private readonly helper: FileHelper | undefined;

  /**
   * @param deps.watchMaxEntries only directories are watched (a few hundred bytes each once
   *   set up), but chokidar's set-up lstat()s every entry of the tree at once: measured peak RSS
   *   192 MB for 20,000 files and 939 MB for 200,000. So only trees up to this many entries in
   *   total are watched; the others are re-walked (stat-cached) on every verify. Live platforms
   *   are always watched. @default 60000
   * @param deps.stormEvents the kernel queues at most 16,384 inotify events (Linux default
   *   `max_queued_events`) and drops the rest without a word that reaches Node; a `git checkout`
   *   of a large tree produces more than that. So when a tree's watches report this many events
   *   within a second, the next read re-walks it (stat-cached) instead of trusting the events.
   *   @default 4000
   * @param deps.helper a second thread that hashes half of what a walk reads (see FileWorker).
   */
  constructor(deps: { db: Db; rootMap: RootMap; log: Logger; watch?: boolean; watchMaxEntries?: number; stormEvents?: number; helper?: FileHelper }) {
    this.rootMap = deps.rootMap;
    this.helper = deps.helper;
    this.log = deps.log;
    this.cache = new SqliteStatCache(deps.db, () => [...this.trees.values()].some((t) => t.holds > 0));
    this.watchEnabled = deps.watch ?? true;
    this.watchMaxEntries = deps.watchMaxEntries ?? 60_000;
    this.stormEvents = deps.stormEvents ?? 4000;
  }

  /** True when this store holds a manifest of the tree (walked once since start-up). */
  isLoaded(nsPath: string): boolean {
    return this.trees.has(nsPath);
  }

  /** True once the tree's watcher was started (it may still be setting up: see isWatched). */
  isWatchStarted(nsPath: string): boolean {
    return this.trees.get(nsPath)?.watcher !== undefined;
  }

  /**
   * True when the tree's manifest is kept current by a watcher (else verify re-walks it). A
   * watcher that is still setting up does not count: changes made before its directory watches
   * exist produce no events.
   */
  isWatched(nsPath: string): boolean {
    const t = this.trees.get(nsPath);
    return t?.watcher !== undefined && t.watchReady === true;
  }

  /** Where a namespace path lives on the master. */
  hostPath(nsPath: string): string {
    return this.rootMap.toHost(nsPath);
  }

  /**
   * The canonical tree's host path, when it is a directory on the master.
   * @throws SpokeError TREE_UNREADABLE otherwise
   */
  canonical(nsPath: string): string {
    const hostPath = this.hostPath(nsPath);
    if (statSync(hostPath, { throwIfNoEntry: false })?.isDirectory() !== true) {
      throw fail(
        'TREE_UNREADABLE',
        `the canonical tree ${hostPath} does not exist on the master (put the codebase there first, or add the platform with --makefile or --git to build it)`,
      );
    }
    return hostPath;
  }

  /**
   * The manifest of a tree: walks it the first time (or when `rescan`), then serves the in-memory
   * copy kept current by the watcher.
   * @throws SpokeError TREE_UNREADABLE when the tree is not a directory on the master
   */
  async manifest(
    nsPath: string,
    excludes: string[] = [],
    /** tap: told every entry a walk of the tree finds now (a streamed first sync, streamtree.ts); unused without a walk. */
    opts: { rescan?: boolean; live?: boolean; checkDirs?: boolean; tap?: WalkTap } = {},
  ): Promise<Manifest> {
    const known = this.trees.get(nsPath);
    if (opts.checkDirs && known && !opts.rescan) this.checkDirs(known);
    let t = this.trees.get(nsPath);
    if (t && JSON.stringify(t.excludes) !== JSON.stringify(excludes)) {
      await this.forget(nsPath);
      t = undefined;
    }
    if (!t || opts.rescan) {
      const hostPath = this.canonical(nsPath);
      const started = Date.now();
      // previous: a re-walk shares unchanged entries with the manifests still held (history)
      const dirs = dirSnapshot(hostPath);
      const r = await walkTree(hostPath, {
        exclude: excludes,
        statCache: this.cache,
        previous: t?.live,
        onDir: dirs.onDir,
        helper: this.helper,
        tap: opts.tap,
      });
      this.cache.flushSoon();
      for (const s of r.skipped) this.log.warn({ tree: nsPath, path: s.path, reason: s.reason }, 'left out of manifest');
      this.log.info(
        { tree: nsPath, entries: r.manifest.entries.length, hashedBytes: r.hashedBytes, cacheHits: r.cacheHits, ms: Date.now() - started },
        'scanned tree',
      );
      const live = LiveManifest.from(r.manifest);
      if (t) {
        t.live = live;
        t.pending.clear();
        t.dirs = dirs.map;
      } else {
        t = {
          nsPath,
          hostPath,
          excludes,
          live,
          pending: new Set(),
          history: new Map(),
          deltas: new Map(),
          rewalk: false,
          dirs: dirs.map,
          lastUse: Date.now(),
          holds: 0,
        };
        this.trees.set(nsPath, t);
        const entries = r.manifest.entries.length;
        if (this.watchEnabled && (opts.live || this.watchedEntries + entries <= this.watchMaxEntries)) {
          this.watchedEntries += entries;
          t.watched = entries;
          this.scheduleWatch(t);
        } else {
          this.log.info({ tree: nsPath, entries, watched: this.watchedEntries, max: this.watchMaxEntries }, 'tree not watched; verify re-walks it');
        }
      }
    }
    t.lastUse = Date.now();
    await this.drain(t);
    const m = t.live.toManifest();
    if (t.history.get(m.rootHash) !== m) {
      // the newest object for a root (a re-walk makes a new one): the old one can be collected
      t.history.delete(m.rootHash);
      t.history.set(m.rootHash, m);
      // Keep a few versions: enough for members that are one or two edits behind.
      while (t.history.size > HISTORY) t.history.delete(t.history.keys().next().value as string);
    }
    return m;
  }

  /**
   * The difference from a manifest this store still remembers (`base`) to the current one, or
   * undefined when `base` is unknown (the caller then sends the whole manifest).
   */
  async delta(nsPath: string, excludes: string[], base: string): Promise<{ desired: Manifest; upserts: ManifestEntry[]; removed: string[] } | undefined> {
    const desired = await this.manifest(nsPath, excludes);
    const t = this.trees.get(nsPath);
    const old = t?.history.get(base);
    if (!t || !old) return undefined;
    // Every member of a cluster asks for the same difference: compute it once.
    const key = `${base}>${desired.rootHash}`;
    const hit = t.deltas.get(key);
    if (hit) return { desired, ...hit };
    // One merge pass over both sorted lists; snapshots share the objects of unchanged entries,
    // so most steps are one identity check.
    const upserts: ManifestEntry[] = [];
    const removed: string[] = [];
    const was = old.entries;
    const now = desired.entries;
    let i = 0;
    let j = 0;
    while (i < was.length || j < now.length) {
      const o = was[i];
      const e = now[j];
      if (o !== undefined && o === e) {
        i++;
        j++;
        continue;
      }
      const c = o === undefined ? 1 : e === undefined ? -1 : comparePaths(o.path, e.path);
      if (c < 0) {
        removed.push((o as ManifestEntry).path);
        i++;
      } else if (c > 0) {
        upserts.push(e as ManifestEntry);
        j++;
      } else {
        if (!sameEntry(o as ManifestEntry, e as ManifestEntry)) upserts.push(e as ManifestEntry);
        i++;
        j++;
      }
    }
    const d = { upserts, removed };
    t.deltas.set(key, d);
    while (t.deltas.size > HISTORY) t.deltas.delete(t.deltas.keys().next().value as string);
    return { desired, ...d };
  }

  /** Directories the last checkDirs looked at (for tests). */
  lastDirsChecked = 0;

  /**
   * chokidar can lose a directory deleted and re-created quickly (it may not get to watch the new
   * one), and events can be lost when the watcher cannot be trusted. An explicit verify
   * therefore checks directories' inode and mtime (one lstat each) and re-reads the subtrees
   * that changed; content edits are reported by the per-file watches at once.
   *
   * Which directories: all of them until the watcher is ready, and after it lost events. Once it
   * is ready, a directory that existed (same inode) before the watcher started has had a watch
   * ever since, and every change of its names came as an event; only the root and the
   * directories created or replaced since (`suspect`) can lack one. Checking all 2,200
   * directories of a Drupal tree cost ~15 ms, half of a no-op verify.
   */
  private checkDirs(t: Tree): void {
    const only = t.watchReady && !t.distrusted ? t.suspect : undefined;
    if (only === undefined) {
      this.lastDirsChecked = t.dirs.size;
      for (const [rel, was] of t.dirs) this.checkDir(t, rel, was);
      return;
    }
    this.lastDirsChecked = 1;
    const root = t.dirs.get('');
    if (root) this.checkDir(t, '', root);
    for (const rel of only) {
      const was = t.dirs.get(rel);
      if (was === undefined) {
        only.delete(rel); // gone since (the snapshot after that drain no longer lists it)
        continue;
      }
      this.lastDirsChecked++;
      this.checkDir(t, rel, was);
    }
  }

  private checkDir(t: Tree, rel: string, was: { ino: number; mtimeMs: number }): void {
    let now: { ino: number; mtimeMs: number } | undefined;
    try {
      const st = lstatSync(rel ? `${t.hostPath}/${rel}` : t.hostPath);
      now = st.isDirectory() ? { ino: st.ino, mtimeMs: st.mtimeMs } : undefined;
    } catch {
      now = undefined;
    }
    if (now && now.ino === was.ino && now.mtimeMs === was.mtimeMs) return;
    if (!now || now.ino !== was.ino) {
      // gone, or replaced by another directory: re-read it whole
      if (rel === '') t.rewalk = true;
      else t.pending.add(rel);
      return;
    }
    // same directory, entries added, removed or renamed: re-read the names that differ
    this.refreshDir(t, rel);
  }

  /**
   * After the walk that follows the watcher's 'ready': the directories that did not exist (or
   * were another inode) when the watcher started are suspect (chokidar's set-up scan may have
   * missed them); the others were watched before the walk read them.
   */
  private suspectsAfterReady(t: Tree): void {
    if (!t.watchReady || t.distrusted || t.suspect !== undefined || t.preWatch === undefined) return;
    const before = t.preWatch;
    t.preWatch = undefined;
    t.suspect = new Set();
    for (const [rel, now] of t.dirs) if (rel !== '' && before.get(rel)?.ino !== now.ino) t.suspect.add(rel);
  }

  /** Queues the entries of one directory that appeared or disappeared since the last look. */
  private refreshDir(t: Tree, rel: string): void {
    let names: string[];
    try {
      names = readdirSync(rel ? `${t.hostPath}/${rel}` : t.hostPath);
    } catch {
      if (rel === '') t.rewalk = true;
      else t.pending.add(rel);
      return;
    }
    const prefix = rel ? `${rel}/` : '';
    const onDisk = new Set(names.map((n) => `${prefix}${n}`));
    const known = new Set<string>();
    for (const e of t.live.toManifest().entries) {
      if (parentOf(e.path) === rel) known.add(e.path);
    }
    for (const p of onDisk) if (!known.has(p)) t.pending.add(p);
    for (const p of known) if (!onDisk.has(p)) t.pending.add(p);
  }

  /** Records every directory's inode and mtime again (after a drain that re-read directories). */
  private snapshotDirs(t: Tree): void {
    const d = dirSnapshot(t.hostPath);
    for (const e of t.live.toManifest().entries) {
      if (e.type !== 'dir') continue;
      try {
        const st = lstatSync(`${t.hostPath}/${e.path}`);
        if (st.isDirectory()) d.onDir(e.path, st);
      } catch {
        /* vanished: the next check re-reads its parent */
      }
    }
    t.dirs = d.map;
  }

  /**
   * Marks paths (relative to the tree) as changed by the master itself, so the next manifest
   * re-reads them without waiting for the watcher's events (site tasks write settings files).
   */
  touch(nsPath: string, rels: string[]): void {
    const t = this.trees.get(nsPath);
    if (!t) return;
    for (const rel of rels) if (rel && !rel.startsWith('/') && !rel.split('/').includes('..')) t.pending.add(rel);
  }

  /** Host paths holding the given content hashes in a tree (for FetchBlobs). */
  async blobSources(nsPath: string, hashes: readonly string[]): Promise<Iterable<{ hash: string; path: string; size: number }>> {
    const t = this.trees.get(nsPath);
    if (!t) throw fail('TREE_UNREADABLE', `tree ${nsPath} is not loaded on the master; run a verify first`);
    // No drain: the agent asks for the content of the manifest it was sent, which is this one (or
    // older), not for what a pending re-walk would find; it checks every hash, and a path whose
    // content changed since costs a refetch or a new converge, as it would after a drain.
    const want = new Set(hashes);
    // Entries, not path strings: a 200,000-blob request would otherwise hold 200,000 new
    // strings (and as many source objects) for the whole transfer.
    const found = new Map<string, ManifestEntry>();
    for (const e of t.live.toManifest().entries) {
      if (e.type === 'file' && want.has(e.hash) && !found.has(e.hash)) found.set(e.hash, e);
    }
    want.clear();
    let missing = 0;
    for (const h of hashes) if (!found.has(h)) missing++;
    if (missing > 0) {
      throw fail('BLOB_HASH_MISMATCH', `${missing} requested blob(s) are no longer in ${nsPath} (it changed); converge again`);
    }
    const hostPath = t.hostPath;
    return (function* () {
      for (const hash of hashes) {
        const e = found.get(hash);
        if (e === undefined) continue; // asked twice: sent once
        found.delete(hash); // what was sent can be collected
        yield { hash, path: `${hostPath}/${e.path}`, size: e.size };
      }
    })();
  }

  /**
   * Starts the watcher once the tree has been quiet (no converge holding it — blobs are only read
   * for one — and no manifest read) for WATCH_QUIET_MS, or WATCH_MAX_DELAY_MS after it was first read at the latest. chokidar's
   * set-up lstat()s and reads every directory of the tree (about 1 s of the master's CPU for
   * 20,000 files): started at once, it competed with the tree's first converge, which reads and
   * serves the same tree. Until the watcher is ready, a verify re-walks the tree (stat-cached),
   * as it always did while a watcher was setting up, so nothing is missed in the meantime.
   */
  private scheduleWatch(t: Tree): void {
    const first = Date.now();
    const tick = () => {
      t.watchTimer = undefined;
      if (this.trees.get(t.nsPath) !== t) return; // forgotten meanwhile
      const now = Date.now();
      if ((t.holds > 0 || now - t.lastUse < WATCH_QUIET_MS) && now - first < WATCH_MAX_DELAY_MS) {
        t.watchTimer = setTimeout(tick, t.holds > 0 ? WATCH_QUIET_MS : WATCH_QUIET_MS - (now - t.lastUse));
        return;
      }
      this.startWatch(t);
    };
    t.watchTimer = setTimeout(tick, WATCH_QUIET_MS);
  }

  /**
   * Watches the tree's directories only: chokidar adds a native watch and bookkeeping per watched
   * path (about 8 KB each), and a directory's watch already reports every change to the names
   * in it (content, mode, add, remove, rename) as a raw event naming the child. So files are
   * left out of chokidar's own tracking and their changes are taken from those raw events:
   * memory and inotify watches grow with directories, not files (20,000 files ≈ 2,000 dirs).
   */
  private startWatch(t: Tree): void {
    const matcher = excludeMatcher({ exclude: t.excludes });
    const relOf = (p: string) => relative(t.hostPath, p).split(sep).join('/');
    const w = watch(t.hostPath, {
      ignoreInitial: true,
      followSymlinks: false,
      alwaysStat: false,
      // no editor-swap-file filtering: a file named `x~` is content like any other
      atomic: false,
      ignored: (p: string, stats?: Stats) => {
        const rel = relOf(p);
        if (rel === '' || rel.startsWith('..')) return false;
        // without stats chokidar asks again with them; only directories are watched
        return matcher.excludes(rel) || (stats !== undefined && !stats.isDirectory());
      },
    });
    const touch = (p: string) => {
      const rel = relOf(p);
      if (rel === '' || rel.startsWith('..') || matcher.excludes(rel)) return;
      t.pending.add(rel);
      this.onChange(t.nsPath, rel);
    };
    const untrusted = (why: string, extra: object = {}) => {
      // events may be lost, and with them chokidar's watches of new directories: check all
      t.distrusted = true;
      t.suspect = undefined;
      if (!t.rewalk) {
        this.untrustedRewalks++;
        this.log.info({ tree: t.nsPath, ...extra }, `${why}: the next read re-walks the tree`);
      }
      t.rewalk = true;
      this.onChange(t.nsPath);
    };
    let windowStart = 0;
    let events = 0;
    // addDir / unlinkDir (files never reach chokidar's own events)
    w.on('all', (_ev, p) => touch(p));
    w.on('raw', (_ev, name: string | null, details) => {
      const now = Date.now();
      if (now - windowStart > 1000) {
        windowStart = now;
        events = 0;
      }
      if (++events === this.stormEvents) untrusted('event storm (the kernel may drop events)', { events });
      const dir = (details as { watchedPath?: string } | undefined)?.watchedPath;
      if (!dir || !name) return;
      // a watch on the directory itself reports its own deletion with its own name
      if (name === basename(dir) && !existsSync(join(dir, name))) return touch(dir);
      touch(join(dir, name));
    });
    w.on('ready', () => {
      t.watchReady = true;
      t.rewalk = true;
      this.onChange(t.nsPath);
    });
    w.on('error', (e) => {
      this.log.warn({ tree: t.nsPath, err: (e as Error).message }, 'watcher error');
      untrusted('watcher error');
    });
    t.preWatch = t.dirs; // replaced, never changed in place, by later snapshots
    t.watcher = w;
  }

  /** Applies pending watcher events by re-reading exactly those paths. */
  private async drain(t: Tree): Promise<void> {
    if (t.rewalk) {
      t.rewalk = false;
      t.pending.clear();
      const dirs = dirSnapshot(t.hostPath);
      const r = await walkTree(t.hostPath, { exclude: t.excludes, statCache: this.cache, previous: t.live, onDir: dirs.onDir, helper: this.helper });
      this.cache.flushSoon();
      t.live = LiveManifest.from(r.manifest);
      t.dirs = dirs.map;
      this.suspectsAfterReady(t);
      return;
    }
    if (t.pending.size === 0) return;
    let sawDir = false;
    const paths = [...t.pending];
    t.pending.clear();
    const matcher = excludeMatcher({ exclude: t.excludes });
    for (const rel of paths) {
      const entry: ManifestEntry | undefined = await readEntry(t.hostPath, rel, { statCache: this.cache, excludes: matcher });
      if (entry) {
        t.live.apply({ op: 'upsert', entry });
        // A directory event (created, replaced, moved in) can come before the events of what is
        // inside it, or instead of them: re-read the whole subtree (stat-cached, so cheap).
        if (entry.type === 'dir') {
          await this.rescanBelow(t, rel);
          sawDir = true;
          // new or replaced: chokidar may not have got to watch it, nor what is below it
          if (t.suspect) {
            t.suspect.add(rel);
            const below = `${rel}/`;
            const entries = t.live.toManifest().entries;
            for (let i = lowerBound(entries, below); i < entries.length; i++) {
              const e = entries[i] as ManifestEntry;
              if (!e.path.startsWith(below)) break;
              if (e.type === 'dir') t.suspect.add(e.path);
            }
          }
        }
      } else {
        t.live.apply({ op: 'remove', path: rel });
        sawDir = true;
      }
    }
    this.cache.flushSoon();
    if (sawDir) this.snapshotDirs(t);
  }

  /** Replaces everything below `rel` with what is on disk now. */
  private async rescanBelow(t: Tree, rel: string): Promise<void> {
    // Exclude patterns are anchored at the tree root: walk the subtree without them, then filter
    // each path as the tree sees it (so sites/*/files stays out when rel is sites/x).
    const matcher = excludeMatcher({ exclude: t.excludes });
    const r = await walkTree(`${t.hostPath}/${rel}`, { exclude: [], defaultExcludes: false, statCache: this.cache });
    const found = new Set<string>();
    for (const e of r.manifest.entries) {
      const path = `${rel}/${e.path}`;
      if (matcher.excludes(path)) continue;
      found.add(path);
      t.live.apply({ op: 'upsert', entry: { ...e, path } });
    }
    const prefix = `${rel}/`;
    for (const e of t.live.toManifest().entries) {
      if (e.path.startsWith(prefix) && !found.has(e.path)) t.live.apply({ op: 'remove', path: e.path });
    }
  }

  /**
   * Marks a converge of the tree as under way until the returned function is called: a new
   * tree's watcher does not start meanwhile (see scheduleWatch). Calling it twice is harmless.
   */
  hold(nsPath: string): () => void {
    const t = this.trees.get(nsPath);
    if (!t) return () => undefined;
    t.holds++;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      t.holds--;
      t.lastUse = Date.now();
    };
  }

  /** Stops tracking a tree (platform removed). */
  async forget(nsPath: string): Promise<void> {
    const t = this.trees.get(nsPath);
    this.trees.delete(nsPath);
    this.watchedEntries -= t?.watched ?? 0;
    if (t?.watchTimer) clearTimeout(t.watchTimer);
    await t?.watcher?.close();
  }

  /** Stops every watcher and writes the pending hash records. */
  async close(): Promise<void> {
    await Promise.all([...this.trees.keys()].map((k) => this.forget(k)));
    this.cache.flush();
  }
}
