/**
 * The master's core: the components one operator call may span (namespace, enrollment, tasks,
 * agent hub), plus the operations that touch more than one of them.
 */
import { fail, SPOKE_VERSION, type Logger } from '@spoke/shared';
import type { Enroller } from './ca.js';
import type { AgentHub } from './hub.js';
import type { Namespace } from './namespace.js';
import type { TaskEngine } from './tasks.js';
import type { Clock, TaskInfo } from './types.js';
import { verifyServerTask } from './verify.js';

/** What `spoke status` shows. */
export interface MasterStatusInfo {
  version: string;
  listen: string | null;
  stateDir: string;
  root: string;
  caFingerprint: string;
  startedMs: number;
  servers: number;
  serversOnline: number;
  platforms: number;
  sites: number;
  tasksQueued: number;
  tasksRunning: number;
}

/** The master's components and cross-cutting operations. */
export class Core {
  readonly ns: Namespace;
  readonly enroller: Enroller;
  readonly tasks: TaskEngine;
  readonly hub: AgentHub;
  private readonly log: Logger;
  private readonly clock: Clock;
  private readonly info: { stateDir: string; root: string; startedMs: number; listen: string | null; minFreeBytes: number };

  constructor(deps: {
    ns: Namespace;
    enroller: Enroller;
    tasks: TaskEngine;
    hub: AgentHub;
    log: Logger;
    clock: Clock;
    info: { stateDir: string; root: string; startedMs: number; listen: string | null; minFreeBytes: number };
  }) {
    this.ns = deps.ns;
    this.enroller = deps.enroller;
    this.tasks = deps.tasks;
    this.hub = deps.hub;
    this.log = deps.log;
    this.clock = deps.clock;
    this.info = deps.info;
    this.tasks.register('server.verify', verifyServerTask({ ns: this.ns, hub: this.hub, minFreeBytes: this.info.minFreeBytes }));
  }

  /** Sets the address the TLS listener is bound to (known after bind). */
  setListen(listen: string): void {
    this.info.listen = listen;
  }

  /** Queues `server.verify` on a server or cluster. @throws SpokeError SERVER_NOT_FOUND */
  verifyServer(name: string): TaskInfo {
    const s = this.ns.getServer(name);
    if (s.kind === 'agent' && !s.enrolled) throw fail('NOT_ENROLLED', `${name} has no enrolled agent`);
    return this.tasks.submit({ kind: 'server.verify', entity: `server:${name}`, params: { server: name } });
  }

  /** Removes a server, revokes its certificate and drops its connection. */
  removeServer(name: string): void {
    const members = this.ns.hasServer(name) ? this.ns.getServer(name).members : [];
    this.ns.removeServer(name);
    this.hub.disconnect(name, fail('CERT_REVOKED', `server ${name} was removed; its certificate is revoked`));
    this.log.info({ server: name, detachedMembers: members }, 'server removed');
  }

  /** Numbers for `spoke status`. */
  status(): MasterStatusInfo {
    const c = this.ns.counts();
    const t = this.tasks.counts();
    return {
      version: SPOKE_VERSION,
      listen: this.info.listen,
      stateDir: this.info.stateDir,
      root: this.info.root,
      caFingerprint: this.enroller.caFingerprint,
      startedMs: this.info.startedMs,
      servers: c.servers,
      serversOnline: this.hub.connected().filter((s) => this.hub.isOnline(s)).length,
      platforms: c.platforms,
      sites: c.sites,
      tasksQueued: t.queued,
      tasksRunning: t.running,
    };
  }
}
