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
import { createHash } from 'node:crypto';
import { fail } from '../errors.js';
import { comparePaths } from './paths.js';
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
