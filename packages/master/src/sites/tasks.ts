/**
 * The site tasks. Each is a list of steps with undos (steps.ts) run by the task engine on entity
 * `site:<domain>`, holding the platform's lock too (`platform:<name>`): writes to a platform's
 * canonical tree and its converges are serialized with the platform's own tasks and with the
 * other sites of the platform.
 *
 * Here: install, verify, disable, enable, alias add/rm, alias redirect on/off, delete. Elsewhere,
 * as more step lists over the helpers below (write/remove site files, converge, configure,
 * database): backup and restore (and delete's backup step) in backuptasks.ts, clone and migrate
 * in migrate.ts, import (a site found on disk, its own settings kept) in import.ts.
 */
import { existsSync, lstatSync, mkdirSync, readdirSync, readFileSync, readlinkSync, renameSync, rmSync, symlinkSync, writeFileSync, chmodSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { dirname, join } from 'node:path';
import { checkDomain, fail, generateDbPassword, isSpokeError, siteDbName } from '@spoke/shared';
import type { AgentCommand, AgentCommandResults, AgentHub, CallOptions, SiteTlsConfig, SiteUpdateInfo } from '../hub.js';
import type { Namespace } from '../namespace.js';
import { configOutcome, type PlatformSync } from '../converge.js';
import type { Db } from '../store.js';
import type { TaskContext, TaskEngine } from '../tasks.js';
import type { TreeStore } from '../trees.js';
import type { PlatformInfo, SiteInfo, SiteStatus, TaskInfo } from '../types.js';
import type { PlatformKind, Registry } from '../platform/index.js';
import { newSiteSalt, renderPlatformSiteFiles, renderSiteFiles, settingsSupported, siteDir, staleSiteFiles, type SiteFacts, type SiteFile, type SiteNames } from './settings.js';
import { StepLog, resumeRollback, runSteps, type Step } from './steps.js';
import { MOVE_TASKS, SiteMover, type CloneSiteInput, type MigrateSiteInput } from './migrate.js';
import { BackupStore } from './backup.js';
import { BACKUP_TASKS, SiteBackups } from './backuptasks.js';
import { IMPORT_TASKS, SiteImporter, type ImportSiteInput } from './import.js';
import { settingsFileOf } from './readsettings.js';
import { moveDir } from '../fsmove.js';
import { SiteLogin } from './login.js';
import { DRUPAL_KINDS, checkLocale, chooseProfile, describeUpdates } from './drupal.js';
import { DEFAULT_CRON_INTERVAL_S, parseCronInterval } from './cron.js';

/** The site task kinds. */
export const SITE_TASKS = [
  'site.install',
  'site.verify',
  'site.disable',
  'site.enable',
  'site.alias.add',
  'site.alias.rm',
  'site.alias.redirect',
  'site.delete',
  ...MOVE_TASKS,
  ...BACKUP_TASKS,
  ...IMPORT_TASKS,
] as const;
export type SiteTaskKind = (typeof SITE_TASKS)[number];

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

/** A file or symlink as it was before a step wrote over it (undo data). */
interface Previous {
  path: string;
  type: 'none' | 'file' | 'symlink';
  /** base64 for files, the target for symlinks. */
  data?: string;
  mode?: number;
}

/** Undo data of a step that wrote files into a platform tree. */
export interface WriteUndo {
  platform: string;
  previous: Previous[];
  /** Directories it created (removed on undo, with what is in them). */
  created: string[];
}

/** What the task result of an install holds. */
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

/** What the site tasks need of HTTPS (sites/https/https.ts). */
export interface SiteHttpsHook {
  /** The certificate a site's vhost carries now (null: plain HTTP). */
  tlsFor(domain: string): SiteTlsConfig | null;
  /** The site is served over HTTPS (its settings say so). */
  servedOverHttps(domain: string): boolean;
  /** The steps of `--https` on install, clone and migrate. */
  enableSteps(domain: string): Step[];
  /** Refuses `--https` when it cannot work (nothing is queued). @throws SpokeError */
  checkCanEnable(): void;
}

const ACTIVE: ReadonlySet<SiteStatus> = new Set(['installed', 'disabled', 'failed']);

/** Wires the site tasks into the task engine and submits them. */
export class SiteTasks {
  readonly ns: Namespace;
  private readonly hub: AgentHub;
  private readonly tasks: TaskEngine;
  readonly trees: TreeStore;
  private readonly sync: PlatformSync;
  private readonly steps: StepLog;
  private readonly trashDir: string;
  private readonly onlineWaitMs: number;
  private readonly mover: SiteMover;
  private readonly importer: SiteImporter;
  /** Backups and restore (backuptasks.ts). */
  readonly backups: SiteBackups;
  /** One-time login links (login.ts). */
  readonly login: SiteLogin;
  /**
   * Admin passwords of queued installs, by task id: only in memory, handed to the agent by the
   * installer step and forgotten then. A master restart loses them (the installer then sets a
   * new one nobody sees, and says to use a one-time login link).
   */
  private readonly installPasswords = new Map<number, string>();
  /** HTTPS (sites/https): the certificate each vhost carries, and the steps of `--https`. */
  private https: SiteHttpsHook | null = null;

  constructor(deps: {
    ns: Namespace;
    hub: AgentHub;
    tasks: TaskEngine;
    trees: TreeStore;
    sync: PlatformSync;
    db: Db;
    /** Where deleted site dirs wait until the delete is past its point of no return. */
    trashDir: string;
    /** How long a step waits for an agent to come online (e.g. right after a restart). @default 30000 */
    onlineWaitMs?: number;
    /** Scratch space of clone/migrate (dumps, file archives). @default <trashDir>/../work */
    workDir?: string;
    /** Site backups (backup.ts). @default <trashDir>/../backups */
    backupsDir?: string;
  }) {
    this.ns = deps.ns;
    this.hub = deps.hub;
    this.tasks = deps.tasks;
    this.trees = deps.trees;
    this.sync = deps.sync;
    this.steps = new StepLog(deps.db);
    this.trashDir = deps.trashDir;
    this.onlineWaitMs = deps.onlineWaitMs ?? 30_000;
    this.mover = new SiteMover(this, deps.workDir ?? join(dirname(deps.trashDir), 'work'));
    this.importer = new SiteImporter(this);
    this.login = new SiteLogin(this);
    this.backups = new SiteBackups(this, new BackupStore(deps.backupsDir ?? join(dirname(deps.trashDir), 'backups')), deps.workDir ?? join(dirname(deps.trashDir), 'work'));
    for (const kind of SITE_TASKS) {
      this.tasks.register(kind, (ctx) => this.run(ctx), {
        resume: async (ctx) => {
          throw await resumeRollback(ctx, this.stepsFor(ctx, {}), this.steps);
        },
      });
    }
  }

  /** Wires HTTPS in (Core does, once). */
  setHttps(hook: SiteHttpsHook): void {
    this.https = hook;
  }

  // ---------------------------------------------------------------- submitting

  private submit(kind: SiteTaskKind, domain: string, platform: string, params: Record<string, unknown>): TaskInfo {
    return this.tasks.submit({ kind, entity: `site:${domain}`, locks: [`platform:${platform}`], params: { domain, platform, ...params } });
  }

  /**
   * Queues `site.install` after checking what can be checked now (nothing is reserved until the
   * task runs its first step).
   * @throws SpokeError INVALID_DOMAIN, DOMAIN_TAKEN, PLATFORM_NOT_FOUND, PLATFORM_NOT_VERIFIED,
   *   PLATFORM_KIND_UNSUPPORTED, DB_SERVER_REQUIRED, SERVER_NOT_FOUND, SITE_DIR_EXISTS, INVALID_ARGUMENT
   */
  install(input: InstallSiteInput): QueuedInstall {
    const domain = input.domain.toLowerCase();
    checkDomain(domain);
    const p = this.ns.getPlatform(input.platform);
    const { kind, registry } = this.platformKind(p);
    const drupal = DRUPAL_KINDS.has(kind);
    if (!drupal && (input.profile || input.locale)) throw fail('INVALID_ARGUMENT', `platform ${p.name} is ${kind}: --profile and --locale are for Drupal platforms`);
    const profile = drupal ? chooseProfile(p.name, registry, input.profile || undefined) : '';
    const locale = drupal ? checkLocale(input.locale || 'en') : '';
    const dbServer = input.dbServer || this.chooseDbServer(p);
    const aliases = [...new Set((input.aliases ?? []).map((a) => a.toLowerCase()))];
    this.ns.checkNewSite({ domain, platform: p.name, dbServer, aliases });
    if (existsSync(join(this.trees.hostPath(p.path), siteDir(domain)))) {
      throw fail('SITE_DIR_EXISTS', `${siteDir(domain)} already exists in platform ${p.name} (${this.trees.hostPath(p.path)}); move it away or import the site`);
    }
    const adminUser = input.adminUser || 'admin';
    if (!/^[A-Za-z0-9._@-]{1,60}$/.test(adminUser)) throw fail('INVALID_ARGUMENT', `admin user ${JSON.stringify(adminUser)}: use 1-60 letters, digits, . _ @ -`);
    const adminEmail = input.adminEmail || `admin@${domain}`;
    if (!/^[^\s@]+@[^\s@]+$/.test(adminEmail)) throw fail('INVALID_ARGUMENT', `admin email ${JSON.stringify(adminEmail)} is not an address`);
    const cronIntervalS = input.cronInterval === undefined ? DEFAULT_CRON_INTERVAL_S : parseCronInterval(input.cronInterval);
    const title = input.title || domain;
    // eslint-disable-next-line no-control-regex
    if (title.length > 200 || /[\x00-\x1f\x7f]/.test(title)) throw fail('INVALID_ARGUMENT', 'the title must be 1-200 characters without control characters');
    if (input.https) this.checkHttps();
    const task = this.submit('site.install', domain, p.name, { dbServer, aliases, kind, title, adminUser, adminEmail, redirectAliases: input.redirectAliases === true, profile, locale, cronIntervalS, ...(input.https ? { https: true } : {}) });
    const adminPassword = kind === 'wordpress' || drupal ? randomBytes(18).toString('base64url') : '';
    if (adminPassword) this.installPasswords.set(task.id, adminPassword);
    return { task, adminPassword };
  }

  /** Queues `site.verify`. @throws SpokeError SITE_NOT_FOUND, SITE_NOT_INSTALLED */
  verify(domain: string): TaskInfo {
    const s = this.activeSite(domain, 'verify');
    return this.submit('site.verify', s.domain, s.platform, {});
  }

  /** Queues `site.disable` / `site.enable`. @throws SpokeError SITE_NOT_FOUND, SITE_NOT_INSTALLED */
  setEnabled(domain: string, enabled: boolean): TaskInfo {
    const s = this.activeSite(domain, enabled ? 'enable' : 'disable');
    return this.submit(enabled ? 'site.enable' : 'site.disable', s.domain, s.platform, {});
  }

  /** Queues `site.alias.add`. @throws SpokeError SITE_NOT_FOUND, SITE_NOT_INSTALLED, INVALID_DOMAIN, DOMAIN_TAKEN */
  addAlias(domain: string, alias: string): TaskInfo {
    const s = this.activeSite(domain, 'add an alias to');
    const a = alias.toLowerCase();
    this.ns.checkNewAlias(s.domain, a);
    return this.submit('site.alias.add', s.domain, s.platform, { alias: a });
  }

  /** Queues `site.alias.rm`. @throws SpokeError SITE_NOT_FOUND, SITE_NOT_INSTALLED, ALIAS_NOT_FOUND */
  removeAlias(domain: string, alias: string): TaskInfo {
    const s = this.activeSite(domain, 'remove an alias of');
    const a = alias.toLowerCase();
    this.ns.checkRemoveAlias(s.domain, a);
    return this.submit('site.alias.rm', s.domain, s.platform, { alias: a });
  }

  /**
   * Queues `site.alias.redirect`: the aliases answer with a 301 to the domain (on) or serve the
   * site (off). @throws SpokeError SITE_NOT_FOUND, SITE_NOT_INSTALLED
   */
  setAliasRedirect(domain: string, on: boolean): TaskInfo {
    const s = this.activeSite(domain, 'change the alias redirect of');
    if (s.domain !== domain.toLowerCase()) throw fail('SITE_NOT_FOUND', `${domain} is an alias of ${s.domain}; name the site by its domain`);
    return this.submit('site.alias.redirect', s.domain, s.platform, { on });
  }

  /** Queues `site.import` (see import.ts). */
  import(input: ImportSiteInput): TaskInfo {
    return this.tasks.submit(this.importer.planImport(input));
  }

  /**
   * Queues `site.delete`: a backup first (kept after the delete) unless `noBackup`.
   * @throws SpokeError SITE_NOT_FOUND
   */
  delete(domain: string, opts: { noBackup: boolean }): TaskInfo {
    const s = this.ns.getSite(domain);
    if (s.domain !== domain.toLowerCase()) throw fail('SITE_NOT_FOUND', `${domain} is an alias of ${s.domain}; name the site by its domain to delete it`);
    return this.submit('site.delete', s.domain, s.platform, { noBackup: opts.noBackup });
  }

  /** Queues `site.backup`. @throws SpokeError SITE_NOT_FOUND, SITE_NOT_INSTALLED */
  backup(domain: string): TaskInfo {
    return this.tasks.submit(this.backups.planBackup(domain));
  }

  /** Queues `site.restore`. @throws SpokeError SITE_NOT_FOUND, SITE_NOT_INSTALLED, BACKUP_NOT_FOUND */
  restore(domain: string, backupId: string): TaskInfo {
    return this.tasks.submit(this.backups.planRestore(domain, backupId));
  }

  /** Queues `site.clone` (see migrate.ts). */
  clone(input: CloneSiteInput): TaskInfo {
    return this.tasks.submit(this.mover.planClone(input));
  }

  /** Queues `site.migrate` (see migrate.ts). */
  migrate(input: MigrateSiteInput): TaskInfo {
    return this.tasks.submit(this.mover.planMigrate(input));
  }

  activeSite(domain: string, what: string): SiteInfo {
    const s = this.ns.getSite(domain);
    if (!ACTIVE.has(s.status)) {
      throw fail('SITE_NOT_INSTALLED', `site ${s.domain} is ${s.status}; cannot ${what} it (see: spoke task ls --entity site:${s.domain})`);
    }
    return s;
  }

  /**
   * The db server for a new site when none is named: the only agent server with a db service
   * (detected or pinned); among several, the platform's own server when it is one of them.
   * @throws SpokeError DB_SERVER_REQUIRED
   */
  chooseDbServer(p: PlatformInfo): string {
    const candidates = this.ns
      .listServers()
      .filter((s) => s.kind === 'agent' && s.enrolled && s.services.some((x) => x.kind === 'db' && (x.detectedImpl || x.pinnedImpl)))
      .map((s) => s.name);
    if (candidates.length === 1) return candidates[0] as string;
    if (candidates.includes(p.server)) return p.server;
    if (candidates.length === 0) {
      throw fail('DB_SERVER_REQUIRED', 'no agent server reports a database service; name the one with a db section in its agent.json: --db-server NAME');
    }
    throw fail('DB_SERVER_REQUIRED', `several servers offer a database (${candidates.join(', ')}); choose one: --db-server NAME`);
  }

  platformKind(p: PlatformInfo): { kind: PlatformKind; coreVersion: string | null; registry: Registry } {
    if (!p.registryJson) throw fail('PLATFORM_NOT_VERIFIED', `platform ${p.name} has not been verified yet; run: spoke platform verify ${p.name}`);
    const r = JSON.parse(p.registryJson) as Registry;
    if (!settingsSupported(r.kind)) {
      throw fail('PLATFORM_KIND_UNSUPPORTED', `platform ${p.name} is ${r.kind}; Spoke installs sites on Drupal 6/7/8+ and WordPress platforms only`);
    }
    return { kind: r.kind, coreVersion: r.coreVersion, registry: r };
  }

  // ---------------------------------------------------------------- running

  private async run(ctx: TaskContext): Promise<unknown> {
    const state: { result?: unknown } = {};
    try {
      await runSteps(ctx, this.stepsFor(ctx, state), this.steps);
    } finally {
      this.installPasswords.delete(ctx.task.id);
    }
    return state.result ?? null;
  }

  /** The steps of a task, from its kind and params alone (also after a restart). */
  private stepsFor(ctx: TaskContext, state: { result?: unknown }): Step[] {
    const params = ctx.task.params;
    const domain = String(params.domain);
    const platform = String(params.platform);
    switch (ctx.task.kind as SiteTaskKind) {
      case 'site.install':
        return [...this.installSteps(domain, platform, params, state), ...(params.https === true ? this.httpsSteps(domain) : [])];
      case 'site.verify':
        return this.verifySteps(domain, platform, state);
      case 'site.disable':
      case 'site.enable':
        return this.enableSteps(domain, ctx.task.kind === 'site.enable', state);
      case 'site.alias.add':
      case 'site.alias.rm':
        return this.aliasSteps(domain, platform, String(params.alias), ctx.task.kind === 'site.alias.add', state);
      case 'site.alias.redirect':
        return this.redirectSteps(domain, params.on === true, state);
      case 'site.import':
        return this.importer.steps(ctx, state);
      case 'site.delete':
        return [...(params.noBackup === false ? [this.backups.deleteBackupStep(domain)] : []), ...this.deleteSteps(domain, platform, ctx.task.id, state)];
      case 'site.backup':
      case 'site.restore':
        return this.backups.steps(ctx, state);
      case 'site.clone':
      case 'site.migrate':
        return this.mover.steps(ctx, state);
    }
    throw fail('INTERNAL', `unknown site task ${ctx.task.kind}`);
  }

  private installSteps(domain: string, platform: string, params: Record<string, unknown>, state: { result?: unknown }): Step[] {
    const dbServer = String(params.dbServer);
    const aliases = (params.aliases as string[] | undefined) ?? [];
    let installer = { ran: false, reason: '' };
    return [
      {
        name: 'reserve',
        do: async (ctx) => {
          const names = siteDbName(domain, this.ns.dbNamesTaken(dbServer));
          this.ns.createSite({
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
          if (this.siteExists(d)) this.ns.deleteSite(d);
          ctx.log(`released ${d}`);
        },
      },
      {
        name: 'create-database',
        do: async (ctx) => {
          const s = this.ns.getSite(domain);
          const hosts = this.webServers(platform);
          const r = await this.call(ctx, dbServer, {
            type: 'dbCreate',
            database: s.dbName as string,
            user: s.dbUser as string,
            password: this.ns.siteSecrets(domain).dbPassword,
            hosts,
          });
          this.recordDbAddress(ctx, domain, dbServer, r);
          ctx.log(`${dbServer}: created database ${s.dbName} and user ${s.dbUser} for ${r.hosts.join(', ')}; web servers reach it at ${this.ns.getSite(domain).dbHost}:${this.ns.getSite(domain).dbPort}`);
          return { server: dbServer, database: s.dbName, user: s.dbUser, hosts };
        },
        undo: async (ctx, data) => this.dropDatabase(ctx, data as DbUndo),
      },
      {
        name: 'write-files',
        do: async (ctx) => this.writeFiles(ctx, platform, { site: domain }),
        undo: async (ctx, data) => this.restoreFiles(ctx, data as WriteUndo),
      },
      { name: 'converge', do: async (ctx) => void (await this.converge(ctx, platform)) },
      {
        name: 'configure-site',
        do: async (ctx) => this.configure(ctx, domain, true),
        undo: async (ctx, data) => this.unconfigure(ctx, data as ConfigureUndo, true),
      },
      {
        name: 'run-installer',
        do: async (ctx) => {
          const servers = this.webServers(platform);
          const p = this.ns.getPlatform(platform);
          let adminPassword = this.installPasswords.get(ctx.task.id);
          this.installPasswords.delete(ctx.task.id);
          if (!adminPassword) {
            adminPassword = randomBytes(18).toString('base64url');
            ctx.log(`the admin password made when this install was queued was lost (the master restarted); the installer sets one nobody has seen: log in with spoke site login-url ${domain}`, 'warn');
          }
          const profile = params.profile ? String(params.profile) : '';
          if (profile) ctx.log(`${servers[0]}: running the Drupal installer (profile ${profile}, locale ${String(params.locale || 'en')}); this takes a while`);
          const r = await this.call(
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
          if (r.ran) ctx.log(`${servers[0]}: installer ran for ${domain}${profile ? ` (profile ${profile})` : ''}; admin user ${String(params.adminUser)} (its password was shown to whoever queued the install, and is kept nowhere)`);
          else ctx.log(`${servers[0]}: installer not run: ${r.reason}; finish the install in a browser at ${r.url || `http://${domain}/`}`, 'warn');
        },
      },
      {
        name: 'finish',
        do: async (ctx) => {
          this.ns.setSiteStatus(domain, 'installed', { installedMs: Date.now() });
          const s = this.ns.getSite(domain);
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

  private verifySteps(domain: string, platform: string, state: { result?: unknown }): Step[] {
    let pending: SiteUpdateInfo[] | null = null;
    return [
      { name: 'check', do: async () => void this.activeSite(domain, 'verify') },
      { name: 'write-files', do: async (ctx) => void (await this.writeFiles(ctx, platform, { site: domain })) },
      { name: 'converge', do: async (ctx) => void (await this.converge(ctx, platform)) },
      {
        name: 'configure-site',
        do: async (ctx) => void (await this.configure(ctx, domain, this.ns.getSite(domain).status !== 'disabled')),
      },
      {
        name: 'db-grants',
        do: async (ctx) => {
          const s = this.ns.getSite(domain);
          if (!s.dbServer || !s.dbName || !s.dbUser) return ctx.log('no database recorded for this site; nothing to grant', 'warn');
          const hosts = this.webServers(platform);
          const r = await this.call(ctx, s.dbServer, { type: 'dbGrants', database: s.dbName, user: s.dbUser, password: this.ns.siteSecrets(domain).dbPassword, hosts });
          this.recordDbAddress(ctx, domain, s.dbServer, r);
          ctx.log(`${s.dbServer}: grants for ${s.dbUser}: ${r.hosts.join(', ')}${r.added.length ? `; added ${r.added.join(', ')}` : ''}${r.removed.length ? `; removed ${r.removed.join(', ')}` : ''}`);
        },
      },
      {
        name: 'check-updates',
        do: async (ctx) => {
          pending = await this.pendingUpdates(ctx, domain, platform);
        },
      },
      {
        name: 'finish',
        do: async (ctx) => {
          const s = this.ns.getSite(domain);
          if (s.status === 'failed') this.ns.setSiteStatus(domain, 'installed');
          state.result = { domain, status: this.ns.getSite(domain).status, ...(pending ? { pendingUpdates: pending } : {}) };
          ctx.log(`site ${domain} verified`);
        },
      },
    ];
  }

  /**
   * The pending database updates of a Drupal 7/8+ site, asked of its first web server and logged
   * (null for other kinds, or when the check itself failed: a warning, never a failed verify).
   */
  private async pendingUpdates(ctx: TaskContext, domain: string, platform: string): Promise<SiteUpdateInfo[] | null> {
    const p = this.ns.getPlatform(platform);
    const { kind } = this.platformKind(p);
    if (kind !== 'drupal7' && kind !== 'drupal8') return null;
    const server = this.webServers(platform)[0] as string;
    try {
      const r = await this.call(ctx, server, { type: 'siteTool', tree: p.path, domain, kind, op: 'updates' }, { timeoutMs: 5 * 60_000 });
      if (r.pending.length === 0) ctx.log(`${server}: no pending database updates`);
      else {
        ctx.log(`${server}: ${r.pending.length} pending database update${r.pending.length === 1 ? '' : 's'} (they run on the next migrate, or with update.php):`, 'warn');
        for (const line of describeUpdates(r.pending)) ctx.log(`  ${line}`, 'warn');
      }
      return r.pending;
    } catch (e) {
      ctx.log(`${server}: could not check for pending database updates: ${isSpokeError(e) ? `${e.code}: ${e.message}` : String(e)}`, 'warn');
      return null;
    }
  }

  private enableSteps(domain: string, enabled: boolean, state: { result?: unknown }): Step[] {
    return [
      {
        name: enabled ? 'enable-vhost' : 'disable-vhost',
        do: async (ctx) => {
          const s = this.activeSite(domain, enabled ? 'enable' : 'disable');
          return this.configure(ctx, domain, enabled, { revert: { enabled: s.status !== 'disabled', aliases: s.aliases } });
        },
        undo: async (ctx, data) => this.reconfigure(ctx, data as ConfigureUndo, !enabled),
      },
      {
        name: 'set-status',
        do: async (ctx) => {
          const before = this.ns.getSite(domain).status;
          this.ns.setSiteStatus(domain, enabled ? 'installed' : 'disabled');
          state.result = { domain, status: enabled ? 'installed' : 'disabled' };
          ctx.log(`site ${domain} ${enabled ? 'enabled' : 'disabled (every name answers 503)'}`);
          return { before };
        },
      },
    ];
  }

  private aliasSteps(domain: string, platform: string, alias: string, add: boolean, state: { result?: unknown }): Step[] {
    return [
      {
        name: add ? 'add-alias' : 'remove-alias',
        do: async (ctx) => {
          this.activeSite(domain, add ? 'add an alias to' : 'remove an alias of');
          if (add) this.ns.addAlias(domain, alias);
          else this.ns.removeAlias(domain, alias);
          ctx.log(`${add ? 'added' : 'removed'} alias ${alias} ${add ? 'to' : 'of'} ${domain}`);
          return { domain, alias, add };
        },
        undo: async (ctx, data) => {
          const d = data as { domain: string; alias: string; add: boolean };
          if (!this.siteExists(d.domain)) return;
          const has = this.ns.getSite(d.domain).aliases.includes(d.alias);
          if (d.add && has) this.ns.removeAlias(d.domain, d.alias);
          if (!d.add && !has) this.ns.addAlias(d.domain, d.alias);
          ctx.log(`${d.add ? 'removed' : 'restored'} alias ${d.alias}`);
        },
      },
      {
        name: 'write-files',
        do: async (ctx) => {
          const s = this.ns.getSite(domain);
          const before = add ? s.aliases.filter((a) => a !== alias) : [...s.aliases, alias].sort();
          return this.writeFiles(ctx, platform, { site: domain, previousAliases: { domain, aliases: before } });
        },
        undo: async (ctx, data) => this.restoreFiles(ctx, data as WriteUndo),
      },
      { name: 'converge', do: async (ctx) => void (await this.converge(ctx, platform)) },
      {
        name: 'configure-site',
        do: async (ctx) => {
          const s = this.ns.getSite(domain);
          const old = add ? s.aliases.filter((a) => a !== alias) : [...s.aliases, alias].sort();
          const enabled = s.status !== 'disabled';
          const r = await this.configure(ctx, domain, enabled, { revert: { enabled, aliases: old } });
          state.result = { domain, aliases: s.aliases };
          return { ...r, aliases: old };
        },
        undo: async (ctx, data) => {
          const d = data as ConfigureUndo;
          await this.reconfigure(ctx, d, d.enabled);
        },
      },
    ];
  }

  private redirectSteps(domain: string, on: boolean, state: { result?: unknown }): Step[] {
    return [
      {
        name: 'set-redirect',
        do: async (ctx) => {
          const before = this.activeSite(domain, 'change the alias redirect of').redirectAliases;
          this.ns.setSiteRedirectAliases(domain, on);
          ctx.log(on ? `the aliases of ${domain} answer with a 301 to http://${domain}/` : `the aliases of ${domain} serve the site`);
          return { domain, before };
        },
        undo: async (ctx, data) => {
          const d = data as { domain: string; before: boolean };
          if (this.siteExists(d.domain)) this.ns.setSiteRedirectAliases(d.domain, d.before);
          ctx.log(`alias redirect of ${d.domain} is ${d.before ? 'on' : 'off'} again`);
        },
      },
      {
        name: 'configure-site',
        do: async (ctx) => {
          const s = this.ns.getSite(domain);
          const enabled = s.status !== 'disabled';
          await this.configure(ctx, domain, enabled, { revert: { enabled, aliases: s.aliases } });
          state.result = { domain, redirectAliases: on };
        },
      },
    ];
  }

  private deleteSteps(domain: string, platform: string, taskId: number, state: { result?: unknown }): Step[] {
    const trash = join(this.trashDir, `task-${taskId}`);
    return [
      {
        name: 'mark-deleting',
        do: async (ctx) => {
          const before = this.ns.getSite(domain).status;
          this.ns.setSiteStatus(domain, 'deleting');
          ctx.log(`deleting site ${domain} (was ${before})`);
          return { domain, before };
        },
        undo: async (ctx, data) => {
          const d = data as { domain: string; before: SiteStatus };
          if (this.siteExists(d.domain)) this.ns.setSiteStatus(d.domain, d.before);
          ctx.log(`site ${d.domain} is ${d.before} again`);
        },
      },
      {
        name: 'remove-vhost',
        do: async (ctx) => {
          const s = this.ns.getSite(domain);
          const servers = await this.removeSite(ctx, domain, platform, false);
          return { domain, platform, servers, enabled: s.status !== 'disabled', aliases: s.aliases } satisfies ConfigureUndo;
        },
        undo: async (ctx, data) => {
          const d = data as ConfigureUndo;
          await this.reconfigure(ctx, d, d.enabled);
        },
      },
      {
        name: 'remove-files',
        do: async (ctx) => {
          const p = this.ns.getPlatform(platform);
          const root = this.trees.hostPath(p.path);
          const dir = join(root, siteDir(domain));
          let moved = false;
          if (existsSync(dir)) {
            mkdirSync(trash, { recursive: true, mode: 0o700 });
            moveDir(dir, join(trash, domain));
            moved = true;
            ctx.log(`moved ${siteDir(domain)} out of the platform tree (kept until the database is dropped)`);
          }
          const w = await this.writeFiles(ctx, platform, { without: domain });
          return { ...w, moved, trash: join(trash, domain), dir: siteDir(domain) };
        },
        undo: async (ctx, data) => {
          const d = data as WriteUndo & { moved: boolean; trash: string; dir: string };
          if (d.moved && existsSync(d.trash)) {
            const p = this.ns.getPlatform(d.platform);
            const dest = join(this.trees.hostPath(p.path), d.dir);
            if (!existsSync(dest)) moveDir(d.trash, dest);
            this.trees.touch(p.path, [d.dir]);
            ctx.log(`moved ${d.dir} back into the platform tree`);
          }
          await this.restoreFiles(ctx, { ...d, previous: d.previous, created: d.created });
        },
      },
      { name: 'converge', do: async (ctx) => void (await this.converge(ctx, platform, [siteDir(domain)])) },
      {
        name: 'drop-database',
        commit: true,
        do: async (ctx) => {
          const s = this.ns.getSite(domain);
          if (!s.dbServer || !s.dbName || !s.dbUser) return ctx.log('no database recorded for this site');
          await this.dropDatabase(ctx, { server: s.dbServer, database: s.dbName, user: s.dbUser, hosts: this.webServers(platform) });
        },
      },
      {
        name: 'delete-files',
        do: async (ctx) => void (await this.removeSite(ctx, domain, platform, true)),
      },
      {
        name: 'free',
        do: async (ctx) => {
          if (this.siteExists(domain)) this.ns.deleteSite(domain);
          rmSync(trash, { recursive: true, force: true });
          state.result = { deleted: domain };
          ctx.log(`site ${domain} deleted; its names are free`);
        },
      },
    ];
  }

  // ---------------------------------------------------------------- helpers (also used by migrate.ts)

  siteExists(domain: string): boolean {
    try {
      return this.ns.getSite(domain).domain === domain;
    } catch (e) {
      if (isSpokeError(e, 'SITE_NOT_FOUND')) return false;
      throw e;
    }
  }

  /** Agent servers that serve a platform (every member of a cluster). */
  webServers(platform: string): string[] {
    const p = this.ns.getPlatform(platform);
    const t = this.ns.targets(p.server);
    if (t.length === 0) throw fail('CLUSTER_NEEDS_MEMBER', `${p.server} has no members`);
    return t;
  }

  pinned(server: string, platformServer: string): string {
    return this.ns.httpPin(server, platformServer);
  }

  /** The agent is connected now. */
  isOnline(server: string): boolean {
    return this.hub.isOnline(server);
  }

  /** Sends a command now, outside a task (AGENT_OFFLINE at once when the agent is not connected). */
  callNow<K extends AgentCommand['type']>(server: string, cmd: Extract<AgentCommand, { type: K }>, opts: CallOptions = {}): Promise<AgentCommandResults[K]> {
    return this.hub.call(server, cmd, { timeoutMs: 3 * 60_000, ...opts });
  }

  /** Waits (up to onlineWaitMs) for an agent to be online, then sends the command. */
  async call<K extends AgentCommand['type']>(
    ctx: TaskContext,
    server: string,
    cmd: Extract<AgentCommand, { type: K }>,
    opts: CallOptions = {},
  ): Promise<AgentCommandResults[K]> {
    await this.hub.awaitReconnect(server, { signal: ctx.signal, log: ctx.log });
    const end = Date.now() + this.onlineWaitMs;
    let said = false;
    while (!this.hub.isOnline(server) && Date.now() < end && !ctx.signal.aborted) {
      if (!said) ctx.log(`waiting for ${server} to come online`, 'warn');
      said = true;
      await new Promise((r) => setTimeout(r, 200));
    }
    return this.hub.call(server, cmd, { timeoutMs: 3 * 60_000, ...opts, signal: ctx.signal, log: ctx.log });
  }

  recordDbAddress(ctx: TaskContext, domain: string, server: string, r: { siteHost: string; sitePort: number }): void {
    if (!r.siteHost) {
      ctx.log(`${server} did not say how web servers reach its database (an older agent); using localhost:3306`, 'warn');
    }
    this.ns.setSiteDbAddress(domain, r.siteHost || 'localhost', r.sitePort || 3306);
  }

  async dropDatabase(ctx: TaskContext, d: DbUndo): Promise<void> {
    const r = await this.call(ctx, d.server, { type: 'dbDrop', database: d.database, user: d.user, hosts: d.hosts });
    ctx.log(
      `${d.server}: ${r.databaseExisted ? `dropped database ${d.database}` : `database ${d.database} was already gone`}; ${r.usersDropped.length ? `dropped user ${d.user}@${r.usersDropped.join(',')}` : `no account of ${d.user} left`}`,
    );
  }

  /** The sites (names and aliases) whose platform-level files a platform gets. */
  platformSites(platform: string, opts: { without?: string; previousAliases?: SiteNames }): SiteNames[] {
    return this.ns
      .listSites(platform)
      .filter((s) => s.status !== 'pending' && s.domain !== opts.without)
      .map((s) => (opts.previousAliases?.domain === s.domain ? opts.previousAliases : { domain: s.domain, aliases: s.aliases }));
  }

  /**
   * Renders and writes a site's files (when `site` is given) and the platform-level files into
   * the platform's canonical tree; files that no longer belong (a removed alias' symlink) go.
   * Only what differs is written. Returns the undo data (what was there before).
   */
  async writeFiles(
    ctx: TaskContext,
    platform: string,
    opts: {
      site?: string;
      without?: string;
      previousAliases?: SiteNames;
      /** A site not (or not yet) in this platform's rows: its files from these facts, its names in the platform files (clone/migrate). */
      add?: SiteFacts;
      /** A site that left the platform since the last render (its stale files go). */
      gone?: SiteNames;
    },
  ): Promise<WriteUndo> {
    const p = this.ns.getPlatform(platform);
    const { kind, coreVersion } = this.platformKind(p);
    const root = this.trees.hostPath(p.path);
    const files: SiteFile[] = [];
    const own = opts.site ? this.ns.getSite(opts.site) : null;
    if (own?.ownSettings) ctx.log(`${settingsFileOf(kind, own.domain)} is the site's own (imported); Spoke does not render it`);
    if (opts.site && !own?.ownSettings) {
      const s = this.ns.getSite(opts.site);
      const facts = this.siteFacts(s, kind, coreVersion);
      if (!facts) throw fail('INTERNAL', `site ${s.domain} has no database recorded yet`);
      files.push(...renderSiteFiles(facts));
    }
    let sites = this.platformSites(platform, { without: opts.without });
    if (opts.add) {
      const add = opts.add;
      files.push(...renderSiteFiles(add));
      sites = [
        ...sites.filter((x) => x.domain !== add.domain).map((x) => ({ domain: x.domain, aliases: x.aliases.filter((a) => !add.aliases.includes(a)) })),
        { domain: add.domain, aliases: add.aliases },
      ].sort((a, b) => (a.domain < b.domain ? -1 : a.domain > b.domain ? 1 : 0));
    }
    const next = renderPlatformSiteFiles(kind, sites);
    // What the last render produced (the site being deleted still in, a changed alias as it was):
    // the files it had that the new render lacks are removed (Drupal 6 alias symlinks).
    const previous = this.platformSites(platform, { previousAliases: opts.previousAliases });
    if (opts.gone && !previous.some((x) => x.domain === opts.gone?.domain)) previous.push(opts.gone);
    const before = renderPlatformSiteFiles(kind, previous);
    const stale = staleSiteFiles(before, next);
    files.push(...next);
    const undo: WriteUndo = { platform, previous: [], created: [] };
    const touched: string[] = [];
    for (const f of files) {
      const abs = join(root, f.path);
      if (sameAsDisk(abs, f)) continue;
      undo.previous.push(snapshot(root, f.path));
      const made = mkdirp(root, dirname(f.path));
      if (made) undo.created.push(made);
      writeSiteFile(abs, f);
      touched.push(f.path);
    }
    for (const rel of stale) {
      const abs = join(root, rel);
      if (!lexists(abs)) continue;
      undo.previous.push(snapshot(root, rel));
      rmSync(abs, { force: true });
      touched.push(rel);
    }
    this.trees.touch(p.path, [...touched, ...undo.created]);
    ctx.log(touched.length ? `platform ${p.name}: wrote ${touched.join(', ')}` : `platform ${p.name}: site files unchanged`);
    return undo;
  }

  /** Undo of writeFiles: puts back what was there, removes what it created, converges. */
  async restoreFiles(ctx: TaskContext, d: WriteUndo): Promise<void> {
    const p = this.ns.getPlatform(d.platform);
    const root = this.trees.hostPath(p.path);
    for (const prev of [...d.previous].reverse()) {
      const abs = join(root, prev.path);
      rmSync(abs, { force: true });
      if (prev.type === 'file') {
        mkdirSync(dirname(abs), { recursive: true });
        writeFileSync(abs, Buffer.from(prev.data ?? '', 'base64'), { mode: prev.mode ?? 0o644 });
        chmodSync(abs, prev.mode ?? 0o644);
      } else if (prev.type === 'symlink') {
        mkdirSync(dirname(abs), { recursive: true });
        symlinkSync(prev.data ?? '', abs);
      }
    }
    for (const dir of [...d.created].sort((a, b) => b.length - a.length)) rmSync(join(root, dir), { recursive: true, force: true });
    this.trees.touch(p.path, [...d.previous.map((x) => x.path), ...d.created]);
    ctx.log(`platform ${p.name}: restored ${[...d.previous.map((x) => x.path), ...d.created].join(', ') || 'nothing'}`);
    await this.converge(ctx, d.platform);
  }

  async converge(ctx: TaskContext, platform: string, paths: string[] = []): Promise<void> {
    await this.sync.converge(ctx, platform, paths);
  }

  /**
   * ConfigureSite on every web server of the site's platform. When some fail, the ones that
   * succeeded are put back (`revert`: configured as before; without it: RemoveSite, for a new
   * site) before the error is thrown.
   */
  async configure(
    ctx: TaskContext,
    domain: string,
    enabled: boolean,
    opts: { aliases?: string[]; revert?: { enabled: boolean; aliases: string[] } } = {},
  ): Promise<ConfigureUndo> {
    const s = this.ns.getSite(domain);
    const p = this.ns.getPlatform(s.platform);
    const servers = this.webServers(p.name);
    const aliases = opts.aliases ?? s.aliases;
    const results = await this.configureOn(ctx, servers, s, p, enabled, aliases);
    const failed = results.flatMap((r, i) => (r.status === 'rejected' ? [{ server: servers[i] as string, e: r.reason as unknown }] : []));
    if (failed.length) {
      const ok = results.flatMap((r, i) => (r.status === 'fulfilled' ? [servers[i] as string] : []));
      if (ok.length) {
        ctx.log(`putting the vhost on ${ok.join(', ')} back as it was (it failed elsewhere)`, 'warn');
        const undoCtx = { ...ctx, signal: ctx.stopping };
        try {
          if (opts.revert) {
            const back = await this.configureOn(undoCtx, ok, s, p, opts.revert.enabled, opts.revert.aliases);
            const bad = back.find((b) => b.status === 'rejected');
            if (bad) throw (bad as PromiseRejectedResult).reason;
          } else {
            await this.unconfigure(undoCtx, { domain: s.domain, platform: p.name, servers: ok, enabled, aliases }, true);
          }
        } catch (e) {
          ctx.log(`UNDO FAILED: vhost on ${ok.join(', ')}: ${isSpokeError(e) ? `${e.code}: ${e.message}` : String(e)}; fix it by hand`, 'error');
        }
      }
      const first = failed[0] as { server: string; e: unknown };
      const strip = (m: string, server: string) => (m.startsWith(`${server}: `) ? m.slice(server.length + 2) : m);
      const msg = failed.map((f) => `${f.server} (${isSpokeError(f.e) ? `${f.e.code}: ${strip(f.e.message, f.server)}` : String(f.e)})`).join(', ');
      throw fail(isSpokeError(first.e) ? first.e.code : 'INTERNAL', `site ${s.domain}: web server config failed on ${msg}`);
    }
    return { domain: s.domain, platform: p.name, servers, enabled, aliases };
  }

  /** Refuses `--https` when HTTPS is not wired (nothing queued). @throws SpokeError INTERNAL */
  checkHttps(): void {
    if (!this.https) throw fail('INTERNAL', 'HTTPS is not wired');
    this.https.checkCanEnable();
  }

  /** The steps that turn HTTPS on after a task made the site (install, clone, migrate `--https`). */
  httpsSteps(domain: string): Step[] {
    if (!this.https) throw fail('INTERNAL', 'HTTPS is not wired');
    return this.https.enableSteps(domain);
  }

  configureOn(ctx: TaskContext, servers: string[], s: SiteInfo, p: PlatformInfo, enabled: boolean, aliases: string[]): Promise<PromiseSettledResult<string>[]> {
    const { kind, coreVersion } = this.platformKind(p);
    const files = this.settingsFiles(s, kind, coreVersion);
    const tls = this.https?.tlsFor(s.domain) ?? null;
    return Promise.allSettled(
      servers.map(async (server) => {
        const r = await this.call(ctx, server, {
          type: 'configureSite',
          domain: s.domain,
          platform: p.name,
          tree: p.path,
          kind,
          aliases,
          redirectAliases: s.redirectAliases,
          enabled,
          webGroupFiles: files,
          pinnedImpl: this.pinned(server, p.server),
          tls,
        });
        ctx.log(`${server}: ${r.impl} vhost ${r.path} ${configOutcome(r)}${enabled ? '' : ' (disabled: every name answers 503)'}${tls ? ' with https' : ''}`);
        for (const f of r.fixed) ctx.log(`${server}: ${f}`);
        for (const pr of r.problems) ctx.log(`${server}: ${pr}`, 'warn');
        return server;
      }),
    );
  }

  /**
   * The settings files of every site of a platform the web group must read (relative to the
   * platform root): sent with each converge, so a rewritten settings file never leaves the web
   * server unable to read it. [] for a platform that was never verified.
   */
  platformSettingsFiles(platform: string): string[] {
    try {
      const p = this.ns.getPlatform(platform);
      if (!p.registryJson) return [];
      const { kind, coreVersion } = this.platformKind(p);
      const files = new Set(this.ns.listSites(platform).flatMap((s) => this.settingsFiles(s, kind, coreVersion)));
      // A site dir in the tree without its row here yet (the copy a clone or migrate is making):
      // its settings file too.
      const sites = join(this.trees.hostPath(p.path), 'sites');
      let dirs: string[] = [];
      try {
        dirs = readdirSync(sites, { withFileTypes: true }).filter((d) => d.isDirectory() && d.name !== 'all' && d.name !== 'default').map((d) => d.name);
      } catch {
        /* no sites/ yet */
      }
      for (const d of dirs) {
        // Only site dirs (named as a domain): not a staging dir (.spoke-staging-*) or anything else.
        try {
          const rel = settingsFileOf(kind, d);
          if (lstatSync(join(this.trees.hostPath(p.path), rel)).isFile()) files.add(rel);
        } catch {
          /* not a site dir, or no settings file there */
        }
      }
      return [...files].sort();
    } catch (e) {
      if (isSpokeError(e) && (e.code === 'PLATFORM_KIND_UNSUPPORTED' || e.code === 'PLATFORM_NOT_FOUND')) return [];
      throw e;
    }
  }

  /** The settings files of a site the web group must read (relative to the platform root). */
  settingsFiles(s: SiteInfo, kind: PlatformKind, coreVersion: string | null): string[] {
    if (s.ownSettings) return [settingsFileOf(kind, s.domain)];
    const facts = this.siteFacts(s, kind, coreVersion);
    return facts ? renderSiteFiles(facts).filter((f) => f.webGroupReadable).map((f) => f.path) : [];
  }

  /** What a site's settings are rendered from (undefined while it has no database recorded). */
  private siteFacts(s: SiteInfo, kind: PlatformKind, coreVersion: string | null): SiteFacts | undefined {
    if (!s.dbName || !s.dbUser || !s.dbHost) return undefined;
    const sec = this.ns.siteSecrets(s.domain);
    return {
      domain: s.domain,
      aliases: s.aliases,
      kind,
      coreVersion,
      db: { name: s.dbName, user: s.dbUser, password: sec.dbPassword, host: s.dbHost, port: s.dbPort ?? 3306 },
      salt: sec.salt,
      ...(s.profile ? { profile: s.profile } : {}),
      ...(this.https?.servedOverHttps(s.domain) ? { https: true } : {}),
    };
  }

  /** Undo of an install's configure: RemoveSite (with the files dirs it created). */
  async unconfigure(ctx: TaskContext, d: ConfigureUndo, deleteFiles: boolean): Promise<void> {
    const p = this.ns.getPlatform(d.platform);
    const errors: string[] = [];
    for (const server of d.servers) {
      try {
        const r = await this.call(ctx, server, { type: 'removeSite', domain: d.domain, tree: p.path, deleteFiles, pinnedImpl: this.pinned(server, p.server) });
        ctx.log(`${server}: ${r.removed ? `removed vhost ${r.path}` : 'no vhost to remove'}${r.deleted.length ? `; deleted ${r.deleted.join(', ')}` : ''}`);
      } catch (e) {
        errors.push(`${server}: ${isSpokeError(e) ? `${e.code}: ${e.message}` : String(e)}`);
      }
    }
    if (errors.length) throw fail('AGENT_COMMAND_FAILED', `RemoveSite failed on ${errors.join('; ')}`);
  }

  /** Undo of a configure that changed a live vhost: configure it again as it was. */
  async reconfigure(ctx: TaskContext, d: ConfigureUndo, enabled: boolean): Promise<void> {
    if (!this.siteExists(d.domain)) return;
    await this.configure(ctx, d.domain, enabled, { aliases: d.aliases });
  }

  /** RemoveSite on every web server; a server without a web server is only warned about. */
  async removeSite(ctx: TaskContext, domain: string, platform: string, deleteFiles: boolean): Promise<string[]> {
    const p = this.ns.getPlatform(platform);
    const servers = this.webServers(platform);
    const done: string[] = [];
    for (const server of servers) {
      try {
        const r = await this.call(ctx, server, { type: 'removeSite', domain, tree: p.path, deleteFiles, pinnedImpl: this.pinned(server, p.server) });
        ctx.log(
          `${server}: ${r.removed ? `removed vhost ${r.path}${r.reloaded ? ' and reloaded' : ''}` : 'no vhost'}${deleteFiles ? (r.deleted.length ? `; deleted ${r.deleted.join(', ')}` : '; no site files left') : ''}`,
        );
        for (const pr of r.problems) ctx.log(`${server}: ${pr}`, 'warn');
        done.push(server);
      } catch (e) {
        if (isSpokeError(e, 'NO_HTTP_SERVICE')) {
          ctx.log(`${server}: ${e.code}: ${e.message}`, 'warn');
          continue;
        }
        throw e;
      }
    }
    return done;
  }
}

/** Undo data of a database step. */
export interface DbUndo {
  server: string;
  database: string;
  user: string;
  hosts: string[];
}

/** Undo data of a configure step: the servers and how the vhost was before. */
export interface ConfigureUndo {
  domain: string;
  platform: string;
  servers: string[];
  /** The enabled state to go back to. */
  enabled: boolean;
  aliases: string[];
}

function lexists(abs: string): boolean {
  try {
    lstatSync(abs);
    return true;
  } catch {
    return false;
  }
}

function snapshot(root: string, rel: string): Previous {
  const abs = join(root, rel);
  let st;
  try {
    st = lstatSync(abs);
  } catch {
    return { path: rel, type: 'none' };
  }
  if (st.isSymbolicLink()) return { path: rel, type: 'symlink', data: readlinkSync(abs) };
  if (st.isFile()) return { path: rel, type: 'file', data: readFileSync(abs).toString('base64'), mode: st.mode & 0o777 };
  throw fail('SITE_DIR_EXISTS', `${rel} in the platform tree is a directory where Spoke writes a file; move it away`);
}

function sameAsDisk(abs: string, f: SiteFile): boolean {
  try {
    const st = lstatSync(abs);
    if (f.kind === 'symlink') return st.isSymbolicLink() && readlinkSync(abs) === f.target;
    return st.isFile() && (st.mode & 0o777) === f.mode && readFileSync(abs, 'utf8') === f.content;
  } catch {
    return false;
  }
}

/** Creates `rel` (a dir under root) and its missing parents; returns the topmost one it made. */
function mkdirp(root: string, rel: string): string | null {
  const parts = rel.split('/').filter((x) => x && x !== '.');
  let first: string | null = null;
  for (let i = 1; i <= parts.length; i++) {
    const sub = parts.slice(0, i).join('/');
    if (!existsSync(join(root, sub))) {
      mkdirSync(join(root, sub), { mode: 0o755 });
      chmodSync(join(root, sub), 0o755);
      first ??= sub;
    }
  }
  return first;
}

/** Writes a file atomically with its mode (temp file + rename), or a symlink. */
function writeSiteFile(abs: string, f: SiteFile): void {
  if (f.kind === 'symlink') {
    rmSync(abs, { force: true });
    symlinkSync(f.target ?? '', abs);
    return;
  }
  const tmp = `${abs}.spoke-tmp-${process.pid}`;
  writeFileSync(tmp, f.content, { mode: f.mode });
  chmodSync(tmp, f.mode);
  renameSync(tmp, abs);
}
