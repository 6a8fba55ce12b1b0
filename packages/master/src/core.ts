/**
 * The master's core: the components one operator call may span (namespace, enrollment, tasks,
 * agent hub), plus the operations that touch more than one of them.
 */
import { fail, SPOKE_VERSION, type Logger } from '@spoke/shared';
import type { Enroller } from './servers/ca.js';
import type { AgentHub } from './servers/hub.js';
import type { Namespace } from './namespace/namespace.js';
import type { TaskEngine } from './tasks/engine.js';
import type { Clock, PlatformInfo, ServerInfo, TaskInfo } from './types.js';
import { verifyServerTask } from './servers/verify.js';
import type { TreeStore } from './platforms/trees.js';
import { PlatformSync } from './platforms/converge.js';
import { TreeFeeds } from './platforms/streamtree.js';
import { EventFeed } from './events.js';
import { PlatformBuilder } from './platforms/build.js';
import { checkMakefileSource } from './platforms/buildplan.js';
import { dirname, join } from 'node:path';
import type { BuildLimits } from './platforms/buildfs.js';
import type { Db } from './namespace/store.js';
import { SiteTasks } from './sites/tasks.js';
import { PlatformRemover, type RemovePlatformInput } from './platforms/platformremove.js';
import { Leftovers } from './servers/membership.js';
import { OperatorCerts } from './servers/operators.js';
import { platformStatus, type PlatformStatusInfo } from './platforms/status.js';
import { FormerNameSweeper } from './sites/formernames.js';
import { CronScheduler } from './sites/cronrunner.js';
import { CronStore } from './sites/cronstore.js';
import { SiteHttps } from './sites/https/https.js';
import { HttpsStore } from './sites/https/store.js';
import { AcmeIssuer } from './sites/https/acme.js';
import { NO_METRICS, type MasterMetrics } from './health/metrics.js';
import { healthSummary, type HealthSummary } from './health/summary.js';

/** What `spoke status` shows. */
export interface MasterStatusInfo {
  version: string;
  listen: string | null;
  stateDir: string;
  root: string;
  caFingerprint: string;
  startedMs: number;
  servers: number;
  serversOnline: number;
  platforms: number;
  sites: number;
  tasksQueued: number;
  tasksRunning: number;
  /** One line per site whose certificate renewal keeps failing. */
  httpsFailing: string[];
  /** "" = no ACME directory configured. */
  acmeDirectory: string;
  /** Agents offline, tasks failing, anything stuck, cron failing (health/summary.ts). */
  health: HealthSummary;
}

/** The master's components and cross-cutting operations. */
export class Core {
  readonly ns: Namespace;
  readonly enroller: Enroller;
  readonly tasks: TaskEngine;
  readonly hub: AgentHub;
  readonly trees: TreeStore;
  readonly sync: PlatformSync;
  /** Streamed first syncs under way (StreamTree; platforms/streamtree.ts). */
  readonly feeds: TreeFeeds;
  /** Task and agent events for `spoke events`. */
  readonly events: EventFeed;
  /** The site tasks (install, verify, disable/enable, aliases, delete). */
  readonly sites: SiteTasks;
  /** Sites' cron: the scheduler (started by master.ts), `site cron`, the history. */
  readonly cron: CronScheduler;
  /** Renamed sites' old names: dropped when their grace ends (started by master.ts). */
  readonly formerNames: FormerNameSweeper;
  /** HTTPS of sites: `site https`, the certificate each vhost carries, the renewer (started by master.ts). */
  readonly https: SiteHttps;
  /** `platform rm` (platform.remove tasks). */
  private readonly remover: PlatformRemover;
  /** Trees servers still hold for platforms they no longer serve (server.forget tasks). */
  readonly leftovers: Leftovers;
  /** Operator certificates issued, listed and revoked. */
  readonly operators: OperatorCerts;
  /** Builds makefile and git platforms. */
  private readonly builder: PlatformBuilder;
  private readonly log: Logger;
  private readonly clock: Clock;
  private readonly info: { stateDir: string; root: string; startedMs: number; listen: string | null; minFreeBytes: number };
  /** Fault injection (tests): blob streams still to corrupt. */
  readonly faults: { corruptBlobs: number };

  constructor(deps: {
    ns: Namespace;
    enroller: Enroller;
    tasks: TaskEngine;
    hub: AgentHub;
    trees: TreeStore;
    log: Logger;
    clock: Clock;
    info: { stateDir: string; root: string; startedMs: number; listen: string | null; minFreeBytes: number };
    /** The store (the site tasks record their steps in the task rows). */
    db: Db;
    faults?: { corruptBlobs: number };
    /** Environment for the build tools (git, patch). @default {} (PATH unset: tools not found) */
    buildEnv?: Record<string, string | undefined>;
    /** Cron runs at once and time between scheduler ticks. @default 4, 10000 */
    cron?: { concurrency?: number; tickMs?: number };
    /** The reconcile loop's interval and first backoff (platforms/reconcile.ts). */
    reconcile?: { intervalMs?: number; backoffMs?: number };
    /** Directories local build sources may come from. @default [] (each makefile's own directory) */
    buildSourceDirs?: readonly string[];
    /** Per-build limits. @default DEFAULT_BUILD_LIMITS (buildfs.ts) */
    buildLimits?: Partial<BuildLimits>;
    /** HTTPS: the ACME directory (null: none), the renewer's clock and tick. @default no ACME, clock, 60000 */
    https?: { acme?: { directoryUrl: string; email: string; caPem: string } | null; clock?: Clock; tickMs?: number };
    /** Converge bytes and cron results. @default NO_METRICS */
    metrics?: MasterMetrics;
    /** Stream first syncs to agents that can take them (StreamTree). @default true */
    streamFirstSync?: boolean;
  }) {
    const metrics = deps.metrics ?? NO_METRICS;
    this.faults = deps.faults ?? { corruptBlobs: 0 };
    this.ns = deps.ns;
    this.enroller = deps.enroller;
    this.tasks = deps.tasks;
    this.hub = deps.hub;
    this.trees = deps.trees;
    this.log = deps.log;
    this.clock = deps.clock;
    this.info = deps.info;
    this.tasks.register('server.verify', verifyServerTask({ ns: this.ns, hub: this.hub, minFreeBytes: this.info.minFreeBytes }));
    const builder = new PlatformBuilder({
      env: deps.buildEnv ?? {},
      log: this.log.child({ component: 'master.build' }),
      sourceDirs: deps.buildSourceDirs ?? [],
      stateDir: this.info.stateDir,
      limits: deps.buildLimits ?? {},
    });
    this.builder = builder;
    this.events = new EventFeed({ tasks: this.tasks, hub: this.hub, clock: this.clock });
    this.feeds = new TreeFeeds({ log: this.log.child({ component: 'master.streamtree' }) });
    this.sync = new PlatformSync({
      feeds: deps.streamFirstSync === false ? undefined : this.feeds,
      ns: this.ns,
      hub: this.hub,
      tasks: this.tasks,
      trees: this.trees,
      log: this.log.child({ component: 'master.converge' }),
      builder,
      metrics,
      clock: this.clock,
      reconcileIntervalMs: deps.reconcile?.intervalMs,
      reconcilePolicy: deps.reconcile?.backoffMs ? { baseBackoffMs: deps.reconcile.backoffMs } : {},
    });
    this.sites = new SiteTasks({
      ns: this.ns,
      hub: this.hub,
      tasks: this.tasks,
      trees: this.trees,
      sync: this.sync,
      db: deps.db,
      trashDir: join(this.info.stateDir, 'trash'),
    });
    this.sync.setWebGroupFiles((platform) => this.sites.platformSettingsFiles(platform));
    const acme = deps.https?.acme;
    this.https = new SiteHttps({
      sites: this.sites.ops,
      tasks: this.tasks,
      db: deps.db,
      store: new HttpsStore({ db: deps.db, dir: join(this.info.stateDir, 'tls') }),
      acme: acme ? new AcmeIssuer({ ...acme, accountKeyFile: join(this.info.stateDir, 'acme', 'account.key') }) : null,
      clock: deps.https?.clock ?? this.clock,
      log: this.log.child({ component: 'master.https' }),
      tickMs: deps.https?.tickMs,
    });
    this.cron = new CronScheduler({
      ns: this.ns,
      hub: this.hub,
      runs: new CronStore({ db: deps.db }),
      clock: this.clock,
      log: this.log.child({ component: 'master.cron' }),
      busySites: () =>
        new Set(
          this.tasks
            .list({ state: 'running' })
            .filter((t) => t.entity.startsWith('site:'))
            .map((t) => t.entity.slice('site:'.length)),
        ),
      concurrency: deps.cron?.concurrency,
      tickMs: deps.cron?.tickMs,
      metrics,
    });
    this.formerNames = new FormerNameSweeper({
      ns: this.ns,
      verify: (domain) => this.sites.verify(domain),
      clock: this.clock,
      log: this.log.child({ component: 'master.formernames' }),
    });
    this.operators = new OperatorCerts({ db: deps.db, clock: this.clock });
    this.leftovers = new Leftovers({
      db: deps.db,
      ns: this.ns,
      hub: this.hub,
      tasks: this.tasks,
      clock: this.clock,
      log: this.log.child({ component: 'master.membership' }),
    });
    this.remover = new PlatformRemover({
      leftovers: this.leftovers,
      ns: this.ns,
      hub: this.hub,
      tasks: this.tasks,
      trees: this.trees,
      sites: this.sites,
      log: this.log.child({ component: 'master.platform' }),
      trashDir: join(this.info.stateDir, 'trash', 'platforms'),
    });
  }

  /**
   * Registers a platform and, unless asked not to, queues its verify (build if needed, scan,
   * converge). A makefile is read and checked first (includes from its directory), so one that
   * cannot build is refused before anything is registered, and so is an existing tree that is not
   * there to verify (with `verify` off it may be put there later).
   * @throws SpokeError as Namespace.addPlatform, and CONFIG_INVALID, MAKEFILE_NEEDS_DRUPAL_ORG,
   *   TREE_UNREADABLE
   */
  async addPlatform(input: Parameters<Namespace['addPlatform']>[0], verify: boolean): Promise<{ platform: PlatformInfo; task: TaskInfo | null }> {
    if (input.source.kind === 'makefile' && input.source.makefile.trim()) await checkMakefileSource(input.source, this.builder.policy);
    const platform = this.ns.addPlatform(input, () => {
      if (input.source.kind === 'existing' && verify) this.trees.canonical(input.path);
    });
    const task = verify ? this.sync.verify(platform.name) : null;
    return { platform, task };
  }

  /**
   * Removes the build staging dirs (`.spoke-build-*`) an interrupted build left beside any
   * platform's path; run once at start-up before tasks start. Returns the paths removed.
   */
  async sweepBuilds(): Promise<string[]> {
    return this.builder.sweepInterrupted(this.ns.listPlatforms({ sites: false }).map((p) => dirname(this.trees.hostPath(p.path))));
  }

  /**
   * Queues `platform.remove` (platformremove.ts): with `force` the site deletes first, then
   * ForgetPlatform on every server, then the record (and with `deleteFiles` the trees).
   * @throws SpokeError PLATFORM_NOT_FOUND, PLATFORM_HAS_SITES (without force)
   */
  removePlatform(input: RemovePlatformInput): TaskInfo {
    return this.remover.submit(input);
  }

  /** Desired vs observed per server (platforms/status.ts; a read, it writes nothing). */
  platformStatus(name: string): Promise<PlatformStatusInfo> {
    return platformStatus({ ns: this.ns, trees: this.trees, hub: this.hub, log: this.log }, name);
  }

  /** Sets the address the TLS listener is bound to (known after bind). */
  setListen(listen: string): void {
    this.info.listen = listen;
  }

  /** Queues `server.verify` on a server or cluster. @throws SpokeError SERVER_NOT_FOUND */
  verifyServer(name: string): TaskInfo {
    const s = this.ns.getServer(name);
    if (s.kind === 'agent' && !s.enrolled) throw fail('NOT_ENROLLED', `${name} has no enrolled agent`);
    return this.tasks.submit({ kind: 'server.verify', entity: `server:${name}`, params: { server: name } });
  }

  /**
   * Adds a member to a cluster; the reconcile loop, woken now, converges the cluster's platforms
   * to it (a connected agent says no new hello, so nothing else would).
   */
  addClusterMember(cluster: string, member: string): ServerInfo {
    const s = this.ns.addClusterMember(cluster, member);
    this.sync.wake();
    return s;
  }

  /** Creates a cluster (its members converge to its platforms once it has some). */
  createCluster(name: string, members: string[]): ServerInfo {
    const s = this.ns.createCluster(name, members);
    this.sync.wake();
    return s;
  }

  /**
   * Takes a member out of a cluster; the cluster's platforms become leftovers on it (config and
   * tree state removed when it is online; the tree deleted only with `deleteFiles`).
   * Returns the cluster and the platforms left on the member.
   */
  removeClusterMember(cluster: string, member: string, deleteFiles: boolean): { cluster: ServerInfo; left: PlatformInfo[]; task: TaskInfo | undefined } {
    const left = this.ns.platformsFor(member);
    const s = this.ns.removeClusterMember(cluster, member);
    for (const p of left) this.leftovers.add({ server: member, path: p.path, platform: p.name, deleteFiles });
    return { cluster: s, left, task: this.leftovers.queue(member) };
  }

  /** Removes a server, revokes its certificate and drops its connection. */
  removeServer(name: string): void {
    const members = this.ns.hasServer(name) ? this.ns.getServer(name).members : [];
    this.ns.removeServer(name);
    this.leftovers.forgetServer(name);
    this.hub.disconnect(name, fail('CERT_REVOKED', `server ${name} was removed; its certificate is revoked`));
    this.log.info({ server: name, detachedMembers: members }, 'server removed');
  }

  /** Numbers for `spoke status`. */
  status(): MasterStatusInfo {
    const c = this.ns.counts();
    const t = this.tasks.counts();
    return {
      version: SPOKE_VERSION,
      listen: this.info.listen,
      stateDir: this.info.stateDir,
      root: this.info.root,
      caFingerprint: this.enroller.caFingerprint,
      startedMs: this.info.startedMs,
      servers: c.servers,
      serversOnline: this.hub.connected().filter((s) => this.hub.isOnline(s)).length,
      platforms: c.platforms,
      sites: c.sites,
      tasksQueued: t.queued,
      tasksRunning: t.running,
      httpsFailing: this.https.failing(),
      acmeDirectory: this.https.acmeDirectory,
      health: healthSummary({
        now: this.clock(),
        agents: this.ns.listServers().flatMap((s) => (s.kind === 'agent' && s.enrolled ? [{ name: s.name, online: this.hub.isOnline(s.name) }] : [])),
        failed: this.tasks.list({ state: 'failed', limit: 50 }),
        running: this.tasks.list({ state: 'running', limit: 1000 }),
        queued: this.tasks.list({ state: 'queued', limit: 1000 }),
        cron: this.cron.lastRuns(),
      }),
    };
  }
}
