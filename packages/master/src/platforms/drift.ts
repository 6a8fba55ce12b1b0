/**
 * Drift on the servers (hand edits to a platform tree): what a platform's drift mode makes of it.
 * `repair` (default) queues a converge that puts the tree back — the agent keeps what it removes
 * or overwrites in its quarantine; `report` only reports: the automatic converge is sent with
 * `reportDrift`, so an agent that finds hand edits changes nothing and answers DRIFT_FOUND, and
 * the same drift is not reported again until the tree changes. An operator's `platform verify`
 * always repairs.
 */
import { fail } from '@spoke/shared';
import type { DriftMode } from '../types.js';

/** @throws SpokeError INVALID_ARGUMENT unless `s` is "", repair or report ("" = repair) */
export function parseDriftMode(s: string): DriftMode {
  if (s === '' || s === 'repair') return 'repair';
  if (s === 'report') return 'report';
  throw fail('INVALID_ARGUMENT', `--drift must be repair or report, not ${JSON.stringify(s)}`);
}

/**
 * Remembers, per server and platform, the observed root hash whose drift was already reported, so
 * a report-only platform gets one failed converge per distinct drift instead of one a minute.
 */
export class ReportedDrift {
  private readonly seen = new Map<string, string>();

  /** True when this observed hash of `platform` on `server` was reported already. */
  has(platform: string, server: string, observed: string): boolean {
    return this.seen.get(`${platform}\0${server}`) === observed;
  }

  /** Records that `observed` was reported (a converge answered DRIFT_FOUND for it). */
  add(platform: string, server: string, observed: string): void {
    this.seen.set(`${platform}\0${server}`, observed);
  }

  /** Forgets a server's report (its tree was repaired or removed). */
  clear(platform: string, server: string): void {
    this.seen.delete(`${platform}\0${server}`);
  }
}
