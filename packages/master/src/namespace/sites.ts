/**
 * The sites aggregate of the namespace: sites with their domains and aliases (unique across the
 * namespace), database names, status, cron interval, and the switch of a migrate. Every mutation
 * is one transaction; a refusal throws a SpokeError with a stable code and changes nothing. Its
 * reads (a site, listings, what cron reads) are sitereads.ts.
 */
import { checkDomain, fail } from '@spoke/shared';
import type { NamespaceScope } from './scope.js';
import type { Platforms } from './platforms.js';
import type { Servers } from './servers.js';
import type { SiteReads, SiteRow } from './sitereads.js';
import type { SiteInfo, SiteSecrets, SiteStatus } from '../types.js';

/** What `createSite` takes (the sites issue adds the tasks around it). */
export interface CreateSiteInput {
  domain: string;
  platform: string;
  dbServer?: string | null;
  profile?: string | null;
  aliases?: string[];
  /** @default 'pending' */
  status?: SiteStatus;
  /** The site's database on `dbServer` (names from siteDbName; the password is never printed). */
  db?: { name: string; user: string; password: string };
  salt?: string;
  /** The settings file is the site's own (an import that keeps it): Spoke does not render it. */
  ownSettings?: boolean;
  /** The aliases answer with a 301 to the domain. */
  redirectAliases?: boolean;
  /** Seconds between cron runs, 0 = off. @default 3600 */
  cronIntervalS?: number;
}

/** Thrown inside a transaction to roll back a dry run. */
const DRY_RUN = Symbol('dry run');

/**
 * Allowed site status changes; every change goes through `setSiteStatus`, which refuses any other.
 * A row is created `installing` by the task that reserves it (install, import, the copy of a
 * clone or migrate; `pending` is the default of a bare `createSite`), and a failed reservation is
 * rolled back by deleting the row, not by a status.
 * - installing → installed: the task's last step (install, import, clone/migrate `finish`)
 * - installed ⇄ disabled: `site disable` / `site enable` (either from failed too)
 * - failed → installed: a `site verify` or `site restore` that succeeded
 * - any → deleting: the first step of `site delete`; its undo puts back the status it had
 *   (deleting → any)
 * Nothing moves a site into `failed` today: a task that cannot roll back completely says so in its
 * error and log (`rollback incomplete`) and leaves the status as it was.
 */
export const SITE_STATUS_TRANSITIONS: Readonly<Record<SiteStatus, readonly SiteStatus[]>> = {
  pending: ['installing', 'installed', 'deleting'],
  installing: ['installed', 'deleting'],
  installed: ['disabled', 'deleting'],
  disabled: ['installed', 'deleting'],
  failed: ['installed', 'disabled', 'deleting'],
  deleting: ['pending', 'installing', 'installed', 'disabled', 'failed'],
};

/** Sites: rules and queries. */
export class Sites {
  constructor(
    private readonly scope: NamespaceScope,
    private readonly servers: Servers,
    private readonly platforms: Platforms,
    private readonly reads: SiteReads,
  ) {}

  private get db() {
    return this.scope.db;
  }

  private get clock() {
    return this.scope.clock;
  }

  /**
   * Creates a site row with its domain and aliases reserved across the namespace.
   * @throws SpokeError INVALID_DOMAIN, DOMAIN_TAKEN, PLATFORM_NOT_FOUND, SERVER_NOT_FOUND
   */
  createSite(input: CreateSiteInput): SiteInfo {
    checkDomain(input.domain);
    const aliases = [...new Set(input.aliases ?? [])];
    aliases.forEach((a) => checkDomain(a));
    if (aliases.includes(input.domain)) throw fail('DOMAIN_TAKEN', `alias ${input.domain} is the site's own domain`);
    if (input.db && !input.dbServer) throw fail('INVALID_ARGUMENT', `site ${input.domain}: a database needs its db server`);
    return this.db.transaction(() => {
      this.platforms.getPlatform(input.platform);
      if (input.dbServer) {
        const srv = this.servers.mustRow(input.dbServer);
        if (srv.kind !== 'agent') throw fail('SERVER_IS_CLUSTER', `${input.dbServer} is a cluster; a site database lives on one agent server`);
      }
      this.claimDomain(input.domain);
      aliases.forEach((a) => this.claimDomain(a));
      if (input.db) {
        const taken = this.dbNamesTaken(input.dbServer as string);
        for (const n of [input.db.name, input.db.user]) {
          if (taken.has(n)) throw fail('DB_EXISTS', `database or user name ${n} is already used by another site on ${input.dbServer as string}`);
        }
      }
      this.db
        .prepare(
          `INSERT INTO sites (domain, platform, db_server, profile, status, created_ms, db_name, db_user, db_password, salt, own_settings, redirect_aliases, cron_interval_s)
           VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
        )
        .run(
          input.domain,
          input.platform,
          input.dbServer ?? null,
          input.profile ?? null,
          input.status ?? 'pending',
          this.clock(),
          input.db?.name ?? null,
          input.db?.user ?? null,
          input.db?.password ?? null,
          input.salt ?? null,
          input.ownSettings ? 1 : 0,
          input.redirectAliases ? 1 : 0,
          input.cronIntervalS ?? 3600,
        );
      const ins = this.db.prepare('INSERT INTO domains (name, site, is_alias) VALUES (?, ?, ?)');
      ins.run(input.domain, input.domain, 0);
      aliases.forEach((a) => ins.run(a, input.domain, 1));
      return this.reads.getSite(input.domain);
    })();
  }

  private claimDomain(name: string): void {
    const d = this.db.prepare('SELECT site, is_alias, redirect_until_ms FROM domains WHERE name = ?').get(name) as
      { site: string; is_alias: number; redirect_until_ms: number | null } | undefined;
    if (d?.redirect_until_ms != null) throw fail('DOMAIN_TAKEN', formerNameTaken(name, d.site, d.redirect_until_ms, this.clock()));
    if (d) {
      throw fail('DOMAIN_TAKEN', d.is_alias ? `${name} is already an alias of site ${d.site}` : `a site named ${name} already exists`);
    }
  }

  /** Former names whose grace ended by `nowMs`, with their sites (the sweep of formernames.ts). */
  expiredFormerNames(nowMs: number): { name: string; site: string }[] {
    return this.db.prepare('SELECT name, site FROM domains WHERE redirect_until_ms IS NOT NULL AND redirect_until_ms <= ? ORDER BY name').all(nowMs) as {
      name: string;
      site: string;
    }[];
  }

  /** Drops a former name of a site (its name is free again); false when it was not one. */
  dropFormerName(site: string, name: string): boolean {
    return this.db.prepare('DELETE FROM domains WHERE name = ? AND site = ? AND redirect_until_ms IS NOT NULL').run(name, site).changes > 0;
  }

  /**
   * Runs the checks of `createSite` without keeping anything (a site task refuses at once what
   * its first step would refuse).
   * @throws as createSite
   */
  checkNewSite(input: CreateSiteInput): void {
    this.dryRun(() => this.createSite(input));
  }

  private dryRun(fn: () => unknown): void {
    try {
      this.db.transaction(() => {
        fn();
        throw DRY_RUN;
      })();
    } catch (e) {
      if (e !== DRY_RUN) throw e;
    }
  }

  /** Database and user names already used on a db server (for siteDbName). */
  dbNamesTaken(dbServer: string): Set<string> {
    const rows = this.db.prepare('SELECT db_name, db_user FROM sites WHERE db_server = ?').all(dbServer) as {
      db_name: string | null;
      db_user: string | null;
    }[];
    return new Set(rows.flatMap((r) => [r.db_name, r.db_user].filter((x): x is string => !!x)));
  }

  /**
   * Adds an alias to a site (the alias must name the site by its own domain).
   * @throws SpokeError SITE_NOT_FOUND, INVALID_DOMAIN, DOMAIN_TAKEN
   */
  addAlias(site: string, alias: string): SiteInfo {
    checkDomain(alias);
    return this.db.transaction(() => {
      const s = this.mustSiteRow(site);
      this.claimDomain(alias);
      this.db.prepare('INSERT INTO domains (name, site, is_alias) VALUES (?, ?, 1)').run(alias, s.domain);
      return this.reads.getSite(s.domain);
    })();
  }

  /** The checks of addAlias, keeping nothing. @throws as addAlias */
  checkNewAlias(site: string, alias: string): void {
    this.dryRun(() => this.addAlias(site, alias));
  }

  /**
   * Removes an alias of a site (its name is free again).
   * @throws SpokeError SITE_NOT_FOUND, ALIAS_NOT_FOUND
   */
  removeAlias(site: string, alias: string): SiteInfo {
    return this.db.transaction(() => {
      const s = this.mustSiteRow(site);
      if (alias === s.domain) throw fail('ALIAS_NOT_FOUND', `${alias} is the site's own domain, not an alias; delete the site instead`);
      const r = this.db.prepare('DELETE FROM domains WHERE name = ? AND site = ? AND is_alias = 1').run(alias, s.domain);
      if (r.changes === 0) throw fail('ALIAS_NOT_FOUND', `${alias} is not an alias of ${s.domain} (see: spoke site show ${s.domain})`);
      return this.reads.getSite(s.domain);
    })();
  }

  /** The checks of removeAlias, keeping nothing. @throws as removeAlias */
  checkRemoveAlias(site: string, alias: string): void {
    this.dryRun(() => this.removeAlias(site, alias));
  }

  /** A site row by its own domain (not an alias). @throws SpokeError SITE_NOT_FOUND */
  private mustSiteRow(domain: string): SiteRow {
    const r = this.db.prepare('SELECT * FROM sites WHERE domain = ?').get(domain) as SiteRow | undefined;
    if (!r) throw fail('SITE_NOT_FOUND', `no site named ${domain} (see: spoke site ls)`);
    return r;
  }

  /**
   * Sets a site's status (the site tasks are its writer); the change must be in
   * SITE_STATUS_TRANSITIONS (setting the status it has is always allowed). Returns the status before.
   * @throws SpokeError SITE_NOT_FOUND, INTERNAL (a change the table does not allow: a bug)
   */
  setSiteStatus(domain: string, status: SiteStatus, opts: { installedMs?: number } = {}): SiteStatus {
    const from = this.mustSiteRow(domain).status;
    if (from !== status && !SITE_STATUS_TRANSITIONS[from].includes(status)) {
      throw fail('INTERNAL', `site ${domain}: illegal status change ${from} -> ${status}`);
    }
    this.db.prepare('UPDATE sites SET status = ?, installed_ms = COALESCE(?, installed_ms) WHERE domain = ?').run(status, opts.installedMs ?? null, domain);
    return from;
  }

  /** Records how the web servers reach the site's database. @throws SpokeError SITE_NOT_FOUND */
  setSiteDbAddress(domain: string, host: string, port: number): void {
    this.mustSiteRow(domain);
    this.db.prepare('UPDATE sites SET db_host = ?, db_port = ? WHERE domain = ?').run(host, port, domain);
  }

  /** Sets whether a site's aliases answer with a 301 to its domain. @throws SpokeError SITE_NOT_FOUND */
  setSiteRedirectAliases(domain: string, on: boolean): void {
    this.mustSiteRow(domain);
    this.db.prepare('UPDATE sites SET redirect_aliases = ? WHERE domain = ?').run(on ? 1 : 0, domain);
  }

  /**
   * Sets a site's cron interval in seconds (0 = off); the cron scheduler is its reader.
   * @throws SpokeError SITE_NOT_FOUND, INVALID_ARGUMENT (negative or not whole)
   */
  setSiteCronInterval(domain: string, seconds: number): SiteInfo {
    if (!Number.isInteger(seconds) || seconds < 0) throw fail('INVALID_ARGUMENT', `cron interval must be whole seconds >= 0, got ${seconds}`);
    const s = this.reads.getSite(domain);
    this.db.prepare('UPDATE sites SET cron_interval_s = ? WHERE domain = ?').run(seconds, s.domain);
    return this.reads.getSite(s.domain);
  }

  /** The site's database password and salt (for rendering its settings only). @throws SpokeError SITE_NOT_FOUND */
  siteSecrets(domain: string): SiteSecrets {
    const r = this.mustSiteRow(domain);
    return { dbPassword: r.db_password ?? '', salt: r.salt ?? '' };
  }

  /**
   * Removes a site row; its domain and aliases are free again.
   * @throws SpokeError SITE_NOT_FOUND
   */
  deleteSite(domain: string): void {
    this.db.transaction(() => {
      this.mustSiteRow(domain);
      this.db.prepare('DELETE FROM domains WHERE site = ?').run(domain);
      this.db.prepare('DELETE FROM sites WHERE domain = ?').run(domain);
    })();
  }

  /**
   * The switch of `site migrate`, in one transaction: the site's row takes its new platform and
   * database (and salt). With a new domain, the site is renamed: the reservation row of the new
   * domain (created by the migrate, status `installing`) is replaced by the site, whose aliases,
   * status, profile and times follow it; the old domain is free afterwards.
   * @throws SpokeError SITE_NOT_FOUND, DOMAIN_TAKEN (the new domain is held by another site), PLATFORM_NOT_FOUND, DB_EXISTS
   */
  relocateSite(
    from: string,
    to: {
      domain: string;
      platform: string;
      dbServer: string;
      db: { name: string; user: string; password: string };
      dbHost: string;
      dbPort: number;
      salt: string;
      /** With a new domain: the old one answers a 301 to it until then (0 or absent: it is free at once). */
      redirectOldUntilMs?: number;
    },
  ): SiteInfo {
    return this.db.transaction(() => {
      const r = this.mustSiteRow(from);
      this.platforms.getPlatform(to.platform);
      if (to.domain !== from) {
        const d = this.db.prepare('SELECT site, is_alias FROM domains WHERE name = ?').get(to.domain) as { site: string; is_alias: number } | undefined;
        const held = this.db.prepare('SELECT status FROM sites WHERE domain = ?').get(to.domain) as { status: SiteStatus } | undefined;
        if (d && (d.is_alias || d.site !== to.domain || held?.status !== 'installing')) {
          throw fail('DOMAIN_TAKEN', d.is_alias ? `${to.domain} is an alias of site ${d.site}` : `a site named ${to.domain} already exists`);
        }
        if (d) this.deleteSite(to.domain);
      }
      const taken = this.db
        .prepare('SELECT domain FROM sites WHERE db_server = ? AND domain NOT IN (?, ?) AND (db_name IN (?, ?) OR db_user IN (?, ?))')
        .get(to.dbServer, from, to.domain, to.db.name, to.db.user, to.db.name, to.db.user) as { domain: string } | undefined;
      if (taken) throw fail('DB_EXISTS', `database or user ${to.db.name} is already used by site ${taken.domain} on ${to.dbServer}`);
      if (to.domain === from) {
        this.db
          // the copy's settings are rendered by Spoke (own_settings ends)
          .prepare(
            'UPDATE sites SET platform = ?, db_server = ?, db_name = ?, db_user = ?, db_password = ?, db_host = ?, db_port = ?, salt = ?, own_settings = 0 WHERE domain = ?',
          )
          .run(to.platform, to.dbServer, to.db.name, to.db.user, to.db.password, to.dbHost, to.dbPort, to.salt, from);
        return this.reads.getSite(from);
      }
      this.db
        .prepare(
          `INSERT INTO sites (domain, platform, db_server, profile, status, created_ms, db_name, db_user, db_password, db_host, db_port, salt, installed_ms, redirect_aliases, cron_interval_s)
           VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
        )
        .run(
          to.domain,
          to.platform,
          to.dbServer,
          r.profile,
          r.status,
          r.created_ms,
          to.db.name,
          to.db.user,
          to.db.password,
          to.dbHost,
          to.dbPort,
          to.salt,
          r.installed_ms,
          r.redirect_aliases,
          r.cron_interval_s,
        );
      this.db.prepare('INSERT INTO domains (name, site, is_alias) VALUES (?, ?, 0)').run(to.domain, to.domain);
      this.db.prepare('UPDATE domains SET site = ? WHERE site = ? AND is_alias = 1').run(to.domain, from);
      // What else belongs to the site follows it (deleting the old row would take it along).
      this.db.prepare('UPDATE site_https SET domain = ? WHERE domain = ?').run(to.domain, from);
      this.db.prepare('UPDATE cron_runs SET site = ? WHERE site = ?').run(to.domain, from);
      this.db.prepare('DELETE FROM domains WHERE site = ?').run(from);
      this.db.prepare('DELETE FROM sites WHERE domain = ?').run(from);
      if (to.redirectOldUntilMs && to.redirectOldUntilMs > this.clock())
        this.db.prepare('INSERT INTO domains (name, site, is_alias, redirect_until_ms) VALUES (?, ?, 1, ?)').run(from, to.domain, to.redirectOldUntilMs);
      return this.reads.getSite(to.domain);
    })();
  }
}

/** Why a former name cannot be taken, and how to release it early. */
function formerNameTaken(name: string, site: string, untilMs: number, nowMs: number): string {
  const when = new Date(untilMs).toISOString();
  // Its vhost still redirects until the sweep's verify rewrites it: taking it now would clash there.
  if (untilMs <= nowMs)
    return `${name} is the old name of site ${site}; its redirect ended at ${when} and is removed within a minute (or now: spoke site alias rm ${site} ${name})`;
  return `${name} is the old name of site ${site} and answers a 301 to it until ${when}; release it early with: spoke site alias rm ${site} ${name}`;
}
