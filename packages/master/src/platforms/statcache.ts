/**
 * The master's file-hash cache: the `file_hashes` table, keyed by host path with the inode, size,
 * mtime and ctime a hash was read at, so a restart re-reads only the files that changed. Writes
 * are batched and put off while a converge serves a tree.
 */
import type { StatCache, StatCacheRecord } from '@spoke/shared';
import type { Statement } from 'better-sqlite3';
import type { Db } from '../namespace/store.js';

/**
 * Rows written at once when the pending records reach this many (a walk of a very large tree).
 * Below it, a walk's records wait for flushSoon.
 */
const FLUSH_AT = 50_000;
/** How long after a walk its hash records are written (see flushSoon). */
const FLUSH_DELAY_MS = 3_000;
/** While `busy`, the write is put off by this much at a time, up to FLUSH_MAX_DELAY_MS. */
const FLUSH_RETRY_MS = 500;
const FLUSH_MAX_DELAY_MS = 60_000;

/**
 * Hash cache over the `file_hashes` table. Writes are batched: records wait in memory (where
 * get() sees them) and are written in one transaction, on flush() or, after a walk, a few
 * seconds later (flushSoon): writing 20,000 rows blocks the event loop ~100–400 ms, which then
 * delayed the first converge of the tree it was walked for. Losing unwritten records (a crash)
 * costs a re-read of those files, nothing else.
 */
export class SqliteStatCache implements StatCache {
  private readonly db: Db;
  private pending = new Map<string, StatCacheRecord>();
  private timer: NodeJS.Timeout | undefined;
  private readonly select: ReturnType<Db['prepare']>;
  private readonly anyUnder: Statement<[string, string]>;

  /**
   * @param busy true while a converge is serving a tree: the deferred write waits for it to end
   *   (it blocks the event loop ~100 ms per 20,000 rows, which then stalled the blob stream of a
   *   first sync that lasted longer than FLUSH_DELAY_MS), at most FLUSH_MAX_DELAY_MS after the walk
   */
  constructor(
    db: Db,
    private readonly busy: () => boolean = () => false,
  ) {
    this.db = db;
    // Prepared once: a walk looks up every file.
    this.select = db.prepare('SELECT ino, size, mtime_ms, ctime_ms, hash FROM file_hashes WHERE path = ?');
    this.anyUnder = db.prepare<[string, string]>('SELECT 1 AS one FROM file_hashes WHERE path >= ? AND path < ? LIMIT 1');
  }

  holdsNothingUnder(absDir: string): boolean {
    const base = absDir.endsWith('/') ? absDir.slice(0, -1) : absDir;
    // every path below base starts with `base/`; '0' is the character after '/'
    if (this.anyUnder.get(`${base}/`, `${base}0`) !== undefined) return false;
    for (const p of this.pending.keys()) if (p.startsWith(`${base}/`)) return false;
    return true;
  }

  get(absPath: string): StatCacheRecord | undefined {
    const mine = this.pending.get(absPath);
    if (mine !== undefined) return mine;
    const r = this.select.get(absPath) as { ino: number; size: number; mtime_ms: number; ctime_ms: number; hash: string } | undefined;
    return r ? { ino: r.ino, size: r.size, mtimeMs: r.mtime_ms, ctimeMs: r.ctime_ms, hash: r.hash } : undefined;
  }

  set(absPath: string, rec: StatCacheRecord): void {
    this.pending.set(absPath, rec);
    if (this.pending.size >= FLUSH_AT) this.flush();
  }

  /**
   * Writes the pending records FLUSH_DELAY_MS from now, or once nothing is `busy` after that
   * (once; flush() and close() write them sooner).
   */
  flushSoon(): void {
    if (this.timer !== undefined || this.pending.size === 0) return;
    const until = Date.now() + FLUSH_MAX_DELAY_MS;
    const tick = () => {
      if (this.busy() && Date.now() < until) {
        this.timer = setTimeout(tick, FLUSH_RETRY_MS);
        this.timer.unref();
        return;
      }
      this.flush();
    };
    this.timer = setTimeout(tick, FLUSH_DELAY_MS);
    this.timer.unref();
  }

  /** Writes the batched records. */
  flush(): void {
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
    if (this.pending.size === 0 || !this.db.open) return;
    const rows = this.pending;
    this.pending = new Map();
    const up = this.db.prepare('INSERT OR REPLACE INTO file_hashes (path, ino, size, mtime_ms, ctime_ms, hash) VALUES (?, ?, ?, ?, ?, ?)');
    this.db.transaction(() => {
      for (const [p, r] of rows) up.run(p, r.ino, r.size, r.mtimeMs, r.ctimeMs, r.hash);
    })();
    // Checkpoint the WAL now, while nothing waits (this runs seconds after a walk): left to
    // SQLite's auto-checkpoint, the next commit past 1,000 WAL pages — often an operator's
    // `platform add` — paid its fsync, 60–170 ms measured when the disk held a fresh tree's
    // dirty data (ext4 writes that out first).
    this.db.pragma('wal_checkpoint(PASSIVE)');
  }
}
