/**
 * A renamed site's old name (`site migrate --domain NEW`) keeps answering for a grace period:
 * the switch keeps it as a *former name* of the site (a `domains` row with `redirect_until_ms`),
 * every ConfigureSite of the site sends it as a redirect-only name (its server block answers
 * `301 $scheme://NEW$request_uri`, the alias-redirect section of the site template), and nobody
 * can take it while it redirects (DOMAIN_TAKEN says until when and how to release it early:
 * `spoke site alias rm NEW OLD`).
 *
 * When the grace ends the name goes: a `site verify` drops the site's expired former names in its
 * first step and configures the vhost without them, and the sweeper below, one timer for every
 * site, drops expired names and queues that verify for each site that had one. The grace is
 * `--redirect-old-for DURATION` on the migrate (DEFAULT_REDIRECT_OLD_FOR_S; `0`: the old name is
 * free at once, as before).
 */
import { fail, isSpokeError, type Logger } from '@spoke/shared';
import type { Namespace } from '../namespace/namespace.js';
import type { TaskContext } from '../tasks/engine.js';
import type { Step } from '../tasks/steps.js';
import type { Clock, SiteInfo, TaskInfo } from '../types.js';

/** How long the old name redirects after a rename unless the migrate says otherwise: 30 days. */
export const DEFAULT_REDIRECT_OLD_FOR_S = 30 * 86_400;

/** The former names of a site still in their grace at `nowMs` (what ConfigureSite redirects). */
export function redirectingNames(s: SiteInfo, nowMs: number): string[] {
  return (s.formerNames ?? []).filter((f) => f.untilMs > nowMs).map((f) => f.name);
}

/**
 * Drops the former names of `domain` whose grace ended by `nowMs` (the first step of a site
 * verify); logs each. Returns the names dropped.
 */
export function dropExpiredFormerNames(ns: Pick<Namespace, 'getSite' | 'dropFormerName'>, ctx: TaskContext, domain: string, nowMs: number): string[] {
  const s = ns.getSite(domain);
  const gone = (s.formerNames ?? []).filter((f) => f.untilMs <= nowMs).map((f) => f.name);
  for (const name of gone) {
    if (ns.dropFormerName(s.domain, name)) ctx.log(`${name}, the old name of ${s.domain}, no longer redirects (its grace ended); the name is free`);
  }
  return gone;
}

/** What the sweeper needs. */
export interface FormerNameSweeperDeps {
  ns: Pick<Namespace, 'expiredFormerNames' | 'dropFormerName'>;
  /** Queues `site.verify` of a site (SiteTasks.verify). */
  verify: (domain: string) => TaskInfo;
  clock: Clock;
  log: Logger;
  /** Time between ticks. @default 60000 */
  tickMs?: number;
}

/** Drops expired former names on a timer and has their sites' vhosts written without them. */
export class FormerNameSweeper {
  private timer: NodeJS.Timeout | null = null;

  constructor(private readonly deps: FormerNameSweeperDeps) {}

  /** Starts the timer (the first tick comes after tickMs). */
  start(): void {
    this.stop();
    this.timer = setInterval(() => {
      try {
        this.tick();
      } catch (e) {
        this.deps.log.error({ err: e }, 'former name sweep failed');
      }
    }, this.deps.tickMs ?? 60_000);
    this.timer.unref();
  }

  /** Stops the timer. */
  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  /**
   * One pass: every expired former name is dropped and its site's verify queued (once per site).
   * Returns the sites whose verify was queued.
   */
  tick(): string[] {
    const expired = this.deps.ns.expiredFormerNames(this.deps.clock());
    const sites = new Set<string>();
    for (const { name, site } of expired) {
      if (this.deps.ns.dropFormerName(site, name)) {
        this.deps.log.info({ site, name }, 'old name no longer redirects (grace ended)');
        sites.add(site);
      }
    }
    const queued: string[] = [];
    for (const site of sites) {
      try {
        const t = this.deps.verify(site);
        queued.push(site);
        this.deps.log.info({ site, task: t.id }, 'site verify queued to drop the old name from its vhost');
      } catch (e) {
        // A site being deleted or not installed: its vhost goes or is written by the next task anyway.
        this.deps.log.warn({ site, err: isSpokeError(e) ? `${e.code}: ${e.message}` : String(e) }, 'site verify not queued after its old name expired');
      }
    }
    return queued;
  }
}

/**
 * The migrate step after the old copy is gone: the renamed site's vhost is written again, now
 * with its old name as a redirect-only name (until then the old vhost held that name). Past the
 * point of no return: a failure says how to finish.
 */
export function redirectOldNameStep(
  t: { ns: Pick<Namespace, 'getSite'>; configure(ctx: TaskContext, domain: string, enabled: boolean): Promise<unknown> },
  oldDomain: string,
  newDomain: string,
  forS: number,
): Step {
  return {
    name: 'redirect-old-name',
    do: async (ctx) => {
      const s = t.ns.getSite(newDomain);
      const former = (s.formerNames ?? []).find((f) => f.name === oldDomain);
      if (!former) {
        ctx.log(forS === 0 ? `${oldDomain} is free (--redirect-old-for 0)` : `${oldDomain} no longer redirects to ${newDomain}`);
        return;
      }
      try {
        await t.configure(ctx, newDomain, s.status !== 'disabled');
      } catch (e) {
        const msg = isSpokeError(e) ? `${e.code}: ${e.message}` : e instanceof Error ? e.message : String(e);
        throw fail(
          isSpokeError(e) ? e.code : 'INTERNAL',
          `${msg}; the site already runs as ${newDomain}: run spoke site verify ${newDomain} to make ${oldDomain} redirect, or spoke site alias rm ${newDomain} ${oldDomain} to free it`,
        );
      }
      ctx.log(
        `${oldDomain} answers a 301 to http://${newDomain}/ until ${new Date(former.untilMs).toISOString()} (release it early: spoke site alias rm ${newDomain} ${oldDomain})`,
      );
    },
  };
}
