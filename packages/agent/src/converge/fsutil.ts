/**
 * Small synchronous file-system helpers for the converge engine. Sync on purpose: the calls are
 * microseconds each from the inode cache and the thread-pool hand-off of the async versions costs
 * more than the call (see the notes in shared/sync/manifest.ts).
 */
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import { constants as FS, type Stats } from 'node:fs';
import { dirname } from 'node:path';

/** True when `err` is a Node system error with this errno code. */
export function isErrno(err: unknown, code: string): boolean {
  return typeof err === 'object' && err !== null && (err as { code?: unknown }).code === code;
}

/** True for a full file system or an exceeded quota (converge reports it as DISK_LOW). */
export function isDiskFull(err: unknown): boolean {
  return isErrno(err, 'ENOSPC') || isErrno(err, 'EDQUOT');
}

/** The errno code of a system error, else its message (for one-line error texts). */
export function errText(err: unknown): string {
  const code = typeof err === 'object' && err !== null ? (err as { code?: unknown }).code : undefined;
  return typeof code === 'string' ? code : err instanceof Error ? err.message : String(err);
}

/** lstat, or undefined when the path (or a parent) does not exist. */
export function lstatOrNull(path: string): Stats | undefined {
  try {
    return fs.lstatSync(path);
  } catch (err) {
    if (isErrno(err, 'ENOENT') || isErrno(err, 'ENOTDIR')) return undefined;
    throw err;
  }
}

const BUF = Buffer.allocUnsafe(256 * 1024);

/**
 * SHA-256 and size of a regular file, opened without following a symlink or blocking on a FIFO.
 * Returns undefined when it is missing or not a regular file.
 */
export function hashFileSync(path: string): { hash: string; size: number } | undefined {
  let fd: number;
  try {
    fd = fs.openSync(path, FS.O_RDONLY | FS.O_NOFOLLOW | FS.O_NONBLOCK);
  } catch (err) {
    if (isErrno(err, 'ENOENT') || isErrno(err, 'ELOOP') || isErrno(err, 'ENOTDIR')) return undefined;
    throw err;
  }
  try {
    if (!fs.fstatSync(fd).isFile()) return undefined;
    const h = createHash('sha256');
    let size = 0;
    for (;;) {
      const n = fs.readSync(fd, BUF, 0, BUF.length, null);
      if (n === 0) break;
      h.update(BUF.subarray(0, n));
      size += n;
    }
    return { hash: h.digest('hex'), size };
  } finally {
    fs.closeSync(fd);
  }
}

/**
 * Copies the regular file `src` (opened without following a symlink) to the new file `dest`
 * (mode 0600, must not exist), hashing what it reads: one pass over the bytes instead of a copy
 * and a re-read. True when the copy holds `size` bytes with SHA-256 `hash`; otherwise `dest` is
 * removed (or never made) and false returned (also when `src` is missing, not a regular file, or
 * of another size).
 *
 * No fstat: a file that fits the buffer (most) is read, measured and hashed before `dest` is
 * created, so a mismatch creates nothing; a directory reads as EISDIR, a FIFO as empty
 * (O_NONBLOCK). Measured on a second platform: 19,000 copies without 19,000 fstat calls and
 * their Stats objects.
 */
export function copyVerifiedSync(src: string, dest: string, hash: string, size: number, mode = 0o600): boolean {
  let sfd: number;
  try {
    sfd = fs.openSync(src, FS.O_RDONLY | FS.O_NOFOLLOW | FS.O_NONBLOCK);
  } catch (err) {
    if (isErrno(err, 'ENOENT') || isErrno(err, 'ELOOP') || isErrno(err, 'ENOTDIR') || isErrno(err, 'EACCES')) return false;
    throw err;
  }
  try {
    const h = createHash('sha256');
    let got = readSource(sfd);
    if (got === undefined) return false;
    // a short read of a regular file is its end: a file read whole is checked before its copy is made
    const whole = got < BUF.length;
    if (whole ? got !== size || h.update(BUF.subarray(0, got)).digest('hex') !== hash : size < BUF.length) return false;
    const dfd = fs.openSync(dest, FS.O_WRONLY | FS.O_CREAT | FS.O_EXCL, mode);
    let ok = false;
    try {
      if (whole) {
        writeAll(dfd, got);
        ok = true;
        return ok;
      }
      let n = 0;
      while (got > 0 && n + got <= size) {
        h.update(BUF.subarray(0, got));
        writeAll(dfd, got);
        n += got;
        const next = readSource(sfd);
        if (next === undefined) return false;
        got = next;
      }
      ok = got === 0 && n === size && h.digest('hex') === hash;
      return ok;
    } finally {
      fs.closeSync(dfd);
      if (!ok) fs.rmSync(dest, { force: true });
    }
  } finally {
    fs.closeSync(sfd);
  }
}

/** Writes the first `len` bytes of BUF to `fd`. */
function writeAll(fd: number, len: number): void {
  for (let off = 0; off < len;) off += fs.writeSync(fd, BUF, off, len - off);
}

/** The next read of a copy's source into BUF; undefined for a source that is a directory now. */
function readSource(fd: number): number | undefined {
  try {
    return fs.readSync(fd, BUF, 0, BUF.length, null);
  } catch (err) {
    if (isErrno(err, 'EISDIR')) return undefined;
    throw err;
  }
}

/** fsync a directory (makes a rename or unlink in it durable). */
export function fsyncDir(dir: string): void {
  const fd = fs.openSync(dir, FS.O_RDONLY | FS.O_DIRECTORY);
  try {
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

let tmpSeq = 0;

/**
 * Writes a file atomically: temp file in the same dir, (fsync), rename over, (fsync the dir).
 * Without `durable` it is still atomic against a process crash, just not against power loss.
 * The temp name ends in `.tmp-…`, so a glob like nginx's `include *.conf` never picks it up.
 */
export function writeAtomic(path: string, data: string | Buffer, durable: boolean, mode = 0o600): void {
  const tmp = `${path}.tmp-${process.pid}-${tmpSeq++}`;
  const fd = fs.openSync(tmp, FS.O_WRONLY | FS.O_CREAT | FS.O_TRUNC | FS.O_NOFOLLOW, mode);
  try {
    fs.writeFileSync(fd, data);
    if (durable) fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
  fs.renameSync(tmp, path);
  if (durable) fsyncDir(dirname(path));
}

/**
 * writeAtomic(path, data, false) on the thread pool: writing a large file (a 20,000-entry
 * manifest, ~2 MB) then overlaps with whatever the caller does meanwhile.
 */
export async function writeAtomicAsync(path: string, data: string | Buffer, mode = 0o600): Promise<void> {
  const tmp = `${path}.tmp-${process.pid}-${tmpSeq++}`;
  const fh = await fsp.open(tmp, FS.O_WRONLY | FS.O_CREAT | FS.O_TRUNC | FS.O_NOFOLLOW, mode);
  try {
    await fh.writeFile(data);
  } finally {
    await fh.close();
  }
  await fsp.rename(tmp, path);
}

/** Reads a small file as UTF-8, or undefined when it does not exist. */
export function readIfExists(path: string): string | undefined {
  try {
    return fs.readFileSync(path, 'utf8');
  } catch (err) {
    if (isErrno(err, 'ENOENT')) return undefined;
    throw err;
  }
}

/** rm -rf that never follows symlinks (fs.rmSync does not follow them either); missing is fine. */
export function removeAll(path: string): void {
  fs.rmSync(path, { recursive: true, force: true, maxRetries: 2 });
}

/**
 * The mode a new file of an initial build is created with (before the umask): its final mode
 * when the owner can read it (it may be the source of copies made later in the build), else
 * 0600 and a chmod at the end. Created so, most files need no chmod at all (20,000: ~180 ms).
 */
export function creationMode(mode: number): number {
  return mode & 0o400 ? mode & 0o777 : 0o600;
}

/** This process's umask, read without changing it: the mode a directory made with 0777 gets. */
export function probeUmask(dir: string): number {
  const probe = `${dir}/.umask-probe`;
  fs.mkdirSync(probe, 0o777);
  try {
    return ~fs.lstatSync(probe).mode & 0o777;
  } finally {
    fs.rmdirSync(probe);
  }
}
