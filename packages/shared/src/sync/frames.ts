/**
 * Blob framing for FetchBlobs: a plain length-prefixed stream, `[32-byte SHA-256][8-byte size]
 * [size bytes]` per blob. Measured on 20,000 blobs / 85 MB, the tar codec (tar-stream, one entry
 * per blob) cost about 5 s on each side; this framing moves the same blobs in a fraction of that,
 * because small blobs are read, hashed and written with one synchronous call each and batched
 * into ~1 MiB chunks. Every blob is verified against its name on arrival, as before.
 */
import { createHash } from 'node:crypto';
import { closeSync, constants as FS, mkdirSync, openSync, readSync, renameSync, rmSync, writeSync, fstatSync } from 'node:fs';
import { join } from 'node:path';
import { fail } from '../errors.js';
import { isHash } from './manifest.js';
import type { BlobSource, ReceivedBlob } from './pack.js';
import type { ByteSource } from './tario.js';

const HEADER = 40;
// A little under 1 MiB: the message encoder grows its buffer in powers of two, so a chunk of
// exactly 1 MiB plus its field header would make it allocate 2 MiB for every message.
const CHUNK = 1024 * 1024 - 64;
const EMPTY = Buffer.alloc(0);

/**
 * Frames blobs for the wire, one frame per distinct hash, in chunks of at most 1 MiB. A source
 * that cannot be read fails the stream (TREE_UNREADABLE); a source whose content changed since
 * its manifest is caught by the receiver's hash check.
 *
 * Headers and contents are read straight into the chunk being filled: no Buffer per blob. For
 * 200,000 small blobs, one header Buffer and one content Buffer per blob (kept until their chunk
 * was concatenated, long enough to be promoted out of V8's young generation) raised the master's
 * peak RSS by ~100 MB.
 */
export async function* frameBlobs(sources: Iterable<BlobSource>, pool?: ChunkPool): AsyncGenerator<Buffer> {
  const seen = new Set<string>();
  const fresh = () => pool?.take() ?? newChunk();
  let out = fresh();
  let off = 0;
  // Hands the filled part of `out` to the consumer (who may keep it, or give it back to `pool`)
  // and starts a new chunk.
  const take = () => {
    const filled = withHeadroom(out, off);
    out = fresh();
    off = 0;
    return filled;
  };
  for (const { hash, path, size } of sources) {
    if (!isHash(hash)) throw fail('INVALID_ARGUMENT', `${JSON.stringify(hash)} is not a SHA-256 hex digest`);
    if (seen.has(hash)) continue;
    seen.add(hash);
    const fd = openTreeFile(path);
    try {
      let len: number;
      if (size === undefined) {
        const st = fstatSync(fd);
        if (!st.isFile()) throw notAFile(path);
        len = st.size;
      } else len = size;
      if (CHUNK - off < HEADER) yield take();
      out.write(hash, off, 32, 'hex');
      out.writeBigUInt64BE(BigInt(len), off + 32);
      off += HEADER;
      let left = len;
      while (left > 0) {
        if (off === CHUNK) yield take();
        const n = readBlob(fd, out, off, Math.min(left, CHUNK - off), len - left, path);
        if (n === 0) break; // truncated since stat: the receiver's size/hash check catches it
        off += n;
        left -= n;
      }
      // Keep the framing intact so the receiver can name the bad blob.
      while (left > 0) {
        if (off === CHUNK) yield take();
        const z = Math.min(left, CHUNK - off);
        out.fill(0, off, off + z);
        off += z;
        left -= z;
      }
    } finally {
      closeSync(fd);
    }
    if (off === CHUNK) yield take();
  }
  if (off > 0) yield withHeadroom(out, off);
}

/** Where a chunk of framed blobs starts: a blob (its index), and how many of its content bytes earlier chunks carried. */
export interface FramePos {
  blob: number;
  done: number;
}

/** A blob to frame whose size is known (from the manifest). */
export interface SizedBlobSource {
  hash: string;
  path: string;
  size: number;
}

/** Bytes of blob framing in one chunk (a little under 1 MiB; see CHUNK). */
export const FRAME_CHUNK_BYTES = CHUNK;

/**
 * Frames `sources` (distinct hashes) into `out` from `from`, synchronously, until `out` is full or
 * the blobs end: the bytes written, and where the next chunk starts (`blob === sources.length`:
 * the end). The result depends only on the sources and their sizes, never on what a read
 * returns (content read short is zero-filled, as in frameBlobs, for the receiver to refuse), so
 * the chunks of one blob list can be framed once and numbered: FetchBlobs streams of cluster
 * members asking for the same list share them (the master's BlobFanout). A header is never split
 * across chunks: it goes where it and a content byte fit (an empty blob: the header alone).
 * @throws SpokeError INVALID_ARGUMENT (a hash that is not SHA-256 hex), TREE_UNREADABLE
 */
export function frameChunk(sources: readonly SizedBlobSource[], from: FramePos, out: Buffer): { length: number; next: FramePos } {
  if (out.length <= HEADER) throw new RangeError(`a frame chunk needs more than ${HEADER} bytes`);
  let off = 0;
  let blob = from.blob;
  let done = from.done;
  while (blob < sources.length) {
    const { hash, path, size } = sources[blob] as SizedBlobSource;
    if (done === 0) {
      if (out.length - off < HEADER + (size > 0 ? 1 : 0)) break;
      if (!isHash(hash)) throw fail('INVALID_ARGUMENT', `${JSON.stringify(hash)} is not a SHA-256 hex digest`);
      out.write(hash, off, 32, 'hex');
      out.writeBigUInt64BE(BigInt(size), off + 32);
      off += HEADER;
    }
    const n = Math.min(size - done, out.length - off);
    if (n > 0) {
      readAt(path, out, off, n, done);
      off += n;
      done += n;
    }
    if (done < size) break; // the chunk is full
    blob++;
    done = 0;
  }
  return { length: off, next: { blob, done } };
}

/** Reads `length` bytes of `path` from `position` into `out` at `off`; what the file no longer has is zero-filled. */
function readAt(path: string, out: Buffer, off: number, length: number, position: number): void {
  const fd = openTreeFile(path);
  try {
    let got = 0;
    while (got < length) {
      const n = readBlob(fd, out, off + got, length - got, position + got, path);
      if (n === 0) break; // truncated since the walk: the receiver's hash check catches it
      got += n;
    }
    if (got < length) out.fill(0, off + got, off + length);
  } finally {
    closeSync(fd);
  }
}

/** A buffer for frameChunk with CHUNK_HEADROOM bytes of its own in front (see hasHeadroom); `bytes` at most FRAME_CHUNK_BYTES. */
export function newFrameChunk(bytes = CHUNK): Buffer {
  return newChunk(bytes);
}

/** The first `length` bytes of a newFrameChunk buffer, marked as having its headroom (hasHeadroom is true). */
export function sealFrameChunk(chunk: Buffer, length: number): Buffer {
  return withHeadroom(chunk, length);
}

/** Writes all of `data` to `fd`. */
function writeAll(fd: number, data: Buffer): void {
  for (let o = 0; o < data.length;) o += writeSync(fd, data, o, data.length - o);
}

function notAFile(path: string): Error {
  return fail('TREE_UNREADABLE', `cannot read ${path}: it is not a regular file now`);
}

/** readSync, where a directory swapped in since the walk (no fstat said so) reads as EISDIR. */
function readBlob(fd: number, out: Buffer, off: number, length: number, position: number, path: string): number {
  try {
    return readSync(fd, out, off, length, position);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'EISDIR') throw notAFile(path);
    throw fail('TREE_UNREADABLE', `cannot read ${path}: ${(e as NodeJS.ErrnoException).code ?? String(e)}`);
  }
}

/**
 * Chunks a consumer of frameBlobs is done with, for it to fill again. A FetchBlobs stream gives
 * each chunk back once grpc-js has copied it into its own framing (the write's callback): a
 * 50 MB blob then allocates ~50 MiB less off-heap memory on the master, and V8 starts a full
 * collection for every ~64 MiB of off-heap growth (~60–90 ms each with a few 20,000-entry
 * manifests live). Holds at most `max` chunks (1 MiB each).
 */
export class ChunkPool {
  private readonly free: Buffer[] = [];

  constructor(private readonly max = 8) {}

  /** A chunk to fill: a given-back one, else undefined (frameBlobs allocates). */
  take(): Buffer | undefined {
    return this.free.pop();
  }

  /**
   * Gives back a chunk frameBlobs yielded; nothing may read or keep it afterwards. Anything else
   * (a copy, a chunk of another size) is ignored.
   */
  give(chunk: Buffer): void {
    if (!headroomed.has(chunk) || this.free.length >= this.max) return;
    headroomed.delete(chunk);
    if (chunk.buffer.byteLength < chunk.byteOffset + CHUNK) return;
    this.free.push(Buffer.from(chunk.buffer, chunk.byteOffset, CHUNK));
  }
}

/**
 * Bytes free before every chunk frameBlobs yields, for the message headers (see wire.ts): the
 * BlobChunk field header (≤ 4 bytes) and gRPC's 5-byte message prefix.
 */
export const CHUNK_HEADROOM = 16;
const headroomed = new WeakSet<Buffer>();

/** A chunk buffer of `bytes` (CHUNK) that starts CHUNK_HEADROOM bytes into its own allocation. */
function newChunk(bytes = CHUNK): Buffer {
  return Buffer.allocUnsafe(CHUNK_HEADROOM + bytes).subarray(CHUNK_HEADROOM);
}

function withHeadroom(chunk: Buffer, length: number): Buffer {
  const b = chunk.subarray(0, length);
  headroomed.add(b);
  return b;
}

/**
 * True when `b` is a chunk from frameBlobs, preceded by CHUNK_HEADROOM bytes of its own
 * allocation that nobody else uses: an encoder may write a header there and send header and
 * chunk as one view, without copying the chunk.
 */
export function hasHeadroom(b: Uint8Array): boolean {
  return headroomed.has(b as Buffer) && b.byteOffset >= CHUNK_HEADROOM;
}

/**
 * Receives framed blobs into stagingDir as files named by their hash, verifying each. A blob
 * that does not match its name is deleted and fails the call with BLOB_HASH_MISMATCH (blobs
 * verified before it stay: a retry need not fetch them again). Unwanted or malformed frames
 * fail with ARCHIVE_UNSAFE. `destOf` may name another place for a blob (a new file in the same
 * private staging area, on the same filesystem, whose directory exists): the converge engine
 * puts content straight where an initial build needs it.
 */
export async function unframeBlobs(
  source: ByteSource,
  stagingDir: string,
  opts: {
    want?: Iterable<string>;
    destOf?: (hash: string) => string | undefined;
    /** The mode a blob written to destOf(hash) is created with (before the umask); default 0600. */
    modeOf?: (hash: string) => number | undefined;
    /** After each chunk: the blob bytes in it (not the framing), and how many blobs it completed. */
    onProgress?: (bytes: number, blobs: number) => void;
  } = {},
): Promise<ReceivedBlob[]> {
  mkdirSync(stagingDir, { recursive: true });
  const want = opts.want === undefined ? undefined : new Set(opts.want);
  const got: ReceivedBlob[] = [];
  let buf: Buffer = Buffer.alloc(0);
  // the blob being received
  type Cur = {
    hash: string;
    size: number;
    left: number;
    hasher: ReturnType<typeof createHash>;
    whole: Buffer | null;
    fd: number | null;
    tmp: string;
    dest: string;
    mode: number;
  };
  let cur = null as Cur | null;

  const start = (header: Buffer): Cur => {
    const hash = header.toString('hex', 0, 32);
    const size = Number(header.readBigUInt64BE(32));
    if (!Number.isSafeInteger(size)) throw fail('ARCHIVE_UNSAFE', 'blob frame with an impossible size');
    if (want && !want.has(hash)) throw fail('ARCHIVE_UNSAFE', `blob ${hash.slice(0, 12)} was not asked for`);
    const destOf = opts.destOf?.(hash);
    const dest = destOf ?? join(stagingDir, hash);
    const mode = (destOf !== undefined ? opts.modeOf?.(hash) : undefined) ?? 0o600;
    cur = { hash, size, left: size, hasher: createHash('sha256'), whole: null, fd: null, tmp: join(stagingDir, `.in-${hash}`), dest, mode };
    return cur;
  };
  const finish = (c: Cur) => {
    cur = null;
    const actual = c.hasher.digest('hex');
    const dest = c.dest;
    const mode = c.mode;
    if (actual !== c.hash) {
      if (c.fd !== null) {
        closeSync(c.fd);
        rmSync(c.tmp, { force: true });
      }
      throw fail('BLOB_HASH_MISMATCH', `blob ${c.hash.slice(0, 12)} arrived with hash ${actual.slice(0, 12)}: corrupted in transit or changed at the source`);
    }
    if (c.fd !== null) {
      closeSync(c.fd);
      renameSync(c.tmp, dest);
    } else {
      // The staging dir is private to one converge and swept after a crash, so a direct write is safe.
      // open/write/close, not writeFileSync: ~4 µs less per blob, 20,000 blobs in an initial sync
      const data = c.whole ?? EMPTY;
      const fd = openSync(dest, FS.O_WRONLY | FS.O_CREAT | FS.O_TRUNC, mode);
      try {
        writeAll(fd, data);
      } finally {
        closeSync(fd);
      }
    }
    got.push({ hash: c.hash, size: c.size, path: dest, mode });
  };

  try {
    await receive();
  } catch (e) {
    // a broken stream or a bad blob: no half-written temp file, no open descriptor left behind
    const c = cur as Cur | null;
    if (c !== null && c.fd !== null) {
      closeSync(c.fd);
      rmSync(c.tmp, { force: true });
    }
    throw e;
  }
  return got;

  async function receive(): Promise<void> {
    for await (const chunk of source) {
      const before = got.length;
      let payload = 0;
      buf = buf.length === 0 ? Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength) : Buffer.concat([buf, chunk]);
      let off = 0;
      for (;;) {
        let c = cur;
        if (c === null) {
          if (buf.length - off < HEADER) break;
          c = start(buf.subarray(off, off + HEADER));
          off += HEADER;
        }
        const take = Math.min(c.left, buf.length - off);
        if (take > 0) {
          const piece = buf.subarray(off, off + take);
          c.hasher.update(piece);
          // A blob spread over chunks goes to a temp file piece by piece as they come (renamed into
          // place once verified), with no copy in memory: collecting and joining its pieces cost
          // ~125 ms of the agent's CPU per 200 MB of a first sync.
          if (c.fd === null && take < c.left) c.fd = openSync(c.tmp, 'w', c.mode);
          if (c.fd !== null) writeAll(c.fd, piece);
          // All of it in this chunk (most blobs): written from the chunk by finish() below.
          else c.whole = piece;
          c.left -= take;
          off += take;
          payload += take;
        }
        if (c.left === 0) finish(c);
        else break;
      }
      buf = off === buf.length ? Buffer.alloc(0) : buf.subarray(off);
      opts.onProgress?.(payload, got.length - before);
    }
    if (cur !== null || buf.length > 0) throw fail('BLOB_HASH_MISMATCH', 'the blob stream ended in the middle of a blob');
  }
}

/**
 * Opens a file of a tree for reading: never through a symlink (one swapped in since the walk),
 * never blocking on a FIFO. @throws SpokeError TREE_UNREADABLE
 */
export function openTreeFile(path: string): number {
  try {
    return openSync(path, FS.O_RDONLY | FS.O_NOFOLLOW | FS.O_NONBLOCK);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw fail('TREE_UNREADABLE', `cannot read ${path}: ${code === 'ELOOP' ? 'it is a symlink now' : (code ?? String(e))}`);
  }
}
