/**
 * A first sync received as a stream (Agent.StreamTree, capability 15): the master sends the tree
 * as its walk reads it — entries in walk order, each file's content inline (shared
 * sync/treestream.ts), then the root hash — and this writes it straight into a private staging
 * tree as it arrives, then commits it like an initial converge (converge.ts): manifest file,
 * journal with the one `publish` op, head. Every entry is checked as a manifest's are (plan.ts
 * checkEntry: safe and normalised paths, not excluded, permission bits only, carried symlink
 * targets), listed once, with its directory listed before it; every file's content is verified
 * against its hash as it is written; the root hash of what arrived must equal the one the
 * stream ends with. A stream that is cut, refused or wrong leaves nothing but the staging dir,
 * which is removed here or, after a crash, swept at start-up (its intent record): the tree
 * becomes live only through the journal.
 *
 * Only for a tree this agent holds nothing of (no committed state, no journal, the root missing
 * or an empty directory that is not a mount point); convergeStreamed returns undefined without
 * opening the stream otherwise, and the caller converges from the manifest instead.
 */
import { createHash, type Hash, randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import { constants as FS } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import {
  buildManifest,
  type ByteSource,
  type CopyItem,
  type ExcludeMatcher,
  excludeMatcher,
  fail,
  type FileHelper,
  isSpokeError,
  type Manifest,
  type ManifestEntry,
  MODE_MASK,
  parentOf,
  STAGING_PREFIX,
  type StreamedEntry,
  TreeStreamParser,
} from '@spoke/shared';
import { type BlobFetcher, type ConvergeProgress, type ConvergeResult, diskFull } from './converge.js';
import { copyVerifiedSync, creationMode, errText, hashFileSync, isDiskFull, lstatOrNull, probeUmask, removeAll } from './fsutil.js';
import { type Journal, readJournal, runJournal, Stepper, writeJournal } from './journal.js';
import { checkHostRoot, NO_DRIFT } from './observe.js';
import { stagingTree } from './ops.js';
import { checkEntry } from './plan.js';
import { readHead, sweepStagingIntent, treeStateDir, withTreeLock, writeManifestFile, writeStagingIntent } from './state.js';

export interface StreamedOptions {
  /** Namespace path of the tree. */
  treeKey: string;
  /** Where it lives on this host (absolute, normalised). */
  hostRoot: string;
  stateDir: string;
  /** Extra excludes; the defaults always apply. No streamed entry may be excluded. */
  excludes?: string[];
  /**
   * Opens the stream, with the content this host holds in other trees (`held`, to be announced
   * without content); called only once the tree is known to be new here.
   */
  open: (held: readonly string[]) => ByteSource;
  /** Content this host holds elsewhere: the path of a file that should have it (verified when copied). */
  reuse?: (hash: string) => string | undefined;
  /** The hashes `reuse` knows (sent to the master, so it leaves their content out). */
  reusable?: () => Iterable<string>;
  /** For content announced as held whose copy failed (the file changed since): fetched after the stream. */
  fetcher?: BlobFetcher;
  /** A second thread that makes a share of the copies of held content while this one reads the stream. */
  helper?: FileHelper;
  onProgress?: (p: ConvergeProgress) => void;
  signal?: AbortSignal;
  /** Test hook: called between steps (crash tests kill the process here). */
  onStep?: (n: number, what: string) => void;
}

/**
 * Receives a tree this host holds nothing of and commits it (see the module comment); undefined,
 * without opening the stream, when the tree is not new here.
 * @throws SpokeError ARCHIVE_UNSAFE / INVALID_ARGUMENT (a bad entry), BLOB_HASH_MISMATCH (content
 *   that does not match its hash, a stream cut short), TREE_CHANGED (the root hash of what arrived
 *   is not the one the stream ended with), DISK_LOW, TASK_CANCELLED, INTERNAL
 */
export async function convergeStreamed(o: StreamedOptions): Promise<ConvergeResult | undefined> {
  const t0 = performance.now();
  const root = checkHostRoot(o.hostRoot);
  const treeDir = treeStateDir(o.stateDir, o.treeKey);
  try {
    return await withTreeLock(treeDir, () => locked(o, root, treeDir, t0));
  } catch (e) {
    throw diskFull(e, root) ?? e;
  }
}

async function locked(o: StreamedOptions, root: string, treeDir: string, t0: number): Promise<ConvergeResult | undefined> {
  // Anything committed or pending here: the converge from the manifest deals with it.
  if (readJournal(treeDir) !== undefined || readHead(treeDir) !== undefined) return undefined;
  const rootSt = lstatOrNull(root);
  if (rootSt !== undefined && (!rootSt.isDirectory() || fs.readdirSync(root).length > 0)) return undefined;
  const parent = dirname(root);
  fs.mkdirSync(parent, { recursive: true });
  // a mount point has no sibling on its file system for the staging tree
  if (rootSt !== undefined && fs.statSync(parent).dev !== rootSt.dev) return undefined;
  cancelled(o.signal);
  const stepper = new Stepper(o.onStep);
  fs.mkdirSync(treeDir, { recursive: true });
  sweepStagingIntent(treeDir);
  const staging = join(parent, `${STAGING_PREFIX}${truncate(basename(root))}-${randomBytes(6).toString('hex')}`);
  writeStagingIntent(treeDir, staging);
  stepper.step('staging');
  let journal: Journal;
  let manifest: Manifest;
  let chain: string[];
  let got: Received;
  try {
    fs.mkdirSync(staging, { mode: 0o700 });
    const tree = stagingTree(staging);
    fs.mkdirSync(tree, { mode: 0o700 });
    got = await receive(o, tree, probeUmask(staging), excludeMatcher({ exclude: o.excludes ?? [] }), stepper);
    manifest = got.manifest;
    await fetchMissing(o, staging, tree, got);
    setModes(tree, manifest.entries, got, rootSt);
    stepper.step('manifest');
    chain = await writeManifestFile(treeDir, o.treeKey, manifest);
    journal = { v: 1, treeKey: o.treeKey, hostRoot: root, staging, rootHash: manifest.rootHash, excludes: o.excludes ?? [], ops: [{ op: 'publish' }] };
    cancelled(o.signal);
    stepper.step('journal');
    writeJournal(treeDir, journal);
  } catch (err) {
    removeAll(staging);
    sweepStagingIntent(treeDir);
    throw err;
  }
  // Committed: from here on the transaction completes (now, or by replay after a crash).
  stepper.step('journal written');
  runJournal(treeDir, journal, {
    stepper,
    committed: { rootHash: manifest.rootHash, manifest, chain },
    onOp: (done, total) => o.onProgress?.({ phase: 'apply', files: done, filesTotal: total, bytes: 0, bytesTotal: 0 }),
  });
  return {
    inSync: false,
    rootHash: manifest.rootHash,
    added: manifest.entries.length,
    changed: 0,
    removed: 0,
    filesFetched: got.filesFetched,
    bytesFetched: got.bytesFetched,
    filesReused: got.filesReused,
    bytesReused: got.bytesReused,
    ms: Math.round((performance.now() - t0) * 10) / 10,
    drift: NO_DRIFT,
    conflicts: [],
  };
}

/** What a stream delivered into the staging tree. */
interface Received {
  manifest: Manifest;
  /** Files created with creationMode(mode) (the rest get a chmod). */
  created: Set<string>;
  /** Directories created with their final mode (the rest get a chmod at the end). */
  dirsFinal: Set<string>;
  /** This process's umask (the mode bits creation takes away). */
  umask: number;
  /** Files announced as held whose copy failed: fetched after the stream. */
  missing: ManifestEntry[];
  filesFetched: number;
  bytesFetched: number;
  filesReused: number;
  bytesReused: number;
}

/** The file being received. */
interface Current {
  entry: ManifestEntry;
  abs: string;
  fd: number;
  hash: Hash;
}

/** Reads the stream into `tree` (see the module comment). */
async function receive(o: StreamedOptions, tree: string, umask: number, excludes: ExcludeMatcher, stepper: Stepper): Promise<Received> {
  const entries: ManifestEntry[] = [];
  const seen = new Set<string>();
  const dirs = new Set<string>(['']);
  /** hash → the first file written with it (the source of later copies). */
  const first = new Map<string, string>();
  const out: Received = {
    manifest: { entries: [], rootHash: '' },
    created: new Set(),
    dirsFinal: new Set(),
    umask,
    missing: [],
    filesFetched: 0,
    bytesFetched: 0,
    filesReused: 0,
    bytesReused: 0,
  };
  let cur: Current | undefined;
  let end: { rootHash: string; entries: number } | undefined;
  const at = (e: ManifestEntry) => `${tree}/${e.path}`;
  const onEntry = ({ entry: e, source }: StreamedEntry) => {
    checkEntry(e, excludes);
    if (seen.has(e.path)) throw fail('INVALID_ARGUMENT', `the tree stream lists ${JSON.stringify(e.path)} twice`);
    if (!dirs.has(parentOf(e.path))) throw fail('INVALID_ARGUMENT', `the tree stream lists ${JSON.stringify(e.path)} before (or without) its directory`);
    seen.add(e.path);
    entries.push(e);
    if (stepper.active) stepper.step(`receive ${e.path}`);
    const abs = at(e);
    // A fresh private directory, and every parent is a directory this stream made: nothing here
    // can meet a symlink (a symlink's path is never a parent: see `dirs`).
    if (e.type === 'dir') {
      // its final mode at once when the owner may write and search it (children are made in it)
      const mode = (e.mode & 0o700) === 0o700 ? e.mode & MODE_MASK : 0o700;
      fs.mkdirSync(abs, mode);
      if ((mode & ~umask) === (e.mode & MODE_MASK)) out.dirsFinal.add(e.path);
      dirs.add(e.path);
    } else if (e.type === 'symlink') {
      fs.symlinkSync(e.target as string, abs);
    } else if (source === 'content') {
      cur = { entry: e, abs, fd: fs.openSync(abs, FS.O_WRONLY | FS.O_CREAT | FS.O_EXCL | FS.O_NOFOLLOW, creationMode(e.mode)), hash: createHash('sha256') };
    } else if (source === 'again') {
      const src = first.get(e.hash);
      if (src === undefined) throw fail('ARCHIVE_UNSAFE', `the tree stream refers to content of ${JSON.stringify(e.path)} it never sent`);
      fs.copyFileSync(src, abs, FS.COPYFILE_EXCL | FS.COPYFILE_FICLONE);
      out.filesReused++;
      out.bytesReused += e.size;
    } else {
      const src = o.reuse?.(e.hash);
      if (src === undefined) out.missing.push(e);
      else copies.add(e, src, abs);
    }
  };
  const copies = new HeldCopies(o.helper, out);
  const parser = new TreeStreamParser({
    entry: onEntry,
    content: (piece) => {
      const c = cur as Current;
      c.hash.update(piece);
      for (let w = 0; w < piece.length;) w += fs.writeSync(c.fd, piece, w, piece.length - w);
    },
    fileEnd: () => {
      const c = cur as Current;
      cur = undefined;
      fs.closeSync(c.fd);
      const actual = c.hash.digest('hex');
      if (actual !== c.entry.hash) {
        throw fail(
          'BLOB_HASH_MISMATCH',
          `${c.entry.path} arrived with content ${actual.slice(0, 12)}…, not ${c.entry.hash.slice(0, 12)}…: corrupted in transit or changed at the source`,
        );
      }
      out.created.add(c.entry.path);
      if (!first.has(c.entry.hash)) first.set(c.entry.hash, c.abs);
      out.filesFetched++;
      out.bytesFetched += c.entry.size;
    },
    end: (rootHash, n) => {
      end = { rootHash, entries: n };
    },
  });
  // at most MAX_HELD (16 MB of digests in the request); content beyond it is simply sent
  const held: string[] = [];
  for (const h of o.reusable?.() ?? []) if (held.push(h) >= MAX_HELD) break;
  if (held.length > 0) o.helper?.warm?.(); // its copies start with the stream's first records
  let lastReport = 0;
  const report = () => o.onProgress?.({ phase: 'fetch', files: out.filesFetched + out.filesReused, filesTotal: 0, bytes: out.bytesFetched, bytesTotal: 0 });
  try {
    try {
      for await (const chunk of o.open(held)) {
        cancelled(o.signal);
        parser.push(chunk);
        await copies.step();
        if (out.bytesFetched - lastReport >= 1024 * 1024) {
          lastReport = out.bytesFetched;
          report();
        }
      }
    } catch (err) {
      if (isDiskFull(err) || isSpokeError(err)) throw err;
      throw fail('INTERNAL', `cannot write the streamed tree in ${tree}: ${errText(err)}`);
    }
    parser.finish();
    await copies.drain();
  } finally {
    if (cur !== undefined) fs.closeSync(cur.fd);
    await copies.settled();
  }
  report();
  const e = end as { rootHash: string; entries: number };
  const m = buildManifest(entries);
  if (entries.length !== e.entries || m.rootHash !== e.rootHash) {
    throw fail(
      'TREE_CHANGED',
      `the tree the master streamed (${entries.length} entries) hashes to ${m.rootHash.slice(0, 12)}…, not ${e.rootHash.slice(0, 12)}… (${e.entries} entries) as it said; nothing was changed`,
    );
  }
  out.manifest = m;
  return out;
}

/** Hashes of held content a StreamTree request names at most. */
const MAX_HELD = 500_000;

/** Copies per chunk shared with the helper thread. */
const COPY_CHUNK = 256;

/**
 * The copies of held content (files this host has in another tree), made as their records
 * arrive: a chunk at a time on the helper thread while this thread reads the stream, and on this
 * thread when the queue grows or the stream has ended. Each copy is verified against its hash;
 * one that fails (the other tree's file changed) is fetched after the stream.
 */
class HeldCopies {
  private queue: { e: ManifestEntry; src: string; abs: string }[] = [];
  private busy: Promise<void> | undefined;
  private failed: unknown;

  constructor(
    private readonly helper: FileHelper | undefined,
    private readonly out: Received,
  ) {}

  add(e: ManifestEntry, src: string, abs: string): void {
    this.queue.push({ e, src, abs });
    if (this.helper === undefined) this.copyHere(this.queue.length);
  }

  /**
   * After each message: a chunk to the helper when it is idle; this thread copies when the queue
   * outgrows it, and then lets the helper's answer in (messages already received are read
   * without a turn of the event loop, so the helper would wait for the whole stream).
   */
  async step(): Promise<void> {
    this.check();
    if (this.queue.length >= COPY_CHUNK && this.busy === undefined) this.toHelper();
    if (this.queue.length >= 4 * COPY_CHUNK) {
      this.copyHere(COPY_CHUNK);
      await new Promise((resolve) => setImmediate(resolve));
      if (this.queue.length >= COPY_CHUNK && this.busy === undefined) this.toHelper();
    }
  }

  /** The end of the stream: both threads copy what is left. */
  async drain(): Promise<void> {
    while (this.queue.length > 0) {
      if (this.busy === undefined && this.helper !== undefined) this.toHelper();
      this.copyHere(COPY_CHUNK);
      await new Promise((resolve) => setImmediate(resolve)); // the helper's answer, its next chunk
      this.check();
    }
    await this.busy;
    this.check();
  }

  private check(): void {
    if (this.failed !== undefined) throw this.failed;
  }

  /** No copy still under way on the helper (after a failure too). */
  async settled(): Promise<void> {
    await this.busy?.catch(() => undefined);
  }

  private done(e: ManifestEntry): void {
    this.out.created.add(e.path);
    this.out.filesReused++;
    this.out.bytesReused += e.size;
  }

  private copyHere(n: number): void {
    for (const c of this.queue.splice(0, n)) {
      if (copyVerifiedSync(c.src, c.abs, c.e.hash, c.e.size, creationMode(c.e.mode))) this.done(c.e);
      else this.out.missing.push(c.e);
    }
  }

  private toHelper(): void {
    const helper = this.helper as FileHelper;
    // from the end of the queue: other directories than this thread's (creates in one directory serialise)
    const chunk = this.queue.splice(Math.max(0, this.queue.length - COPY_CHUNK));
    const items: CopyItem[] = chunk.map((c) => [c.src, c.abs, c.e.hash, c.e.size, creationMode(c.e.mode)]);
    this.busy = helper.copy(items).then(
      (res) => {
        this.busy = undefined;
        chunk.forEach((c, k) => {
          const d = res[k];
          if (d === true) this.done(c.e);
          else if (d === undefined && copyVerifiedSync(c.src, c.abs, c.e.hash, c.e.size, creationMode(c.e.mode))) this.done(c.e);
          else this.out.missing.push(c.e);
        });
      },
      (err: unknown) => {
        this.busy = undefined;
        this.failed = err;
      },
    );
  }
}

/** Content announced as held whose copy failed (changed since it was committed): fetched now. */
async function fetchMissing(o: StreamedOptions, staging: string, tree: string, got: Received): Promise<void> {
  if (got.missing.length === 0) return;
  if (o.fetcher === undefined) throw fail('BLOB_HASH_MISMATCH', `${got.missing.length} file(s) of the streamed tree are not on this host`);
  const byHash = new Map<string, ManifestEntry[]>();
  for (const e of got.missing) byHash.set(e.hash, [...(byHash.get(e.hash) ?? []), e]);
  const blobs = join(staging, 'blobs');
  fs.mkdirSync(blobs, { mode: 0o700 });
  const report = await o.fetcher.fetch([...byHash.keys()], blobs, undefined, o.signal);
  const where = new Map<string, string>();
  for (const r of report ?? []) where.set(r.hash, r.path);
  for (const [hash, list] of byHash) {
    const src = where.get(hash) ?? join(blobs, hash);
    const st = lstatOrNull(src);
    if (st === undefined || !st.isFile() || st.size !== (list[0] as ManifestEntry).size)
      throw fail('BLOB_HASH_MISMATCH', `blob ${hash.slice(0, 12)}… did not arrive`);
    if (o.fetcher.verifies !== true && hashFileSync(src)?.hash !== hash)
      throw fail('BLOB_HASH_MISMATCH', `blob ${hash.slice(0, 12)}… arrived with other content`);
    for (const e of list) fs.copyFileSync(src, `${tree}/${e.path}`, FS.COPYFILE_EXCL | FS.COPYFILE_FICLONE);
    got.filesFetched += list.length;
    got.bytesFetched += st.size;
  }
}

/**
 * File modes where creation did not give them (copies, files whose mode the owner cannot read,
 * a umask that took bits away), then the modes of directories created without theirs (the
 * owner may not write or search them, or the umask took bits away) deepest first (a read-only
 * directory must not block its children), then the root's. Most trees need neither: 3,300
 * directory chmods were ~100 ms of a second platform's time.
 */
function setModes(tree: string, entries: readonly ManifestEntry[], got: Received, rootSt: fs.Stats | undefined): void {
  for (const e of entries) {
    if (e.type !== 'file') continue;
    if (got.created.has(e.path) && (creationMode(e.mode) & ~got.umask) === (e.mode & MODE_MASK)) continue;
    fs.chmodSync(`${tree}/${e.path}`, e.mode & MODE_MASK);
  }
  // entries sorted by path: a directory's children come after it, so backwards is deepest first
  for (let i = entries.length - 1; i >= 0; i--) {
    const e = entries[i] as ManifestEntry;
    if (e.type === 'dir' && !got.dirsFinal.has(e.path)) fs.chmodSync(`${tree}/${e.path}`, e.mode & MODE_MASK);
  }
  fs.chmodSync(tree, rootSt === undefined ? 0o755 : rootSt.mode & MODE_MASK);
}

function cancelled(signal: AbortSignal | undefined): void {
  if (signal?.aborted) throw fail('TASK_CANCELLED', 'converge cancelled');
}

function truncate(name: string): string {
  let s = name;
  while (Buffer.byteLength(s) > 100) s = s.slice(0, -1);
  return s;
}
