/**
 * The cron history: table `cron_runs` (migration 7), one row per run, kept bounded — the last
 * `keep` runs of each site (default 20) — so 100,000 sites running hourly cost at most 2,000,000
 * small rows instead of a task row and its log every hour. Each row carries the count of failed
 * runs in a row up to it, so the newest row alone says whether a site's cron keeps failing. Rows
 * go with their site (ON DELETE CASCADE).
 */
import type { Db } from '../namespace/store.js';

/** Who started a cron run. */
export type CronTrigger = 'schedule' | 'manual';

/** One cron run. */
export interface CronRunInfo {
  id: number;
  domain: string;
  startedMs: number;
  durationMs: number;
  ok: boolean;
  /** Failed runs in a row up to and including this one (0 when ok). */
  failures: number;
  /** One line: what the site answered, or why it failed. */
  message: string;
  /** "" when ok. */
  errorCode: string;
  /** The web server it ran on ("" = none was reached). */
  server: string;
  trigger: CronTrigger;
}

/** A run to record. */
export type NewCronRun = Omit<CronRunInfo, 'id' | 'failures'>;

interface Row {
  id: number;
  site: string;
  started_ms: number;
  duration_ms: number;
  ok: number;
  failures: number;
  message: string;
  error_code: string;
  server: string;
  kind: CronTrigger;
}

const toRun = (r: Row): CronRunInfo => ({
  id: r.id,
  domain: r.site,
  startedMs: r.started_ms,
  durationMs: r.duration_ms,
  ok: r.ok === 1,
  failures: r.failures,
  message: r.message,
  errorCode: r.error_code,
  server: r.server,
  trigger: r.kind,
});

/** Runs kept per site. */
export const CRON_RUNS_KEPT = 20;

/** Reads and writes the cron history. */
export class CronStore {
  private readonly db: Db;
  private readonly keep: number;

  constructor(deps: { db: Db; keep?: number }) {
    this.db = deps.db;
    this.keep = deps.keep ?? CRON_RUNS_KEPT;
  }

  /** Records a run and drops the site's runs beyond the newest `keep`; returns the row. A site that is gone by now records nothing (null). */
  record(run: NewCronRun): CronRunInfo | null {
    return this.db.transaction(() => {
      if (!this.db.prepare('SELECT 1 FROM sites WHERE domain = ?').get(run.domain)) return null;
      const prev = this.last(run.domain);
      const failures = run.ok ? 0 : (prev?.failures ?? 0) + 1;
      // One line, bounded: a web page's text or a PHP trace must not bloat the table.
      const message = run.message.replace(/\s+/g, ' ').trim().slice(0, 500);
      const r = this.db
        .prepare('INSERT INTO cron_runs (site, started_ms, duration_ms, ok, failures, message, error_code, server, kind) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)')
        .run(run.domain, run.startedMs, run.durationMs, run.ok ? 1 : 0, failures, message, run.errorCode, run.server, run.trigger);
      this.db
        .prepare('DELETE FROM cron_runs WHERE site = ? AND id <= (SELECT id FROM cron_runs WHERE site = ? ORDER BY id DESC LIMIT 1 OFFSET ?)')
        .run(run.domain, run.domain, this.keep);
      return toRun(this.db.prepare('SELECT * FROM cron_runs WHERE id = ?').get(r.lastInsertRowid) as Row);
    })();
  }

  /** The site's newest run, or null. */
  last(domain: string): CronRunInfo | null {
    const r = this.db.prepare('SELECT * FROM cron_runs WHERE site = ? ORDER BY id DESC LIMIT 1').get(domain) as Row | undefined;
    return r ? toRun(r) : null;
  }

  /** The newest run of every site that has one. */
  lastAll(): Map<string, CronRunInfo> {
    const rows = this.db.prepare('SELECT * FROM cron_runs WHERE id IN (SELECT max(id) FROM cron_runs GROUP BY site)').all() as Row[];
    return new Map(rows.map((r) => [r.site, toRun(r)]));
  }

  /** The newest run of each site whose domain is in [first, last] (a page of `site ls`; one pass over the index). */
  lastBetween(first: string, last: string): Map<string, CronRunInfo> {
    const rows = this.db
      .prepare('SELECT * FROM cron_runs WHERE id IN (SELECT max(id) FROM cron_runs WHERE site >= ? AND site <= ? GROUP BY site)')
      .all(first, last) as Row[];
    return new Map(rows.map((r) => [r.site, toRun(r)]));
  }

  /** When each site's newest run started (one pass over the index; the scheduler keeps it in memory). */
  lastStarts(): Map<string, number> {
    const rows = this.db.prepare('SELECT site, started_ms FROM cron_runs WHERE id IN (SELECT max(id) FROM cron_runs GROUP BY site)').all() as {
      site: string;
      started_ms: number;
    }[];
    return new Map(rows.map((r) => [r.site, r.started_ms]));
  }

  /** The site's runs, newest first. */
  list(domain: string, limit = CRON_RUNS_KEPT): CronRunInfo[] {
    return (this.db.prepare('SELECT * FROM cron_runs WHERE site = ? ORDER BY id DESC LIMIT ?').all(domain, limit) as Row[]).map(toRun);
  }
}
