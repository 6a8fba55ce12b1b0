/**
 * `site install`: the checks made when it is queued (nothing is reserved until the task runs), and
 * its steps — reserve the names and database, create the database, write the site files, converge,
 * configure the web servers, run the unattended installer (Drupal, WordPress), finish. Run as a
 * site task by tasks.ts, which adds the HTTPS steps when asked.
 */
import { existsSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { checkDomain, fail, generateDbPassword, siteDbName } from '@spoke/shared';
import type { TaskInfo } from '../types.js';
import type { Step } from '../tasks/steps.js';
import { newSiteSalt, siteDir } from './settings.js';
import type { ConfigureUndo, DbUndo, SiteOps, WriteUndo } from './ops.js';
import { DRUPAL_KINDS, checkLocale, chooseProfile } from './drupal.js';
import { DEFAULT_CRON_INTERVAL_S, parseCronInterval } from './cron.js';

/** What `site install` takes. */
export interface InstallSiteInput {
  domain: string;
  platform: string;
  /** The agent server holding the database; default: see `chooseDbServer`. */
  dbServer?: string;
  aliases?: string[];
  /** Installer: site title (default the domain), admin account (default admin / admin@<domain>). */
  title?: string;
  adminUser?: string;
  adminEmail?: string;
  /** The aliases answer with a 301 to the domain. @default false */
  redirectAliases?: boolean;
  /** Drupal install profile. @default the distribution's profile, else standard (see chooseProfile) */
  profile?: string;
  /** Drupal langcode. @default en */
  locale?: string;
  /** Cron interval: 15m, 1h, 1d, off (see sites/cron.ts). @default 1h */
  cronInterval?: string;
  /** HTTPS once installed (ACME when the master has a directory, else self-signed). @default false */
  https?: boolean;
}

/** A queued install and the admin password it will set (for the operator who asked, once). */
export interface QueuedInstall {
  task: TaskInfo;
  /** "" when the platform has no unattended installer. */
  adminPassword: string;
}

export interface InstallResult {
  domain: string;
  url: string;
  database: string | null;
  dbServer: string | null;
  installer: { ran: boolean; reason: string };
  /** The admin account the installer created (its password went to the operator only). */
  admin: { user: string; email: string } | null;
  /** Drupal: the install profile. */
  profile: string | null;
}

/** Queues installs and builds their steps. */
export class SiteInstaller {
  /**
   * Admin passwords of queued installs, by task id: only in memory, handed to the agent by the
   * installer step and forgotten then. A master restart loses them (the installer then sets a
   * new one nobody sees, and says to use a one-time login link).
   */
  private readonly passwords = new Map<number, string>();

  constructor(
    private readonly t: SiteOps,
    private readonly submit: (domain: string, platform: string, params: Record<string, unknown>) => TaskInfo,
  ) {}

  /**
   * Queues `site.install` after checking what can be checked now (nothing is reserved until the
   * task runs its first step).
   * @throws SpokeError INVALID_DOMAIN, DOMAIN_TAKEN, PLATFORM_NOT_FOUND, PLATFORM_NOT_VERIFIED,
   *   PLATFORM_KIND_UNSUPPORTED, DB_SERVER_REQUIRED, SERVER_NOT_FOUND, SITE_DIR_EXISTS, INVALID_ARGUMENT
   */
  queue(input: InstallSiteInput): QueuedInstall {
    const domain = input.domain.toLowerCase();
    checkDomain(domain);
    const p = this.t.ns.getPlatform(input.platform);
    const { kind, registry } = this.t.platformKind(p);
    const drupal = DRUPAL_KINDS.has(kind);
    if (!drupal && (input.profile || input.locale))
      throw fail('INVALID_ARGUMENT', `platform ${p.name} is ${kind}: --profile and --locale are for Drupal platforms`);
    const profile = drupal ? chooseProfile(p.name, registry, input.profile || undefined) : '';
    const locale = drupal ? checkLocale(input.locale || 'en') : '';
    const dbServer = input.dbServer || this.t.chooseDbServer(p);
    const aliases = [...new Set((input.aliases ?? []).map((a) => a.toLowerCase()))];
    this.t.ns.checkNewSite({ domain, platform: p.name, dbServer, aliases });
    if (existsSync(join(this.t.trees.hostPath(p.path), siteDir(domain)))) {
      throw fail(
        'SITE_DIR_EXISTS',
        `${siteDir(domain)} already exists in platform ${p.name} (${this.t.trees.hostPath(p.path)}); move it away or import the site`,
      );
    }
    const adminUser = input.adminUser || 'admin';
    if (!/^[A-Za-z0-9._@-]{1,60}$/.test(adminUser))
      throw fail('INVALID_ARGUMENT', `admin user ${JSON.stringify(adminUser)}: use 1-60 letters, digits, . _ @ -`);
    const adminEmail = input.adminEmail || `admin@${domain}`;
    if (!/^[^\s@]+@[^\s@]+$/.test(adminEmail)) throw fail('INVALID_ARGUMENT', `admin email ${JSON.stringify(adminEmail)} is not an address`);
    const cronIntervalS = input.cronInterval === undefined ? DEFAULT_CRON_INTERVAL_S : parseCronInterval(input.cronInterval);
    const title = input.title || domain;
    // eslint-disable-next-line no-control-regex
    if (title.length > 200 || /[\x00-\x1f\x7f]/.test(title)) throw fail('INVALID_ARGUMENT', 'the title must be 1-200 characters without control characters');
    if (input.https) this.t.checkHttps();
    const task = this.submit(domain, p.name, {
      dbServer,
      aliases,
      kind,
      title,
      adminUser,
      adminEmail,
      redirectAliases: input.redirectAliases === true,
      profile,
      locale,
      cronIntervalS,
      ...(input.https ? { https: true } : {}),
    });
    const adminPassword = kind === 'wordpress' || drupal ? randomBytes(18).toString('base64url') : '';
    if (adminPassword) this.passwords.set(task.id, adminPassword);
    return { task, adminPassword };
  }

  /** Forgets a task's admin password (its run ended, however). */
  forget(taskId: number): void {
    this.passwords.delete(taskId);
  }

  steps(domain: string, platform: string, params: Record<string, unknown>, state: { result?: unknown }): Step[] {
    const dbServer = String(params.dbServer);
    const aliases = (params.aliases as string[] | undefined) ?? [];
    let installer = { ran: false, reason: '' };
    return [
      {
        name: 'reserve',
        do: async (ctx) => {
          const names = siteDbName(domain, this.t.ns.dbNamesTaken(dbServer));
          this.t.ns.createSite({
            domain,
            platform,
            dbServer,
            aliases,
            status: 'installing',
            db: { name: names.database, user: names.user, password: generateDbPassword() },
            salt: newSiteSalt(),
            redirectAliases: params.redirectAliases === true,
            profile: params.profile ? String(params.profile) : null,
            cronIntervalS: typeof params.cronIntervalS === 'number' ? params.cronIntervalS : DEFAULT_CRON_INTERVAL_S,
          });
          ctx.log(`reserved ${[domain, ...aliases].join(', ')} on platform ${platform}; database ${names.database}, user ${names.user} on ${dbServer}`);
          return { domain };
        },
        undo: async (ctx, data) => {
          const d = (data as { domain: string }).domain;
          if (this.t.siteExists(d)) this.t.ns.deleteSite(d);
          ctx.log(`released ${d}`);
        },
      },
      {
        name: 'create-database',
        do: async (ctx) => {
          const s = this.t.ns.getSite(domain);
          const hosts = this.t.webServers(platform);
          const r = await this.t.call(ctx, dbServer, {
            type: 'dbCreate',
            database: s.dbName as string,
            user: s.dbUser as string,
            password: this.t.ns.siteSecrets(domain).dbPassword,
            hosts,
          });
          this.t.recordDbAddress(ctx, domain, dbServer, r);
          ctx.log(
            `${dbServer}: created database ${s.dbName} and user ${s.dbUser} for ${r.hosts.join(', ')}; web servers reach it at ${this.t.ns.getSite(domain).dbHost}:${this.t.ns.getSite(domain).dbPort}`,
          );
          return { server: dbServer, database: s.dbName, user: s.dbUser, hosts };
        },
        undo: async (ctx, data) => this.t.dropDatabase(ctx, data as DbUndo),
      },
      {
        name: 'write-files',
        do: async (ctx) => this.t.writeFiles(ctx, platform, { site: domain }),
        undo: async (ctx, data) => this.t.restoreFiles(ctx, data as WriteUndo),
      },
      { name: 'converge', do: async (ctx) => void (await this.t.converge(ctx, platform)) },
      {
        name: 'configure-site',
        do: async (ctx) => this.t.configure(ctx, domain, true),
        undo: async (ctx, data) => this.t.unconfigure(ctx, data as ConfigureUndo, true),
      },
      {
        name: 'run-installer',
        do: async (ctx) => {
          const servers = this.t.webServers(platform);
          const p = this.t.ns.getPlatform(platform);
          let adminPassword = this.passwords.get(ctx.task.id);
          this.passwords.delete(ctx.task.id);
          if (!adminPassword) {
            adminPassword = randomBytes(18).toString('base64url');
            ctx.log(
              `the admin password made when this install was queued was lost (the master restarted); the installer sets one nobody has seen: log in with spoke site login-url ${domain}`,
              'warn',
            );
          }
          const profile = params.profile ? String(params.profile) : '';
          if (profile) ctx.log(`${servers[0]}: running the Drupal installer (profile ${profile}, locale ${String(params.locale || 'en')}); this takes a while`);
          const r = await this.t.call(
            ctx,
            servers[0] as string,
            {
              type: 'installSite',
              domain,
              kind: String(params.kind),
              title: String(params.title),
              adminUser: String(params.adminUser),
              adminEmail: String(params.adminEmail),
              adminPassword,
              tree: p.path,
              profile,
              locale: String(params.locale || ''),
            },
            { timeoutMs: 15 * 60_000 },
          );
          installer = { ran: r.ran, reason: r.reason };
          if (r.ran)
            ctx.log(
              `${servers[0]}: installer ran for ${domain}${profile ? ` (profile ${profile})` : ''}; admin user ${String(params.adminUser)} (its password was shown to whoever queued the install, and is kept nowhere)`,
            );
          else ctx.log(`${servers[0]}: installer not run: ${r.reason}; finish the install in a browser at ${r.url || `http://${domain}/`}`, 'warn');
        },
      },
      {
        name: 'finish',
        do: async (ctx) => {
          this.t.ns.setSiteStatus(domain, 'installed', { installedMs: Date.now() });
          const s = this.t.ns.getSite(domain);
          const result: InstallResult = {
            domain,
            url: `http://${domain}/`,
            database: s.dbName,
            dbServer: s.dbServer,
            installer,
            admin: installer.ran ? { user: String(params.adminUser), email: String(params.adminEmail) } : null,
            profile: params.profile ? String(params.profile) : null,
          };
          state.result = result;
          ctx.log(`site ${domain} installed`);
        },
      },
    ];
  }
}
