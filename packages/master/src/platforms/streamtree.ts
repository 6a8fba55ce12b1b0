/**
 * The streamed first sync on the master (Agent.StreamTree, capability 15). A verify of a tree
 * the master has not walked yet opens a `TreeFeed` for the servers that hold nothing of it and
 * walks the tree with the feed as its tap (WalkOptions.tap): every entry, with the bytes the walk
 * read and hashed, is packed into the record stream (shared sync/treestream.ts) as the walk finds
 * it, and each of those servers' StreamTree calls reads the same chunks — one read and one hash
 * per file on the master, for every member of a cluster. The walk waits while the slowest reader
 * is more than MAX_AHEAD_BYTES behind, and until every expected server has attached (or
 * declined, failed, or not come within ATTACH_MS): the content the servers say they hold is only
 * known then. A StreamTree call that finds no feed for it (it came late, or the master had walked
 * the tree already) is served from the tree's manifest, reading each file.
 */
import { fail, type Logger, type Manifest, type ManifestEntry, TreeStreamWriter, type WalkTap } from '@spoke/shared';

/** Bytes the walk may run ahead of its slowest reader (chunks are up to 1 MiB; a pause sends less). */
const MAX_AHEAD_BYTES = 8 * 1024 * 1024;
/** How long the walk waits for an expected server's StreamTree call. */
const ATTACH_MS = 60_000;
/** Content the walk reads ahead (copied) before its readers have all attached; then it waits. */
const EARLY_MAX_BYTES = 16 * 1024 * 1024;
/** Held content from which the walk shares its reads with the helper thread (their bytes are not sent). */
const HELPER_MIN_HELD = 1024;

interface Reader {
  cursor: number;
  wake: (() => void) | undefined;
  closed: boolean;
}

/** One walk of a tree, read by the StreamTree calls of the servers it was opened for. */
export class TreeFeed {
  /** The walk's tap (see WalkOptions.tap). */
  readonly tap: WalkTap;
  private readonly expected: Set<string>;
  private readonly readers = new Map<string, Reader>();
  private readonly haves = new Map<string, ReadonlySet<string>>();
  private writer: TreeStreamWriter | undefined;
  /** What the walk found before every reader had attached (content copied: the walk reuses its buffer). */
  private early: { e: ManifestEntry; content: Buffer | undefined }[] = [];
  private earlyBytes = 0;
  /** Content every reader holds (set when the writer starts). */
  private held: ReadonlySet<string> = new Set();
  private chunks: Buffer[] = [];
  /** The stream index of chunks[0]. */
  private base = 0;
  private state: 'open' | 'ended' | 'failed' = 'open';
  private error: Error | undefined;
  private walkWaiting: (() => void) | undefined;
  private readonly timer: NodeJS.Timeout;
  private finishing: Promise<void> | undefined;
  private settle: () => void = () => undefined;
  /** Resolves once the walk ended (either way): the tree's manifest is then loaded, or the walk failed. */
  readonly settled = new Promise<void>((resolve) => (this.settle = resolve));

  constructor(
    readonly tree: string,
    /** The tree's host path (files whose bytes the walk did not hand over are read from there). */
    private readonly root: string,
    servers: readonly string[],
    private readonly log: Logger,
    private readonly onDone: (f: TreeFeed) => void,
    attachMs = ATTACH_MS,
  ) {
    this.expected = new Set(servers);
    this.tap = {
      entry: (e, content) => {
        if (this.writer !== undefined) this.writer.entry(e, content, this.abs(e));
        else {
          this.early.push({ e, content: content === undefined ? undefined : Buffer.from(content) });
          this.earlyBytes += content?.length ?? 0;
        }
      },
      pace: () => this.pace(),
      // a tree most of whose content the servers hold (a second platform): its bytes are not sent
      helper: () => this.held.size >= HELPER_MIN_HELD,
    };
    this.timer = setTimeout(() => {
      for (const s of this.expected) {
        if (!this.readers.has(s)) {
          this.log.warn({ tree, server: s }, 'server did not ask for the streamed tree in time; the walk goes on without it');
          this.expected.delete(s);
        }
      }
      this.poke();
    }, attachMs);
    this.timer.unref();
  }

  /** True while `server` may still attach (it was expected and has not attached, declined or timed out). */
  expects(server: string): boolean {
    return this.expected.has(server) && !this.readers.has(server);
  }

  /**
   * The chunks of the stream for `server`, from the first; `have` is the content it holds
   * (announced without content when every reader holds it). Undefined when this feed does not
   * expect the server.
   */
  attach(server: string, have: ReadonlySet<string>): AsyncIterable<Buffer> | undefined {
    if (!this.expects(server) || this.state === 'failed') return undefined;
    const r: Reader = { cursor: this.base, wake: undefined, closed: false };
    this.readers.set(server, r);
    this.haves.set(server, have);
    this.poke();
    return this.read(server, r);
  }

  /** `server` will not read (its converge failed, it went to GetManifest, its call was cancelled). */
  decline(server: string): void {
    this.expected.delete(server);
    const r = this.readers.get(server);
    if (r !== undefined) this.close(server, r);
    this.poke();
  }

  /** The walk ended with this manifest: the end record, once every reader could start. */
  end(m: Manifest): Promise<void> {
    this.settle();
    this.finishing ??= (async () => {
      if (this.state !== 'open') return;
      await this.ready();
      (this.writer as TreeStreamWriter).end(m.rootHash, m.entries.length);
      this.state = 'ended';
      this.wakeAll();
      this.maybeDone();
    })();
    return this.finishing;
  }

  /** The walk failed: every reader gets the error. */
  fail(err: Error): void {
    this.settle();
    if (this.state !== 'open') return;
    this.state = 'failed';
    this.error = err;
    clearTimeout(this.timer);
    this.chunks = [];
    this.early = [];
    this.wakeAll();
    this.maybeDone();
  }

  private abs(e: ManifestEntry): string {
    return `${this.root}/${e.path}`;
  }

  private allAttached(): boolean {
    for (const s of this.expected) if (!this.readers.has(s)) return false;
    return true;
  }

  /** Waits until every expected reader attached, then starts the writer. */
  private async ready(): Promise<void> {
    while (this.writer === undefined && !this.allAttached()) await new Promise<void>((resolve) => (this.walkWaiting = resolve));
    if (this.writer !== undefined) return;
    clearTimeout(this.timer);
    // content every reader holds is left out of the stream (each copies it from its own disk)
    const haves = [...this.readers.keys()].map((s) => this.haves.get(s) ?? new Set<string>());
    const held = new Set<string>();
    if (haves.length > 0) {
      const [first, ...rest] = haves.sort((a, b) => a.size - b.size);
      for (const h of first ?? []) if (rest.every((x) => x.has(h))) held.add(h);
    }
    this.held = held;
    const w = new TreeStreamWriter((chunk) => this.push(chunk), held);
    for (const { e, content } of this.early) w.entry(e, content, this.abs(e));
    this.early = [];
    this.writer = w;
  }

  private pace(): Promise<void> | undefined {
    if (this.writer === undefined) {
      // read ahead while the readers come (an agent builds its index of held content first)
      if (this.earlyBytes < EARLY_MAX_BYTES && !this.allAttached()) return undefined;
      return this.ready().then(() => this.paced());
    }
    // what the walk found since the last pause goes out now (records of held files are small:
    // a full chunk would hold thousands of them)
    this.writer.flush();
    return this.paced();
  }

  private paced(): Promise<void> | undefined {
    if (this.lag() <= MAX_AHEAD_BYTES) return undefined;
    return (async () => {
      while (this.lag() > MAX_AHEAD_BYTES) await new Promise<void>((resolve) => (this.walkWaiting = resolve));
    })();
  }

  /** Bytes between the newest chunk and the slowest live reader. */
  private lag(): number {
    let slowest = this.base + this.chunks.length;
    for (const r of this.readers.values()) if (!r.closed) slowest = Math.min(slowest, r.cursor);
    let bytes = 0;
    for (let i = slowest - this.base; i < this.chunks.length; i++) bytes += (this.chunks[i] as Buffer).length;
    return bytes;
  }

  private push(chunk: Buffer): void {
    if (this.readers.size === 0) return; // nobody reads: the walk goes on for the manifest alone
    this.chunks.push(chunk);
    this.wakeAll();
  }

  private async *read(server: string, r: Reader): AsyncGenerator<Buffer> {
    try {
      for (;;) {
        if (r.closed) return;
        const i = r.cursor - this.base;
        const chunk = this.chunks[i];
        if (chunk !== undefined) {
          r.cursor++;
          this.trim();
          this.poke();
          yield chunk;
          continue;
        }
        if (this.state === 'failed') throw this.error ?? fail('INTERNAL', 'the walk failed');
        if (this.state === 'ended') return;
        await new Promise<void>((resolve) => (r.wake = resolve));
        r.wake = undefined;
      }
    } finally {
      this.close(server, r);
    }
  }

  private close(server: string, r: Reader): void {
    if (r.closed) return;
    r.closed = true;
    this.readers.delete(server);
    this.expected.delete(server);
    r.wake?.();
    this.trim();
    this.poke();
    this.maybeDone();
  }

  /** Drops the chunks every live reader has taken. */
  private trim(): void {
    let min = this.base + this.chunks.length;
    for (const r of this.readers.values()) min = Math.min(min, r.cursor);
    if (min > this.base) {
      this.chunks.splice(0, min - this.base);
      this.base = min;
    }
  }

  private poke(): void {
    const w = this.walkWaiting;
    this.walkWaiting = undefined;
    w?.();
  }

  private wakeAll(): void {
    for (const r of this.readers.values()) r.wake?.();
  }

  private maybeDone(): void {
    if (this.state !== 'open' && this.readers.size === 0) {
      clearTimeout(this.timer);
      this.onDone(this);
    }
  }
}

/** The open feeds, by tree (see TreeFeed). */
export class TreeFeeds {
  private readonly feeds = new Map<string, TreeFeed>();
  private readonly log: Logger;
  private readonly attachMs: number;

  constructor(deps: { log: Logger; attachMs?: number }) {
    this.log = deps.log;
    this.attachMs = deps.attachMs ?? ATTACH_MS;
  }

  /** A feed for a walk of `tree` (host path `root`) that `servers` will read. */
  open(tree: string, root: string, servers: readonly string[]): TreeFeed {
    this.feeds.get(tree)?.fail(fail('TREE_CHANGED', `a newer walk of ${tree} started`));
    const f = new TreeFeed(
      tree,
      root,
      servers,
      this.log,
      (done) => {
        if (this.feeds.get(tree) === done) this.feeds.delete(tree);
      },
      this.attachMs,
    );
    this.feeds.set(tree, f);
    return f;
  }

  /** The feed of `tree` when it expects `server`. */
  expecting(tree: string, server: string): TreeFeed | undefined {
    const f = this.feeds.get(tree);
    return f?.expects(server) ? f : undefined;
  }

  /** Resolves once the walk of `tree` under way (if any) ended, either way. */
  walked(tree: string): Promise<void> {
    return this.feeds.get(tree)?.settled ?? Promise.resolve();
  }

  /** `server` will not read the feed of `tree` (if any). */
  decline(tree: string, server: string): void {
    this.feeds.get(tree)?.decline(server);
  }
}

/**
 * Serves one StreamTree call: the feed's chunks when a walk of the tree expects this server,
 * else the tree's manifest with each file read now. `send` resolves when the chunk may be
 * followed by the next (the call's flow control).
 * @throws SpokeError TREE_UNREADABLE (a file that cannot be read), whatever the walk failed with
 */
export async function serveTree(
  deps: { feeds: TreeFeeds; manifest: () => Promise<{ manifest: Manifest; root: string }> },
  req: { tree: string; server: string; have: ReadonlySet<string>; send: (chunk: Buffer) => Promise<void>; cancelled: () => boolean },
): Promise<void> {
  const feed = deps.feeds.expecting(req.tree, req.server);
  const chunks = feed?.attach(req.server, req.have);
  if (chunks !== undefined) {
    for await (const chunk of chunks) {
      if (req.cancelled()) return;
      await req.send(chunk);
    }
    return;
  }
  const { manifest, root } = await deps.manifest();
  const out: Buffer[] = [];
  const w = new TreeStreamWriter((chunk) => out.push(chunk), req.have);
  const drain = async () => {
    while (out.length > 0) {
      if (req.cancelled()) return false;
      await req.send(out.shift() as Buffer);
    }
    return true;
  };
  // sorted by path: every directory comes before what is in it
  for (const e of manifest.entries) {
    w.entry(e, undefined, `${root}/${e.path}`);
    if (out.length > 0 && !(await drain())) return;
  }
  w.end(manifest.rootHash, manifest.entries.length);
  await drain();
}

/**
 * The hashes of a StreamTreeRequest's `have` (32-byte digests back to back).
 * @throws SpokeError INVALID_ARGUMENT when its length is not a multiple of 32
 */
export function haveSet(raw: Uint8Array): Set<string> {
  if (raw.length % 32 !== 0) throw fail('INVALID_ARGUMENT', `a StreamTree request's held content is ${raw.length} bytes, not a multiple of 32`);
  const b = Buffer.from(raw.buffer, raw.byteOffset, raw.byteLength);
  const out = new Set<string>();
  for (let i = 0; i < b.length; i += 32) out.add(b.toString('hex', i, i + 32));
  return out;
}
