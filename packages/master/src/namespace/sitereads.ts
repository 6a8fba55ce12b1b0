/**
 * Reads of the sites aggregate (sites.ts holds the rules and the writes): one site by its
 * domain or an alias, every site or a platform's a page at a time (`site ls`), and what the cron
 * scheduler reads. Listings never read a site's secrets.
 */
import { fail } from '@spoke/shared';
import type { NamespaceScope } from './scope.js';
import type { SiteInfo, SiteStatus } from '../types.js';

/** A site's row in the store, secrets included (sites.ts reads it for its checks). */
export interface SiteRow {
  domain: string;
  platform: string;
  db_server: string | null;
  profile: string | null;
  status: SiteStatus;
  created_ms: number;
  db_name: string | null;
  db_user: string | null;
  db_password: string | null;
  db_host: string | null;
  db_port: number | null;
  salt: string | null;
  installed_ms: number | null;
  own_settings: number;
  redirect_aliases: number;
  cron_interval_s: number;
}

/** A site row without its secrets: what a listing reads. */
type ListedRow = Omit<SiteRow, 'db_password' | 'salt'>;
/** The columns of a ListedRow. */
const LISTED =
  'domain, platform, db_server, profile, status, created_ms, db_name, db_user, db_host, db_port, installed_ms, own_settings, redirect_aliases, cron_interval_s';

/** What the cron scheduler reads of a site (one cheap query for every site). */
export interface CronSiteRow {
  domain: string;
  platform: string;
  status: SiteStatus;
  /** Registry kind of the platform ("" when it was never verified). */
  kind: string;
  intervalS: number;
  installedMs: number | null;
  createdMs: number;
}

/** Sites: one site, listings, what cron reads. */
export class SiteReads {
  constructor(private readonly scope: NamespaceScope) {}

  private get db() {
    return this.scope.db;
  }

  /**
   * Each platform's kind from its stored registry ('' when none or unreadable), read by SQLite:
   * parsing every registry in JS (a Drupal 7 platform's lists hundreds of modules) cost the cron
   * scheduler's tick and `site ls` most of their time with 1,000 platforms.
   */
  platformKinds(): Map<string, string> {
    const rows = this.db
      .prepare("SELECT name, CASE WHEN json_valid(registry_json) THEN json_extract(registry_json, '$.kind') END AS kind FROM platforms")
      .all() as { name: string; kind: unknown }[];
    return new Map(rows.map((r) => [r.name, typeof r.kind === 'string' ? r.kind : '']));
  }

  /**
   * The sites of `platform` (of `kind`) whose cron may run (installed, with an interval), `limit` of them
   * after the row `after` (0: from the first): the scheduler reads 100,000 sites in slices, each
   * through the platform's index (the slices are in row order, not domain order).
   */
  cronSites(platform: string, kind: string, page: { after: number; limit: number } = { after: 0, limit: -1 }): (CronSiteRow & { row: number })[] {
    const rows = this.db
      .prepare(
        `SELECT rowid AS row, domain, status, cron_interval_s, installed_ms, created_ms FROM sites
          WHERE platform = ? AND rowid > ? AND status = 'installed' AND cron_interval_s > 0 ORDER BY rowid LIMIT ?`,
      )
      .all(platform, page.after, page.limit) as {
      row: number;
      domain: string;
      status: SiteStatus;
      cron_interval_s: number;
      installed_ms: number | null;
      created_ms: number;
    }[];
    return rows.map((r) => ({
      row: r.row,
      domain: r.domain,
      platform,
      status: r.status,
      kind,
      intervalS: r.cron_interval_s,
      installedMs: r.installed_ms,
      createdMs: r.created_ms,
    }));
  }
  /** @throws SpokeError SITE_NOT_FOUND */
  getSite(domain: string): SiteInfo {
    const r = this.db.prepare('SELECT * FROM sites WHERE domain = ?').get(domain) as SiteRow | undefined;
    if (!r) {
      const alias = this.db.prepare('SELECT site, redirect_until_ms FROM domains WHERE name = ? AND is_alias = 1').get(domain) as
        { site: string; redirect_until_ms: number | null } | undefined;
      if (alias?.redirect_until_ms != null)
        throw fail('SITE_NOT_FOUND', `no site named ${domain}: it is the old name of site ${alias.site} (see: spoke site show ${alias.site})`);
      if (alias) return this.getSite(alias.site);
      throw fail('SITE_NOT_FOUND', `no site named ${domain} (see: spoke site ls)`);
    }
    return this.toSite(r);
  }

  /** Sites, optionally of one platform. */
  listSites(platform?: string): SiteInfo[] {
    return this.sitesAfter({ platform, after: '', limit: -1 }, this.platformServers());
  }

  /**
   * Sites in domain order, `size` at a time (optionally of one platform): `site ls` streams
   * 100,000 sites a page at a time instead of building them all at once (issue 20). Each page is
   * read when asked for, so a site created or deleted meanwhile may or may not be listed.
   */
  *sitePages(platform: string | undefined, size: number): Generator<SiteInfo[]> {
    const servers = this.platformServers();
    for (let after = ''; ;) {
      const page = this.sitesAfter({ platform, after, limit: size }, servers);
      if (page.length) yield page;
      if (page.length < size) return;
      after = page[page.length - 1]?.domain ?? '';
    }
  }

  /** Every platform's server. */
  private platformServers(): Map<string, string> {
    return new Map((this.db.prepare('SELECT name, server FROM platforms').all() as { name: string; server: string }[]).map((p) => [p.name, p.server]));
  }

  /**
   * The first `limit` sites after `after` (-1: all), with their aliases: one query for the sites
   * and one for the aliases of their domain range, not two per site (100,000 sites: `site ls`
   * spent seconds in those; issue 20). The secrets (database password, salt) are not read.
   */
  private sitesAfter(q: { platform: string | undefined; after: string; limit: number }, servers: Map<string, string>): SiteInfo[] {
    const rows = (
      q.platform
        ? this.db.prepare(`SELECT ${LISTED} FROM sites WHERE platform = ? AND domain > ? ORDER BY domain LIMIT ?`).all(q.platform, q.after, q.limit)
        : this.db.prepare(`SELECT ${LISTED} FROM sites WHERE domain > ? ORDER BY domain LIMIT ?`).all(q.after, q.limit)
    ) as ListedRow[];
    const first = rows[0]?.domain;
    const last = rows[rows.length - 1]?.domain;
    if (first === undefined || last === undefined) return [];
    const aliases = new Map<string, AliasRow[]>();
    const aliasRows = this.db
      .prepare('SELECT site, name, redirect_until_ms FROM domains WHERE site >= ? AND site <= ? AND is_alias = 1 ORDER BY site, name')
      .all(first, last) as (AliasRow & { site: string })[];
    for (const a of aliasRows) {
      const row = { name: a.name, redirect_until_ms: a.redirect_until_ms };
      const list = aliases.get(a.site);
      if (list) list.push(row);
      else aliases.set(a.site, [row]);
    }
    return rows.map((r) => this.toSite(r, aliases.get(r.domain) ?? [], servers.get(r.platform)));
  }

  /** A site row with its alias rows and its platform's server (read here unless the caller has them). */
  private toSite(r: ListedRow, knownNames?: AliasRow[], knownServer?: string): SiteInfo {
    const names =
      knownNames ?? (this.db.prepare('SELECT name, redirect_until_ms FROM domains WHERE site = ? AND is_alias = 1 ORDER BY name').all(r.domain) as AliasRow[]);
    const aliases = names.filter((a) => a.redirect_until_ms === null).map((a) => a.name);
    const formerNames = names.flatMap((a) => (a.redirect_until_ms === null ? [] : [{ name: a.name, untilMs: a.redirect_until_ms }]));
    const server = knownServer ?? (this.db.prepare('SELECT server FROM platforms WHERE name = ?').get(r.platform) as { server: string }).server;
    return {
      domain: r.domain,
      platform: r.platform,
      server,
      dbServer: r.db_server,
      profile: r.profile,
      aliases,
      status: r.status,
      createdMs: r.created_ms,
      dbName: r.db_name,
      dbUser: r.db_user,
      dbHost: r.db_host,
      dbPort: r.db_port,
      installedMs: r.installed_ms,
      ownSettings: r.own_settings === 1,
      redirectAliases: r.redirect_aliases === 1,
      cronIntervalS: r.cron_interval_s,
      ...(formerNames.length ? { formerNames } : {}),
    };
  }
}

/** A site's alias row: an alias, or a former name while it redirects (redirect_until_ms set). */
interface AliasRow {
  name: string;
  redirect_until_ms: number | null;
}
