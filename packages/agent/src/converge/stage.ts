/**
 * Staging (step 3 of converge.ts): every blob a converge needs, copied from this tree or another
 * tree on this host (verified by hashing the copy, part of it on a helper thread), else fetched
 * from the master in one request (verified by size, and by hash unless the fetcher verifies);
 * and the verified blobs a failed attempt keeps for the next one.
 */
import * as fs from 'node:fs';
import { join } from 'node:path';
import { fail, isHash, type Manifest, type ManifestDiff, type ManifestEntry } from '@spoke/shared';
import { copyVerifiedSync, hashFileSync, lstatOrNull, removeAll } from './fsutil.js';
import { cancelled } from './failures.js';
import type { Stepper } from './journal.js';
import { blobPath } from './ops.js';
import type { Lookup, Needs } from './plan.js';
import type { ConvergeOptions } from './types.js';

/** Below this many bytes to stage, only the files a converge removes or replaces are looked in. */
const LOCAL_SCAN_MIN_BYTES = 1024 * 1024;
/** Fewer copies than this are not shared with the helper thread. */
const HELPER_MIN_COPIES = 64;
/** Copies per chunk when a helper thread shares them (see stageBlobs). */
const COPY_CHUNK = 256;
/** A `reuse` progress report every this many files reused. */
const REUSE_PROGRESS_EVERY = 1024;

/** What a converge fetched and reused (ConvergeResult's counts). */
export interface Counters {
  filesFetched: number;
  bytesFetched: number;
  filesReused: number;
  bytesReused: number;
}

/**
 * Puts every needed blob in `<staging>/blobs/<hash>`: copies of content already on this host
 * (verified by hashing the copy), then one fetch for the rest (verified by size, and by hash
 * unless the fetcher verifies).
 */
export async function stageBlobs(
  o: ConvergeOptions,
  root: string,
  base: { manifest: Manifest; lookup: Lookup; diff: ManifestDiff },
  needs: Needs,
  staging: string,
  counters: Counters,
  stepper: Stepper,
  partial?: string,
  /** Where a blob's first use lives in a new tree being built: copies from this host go there. */
  placeAt?: (hash: string) => string,
  /** Filled with hash → path for the blobs placed so. */
  placed?: Map<string, string>,
  /** The mode a blob placed so is created with (see creationMode). */
  modeAt?: (hash: string) => number,
  /** Filled with the placed blobs known to be created with modeAt(hash). */
  withMode?: Set<string>,
): Promise<void> {
  if (needs.size === 0) return;
  // Blobs an earlier failed attempt already fetched: verified on arrival then, checked by size
  // now, and hashed again below with everything else when the fetcher does not verify.
  let resumed = 0;
  if (partial !== undefined && fs.existsSync(partial)) {
    for (const [hash, need] of needs) {
      const src = join(partial, hash);
      const st = lstatOrNull(src);
      if (st !== undefined && st.isFile() && st.size === need.size && hashFileSync(src)?.hash === hash) {
        fs.renameSync(src, join(staging, 'blobs', hash));
        resumed++;
      }
    }
    removeAll(partial);
  }
  // Content this tree holds already: for a small fetch only what the converge removes or
  // replaces (moved and renamed files), else every file (a walk of 20,000 entries costs ~5 ms).
  const local = new Map<string, string>();
  const consider = (e: ManifestEntry | undefined) => {
    if (e !== undefined && e.type === 'file' && needs.has(e.hash) && !local.has(e.hash)) local.set(e.hash, e.path);
  };
  let neededBytes = 0;
  for (const n of needs.values()) neededBytes += n.size;
  if (neededBytes >= LOCAL_SCAN_MIN_BYTES) for (const e of base.manifest.entries) consider(e);
  else {
    for (const e of base.diff.removed) consider(e);
    for (const t of base.diff.typeChanged) consider(t.from);
    for (const e of base.diff.changed) consider(base.lookup(e.path));
  }
  const blobs = join(staging, 'blobs');
  let seq = 0;
  // Copied and hashed in one pass; only a copy that holds the wanted content is kept. A copy
  // goes where the blob is used in a new tree (with its creation mode), else to a temp name in
  // blobs/, renamed to its hash once verified.
  const copyTarget = (hash: string): { dest: string; mode: number } => {
    const at = placeAt?.(hash);
    return at === undefined ? { dest: join(blobs, `.copy-${seq++}`), mode: 0o600 } : { dest: at, mode: modeAt?.(hash) ?? 0o600 };
  };
  const keepCopy = (hash: string, dest: string) => {
    if (placeAt === undefined) fs.renameSync(dest, join(blobs, hash));
    else {
      placed?.set(hash, dest);
      if (modeAt) withMode?.add(hash);
    }
  };
  const copyIn = (src: string, hash: string, size: number): boolean => {
    const t = copyTarget(hash);
    if (!copyVerifiedSync(src, t.dest, hash, size, t.mode)) return false;
    keepCopy(hash, t.dest);
    return true;
  };
  let needBytes = 0;
  for (const need of needs.values()) needBytes += need.size;
  const reused = (hash: string, size: number) => {
    counters.filesReused++;
    counters.bytesReused += size;
    if (stepper.active) stepper.step(`stage ${hash.slice(0, 12)}`);
    // a second platform copies ~20,000 files here: say so every REUSE_PROGRESS_EVERY
    if (counters.filesReused % REUSE_PROGRESS_EVERY === 0) {
      o.onProgress?.({ phase: 'reuse', files: counters.filesReused, filesTotal: needs.size, bytes: counters.bytesReused, bytesTotal: needBytes });
    }
  };
  // First what this tree holds already (moved or copied files), then other trees.
  const elsewhere: [string, number][] = [];
  let elsewhereBytes = 0;
  for (const [hash, need] of needs) {
    if (resumed > 0 && fs.existsSync(join(blobs, hash))) {
      // counted as reused: it did not cross the wire this time
      counters.filesReused++;
      counters.bytesReused += need.size;
      continue;
    }
    const rel = local.get(hash);
    if (rel !== undefined && copyIn(join(root, rel), hash, need.size)) reused(hash, need.size);
    else {
      elsewhere.push([hash, need.size]);
      elsewhereBytes += need.size;
    }
  }
  const toFetch: string[] = [];
  let bytesTotal = 0;
  const lookElsewhere = o.reuse !== undefined && elsewhereBytes >= (o.reuseMinBytes ?? 0);
  const fetchIt = (hash: string, size: number) => {
    toFetch.push(hash);
    bytesTotal += size;
  };
  const copies: [hash: string, size: number, src: string][] = [];
  for (const [hash, size] of elsewhere) {
    const src = lookElsewhere ? o.reuse?.(hash) : undefined;
    if (src === undefined) fetchIt(hash, size);
    else copies.push([hash, size, src]);
  }
  // With a helper thread, both threads take chunks of COPY_CHUNK copies from the list until it
  // is empty (so neither waits long for the other: the helper is slower at first); what the
  // helper hands back undone is copied here, exactly as without it.
  let next = 0;
  let end = copies.length;
  const take = () => {
    const from = next;
    next = Math.min(end, next + COPY_CHUNK);
    return copies.slice(from, next);
  };
  // the helper works from the end, in other directories than this thread (a directory takes one
  // file creation at a time)
  const takeLast = () => {
    const to = end;
    end = Math.max(next, end - COPY_CHUNK);
    return copies.slice(end, to);
  };
  const helper = copies.length >= HELPER_MIN_COPIES ? o.helper : undefined;
  const helped = (async () => {
    if (helper === undefined) return;
    for (let chunk = takeLast(); chunk.length > 0; chunk = takeLast()) {
      const targets = chunk.map(([hash]) => copyTarget(hash));
      const done = await helper.copy(chunk.map(([hash, size, src], k) => [src, targets[k]?.dest as string, hash, size, targets[k]?.mode as number]));
      for (let k = 0; k < chunk.length; k++) {
        const [hash, size, src] = chunk[k] as [string, number, string];
        const d = done[k];
        if (d === true) {
          keepCopy(hash, targets[k]?.dest as string);
          reused(hash, size);
        } else if (d === undefined && copyIn(src, hash, size)) reused(hash, size);
        else fetchIt(hash, size);
      }
    }
  })();
  helped.catch(() => undefined); // awaited (and thrown) below, after this thread's share
  for (let chunk = take(); chunk.length > 0; chunk = take()) {
    for (const [hash, size, src] of chunk) {
      if (copyIn(src, hash, size)) reused(hash, size);
      else fetchIt(hash, size);
    }
    if (helper !== undefined) await new Promise((resolve) => setImmediate(resolve)); // the helper's answers, its next chunk
  }
  await helped;
  if (toFetch.length === 0) return;
  cancelled(o.signal);
  let bytes = 0;
  let files = 0;
  const progress = (done: number) => o.onProgress?.({ phase: 'fetch', files: done, filesTotal: toFetch.length, bytes, bytesTotal });
  progress(0);
  const report = await o.fetcher.fetch(
    toFetch,
    blobs,
    (n, f = 0) => {
      bytes += n;
      files += f;
      if (stepper.active) stepper.step('fetch');
      progress(Math.min(files, toFetch.length)); // a retry's blobs count again
    },
    o.signal,
    placeAt,
    placeAt === undefined ? undefined : modeAt,
  );
  cancelled(o.signal);
  const verify = o.fetcher.verifies !== true;
  const reported = new Map<string, { size: number; path: string; mode?: number }>();
  if (!verify && report) for (const r of report) reported.set(r.hash, r);
  for (const hash of toFetch) {
    const size = (needs.get(hash) as { size: number }).size;
    const at = placeAt?.(hash);
    const r = reported.get(hash);
    let path: string;
    let got: number | undefined;
    if (r !== undefined && r.path === at && r.mode !== undefined && r.mode === modeAt?.(hash)) withMode?.add(hash);
    if (r !== undefined) {
      path = r.path;
      got = r.size;
    } else {
      // not reported (a fetcher without a report, or a blob kept from a failed attempt): on disk
      const atSt = at === undefined ? undefined : lstatOrNull(at);
      path = atSt === undefined ? blobPath(staging, hash) : (at as string);
      const st = atSt ?? lstatOrNull(path);
      got = st?.isFile() ? st.size : undefined;
    }
    if (got === undefined) {
      throw fail('BLOB_HASH_MISMATCH', `blob ${hash.slice(0, 12)}… did not arrive`, { hash });
    }
    if (got !== size) {
      throw fail('BLOB_HASH_MISMATCH', `blob ${hash.slice(0, 12)}… arrived with ${got} bytes, expected ${size}`, { hash });
    }
    if (verify) {
      const got = hashFileSync(path);
      if (got?.hash !== hash) {
        throw fail('BLOB_HASH_MISMATCH', `blob ${hash.slice(0, 12)}… arrived with content ${got?.hash.slice(0, 12) ?? '?'}…`, {
          expected: hash,
          actual: got?.hash,
        });
      }
    }
    if (at !== undefined && path === at) placed?.set(hash, path);
  }
  counters.filesFetched = toFetch.length;
  counters.bytesFetched = bytesTotal;
  progress(toFetch.length);
}

/**
 * Moves the verified blobs of a failed attempt aside for the next one (best effort): those in
 * `<staging>/blobs`, and those an initial build had put in place (`placed`; content copied from
 * this host or fetched, checked either way).
 */
export function keepPartial(staging: string, partial: string, placed: ReadonlyMap<string, string>): void {
  try {
    const blobs = join(staging, 'blobs');
    const names = fs.existsSync(blobs) ? fs.readdirSync(blobs).filter((n) => isHash(n)) : [];
    if (names.length === 0 && placed.size === 0) return;
    fs.mkdirSync(partial, { recursive: true, mode: 0o700 });
    for (const n of names) fs.renameSync(join(blobs, n), join(partial, n));
    for (const [hash, at] of placed) if (fs.existsSync(at)) fs.renameSync(at, join(partial, hash));
  } catch {
    // keeping them is an optimisation; losing them only costs a re-fetch
  }
}
