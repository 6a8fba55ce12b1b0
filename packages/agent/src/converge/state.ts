/**
 * The agent's per-tree state: `<stateDir>/trees/<sha256(treeKey)>/`
 * - `head.json`        {v, treeKey, hostRoot, rootHash, excludes, drift}: the committed root hash; written
 *                      last (atomic, durable) by a converge, so it is the commit point. `drift`
 *                      is set by observe when the tree no longer matches, so the next converge
 *                      re-walks instead of trusting the committed manifest.
 * - `manifest-<root>.json` the committed manifest (tuples, see encodeManifest); written and fsynced
 *                      before the journal that refers to it, so a head never names a missing one.
 * - `journal.json`     the transaction in flight (see journal.ts).
 * - `staging.json`     {path}: the staging dir of a converge in progress, for clean-up after a
 *                      crash before the journal was committed.
 * - `stat.json`        observe's stat cache (rel path → ino, size, mtime, ctime, hash); a cache only,
 *                      written without fsync, ignored when unreadable.
 * Parsed manifests and stat caches are memoised per tree, so a long-running agent reads each once.
 */
import * as fs from 'node:fs';
import { join } from 'node:path';
import { type EntryType, fail, type Manifest, type ManifestEntry, sha256Hex, type StatCache, type StatCacheRecord } from '@spoke/shared';
import { readIfExists, removeAll, writeAtomic } from './fsutil.js';

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
}

/** Directory holding the state of one tree. */
export function treeStateDir(stateDir: string, treeKey: string): string {
  return join(stateDir, 'trees', sha256Hex(treeKey));
}

export const HEAD = 'head.json';
export const JOURNAL = 'journal.json';
export const STAGING_INTENT = 'staging.json';
const STAT = 'stat.json';

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
  writeAtomic(join(treeDir, HEAD), JSON.stringify(head), true);
}

type Tuple = [string, EntryType, number, number, string] | [string, EntryType, number, number, string, string];

/** Compact on-disk form of a manifest: one tuple per entry (about half the size of objects). */
export function encodeManifest(treeKey: string, m: Manifest): string {
  const tuples: Tuple[] = m.entries.map((e) =>
    e.target === undefined ? [e.path, e.type, e.mode, e.size, e.hash] : [e.path, e.type, e.mode, e.size, e.hash, e.target],
  );
  return JSON.stringify({ v: 1, treeKey, rootHash: m.rootHash, entries: tuples });
}

export function decodeManifest(text: string, where: string): Manifest {
  let doc: { v?: unknown; rootHash?: unknown; entries?: unknown };
  try {
    doc = JSON.parse(text) as typeof doc;
  } catch {
    throw fail('INTERNAL', `${where} is not valid JSON`);
  }
  if (doc.v !== 1 || typeof doc.rootHash !== 'string' || !Array.isArray(doc.entries)) {
    throw fail('INTERNAL', `${where} has an unknown format`);
  }
  const entries: ManifestEntry[] = (doc.entries as Tuple[]).map((t) => {
    const e: ManifestEntry = { path: t[0], type: t[1], mode: t[2], size: t[3], hash: t[4] };
    if (t.length === 6) e.target = t[5];
    return e;
  });
  return { rootHash: doc.rootHash, entries };
}

/** A committed manifest, memoised per tree dir. */
export interface Committed {
  rootHash: string;
  manifest: Manifest;
}

const memo = new Map<string, Committed>();

/** The committed manifest named by `head`, from the memo or from disk. */
export function loadCommitted(treeDir: string, head: Head): Committed {
  const hit = memo.get(treeDir);
  if (hit !== undefined && hit.rootHash === head.rootHash) return hit;
  const file = join(treeDir, manifestFileName(head.rootHash));
  const text = readIfExists(file);
  if (text === undefined) throw fail('INTERNAL', `committed manifest ${file} is missing`);
  const manifest = decodeManifest(text, file);
  if (manifest.rootHash !== head.rootHash) throw fail('INTERNAL', `${file} does not hold root ${head.rootHash}`);
  const c: Committed = { rootHash: head.rootHash, manifest };
  memo.set(treeDir, c);
  return c;
}

/** Writes the manifest file a journal will commit to (durable: the journal refers to it). */
export function writeManifestFile(treeDir: string, treeKey: string, m: Manifest): string {
  const name = manifestFileName(m.rootHash);
  writeAtomic(join(treeDir, name), encodeManifest(treeKey, m), true);
  return name;
}

/** Remembers a manifest just committed (saves re-reading it). */
export function rememberCommitted(treeDir: string, manifest: Manifest): void {
  memo.set(treeDir, { rootHash: manifest.rootHash, manifest });
}

/** Removes manifest files other than the committed one (left by earlier commits or crashes). */
export function pruneManifestFiles(treeDir: string, keepRoot: string): void {
  const keep = manifestFileName(keepRoot);
  for (const name of fs.readdirSync(treeDir)) {
    if (name !== keep && name.startsWith('manifest-')) fs.rmSync(join(treeDir, name), { force: true });
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
  try {
    const { path } = JSON.parse(text) as { path?: unknown };
    if (typeof path === 'string' && path !== keep && /\/\.spoke-staging-[^/]*$/.test(path)) removeAll(path);
  } catch {
    // unreadable intent: nothing we can safely delete
  }
  fs.rmSync(join(treeDir, STAGING_INTENT), { force: true });
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
