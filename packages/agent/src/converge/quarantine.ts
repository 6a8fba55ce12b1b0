/**
 * Quarantine: what a drift repair removes or overwrites on a web server is copied here first, so
 * a file an operator (or an intruder) put into a platform tree by hand is never simply gone.
 *
 * Layout: `<dir>/<id>/files/<tree-relative path>` plus `<dir>/<id>/quarantine.json` (written last:
 * a directory without it is a torn copy and is swept). Ids are `<UTC time to the ms>-<6 hex>`, so
 * they sort by age. Bounded: entries older than `maxAgeMs` go first, then the oldest until the
 * whole dir holds at most `maxBytes`; a repair whose own files exceed the bound keeps what fits
 * (smallest first) and counts the rest as `skipped`.
 *
 * Only content that differs from what the agent last converged is copied — the master's own older
 * version of a file can be had again from the master, a hand edit cannot.
 */
import * as fs from 'node:fs';
import { constants as FS } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { dirname, join } from 'node:path';
import { type ManifestDiff, type ManifestEntry, sameContent } from '@spoke/shared';
import { errText, isErrno } from './fsutil.js';
import type { Lookup } from './plan.js';

/** Where the quarantine lives and how much it may hold. */
export interface QuarantineOptions {
  /** Absolute directory on this host (the agent uses `<state-dir>/quarantine`). */
  dir: string;
  /** Total size of everything kept. @default 256 MiB */
  maxBytes: number;
  /** Entries older than this are removed. @default 30 days */
  maxAgeMs: number;
  /** Clock (tests). @default Date.now */
  now?: () => number;
}

/** Default bounds (agent options `quarantineMaxBytes`, `quarantineMaxAgeMs`). */
export const QUARANTINE_MAX_BYTES = 256 * 1024 * 1024;
export const QUARANTINE_MAX_AGE_MS = 30 * 24 * 3600 * 1000;

/** One quarantined repair, as `quarantine.json` records it. */
export interface QuarantineEntry {
  id: string;
  /** Namespace path of the tree the files came from. */
  tree: string;
  atMs: number;
  /** Absolute directory holding the files, at their tree-relative paths. */
  dir: string;
  /** Paths kept, tree-relative, with why they were taken. */
  paths: { path: string; why: 'removed' | 'overwritten'; size: number }[];
  bytes: number;
  /** Paths a repair lost without a copy (over the size bound, or unreadable). */
  skipped: string[];
}

/**
 * Entries of `diff` (base → desired) whose on-disk content the apply removes or replaces and that
 * differ from the committed manifest (`committed`; undefined = nothing was ever converged, so all
 * of them are unknown content). Files and symlinks only: a directory's files are listed themselves.
 */
export function quarantineCandidates(
  base: Lookup,
  diff: ManifestDiff,
  committed: Lookup | undefined,
): { entry: ManifestEntry; why: 'removed' | 'overwritten' }[] {
  const out: { entry: ManifestEntry; why: 'removed' | 'overwritten' }[] = [];
  const consider = (have: ManifestEntry | undefined, why: 'removed' | 'overwritten') => {
    if (have === undefined || have.type === 'dir') return;
    const was = committed?.(have.path);
    if (was !== undefined && was.type === have.type && sameContent(was, have)) return; // the master's own version
    out.push({ entry: have, why });
  };
  for (const e of diff.removed) consider(e, 'removed');
  for (const e of diff.changed) consider(base(e.path), 'overwritten');
  for (const t of diff.typeChanged) consider(t.from, t.to.type === 'dir' ? 'removed' : 'overwritten');
  return out;
}

function newId(now: number): string {
  return `${new Date(now).toISOString().replace(/[-:]/g, '').replace('.', '')}-${randomBytes(3).toString('hex')}`;
}

/**
 * Copies `items` (tree-relative, from `root`) into a new quarantine entry, after making room.
 * Never follows a symlink: files are opened O_NOFOLLOW and checked to be what the walk saw;
 * symlinks are kept as symlinks. Returns undefined when there was nothing to keep.
 */
export function quarantine(
  q: QuarantineOptions,
  tree: string,
  root: string,
  items: { entry: ManifestEntry; why: 'removed' | 'overwritten' }[],
): QuarantineEntry | undefined {
  if (items.length === 0) return undefined;
  const now = (q.now ?? Date.now)();
  // Smallest first, so a bound keeps as many of them as it can.
  const sorted = [...items].sort((a, b) => a.entry.size - b.entry.size || (a.entry.path < b.entry.path ? -1 : 1));
  let want = 0;
  const take: typeof sorted = [];
  const skipped: string[] = [];
  for (const it of sorted) {
    const size = it.entry.type === 'file' ? it.entry.size : 0;
    if (want + size > q.maxBytes) skipped.push(it.entry.path);
    else {
      want += size;
      take.push(it);
    }
  }
  prune(q, q.maxBytes - want);
  fs.mkdirSync(q.dir, { recursive: true, mode: 0o700 });
  const id = newId(now);
  const dir = join(q.dir, id);
  const files = join(dir, 'files');
  fs.mkdirSync(files, { recursive: true, mode: 0o700 });
  const paths: QuarantineEntry['paths'] = [];
  let bytes = 0;
  for (const { entry, why } of take) {
    try {
      const dest = join(files, entry.path);
      fs.mkdirSync(dirname(dest), { recursive: true, mode: 0o700 });
      const size = copyOne(join(root, entry.path), dest, entry);
      paths.push({ path: entry.path, why, size });
      bytes += size;
    } catch (err) {
      if (!isErrno(err, 'ENOENT')) skipped.push(`${entry.path} (${errText(err)})`);
    }
  }
  const rec: QuarantineEntry = { id, tree, atMs: now, dir: files, paths: paths.sort((a, b) => (a.path < b.path ? -1 : 1)), bytes, skipped: skipped.sort() };
  const tmp = join(dir, '.quarantine.json.tmp');
  fs.writeFileSync(tmp, `${JSON.stringify(rec)}\n`, { mode: 0o600 });
  fs.renameSync(tmp, join(dir, 'quarantine.json'));
  return rec;
}

/** Copies a file (by handle, O_NOFOLLOW) or a symlink; returns the bytes kept. */
function copyOne(src: string, dest: string, entry: ManifestEntry): number {
  if (entry.type === 'symlink') {
    fs.symlinkSync(fs.readlinkSync(src), dest);
    return 0;
  }
  const fd = fs.openSync(src, FS.O_RDONLY | FS.O_NOFOLLOW);
  try {
    const st = fs.fstatSync(fd);
    if (!st.isFile()) throw new Error('not a regular file any more');
    // The handle must be the path the walk saw, not something reached through a swapped parent.
    const real = fs.readlinkSync(`/proc/self/fd/${fd}`);
    if (real !== src) throw new Error(`reached ${real} instead`);
    const out = fs.openSync(dest, FS.O_WRONLY | FS.O_CREAT | FS.O_EXCL, 0o600);
    try {
      const buf = Buffer.allocUnsafe(256 * 1024);
      let total = 0;
      for (;;) {
        const n = fs.readSync(fd, buf, 0, buf.length, null);
        if (n === 0) break;
        fs.writeSync(out, buf, 0, n);
        total += n;
      }
      return total;
    } finally {
      fs.closeSync(out);
    }
  } finally {
    fs.closeSync(fd);
  }
}

/** Every complete entry, oldest first (optionally of one tree). */
export function listQuarantine(q: QuarantineOptions, tree?: string): QuarantineEntry[] {
  let names: string[];
  try {
    names = fs.readdirSync(q.dir).sort();
  } catch (err) {
    if (isErrno(err, 'ENOENT')) return [];
    throw err;
  }
  const out: QuarantineEntry[] = [];
  for (const n of names) {
    try {
      const rec = JSON.parse(fs.readFileSync(join(q.dir, n, 'quarantine.json'), 'utf8')) as QuarantineEntry;
      if (tree === undefined || rec.tree === tree) out.push(rec);
    } catch {
      // torn (no record yet): prune sweeps it
    }
  }
  return out;
}

/**
 * Removes entries older than maxAgeMs, torn ones, and then the oldest until at most `budget`
 * bytes are kept (default maxBytes).
 */
export function prune(q: QuarantineOptions, budget = q.maxBytes): void {
  let names: string[];
  try {
    names = fs.readdirSync(q.dir).sort();
  } catch (err) {
    if (isErrno(err, 'ENOENT')) return;
    throw err;
  }
  const now = (q.now ?? Date.now)();
  const kept: { name: string; bytes: number }[] = [];
  for (const n of names) {
    let rec: QuarantineEntry | undefined;
    try {
      rec = JSON.parse(fs.readFileSync(join(q.dir, n, 'quarantine.json'), 'utf8')) as QuarantineEntry;
    } catch {
      rec = undefined;
    }
    if (rec === undefined || now - rec.atMs > q.maxAgeMs) fs.rmSync(join(q.dir, n), { recursive: true, force: true });
    else kept.push({ name: n, bytes: rec.bytes });
  }
  let total = kept.reduce((s, k) => s + k.bytes, 0);
  for (const k of kept) {
    if (total <= Math.max(0, budget)) break;
    fs.rmSync(join(q.dir, k.name), { recursive: true, force: true });
    total -= k.bytes;
  }
}
