/**
 * The agent's per-tree state: `<stateDir>/trees/<sha256(treeKey)>/`
 * - `head.json`        {v, treeKey, hostRoot, rootHash, excludes, drift}: the committed root hash; written
 *                      last (atomic) by a converge, so it is the commit point. `drift`
 *                      is set by observe when the tree no longer matches, so the next converge
 *                      re-walks instead of trusting the committed manifest.
 * - `manifest-<root>.json` the committed manifest: whole (tuples, see encodeManifest), or as the
 *                      change from an earlier manifest file of the tree (`base`, see encodeDelta),
 *                      so a small converge of a large tree writes a small file. A chain of deltas
 *                      ends at a whole manifest and is at most MAX_CHAIN long; every file of the
 *                      committed chain is kept. Written before the journal that refers to
 *                      it, so a head never names a missing one.
 * - `journal.json`     the transaction in flight (see journal.ts).
 * - `staging.json`     {path}: the staging dir of a converge in progress, for clean-up after a
 *                      crash before the journal was committed.
 * - `stat.json`        observe's stat cache (rel path → ino, size, mtime, ctime, hash); a cache only,
 *                      written without fsync, ignored when unreadable.
 * Parsed manifests and stat caches are memoised per tree, so a long-running agent reads each once.
 * Nothing here is fsynced: a machine that went down while the agent ran is found at the next
 * start, and then none of these files is trusted (boot.ts).
 */
import * as fs from 'node:fs';
import { join } from 'node:path';
import {
  comparePaths,
  type EntryType,
  fail,
  type Manifest,
  type ManifestEntry,
  type RootIndex,
  rootHashOfSorted,
  sha256Hex,
  type StatCache,
  type StatCacheRecord,
} from '@spoke/shared';
import { readIfExists, removeAll, writeAtomic, writeAtomicAsync } from './fsutil.js';

/** The small commit-point file of a tree. */
export interface Head {
  v: 1;
  treeKey: string;
  hostRoot: string;
  rootHash: string;
  /** The extra excludes the tree was converged with. */
  excludes?: string[];
  /** Set by observe when the tree differs from the committed manifest. */
  drift?: boolean;
  /**
   * Paths the last converge skipped because user data stands where a file or symlink is wanted
   * (plan.ts findConflicts); the committed manifest is the desired one without them.
   */
  conflicts?: HeadConflict[];
  /** With conflicts: the root hash that was desired. */
  wanted?: string;
}

/** A conflict as head.json records it (plan.ts Conflict). */
export interface HeadConflict {
  path: string;
  wanted: 'file' | 'symlink';
  userData: string;
}

/** Directory holding the state of one tree. */
export function treeStateDir(stateDir: string, treeKey: string): string {
  return join(stateDir, 'trees', sha256Hex(treeKey));
}

export const HEAD = 'head.json';
export const JOURNAL = 'journal.json';
export const STAGING_INTENT = 'staging.json';
export const STAT = 'stat.json';

export function manifestFileName(rootHash: string): string {
  return `manifest-${rootHash}.json`;
}

/** Reads head.json (undefined when the tree was never converged). */
export function readHead(treeDir: string): Head | undefined {
  const text = readIfExists(join(treeDir, HEAD));
  if (text === undefined) return undefined;
  let h: Head;
  try {
    h = JSON.parse(text) as Head;
  } catch {
    throw fail('INTERNAL', `${join(treeDir, HEAD)} is not valid JSON`);
  }
  if (h.v !== 1 || typeof h.rootHash !== 'string') throw fail('INTERNAL', `${join(treeDir, HEAD)} has an unknown format`);
  return h;
}

export function writeHead(treeDir: string, head: Head): void {
  writeAtomic(join(treeDir, HEAD), JSON.stringify(head), false);
}

type Tuple = [string, EntryType, number, number, string] | [string, EntryType, number, number, string, string];

const toTuple = (e: ManifestEntry): Tuple =>
  e.target === undefined ? [e.path, e.type, e.mode, e.size, e.hash] : [e.path, e.type, e.mode, e.size, e.hash, e.target];

const fromTuple = (t: Tuple): ManifestEntry => {
  const e: ManifestEntry = { path: t[0], type: t[1], mode: t[2], size: t[3], hash: t[4] };
  if (t.length === 6) e.target = t[5];
  return e;
};

/** Compact on-disk form of a manifest: one tuple per entry (about half the size of objects). */
export function encodeManifest(treeKey: string, m: Manifest): string {
  return JSON.stringify({ v: 1, treeKey, rootHash: m.rootHash, entries: m.entries.map(toTuple) });
}

/**
 * A desired manifest given as its change from an earlier one (`base`, a root hash): entries
 * added or changed (`upserts`, sorted by path) and every path that is gone (`removed`). This is
 * what the master sends for an agent one or a few edits behind.
 */
export interface ManifestDelta {
  base: string;
  rootHash: string;
  upserts: ManifestEntry[];
  removed: string[];
}

/** On-disk form of a delta manifest file (see the module comment). */
export function encodeDelta(treeKey: string, d: ManifestDelta): string {
  return JSON.stringify({ v: 1, treeKey, rootHash: d.rootHash, base: d.base, upserts: d.upserts.map(toTuple), removed: d.removed });
}

type ManifestDoc = { kind: 'whole'; manifest: Manifest } | { kind: 'delta'; delta: ManifestDelta };

function decodeDoc(text: string, where: string): ManifestDoc {
  let doc: { v?: unknown; rootHash?: unknown; entries?: unknown; base?: unknown; upserts?: unknown; removed?: unknown };
  try {
    doc = JSON.parse(text) as typeof doc;
  } catch {
    throw fail('INTERNAL', `${where} is not valid JSON`);
  }
  if (doc.v !== 1 || typeof doc.rootHash !== 'string') throw fail('INTERNAL', `${where} has an unknown format`);
  if (typeof doc.base === 'string' && Array.isArray(doc.upserts) && Array.isArray(doc.removed)) {
    const delta = { base: doc.base, rootHash: doc.rootHash, upserts: (doc.upserts as Tuple[]).map(fromTuple), removed: doc.removed as string[] };
    return { kind: 'delta', delta };
  }
  if (!Array.isArray(doc.entries)) throw fail('INTERNAL', `${where} has an unknown format`);
  return { kind: 'whole', manifest: { rootHash: doc.rootHash, entries: (doc.entries as Tuple[]).map(fromTuple) } };
}

/**
 * Applies a manifest delta to sorted base entries in one linear merge: `upserts` (sorted, as the
 * master sends them) replace or add entries, `removed` paths go away.
 */
export function mergeDelta(base: readonly ManifestEntry[], upserts: readonly ManifestEntry[], removed: readonly string[]): ManifestEntry[] {
  const gone = new Set(removed);
  const out: ManifestEntry[] = [];
  let i = 0;
  let j = 0;
  while (i < base.length || j < upserts.length) {
    const b = base[i];
    const u = upserts[j];
    const c = b === undefined ? 1 : u === undefined ? -1 : comparePaths(b.path, u.path);
    if (c < 0) {
      if (!gone.has((b as ManifestEntry).path)) out.push(b as ManifestEntry);
      i++;
    } else {
      out.push(u as ManifestEntry);
      j++;
      if (c === 0) i++;
    }
  }
  return out;
}

/** Longest chain of delta files behind a committed manifest; the next commit writes it whole. */
export const MAX_CHAIN = 16;

/** A manifest as committed: the manifest, and the root hashes of the files it is read from. */
export interface Committed {
  rootHash: string;
  manifest: Manifest;
  /** Newest first; the last names a whole manifest file. */
  chain: string[];
  /** Its root index (built on first use), so the root of the next version costs only the change. */
  index?: RootIndex;
}

/**
 * Reads the manifest file of `rootHash` and the chain of delta files behind it. Whatever comes
 * from disk is checked against its root hash, so a damaged chain is an error, never a wrong tree.
 * @throws SpokeError INTERNAL (missing, unreadable or inconsistent files)
 */
export function readManifestFile(treeDir: string, rootHash: string): Committed {
  const deltas: ManifestDelta[] = [];
  const chain: string[] = [];
  let root = rootHash;
  let whole: Manifest | undefined;
  while (whole === undefined) {
    const file = join(treeDir, manifestFileName(root));
    if (chain.includes(root) || chain.length > MAX_CHAIN + 1) throw fail('INTERNAL', `manifest files of ${treeDir} form a loop at ${root.slice(0, 12)}…`);
    chain.push(root);
    const text = readIfExists(file);
    if (text === undefined) throw fail('INTERNAL', `committed manifest ${file} is missing`);
    const doc = decodeDoc(text, file);
    if ((doc.kind === 'whole' ? doc.manifest.rootHash : doc.delta.rootHash) !== root) throw fail('INTERNAL', `${file} does not hold root ${root}`);
    if (doc.kind === 'whole') whole = doc.manifest;
    else {
      deltas.push(doc.delta);
      root = doc.delta.base;
    }
  }
  let entries = whole.entries;
  for (let i = deltas.length - 1; i >= 0; i--) {
    const d = deltas[i] as ManifestDelta;
    entries = mergeDelta(entries, d.upserts, d.removed);
  }
  if (deltas.length > 0 && rootHashOfSorted(entries) !== rootHash) {
    throw fail('INTERNAL', `the manifest files of ${treeDir} do not add up to root ${rootHash.slice(0, 12)}…`);
  }
  return { rootHash, manifest: { rootHash, entries }, chain };
}

const memo = new Map<string, Committed>();

/** The committed manifest named by `head`, from the memo or from disk. */
export function loadCommitted(treeDir: string, head: Head): Committed {
  const hit = memo.get(treeDir);
  if (hit !== undefined && hit.rootHash === head.rootHash) return hit;
  const c = readManifestFile(treeDir, head.rootHash);
  memo.set(treeDir, c);
  return c;
}

/**
 * Writes the manifest file a journal will commit to (before the journal, which refers to it) and
 * resolves to the chain it is read from (newest first). With `delta` whose base is the committed
 * manifest `from`, writes only the change, unless the chain is long already, the change is
 * large, or the new root is already part of the chain (a file never refers to itself); else the
 * whole manifest. The content is encoded at the call; the write runs on the thread pool, so a
 * converge starts it as soon as it knows the desired manifest and it overlaps with staging and
 * fetching.
 */
export function writeManifestFile(treeDir: string, treeKey: string, m: Manifest, delta?: ManifestDelta, from?: Committed): Promise<string[]> {
  const f = manifestFileOf(treeKey, m, delta, from);
  return writeAtomicAsync(join(treeDir, manifestFileName(m.rootHash)), f.data).then(() => f.chain);
}

/** The manifest file to write (a delta on `from`'s chain when that is small enough) and the chain it makes. */
function manifestFileOf(treeKey: string, m: Manifest, delta?: ManifestDelta, from?: Committed): { data: string; chain: string[] } {
  if (
    delta !== undefined &&
    from !== undefined &&
    delta.base === from.rootHash &&
    delta.rootHash === m.rootHash &&
    from.chain.length < MAX_CHAIN &&
    !from.chain.includes(m.rootHash) &&
    (delta.upserts.length + delta.removed.length) * 4 <= Math.max(m.entries.length, 64)
  ) {
    return { data: encodeDelta(treeKey, delta), chain: [m.rootHash, ...from.chain] };
  }
  return { data: encodeManifest(treeKey, m), chain: [m.rootHash] };
}

/** Remembers a manifest just committed (saves re-reading it). */
export function rememberCommitted(treeDir: string, c: Committed): void {
  memo.set(treeDir, c);
}

/** Removes manifest files that are not part of the committed chain (earlier commits, crashes). */
export function pruneManifestFiles(treeDir: string, chain: readonly string[]): void {
  const keep = new Set(chain.map(manifestFileName));
  for (const name of fs.readdirSync(treeDir)) {
    if (!keep.has(name) && name.startsWith('manifest-')) fs.rmSync(join(treeDir, name), { force: true });
  }
}

/** The staging dir a converge is about to create (recorded first, so a crash leaves no orphan). */
export function writeStagingIntent(treeDir: string, staging: string): void {
  writeAtomic(join(treeDir, STAGING_INTENT), JSON.stringify({ path: staging }), false);
}

/** Removes the staging dir named by a leftover intent file, and the file. */
export function sweepStagingIntent(treeDir: string, keep?: string): void {
  const text = readIfExists(join(treeDir, STAGING_INTENT));
  if (text === undefined) return;
  removeStagingNamedIn(text, keep);
  fs.rmSync(join(treeDir, STAGING_INTENT), { force: true });
}

/**
 * Removes the staging dir a state file (staging intent, journal) names in its `path` or
 * `staging` field — only a `.spoke-staging-*` dir; a torn file names nothing safe to delete.
 */
export function removeStagingNamedIn(json: string, keep?: string): void {
  try {
    const doc = JSON.parse(json) as { path?: unknown; staging?: unknown };
    const path = doc.path ?? doc.staging;
    if (typeof path === 'string' && path !== keep && /\/\.spoke-staging-[^/]*$/.test(path)) removeAll(path);
  } catch {
    // unreadable: nothing we can safely delete
  }
}

// ---------------------------------------------------------------------------------------------
// stat cache

type StatTuple = [number, number, number, number, string];

interface StatMemo {
  hostRoot: string;
  records: Map<string, StatTuple>;
}

const statMemo = new Map<string, StatMemo>();

function loadStat(treeDir: string, hostRoot: string): Map<string, StatTuple> {
  const hit = statMemo.get(treeDir);
  if (hit !== undefined && hit.hostRoot === hostRoot) return hit.records;
  const records = new Map<string, StatTuple>();
  const text = readIfExists(join(treeDir, STAT));
  if (text !== undefined) {
    try {
      const doc = JSON.parse(text) as { v?: unknown; hostRoot?: unknown; records?: Record<string, StatTuple> };
      if (doc.v === 1 && doc.hostRoot === hostRoot && doc.records !== undefined) {
        for (const [k, v] of Object.entries(doc.records)) records.set(k, v);
      }
    } catch {
      // a torn cache file is just a cold cache
    }
  }
  return records;
}

/**
 * A StatCache for one walk of `hostRoot`: lookups come from the persisted records; `finish()`
 * keeps exactly the records this walk used or made (so removed paths drop out) and writes them
 * when anything changed.
 */
export function openStatCache(treeDir: string, hostRoot: string): StatCache & { finish(): void } {
  const old = loadStat(treeDir, hostRoot);
  const next = new Map<string, StatTuple>();
  const prefix = hostRoot.endsWith('/') ? hostRoot : `${hostRoot}/`;
  let dirty = false;
  const rel = (abs: string) => (abs.startsWith(prefix) ? abs.slice(prefix.length) : abs);
  return {
    get(abs: string): StatCacheRecord | undefined {
      const key = rel(abs);
      const t = old.get(key);
      if (t === undefined) return undefined;
      next.set(key, t); // walkTree only asks when it will use a hit with matching fields, or rehash
      return { ino: t[0], size: t[1], mtimeMs: t[2], ctimeMs: t[3], hash: t[4] };
    },
    set(abs: string, r: StatCacheRecord): void {
      next.set(rel(abs), [r.ino, r.size, r.mtimeMs, r.ctimeMs, r.hash]);
      dirty = true;
    },
    finish(): void {
      if (!dirty && next.size === old.size) return;
      statMemo.set(treeDir, { hostRoot, records: next });
      fs.mkdirSync(treeDir, { recursive: true });
      writeAtomic(join(treeDir, STAT), JSON.stringify({ v: 1, hostRoot, records: Object.fromEntries(next) }), false);
    },
  };
}

// ---------------------------------------------------------------------------------------------
// per-tree lock (one converge / observe / replay of a tree at a time within this process)

const locks = new Map<string, Promise<unknown>>();

export async function withTreeLock<T>(treeDir: string, fn: () => Promise<T>): Promise<T> {
  const prev = locks.get(treeDir) ?? Promise.resolve();
  const run = prev.then(fn, fn);
  const tail = run.catch(() => undefined);
  locks.set(treeDir, tail);
  try {
    return await run;
  } finally {
    if (locks.get(treeDir) === tail) locks.delete(treeDir);
  }
}

/** Drops what this process remembers of a tree's state files; they are read again when needed. */
export function forgetMemos(treeDir: string): void {
  memo.delete(treeDir);
  statMemo.delete(treeDir);
}

/** Whether this process remembers anything of a tree's state files (a committed manifest, a stat cache). */
export function hasMemos(treeDir: string): boolean {
  return memo.has(treeDir) || statMemo.has(treeDir);
}
