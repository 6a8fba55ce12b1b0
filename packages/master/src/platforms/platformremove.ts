/**
 * `platform rm` as a task (`platform.remove`, entity `platform:<name>`). With `--force`, the
 * platform's sites are deleted first by their own `site.delete` tasks (each backs the site up;
 * backups outlive the platform), queued before this one on the same platform lock, so this task
 * runs after them and refuses to go on while any site is left. Then every server that hosts the
 * platform (each cluster member) gets ForgetPlatform: its web server config removed (tested,
 * reloaded), its tree state dropped, and with `--delete-files` its tree deleted except user data.
 * Only when every server did it (or, with `--offline-ok`, every online one) does the platform
 * leave the namespace; with `--delete-files` the master's canonical tree then goes too (through
 * the trash; user data kept). An offline server fails the task with AGENT_OFFLINE before
 * anything is touched, so a retry starts from the same state.
 */
import { existsSync, rmSync } from 'node:fs';
import { moveDir } from '../fsmove.js';
import { dirname, join } from 'node:path';
import { fail, isSpokeError, removeTreeKeepingUserData, type Logger } from '@spoke/shared';
import type { AgentHub } from '../servers/hub.js';
import type { PlatformForgetReport } from '@spoke/shared';
import type { Namespace } from '../namespace/namespace.js';
import type { TaskContext, TaskEngine } from '../tasks/engine.js';
import type { TreeStore } from './trees.js';
import type { TaskInfo } from '../types.js';
import { paramsOf } from '../tasks/params.js';
import type { SiteTasks } from '../sites/tasks.js';
import type { Leftovers } from '../servers/membership.js';

/** What `platform rm` takes. */
export interface RemovePlatformInput {
  name: string;
  /** Delete the platform's sites first (each backed up). */
  force: boolean;
  /** Delete the platform's tree on every server and on the master (user data kept). */
  deleteFiles: boolean;
  /** Go on when a server is offline (it keeps the config; the log says so). */
  offlineOk: boolean;
}

/** The task result. */
export interface RemovePlatformResult {
  platform: string;
  servers: ({ server: string } & PlatformForgetReport)[];
  /** Offline servers skipped with --offline-ok: they still have the config and the tree. */
  skipped: string[];
  /** --delete-files: the master's canonical tree was deleted (false: absent, or user data kept). */
  canonicalDeleted: boolean;
}

/** Submits and runs `platform.remove`. */
export class PlatformRemover {
  private readonly ns: Namespace;
  private readonly hub: AgentHub;
  private readonly tasks: TaskEngine;
  private readonly trees: TreeStore;
  private readonly sites: SiteTasks;
  private readonly log: Logger;
  private readonly trashDir: string;

  /** Where an offline server's part is recorded, to be finished when it returns (membership.ts). */
  private readonly leftovers: Pick<Leftovers, 'add'> | undefined;

  constructor(deps: {
    ns: Namespace;
    hub: AgentHub;
    tasks: TaskEngine;
    trees: TreeStore;
    sites: SiteTasks;
    log: Logger;
    trashDir: string;
    leftovers?: Pick<Leftovers, 'add'>;
  }) {
    this.leftovers = deps.leftovers;
    this.ns = deps.ns;
    this.hub = deps.hub;
    this.tasks = deps.tasks;
    this.trees = deps.trees;
    this.sites = deps.sites;
    this.log = deps.log;
    this.trashDir = deps.trashDir;
    this.tasks.register('platform.remove', (ctx) => this.run(ctx));
  }

  /**
   * Queues `platform.remove` (with --force, one `site.delete` per site before it).
   * @throws SpokeError PLATFORM_NOT_FOUND, PLATFORM_HAS_SITES (without force)
   */
  submit(input: RemovePlatformInput): TaskInfo {
    const p = this.ns.getPlatform(input.name);
    if (p.sites.length > 0 && !input.force) {
      throw fail(
        'PLATFORM_HAS_SITES',
        `platform ${p.name} has ${p.sites.length} site${p.sites.length > 1 ? 's' : ''} (${p.sites.join(', ')}); migrate them or use --force`,
      );
    }
    // Same platform lock, queued first: the task engine runs them before platform.remove.
    const siteTasks = input.force ? p.sites.map((d) => this.sites.delete(d, { noBackup: false }).id) : [];
    if (siteTasks.length) this.log.info({ platform: p.name, siteTasks }, 'platform rm --force: site deletes queued');
    return this.tasks.submit({
      kind: 'platform.remove',
      entity: `platform:${p.name}`,
      params: { platform: p.name, force: input.force, deleteFiles: input.deleteFiles, offlineOk: input.offlineOk, siteTasks },
    });
  }

  private async run(ctx: TaskContext): Promise<RemovePlatformResult> {
    const params = paramsOf(ctx.task, 'platform.remove');
    const name = params.platform;
    const deleteFiles = params.deleteFiles === true;
    const offlineOk = params.offlineOk === true;
    const siteTasks = params.siteTasks ?? [];
    const p = this.ns.getPlatform(name);

    for (const id of siteTasks) {
      const t = this.tasks.get(id);
      ctx.log(
        `site delete task ${id} (${t.entity}): ${t.state}${t.errorCode ? ` (${t.errorCode}: ${t.errorMessage ?? ''})` : ''}`,
        t.state === 'succeeded' ? 'info' : 'error',
      );
    }
    if (p.sites.length > 0) {
      const failed = siteTasks.map((id) => this.tasks.get(id)).filter((t) => t.state !== 'succeeded');
      throw fail(
        'PLATFORM_HAS_SITES',
        `platform ${name} still has ${p.sites.length} site${p.sites.length > 1 ? 's' : ''} (${p.sites.join(', ')})${
          failed.length ? `; delete failed: ${failed.map((t) => `task ${t.id} ${t.entity} ${t.errorCode ?? t.state}`).join(', ')}` : ''
        }; nothing else was removed`,
      );
    }

    const targets = this.ns.targets(p.server);
    await Promise.all(targets.map((s) => this.hub.awaitReconnect(s, { signal: ctx.signal, log: ctx.log })));
    const offline = targets.filter((s) => !this.hub.isOnline(s));
    if (offline.length && !offlineOk) {
      throw fail(
        'AGENT_OFFLINE',
        `${offline.join(', ')} ${offline.length > 1 ? 'are' : 'is'} offline and would keep serving platform ${name}; nothing was removed (bring ${
          offline.length > 1 ? 'them' : 'it'
        } back and run platform rm again, or add --offline-ok)`,
      );
    }
    for (const s of offline) {
      if (this.leftovers) {
        this.leftovers.add({ server: s, path: p.path, platform: name, deleteFiles });
        ctx.log(
          `${s}: offline; it still has the web server config of ${name} and the tree ${p.path}: when it comes back Spoke removes the config and stops holding the tree${deleteFiles ? ', and deletes the tree (user data kept)' : ' (the files stay)'}`,
          'warn',
        );
      } else ctx.log(`${s}: offline; ${s} still has the web server config spoke-platform-${name}.conf and the tree ${p.path} (remove them by hand)`, 'warn');
    }
    const online = targets.filter((s) => !offline.includes(s));

    // Stop watching first: with --delete-files an agent sharing the master's root (spoke up)
    // deletes the canonical tree itself, and its events must not queue a live verify.
    await this.trees.forget(p.path);

    const results = await Promise.all(
      online.map(async (server) => {
        try {
          const r = await this.hub.call(
            server,
            { type: 'forgetPlatform', platform: name, tree: p.path, pinnedImpl: this.ns.httpPin(server, p.server), removeTree: deleteFiles },
            { signal: ctx.signal, timeoutMs: 10 * 60_000 },
          );
          this.ns.recordObserved(server, p.path, '');
          const cfg = r.configRemoved ? `removed ${r.configPath}${r.reloaded ? ' and reloaded' : ''}` : 'no platform config';
          const tree = deleteFiles
            ? r.treeRemoved
              ? `; deleted ${p.path}`
              : r.kept.length
                ? `; deleted ${p.path} except user data`
                : `; ${p.path} was not there`
            : `; tree ${p.path} left in place`;
          ctx.log(`${server}: ${cfg}; stopped holding the tree${tree}`);
          for (const pr of r.problems) ctx.log(`${server}: ${pr}`, 'warn');
          return { server, ok: true as const, r };
        } catch (e) {
          if (ctx.signal.aborted) throw e;
          const code = isSpokeError(e) ? e.code : 'AGENT_COMMAND_FAILED';
          const msg = e instanceof Error ? e.message : String(e);
          ctx.log(`${server}: ${code}: ${msg.startsWith(`${server}: `) ? msg.slice(server.length + 2) : msg}`, 'error');
          return { server, ok: false as const, code, msg };
        }
      }),
    );
    const failed = results.flatMap((r) => (r.ok ? [] : [r]));
    if (failed.length) {
      const first = failed[0] as (typeof failed)[number];
      throw fail(
        first.code,
        `${failed.map((f) => (f.msg.startsWith(`${f.server}: `) ? f.msg : `${f.server}: ${f.msg}`)).join('; ')}; platform ${name} stays registered (run platform rm again)`,
      );
    }

    // The canonical tree goes to the trash before the record goes, and comes back if that fails.
    const host = this.trees.hostPath(p.path);
    const trash = join(this.trashDir, `task-${ctx.task.id}`, 'tree');
    let moved = false;
    if (deleteFiles && existsSync(host)) {
      moveDir(host, trash);
      moved = true;
      ctx.log(`moved the canonical tree ${host} to the master's trash`);
    }
    try {
      this.ns.removePlatform(name, false);
    } catch (e) {
      if (moved && !existsSync(host)) moveDir(trash, host);
      throw e;
    }
    let canonicalDeleted = false;
    if (moved) {
      const r = await removeTreeKeepingUserData(trash);
      canonicalDeleted = r.removed;
      if (r.kept.length) {
        // user data stays where it was
        if (!existsSync(host)) moveDir(trash, host);
        ctx.log(`master: kept user data in ${host}: ${r.kept.join(', ')} (not empty; move or delete it by hand)`, 'warn');
      } else {
        ctx.log(`master: deleted the canonical tree ${host}`);
      }
      rmSync(dirname(trash), { recursive: true, force: true });
    } else if (!deleteFiles) {
      ctx.log(`master: canonical tree ${host} left in place`);
    }
    ctx.log(
      `platform ${name} removed${offline.length ? `; ${offline.join(', ')} still ${offline.length > 1 ? 'have' : 'has'} its config (offline${this.leftovers ? `; finished when ${offline.length > 1 ? 'they return' : 'it returns'}` : ''})` : ''}`,
    );
    return {
      platform: name,
      servers: results.flatMap((r) => (r.ok ? [{ server: r.server, ...r.r }] : [])),
      skipped: offline,
      canonicalDeleted,
    };
  }
}
