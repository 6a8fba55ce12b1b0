/**
 * The walk's reads (phase 2 of walkTree): a batch of files hashed synchronously while that is
 * fast, on the thread pool when a slice turns slow, with a share on the helper thread; and how a
 * hashed file becomes an entry (the stat cache consulted and filled, the previous walk's equal
 * entry reused, the tap told).
 */
import type { Stats } from 'node:fs';
import { join } from 'node:path';
import { hashPath, hashPathSync, lstatSyncOrUndefined, READ_CHUNK, SYNC_MAX_BYTES } from './filehash.js';
import type { FileHelper, HashItem } from './fileworker.js';
import { type ManifestEntry, MODE_MASK } from './manifest.js';
import { forEachLimit } from './pool.js';
import { type FileFacts, type HashTask, SLICE_MS, type WalkState } from './walktypes.js';

// Files below this size are read into a buffer of their own size, not a pooled READ_CHUNK one.
const SMALL_FILE = 64 * 1024;
/**
 * A synchronous slice is "slow" (the files are not in the page cache) when it took longer than
 * this per file plus this per byte: a page-cache read of a small file costs ~25 µs here, a read
 * that waits on a disk 100 µs and more.
 */
const SLOW_FILE_MS = 0.12;
const SLOW_BYTE_MS = 1 / 300_000;

/**
 * Hashes one batch of files. Files the page cache holds are read fastest with one synchronous
 * call each: measured on 20,000 files / 85 MB, warm, open/fstat/read/close in a loop took
 * ~0.55 s, the same through the thread pool 16 at once 1.0–2.3 s (a hand-off per call costs
 * more than the call). A cold disk is the opposite: one read at a time waits on every seek
 * (1 → 4.2 s, 16 at once → 1.4 s). So small files are read synchronously, in slices of ~10 ms
 * with a yield between them, for as long as the slices stay fast; a slow slice turns the rest
 * of its batch (HASH_BATCH files) over to `concurrency` parallel reads.
 */
export async function hashBatch(state: WalkState, batch: HashTask[], concurrency: number, allowSync: boolean): Promise<void> {
  let async: HashTask[] = [];
  if (!allowSync) async = batch;
  else {
    // The helper thread takes a share of the batch (files known to be large excepted), and
    // works on it while this thread goes on with its share and the next batch: at most one
    // batch waits for it. The share grows while the helper is done before this thread needs it
    // again, and shrinks while this thread waits (as it does while the thread starts, ~70 ms).
    if (state.helper !== undefined && batch.length >= HELPER_MIN_BATCH && (state.tap === undefined || state.tap.helper?.() === true)) {
      if (state.helping !== undefined) {
        state.share = state.helperDone ? Math.min(0.8, state.share + 0.05) : Math.max(0.2, state.share - 0.05);
        await state.helping;
      }
      state.helperDone = false;
      const cut = Math.round(batch.length * (1 - state.share));
      const theirs = batch.slice(cut).filter((t) => t.st === undefined || t.st.size <= SYNC_MAX_BYTES);
      for (const t of batch.slice(cut)) if (t.st !== undefined && t.st.size > SYNC_MAX_BYTES) async.push(t);
      batch = batch.slice(0, cut);
      state.helping = helpedInto(state, state.helper, theirs, concurrency);
      state.helping.catch(() => undefined); // awaited (and thrown) with the next batch or at the end
    }
    let i = 0;
    while (i < batch.length) {
      const t0 = performance.now();
      let files = 0;
      let bytes = 0;
      while (i < batch.length && performance.now() - t0 < SLICE_MS) {
        const t = batch[i++] as HashTask;
        if (t.st !== undefined && t.st.size > SYNC_MAX_BYTES) {
          async.push(t);
          continue;
        }
        const n = hashSyncInto(state, t, async);
        if (n !== undefined) {
          files++;
          bytes += n;
        }
      }
      const ms = performance.now() - t0;
      // slow: the rest of this batch goes to the thread pool; the next batch tries again (one
      // slow slice may only mean this process was descheduled). Not with a tap: what the thread
      // pool reads is not handed over, so a streamed first sync would read those files twice (and
      // on a busy CPU every slice looks slow).
      if (files > 0 && state.tap === undefined && ms > files * SLOW_FILE_MS + bytes * SLOW_BYTE_MS) {
        async.push(...batch.slice(i));
        break;
      }
      if (i < batch.length) await (state.tap?.pace?.() ?? new Promise((resolve) => setImmediate(resolve)));
    }
  }
  if (async.length > 0) await forEachLimit(async, concurrency, (t) => hashInto(state, t));
}

/** Batches smaller than this are not split with the helper thread (a round trip costs ~0.1 ms). */
const HELPER_MIN_BATCH = 64;

/**
 * Hashes `tasks` on the helper thread; what it hands back undone (gone, not a regular file,
 * larger than SYNC_MAX_BYTES, an error) is done here exactly as without a helper.
 */
async function helpedInto(state: WalkState, helper: FileHelper, tasks: HashTask[], concurrency: number): Promise<void> {
  const later: HashTask[] = [];
  const items: HashItem[] = tasks.map((t) => [join(state.root, t.rel), t.st?.size ?? -1]);
  const done = await helper.hash(items, SYNC_MAX_BYTES);
  for (let k = 0; k < tasks.length; k++) {
    const t = tasks[k] as HashTask;
    const d = done[k];
    if (d === undefined) {
      hashSyncInto(state, t, later);
      continue;
    }
    add(state, recordHash(state, (items[k] as HashItem)[0], t.rel, t.st ?? d, { hash: d.hash, size: d.size, stat: d }));
  }
  if (later.length > 0) await forEachLimit(later, concurrency, (t) => hashInto(state, t));
  state.helperDone = true;
}

/**
 * Hashes one file synchronously; returns the bytes read, or undefined when it was handed to
 * `later` instead (found larger than SYNC_MAX_BYTES once opened) or vanished.
 */
function hashSyncInto(state: WalkState, t: HashTask, later: HashTask[]): number | undefined {
  const abs = join(state.root, t.rel);
  const buf = state.tapBuf ?? state.buffers.pop() ?? Buffer.allocUnsafe(READ_CHUNK);
  let got;
  try {
    got = hashPathSync(abs, t.st, buf, state.cache !== undefined);
  } finally {
    if (buf !== state.tapBuf) state.buffers.push(buf);
  }
  if (got !== undefined && 'large' in got) {
    later.push({ rel: t.rel, st: got.large });
    return undefined;
  }
  const st = t.st ?? got?.stat;
  if (got === undefined || st === undefined) {
    state.skipped.push({ path: t.rel, reason: 'vanished' });
    return undefined;
  }
  add(state, recordHash(state, abs, t.rel, st, got), got.whole ? buf.subarray(0, got.size) : undefined);
  return got.size;
}

async function hashInto(state: WalkState, t: HashTask): Promise<void> {
  const abs = join(state.root, t.rel);
  // listed as a regular file, not lstat()ed (see visit): looked at now
  const st = t.st ?? lstatSyncOrUndefined(abs);
  const entry = st?.isFile() ? await hashEntry(abs, t.rel, st, state) : undefined;
  if (entry === undefined) state.skipped.push({ path: t.rel, reason: 'vanished' });
  else add(state, entry);
}

/** Records an entry, or the equal one from `previous` (see WalkOptions.previous); tells the tap. */
export function add(state: WalkState, e: ManifestEntry, content?: Buffer): void {
  const old = state.previous?.get(e.path);
  const same =
    old !== undefined &&
    old.path === e.path &&
    old.type === e.type &&
    old.mode === e.mode &&
    old.size === e.size &&
    old.hash === e.hash &&
    old.target === e.target;
  const entry = same ? old : e;
  state.entries.push(entry);
  state.tap?.entry(entry, content);
}

/** The entry from the stat cache, when ino/size/mtime/ctime all still match. */
export function cachedEntry(
  state: Pick<WalkState, 'cache' | 'cacheHits'> & { lookups?: boolean },
  abs: string,
  rel: string,
  st: Stats,
): ManifestEntry | undefined {
  const hit = state.lookups === false ? undefined : state.cache?.get(abs);
  if (!hit || hit.ino !== st.ino || hit.size !== st.size || hit.mtimeMs !== st.mtimeMs || hit.ctimeMs !== st.ctimeMs) {
    return undefined;
  }
  state.cacheHits++;
  return { path: rel, type: 'file', mode: st.mode & MODE_MASK, size: hit.size, hash: hit.hash };
}

/** Reads and hashes a file, and records the hash in the stat cache when that is safe. */
export async function hashEntry(
  abs: string,
  rel: string,
  st: Stats,
  state: Pick<WalkState, 'cache' | 'racyMs' | 'hashedBytes' | 'buffers'>,
): Promise<ManifestEntry | undefined> {
  const cache = state.cache;
  // A small file gets a buffer of its size (from Node's shared pool under 4 KiB): a READ_CHUNK
  // buffer for each file re-read after an edit made the master collect ~27 ms of garbage per
  // 100 changed files.
  const pooled = st.size >= SMALL_FILE ? (state.buffers.pop() ?? Buffer.allocUnsafe(READ_CHUNK)) : undefined;
  const buf = pooled ?? Buffer.allocUnsafe(Math.max(st.size, 1));
  let got;
  try {
    got = await hashPath(abs, st.size, buf, cache !== undefined);
  } finally {
    if (pooled !== undefined) state.buffers.push(pooled);
  }
  if (got === undefined) return undefined;
  return recordHash(state, abs, rel, st, got);
}

/** The entry for a file just hashed; records the hash in the stat cache when that is safe. */
function recordHash(
  state: Pick<WalkState, 'cache' | 'racyMs' | 'hashedBytes'>,
  abs: string,
  rel: string,
  st: FileFacts,
  got: { hash: string; size: number; stat: FileFacts | undefined },
): ManifestEntry {
  const cache = state.cache;
  state.hashedBytes += got.size;
  const f = got.stat;
  // Cache only what provably belongs together: the file we opened is the one lstat saw, it was
  // read whole, and it has not been touched for racyMs.
  const sameFile = f !== undefined && f.ino === st.ino && f.size === got.size && f.mtimeMs === st.mtimeMs;
  if (cache && sameFile && Date.now() - Math.max(f.mtimeMs, f.ctimeMs) >= state.racyMs) {
    cache.set(abs, { ino: f.ino, size: got.size, mtimeMs: f.mtimeMs, ctimeMs: f.ctimeMs, hash: got.hash });
  }
  return { path: rel, type: 'file', mode: st.mode & MODE_MASK, size: got.size, hash: got.hash };
}
