/**
 * The master's canonical trees: a manifest per platform path, built once by a walk (file hashes
 * cached in SQLite by inode/size/mtime/ctime, so a restart re-reads only changed files) and then
 * kept current from chokidar events while the master runs. The hash cache is statcache.ts, one
 * tree's record tree.ts, its directory snapshots treedirs.ts, its watcher and events treewatcher.ts.
 */
import { statSync } from 'node:fs';
import {
  LiveManifest,
  comparePaths,
  fail,
  sameEntry,
  walkTree,
  type FileHelper,
  type Logger,
  type Manifest,
  type ManifestEntry,
  type RootMap,
  type WalkTap,
} from '@spoke/shared';
import type { Db } from '../namespace/store.js';
import { SqliteStatCache } from './statcache.js';
import type { Tree } from './tree.js';
import { checkDir, dirSnapshot } from './treedirs.js';
import { drain, startWatch } from './treewatcher.js';

/** How many recent manifests per tree are kept for sending differences. */
const HISTORY = 4;

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
    await drain(t, this.cache, this.helper);
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
      for (const [rel, was] of t.dirs) checkDir(t, rel, was);
      return;
    }
    this.lastDirsChecked = 1;
    const root = t.dirs.get('');
    if (root) checkDir(t, '', root);
    for (const rel of only) {
      const was = t.dirs.get(rel);
      if (was === undefined) {
        only.delete(rel); // gone since (the snapshot after that drain no longer lists it)
        continue;
      }
      this.lastDirsChecked++;
      checkDir(t, rel, was);
    }
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
      startWatch(t, {
        log: this.log,
        stormEvents: this.stormEvents,
        onChange: (nsPath, rel) => this.onChange(nsPath, rel),
        onUntrusted: () => this.untrustedRewalks++,
      });
    };
    t.watchTimer = setTimeout(tick, WATCH_QUIET_MS);
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
