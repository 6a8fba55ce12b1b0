/**
 * Tar framing for content on the wire and on disk:
 * - blobs (FetchBlobs): one tar entry per blob, named by its SHA-256 hex, verified on arrival;
 * - trees (backups): a tar of a tree as a manifest lists it.
 */
import { createHash, randomBytes } from 'node:crypto';
import { constants as FS } from 'node:fs';
import * as fsp from 'node:fs/promises';
import type { Readable } from 'node:stream';
import { join } from 'node:path';
import type { Pack } from 'tar-stream';
import { fail } from '../errors.js';
import { errnoText, isErrno } from './fsx.js';
import { checkEntryPath } from './paths.js';
import { byPath, isHash, type Manifest, type ManifestEntry } from './manifest.js';
import { addEntry, fileChunks, packToReadable, readTar, type ByteSource } from './tario.js';

/** One blob to send: its hash and a file on disk that holds it. */
export interface BlobSource {
  hash: string;
  path: string;
  /**
   * Its size in the manifest, when known: frameBlobs then reads that many bytes without an
   * fstat (a file that changed size since is caught by the receiver's hash check, as any change).
   */
  size?: number;
}

// Blobs carry no metadata of their own: mode and mtime come from the manifest at apply time, and
// fixed values keep the framing byte-for-byte reproducible.
const BLOB_MODE = 0o644;
const EPOCH = new Date(0);

/**
 * Packs blobs into a tar stream, one entry per distinct hash, named by the hash. The bytes are
 * hashed again while being sent; if a source file no longer matches its hash (it changed after
 * the manifest was made) the stream fails with BLOB_HASH_MISMATCH instead of serving wrong bytes.
 * @throws (via the stream) SpokeError INVALID_ARGUMENT, BLOB_HASH_MISMATCH, TREE_UNREADABLE
 */
export function packBlobs(entries: readonly BlobSource[]): Readable {
  return packToReadable(async (pack) => {
    const done = new Set<string>();
    for (const { hash, path } of entries) {
      if (!isHash(hash)) {
        throw fail('INVALID_ARGUMENT', `${JSON.stringify(hash)} is not a SHA-256 hex digest`);
      }
      if (done.has(hash)) continue;
      done.add(hash);
      const sent = await packFile(pack, path, { name: hash, mode: BLOB_MODE, mtime: EPOCH }, hash);
      // The receiver is waiting for every blob it asked for: a missing one is an error, not a skip.
      if (!sent) {
        throw fail('TREE_UNREADABLE', `${path} (blob ${hash.slice(0, 12)}…) is gone or not a file`, { path });
      }
    }
  });
}

/**
 * Adds the file at `path` as one entry. Opened without following symlinks or blocking on FIFOs;
 * the size is taken from the open file. With `expectHash`, fails with BLOB_HASH_MISMATCH after
 * the bytes if they hash differently. Returns false when the file is gone or no longer a file.
 */
async function packFile(pack: Pack, path: string, header: { name: string; mode: number; mtime?: Date }, expectHash?: string): Promise<boolean> {
  let fh;
  try {
    fh = await fsp.open(path, FS.O_RDONLY | FS.O_NOFOLLOW | FS.O_NONBLOCK);
  } catch (err) {
    if (isErrno(err, 'ENOENT') || isErrno(err, 'ELOOP')) return false;
    throw fail('TREE_UNREADABLE', `cannot read ${path}: ${errnoText(err)}`, { path });
  }
  try {
    const st = await fh.stat();
    if (!st.isFile()) return false;
    const h = createHash('sha256');
    const chunks = fileChunks(fh, st.size, path, (c) => h.update(c));
    await addEntry(pack, { ...header, mtime: header.mtime ?? st.mtime, type: 'file', size: st.size }, chunks);
    if (expectHash !== undefined && h.digest('hex') !== expectHash) {
      throw fail('BLOB_HASH_MISMATCH', `${path} no longer has content ${expectHash.slice(0, 12)}…`, { path });
    }
    return true;
  } finally {
    await fh.close();
  }
}

/** Options for unpackBlobs. */
export interface UnpackBlobsOptions {
  /** When given, a blob that was not asked for is refused (ARCHIVE_UNSAFE). */
  want?: Iterable<string>;
}

/** A blob that arrived and was verified, at `path` (= stagingDir/hash). */
export interface ReceivedBlob {
  hash: string;
  size: number;
  path: string;
  /** The mode the file was created with, before the umask (unframeBlobs: modeOf's, else 0600). */
  mode?: number;
}

/**
 * Receives a blob tar into stagingDir (created if missing): each blob is written to a private
 * temp name, its SHA-256 computed on the way, and renamed to `stagingDir/<hash>` only if it
 * matches its name. A mismatch deletes the bad blob and fails with BLOB_HASH_MISMATCH; blobs
 * verified before it stay (they are good content, a retry need not fetch them again). Entry names
 * must be 64 lowercase hex digits, so no name can point anywhere but stagingDir.
 * @throws SpokeError BLOB_HASH_MISMATCH, ARCHIVE_UNSAFE
 */
export async function unpackBlobs(source: ByteSource, stagingDir: string, opts: UnpackBlobsOptions = {}): Promise<ReceivedBlob[]> {
  await fsp.mkdir(stagingDir, { recursive: true });
  const want = opts.want === undefined ? undefined : new Set(opts.want);
  const got: ReceivedBlob[] = [];
  for await (const entry of readTar(source)) {
    const { name, type } = entry.header;
    if (type !== 'file' && type !== 'contiguous-file') {
      throw fail('ARCHIVE_UNSAFE', `blob stream entry ${JSON.stringify(name)} is not a file (${String(type)})`);
    }
    if (!isHash(name)) throw fail('ARCHIVE_UNSAFE', `blob stream entry ${JSON.stringify(name)} is not named by a hash`);
    if (want !== undefined && !want.has(name)) throw fail('ARCHIVE_UNSAFE', `blob ${name} was not requested`);
    got.push(await receiveBlob(entry.body, name, stagingDir));
  }
  return got;
}

async function receiveBlob(chunks: AsyncIterable<Buffer>, hash: string, dir: string): Promise<ReceivedBlob> {
  const tmp = join(dir, `.${hash}.${randomBytes(6).toString('hex')}.part`);
  const fh = await fsp.open(tmp, FS.O_WRONLY | FS.O_CREAT | FS.O_EXCL | FS.O_NOFOLLOW, 0o600);
  let ok = false;
  try {
    const h = createHash('sha256');
    let size = 0;
    for await (const chunk of chunks) {
      h.update(chunk);
      await fh.write(chunk, 0, chunk.length);
      size += chunk.length;
    }
    await fh.close();
    const actual = h.digest('hex');
    if (actual !== hash) {
      throw fail('BLOB_HASH_MISMATCH', `blob ${hash.slice(0, 12)}… arrived with content ${actual.slice(0, 12)}…`, {
        expected: hash,
        actual,
      });
    }
    const path = join(dir, hash);
    await fsp.rename(tmp, path);
    ok = true;
    return { hash, size, path };
  } finally {
    if (!ok) {
      await fh.close().catch(() => undefined);
      await fsp.rm(tmp, { force: true });
    }
  }
}

/** Options for packTree. */
export interface PackTreeOptions {
  /**
   * Fail with BLOB_HASH_MISMATCH when a file's bytes no longer match the manifest. Off by default:
   * backups of live user files should take what is there now.
   */
  verify?: boolean;
}

/**
 * Tars the tree at `dir` as `manifest` lists it, parents first: directories and symlinks from the
 * manifest, file bytes from disk at pack time (opened without following symlinks). Files that
 * vanished since the manifest was made are left out. Manifest paths are checked with
 * checkEntryPath, so a bad manifest cannot make it read outside `dir`. Note: tar-stream writes
 * mode 0 as its default (0644/0755); the sync engine never produces mode 0.
 * @throws (via the stream) SpokeError ARCHIVE_UNSAFE, BLOB_HASH_MISMATCH, TREE_UNREADABLE
 */
export function packTree(dir: string, manifest: Manifest, opts: PackTreeOptions = {}): Readable {
  return packToReadable(async (pack) => {
    const entries = [...manifest.entries].sort(byPath);
    for (const e of entries) await packTreeEntry(pack, dir, e, opts);
  });
}

async function packTreeEntry(pack: Pack, dir: string, e: ManifestEntry, opts: PackTreeOptions): Promise<void> {
  const path = checkEntryPath(e.path);
  if (path === '') return;
  switch (e.type) {
    case 'dir':
      return addEntry(pack, { name: path, type: 'directory', mode: e.mode });
    case 'symlink':
      return addEntry(pack, { name: path, type: 'symlink', linkname: e.target ?? '', mode: 0o777 });
    case 'file':
      await packFile(pack, join(dir, path), { name: path, mode: e.mode }, opts.verify ? e.hash : undefined);
  }
}
