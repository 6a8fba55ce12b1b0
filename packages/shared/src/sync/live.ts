/**
 * A manifest kept current from watcher events without re-walking the tree. Entries live in a Map
 * with a parent → children index (so removing a directory costs its subtree, not the whole tree);
 * the root hash is computed lazily and cached until the next change that alters something, from a
 * RootIndex (roothash.ts) that re-hashes only the directories that changed since the last one.
 */
import { comparePaths, parentOf } from './paths.js';
import { lowerBound, type Manifest, type ManifestEntry } from './manifest.js';
import { canonicalLine, RootIndex } from './roothash.js';

/** A watcher-driven change: a path now has this entry, or a path (and everything below) is gone. */
export type ManifestChange = { op: 'upsert'; entry: ManifestEntry } | { op: 'remove'; path: string };

/** A mutable manifest for the master's tree cache (see module comment). */
export class LiveManifest {
  private readonly byPath = new Map<string, ManifestEntry>();
  private readonly children = new Map<string, Set<string>>();
  /**
   * The entries in path order while no path was added or removed: a content change replaces one
   * element (copying the array first when a snapshot shares it), so the next snapshot does not
   * rebuild 20,000 entries for one edit.
   */
  private sortedList: ManifestEntry[] | undefined;
  private sortedListShared = false;
  private cachedRoot: string | undefined;
  /** Root index of the entries as they were before the pending changes below. */
  private index: RootIndex | undefined;
  private readonly pendingUp = new Map<string, ManifestEntry>();
  private readonly pendingRm = new Set<string>();
  /** The last snapshot, valid until the next change (callers treat manifests as read-only). */
  private snapshot: Manifest | undefined;

  /** Starts from a manifest (typically the result of walkTree). */
  constructor(entries: Iterable<ManifestEntry> = []) {
    for (const e of entries) this.insert(e);
  }

  /** Wraps an existing manifest. */
  static from(manifest: Manifest): LiveManifest {
    const live = new LiveManifest(manifest.entries);
    live.cachedRoot = manifest.rootHash;
    live.snapshot = { entries: manifest.entries.slice(), rootHash: manifest.rootHash };
    live.sortedList = live.snapshot.entries;
    live.sortedListShared = true;
    return live;
  }

  /** Number of entries. */
  get size(): number {
    return this.byPath.size;
  }

  /** The entry at `path`, if any. */
  get(path: string): ManifestEntry | undefined {
    return this.byPath.get(path);
  }

  /**
   * Applies one change; returns false when it changed nothing (e.g. a watcher reporting a save
   * that kept the same bytes), so callers can skip notifying agents. An upsert that turns a
   * directory into something else drops the directory's subtree.
   */
  apply(change: ManifestChange): boolean {
    if (change.op === 'remove') return this.removeTree(change.path);
    const next = change.entry;
    const prev = this.byPath.get(next.path);
    if (prev !== undefined && canonicalLine(prev) === canonicalLine(next)) return false;
    if (prev?.type === 'dir' && next.type !== 'dir') this.removeBelow(next.path);
    if (prev === undefined) {
      this.sortedList = undefined;
    } else this.replaceSorted(next);
    this.insert(next);
    this.pendingRm.delete(next.path);
    this.pendingUp.set(next.path, next);
    this.cachedRoot = undefined;
    this.snapshot = undefined;
    return true;
  }

  /** Root hash of the current entries (equal to computeRootHash(entries)). */
  rootHash(): string {
    this.cachedRoot ??= this.currentIndex().rootHash;
    return this.cachedRoot;
  }

  private currentIndex(): RootIndex {
    if (this.index === undefined) this.index = RootIndex.ofSorted(this.sortedEntries());
    else if (this.pendingUp.size + this.pendingRm.size > 0) this.index = this.index.withChanges([...this.pendingUp.values()], this.pendingRm);
    this.pendingUp.clear();
    this.pendingRm.clear();
    return this.index;
  }

  /**
   * A sorted snapshot. The same object is returned until the next change (building it costs a
   * few ms for 20,000 entries, and a verify reads it several times): treat it as read-only.
   */
  toManifest(): Manifest {
    if (this.snapshot === undefined) {
      const entries = this.sortedEntries();
      this.cachedRoot ??= this.currentIndex().rootHash;
      this.snapshot = { entries, rootHash: this.cachedRoot };
      this.sortedListShared = true;
    }
    return this.snapshot;
  }

  private sortedEntries(): ManifestEntry[] {
    if (this.snapshot !== undefined) return this.snapshot.entries;
    if (this.sortedList === undefined) {
      this.sortedList = [...this.byPath.values()].sort((a, b) => comparePaths(a.path, b.path));
      this.sortedListShared = false;
    }
    return this.sortedList;
  }

  /** Puts a changed entry (same path) into sortedList, when there is one. */
  private replaceSorted(e: ManifestEntry): void {
    let list = this.sortedList;
    if (list === undefined) return;
    const i = lowerBound(list, e.path);
    if (list[i]?.path !== e.path) {
      this.sortedList = undefined; // not found: cannot happen for a path in byPath; rebuild to be safe
      return;
    }
    if (this.sortedListShared) {
      list = this.sortedList = list.slice();
      this.sortedListShared = false;
    }
    list[i] = e;
  }

  private insert(e: ManifestEntry): void {
    this.byPath.set(e.path, e);
    const parent = parentOf(e.path);
    let set = this.children.get(parent);
    if (set === undefined) this.children.set(parent, (set = new Set()));
    set.add(e.path);
  }

  private removeTree(path: string): boolean {
    const had = this.byPath.delete(path);
    this.children.get(parentOf(path))?.delete(path);
    if (had) this.forgetPath(path);
    const below = this.removeBelow(path);
    if (had || below) {
      this.sortedList = undefined;
      this.cachedRoot = undefined;
      this.snapshot = undefined;
    }
    return had || below;
  }

  private forgetPath(path: string): void {
    this.pendingUp.delete(path);
    this.pendingRm.add(path);
  }

  /** Removes every descendant of `path` (iteratively: trees can be deep). */
  private removeBelow(path: string): boolean {
    let removed = false;
    const stack = [path];
    for (let p = stack.pop(); p !== undefined; p = stack.pop()) {
      const kids = this.children.get(p);
      if (kids === undefined) continue;
      this.children.delete(p);
      for (const k of kids) {
        if (this.byPath.delete(k)) {
          removed = true;
          this.forgetPath(k);
        }
        stack.push(k);
      }
    }
    if (removed) {
      this.sortedList = undefined;
      this.cachedRoot = undefined;
      this.snapshot = undefined;
    }
    return removed;
  }
}

/** Applies a watcher change to a live manifest; returns false when nothing changed. */
export function applyChange(live: LiveManifest, change: ManifestChange): boolean {
  return live.apply(change);
}
