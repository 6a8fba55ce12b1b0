/**
 * Cron schedule rules, pure: intervals (`15m`, `1h`, `1d`, `off`), each site's offset inside its
 * interval (from a hash of its domain, so 10,000 hourly sites spread over the hour instead of
 * firing in the same second, and the same site fires at the same minute after every restart),
 * and `planCron`, which says which sites are due now. The scheduler (cronrunner.ts) runs what it
 * returns; nothing here reads a clock or the store.
 *
 * A site's slots are `offset + k × interval` (epoch-aligned). It is due when the latest slot at or
 * before `now` is later than its last run's start and its install time, so a run missed
 * while the master was down happens once at the next tick, not once per missed slot, and a manual
 * run after a slot satisfies that slot.
 */
import { createHash } from 'node:crypto';
import { fail } from '@spoke/shared/client';
import type { SiteStatus } from '../types.js';

/** The interval of a new site. */
export const DEFAULT_CRON_INTERVAL_S = 3600;
/** Shortest interval accepted (cron on every site every minute is load, not maintenance). */
export const MIN_CRON_INTERVAL_S = 5 * 60;
/** Longest interval accepted. */
export const MAX_CRON_INTERVAL_S = 7 * 86_400;
/** Registry kinds Spoke runs cron for. */
export const CRON_KINDS: ReadonlySet<string> = new Set(['drupal7', 'drupal8', 'wordpress', 'mediawiki']);

const UNIT_S: Record<string, number> = { m: 60, h: 3600, d: 86_400 };

/**
 * Parses an interval: `15m`, `2h`, `1d`, or `off` (0). Whole minutes/hours/days only, between
 * 5m and 7d. @throws SpokeError INVALID_ARGUMENT
 */
export function parseCronInterval(text: string): number {
  const t = text.trim().toLowerCase();
  if (t === 'off') return 0;
  const m = /^(\d{1,6})([mhd])$/.exec(t);
  if (!m) throw fail('INVALID_ARGUMENT', `cron interval ${JSON.stringify(text)} is not an interval: use e.g. 15m, 1h, 1d, or off`);
  const s = Number(m[1]) * (UNIT_S[m[2] as string] as number);
  if (s < MIN_CRON_INTERVAL_S || s > MAX_CRON_INTERVAL_S) {
    throw fail('INVALID_ARGUMENT', `cron interval ${t} is out of range: between 5m and 7d, or off`);
  }
  return s;
}

/** `1h`, `15m`, `1d`, `90m`, `off`. */
export function formatCronInterval(seconds: number): string {
  if (seconds <= 0) return 'off';
  if (seconds % 86_400 === 0) return `${seconds / 86_400}d`;
  if (seconds % 3600 === 0) return `${seconds / 3600}h`;
  if (seconds % 60 === 0) return `${seconds / 60}m`;
  return `${seconds}s`;
}

/**
 * 48 bits of SHA-256 of each domain seen, memoized: a tick plans every site, and hashing 10,000
 * domains each time cost ~70-150 ms of a tick (measured). A pure function's cache, bounded.
 */
const domainHashes = new Map<string, number>();

function domainHash(domain: string): number {
  let h = domainHashes.get(domain);
  if (h === undefined) {
    h = createHash('sha256').update(domain).digest().readUIntBE(0, 6);
    if (domainHashes.size >= 1_000_000) domainHashes.clear();
    domainHashes.set(domain, h);
  }
  return h;
}

/** The site's offset inside its interval, in ms: a hash of the domain, the same on every master. */
export function cronOffsetMs(domain: string, intervalMs: number): number {
  return domainHash(domain) % intervalMs;
}

/** The latest slot at or before `t`. */
export function latestSlot(domain: string, intervalS: number, t: number): number {
  const iv = intervalS * 1000;
  const off = cronOffsetMs(domain, iv);
  return off + Math.floor((t - off) / iv) * iv;
}

/** The first slot strictly after `t`. */
export function nextSlotAfter(domain: string, intervalS: number, t: number): number {
  return latestSlot(domain, intervalS, t) + intervalS * 1000;
}

/** What the planner needs of a site. */
export interface CronSite {
  domain: string;
  status: SiteStatus;
  /** Registry kind of its platform ("" = never verified). */
  kind: string;
  /** 0 = off. */
  intervalS: number;
  /** When it was installed (its first slot comes after this); null → createdMs. */
  installedMs: number | null;
  createdMs: number;
}

/** Why the scheduler does not run a site's cron ("" = it does). */
export function cronSkipReason(site: Pick<CronSite, 'status' | 'kind' | 'intervalS'>): string {
  if (site.status === 'disabled') return 'the site is disabled';
  if (site.status !== 'installed') return `the site is ${site.status}`;
  if (!CRON_KINDS.has(site.kind)) return `Spoke runs no cron for ${site.kind || 'an unverified platform'}${site.kind ? ' sites' : ''}`;
  if (site.intervalS <= 0) return 'cron is off';
  return '';
}

/** When the site's cron runs next: a time (ms; at or before `now` = due now), or 0 when it does not run. */
export function nextCronRun(site: CronSite, lastRunMs: number | undefined, now: number): number {
  if (cronSkipReason(site)) return 0;
  // A site installed again under the same name after its last run starts afresh.
  const since = Math.max(lastRunMs ?? 0, site.installedMs ?? site.createdMs);
  const due = latestSlot(site.domain, site.intervalS, now);
  return due > since ? due : nextSlotAfter(site.domain, site.intervalS, Math.max(since, now));
}

/** What `planCron` decided. */
export interface CronPlan {
  /** Sites to run now, the longest-waiting first. */
  due: string[];
  /** Sites that were due but are running already (a cron run or a site task). */
  busy: string[];
}

/**
 * Which sites run now. `running`: sites whose cron (or a task) is running; `lastRuns`: the start
 * of each site's last cron run. Disabled, not installed, `off` and kinds without cron never run.
 */
export function planCron(sites: readonly CronSite[], now: number, running: ReadonlySet<string>, lastRuns: ReadonlyMap<string, number>): CronPlan {
  const due: DueCron[] = [];
  const busy: string[] = [];
  collectDueCron(sites, now, running, lastRuns, due, busy);
  return { due: sortDueCron(due), busy };
}

/** A site due now and the slot it is due for. */
export interface DueCron {
  domain: string;
  slot: number;
}

/** planCron over one slice of the sites: adds the due ones to `due` and those running to `busy`. */
export function collectDueCron(
  sites: readonly CronSite[],
  now: number,
  running: ReadonlySet<string>,
  lastRuns: ReadonlyMap<string, number>,
  due: DueCron[],
  busy: string[],
): void {
  for (const s of sites) {
    const next = nextCronRun(s, lastRuns.get(s.domain), now);
    if (next === 0 || next > now) continue;
    if (running.has(s.domain)) busy.push(s.domain);
    else due.push({ domain: s.domain, slot: next });
  }
}

/** The due sites, the longest-waiting first (then by domain). */
export function sortDueCron(due: DueCron[]): string[] {
  due.sort((a, b) => a.slot - b.slot || (a.domain < b.domain ? -1 : 1));
  return due.map((d) => d.domain);
}
