/**
 * The cron scheduler: one timer for every site (never one per site). Each tick asks `planCron`
 * (cron.ts) which sites are due and starts up to `concurrency` runs at once (default 4); a run
 * that ends makes room and the next tick (or the end of the run) starts the next one. A run sends
 * `siteCron` to ONE web server of the site's platform — on a cluster, the online members take
 * turns (the one after the last run's server) — and records the outcome in the bounded history
 * (cronstore.ts), not as a task. `site cron DOMAIN` (runNow) uses the same path with trigger
 * `manual`; a run already going for that site is joined, not doubled.
 */
import { fail, isSpokeError, type Logger } from '@spoke/shared';
import type { CallOptions } from '../servers/hub.js';
import type { AgentCommand, AgentCommandResults } from '@spoke/shared';
import type { Namespace } from '../namespace/namespace.js';
import type { Clock, SiteInfo } from '../types.js';
import { CRON_KINDS, collectDueCron, cronSkipReason, nextCronRun, sortDueCron, type CronSite, type DueCron } from './cron.js';
import type { CronRunInfo, CronStore, CronTrigger } from './cronstore.js';
import { NO_METRICS, type MasterMetrics } from '../health/metrics.js';

/** What the scheduler needs of the agent hub. */
export interface CronHub {
  isOnline(server: string): boolean;
  call<K extends AgentCommand['type']>(server: string, cmd: Extract<AgentCommand, { type: K }>, opts?: CallOptions): Promise<AgentCommandResults[K]>;
}

/** What `site show` / `site ls` print about a site's cron. */
export interface SiteCronInfo {
  intervalS: number;
  /** 0 = it does not run (see skipped); at or before now = due. */
  nextRunMs: number;
  last: CronRunInfo | null;
  /** Failed runs in a row, up to the last run. */
  failures: number;
  /** Why the scheduler does not run it ("" = it does). */
  skipped: string;
}

/** What a manual run returns. */
export interface ManualCronRun {
  run: CronRunInfo;
  /** A run of the site was going already (scheduled): this is its outcome. */
  joined: boolean;
}

/** What the scheduler needs. */
export interface CronSchedulerDeps {
  ns: Pick<Namespace, 'cronSites' | 'platformKinds' | 'getSite' | 'getPlatform' | 'listPlatforms' | 'targets'>;
  hub: CronHub;
  runs: CronStore;
  clock: Clock;
  log: Logger;
  /** Sites with a site task running (their cron waits). @default none */
  busySites?: () => ReadonlySet<string>;
  /** Cron runs at once. @default 4 */
  concurrency?: number;
  /** Time between ticks. @default 10000 */
  tickMs?: number;
  /** Sites read per slice of a tick. @default CRON_SLICE */
  slice?: number;
  /** How long one run may take on the agent. @default 15 min */
  runTimeoutMs?: number;
  /** Cron results. @default NO_METRICS */
  metrics?: MasterMetrics;
}

/** Sites read per slice of a tick (~5 ms of the event loop each). */
const CRON_SLICE = 2000;

/** Runs sites' cron on schedule and on demand. */
export class CronScheduler {
  private readonly deps: CronSchedulerDeps;
  private readonly concurrency: number;
  private readonly running = new Map<string, { trigger: CronTrigger; startedMs: number; done: Promise<CronRunInfo | null> }>();
  private timer: NodeJS.Timeout | null = null;
  /** The timer runs (start() called, stop() not yet). */
  private ticking = false;
  /** stop() was called: no run starts any more. */
  private closed = false;
  /**
   * When each site's last run started: read from the history once, then kept by the runs (rows
   * are the truth, memory only schedules; reading the newest row of 10,000 sites cost ~100 ms a
   * tick, measured).
   */
  private lastStarts: Map<string, number> | null = null;
  /** The last tick left due sites waiting for a free slot: a run that ends ticks at once. */
  private backlog = false;
  /** The pass in progress, and the one asked for meanwhile. */
  private pass: Promise<string[]> | null = null;
  private passAgain: Promise<string[]> | null = null;

  constructor(deps: CronSchedulerDeps) {
    this.deps = deps;
    this.concurrency = deps.concurrency ?? 4;
  }

  /** Starts the timer (the first tick comes after tickMs). */
  start(): void {
    this.ticking = true;
    this.arm();
  }

  /** Stops the timer and waits for the runs in flight. */
  async stop(): Promise<void> {
    this.ticking = false;
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    await this.pass?.catch(() => undefined);
    await Promise.allSettled([...this.running.values()].map((r) => r.done));
  }

  private arm(): void {
    if (!this.ticking) return;
    if (this.timer) clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      this.timer = null;
      this.tick()
        .catch((e: unknown) => this.deps.log.error({ err: e }, 'cron tick failed'))
        .finally(() => this.arm());
    }, this.deps.tickMs ?? 10_000);
    this.timer.unref();
  }

  /** Sites whose cron runs now. */
  inFlight(): string[] {
    return [...this.running.keys()].sort();
  }

  /**
   * One pass: starts the due sites' runs, up to the concurrency limit (the rest wait for the next
   * pass). Resolves to the sites started. The sites are read in slices of CRON_SLICE with the
   * event loop free between them (100,000 sites in one piece held it ~0.3 s every tick, and every
   * agent command waited behind it; issue 20). A pass asked for while one runs is run once after
   * it (however many asked).
   */
  tick(): Promise<string[]> {
    if (!this.pass) {
      this.pass = this.planAndStart().finally(() => (this.pass = null));
      return this.pass;
    }
    const again = () => {
      this.passAgain = null;
      return this.tick();
    };
    return (this.passAgain ??= this.pass.then(again, again));
  }

  private async planAndStart(): Promise<string[]> {
    if (this.closed || this.concurrency - this.running.size <= 0) return [];
    const platforms = [...this.deps.ns.platformKinds()].filter(([, kind]) => CRON_KINDS.has(kind));
    if (platforms.length === 0) return []; // e.g. none verified yet: no site to read
    const busy = new Set([...this.running.keys(), ...(this.deps.busySites?.() ?? [])]);
    this.lastStarts ??= this.deps.runs.lastStarts();
    const now = this.deps.clock();
    const due: DueCron[] = [];
    const running: string[] = [];
    const limit = this.deps.slice ?? CRON_SLICE;
    let read = 0; // sites read since the event loop last ran (a query counts as one)
    for (const [platform, kind] of platforms) {
      for (let after = 0; ;) {
        if (read >= limit) {
          read = 0;
          await new Promise((r) => setImmediate(r));
          if (this.closed) return [];
        }
        const slice = this.deps.ns.cronSites(platform, kind, { after, limit });
        read += slice.length + 1;
        collectDueCron(slice, now, busy, this.lastStarts, due, running);
        if (slice.length < limit) break;
        after = slice[slice.length - 1]?.row ?? 0;
      }
    }
    // runs may have started and ended while the slices were read
    const ready = sortDueCron(due).filter((d) => !this.running.has(d));
    const started = ready.slice(0, Math.max(0, this.concurrency - this.running.size));
    // Not awaited: a run is tracked in `running` (stop() waits for it) and records its own outcome.
    // Only a fault outside the agent call (the history write) rejects it: said here, not lost.
    for (const domain of started) {
      this.begin(domain, 'schedule').catch((e: unknown) => this.deps.log.error({ err: e, site: domain }, 'cron run not recorded'));
    }
    const waiting = ready.length - started.length;
    // Said once when a queue forms (e.g. after the master was down), not at every run's end.
    if (waiting > 0 && !this.backlog) this.deps.log.info({ started: started.length, waiting, concurrency: this.concurrency }, 'cron runs wait for a free slot');
    else if (waiting === 0 && this.backlog) this.deps.log.info('cron queue drained');
    this.backlog = waiting > 0;
    return started;
  }

  /**
   * Runs a site's cron now and waits for it (a run going already is joined).
   * @throws SpokeError SITE_NOT_FOUND, SITE_DISABLED, SITE_NOT_INSTALLED, PLATFORM_KIND_UNSUPPORTED
   */
  async runNow(domain: string): Promise<ManualCronRun> {
    const s = this.deps.ns.getSite(domain);
    const going = this.running.get(s.domain);
    if (going) {
      const run = await going.done;
      if (run) return { run, joined: true };
    }
    if (s.status === 'disabled') {
      throw fail('SITE_DISABLED', `site ${s.domain} is disabled: its cron does not run (nothing was run; enable it first: spoke site enable ${s.domain})`);
    }
    if (s.status !== 'installed') throw fail('SITE_NOT_INSTALLED', `site ${s.domain} is ${s.status}; cron runs only on installed sites`);
    const kind = this.kindOf(s);
    if (!CRON_KINDS.has(kind)) {
      throw fail(
        'PLATFORM_KIND_UNSUPPORTED',
        `platform ${s.platform} is ${kind || 'not verified'}: Spoke runs cron for Drupal 7/8+, WordPress and MediaWiki sites`,
      );
    }
    const run = await this.begin(s.domain, 'manual');
    if (!run) throw fail('SITE_NOT_FOUND', `site ${s.domain} was deleted while its cron ran`);
    return { run, joined: false };
  }

  /** What `site show` prints about the site's cron. `last` may be passed in (site ls reads them all at once). */
  info(site: SiteInfo, last: CronRunInfo | null | undefined = undefined, kind?: string): SiteCronInfo {
    const lastRun = last === undefined ? this.deps.runs.last(site.domain) : last;
    const cs: CronSite = {
      domain: site.domain,
      status: site.status,
      kind: kind ?? this.kindOf(site),
      intervalS: site.cronIntervalS,
      installedMs: site.installedMs,
      createdMs: site.createdMs,
    };
    return {
      intervalS: site.cronIntervalS,
      nextRunMs: nextCronRun(cs, lastRun?.startedMs, this.deps.clock()),
      last: lastRun,
      failures: lastRun?.failures ?? 0,
      skipped: cronSkipReason(cs),
    };
  }

  /** A site's recent runs, newest first. @throws SpokeError SITE_NOT_FOUND */
  history(domain: string): CronRunInfo[] {
    return this.deps.runs.list(this.deps.ns.getSite(domain).domain);
  }

  /** Every site's newest run (one history query), for the health summary. */
  lastRuns(): CronRunInfo[] {
    return [...this.deps.runs.lastAll().values()];
  }

  /** The cron info of many sites (one history query). */
  infos(sites: SiteInfo[]): Map<string, SiteCronInfo> {
    return this.infoReader()(sites);
  }

  /**
   * The cron info of sites a page at a time (`site ls`): the platforms' kinds read once (one
   * registry parse per platform, not a read per site), each page's last runs in one query over its
   * domain range.
   */
  infoReader(): (sites: SiteInfo[]) => Map<string, SiteCronInfo> {
    const kinds = this.deps.ns.platformKinds();
    return (sites) => {
      let first = '';
      let last = '';
      for (const s of sites) {
        if (!first || s.domain < first) first = s.domain;
        if (s.domain > last) last = s.domain;
      }
      const runs = sites.length ? this.deps.runs.lastBetween(first, last) : new Map<string, CronRunInfo>();
      return new Map(sites.map((s) => [s.domain, this.info(s, runs.get(s.domain) ?? null, kinds.get(s.platform) ?? '')]));
    };
  }

  private kindOf(site: Pick<SiteInfo, 'platform'>): string {
    try {
      return registryKind(this.deps.ns.getPlatform(site.platform).registryJson);
    } catch {
      return '';
    }
  }

  private begin(domain: string, trigger: CronTrigger): Promise<CronRunInfo | null> {
    const startedMs = this.deps.clock();
    this.lastStarts?.set(domain, startedMs);
    const done = this.execute(domain, trigger, startedMs).finally(() => {
      this.running.delete(domain);
      // A slot is free: start the next waiting site without waiting for the timer.
      if (!this.closed && this.backlog) this.tick().catch((e: unknown) => this.deps.log.error({ err: e }, 'cron tick failed'));
    });
    this.running.set(domain, { trigger, startedMs, done });
    return done;
  }

  /** One run: pick a server, send siteCron, record the outcome (never throws). */
  private async execute(domain: string, trigger: CronTrigger, startedMs: number): Promise<CronRunInfo | null> {
    const log = this.deps.log.child({ site: domain, trigger });
    let server = '';
    let outcome: { ok: boolean; message: string; errorCode: string };
    try {
      const s = this.deps.ns.getSite(domain);
      const p = this.deps.ns.getPlatform(s.platform);
      const kind = this.kindOf(s);
      server = this.pickServer(p.server, this.deps.runs.last(domain)?.server ?? '');
      const r = await this.deps.hub.call(server, { type: 'siteCron', tree: p.path, domain, kind }, { timeoutMs: this.deps.runTimeoutMs ?? 15 * 60_000 });
      outcome = { ok: true, message: `${r.method}: ${r.message}`, errorCode: '' };
    } catch (e) {
      const code = isSpokeError(e) ? e.code : 'INTERNAL';
      outcome = { ok: false, message: e instanceof Error ? e.message : String(e), errorCode: code };
      if (!isSpokeError(e)) log.error({ err: e }, 'cron run failed');
    }
    const durationMs = Math.max(0, this.deps.clock() - startedMs);
    const run = this.deps.runs.record({ domain, startedMs, durationMs, server, trigger, ...outcome });
    (this.deps.metrics ?? NO_METRICS).cronRun(outcome.ok ? 'ok' : outcome.errorCode, durationMs / 1000);
    if (outcome.ok) log.info({ server, ms: durationMs }, 'cron ran');
    else log.warn({ server, code: outcome.errorCode, msg: outcome.message, failures: run?.failures }, 'cron failed');
    return run;
  }

  /**
   * The web server a run goes to: the platform's server, or on a cluster the first online member
   * after `lastServer` (sorted names, wrapping), so members take turns.
   * @throws SpokeError AGENT_OFFLINE (no member online)
   */
  private pickServer(platformServer: string, lastServer: string): string {
    const members = [...this.deps.ns.targets(platformServer)].sort();
    const start = members.indexOf(lastServer) + 1;
    const order = [...members.slice(start), ...members.slice(0, start)];
    const online = order.find((m) => this.deps.hub.isOnline(m));
    if (!online) {
      throw fail('AGENT_OFFLINE', `no web server of ${platformServer} is online (${members.join(', ')} offline); cron did not run`);
    }
    return online;
  }
}

/** A platform's kind from its registry JSON ("" when it has none or it does not parse). */
function registryKind(reg: string | null): string {
  try {
    return reg ? String((JSON.parse(reg) as { kind?: unknown }).kind ?? '') : '';
  } catch {
    return '';
  }
}
