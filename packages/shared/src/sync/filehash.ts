/**
 * Reading and hashing one file: opened without following a symlink and without blocking on a
 * FIFO, read up to the size lstat saw, synchronously (small files) or on the thread pool (large
 * ones, with the next read in flight while the last is hashed); and the walk's error for a path
 * it cannot read.
 */
import { createHash, type Hash } from 'node:crypto';
import * as fs from 'node:fs';
import { constants as FS, type Stats } from 'node:fs';
import { fail } from '../errors.js';
import * as fsx from './fsx.js';
import { errnoText, isErrno } from './fsx.js';

/** Size of the buffers files are read through (pooled by the walk). */
export const READ_CHUNK = 256 * 1024;
/** Files up to this size may be read synchronously (larger ones always go to the thread pool). */
export const SYNC_MAX_BYTES = 1024 * 1024;

/**
 * Hashes the first `size` bytes (lstat's size) of a file, opened without following a symlink
 * and without blocking on a FIFO (either could have been swapped in since lstat). Bounding the
 * read by lstat's size means nothing swapped in can make it read forever; growth during the read
 * is not chased (it changes mtime, so the watcher or the next walk sees it), a shrink ends at the
 * short read. With `withStat` the open file is also fstat'ed, checked to be a regular file and
 * returned for cache keys; that is skipped without a cache because it measured ~25% of a walk.
 * Returns undefined when the path vanished or is no longer a regular file.
 */
export async function hashPath(
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
export function hashPathSync(
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

/** lstat of `abs`, or undefined when it (or a directory above it) is gone. */
export function lstatSyncOrUndefined(abs: string): Stats | undefined {
  try {
    return fs.lstatSync(abs);
  } catch (err) {
    if (isErrno(err, 'ENOENT') || isErrno(err, 'ENOTDIR')) return undefined;
    throw unreadable(abs, err);
  }
}

/** TREE_UNREADABLE for a path the walk cannot read, with the system's reason. */
export function unreadable(path: string, err: unknown) {
  return fail('TREE_UNREADABLE', `cannot read ${path}: ${errnoText(err)}`, { path });
}
