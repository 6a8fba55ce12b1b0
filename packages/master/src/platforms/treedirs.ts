/**
 * Directory snapshots of a canonical tree (the inode and mtime of every directory): how a verify
 * finds the changes a watcher may have missed (TreeStore.checkDirs), and which directories it
 * must look at once the watcher is trusted.
 */
import { lstatSync, readdirSync, type Stats } from 'node:fs';
import { parentOf } from '@spoke/shared';
import type { Tree } from './tree.js';

/**
 * Directory inodes and mtimes as a walk finds them (WalkOptions.onDir), and the root's (not when
 * it is a symlink: checkDirs would take it for gone); taken before each directory is read, so
 * a name added meanwhile shows as a changed mtime at the next check, never the reverse.
 */
export function dirSnapshot(hostPath: string): { map: Map<string, { ino: number; mtimeMs: number }>; onDir: (rel: string, st: Stats) => void } {
  const map = new Map<string, { ino: number; mtimeMs: number }>();
  try {
    const st = lstatSync(hostPath);
    if (st.isDirectory()) map.set('', { ino: st.ino, mtimeMs: st.mtimeMs });
  } catch {
    /* the walk says what is wrong with the root */
  }
  return { map, onDir: (rel, st) => map.set(rel, { ino: st.ino, mtimeMs: st.mtimeMs }) };
}

/** Checks one directory against its snapshot; what changed is queued for the next drain. */
export function checkDir(t: Tree, rel: string, was: { ino: number; mtimeMs: number }): void {
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
  refreshDir(t, rel);
}

/**
 * After the walk that follows the watcher's 'ready': the directories that did not exist (or
 * were another inode) when the watcher started are suspect (chokidar's set-up scan may have
 * missed them); the others were watched before the walk read them.
 */
export function suspectsAfterReady(t: Tree): void {
  if (!t.watchReady || t.distrusted || t.suspect !== undefined || t.preWatch === undefined) return;
  const before = t.preWatch;
  t.preWatch = undefined;
  t.suspect = new Set();
  for (const [rel, now] of t.dirs) if (rel !== '' && before.get(rel)?.ino !== now.ino) t.suspect.add(rel);
}

/** Queues the entries of one directory that appeared or disappeared since the last look. */
export function refreshDir(t: Tree, rel: string): void {
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
export function snapshotDirs(t: Tree): void {
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
