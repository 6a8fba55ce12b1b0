/**
 * Servers joining and leaving what they serve (issue 23): every way a platform's trees change
 * hands converges or cleans up by itself.
 *
 * - **Joining** a cluster (`cluster add`, `cluster create`, or enrolling with a cluster token)
 *   wakes the reconcile loop (`PlatformSync.wake`, platforms/reconcile.ts), which converges each
 *   of the cluster's platforms to the new member: an agent already connected says no new hello,
 *   so waiting for one left it `behind` until the loop's next timed pass.
 * - **Leaving** a platform's servers without a ForgetPlatform — `platform rm --offline-ok` while
 *   a server is offline, or `cluster remove` of a member — records a *leftover* (table
 *   `leftover_trees`: server, tree path, platform, whether to delete the files). A `server.forget`
 *   task (entity `server:<name>`) finishes it when the server is online: ForgetPlatform removes the
 *   web server config and the agent's tree state (so no drift is reported for a tree nobody
 *   wants), and deletes the tree (user data kept) only when `--delete-files` was asked. A server
 *   that returns queues the task at its hello. A leftover whose path is again a platform this
 *   server serves is dropped untouched (the path was reused).
 */
import { isSpokeError, type Logger } from '@spoke/shared';
import type { AgentHub } from './hub.js';
import type { Namespace } from '../namespace/namespace.js';
import type { Db } from '../namespace/store.js';
import type { TaskContext, TaskEngine } from '../tasks/engine.js';
import type { Clock, TaskInfo } from '../types.js';
import { paramsOf } from '../tasks/params.js';

/** One tree a server still holds for a platform it no longer serves. */
export interface Leftover {
  server: string;
  path: string;
  platform: string;
  deleteFiles: boolean;
  createdMs: number;
}

interface LeftoverRow {
  server: string;
  path: string;
  platform: string;
  delete_files: number;
  created_ms: number;
}

/** What `server.forget` did on one server. */
export interface ForgetLeftoversResult {
  server: string;
  forgotten: { platform: string; path: string; treeRemoved: boolean; kept: string[] }[];
  dropped: { platform: string; path: string; why: string }[];
}

/** Records and finishes leftover trees (see the module comment). */
export class Leftovers {
  private readonly db: Db;
  private readonly ns: Namespace;
  private readonly hub: AgentHub;
  private readonly tasks: TaskEngine;
  private readonly log: Logger;
  private readonly clock: Clock;

  constructor(deps: { db: Db; ns: Namespace; hub: AgentHub; tasks: TaskEngine; log: Logger; clock: Clock }) {
    this.db = deps.db;
    this.ns = deps.ns;
    this.hub = deps.hub;
    this.tasks = deps.tasks;
    this.log = deps.log;
    this.clock = deps.clock;
    this.tasks.register('server.forget', (ctx) => this.run(ctx));
    this.hub.events.on('online', (server: string) => {
      try {
        this.queue(server);
      } catch (err) {
        this.log.error({ err, server }, 'cannot queue the leftover trees of a returning server');
      }
    });
  }

  /** Records that `server` still holds `path` of `platform` (replacing an older record of that path). */
  add(l: Omit<Leftover, 'createdMs'>): void {
    this.db
      .prepare(
        `INSERT INTO leftover_trees (server, path, platform, delete_files, created_ms) VALUES (?, ?, ?, ?, ?)
         ON CONFLICT (server, path) DO UPDATE SET platform = excluded.platform, delete_files = excluded.delete_files, created_ms = excluded.created_ms`,
      )
      .run(l.server, l.path, l.platform, l.deleteFiles ? 1 : 0, this.clock());
  }

  /** Leftovers of one server (or all), oldest first. */
  list(server?: string): Leftover[] {
    const rows = (
      server === undefined
        ? this.db.prepare('SELECT * FROM leftover_trees ORDER BY created_ms, server, path').all()
        : this.db.prepare('SELECT * FROM leftover_trees WHERE server = ? ORDER BY created_ms, path').all(server)
    ) as LeftoverRow[];
    return rows.map((r) => ({ server: r.server, path: r.path, platform: r.platform, deleteFiles: r.delete_files === 1, createdMs: r.created_ms }));
  }

  /** Queues `server.forget` for a server with leftovers, when it is online and none is queued. */
  queue(server: string): TaskInfo | undefined {
    if (this.list(server).length === 0 || !this.hub.isOnline(server)) return undefined;
    const queued = this.tasks.list({ state: 'queued', entity: `server:${server}` }).find((t) => t.kind === 'server.forget');
    if (queued) return queued;
    this.log.info({ server }, 'queueing server.forget for leftover trees');
    return this.tasks.submit({ kind: 'server.forget', entity: `server:${server}`, params: { server } });
  }

  private async run(ctx: TaskContext): Promise<ForgetLeftoversResult> {
    const { server } = paramsOf(ctx.task, 'server.forget');
    const out: ForgetLeftoversResult = { server, forgotten: [], dropped: [] };
    const served = new Set(this.ns.hasServer(server) ? this.ns.platformsFor(server).map((p) => p.path) : []);
    for (const l of this.list(server)) {
      if (served.has(l.path)) {
        // the path was reused by a platform this server serves now: nothing to forget
        this.delete(server, l.path);
        out.dropped.push({ platform: l.platform, path: l.path, why: 'the path belongs to a platform this server serves now' });
        ctx.log(`${server}: ${l.path} is served again (a platform there now); leftover of ${l.platform} dropped`);
        continue;
      }
      try {
        const r = await this.hub.call(
          server,
          {
            type: 'forgetPlatform',
            platform: l.platform,
            tree: l.path,
            pinnedImpl: this.ns.hasServer(server) ? this.ns.httpPin(server, server) : '',
            removeTree: l.deleteFiles,
          },
          { signal: ctx.signal, timeoutMs: 10 * 60_000, log: ctx.log },
        );
        this.ns.recordObserved(server, l.path, '');
        this.delete(server, l.path);
        const cfg = r.configRemoved ? `removed ${r.configPath}${r.reloaded ? ' and reloaded' : ''}` : 'no platform config';
        const tree = l.deleteFiles
          ? r.treeRemoved
            ? `; deleted ${l.path}`
            : r.kept.length
              ? `; deleted ${l.path} except user data (${r.kept.join(', ')})`
              : `; ${l.path} was not there`
          : `; tree ${l.path} left in place (not asked to delete files)`;
        ctx.log(`${server}: finished removing platform ${l.platform}: ${cfg}; stopped holding the tree${tree}`);
        for (const pr of r.problems) ctx.log(`${server}: ${pr}`, 'warn');
        out.forgotten.push({ platform: l.platform, path: l.path, treeRemoved: r.treeRemoved, kept: r.kept });
      } catch (e) {
        if (ctx.signal.aborted) throw e;
        // kept for the next time the server comes online
        ctx.log(`${server}: cannot finish removing platform ${l.platform} (${l.path}): ${isSpokeError(e) ? `${e.code}: ${e.message}` : String(e)}`, 'error');
        throw e;
      }
    }
    return out;
  }

  private delete(server: string, path: string): void {
    this.db.prepare('DELETE FROM leftover_trees WHERE server = ? AND path = ?').run(server, path);
  }

  /** Drops every leftover of a server (it was removed from the namespace). */
  forgetServer(server: string): void {
    this.db.prepare('DELETE FROM leftover_trees WHERE server = ?').run(server);
  }
}
