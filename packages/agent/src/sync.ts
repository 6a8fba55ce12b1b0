/**
 * The agent's side of converge: the trees it holds (AgentTrees), converged to what the master
 * wants through the converge engine (converge/), with the manifest and blobs fetched by
 * treefetch.ts and a first sync streamed by streamsync.ts. Also keeps the observed root hashes
 * it reports at hello and after drift checks, a tree's status, and forgetting a tree.
 */
import { existsSync, readdirSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { TreeWatches } from './converge/treewatch.js';
import {
  fail,
  inSyncReport,
  isSpokeError,
  removeTreeKeepingUserData,
  type wire,
  type ConvergeReport,
  type ConvergeRequest,
  type FileHelper,
  type Logger,
  type Manifest,
  type QuarantineInfo,
  type RootMap,
  type TreeStatusReport,
} from '@spoke/shared';
import {
  buildReuseIndex,
  converge,
  forgetMemos,
  listQuarantine,
  type ManifestDelta,
  pruneQuarantine,
  QUARANTINE_MAX_AGE_MS,
  QUARANTINE_MAX_BYTES,
  type QuarantineEntry,
  type QuarantineOptions,
  observe,
  readCommitted,
  replayJournals,
  treeKeyOf,
  treeStateDir,
  type ConvergeResult,
} from './converge/index.js';
import { type ProgressFn, receiveStream } from './streamsync.js';
import { FETCH_BATCH, TreeFetch } from './treefetch.js';

export type { ProgressFn } from './streamsync.js';

/**
 * Below this many bytes left to fetch, other trees are not searched for the content: building
 * that index costs more (~50 ms for 20,000 entries) than fetching 1 MiB over the link.
 */
const REUSE_MIN_BYTES = 1024 * 1024;
/** How long after a converge its tree is walked again (see AgentTrees.rewalkSoon). */
const REWALK_DELAY_MS = 100;

/** The directories of a manifest (relative paths). */
function dirsOf(entries: readonly { path: string; type: string }[]): string[] {
  const out: string[] = [];
  for (const e of entries) if (e.type === 'dir') out.push(e.path);
  return out;
}

/** What one walk of a tree found (see AgentTrees.observeTree). */
interface Observed {
  rootHash: string;
  drift: { changed: string[]; added: string[]; removed: string[] };
  empty: boolean;
  hostRoot: string;
  /** The excludes it walked with, joined. */
  excludes: string;
}

/** Tree management on the agent. */
export class AgentTrees {
  private readonly stateDir: string;
  /** A second thread for copying content reused from other trees (see converge's helper). */
  private readonly helper: FileHelper | undefined;
  private readonly roots: string[];
  private readonly rootMap: RootMap;
  private readonly log: Logger;
  /** GetManifest and FetchBlobs, with the connection's client. */
  private readonly fetch: TreeFetch;
  /** Trees this agent holds: namespace path → host path, and their excludes. */
  private readonly held = new Map<string, { hostRoot: string; excludes: string[] }>();
  /** Last observed root hash per tree. */
  private readonly observedHashes = new Map<string, string>();
  /** Serialises work per tree. */
  private readonly locks = new Map<string, Promise<unknown>>();
  /** Where drift repairs keep what they remove or overwrite. */
  private readonly quarantine: QuarantineOptions;
  /** Trees with a walk queued after a converge (see rewalkSoon). */
  private readonly rewalkQueued = new Set<string>();
  private readonly rewalkTimers = new Set<NodeJS.Timeout>();
  /** What the last walk of each tree found (reused by `status` while its watches see nothing). */
  private readonly lastObserved = new Map<string, Observed>();
  /** Whether a held tree may have changed since its last walk (inotify; see treewatch.ts). */
  private readonly watches: TreeWatches;

  constructor(deps: {
    stateDir: string;
    roots: string[];
    rootMap: RootMap;
    log: Logger;
    fetchBatch?: number;
    helper?: FileHelper;
    quarantine?: Partial<QuarantineOptions>;
    /** Default: inotify watches with the built-in limits. */
    watches?: TreeWatches;
  }) {
    this.watches = deps.watches ?? new TreeWatches();
    this.fetch = new TreeFetch({ stateDir: deps.stateDir, log: deps.log, fetchBatch: deps.fetchBatch ?? FETCH_BATCH });
    this.quarantine = {
      dir: deps.quarantine?.dir ?? `${deps.stateDir}/quarantine`,
      maxBytes: deps.quarantine?.maxBytes ?? QUARANTINE_MAX_BYTES,
      maxAgeMs: deps.quarantine?.maxAgeMs ?? QUARANTINE_MAX_AGE_MS,
      ...(deps.quarantine?.now ? { now: deps.quarantine.now } : {}),
    };
    this.helper = deps.helper;
    this.stateDir = deps.stateDir;
    this.roots = deps.roots;
    this.rootMap = deps.rootMap;
    this.log = deps.log;
  }

  /** Sets the client used for GetManifest / FetchBlobs / StreamTree (owned by the connection). */
  setClient(c: wire.AgentClient): void {
    this.fetch.setClient(c);
  }

  private treesDir(): string {
    return `${this.stateDir}/trees`;
  }

  /**
   * Start-up: finish or discard interrupted applies (journals), then observe every tree this
   * agent holds, so the hello carries what is really on disk.
   */
  async startup(): Promise<void> {
    try {
      const replayed = await replayJournals(this.stateDir);
      if (replayed.length) this.log.warn({ trees: replayed }, 'finished interrupted converges from their journals');
    } catch (e) {
      // Never a reason not to start: the next converge of that tree abandons the journal and
      // works from what is on disk (converge.ts).
      this.log.error({ err: (e as Error).message }, 'an interrupted converge could not be finished; the next converge of its tree starts from what is on disk');
    }
    for (const tree of this.committedTrees()) {
      try {
        const hostRoot = this.rootMap.confine(tree, this.roots);
        const c = readCommitted(this.stateDir, tree);
        this.held.set(tree, { hostRoot, excludes: c?.excludes ?? [] });
        await this.refresh(tree);
      } catch (e) {
        this.log.warn({ tree, err: (e as Error).message }, 'cannot observe tree');
      }
    }
  }

  private committedTrees(): string[] {
    let dirs: string[] = [];
    try {
      dirs = readdirSync(this.treesDir());
    } catch {
      return [];
    }
    const out: string[] = [];
    for (const d of dirs) {
      const key = treeKeyOf(`${this.treesDir()}/${d}`);
      if (key) out.push(key);
    }
    return out;
  }

  /** Stops watching the trees (the agent stops). */
  close(): void {
    for (const t of this.rewalkTimers) clearTimeout(t);
    this.rewalkTimers.clear();
    this.watches.close();
  }

  /** Observed root hash per held tree (for hello). */
  observed(): Record<string, string> {
    return Object.fromEntries(this.observedHashes);
  }

  /**
   * Walks a tree (observe), with its watches marked clean at the start and set to the
   * directories it saw at the end; remembers what it found for `status` while nothing changes.
   */
  private async observeTree(tree: string, hostRoot: string, excludes: string[]): Promise<Observed> {
    if (!this.watches.has(tree)) {
      // Watch what was last converged before this first walk, so it can leave the tree clean (else
      // the directories it finds are watched only after it, and the next verify walks again).
      const c = readCommitted(this.stateDir, tree);
      if (c && c.hostRoot === hostRoot) this.watches.afterWalk(tree, hostRoot, dirsOf(c.manifest.entries));
    }
    this.watches.beginWalk(tree);
    const o = await observe(this.stateDir, tree, hostRoot, excludes);
    this.watches.afterWalk(tree, hostRoot, dirsOf(o.manifest.entries));
    const seen: Observed = { rootHash: o.rootHash, drift: o.drift, empty: o.manifest.entries.length === 0, hostRoot, excludes: excludes.join('\0') };
    this.lastObserved.set(tree, seen);
    return seen;
  }

  /**
   * After a converge wrote the tree: one walk once it is done (queued behind it on the tree's
   * lock, not awaited), so the watches are clean again before the next verify instead of that
   * verify walking the tree on its critical path (its own writes made the tree dirty).
   */
  private rewalkSoon(tree: string): void {
    if (this.rewalkQueued.has(tree)) return;
    this.rewalkQueued.add(tree);
    // Started a moment later, not at once: the converge's report goes out first (this walk and
    // its watches, ~0.2 s for a new 20,000-file tree, are not what the operator waits for).
    const t = setTimeout(() => {
      this.rewalkTimers.delete(t);
      this.withLock(tree, async () => {
        this.rewalkQueued.delete(tree);
        if (this.held.has(tree) && (await this.watches.mayHaveChanged(tree))) await this.refresh(tree);
      }).catch((e: unknown) => this.log.warn({ tree, err: (e as Error).message }, 'walk after a converge failed; the next verify walks'));
    }, REWALK_DELAY_MS);
    t.unref();
    this.rewalkTimers.add(t);
  }

  /** Re-walks one tree and updates its observed hash; true when it changed. */
  private async refresh(tree: string): Promise<boolean> {
    const h = this.held.get(tree);
    if (!h) return false;
    const o = await this.observeTree(tree, h.hostRoot, h.excludes);
    const before = this.observedHashes.get(tree);
    this.observedHashes.set(tree, o.rootHash);
    if (o.drift.changed.length + o.drift.added.length + o.drift.removed.length > 0) {
      this.log.warn({ tree, drift: o.drift.changed.length + o.drift.added.length + o.drift.removed.length }, 'drift found');
    }
    return before !== o.rootHash;
  }

  /**
   * Re-observes every held tree; returns true when the master should hear about it: an observed
   * hash changed, or a tree still differs from what was last converged (the master may have
   * missed the earlier report; it ignores repeats while a repair is queued).
   */
  async checkDrift(): Promise<boolean> {
    let report = false;
    for (const tree of [...this.held.keys()]) {
      const changed = await this.withLock(tree, () => this.refresh(tree));
      const committed = readCommitted(this.stateDir, tree)?.rootHash;
      report = changed || (committed !== undefined && this.observedHashes.get(tree) !== committed) || report;
    }
    return report;
  }

  private withLock<T>(tree: string, fn: () => Promise<T>): Promise<T> {
    const prev = this.locks.get(tree) ?? Promise.resolve();
    const next = prev.then(fn, fn);
    this.locks.set(
      tree,
      next.catch(() => undefined),
    );
    return next;
  }

  /** Makes `req.tree` equal to the master's desired tree. */
  converge(req: ConvergeRequest, progress: ProgressFn): Promise<ConvergeReport> {
    return this.withLock(req.tree, async () => {
      const hostRoot = this.rootMap.confine(req.tree, this.roots);
      const committed = readCommitted(this.stateDir, req.tree);
      this.held.set(req.tree, { hostRoot, excludes: req.excludes });
      // An operator's verify looks at the disk now (a stat-cached walk: ~0.1–0.4 s for 20,000
      // files), unless the tree's watches say nothing happened in it since its last walk: a drift
      // found marks the tree, so the converge below walks it and repairs it.
      if (req.recheck && committed !== undefined && (await this.watches.mayHaveChanged(req.tree))) await this.refresh(req.tree);
      if (committed?.rootHash === req.rootHash && this.observedHashes.get(req.tree) === req.rootHash) {
        return inSyncReport(req.rootHash);
      }
      // What this converge writes, and the committed state it leaves, are walked again next time.
      this.watches.touch(req.tree);
      const heldRoots = new Map([...this.held].map(([k, v]) => [k, v.hostRoot]));
      // A first sync the master streams as its walk reads the tree (capability 15); undefined
      // when this host holds something of the tree after all: then from the manifest.
      const streamed =
        req.stream === true && committed === null
          ? await receiveStream({ stateDir: this.stateDir, helper: this.helper, fetch: this.fetch }, req, hostRoot, heldRoots, progress)
          : undefined;
      const desired = streamed === undefined ? await this.fetch.fetchManifest(req.tree, req.rootHash) : undefined;
      let reuseIndex: ((hash: string) => string | undefined) | undefined;
      let lastPhase = '';
      const run = (want: Manifest | ManifestDelta, trustCommitted?: boolean) =>
        converge({
          treeKey: req.tree,
          hostRoot,
          stateDir: this.stateDir,
          desired: 'entries' in want ? want : undefined,
          delta: 'entries' in want ? undefined : want,
          trustCommitted,
          excludes: req.excludes,
          quarantine: this.quarantine,
          reportDrift: req.reportDrift === true,
          fetcher: this.fetch.fetcher(req.tree),
          // Built only when a converge has enough to fetch to be worth it (see reuseMinBytes):
          // the index reads every held manifest, ~50 ms for 20,000 entries.
          reuse: (hash) => (reuseIndex ??= buildReuseIndex(this.stateDir, heldRoots))(hash),
          reuseMinBytes: REUSE_MIN_BYTES,
          helper: this.helper,
          onProgress: (p) => {
            if (p.phase !== lastPhase || p.phase === 'fetch' || p.phase === 'reuse') {
              lastPhase = p.phase;
              progress({ message: `${p.phase} ${p.files}/${p.filesTotal} files`, done: Math.round(p.bytes), total: Math.round(p.bytesTotal) });
            }
          },
        });
      let r: ConvergeResult;
      if (streamed !== undefined) r = streamed;
      else if (desired === undefined) throw fail('INTERNAL', 'no manifest to converge to');
      else
        try {
          r = await run(desired);
        } catch (e) {
          // A delta this tree's committed manifest cannot take (it does not describe what is on
          // disk after a failure) must not be refused forever: re-base on the whole manifest and
          // on what is really there.
          if ('entries' in desired || !isSpokeError(e) || !['INVALID_ARGUMENT', 'TREE_CHANGED'].includes(e.code)) throw e;
          this.log.warn({ tree: req.tree, code: e.code, err: e.message }, 'manifest delta refused; converging from the whole manifest against what is on disk');
          r = await run(await this.fetch.fetchManifest(req.tree, req.rootHash, false), false);
        }
      if (r.abandonedJournal !== undefined) {
        this.log.warn(
          { tree: req.tree, err: r.abandonedJournal },
          'an earlier converge could not be finished: abandoned it and converged from what is on disk',
        );
      }
      for (const c of r.conflicts) {
        this.log.warn(
          { tree: req.tree, path: c.path, wanted: c.wanted, userData: c.userData },
          'converge conflict: user data stands where the master wants a file; path skipped',
        );
      }
      const q = r.quarantined;
      if (q !== undefined) {
        this.log.warn(
          { tree: req.tree, quarantine: q.dir, files: q.paths.length, bytes: q.bytes, skipped: q.skipped.length },
          'drift repair: kept what it removed or overwrote in quarantine',
        );
      }
      this.observedHashes.set(req.tree, r.rootHash);
      this.rewalkSoon(req.tree);
      const cut = (a: string[]) => a.slice(0, 100);
      return {
        inSync: r.inSync,
        rootHash: r.rootHash,
        added: r.added,
        changed: r.changed,
        removed: r.removed,
        filesFetched: r.filesFetched,
        bytesFetched: r.bytesFetched,
        filesReused: r.filesReused,
        bytesReused: r.bytesReused,
        ms: Math.round(r.ms),
        drift: {
          changed: cut(r.drift.changed),
          added: cut(r.drift.added),
          removed: cut(r.drift.removed),
          total: r.drift.changed.length + r.drift.added.length + r.drift.removed.length,
        },
        conflicts: r.conflicts.map((c) => ({ path: c.path, wanted: c.wanted, userData: c.userData })),
        wantedRootHash: r.conflicts.length ? (desired?.rootHash ?? req.rootHash) : '',
        ...(q === undefined ? {} : { quarantined: quarantineInfo(q) }),
        ...(streamed === undefined ? {} : { streamed: true }),
      };
    });
  }

  /** What is on disk for a tree, against what was last converged. */
  status(tree: string, excludes: string[]): Promise<TreeStatusReport> {
    return this.withLock(tree, async () => {
      const hostRoot = this.rootMap.confine(tree, this.roots);
      const committed = readCommitted(this.stateDir, tree);
      const ex = committed?.excludes ?? excludes;
      // Nothing happened in the tree since its last walk (its watches say so): what that walk found.
      const last = this.lastObserved.get(tree);
      const o =
        last && last.hostRoot === hostRoot && last.excludes === ex.join('\0') && !(await this.watches.mayHaveChanged(tree))
          ? last
          : await this.observeTree(tree, hostRoot, ex);
      if (committed) this.observedHashes.set(tree, o.rootHash);
      const cut = (a: string[]) => a.slice(0, 100);
      return {
        committedRootHash: committed?.rootHash ?? '',
        actualRootHash: !o.empty || committed ? o.rootHash : '',
        exists: !o.empty,
        drift: {
          changed: cut(o.drift.changed),
          added: cut(o.drift.added),
          removed: cut(o.drift.removed),
          total: o.drift.changed.length + o.drift.added.length + o.drift.removed.length,
        },
        conflicts: (committed?.conflicts ?? []).map((c) => ({ path: c.path, wanted: c.wanted, userData: c.userData })),
        quarantine: safeList(this.quarantine, tree).map(quarantineInfo),
      };
    });
  }

  /**
   * Stops holding a tree (its platform left this server): drops it from the held trees and the
   * observed hashes and removes its committed state (`<state>/trees/<key>`), so it is no longer
   * reported. With `removeTree`, deletes the tree too, except user data (non-empty
   * sites/<site>/files and private stay, listed in `kept`). Idempotent.
   * @throws SpokeError PATH_OUTSIDE_ROOTS (removeTree only)
   */
  forget(tree: string, removeTree: boolean): Promise<{ stateRemoved: boolean; treeRemoved: boolean; kept: string[]; problems: string[] }> {
    return this.withLock(tree, async () => {
      this.held.delete(tree);
      this.observedHashes.delete(tree);
      this.watches.drop(tree);
      this.lastObserved.delete(tree);
      const dir = treeStateDir(this.stateDir, tree);
      const stateRemoved = existsSync(dir);
      await rm(dir, { recursive: true, force: true });
      // and what this process remembers of it: a removed 20,000-file platform's committed
      // manifest stayed in memory (~20–40 MB of heap each) until the agent restarted
      forgetMemos(dir);
      const out = { stateRemoved, treeRemoved: false, kept: [] as string[], problems: [] as string[] };
      if (removeTree) {
        const r = await removeTreeKeepingUserData(this.rootMap.confine(tree, this.roots));
        out.treeRemoved = r.removed && r.existed;
        out.kept = r.kept;
        out.problems = r.problems;
      }
      this.log.info({ tree, stateRemoved, removeTree, kept: out.kept }, 'tree forgotten');
      return out;
    });
  }
}

function quarantineInfo(q: QuarantineEntry): QuarantineInfo {
  return {
    id: q.id,
    atMs: q.atMs,
    dir: q.dir,
    files: q.paths.length,
    bytes: q.bytes,
    paths: q.paths.slice(0, 100).map((p) => p.path),
    skipped: q.skipped.length,
  };
}

/** The quarantine of a tree, pruned to its bounds first (an unreadable dir lists nothing). */
function safeList(q: QuarantineOptions, tree: string): QuarantineEntry[] {
  try {
    pruneQuarantine(q);
    return listQuarantine(q, tree);
  } catch {
    return [];
  }
}
