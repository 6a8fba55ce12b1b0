/**
 * Keeping a canonical tree's manifest current while the master runs: the chokidar watcher of its
 * directories (startWatch), and its events applied by re-reading exactly those paths (drain).
 */
import { watch } from 'chokidar';
import { existsSync, type Stats } from 'node:fs';
import { basename, join, relative, sep } from 'node:path';
import { excludeMatcher, LiveManifest, lowerBound, readEntry, walkTree, type FileHelper, type Logger, type ManifestEntry } from '@spoke/shared';
import type { SqliteStatCache } from './statcache.js';
import type { Tree } from './tree.js';
import { dirSnapshot, snapshotDirs, suspectsAfterReady } from './treedirs.js';

/**
 * Watches the tree's directories only: chokidar adds a native watch and bookkeeping per watched
 * path (about 8 KB each), and a directory's watch already reports every change to the names
 * in it (content, mode, add, remove, rename) as a raw event naming the child. So files are
 * left out of chokidar's own tracking and their changes are taken from those raw events:
 * memory and inotify watches grow with directories, not files (20,000 files ≈ 2,000 dirs).
 */
export function startWatch(
  t: Tree,
  deps: {
    log: Logger;
    /** See TreeStore's stormEvents. */
    stormEvents: number;
    /** TreeStore.onChange, read at each event. */
    onChange: (nsPath: string, rel?: string) => void;
    /** Counts a re-walk because the watcher could not be trusted (TreeStore.untrustedRewalks). */
    onUntrusted: () => void;
  },
): void {
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
    deps.onChange(t.nsPath, rel);
  };
  const untrusted = (why: string, extra: object = {}) => {
    // events may be lost, and with them chokidar's watches of new directories: check all
    t.distrusted = true;
    t.suspect = undefined;
    if (!t.rewalk) {
      deps.onUntrusted();
      deps.log.info({ tree: t.nsPath, ...extra }, `${why}: the next read re-walks the tree`);
    }
    t.rewalk = true;
    deps.onChange(t.nsPath);
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
    if (++events === deps.stormEvents) untrusted('event storm (the kernel may drop events)', { events });
    const dir = (details as { watchedPath?: string } | undefined)?.watchedPath;
    if (!dir || !name) return;
    // a watch on the directory itself reports its own deletion with its own name
    if (name === basename(dir) && !existsSync(join(dir, name))) return touch(dir);
    touch(join(dir, name));
  });
  w.on('ready', () => {
    t.watchReady = true;
    t.rewalk = true;
    deps.onChange(t.nsPath);
  });
  w.on('error', (e) => {
    deps.log.warn({ tree: t.nsPath, err: (e as Error).message }, 'watcher error');
    untrusted('watcher error');
  });
  t.preWatch = t.dirs; // replaced, never changed in place, by later snapshots
  t.watcher = w;
}

/** Applies pending watcher events by re-reading exactly those paths. */
export async function drain(t: Tree, cache: SqliteStatCache, helper: FileHelper | undefined): Promise<void> {
  if (t.rewalk) {
    t.rewalk = false;
    t.pending.clear();
    const dirs = dirSnapshot(t.hostPath);
    const r = await walkTree(t.hostPath, { exclude: t.excludes, statCache: cache, previous: t.live, onDir: dirs.onDir, helper });
    cache.flushSoon();
    t.live = LiveManifest.from(r.manifest);
    t.dirs = dirs.map;
    suspectsAfterReady(t);
    return;
  }
  if (t.pending.size === 0) return;
  let sawDir = false;
  const paths = [...t.pending];
  t.pending.clear();
  const matcher = excludeMatcher({ exclude: t.excludes });
  for (const rel of paths) {
    const entry: ManifestEntry | undefined = await readEntry(t.hostPath, rel, { statCache: cache, excludes: matcher });
    if (entry) {
      t.live.apply({ op: 'upsert', entry });
      // A directory event (created, replaced, moved in) can come before the events of what is
      // inside it, or instead of them: re-read the whole subtree (stat-cached, so cheap).
      if (entry.type === 'dir') {
        await rescanBelow(t, rel, cache);
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
  cache.flushSoon();
  if (sawDir) snapshotDirs(t);
}

/** Replaces everything below `rel` with what is on disk now. */
async function rescanBelow(t: Tree, rel: string, cache: SqliteStatCache): Promise<void> {
  // Exclude patterns are anchored at the tree root: walk the subtree without them, then filter
  // each path as the tree sees it (so sites/*/files stays out when rel is sites/x).
  const matcher = excludeMatcher({ exclude: t.excludes });
  const r = await walkTree(`${t.hostPath}/${rel}`, { exclude: [], defaultExcludes: false, statCache: cache });
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
