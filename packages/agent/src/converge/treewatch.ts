/**
 * Whether a held tree may have changed since its last walk, so an operator's verify (a converge
 * with `recheck`) walks the tree only when something happened in it (issue 19: the re-walk of
 * 20,000 files, ~0.4 s, made every no-op verify as slow as rsync).
 *
 * One inotify watch (`fs.watch`, not recursive) per directory of the tree, installed from the
 * directories the last walk saw. Any event in any of them marks the tree dirty; a walk marks it
 * clean when it starts (an event during the walk marks it dirty again). It answers only "walk or
 * not": what changed is always found by the walk itself, so a watcher never decides content.
 *
 * The tree counts as dirty — always walked, as without a watcher — when:
 * - it has not been walked yet, or a walk saw directories that were not watched during it (a
 *   change inside one between the walk and its watch would be missed; the next walk is clean);
 * - its file system is not one whose changes this kernel sees: inotify does not hear edits made
 *   by another host on NFS, CIFS, FUSE (GlusterFS, sshfs) or Ceph, so only local file systems are
 *   trusted (statfs magic numbers below);
 * - it has more directories than `maxDirs`, or the watches of all trees would pass `maxWatches`
 *   (each watch is an inotify watch of the agent's user and a handle in this process; the next
 *   walk tries again);
 * - its root did not exist when it was walked (a status before the first converge; likewise);
 * - a watch failed (ENOSPC: fs.inotify.max_user_watches reached) or reported an error (until the
 *   tree moves or the agent restarts).
 *
 * An event is queued by the kernel while the write that caused it runs, so by the time a verify
 * command arrives the event is at least ready to read: `mayHaveChanged` first lets the event loop
 * go round twice (a setImmediate runs after the poll phase; an event queued during this
 * iteration, by a write of this process, is read in the next one), then answers.
 */
import { statfsSync, watch, type FSWatcher } from 'node:fs';
import { join } from 'node:path';

/** statfs f_type of the local file systems whose changes inotify reports (linux/magic.h). */
const LOCAL_FS = new Set([
  0xef53, // ext2/3/4
  0x58465342, // xfs
  0x9123683e, // btrfs
  0x01021994, // tmpfs
  0x2fc12fc1, // zfs
  0x794c7630, // overlayfs
  0xf2f52010, // f2fs
  0x3153464a, // jfs
  0x52654973, // reiserfs
]);

/** Directories of one tree watched at most (more: always walked). */
export const WATCH_MAX_DIRS = 20_000;
/** Watches of all trees together at most (Debian's fs.inotify.max_user_watches is often 8,192–65,536 and more). */
export const WATCH_MAX_TOTAL = 60_000;

interface TreeState {
  hostRoot: string;
  /** Watched directories (relative, '' = the root) → their watcher. */
  watches: Map<string, FSWatcher>;
  dirty: boolean;
  /** Why the tree is always walked ('' = it is watched). */
  off: string;
  /** The off reason holds until the tree moves (its file system, a watch error); else the next walk tries again. */
  offForGood: boolean;
}

export type WatchFn = (path: string, listener: () => void) => FSWatcher;

export class TreeWatches {
  private readonly trees = new Map<string, TreeState>();
  private readonly maxDirs: number;
  private readonly maxWatches: number;
  private readonly watchFn: WatchFn;
  private readonly fsType: (path: string) => number;

  constructor(
    opts: {
      maxDirs?: number;
      maxWatches?: number;
      /** Installs one watch (tests count or fail them). */
      watchFn?: WatchFn;
      /** The statfs type of a path (tests pretend NFS). */
      fsType?: (path: string) => number;
    } = {},
  ) {
    this.maxDirs = opts.maxDirs ?? WATCH_MAX_DIRS;
    this.maxWatches = opts.maxWatches ?? WATCH_MAX_TOTAL;
    this.watchFn = opts.watchFn ?? ((p, l) => watch(p, { persistent: false }, l));
    this.fsType = opts.fsType ?? ((p) => statfsSync(p).type);
  }

  /** A walk of `tree` starts: what happens from now on marks it dirty again. */
  beginWalk(tree: string): void {
    const s = this.trees.get(tree);
    if (s) s.dirty = false;
  }

  /**
   * A walk of `tree` ended and saw these directories (relative paths, without the root): watch
   * each, stop watching the ones gone.
   */
  afterWalk(tree: string, hostRoot: string, dirs: readonly string[]): void {
    let s = this.trees.get(tree);
    if (s && s.hostRoot !== hostRoot) {
      this.drop(tree);
      s = undefined;
    }
    if (!s) {
      let type: number;
      try {
        type = this.fsType(hostRoot);
      } catch {
        // Not there yet (a status before the first converge): nothing to watch; the next walk looks again.
        return;
      }
      s = { hostRoot, watches: new Map(), dirty: true, off: '', offForGood: false };
      this.trees.set(tree, s);
      if (!LOCAL_FS.has(type)) return this.turnOff(s, `file system type 0x${type.toString(16)} is not one whose changes inotify sees`, true);
    }
    if (s.offForGood) return;
    s.off = '';
    const want = new Set(['', ...dirs]);
    if (want.size > this.maxDirs) return this.turnOff(s, `${want.size} directories (more than ${this.maxDirs})`);
    for (const [rel, w] of s.watches) {
      if (!want.has(rel)) {
        w.close();
        s.watches.delete(rel);
      }
    }
    let added = 0;
    for (const rel of want) {
      if (s.watches.has(rel)) continue;
      if (this.total() >= this.maxWatches) return this.turnOff(s, `the agent watches ${this.maxWatches} directories already`);
      const state = s;
      try {
        const w = this.watchFn(rel ? join(s.hostRoot, rel) : s.hostRoot, () => {
          state.dirty = true;
        });
        w.on('error', (e: NodeJS.ErrnoException) => this.turnOff(state, `watch error: ${e.code ?? e.message}`, true));
        s.watches.set(rel, w);
        added++;
      } catch (e) {
        const code = (e as NodeJS.ErrnoException).code;
        // A directory removed since the walk: the tree changed; the next walk sees it.
        if (code === 'ENOENT' || code === 'ENOTDIR') {
          s.dirty = true;
          continue;
        }
        return this.turnOff(s, `watch: ${code ?? (e as Error).message}`, true);
      }
    }
    if (added > 0) s.dirty = true;
  }

  /** Whether `tree` has been seen (watched, or known not to be watchable). */
  has(tree: string): boolean {
    return this.trees.has(tree);
  }

  /** Something outside the tree's files changed what a walk reports (its committed state): walk again. */
  touch(tree: string): void {
    const s = this.trees.get(tree);
    if (s) s.dirty = true;
  }

  /** True unless `tree` is watched and nothing happened in it since its last walk began. */
  async mayHaveChanged(tree: string): Promise<boolean> {
    // An event queued while this loop iteration ran (a write made by this process a moment ago)
    // is read in the next iteration's poll phase: the second setImmediate runs after it.
    await new Promise<void>((r) => setImmediate(r));
    await new Promise<void>((r) => setImmediate(r));
    const s = this.trees.get(tree);
    return !s || s.dirty || s.off !== '';
  }

  /** Why `tree` is always walked ('' = it is watched; undefined = never walked). */
  offReason(tree: string): string | undefined {
    return this.trees.get(tree)?.off;
  }

  /** Watches held now, over every tree. */
  total(): number {
    let n = 0;
    for (const s of this.trees.values()) n += s.watches.size;
    return n;
  }

  /** Stops watching `tree`. */
  drop(tree: string): void {
    const s = this.trees.get(tree);
    if (!s) return;
    for (const w of s.watches.values()) w.close();
    this.trees.delete(tree);
  }

  /** Stops every watch. */
  close(): void {
    for (const t of [...this.trees.keys()]) this.drop(t);
  }

  private turnOff(s: TreeState, why: string, forGood = false): void {
    for (const w of s.watches.values()) w.close();
    s.watches.clear();
    s.off = why;
    s.offForGood = forGood;
    s.dirty = true;
  }
}
