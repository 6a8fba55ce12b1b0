/**
 * One canonical tree as TreeStore holds it: its live manifest, recent versions and differences,
 * its watcher and the directory snapshot a verify checks (treedirs.ts, treewatcher.ts).
 */
import type { FSWatcher } from 'chokidar';
import type { LiveManifest, Manifest, ManifestEntry } from '@spoke/shared';

/** One canonical tree (see the module comment). */
export interface Tree {
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
