/**
 * Platform converge on the master: `platform.verify` scans the canonical tree and converges every
 * server that hosts the platform (each cluster member, in parallel); `platform.converge` brings
 * one server back to the desired tree. Self-healing is level-triggered (selfheal.ts, deciding with
 * reconcile.ts): a loop compares desired vs observed for every (platform, server) on a timer and
 * whenever an agent reports (hello, drift check) or a converge it started ends, and queues the
 * converges that are missing — with backoff for a pair that keeps failing and a cap on how many
 * run at once. With `--live`, a change under the canonical tree queues a verify, debounced. The
 * registry is registryscan.ts; the task-log lines convergelog.ts.
 */
import { formatBytes as human, fail, isSpokeError, type Logger, type Manifest, STREAM_TREE_CAPABILITY } from '@spoke/shared';
import type { AgentHub, HelloEvent } from '../servers/hub.js';
import type { ConvergeReport } from '@spoke/shared';
import type { PlatformBuilder } from './build.js';
import type { Namespace } from '../namespace/namespace.js';
import type { TaskContext, TaskEngine, TaskHandler } from '../tasks/engine.js';
import type { TreeStore } from './trees.js';
import type { PlatformInfo } from '../types.js';
import { conflictAdvice, configOutcome, ProgressMeter, quarantineLine } from './convergelog.js';
import { ReportedDrift } from './drift.js';
import { diffRegistries, type Registry, type RegistryDiff } from './registry/index.js';
import { RegistryScanner } from './registryscan.js';
import { DEFAULT_POLICY, type ReconcilePolicy, type WaitingPair } from './reconcile.js';
import { SelfHeal } from './selfheal.js';
import { NO_METRICS, type MasterMetrics } from '../health/metrics.js';
import { observeFirst } from './precheck.js';
import type { TreeFeeds } from './streamtree.js';

/** For the site tasks and the operator API, which import them from here. */
export { conflictAdvice, configOutcome } from './convergelog.js';

/** Totals of one converge across servers (stored as the task result). */
export interface ConvergeSummary {
  platform: string;
  rootHash: string;
  files: number;
  bytes: number;
  servers: ({ server: string } & ConvergeReport)[];
  sent: { files: number; bytes: number };
  reused: { files: number; bytes: number };
  ms: number;
}

/** Wires converge tasks and self-healing. */
export class PlatformSync {
  private readonly ns: Namespace;
  private readonly hub: AgentHub;
  private readonly tasks: TaskEngine;
  private readonly trees: TreeStore;
  private readonly log: Logger;
  private readonly builder: PlatformBuilder | undefined;
  private readonly feeds: TreeFeeds | undefined;
  private readonly metrics: MasterMetrics;
  private readonly liveDebounceMs: number;
  private readonly liveTimers = new Map<string, NodeJS.Timeout>();
  /** Each platform's registry, parsed again only when a file it is read from changed. */
  private readonly registries: RegistryScanner;
  /** Drift already reported on report-only platforms (see drift.ts). */
  private readonly reportedDrift = new ReportedDrift();
  /** The self-healing loop. */
  private readonly heal: SelfHeal;

  /** The settings files of a platform's sites the web group must read (set by the site tasks, which render them). */
  private webGroupFilesOf: (platform: string) => string[] = () => [];

  /** Who knows each platform's settings files (SiteTasks; it is built after this). */
  setWebGroupFiles(fn: (platform: string) => string[]): void {
    this.webGroupFilesOf = fn;
  }

  constructor(deps: {
    ns: Namespace;
    hub: AgentHub;
    tasks: TaskEngine;
    trees: TreeStore;
    log: Logger;
    builder?: PlatformBuilder;
    liveDebounceMs?: number;
    clock?: () => number;
    /** How often the reconcile loop runs without an event. @default 30000 */
    reconcileIntervalMs?: number;
    reconcilePolicy?: Partial<ReconcilePolicy>;
    /** Bytes sent vs reused per converge. @default NO_METRICS */
    metrics?: MasterMetrics;
    /** Streamed first syncs (streamtree.ts); absent: every converge goes by manifest and FetchBlobs. */
    feeds?: TreeFeeds;
  }) {
    this.metrics = deps.metrics ?? NO_METRICS;
    this.feeds = deps.feeds;
    this.builder = deps.builder;
    this.ns = deps.ns;
    this.hub = deps.hub;
    this.tasks = deps.tasks;
    this.trees = deps.trees;
    this.log = deps.log;
    this.heal = new SelfHeal({
      ns: deps.ns,
      hub: deps.hub,
      tasks: deps.tasks,
      log: deps.log,
      reportedDrift: this.reportedDrift,
      clock: deps.clock ?? Date.now,
      policy: { ...DEFAULT_POLICY, ...deps.reconcilePolicy },
      reconcileIntervalMs: deps.reconcileIntervalMs ?? 30_000,
    });
    this.registries = new RegistryScanner({ ns: deps.ns, trees: deps.trees });
    this.liveDebounceMs = deps.liveDebounceMs ?? 500;
    this.tasks.register('platform.verify', this.verifyHandler());
    this.tasks.register('platform.converge', this.verifyHandler());
    this.hub.events.on('hello', (e: HelloEvent) => this.heal.onObserved(e));
    this.hub.events.on('observed', (e: HelloEvent) => this.heal.onObserved(e));
    this.trees.onChange = (path) => this.onTreeChanged(path);
  }

  /** Queues a verify of a platform (scan + converge all its servers). */
  verify(name: string): ReturnType<TaskEngine['submit']> {
    const p = this.ns.getPlatform(name);
    return this.tasks.submit({ kind: 'platform.verify', entity: `platform:${p.name}`, params: { platform: p.name } });
  }

  /** Starts the reconcile loop (the master calls it once it serves). */
  startReconcile(): void {
    this.heal.startReconcile();
  }

  /** Runs the reconcile loop soon (coalesced): an event changed what the master knows. */
  wake(): void {
    this.heal.wake();
  }

  /** Pairs of a platform backing off after failed converges: server → next try. */
  retries(platform: string): Map<string, WaitingPair> {
    return this.heal.retries(platform);
  }

  /** One pass of the reconcile loop (see SelfHeal.reconcile); returns the tasks it queued. */
  reconcile(): number[] {
    return this.heal.reconcile();
  }

  private onTreeChanged(path: string): void {
    // Debounce first: a `git pull` reports thousands of paths, and the platform lookup below
    // needs doing once per burst, not once per event.
    clearTimeout(this.liveTimers.get(path));
    this.liveTimers.set(
      path,
      setTimeout(() => {
        this.liveTimers.delete(path);
        const p = this.ns.listPlatforms({ sites: false }).find((x) => x.path === path);
        if (!p?.live) return;
        const queued = this.tasks.list({ state: 'queued', entity: `platform:${p.name}` });
        if (!queued.some((t) => t.kind === 'platform.verify')) {
          this.log.info({ platform: p.name }, 'live change: queueing verify');
          this.tasks.submit({ kind: 'platform.verify', entity: `platform:${p.name}`, params: { platform: p.name, why: 'live' } });
        }
      }, this.liveDebounceMs),
    );
  }

  /**
   * Compares the registries of two verified platforms.
   * @throws SpokeError PLATFORM_NOT_FOUND, PLATFORM_NOT_VERIFIED
   */
  diff(from: string, to: string): RegistryDiff {
    const reg = (name: string): Registry => {
      const p = this.ns.getPlatform(name);
      if (!p.registryJson) throw fail('PLATFORM_NOT_VERIFIED', `platform ${name} has no registry yet; run: spoke platform verify ${name}`);
      return JSON.parse(p.registryJson) as Registry;
    };
    return diffRegistries(reg(from), reg(to));
  }

  /**
   * Converges a platform to every server that hosts it from inside another task that changed
   * files under its canonical tree and holds the platform's lock (the site tasks): `paths` (relative
   * to the platform root) are re-read first, then it runs like a verify without the build: scan,
   * converge, registry, web server config.
   * @throws SpokeError PLATFORM_NOT_FOUND, TREE_UNREADABLE, CONVERGE_FAILED, CLUSTER_NEEDS_MEMBER
   */
  async converge(ctx: TaskContext, name: string, paths: string[] = []): Promise<ConvergeSummary> {
    const p = this.ns.getPlatform(name);
    this.trees.touch(p.path, paths);
    // No separate re-observation first (precheck.ts): each server re-observes within its converge
    // command (`recheck`), so a server that stops answering makes this step wait for it the way
    // every site step waits for its agents, not fail between the two calls.
    return this.run(ctx, p, undefined, true, false, false);
  }

  /** Stops pending live timers and the reconcile loop. */
  close(): void {
    for (const t of this.liveTimers.values()) clearTimeout(t);
    this.liveTimers.clear();
    this.heal.close();
  }

  private verifyHandler(): TaskHandler {
    return async (ctx) => {
      const name = String(ctx.task.params.platform);
      const p = this.ns.getPlatform(name);
      const only = typeof ctx.task.params.server === 'string' ? ctx.task.params.server : undefined;
      const isVerify = ctx.task.kind === 'platform.verify';
      if (isVerify) this.ns.setPlatformStatus(name, 'verifying');
      try {
        // A makefile or git platform is built on the master the first time (an existing tree is
        // never rebuilt); a plain converge of one server never builds.
        if (isVerify && p.source.kind !== 'existing') {
          if (!this.builder) throw fail('INTERNAL', 'no platform builder configured');
          await this.builder.ensure(ctx, { platform: p.name, source: p.source, target: this.trees.hostPath(p.path) });
        }
        // Automatic converges (self-heal, live) only report drift on a report-only platform.
        const automatic = !isVerify || ctx.task.params.why === 'live';
        const summary = await this.run(ctx, p, only, isVerify, automatic && p.drift === 'report');
        if (isVerify || this.ns.getPlatform(name).status !== 'verifying') this.ns.setPlatformStatus(name, 'ready');
        return summary;
      } catch (e) {
        if (isVerify) this.ns.setPlatformStatus(name, 'failed');
        throw e;
      }
    };
  }

  /**
   * Asks each server to configure its web server for the platform (ConfigurePlatform) and logs
   * what it did. An agent that manages no web server (NO_HTTP_SERVICE) is skipped with a warning;
   * any other error is returned as a failure of that server.
   */
  private async configureWeb(ctx: TaskContext, p: PlatformInfo, servers: string[]): Promise<{ server: string; ok: boolean; msg: string }[]> {
    let kind = 'generic';
    try {
      const reg = this.ns.getPlatform(p.name).registryJson;
      if (reg) kind = (JSON.parse(reg) as Registry).kind || 'generic';
    } catch {
      // no registry: the generic template variables apply
    }
    return Promise.all(
      servers.map(async (server) => {
        const strip = (m: string) => (m.startsWith(`${server}: `) ? m.slice(server.length + 2) : m);
        try {
          const r = await this.hub.call(
            server,
            { type: 'configurePlatform', platform: p.name, tree: p.path, kind, pinnedImpl: this.ns.httpPin(server, p.server) },
            { signal: ctx.signal, timeoutMs: 3 * 60_000, log: ctx.log },
          );
          ctx.log(`${server}: ${r.impl} config ${r.path} ${configOutcome(r)}`);
          for (const f of r.fixed) ctx.log(`${server}: fixed ${f}`);
          for (const pr of r.problems) ctx.log(`${server}: ${pr}`, 'warn');
          return { server, ok: true, msg: '' };
        } catch (e) {
          if (ctx.signal.aborted) throw e;
          if (isSpokeError(e, 'NO_HTTP_SERVICE')) {
            ctx.log(`${server}: web server not configured: ${e.code}: ${strip(e.message)}`, 'warn');
            return { server, ok: true, msg: '' };
          }
          const msg = isSpokeError(e) ? `${e.code}: ${strip(e.message)}` : String(e);
          ctx.log(`${server}: ${msg}`, 'error');
          return { server, ok: false, msg };
        }
      }),
    );
  }

  /** True when `server` can take a streamed first sync of `path`: online, capability 15, holding nothing of it. */
  private streamable(server: string, path: string): boolean {
    return this.hub.isOnline(server) && this.hub.capabilityOf(server) >= STREAM_TREE_CAPABILITY && !this.ns.observed(server, path);
  }

  /** One server's converge of a platform's tree, logged; never throws but for a cancelled task. */
  private async convergeOn(
    ctx: TaskContext,
    p: PlatformInfo,
    server: string,
    how: { rootHash: string; recheck: boolean; stream: boolean; reportDrift: boolean },
  ): Promise<{ server: string; ok: true; r: ConvergeReport } | { server: string; ok: false; msg: string }> {
    try {
      const meter = new ProgressMeter(server);
      const r = await this.hub.call(
        server,
        {
          type: 'converge',
          tree: p.path,
          rootHash: how.rootHash,
          excludes: p.excludes,
          label: `platform ${p.name}`,
          webGroupFiles: this.webGroupFilesOf(p.name),
          recheck: how.recheck,
          reportDrift: how.reportDrift,
          ...(how.stream ? { stream: true } : {}),
        },
        {
          signal: ctx.signal,
          log: ctx.log,
          timeoutMs: 30 * 60_000,
          onProgress: (pr) => {
            const line = meter.line(pr, Date.now());
            if (line !== undefined) ctx.log(line);
          },
        },
      );
      this.ns.recordObserved(server, p.path, r.rootHash);
      this.metrics.converged(r.bytesFetched, r.bytesReused);
      for (const c of r.conflicts) ctx.log(`conflict: ${conflictAdvice(p.name, server, c)}`, 'warn');
      if (r.drift.total > 0) {
        const sample = [...r.drift.changed.map((x) => `~${x}`), ...r.drift.added.map((x) => `+${x}`), ...r.drift.removed.map((x) => `-${x}`)];
        ctx.log(`${server}: repaired drift in ${r.drift.total} path(s): ${sample.slice(0, 10).join(' ')}${r.drift.total > 10 ? ' …' : ''}`, 'warn');
      }
      if (r.quarantined) ctx.log(quarantineLine(server, r.quarantined), 'warn');
      this.reportedDrift.clear(p.name, server);
      ctx.log(
        r.inSync
          ? `${server}: in sync`
          : `${server}: +${r.added} ~${r.changed} -${r.removed}; sent ${r.filesFetched} files (${human(r.bytesFetched)}), reused ${r.filesReused} (${human(r.bytesReused)}) in ${r.ms} ms${r.streamed === true ? ', streamed as the master read the tree' : ''}`,
      );
      return { server, ok: true as const, r };
    } catch (e) {
      if (ctx.signal.aborted) throw e;
      const msg = isSpokeError(e) ? `${e.code}: ${e.message}` : String(e);
      if (isSpokeError(e, 'DRIFT_FOUND')) {
        this.reportedDrift.add(p.name, server, this.ns.observed(server, p.path) ?? '');
        ctx.log(
          `${server}: ${msg}. Platform ${p.name} reports drift (--drift report): look at it on ${server}, then repair with: spoke platform verify ${p.name}`,
          'warn',
        );
        return { server, ok: false as const, msg };
      }
      ctx.log(`${server}: ${msg}`, 'error');
      return { server, ok: false as const, msg };
    } finally {
      // a streamed converge that ended (or never asked) no longer holds the walk back
      if (how.stream) this.feeds?.decline(p.path, server);
    }
  }

  private async run(
    ctx: TaskContext,
    p: PlatformInfo,
    only: string | undefined,
    rescan: boolean,
    reportDrift = false,
    /** A verify's servers re-observe while the master reads (precheck.ts); false: within the converge. */
    precheck = true,
  ): Promise<ConvergeSummary> {
    const started = Date.now();
    // A watched tree is current already; an unwatched one is re-walked (stat-cached) on verify.
    const known = this.trees.isLoaded(p.path);
    const targets = only ? [only] : this.ns.targets(p.server);
    // A first sync streamed as the master's walk reads the tree (streamtree.ts): to the servers
    // that hold nothing of a tree the master has not walked yet; the others after the walk.
    const streamTo = this.feeds !== undefined && !known ? targets.filter((s) => this.streamable(s, p.path)) : [];
    const feed = streamTo.length > 0 ? this.feeds?.open(p.path, this.trees.hostPath(p.path), streamTo) : undefined;
    // A verify's re-observation on the servers runs while the master reads (precheck.ts).
    const observe = targets.filter((s) => !streamTo.includes(s));
    const prechecking = rescan && precheck ? observeFirst(this.hub, observe, p.path, p.excludes, ctx.signal, ctx.log) : Promise.resolve(new Set<string>());
    const walking = this.trees.manifest(p.path, p.excludes, {
      rescan: rescan && known && !this.trees.isWatched(p.path),
      live: p.live,
      checkDirs: rescan,
      tap: feed?.tap,
    });
    if (feed !== undefined) {
      walking.then(
        (m) => void feed.end(m),
        (e: unknown) => feed.fail(e as Error),
      );
    }
    const streamed = new Map(streamTo.map((server) => [server, this.convergeOn(ctx, p, server, { rootHash: '', recheck: false, stream: true, reportDrift })]));
    for (const c of streamed.values()) c.catch(() => undefined); // awaited below, unless the walk fails first
    const manifest = await walking.finally(() => prechecking);
    const prechecked = await prechecking;
    const { files, bytes } = fileTotals(manifest);
    this.ns.setDesiredRootHash(p.name, manifest.rootHash);
    ctx.log(`${p.name}: ${files} files, ${human(bytes)}, root ${manifest.rootHash.slice(0, 12)}`);
    if (targets.length === 0) throw fail('CLUSTER_NEEDS_MEMBER', `${p.server} has no members`);
    // a new tree's watcher waits until its servers have it (see TreeStore.hold)
    const release = this.trees.hold(p.path);
    const converging = Promise.all(
      targets.map(
        (server) =>
          streamed.get(server) ??
          this.convergeOn(ctx, p, server, { rootHash: manifest.rootHash, recheck: rescan && !prechecked.has(server), stream: false, reportDrift }),
      ),
    );
    // The registry depends only on the tree: parse again only when a file it is read from
    // changed. It runs while the agents work (they do not depend on it) and is awaited below.
    const registry = rescan
      ? (async () => {
          await new Promise((r) => setImmediate(r));
          await this.registries.update(ctx, p, manifest);
        })()
      : Promise.resolve();
    registry.catch(() => undefined); // awaited below; no unhandled rejection meanwhile
    const results = await converging.finally(release);
    await registry;
    // Each server that converged renders, tests and loads the platform's web server config (after
    // the registry, which gives the kind): on a verify, and on a self-heal converge too, so a new
    // cluster member or a returning agent serves the platform without an operator. An unchanged
    // config costs one round trip and no reload. Failures fail the task like a converge.
    const web = await this.configureWeb(
      ctx,
      p,
      results.flatMap((r) => (r.ok ? [r.server] : [])),
    );
    const failed = results.filter((r) => !r.ok);
    const webFailed = web.filter((w) => !w.ok);
    if (failed.length || webFailed.length) {
      const parts = [
        ...(failed.length ? [`converge of ${p.name} failed on ${failed.map((f) => `${f.server} (${'msg' in f ? f.msg : ''})`).join(', ')}`] : []),
        ...(webFailed.length ? [`web server config of ${p.name} failed on ${webFailed.map((f) => `${f.server} (${f.msg})`).join(', ')}`] : []),
      ];
      throw fail('CONVERGE_FAILED', parts.join('; '));
    }
    const ok = results.flatMap((r) => (r.ok ? [{ server: r.server, ...r.r }] : []));
    const sum = (f: (r: ConvergeReport) => number) => ok.reduce((n, r) => n + f(r), 0);
    const summary: ConvergeSummary = {
      platform: p.name,
      rootHash: manifest.rootHash,
      files,
      bytes,
      servers: ok,
      sent: { files: sum((r) => r.filesFetched), bytes: sum((r) => r.bytesFetched) },
      reused: { files: sum((r) => r.filesReused), bytes: sum((r) => r.bytesReused) },
      ms: Date.now() - started,
    };
    ctx.log(
      `summary: ${ok.length} server(s); sent ${summary.sent.files} files (${human(summary.sent.bytes)}), reused ${summary.reused.files} (${human(summary.reused.bytes)}), ${summary.ms} ms`,
    );
    return summary;
  }
}

/** Files and bytes of a manifest, counted once per snapshot (a verify logs them; 20,000 entries cost ~5 ms). */
const totals = new WeakMap<Manifest, { files: number; bytes: number }>();
function fileTotals(m: Manifest): { files: number; bytes: number } {
  let t = totals.get(m);
  if (t === undefined) {
    t = { files: 0, bytes: 0 };
    for (const e of m.entries) {
      if (e.type === 'file') {
        t.files++;
        t.bytes += e.size;
      }
    }
    totals.set(m, t);
  }
  return t;
}
