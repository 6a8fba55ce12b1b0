/**
 * `site clone` and `site migrate`: a copy of a site on a platform (the same or another, on the
 * same or another server or cluster), with a new database (dump on the master → create → restore
 * with the rename statements of rename.ts), its settings in the target platform's tree, its user
 * files (packed on a source web server, unpacked on every target web server) and its vhost.
 *
 * Clone leaves the source alone and ends with a new site. Migrate then switches: the old vhost is
 * removed, the site's row takes the new place (and name: its aliases follow), and only after that
 * point of no return are the old database, the old site dir (master tree + converge) and the old
 * user files removed. Any failure before the switch runs the undos in reverse: the copy goes, and
 * the old site (which never stopped serving) is configured again where its vhost was removed.
 *
 * When a migrate keeps the domain and the target web servers include a source web server, both
 * vhosts have the same file name there: configuring the new copy replaces the old vhost on that
 * server (that is the switch there), its undo configures the old site again, and removing the old
 * files later takes the vhost with it, so the new one is configured again right after.
 */
import { createReadStream, createWriteStream, existsSync, mkdirSync, rmSync } from 'node:fs';
import { finished } from 'node:stream/promises';
import { join } from 'node:path';
import { checkDomain, fail, generateDbPassword, isSpokeError, siteDbName } from '@spoke/shared';
import type { SubmitInput, TaskContext } from '../tasks/engine.js';
import type { PlatformInfo, SiteInfo } from '../types.js';
import type { PlatformKind } from '../platforms/registry/index.js';
import { newSiteSalt, siteDir, type SiteFacts } from './settings.js';
import { dumpMarkerOffset, dumpSchema, dumpWithStatements, renameStatements } from './rename.js';
import { rewriteDump } from './dumprewrite.js';
import type { Step } from '../tasks/steps.js';
import { paramsOf, type TaskParams } from '../tasks/params.js';
import { describeUpdates } from './drupal.js';
import type { SiteBackups } from './backuptasks.js';
import { adoptBackups } from './backuprename.js';
import { DEFAULT_REDIRECT_OLD_FOR_S, redirectOldNameStep } from './formernames.js';
import type { ConfigureUndo, DbUndo, SiteOps, WriteUndo } from './ops.js';

/** The task kinds of this module. */
export const MOVE_TASKS = ['site.clone', 'site.migrate'] as const;

/** What `site clone` takes. */
export interface CloneSiteInput {
  domain: string;
  newDomain: string;
  /** Default: the site's own platform. */
  platform?: string;
  /** Default: the site's db server. */
  dbServer?: string;
  /** HTTPS for the copy (as install --https). @default false */
  https?: boolean;
}

/** What `site migrate` takes. */
export interface MigrateSiteInput {
  domain: string;
  platform: string;
  /** A new name for the site (default: it keeps its domain). */
  newDomain?: string;
  /** Default: the site's db server. */
  dbServer?: string;
  /** HTTPS after the move (as install --https). @default false */
  https?: boolean;
  /** With a new name: seconds the old name answers a 301 to it (0: none). @default DEFAULT_REDIRECT_OLD_FOR_S */
  redirectOldForS?: number;
}

/** The task params (both kinds): everything the steps need, also after a restart. */
type MoveParams = TaskParams<'site.clone' | 'site.migrate'>;

/** The copy being built (closure state of a running task). */
interface Copy {
  facts: SiteFacts;
  dbServer: string;
  /** A namespace row holds the new name (clone; a migrate with a new domain). */
  row: boolean;
}

/** Plans and builds the steps of clone and migrate over the shared site operations (ops.ts). */
export class SiteMover {
  constructor(
    private readonly t: SiteOps,
    private readonly backups: SiteBackups,
    private readonly workDir: string,
  ) {}

  // ---------------------------------------------------------------- planning (at submit)

  /**
   * Checks a clone and returns the task to submit.
   * @throws SpokeError SITE_NOT_FOUND, SITE_NOT_INSTALLED, INVALID_DOMAIN, DOMAIN_TAKEN, PLATFORM_NOT_FOUND,
   *   PLATFORM_NOT_VERIFIED, PLATFORM_KIND_UNSUPPORTED, INVALID_ARGUMENT, SITE_DIR_EXISTS, SERVER_NOT_FOUND
   */
  planClone(input: CloneSiteInput): SubmitInput {
    const s = this.source(input.domain, 'clone');
    const newDomain = input.newDomain.toLowerCase();
    checkDomain(newDomain);
    const p = this.t.ns.getPlatform(input.platform || s.platform);
    const dbServer = this.targetDb(s, p, input.dbServer);
    this.t.ns.checkNewSite({ domain: newDomain, platform: p.name, dbServer });
    this.checkTarget(s, p, newDomain);
    if (input.https) this.t.checkHttps();
    const params: MoveParams = { domain: s.domain, platform: s.platform, newDomain, target: p.name, dbServer, ...(input.https ? { https: true } : {}) };
    return { kind: 'site.clone', entity: `site:${newDomain}`, locks: unique([`site:${s.domain}`, `platform:${p.name}`]), params: { ...params } };
  }

  /**
   * Checks a migrate and returns the task to submit.
   * @throws as planClone
   */
  planMigrate(input: MigrateSiteInput): SubmitInput {
    const s = this.source(input.domain, 'migrate');
    const newDomain = (input.newDomain || s.domain).toLowerCase();
    checkDomain(newDomain);
    const p = this.t.ns.getPlatform(input.platform);
    const dbServer = this.targetDb(s, p, input.dbServer);
    if (p.name === s.platform && newDomain === s.domain) {
      throw fail('INVALID_ARGUMENT', `site ${s.domain} is on platform ${p.name} already; name another --platform, or a new name with --domain`);
    }
    if (newDomain !== s.domain) this.t.ns.checkNewSite({ domain: newDomain, platform: p.name, dbServer });
    else if (this.t.ns.getServer(dbServer).kind !== 'agent')
      throw fail('SERVER_IS_CLUSTER', `${dbServer} is a cluster; a site database lives on one agent server`);
    this.checkTarget(s, p, newDomain);
    if (input.https) this.t.checkHttps();
    const redirectOldForS = input.redirectOldForS ?? DEFAULT_REDIRECT_OLD_FOR_S;
    if (!Number.isInteger(redirectOldForS) || redirectOldForS < 0)
      throw fail('INVALID_ARGUMENT', `--redirect-old-for must be a duration such as 30d, 12h or 0, got ${redirectOldForS} seconds`);
    const params: MoveParams = {
      domain: s.domain,
      platform: s.platform,
      newDomain,
      target: p.name,
      dbServer,
      ...(input.https ? { https: true } : {}),
      ...(newDomain !== s.domain ? { redirectOldForS } : {}),
    };
    const locks = unique([`platform:${s.platform}`, `platform:${p.name}`, ...(newDomain !== s.domain ? [`site:${newDomain}`] : [])]);
    return { kind: 'site.migrate', entity: `site:${s.domain}`, locks, params: { ...params } };
  }

  private source(domain: string, what: string): SiteInfo {
    const s = this.t.ns.getSite(domain);
    if (s.domain !== domain.toLowerCase()) throw fail('SITE_NOT_FOUND', `${domain} is an alias of ${s.domain}; name the site by its domain to ${what} it`);
    this.t.activeSite(s.domain, what);
    if (!s.dbServer || !s.dbName || !s.dbUser)
      throw fail('SITE_NOT_INSTALLED', `site ${s.domain} has no database recorded; run: spoke site verify ${s.domain}`);
    return s;
  }

  private targetDb(s: SiteInfo, p: PlatformInfo, dbServer: string | undefined): string {
    if (dbServer) return dbServer;
    return s.dbServer ?? this.t.chooseDbServer(p);
  }

  private checkTarget(s: SiteInfo, p: PlatformInfo, newDomain: string): void {
    const { kind } = this.t.platformKind(p);
    const src = this.t.platformKind(this.t.ns.getPlatform(s.platform)).kind;
    if (kind !== src) throw fail('INVALID_ARGUMENT', `site ${s.domain} is a ${src} site; platform ${p.name} is ${kind}`);
    if (existsSync(join(this.t.trees.hostPath(p.path), siteDir(newDomain)))) {
      throw fail('SITE_DIR_EXISTS', `${siteDir(newDomain)} already exists in platform ${p.name} (${this.t.trees.hostPath(p.path)}); move it away first`);
    }
  }

  // ---------------------------------------------------------------- steps

  /**
   * Runs the copy's pending database updates on a target web server and rebuilds its caches
   * (Drupal 7/8+; other kinds have nothing to run). A failing update fails the step: the copy's
   * database is dropped by the undos and the old site keeps serving.
   * @throws SpokeError SITE_UPDATE_FAILED, agent codes
   */
  private async updateDatabase(ctx: TaskContext, p: MoveParams): Promise<void> {
    const to = this.t.ns.getPlatform(p.target);
    const { kind } = this.t.platformKind(to);
    if (kind !== 'drupal7' && kind !== 'drupal8') return ctx.log(`platform ${to.name} is ${kind}: no database updates to run`);
    const server = this.t.webServers(p.target)[0] as string;
    ctx.log(`${server}: running the pending database updates of ${p.newDomain} on platform ${to.name} (update.php's work), then rebuilding caches`);
    let r;
    try {
      r = await this.t.call(ctx, server, { type: 'siteTool', tree: to.path, domain: p.newDomain, kind, op: 'update' }, { timeoutMs: 60 * 60_000 });
    } catch (e) {
      if (isSpokeError(e) && (e.code === 'SITE_TOOL_FAILED' || e.code === 'SITE_NOT_INSTALLED'))
        throw fail('SITE_UPDATE_FAILED', `${e.message}; the migrate is undone and ${p.domain} keeps serving from platform ${p.platform}`);
      throw e;
    }
    if (r.ran.length === 0) ctx.log(`${server}: no database updates were pending; caches rebuilt`);
    else {
      ctx.log(`${server}: ran ${r.ran.length} database update${r.ran.length === 1 ? '' : 's'}; caches rebuilt`);
      for (const line of describeUpdates(r.ran)) ctx.log(`  ${line}`);
    }
    if (r.pending.length) {
      throw fail(
        'SITE_UPDATE_FAILED',
        `${r.pending.length} database update(s) still pending after the run (${describeUpdates(r.pending, 3).join('; ')}); the migrate is undone`,
      );
    }
  }

  /** The steps of a site.clone / site.migrate task, from its params alone. */
  steps(ctx: TaskContext, state: { result?: unknown }): Step[] {
    const p = paramsOf(ctx.task, 'site.clone', 'site.migrate');
    const migrate = ctx.task.kind === 'site.migrate';
    const work = join(this.workDir, `task-${ctx.task.id}`);
    const copy: { c?: Copy } = {};
    const need = (): Copy => {
      if (!copy.c) throw fail('INTERNAL', 'the copy was not reserved');
      return copy.c;
    };
    const renamed = p.newDomain !== p.domain;
    // Same domain on a web server that serves both platforms: one vhost file for both.
    const overlap = (): string[] => (renamed ? [] : this.t.webServers(p.target).filter((s) => this.t.webServers(p.platform).includes(s)));

    const copySteps: Step[] = [
      {
        name: 'reserve',
        do: async (ctx) => {
          const s = this.t.activeSite(p.domain, migrate ? 'migrate' : 'clone');
          const target = this.t.ns.getPlatform(p.target);
          const { kind, coreVersion } = this.t.platformKind(target);
          const names = siteDbName(p.newDomain, this.t.ns.dbNamesTaken(p.dbServer));
          const password = generateDbPassword();
          const salt = migrate ? this.t.ns.siteSecrets(p.domain).salt : newSiteSalt();
          const aliases = migrate ? s.aliases : [];
          const row = !migrate || renamed;
          if (row) {
            this.t.ns.createSite({
              domain: p.newDomain,
              platform: p.target,
              dbServer: p.dbServer,
              aliases: [],
              status: 'installing',
              db: { name: names.database, user: names.user, password },
              salt,
              ...(s.profile ? { profile: s.profile } : {}),
              cronIntervalS: s.cronIntervalS,
            });
          }
          copy.c = {
            facts: {
              domain: p.newDomain,
              aliases,
              kind,
              coreVersion,
              db: { name: names.database, user: names.user, password, host: '', port: 0 },
              salt,
              ...(s.profile ? { profile: s.profile } : {}),
            },
            dbServer: p.dbServer,
            row,
          };
          ctx.log(
            `${migrate ? 'migrating' : 'cloning'} ${p.domain} (platform ${p.platform}) to ${p.newDomain} on platform ${p.target}; database ${names.database}, user ${names.user} on ${p.dbServer}${row ? `; ${p.newDomain} reserved` : ''}`,
          );
          return { domain: p.newDomain, row };
        },
        undo: async (ctx, data) => {
          const d = data as { domain: string; row: boolean };
          if (!d.row) return;
          // Only the reservation (status installing) is ours to remove.
          if (this.t.siteExists(d.domain) && this.t.ns.getSite(d.domain).status === 'installing') this.t.ns.deleteSite(d.domain);
          ctx.log(`released ${d.domain}`);
        },
      },
      {
        name: 'dump-database',
        do: async (ctx) => {
          const s = this.t.ns.getSite(p.domain);
          mkdirSync(work, { recursive: true, mode: 0o700 });
          const file = join(work, 'db.sql');
          const out = createWriteStream(file, { mode: 0o600 });
          const r = await this.t.call(ctx, s.dbServer as string, { type: 'dbDump', database: s.dbName as string }, { dumpTo: out, timeoutMs: 30 * 60_000 });
          await finished(out).catch(() => undefined);
          ctx.log(`${s.dbServer}: dumped database ${s.dbName} (${r.bytes} bytes) to the master`);
          return { dir: work };
        },
        undo: async (ctx, data) => {
          rmSync((data as { dir: string }).dir, { recursive: true, force: true });
          ctx.log('removed the dump');
        },
      },
      {
        name: 'create-database',
        do: async (ctx) => {
          const c = need();
          const hosts = this.t.webServers(p.target);
          const r = await this.t.call(ctx, c.dbServer, {
            type: 'dbCreate',
            database: c.facts.db.name,
            user: c.facts.db.user,
            password: c.facts.db.password,
            hosts,
          });
          if (!r.siteHost) ctx.log(`${c.dbServer} did not say how web servers reach its database (an older agent); using localhost:3306`, 'warn');
          c.facts.db.host = r.siteHost || 'localhost';
          c.facts.db.port = r.sitePort || 3306;
          if (c.row) this.t.ns.setSiteDbAddress(p.newDomain, c.facts.db.host, c.facts.db.port);
          ctx.log(
            `${c.dbServer}: created database ${c.facts.db.name} and user ${c.facts.db.user} for ${r.hosts.join(', ')}; web servers reach it at ${c.facts.db.host}:${c.facts.db.port}`,
          );
          return { server: c.dbServer, database: c.facts.db.name, user: c.facts.db.user, hosts } satisfies DbUndo;
        },
        undo: async (ctx, data) => this.t.dropDatabase(ctx, data as DbUndo),
      },
      {
        name: 'restore-database',
        do: async (ctx) => {
          const c = need();
          let file = join(work, 'db.sql');
          if (renamed) file = await this.renamePaths(ctx, file, c.facts.kind, p);
          const statements = renameStatements(c.facts.kind, p.domain, p.newDomain, await dumpSchema(file));
          const at = await dumpMarkerOffset(file);
          const r = await this.t.call(
            ctx,
            c.dbServer,
            { type: 'dbRestore', database: c.facts.db.name },
            { restoreFrom: () => dumpWithStatements(file, at, statements.join('\n')), timeoutMs: 30 * 60_000 },
          );
          ctx.log(
            `${c.dbServer}: restored ${r.bytes} bytes into ${c.facts.db.name}${statements.length ? `; renamed ${p.domain} to ${p.newDomain} in the stored data (${statements.length} statement(s))` : ''}`,
          );
          // the database step's undo drops it
        },
      },
      {
        name: 'write-files',
        do: async (ctx) => this.t.writeFiles(ctx, p.target, { add: need().facts }),
        undo: async (ctx, data) => this.t.restoreFiles(ctx, data as WriteUndo),
      },
      { name: 'converge', do: async (ctx) => void (await this.t.converge(ctx, p.target, [siteDir(p.newDomain)])) },
      {
        name: 'copy-files',
        do: async (ctx) => {
          const from = this.t.ns.getPlatform(p.platform);
          const to = this.t.ns.getPlatform(p.target);
          const src = this.t.webServers(p.platform)[0] as string;
          mkdirSync(work, { recursive: true, mode: 0o700 });
          const file = join(work, 'files.tar');
          const out = createWriteStream(file, { mode: 0o600 });
          const packed = await this.t.call(ctx, src, { type: 'siteFilesPack', tree: from.path, domain: p.domain }, { filesTo: out, timeoutMs: 60 * 60_000 });
          await finished(out).catch(() => undefined);
          ctx.log(`${src}: packed the user files of ${p.domain} (${packed.entries} entries, ${packed.bytes} bytes)`);
          for (const sk of packed.skipped) ctx.log(`${src}: left out ${sk}`, 'warn');
          const servers = this.t.webServers(p.target);
          const done: string[] = [];
          try {
            for (const server of servers) {
              const r = await this.t.call(
                ctx,
                server,
                { type: 'siteFilesUnpack', tree: to.path, domain: p.newDomain, replace: false },
                { filesFrom: () => createReadStream(file), timeoutMs: 60 * 60_000 },
              );
              done.push(server);
              ctx.log(`${server}: unpacked ${r.entries} entries into ${siteDir(p.newDomain)} of platform ${to.name}`);
            }
          } catch (e) {
            if (done.length) await this.deleteCopiedFiles({ ...ctx, signal: ctx.stopping }, p, done, overlap());
            throw e;
          }
          rmSync(file, { force: true });
          return { servers: done };
        },
        undo: async (ctx, data) => this.deleteCopiedFiles(ctx, p, (data as { servers: string[] }).servers, overlap()),
      },
      {
        // Before the copy serves: the target platform's code may be newer (update.php's work).
        name: 'update-database',
        do: async (ctx) => this.updateDatabase(ctx, p),
      },
      {
        name: 'configure-site',
        do: async (ctx) => this.configureCopy(ctx, p, need(), overlap()),
        undo: async (ctx, data) => this.unconfigureCopy(ctx, p, data as ConfigureUndo, overlap()),
      },
    ];

    if (!migrate) {
      return [
        ...copySteps,
        {
          name: 'finish',
          do: async (ctx) => {
            this.t.ns.setSiteStatus(p.newDomain, 'installed', { installedMs: Date.now() });
            rmSync(work, { recursive: true, force: true });
            const s = this.t.ns.getSite(p.newDomain);
            state.result = { domain: p.newDomain, from: p.domain, platform: p.target, url: `http://${p.newDomain}/`, database: s.dbName, dbServer: s.dbServer };
            ctx.log(`site ${p.newDomain} cloned from ${p.domain}`);
          },
        },
        ...(p.https === true ? this.t.httpsSteps(p.newDomain) : []),
      ];
    }

    // The old site as it was (for the switch and the clean-up after it).
    const old: { s?: SiteInfo; db?: DbUndo } = {};
    // After the switch nothing is undone: a failed clean-up says what is left to remove by hand.
    const cleanup = (what: string, fn: (ctx: TaskContext) => Promise<void>) => async (ctx: TaskContext) => {
      try {
        await fn(ctx);
      } catch (e) {
        const code = isSpokeError(e) ? e.code : 'INTERNAL';
        const msg = isSpokeError(e) ? e.message : e instanceof Error ? e.message : String(e);
        throw fail(code, `${msg}; the site already runs as ${p.newDomain} on platform ${p.target}: remove the old ${what} by hand`);
      }
    };
    return [
      this.backups.migrateBackupStep(p.domain),
      ...copySteps,
      {
        name: 'remove-old-vhost',
        do: async (ctx) => {
          const s = this.t.ns.getSite(p.domain);
          const from = this.t.ns.getPlatform(p.platform);
          const keep = overlap();
          const servers = this.t.webServers(p.platform).filter((x) => !keep.includes(x));
          const removed: string[] = [];
          try {
            for (const server of servers) {
              await this.removeVhost(ctx, server, p.domain, from, false);
              removed.push(server);
            }
          } catch (e) {
            if (removed.length)
              await this.t
                .configure({ ...ctx, signal: ctx.stopping }, p.domain, s.status !== 'disabled')
                .catch((u: unknown) => ctx.log(`UNDO FAILED: vhost of ${p.domain}: ${describe(u)}; fix it by hand`, 'error'));
            throw e;
          }
          if (keep.length) ctx.log(`${keep.join(', ')}: the vhost of ${p.domain} already serves platform ${p.target}`);
          return { domain: p.domain, platform: p.platform, servers: removed, enabled: s.status !== 'disabled', aliases: s.aliases } satisfies ConfigureUndo;
        },
        undo: async (ctx, data) => {
          const d = data as ConfigureUndo;
          if (d.servers.length) await this.t.reconfigure(ctx, d, d.enabled);
        },
      },
      {
        name: 'switch',
        commit: true,
        recovery: `the site already runs as ${p.newDomain} on platform ${p.target}; remove what is left of the old copy by hand (named above)`,
        do: async (ctx) => {
          const c = need();
          const s = this.t.ns.getSite(p.domain);
          old.s = s;
          old.db = { server: s.dbServer as string, database: s.dbName as string, user: s.dbUser as string, hosts: this.t.webServers(p.platform) };
          this.t.ns.relocateSite(p.domain, {
            domain: p.newDomain,
            platform: p.target,
            dbServer: c.dbServer,
            db: { name: c.facts.db.name, user: c.facts.db.user, password: c.facts.db.password },
            dbHost: c.facts.db.host,
            dbPort: c.facts.db.port,
            salt: c.facts.salt,
            ...(renamed ? { redirectOldUntilMs: Date.now() + redirectOldFor(p) * 1000 } : {}),
          });
          if (renamed) {
            this.t.siteRenamed(p.domain, p.newDomain);
            adoptBackups(ctx, this.backups.store, p.domain, p.newDomain);
          }
          ctx.log(
            `switched: ${renamed ? `${p.domain} is now ${p.newDomain}${s.aliases.length ? ` (aliases ${s.aliases.join(', ')})` : ''}, ` : `${p.domain} is now `}on platform ${p.target} with database ${c.facts.db.name} on ${c.dbServer} (the point of no return: the old copy is removed next)`,
          );
        },
      },
      {
        // The new name's vhost was written before the switch, when HTTPS was still the old
        // name's: now that it follows the site, the vhost carries its certificate again (one that
        // does not cover the new name yet; the renewer replaces it at its next tick).
        name: 'https-follow',
        do: async (ctx) => {
          if (!renamed || !this.t.servesHttps(p.newDomain)) return;
          try {
            await this.t.configure(ctx, p.newDomain, (old.s as SiteInfo).status !== 'disabled');
          } catch (e) {
            const msg = isSpokeError(e) ? `${e.code}: ${e.message}` : String(e);
            ctx.log(`${p.newDomain} is served over plain HTTP until its vhost is written again (${msg}): spoke site verify ${p.newDomain}`, 'warn');
          }
        },
      },
      {
        name: 'drop-old-database',
        do: cleanup('database', async (ctx) => {
          const d = old.db as DbUndo;
          await this.t.dropDatabase(ctx, d);
        }),
      },
      {
        name: 'remove-old-dir',
        do: cleanup(`site dir ${siteDir(p.domain)} of platform ${p.platform}`, async (ctx) => {
          const s = old.s as SiteInfo;
          const from = this.t.ns.getPlatform(p.platform);
          const dir = join(this.t.trees.hostPath(from.path), siteDir(p.domain));
          if (existsSync(dir)) {
            rmSync(dir, { recursive: true, force: true });
            this.t.trees.touch(from.path, [siteDir(p.domain)]);
            ctx.log(`platform ${from.name}: removed ${siteDir(p.domain)}`);
          }
          await this.t.writeFiles(ctx, p.platform, { gone: { domain: p.domain, aliases: s.aliases } });
          await this.t.converge(ctx, p.platform, [siteDir(p.domain)]);
        }),
      },
      {
        name: 'delete-old-files',
        do: cleanup(`vhost and files of ${p.domain} on the web servers of platform ${p.platform}`, async (ctx) => {
          const from = this.t.ns.getPlatform(p.platform);
          const keep = overlap();
          for (const server of this.t.webServers(p.platform)) await this.removeVhost(ctx, server, p.domain, from, true);
          // Same vhost file: removing the old files took the new vhost too.
          if (keep.length) {
            ctx.log(`${keep.join(', ')}: configuring the vhost of ${p.newDomain} again (removing the old files removed it)`);
            await this.t.configure(ctx, p.newDomain, (old.s as SiteInfo).status !== 'disabled');
          }
        }),
      },
      ...(renamed ? [redirectOldNameStep(this.t, p.domain, p.newDomain, redirectOldFor(p))] : []),
      {
        name: 'finish',
        do: async (ctx) => {
          rmSync(work, { recursive: true, force: true });
          if (renamed) adoptBackups(ctx, this.backups.store, p.domain, p.newDomain);
          const s = this.t.ns.getSite(p.newDomain);
          state.result = {
            domain: s.domain,
            from: p.domain,
            platform: s.platform,
            url: `http://${s.domain}/`,
            database: s.dbName,
            dbServer: s.dbServer,
            aliases: s.aliases,
          };
          ctx.log(`site ${p.domain} migrated to ${renamed ? `${s.domain} on ` : ''}platform ${s.platform}`);
        },
      },
      ...(p.https === true ? this.t.httpsSteps(p.newDomain) : []),
    ];
  }

  // ---------------------------------------------------------------- helpers

  /** The copy as a SiteInfo (what ConfigureSite needs). */
  private copyInfo(p: MoveParams, c: Copy): SiteInfo {
    const src = this.t.ns.getSite(p.domain);
    const target = this.t.ns.getPlatform(p.target);
    return {
      ...src,
      domain: p.newDomain,
      platform: p.target,
      server: target.server,
      dbServer: c.dbServer,
      aliases: c.facts.aliases,
      dbName: c.facts.db.name,
      dbUser: c.facts.db.user,
      dbHost: c.facts.db.host,
      dbPort: c.facts.db.port,
    };
  }

  /** ConfigureSite of the copy on every target web server; the ones that took it are undone when another fails. */
  private async configureCopy(ctx: TaskContext, p: MoveParams, c: Copy, overlap: string[]): Promise<ConfigureUndo> {
    const s = this.copyInfo(p, c);
    const target = this.t.ns.getPlatform(p.target);
    const servers = this.t.webServers(p.target);
    const enabled = this.t.ns.getSite(p.domain).status !== 'disabled';
    const results = await this.t.configureOn(ctx, servers, s, target, enabled, c.facts.aliases);
    const failed = results.flatMap((r, i) => (r.status === 'rejected' ? [{ server: servers[i] as string, e: r.reason as unknown }] : []));
    const undo: ConfigureUndo = { domain: p.newDomain, platform: p.target, servers, enabled, aliases: c.facts.aliases };
    if (failed.length) {
      const ok = results.flatMap((r, i) => (r.status === 'fulfilled' ? [servers[i] as string] : []));
      if (ok.length) {
        ctx.log(`removing the new vhost from ${ok.join(', ')} again (it failed elsewhere)`, 'warn');
        await this.unconfigureCopy({ ...ctx, signal: ctx.stopping }, p, { ...undo, servers: ok }, overlap).catch((e: unknown) =>
          ctx.log(`UNDO FAILED: vhost on ${ok.join(', ')}: ${describe(e)}; fix it by hand`, 'error'),
        );
      }
      const first = failed[0] as { server: string; e: unknown };
      const strip = (m: string, server: string) => (m.startsWith(`${server}: `) ? m.slice(server.length + 2) : m);
      const msg = failed.map((f) => `${f.server} (${isSpokeError(f.e) ? `${f.e.code}: ${strip(f.e.message, f.server)}` : String(f.e)})`).join(', ');
      throw fail(isSpokeError(first.e) ? first.e.code : 'INTERNAL', `site ${p.newDomain}: web server config failed on ${msg}`);
    }
    return undo;
  }

  /** Undo of configureCopy: RemoveSite (files kept: copy-files' undo deletes them); where the old site shares the vhost, configure it again. */
  private async unconfigureCopy(ctx: TaskContext, p: MoveParams, d: ConfigureUndo, overlap: string[]): Promise<void> {
    const target = this.t.ns.getPlatform(p.target);
    const shared = d.servers.filter((s) => overlap.includes(s));
    for (const server of d.servers.filter((s) => !overlap.includes(s))) await this.removeVhost(ctx, server, p.newDomain, target, false);
    if (shared.length) await this.t.configure(ctx, p.domain, this.t.ns.getSite(p.domain).status !== 'disabled');
  }

  /** Deletes the copied user files from the target web servers (the vhost shared with the old site is configured again). */
  /**
   * The dump with the site's own file paths (`sites/OLD/files`, `sites/OLD/private`) renamed in
   * every stored value, serialized data included (dumprewrite.ts); written beside the dump, whose
   * place it takes. Logs what changed and any serialized value it had to leave alone.
   */
  private async renamePaths(ctx: TaskContext, file: string, kind: PlatformKind, p: MoveParams): Promise<string> {
    const out = `${file}.renamed`;
    const n = await rewriteDump(file, out, kind, p.domain, p.newDomain);
    rmSync(file, { force: true });
    ctx.log(
      `renamed sites/${p.domain}/files and sites/${p.domain}/private to sites/${p.newDomain}/… in ${n.values} stored value(s)${kind === 'wordpress' ? ' (and the host in serialized values)' : ''}`,
    );
    for (const [table, count] of Object.entries(n.skipped)) {
      ctx.log(`table ${table}: ${count} value(s) hold sites/${p.domain}/ and look serialized but do not parse; left as they are`, 'warn');
    }
    return out;
  }

  private async deleteCopiedFiles(ctx: TaskContext, p: MoveParams, servers: string[], overlap: string[]): Promise<void> {
    const target = this.t.ns.getPlatform(p.target);
    for (const server of servers) await this.removeVhost(ctx, server, p.newDomain, target, true);
    if (servers.some((s) => overlap.includes(s))) await this.t.configure(ctx, p.domain, this.t.ns.getSite(p.domain).status !== 'disabled');
  }

  /** RemoveSite on one server; a server without a web server is only warned about. */
  private async removeVhost(ctx: TaskContext, server: string, domain: string, p: PlatformInfo, deleteFiles: boolean): Promise<void> {
    try {
      const r = await this.t.call(ctx, server, { type: 'removeSite', domain, tree: p.path, deleteFiles, pinnedImpl: this.t.pinned(server, p.server) });
      ctx.log(
        `${server}: ${r.removed ? `removed vhost ${r.path}${r.reloaded ? ` and reloaded${r.reloadWait ? ` (${r.reloadWait})` : ''}` : ''}` : `no vhost of ${domain}`}${deleteFiles ? (r.deleted.length ? `; deleted ${r.deleted.join(', ')} of platform ${p.name}` : `; no files of ${domain} left in platform ${p.name}`) : ''}`,
      );
      for (const pr of r.problems) ctx.log(`${server}: ${pr}`, 'warn');
    } catch (e) {
      if (isSpokeError(e, 'NO_HTTP_SERVICE')) return ctx.log(`${server}: ${e.code}: ${e.message}`, 'warn');
      throw e;
    }
  }
}

/** Seconds the old name redirects after this migrate (params from before the flag: the default). */
function redirectOldFor(p: MoveParams): number {
  return typeof p.redirectOldForS === 'number' ? p.redirectOldForS : DEFAULT_REDIRECT_OLD_FOR_S;
}

function unique(xs: string[]): string[] {
  return [...new Set(xs)];
}

function describe(e: unknown): string {
  return isSpokeError(e) ? `${e.code}: ${e.message}` : e instanceof Error ? e.message : String(e);
}
