/**
 * One read of each blob for every cluster member (issue 20; DESIGN.md "Clusters: the master reads
 * each blob once and serves all members in parallel").
 *
 * Fifty members converging one platform ask for the same blob list (the same manifest, nothing
 * held yet) at about the same time. Before this, every FetchBlobs stream resolved its hashes
 * against the tree's manifest, opened, read and closed every file and framed it: ~0.85 s of the
 * master's CPU per member for 20,000 files, 70 % of it in open/read/close.
 *
 * A BlobFanout numbers the chunks of one blob list: a *transfer*, keyed by the tree and a digest
 * of the list, holds the list's sources (resolved once) and where each chunk starts (frameChunk
 * makes chunk boundaries depend only on the blobs' sizes). A stream that needs chunk i takes it
 * from the cache, or frames it (reads its files) and puts it there for the others. The cache is
 * bounded in bytes (what the open streams need latest goes first; see evict): a member too far
 * behind the others frames a chunk again rather than the master holding a whole platform for it.
 * A transfer no stream uses is dropped after `lingerMs` with its chunks.
 *
 * Chunks are immutable once framed and never given back to a pool: every stream that sends one
 * holds a reference until its write completes. Every blob is still verified by each receiver: a
 * file that changed on disk since the manifest reaches every member that shares its chunk as the
 * same wrong bytes, and each refuses it; their retries ask for shorter lists (what they still
 * lack), which are transfers of their own, read again.
 */
import { createHash } from 'node:crypto';
import { FRAME_CHUNK_BYTES, frameChunk, newFrameChunk, sealFrameChunk, type FramePos, type SizedBlobSource } from '@spoke/shared';

/** Resolves a blob list of a tree to files (TreeStore.blobSources). */
export type BlobResolver = (tree: string, hashes: readonly string[]) => Promise<Iterable<SizedBlobSource>>;

/** Options of a BlobFanout. */
export interface BlobFanoutOptions {
  resolve: BlobResolver;
  /** Bytes of framed chunks the cache may hold. @default 64 MiB */
  maxBytes?: number;
  /** How long a transfer no stream uses stays (a member that asks a moment later shares it). @default 5000 */
  lingerMs?: number;
  /** Frames one chunk (tests count reads through it). @default frameChunk */
  frame?: typeof frameChunk;
  /** Bytes per chunk, at most FRAME_CHUNK_BYTES (tests use small chunks). @default FRAME_CHUNK_BYTES */
  chunkBytes?: number;
}

interface Transfer {
  readonly key: string;
  /** Resolved once, by the first stream to ask; shared by the rest. */
  ready: Promise<SizedBlobSource[]>;
  /** starts[i]: where chunk i begins; starts[0] is the beginning, the next is learnt as each chunk is framed. */
  readonly starts: FramePos[];
  readonly chunks: Map<number, Buffer>;
  /** The chunk each open stream sends next (0 for one still waiting for its turn). */
  readonly readers: Map<object, number>;
  users: number;
  timer: NodeJS.Timeout | undefined;
}

/** One stream's place in a transfer (BlobFanout.open). */
export interface BlobTransfer {
  /** The framed chunks, in order (see BlobFanout). */
  chunks(): AsyncGenerator<Buffer>;
  /** Leaves the transfer (idempotent). */
  close(): void;
}

/** Counters, for tests and the log. */
export interface BlobFanoutStats {
  /** Chunks framed (read from disk). */
  framed: number;
  /** Chunks sent from the cache (framed by another stream). */
  shared: number;
  /** Chunks dropped from the cache to stay within maxBytes. */
  evicted: number;
}

/** Serves FetchBlobs streams of the same blob list from one framing of it. */
export class BlobFanout {
  private readonly transfers = new Map<string, Transfer>();
  /** Cached chunks, in the order they were last sent: key → transfer, index, bytes. */
  private readonly lru = new Map<string, { t: Transfer; i: number; bytes: number }>();
  private held = 0;
  private readonly maxBytes: number;
  private readonly lingerMs: number;
  private readonly frame: typeof frameChunk;
  private readonly chunkBytes: number;
  readonly stats: BlobFanoutStats = { framed: 0, shared: 0, evicted: 0 };

  constructor(private readonly opts: BlobFanoutOptions) {
    this.chunkBytes = opts.chunkBytes ?? FRAME_CHUNK_BYTES;
    if (this.chunkBytes <= 41 || this.chunkBytes > FRAME_CHUNK_BYTES) throw new RangeError(`chunkBytes must be within 42..${FRAME_CHUNK_BYTES}`);
    this.maxBytes = Math.max(opts.maxBytes ?? 64 * 1024 * 1024, this.chunkBytes);
    this.lingerMs = opts.lingerMs ?? 5000;
    this.frame = opts.frame ?? frameChunk;
  }

  /** Bytes of chunks the cache holds now (never more than maxBytes). */
  get heldBytes(): number {
    return this.held;
  }

  /** Transfers known now (in use, or lingering). */
  get transferCount(): number {
    return this.transfers.size;
  }

  /**
   * Joins (or starts) the transfer of `hashes` (duplicates sent once) of `tree`. The list is not
   * kept: a member waiting for its turn holds only the handle, not 16,384 hash strings. Close
   * the handle when done, however the stream ended.
   */
  open(tree: string, hashes: readonly string[]): BlobTransfer {
    const t = this.attach(tree, hashes);
    const me = {};
    t.readers.set(me, 0);
    let closed = false;
    return {
      chunks: () => this.chunks(t, me),
      close: () => {
        if (closed) return;
        closed = true;
        t.readers.delete(me);
        this.detach(t);
      },
    };
  }

  /**
   * The transfer's framed chunks, in order: each a buffer with headroom for its message headers
   * (wire.grpcFrameInPlace), shared with other streams — never written to.
   * @throws SpokeError from the resolver (TREE_UNREADABLE, BLOB_HASH_MISMATCH) and frameChunk
   */
  private async *chunks(t: Transfer, me: object): AsyncGenerator<Buffer> {
    const sources = await t.ready;
    for (let i = 0; ; i++) {
      const start = t.starts[i];
      if (start === undefined) throw new Error(`blob fanout: chunk ${i} has no start`); // cannot happen: chunks go in order
      if (start.blob >= sources.length) return;
      if (t.readers.has(me)) t.readers.set(me, i);
      let chunk = this.touch(t, i);
      if (chunk) this.stats.shared++;
      else chunk = this.fill(t, i, sources, start);
      yield chunk;
    }
  }

  private attach(tree: string, hashes: readonly string[]): Transfer {
    const digest = createHash('sha256');
    for (const h of hashes) digest.update(h).update('\n');
    const key = `${tree}\0${digest.digest('hex')}`;
    let t = this.transfers.get(key);
    if (t === undefined) {
      const fresh: Transfer = {
        key,
        ready: Promise.resolve([]),
        starts: [{ blob: 0, done: 0 }],
        chunks: new Map(),
        readers: new Map(),
        users: 0,
        timer: undefined,
      };
      fresh.ready = this.opts.resolve(tree, hashes).then(
        (s) => [...s],
        (e: unknown) => {
          // a refusal is not kept: the next stream asks again
          if (this.transfers.get(key) === fresh) this.drop(fresh);
          throw e;
        },
      );
      this.transfers.set(key, fresh);
      t = fresh;
    }
    if (t.timer !== undefined) clearTimeout(t.timer);
    t.timer = undefined;
    t.users++;
    return t;
  }

  private detach(t: Transfer): void {
    t.users--;
    if (t.users > 0 || this.transfers.get(t.key) !== t) return;
    if (this.lingerMs <= 0) return this.drop(t);
    t.timer = setTimeout(() => this.drop(t), this.lingerMs);
    t.timer.unref();
  }

  private drop(t: Transfer): void {
    if (t.timer !== undefined) clearTimeout(t.timer);
    t.timer = undefined;
    if (this.transfers.get(t.key) === t) this.transfers.delete(t.key);
    for (const i of t.chunks.keys()) this.forget(t, i);
  }

  /** Chunk i from the cache (now the most recently used), or undefined. */
  private touch(t: Transfer, i: number): Buffer | undefined {
    const c = t.chunks.get(i);
    if (c === undefined) return undefined;
    const k = `${t.key}\0${i}`;
    const e = this.lru.get(k);
    if (e) {
      this.lru.delete(k);
      this.lru.set(k, e);
    }
    return c;
  }

  /** Frames chunk i (synchronously: no other stream can frame it meanwhile) and caches it. */
  private fill(t: Transfer, i: number, sources: SizedBlobSource[], start: FramePos): Buffer {
    let out = newFrameChunk(this.chunkBytes);
    const { length, next } = this.frame(sources, start, out);
    this.stats.framed++;
    // the last chunk of a list is usually short: keep only what it uses
    if (length < this.chunkBytes / 2) {
      const small = newFrameChunk(length);
      out.copy(small, 0, 0, length);
      out = small;
    }
    const chunk = sealFrameChunk(out, length);
    if (t.starts.length === i + 1) t.starts.push(next);
    if (this.transfers.get(t.key) === t) {
      t.chunks.set(i, chunk);
      this.lru.set(`${t.key}\0${i}`, { t, i, bytes: out.length });
      this.held += out.length;
      this.evict();
    }
    return chunk;
  }

  /**
   * Drops chunks until the cache is within maxBytes: first those no open stream will send again
   * (every reader is past them, or the transfer has none), then the one whose next reader is
   * furthest behind it. Streams read in order, so this keeps what is needed soonest: with
   * members waiting for their turn at chunk 0 while others stream, the head of the list stays
   * for them and the chunks just sent go (least-recently-used would drop the head first, and
   * every later wave would read the whole platform again).
   */
  private evict(): void {
    while (this.held > this.maxBytes) {
      let victim: { t: Transfer; i: number } | undefined;
      let far = -1;
      for (const e of this.lru.values()) {
        let nearest = -1; // the closest reader at or before chunk e.i
        for (const at of e.t.readers.values()) if (at <= e.i && at > nearest) nearest = at;
        const distance = nearest < 0 ? Number.POSITIVE_INFINITY : e.i - nearest;
        if (distance > far) {
          far = distance;
          victim = e;
        }
      }
      if (!victim) return;
      this.forget(victim.t, victim.i);
      this.stats.evicted++;
    }
  }

  private forget(t: Transfer, i: number): void {
    const k = `${t.key}\0${i}`;
    const e = this.lru.get(k);
    t.chunks.delete(i);
    if (!e) return;
    this.lru.delete(k);
    this.held -= e.bytes;
  }
}
