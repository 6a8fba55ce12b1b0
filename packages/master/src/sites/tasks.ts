/**
 * The site tasks. Each is a list of steps with undos (steps.ts) run by the task engine on entity
 * `site:<domain>`, holding the platform's lock too (`platform:<name>`): writes to a platform's
 * canonical tree and its converges are serialized with the platform's own tasks and with the
 * other sites of the platform.
 *
 * Here: verify, disable, enable, delete. Elsewhere,
 * as more step lists over the helpers below (write/remove site files, converge, configure,
 * database): backup and restore (and delete's backup step) in backuptasks.ts, clone and migrate
 * in migrate.ts, import (a site found on disk, its own settings kept) in import.ts, install in
 * install.ts, alias add/rm and alias redirect on/off in aliassteps.ts.
 */
import { existsSync, mkdirSync, rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fail, isSpokeError } from '@spoke/shared';
import type { AgentHub } from '../servers/hub.js';
import type { SiteUpdateInfo } from '@spoke/shared';
import type { Namespace } from '../namespace/namespace.js';
import type { PlatformSync } from '../platforms/converge.js';
import type { Db } from '../namespace/store.js';
import type { TaskContext, TaskEngine } from '../tasks/engine.js';
import type { TreeStore } from '../platforms/trees.js';
import type { PlatformInfo, SiteStatus, TaskInfo } from '../types.js';
import { siteDir } from './settings.js';
import { StepLog, resumeRollback, runSteps, type Step } from '../tasks/steps.js';
import { SiteRollback } from './rollback.js';
import { MOVE_TASKS, SiteMover, type CloneSiteInput, type MigrateSiteInput } from './migrate.js';
import { BackupStore } from './backup.js';
import { BACKUP_TASKS, SiteBackups } from './backuptasks.js';
import { IMPORT_TASKS, SiteImporter, type ImportSiteInput } from './import.js';
import { SiteOps, type ConfigureUndo, type WriteUndo } from './ops.js';
import { moveDir } from '../fsmove.js';
import { SiteLogin } from './login.js';
import { aliasSteps, redirectSteps } from './aliassteps.js';
import { SiteInstaller, type InstallSiteInput, type QueuedInstall } from './install.js';
import { describeUpdates } from './drupal.js';
import { dropExpiredFormerNames } from './formernames.js';

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

/** Wires the site tasks into the task engine and submits them. */
export class SiteTasks {
  readonly ns: Namespace;
  private readonly tasks: TaskEngine;
  readonly trees: TreeStore;
  /** The operations the step lists are made of (ops.ts), shared with the siblings below. */
  readonly ops: SiteOps;
  private readonly steps: StepLog;
  private readonly trashDir: string;
  private readonly mover: SiteMover;
  private readonly importer: SiteImporter;
  /** Backups and restore (backuptasks.ts). */
  readonly backups: SiteBackups;
  /** One-time login links (login.ts). */
  readonly login: SiteLogin;
  private readonly installer: SiteInstaller;
  /** `spoke task rollback`: finishing an incomplete rollback (rollback.ts). */
  readonly rollback: SiteRollback;
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
    this.tasks = deps.tasks;
    this.trees = deps.trees;
    this.ops = new SiteOps({ ns: deps.ns, hub: deps.hub, trees: deps.trees, sync: deps.sync, onlineWaitMs: deps.onlineWaitMs });
    this.steps = new StepLog(deps.db);
    this.trashDir = deps.trashDir;
    const workDir = deps.workDir ?? join(dirname(deps.trashDir), 'work');
    this.backups = new SiteBackups(this.ops, new BackupStore(deps.backupsDir ?? join(dirname(deps.trashDir), 'backups')), workDir);
    this.mover = new SiteMover(this.ops, this.backups, workDir);
    this.importer = new SiteImporter(this.ops);
    this.login = new SiteLogin(this.ops);
    this.installer = new SiteInstaller(this.ops, (domain, platform, params) => this.submit('site.install', domain, platform, params));
    this.rollback = new SiteRollback({ tasks: this.tasks, db: deps.db, log: this.steps, kinds: SITE_TASKS, stepsOf: (ctx) => this.stepsFor(ctx, {}) });
    for (const kind of SITE_TASKS) {
      this.tasks.register(kind, (ctx) => this.run(ctx), {
        resume: async (ctx) => {
          throw await resumeRollback(ctx, this.stepsFor(ctx, {}), this.steps);
        },
      });
    }
  }

  // ---------------------------------------------------------------- submitting

  private submit(kind: SiteTaskKind, domain: string, platform: string, params: Record<string, unknown>): TaskInfo {
    return this.tasks.submit({ kind, entity: `site:${domain}`, locks: [`platform:${platform}`], params: { domain, platform, ...params } });
  }

  /** Queues `site.install` (see install.ts). */
  install(input: InstallSiteInput): QueuedInstall {
    return this.installer.queue(input);
  }

  /** Queues `site.verify`. @throws SpokeError SITE_NOT_FOUND, SITE_NOT_INSTALLED */
  verify(domain: string): TaskInfo {
    const s = this.ops.activeSite(domain, 'verify');
    return this.submit('site.verify', s.domain, s.platform, {});
  }

  /** Queues `site.disable` / `site.enable`. @throws SpokeError SITE_NOT_FOUND, SITE_NOT_INSTALLED */
  setEnabled(domain: string, enabled: boolean): TaskInfo {
    const s = this.ops.activeSite(domain, enabled ? 'enable' : 'disable');
    return this.submit(enabled ? 'site.enable' : 'site.disable', s.domain, s.platform, {});
  }

  /** Queues `site.alias.add`. @throws SpokeError SITE_NOT_FOUND, SITE_NOT_INSTALLED, INVALID_DOMAIN, DOMAIN_TAKEN */
  addAlias(domain: string, alias: string): TaskInfo {
    const s = this.ops.activeSite(domain, 'add an alias to');
    const a = alias.toLowerCase();
    this.ns.checkNewAlias(s.domain, a);
    return this.submit('site.alias.add', s.domain, s.platform, { alias: a });
  }

  /** Queues `site.alias.rm`. @throws SpokeError SITE_NOT_FOUND, SITE_NOT_INSTALLED, ALIAS_NOT_FOUND */
  removeAlias(domain: string, alias: string): TaskInfo {
    const s = this.ops.activeSite(domain, 'remove an alias of');
    const a = alias.toLowerCase();
    this.ns.checkRemoveAlias(s.domain, a);
    return this.submit('site.alias.rm', s.domain, s.platform, { alias: a });
  }

  /**
   * Queues `site.alias.redirect`: the aliases answer with a 301 to the domain (on) or serve the
   * site (off). @throws SpokeError SITE_NOT_FOUND, SITE_NOT_INSTALLED
   */
  setAliasRedirect(domain: string, on: boolean): TaskInfo {
    const s = this.ops.activeSite(domain, 'change the alias redirect of');
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

  private async run(ctx: TaskContext): Promise<unknown> {
    const state: { result?: unknown } = {};
    try {
      await runSteps(ctx, this.stepsFor(ctx, state), this.steps);
    } finally {
      this.installer.forget(ctx.task.id);
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
        return [...this.installer.steps(domain, platform, params, state), ...(params.https === true ? this.ops.httpsSteps(domain) : [])];
      case 'site.verify':
        return this.verifySteps(domain, platform, state);
      case 'site.disable':
      case 'site.enable':
        return this.enableSteps(domain, ctx.task.kind === 'site.enable', state);
      case 'site.alias.add':
      case 'site.alias.rm':
        return aliasSteps(this.ops, domain, platform, String(params.alias), ctx.task.kind === 'site.alias.add', state);
      case 'site.alias.redirect':
        return redirectSteps(this.ops, domain, params.on === true, state);
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

  private verifySteps(domain: string, platform: string, state: { result?: unknown }): Step[] {
    let pending: SiteUpdateInfo[] | null = null;
    return [
      {
        name: 'check',
        do: async (ctx) => {
          this.ops.activeSite(domain, 'verify');
          dropExpiredFormerNames(this.ns, ctx, domain, Date.now());
        },
      },
      { name: 'write-files', do: async (ctx) => void (await this.ops.writeFiles(ctx, platform, { site: domain })) },
      { name: 'converge', do: async (ctx) => void (await this.ops.converge(ctx, platform)) },
      {
        name: 'configure-site',
        do: async (ctx) => void (await this.ops.configure(ctx, domain, this.ns.getSite(domain).status !== 'disabled')),
      },
      {
        name: 'db-grants',
        do: async (ctx) => {
          const s = this.ns.getSite(domain);
          if (!s.dbServer || !s.dbName || !s.dbUser) return ctx.log('no database recorded for this site; nothing to grant', 'warn');
          const hosts = this.ops.webServers(platform);
          const r = await this.ops.call(ctx, s.dbServer, {
            type: 'dbGrants',
            database: s.dbName,
            user: s.dbUser,
            password: this.ns.siteSecrets(domain).dbPassword,
            hosts,
          });
          this.ops.recordDbAddress(ctx, domain, s.dbServer, r);
          ctx.log(
            `${s.dbServer}: grants for ${s.dbUser}: ${r.hosts.join(', ')}${r.added.length ? `; added ${r.added.join(', ')}` : ''}${r.removed.length ? `; removed ${r.removed.join(', ')}` : ''}`,
          );
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
    const { kind } = this.ops.platformKind(p);
    if (kind !== 'drupal7' && kind !== 'drupal8') return null;
    const server = this.ops.webServers(platform)[0] as string;
    try {
      const r = await this.ops.call(ctx, server, { type: 'siteTool', tree: p.path, domain, kind, op: 'updates' }, { timeoutMs: 5 * 60_000 });
      if (r.pending.length === 0) ctx.log(`${server}: no pending database updates`);
      else {
        ctx.log(
          `${server}: ${r.pending.length} pending database update${r.pending.length === 1 ? '' : 's'} (they run on the next migrate, or with update.php):`,
          'warn',
        );
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
          const s = this.ops.activeSite(domain, enabled ? 'enable' : 'disable');
          return this.ops.configure(ctx, domain, enabled, { revert: { enabled: s.status !== 'disabled', aliases: s.aliases } });
        },
        undo: async (ctx, data) => this.ops.reconfigure(ctx, data as ConfigureUndo, !enabled),
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
          if (this.ops.siteExists(d.domain)) this.ns.setSiteStatus(d.domain, d.before);
          ctx.log(`site ${d.domain} is ${d.before} again`);
        },
      },
      {
        name: 'remove-vhost',
        do: async (ctx) => {
          const s = this.ns.getSite(domain);
          const servers = await this.ops.removeSite(ctx, domain, platform, false);
          return { domain, platform, servers, enabled: s.status !== 'disabled', aliases: s.aliases } satisfies ConfigureUndo;
        },
        undo: async (ctx, data) => {
          const d = data as ConfigureUndo;
          await this.ops.reconfigure(ctx, d, d.enabled);
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
          const w = await this.ops.writeFiles(ctx, platform, { without: domain });
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
          await this.ops.restoreFiles(ctx, { ...d, previous: d.previous, created: d.created });
        },
      },
      { name: 'converge', do: async (ctx) => void (await this.ops.converge(ctx, platform, [siteDir(domain)])) },
      {
        name: 'drop-database',
        commit: true,
        do: async (ctx) => {
          const s = this.ns.getSite(domain);
          if (!s.dbServer || !s.dbName || !s.dbUser) return ctx.log('no database recorded for this site');
          await this.ops.dropDatabase(ctx, { server: s.dbServer, database: s.dbName, user: s.dbUser, hosts: this.ops.webServers(platform) });
        },
      },
      {
        name: 'delete-files',
        do: async (ctx) => void (await this.ops.removeSite(ctx, domain, platform, true)),
      },
      {
        name: 'free',
        do: async (ctx) => {
          if (this.ops.siteExists(domain)) this.ns.deleteSite(domain);
          this.ops.siteForgotten(domain);
          rmSync(trash, { recursive: true, force: true });
          state.result = { deleted: domain };
          ctx.log(`site ${domain} deleted; its names are free`);
        },
      },
    ];
  }

  // ---------------------------------------------------------------- for callers outside the site tasks

  /** See SiteOps.chooseDbServer. */
  chooseDbServer(p: PlatformInfo): string {
    return this.ops.chooseDbServer(p);
  }

  /** See SiteOps.platformSettingsFiles (every Converge carries them). */
  platformSettingsFiles(platform: string): string[] {
    return this.ops.platformSettingsFiles(platform);
  }
}
