/**
 * The backup tasks of a site: `site.backup`, `site.restore`, and the backup step `site.delete`
 * runs first; plus `site login-url`. Archive I/O is in backup.ts; these are the step lists, over
 * the shared site operations (ops.ts: call, converge, writeFiles, configure).
 *
 * `site.restore DOMAIN --backup ID` (undo in brackets):
 * 1. `check-backup`: the archive is read into a staging dir and checked whole (hostile entries,
 *    checksums, the dump's completion marker) before anything changes
 * 2. `safety-backup`: a backup of the current state (reason pre-restore; kept)
 * 3. `restore-database`: DbDrop + DbCreate with the same user, password and hosts, then DbRestore
 *    of the backup's dump [the same with the safety backup's dump]
 * 4. `restore-site-dir`: the master's `sites/<domain>` moved aside, the backup's `site/` put in
 *    its place, settings re-rendered from the stored site facts (never taken from the archive)
 *    [the old dir moved back]
 * 5. `converge` [converge again, in 4's undo]
 * 6. `restore-files`: SiteFilesUnpack (replace) on every web server [the safety backup's files]
 * 7. `configure-site`: the vhost and files dirs re-asserted
 * 8. `finish`
 */
import { createReadStream, createWriteStream, existsSync, mkdirSync, renameSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { STAGING_PREFIX, extractArchive, fail, formatBytes } from '@spoke/shared';
import type { TaskContext } from '../tasks/engine.js';
import { type BackupStore, newBackupId, type BackupInfo, type BackupParts } from './backup.js';
import { siteDir } from './settings.js';
import type { Step } from '../tasks/steps.js';
import type { SiteOps } from './ops.js';
import { renamedDump } from './backuprename.js';

/** The task kinds of this module. */
export const BACKUP_TASKS = ['site.backup', 'site.restore'] as const;

const LONG = 60 * 60_000;

/** Backups and restores of sites. */
export class SiteBackups {
  constructor(
    private readonly t: SiteOps,
    readonly store: BackupStore,
    /** Scratch space: restore staging, undo staging. */
    private readonly workDir: string,
  ) {}

  /** The task `site.backup`. @throws SpokeError SITE_NOT_FOUND, SITE_NOT_INSTALLED */
  planBackup(domain: string): { kind: string; entity: string; locks: string[]; params: Record<string, unknown> } {
    const s = this.t.activeSite(domain, 'back up');
    return { kind: 'site.backup', entity: `site:${s.domain}`, locks: [`platform:${s.platform}`], params: { domain: s.domain, platform: s.platform } };
  }

  /** The task `site.restore`. @throws SpokeError SITE_NOT_FOUND, SITE_NOT_INSTALLED, BACKUP_NOT_FOUND */
  planRestore(domain: string, backupId: string): { kind: string; entity: string; locks: string[]; params: Record<string, unknown> } {
    const s = this.t.activeSite(domain, 'restore');
    this.store.find(backupId, s.domain);
    return {
      kind: 'site.restore',
      entity: `site:${s.domain}`,
      locks: [`platform:${s.platform}`],
      params: { domain: s.domain, platform: s.platform, backupId },
    };
  }

  /** The steps of a backup task, by kind. */
  steps(ctx: TaskContext, state: { result?: unknown }): Step[] {
    const domain = String(ctx.task.params.domain);
    const platform = String(ctx.task.params.platform);
    if (ctx.task.kind === 'site.backup') {
      return [
        {
          name: 'backup',
          do: async (c) => {
            const b = await this.take(c, domain, 'manual');
            state.result = backupResult(b);
          },
        },
      ];
    }
    if (ctx.task.kind === 'site.restore') return this.restoreSteps(domain, platform, String(ctx.task.params.backupId), ctx.task.id, state);
    throw fail('INTERNAL', `unknown backup task ${ctx.task.kind}`);
  }

  /** The step `site.delete` runs first (unless --no-backup): the backup is kept after the delete. */
  deleteBackupStep(domain: string): Step {
    return {
      name: 'backup',
      do: async (ctx) => {
        const b = await this.take(ctx, domain, 'pre-delete');
        ctx.log(`kept backup ${b.id} of ${domain} (restore needs the site again: spoke site backup ls ${domain})`);
        return { backup: b.id };
      },
    };
  }

  /** The first step of a migrate: a backup of the site as it is, kept whatever happens next. */
  migrateBackupStep(domain: string): Step {
    return {
      name: 'backup',
      do: async (ctx) => {
        const b = await this.take(ctx, domain, 'pre-migrate');
        ctx.log(`kept backup ${b.id} of ${domain} from before the migrate (spoke site restore ${domain} ${b.id} puts it back)`);
        return { backup: b.id };
      },
    };
  }

  /**
   * Backs a site up: the dump from the db server, the user files from the first web server, the
   * site dir from the master's tree, into one archive (backup.ts).
   * @throws SpokeError DB_DUMP_INCOMPLETE, SITE_NOT_INSTALLED, agent codes
   */
  async take(ctx: TaskContext, domain: string, reason: string): Promise<BackupInfo> {
    const s = this.t.ns.getSite(domain);
    if (!s.dbServer || !s.dbName) throw fail('SITE_NOT_INSTALLED', `site ${domain} has no database recorded; nothing to back up`);
    const p = this.t.ns.getPlatform(s.platform);
    const { kind, coreVersion } = this.t.platformKind(p);
    const id = newBackupId();
    const staging = this.store.staging(domain, id);
    try {
      const dump = join(staging, 'database.sql');
      const d = await this.t.call(
        ctx,
        s.dbServer,
        { type: 'dbDump', database: s.dbName },
        { dumpTo: createWriteStream(dump, { mode: 0o600 }), timeoutMs: LONG },
      );
      ctx.log(`${s.dbServer}: dumped database ${s.dbName} (${formatBytes(d.bytes)}, complete)`);
      const web = this.t.webServers(p.name)[0] as string;
      const filesTar = join(staging, 'files.tar');
      const f = await this.t.call(
        ctx,
        web,
        { type: 'siteFilesPack', tree: p.path, domain },
        { filesTo: createWriteStream(filesTar, { mode: 0o600 }), timeoutMs: LONG },
      );
      ctx.log(`${web}: packed sites/${domain}/files and private (${f.entries} entries, ${formatBytes(f.bytes)})`);
      for (const sk of f.skipped) ctx.log(`${web}: left out ${sk}`, 'warn');
      const b = await this.store.write({
        meta: {
          id,
          domain,
          aliases: s.aliases,
          platform: p.name,
          kind,
          coreVersion,
          dbServer: s.dbServer,
          dbName: s.dbName,
          reason,
          createdMs: Date.now(),
          filesFrom: web,
        },
        siteDir: join(this.t.trees.hostPath(p.path), siteDir(domain)),
        filesTar,
        dump,
      });
      ctx.log(`backup ${b.id} of ${domain}: ${b.path} (${formatBytes(b.archiveBytes)})`);
      return b;
    } finally {
      this.store.discard(domain, id);
    }
  }

  private restoreSteps(domain: string, platform: string, backupId: string, taskId: number, state: { result?: unknown }): Step[] {
    const work = join(this.workDir, `restore-task-${taskId}`);
    let parts: BackupParts | null = null;
    let safety = '';
    const needParts = async (ctx: TaskContext): Promise<BackupParts> => {
      if (!parts) {
        rmSync(join(work, 'backup'), { recursive: true, force: true });
        parts = await this.store.read(this.store.find(backupId, domain).path, join(work, 'backup'));
        ctx.log(`backup ${backupId} read and checked again`);
      }
      return parts;
    };
    return [
      {
        name: 'check-backup',
        do: async (ctx) => {
          this.t.activeSite(domain, 'restore');
          const b = this.store.find(backupId, domain);
          rmSync(join(work, 'backup'), { recursive: true, force: true });
          parts = await this.store.read(b.path, join(work, 'backup'));
          // A backup in the site's own directory is the site's, whatever its name was then: a
          // rename moved it here (BackupStore.adopt), and restore-database renames its data.
          if (parts.meta.domain !== domain)
            ctx.log(`backup ${backupId} was taken when the site was named ${parts.meta.domain}; its data is renamed to ${domain} as it is restored`);
          ctx.log(
            `backup ${backupId} of ${domain} (${parts.meta.created}, ${parts.meta.reason}) checked: ${parts.meta.parts.site.entries} site entries, ${parts.meta.parts.files.entries} user file entries, dump ${formatBytes(parts.meta.parts.database.bytes)}`,
          );
        },
      },
      {
        name: 'safety-backup',
        do: async (ctx) => {
          const b = await this.take(ctx, domain, 'pre-restore');
          safety = b.id;
          ctx.log(`the current state is kept as backup ${b.id}; a failed restore puts it back`);
          return { backup: b.id };
        },
      },
      {
        name: 'restore-database',
        do: async (ctx) => {
          const p = await needParts(ctx);
          await this.loadDatabase(ctx, domain, platform, p.dump, p.meta.domain);
          return { domain, platform, safety };
        },
        undo: async (ctx, data) => {
          const d = data as { domain: string; platform: string; safety: string };
          const sp = await this.safetyParts(ctx, d.domain, d.safety, taskId);
          await this.loadDatabase(ctx, d.domain, d.platform, sp.dump);
          ctx.log(`database of ${d.domain} is back as it was (from backup ${d.safety})`);
        },
      },
      {
        name: 'restore-site-dir',
        do: async (ctx) => {
          const p = await needParts(ctx);
          const pl = this.t.ns.getPlatform(platform);
          const root = this.t.trees.hostPath(pl.path);
          const dir = join(root, siteDir(domain));
          // Beside the site dir (same filesystem: renames), under a name every manifest leaves out.
          const side = join(root, 'sites', `${STAGING_PREFIX}restore-${taskId}`);
          mkdirSync(side, { recursive: true, mode: 0o700 });
          const aside = join(side, 'site-old');
          const fresh = join(side, 'site-new');
          rmSync(fresh, { recursive: true, force: true });
          await extractArchive(createReadStream(p.siteTar), fresh);
          let moved = false;
          if (existsSync(dir) && !existsSync(aside)) {
            renameSync(dir, aside);
            moved = true;
          }
          renameSync(fresh, dir);
          this.t.trees.touch(pl.path, [siteDir(domain)]);
          await this.t.writeFiles(ctx, platform, { site: domain });
          ctx.log(`platform ${platform}: ${siteDir(domain)} restored from the backup; settings rendered from the site's facts`);
          return { platform, dir: siteDir(domain), aside, moved, side };
        },
        undo: async (ctx, data) => {
          const d = data as { platform: string; dir: string; aside: string; moved: boolean; side: string };
          const pl = this.t.ns.getPlatform(d.platform);
          const abs = join(this.t.trees.hostPath(pl.path), d.dir);
          if (d.moved && existsSync(d.aside)) {
            rmSync(abs, { recursive: true, force: true });
            renameSync(d.aside, abs);
          }
          rmSync(d.side, { recursive: true, force: true });
          this.t.trees.touch(pl.path, [d.dir]);
          ctx.log(`platform ${d.platform}: ${d.dir} put back as it was`);
          await this.t.converge(ctx, d.platform, [d.dir]);
        },
      },
      { name: 'converge', do: async (ctx) => void (await this.t.converge(ctx, platform, [siteDir(domain)])) },
      {
        name: 'restore-files',
        do: async (ctx) => {
          const p = await needParts(ctx);
          const servers = await this.unpackFiles(ctx, domain, platform, p.filesTar);
          return { domain, platform, safety, servers };
        },
        undo: async (ctx, data) => {
          const d = data as { domain: string; platform: string; safety: string };
          const sp = await this.safetyParts(ctx, d.domain, d.safety, taskId);
          await this.unpackFiles(ctx, d.domain, d.platform, sp.filesTar);
          ctx.log(`user files of ${d.domain} are back as they were (from backup ${d.safety})`);
        },
      },
      {
        name: 'configure-site',
        do: async (ctx) => void (await this.t.configure(ctx, domain, this.t.ns.getSite(domain).status !== 'disabled')),
      },
      {
        name: 'finish',
        do: async (ctx) => {
          rmSync(work, { recursive: true, force: true });
          const root = this.t.trees.hostPath(this.t.ns.getPlatform(platform).path);
          rmSync(join(root, 'sites', `${STAGING_PREFIX}restore-${taskId}`), { recursive: true, force: true });
          const s = this.t.ns.getSite(domain);
          if (s.status === 'failed') this.t.ns.setSiteStatus(domain, 'installed');
          state.result = { domain, backup: backupId, safetyBackup: safety || null };
          ctx.log(`site ${domain} restored from backup ${backupId}${safety ? `; the state before is backup ${safety}` : ''}`);
        },
      },
    ];
  }

  /** The parts of the safety backup, for an undo (read again after a restart). */
  private async safetyParts(ctx: TaskContext, domain: string, id: string, taskId: number): Promise<BackupParts> {
    if (!id) throw fail('INTERNAL', 'no safety backup was recorded; restore the site by hand from its last backup');
    const dir = join(this.workDir, `restore-task-${taskId}`, `undo-${id}`);
    rmSync(dir, { recursive: true, force: true });
    const p = await this.store.read(this.store.find(id, domain).path, dir);
    ctx.log(`safety backup ${id} read and checked`);
    return p;
  }

  /**
   * Empties the site's database (drop + create with the same user, password, hosts) and loads a
   * dump; a dump taken under another name (`takenAs`, before a rename) is renamed on the way in
   * (backuprename.ts: the site's file paths and, for WordPress, its host).
   */
  private async loadDatabase(ctx: TaskContext, domain: string, platform: string, dump: string, takenAs = domain): Promise<void> {
    const s = this.t.ns.getSite(domain);
    if (!s.dbServer || !s.dbName || !s.dbUser) throw fail('SITE_NOT_INSTALLED', `site ${domain} has no database recorded`);
    const hosts = this.t.webServers(platform);
    await this.t.dropDatabase(ctx, { server: s.dbServer, database: s.dbName, user: s.dbUser, hosts });
    const r = await this.t.call(ctx, s.dbServer, {
      type: 'dbCreate',
      database: s.dbName,
      user: s.dbUser,
      password: this.t.ns.siteSecrets(domain).dbPassword,
      hosts,
    });
    this.t.recordDbAddress(ctx, domain, s.dbServer, r);
    const restoreFrom =
      takenAs === domain
        ? () => createReadStream(dump)
        : await renamedDump(ctx, dump, this.t.platformKind(this.t.ns.getPlatform(platform)).kind, takenAs, domain);
    const l = await this.t.call(ctx, s.dbServer, { type: 'dbRestore', database: s.dbName }, { restoreFrom, timeoutMs: LONG });
    ctx.log(`${s.dbServer}: database ${s.dbName} emptied and loaded (${formatBytes(l.bytes)})`);
  }

  /** SiteFilesUnpack (replace) on every web server of the platform. */
  private async unpackFiles(ctx: TaskContext, domain: string, platform: string, filesTar: string): Promise<string[]> {
    const pl = this.t.ns.getPlatform(platform);
    const servers = this.t.webServers(platform);
    for (const server of servers) {
      const r = await this.t.call(
        ctx,
        server,
        { type: 'siteFilesUnpack', tree: pl.path, domain, replace: true },
        { filesFrom: () => createReadStream(filesTar), timeoutMs: LONG },
      );
      ctx.log(`${server}: sites/${domain}/${r.replaced.join(', ') || '(nothing)'} put in place (${r.entries} entries)`);
    }
    return servers;
  }
}

/** The task result of a backup. */
function backupResult(b: BackupInfo): Record<string, unknown> {
  return { id: b.id, domain: b.domain, path: b.path, bytes: b.archiveBytes, reason: b.reason };
}
