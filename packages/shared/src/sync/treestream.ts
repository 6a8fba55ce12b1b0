/**
 * The record stream of a streamed first sync (Agent.StreamTree, capability 15): a whole tree in
 * the order the master's walk finds it, every directory before what is in it, each file's
 * content inline, so the master reads each file once (the walk's own read) and the agent writes
 * each as it arrives. Records, big-endian, packed into ~1 MiB BlobChunk messages (a record may
 * span messages):
 * ```
 * [u8 kind][u16 path length][path, UTF-8]
 *   kind 1 dir      [u16 mode]
 *   kind 2 symlink  [u16 mode][u16 target length][target, UTF-8]
 *   kind 3 file     [u16 mode][32-byte SHA-256][u64 size][size bytes of content]
 *   kind 4 file     [u16 mode][32-byte SHA-256][u64 size]   (content sent earlier in this stream)
 *   kind 5 file     [u16 mode][32-byte SHA-256][u64 size]   (content the agent said it holds)
 *   kind 9 end      (path length 0) [32-byte root hash][u64 entries]
 * ```
 * The parser here checks only the framing (kinds, lengths, UTF-8); what an entry may be (safe
 * paths, order, modes, hashes, the root hash) is the receiver's check.
 */
import { closeSync, readSync } from 'node:fs';
import { fail } from '../errors.js';
import { FRAME_CHUNK_BYTES as CHUNK, newFrameChunk as newChunk, openTreeFile, sealFrameChunk as withHeadroom } from './frames.js';
import { type ManifestEntry, sha256Hex } from './manifest.js';
import { MAX_PATH_BYTES } from './paths.js';

const KIND_DIR = 1;
const KIND_SYMLINK = 2;
const KIND_FILE = 3;
const KIND_AGAIN = 4;
const KIND_HELD = 5;
const KIND_END = 9;
/** A flush of less than this copies it out and keeps the chunk (see flush). */
const SMALL_FLUSH = 256 * 1024;
/** Largest record header: kind, path, mode, and a symlink target or a hash and size. */
const MAX_HEADER = 1 + 2 + MAX_PATH_BYTES + 2 + 2 + MAX_PATH_BYTES;

/**
 * Packs a tree into the record stream, in ~1 MiB chunks handed to `emit` (with room in front for
 * the BlobChunk codec's header, so they are sent without a copy). A file's content is sent once
 * per stream: a later file with the same hash is a kind 4 record; a file whose content the
 * receiver holds (`held`) is a kind 5 record, without it.
 */
export class TreeStreamWriter {
  private out = newChunk();
  private off = 0;
  private readonly sent = new Set<string>();
  /** Entries written so far. */
  entries = 0;
  /** Content bytes written so far (not the framing). */
  bytes = 0;

  constructor(
    private readonly emit: (chunk: Buffer) => void,
    private readonly held: ReadonlySet<string> = new Set(),
  ) {}

  /**
   * Writes one entry. A file's content is `content` (exactly the bytes that were hashed) when
   * given, else read from `abs` (opened without following a symlink; a file that shrank is
   * padded with zeros, which the receiver's hash check refuses).
   * @throws SpokeError TREE_UNREADABLE when `abs` cannot be read
   */
  entry(e: ManifestEntry, content?: Uint8Array, abs?: string): void {
    const path = Buffer.from(e.path, 'utf8');
    const again = e.type === 'file' && (this.sent.has(e.hash) || this.held.has(e.hash));
    const target = e.type === 'symlink' ? Buffer.from(e.target ?? '', 'utf8') : undefined;
    this.room(1 + 2 + path.length + 2 + (target ? 2 + target.length : 40));
    const o = this.out;
    let i = this.off;
    o[i++] = e.type === 'dir' ? KIND_DIR : e.type === 'symlink' ? KIND_SYMLINK : !again ? KIND_FILE : this.sent.has(e.hash) ? KIND_AGAIN : KIND_HELD;
    o.writeUInt16BE(path.length, i);
    i += 2;
    i += path.copy(o, i);
    o.writeUInt16BE(e.mode & 0o7777, i);
    i += 2;
    if (target !== undefined) {
      o.writeUInt16BE(target.length, i);
      i += 2;
      i += target.copy(o, i);
    } else if (e.type === 'file') {
      o.write(e.hash, i, 32, 'hex');
      o.writeBigUInt64BE(BigInt(e.size), i + 32);
      i += 40;
    }
    this.off = i;
    this.entries++;
    if (e.type !== 'file' || again) return;
    this.sent.add(e.hash);
    this.bytes += e.size;
    if (content !== undefined && content.length === e.size) this.copyIn(content);
    else this.readIn(abs ?? '', e.size);
  }

  /** Writes the end record and hands out the last chunk. */
  end(rootHash: string, entries: number): void {
    this.room(3 + 40);
    const o = this.out;
    o[this.off] = KIND_END;
    o.writeUInt16BE(0, this.off + 1);
    o.write(rootHash, this.off + 3, 32, 'hex');
    o.writeBigUInt64BE(BigInt(entries), this.off + 35);
    this.off += 43;
    this.flush();
  }

  /** Hands out what the current chunk holds (a pause in the walk: no need to wait for 1 MiB). */
  flush(): void {
    if (this.off === 0) return;
    if (this.off < SMALL_FLUSH) {
      // a pause with little written: a copy of it goes out and the chunk is filled on (a new
      // 1 MiB chunk per pause was ~100 MiB/s of off-heap allocation, and a collection per 64 MiB)
      const part = Buffer.from(this.out.subarray(0, this.off));
      this.off = 0;
      this.emit(part);
      return;
    }
    const filled = withHeadroom(this.out, this.off);
    this.out = newChunk();
    this.off = 0;
    this.emit(filled);
  }

  /** Bytes waiting in the current chunk. */
  get pending(): number {
    return this.off;
  }

  private room(n: number): void {
    if (CHUNK - this.off < n) this.flush();
  }

  private copyIn(content: Uint8Array): void {
    let from = 0;
    while (from < content.length) {
      if (this.off === CHUNK) this.flush();
      const n = Math.min(content.length - from, CHUNK - this.off);
      this.out.set(content.subarray(from, from + n), this.off);
      this.off += n;
      from += n;
    }
  }

  private readIn(abs: string, size: number): void {
    const fd = openTreeFile(abs);
    try {
      let left = size;
      while (left > 0) {
        if (this.off === CHUNK) this.flush();
        let n: number;
        try {
          n = readSync(fd, this.out, this.off, Math.min(left, CHUNK - this.off), size - left);
        } catch (e) {
          const code = (e as NodeJS.ErrnoException).code;
          throw fail('TREE_UNREADABLE', `cannot read ${abs}: ${code === 'EISDIR' ? 'it is not a regular file now' : (code ?? String(e))}`);
        }
        if (n === 0) {
          // shrank since the walk: keep the framing; the receiver's hash check names the file
          this.out.fill(0, this.off, this.off + Math.min(left, CHUNK - this.off));
          n = Math.min(left, CHUNK - this.off);
        }
        this.off += n;
        left -= n;
      }
    } finally {
      closeSync(fd);
    }
  }
}

/** An entry as the stream announces it (content, for kind 3, follows through `content`). */
export interface StreamedEntry {
  entry: ManifestEntry;
  /**
   * For a file: `content` when its content follows, `again` when it came earlier in the stream,
   * `held` when the receiver said it holds it (StreamTreeRequest.have).
   */
  source: 'content' | 'again' | 'held' | undefined;
}

/** What the parser reports, in stream order. */
export interface TreeStreamHandler {
  /** An entry; for a file with content, `content` calls and one `fileEnd` follow. */
  entry(s: StreamedEntry): void;
  /** A piece of the current file's content (a view of the received message: use it before returning). */
  content(piece: Buffer): void;
  /** The current file's content is complete. */
  fileEnd(): void;
  /** The end record: the root hash of the tree and how many entries it has. */
  end(rootHash: string, entries: number): void;
}

/**
 * Parses the record stream chunk by chunk (see the module comment). Content is handed out as
 * views of the chunks, never joined in memory; only a record header cut by a chunk boundary is
 * copied.
 */
export class TreeStreamParser {
  private head: Buffer = Buffer.alloc(0);
  /** Content bytes still to come for the current file (0: a header is next). */
  private left = 0;
  private ended = false;

  constructor(private readonly on: TreeStreamHandler) {}

  /**
   * Parses one chunk.
   * @throws SpokeError ARCHIVE_UNSAFE on a malformed record or anything after the end record
   */
  push(chunk: Uint8Array): void {
    const buf = Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
    let off = 0;
    if (this.head.length > 0) {
      // a header cut by the last chunk: joined with at most a header's worth of this one
      const had = this.head.length;
      const joined = Buffer.concat([this.head, buf.subarray(0, Math.min(buf.length, MAX_HEADER))]);
      this.head = Buffer.alloc(0);
      if (this.ended) throw fail('ARCHIVE_UNSAFE', 'the tree stream goes on after its end record');
      const used = this.record(joined, 0);
      if (used === 0) {
        this.head = joined;
        return;
      }
      off = used - had;
    }
    while (off < buf.length) {
      if (this.left > 0) {
        const n = Math.min(this.left, buf.length - off);
        this.on.content(buf.subarray(off, off + n));
        off += n;
        this.left -= n;
        if (this.left === 0) this.on.fileEnd();
        continue;
      }
      if (this.ended) throw fail('ARCHIVE_UNSAFE', 'the tree stream goes on after its end record');
      const used = this.record(buf, off);
      if (used === 0) {
        this.head = Buffer.from(buf.subarray(off));
        return;
      }
      off += used;
    }
  }

  /**
   * The stream ended.
   * @throws SpokeError BLOB_HASH_MISMATCH when it ended before its end record
   */
  finish(): void {
    if (!this.ended || this.left > 0 || this.head.length > 0) throw fail('BLOB_HASH_MISMATCH', 'the tree stream ended before its end record');
  }

  /** True once the end record was read. */
  get complete(): boolean {
    return this.ended;
  }

  /** Parses the record header at `off`; returns its length, or 0 when `buf` holds only part of it. */
  private record(buf: Buffer, off: number): number {
    const avail = buf.length - off;
    if (avail < 3) return 0;
    const kind = buf[off] as number;
    const pathLen = buf.readUInt16BE(off + 1);
    if (pathLen > MAX_PATH_BYTES) throw fail('ARCHIVE_UNSAFE', `tree stream record with a path of ${pathLen} bytes`);
    let i = off + 3;
    if (kind === KIND_END) {
      if (pathLen !== 0) throw fail('ARCHIVE_UNSAFE', 'tree stream end record with a path');
      if (avail < 43) return 0;
      const rootHash = buf.toString('hex', i, i + 32);
      const entries = Number(buf.readBigUInt64BE(i + 32));
      this.ended = true;
      this.on.end(rootHash, entries);
      return 43;
    }
    if (kind !== KIND_DIR && kind !== KIND_SYMLINK && kind !== KIND_FILE && kind !== KIND_AGAIN && kind !== KIND_HELD) {
      throw fail('ARCHIVE_UNSAFE', `tree stream record of unknown kind ${kind}`);
    }
    if (avail < 3 + pathLen + 2) return 0;
    const path = utf8(buf, i, i + pathLen, 'path');
    i += pathLen;
    const mode = buf.readUInt16BE(i);
    i += 2;
    if (kind === KIND_DIR) {
      this.on.entry({ entry: { path, type: 'dir', mode, size: 0, hash: '' }, source: undefined });
      return i - off;
    }
    if (kind === KIND_SYMLINK) {
      if (buf.length - i < 2) return 0;
      const targetLen = buf.readUInt16BE(i);
      if (targetLen > MAX_PATH_BYTES) throw fail('ARCHIVE_UNSAFE', `tree stream symlink with a target of ${targetLen} bytes`);
      if (buf.length - i - 2 < targetLen) return 0;
      const raw = buf.subarray(i + 2, i + 2 + targetLen);
      const target = utf8(buf, i + 2, i + 2 + targetLen, 'symlink target');
      i += 2 + targetLen;
      // a manifest's symlink entry: the target's length and SHA-256 (manifest.ts symlinkEntry)
      this.on.entry({ entry: { path, type: 'symlink', mode, size: targetLen, hash: sha256Hex(raw), target }, source: undefined });
      return i - off;
    }
    if (buf.length - i < 40) return 0;
    const hash = buf.toString('hex', i, i + 32);
    const size = Number(buf.readBigUInt64BE(i + 32));
    if (!Number.isSafeInteger(size)) throw fail('ARCHIVE_UNSAFE', 'tree stream file with an impossible size');
    i += 40;
    this.on.entry({ entry: { path, type: 'file', mode, size, hash }, source: kind === KIND_FILE ? 'content' : kind === KIND_AGAIN ? 'again' : 'held' });
    if (kind === KIND_FILE) {
      if (size === 0) this.on.fileEnd();
      else this.left = size;
    }
    return i - off;
  }
}

/** Strict UTF-8: bytes that do not decode and encode back to themselves are refused. */
function utf8(buf: Buffer, from: number, to: number, what: string): string {
  const s = buf.toString('utf8', from, to);
  if (Buffer.byteLength(s, 'utf8') !== to - from || !Buffer.from(s, 'utf8').equals(buf.subarray(from, to))) {
    throw fail('ARCHIVE_UNSAFE', `tree stream ${what} is not valid UTF-8`);
  }
  return s;
}
