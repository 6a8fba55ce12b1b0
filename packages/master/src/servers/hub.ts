/**
 * The agent gateway: one session per connected agent (its Connect stream), presence from
 * heartbeats, and request/response commands matched by id. This is the edge of the Connect
 * handler: it converts wire messages to domain types and back.
 */
import { EventEmitter } from 'node:events';
import { randomUUID } from 'node:crypto';
import type { Readable, Writable } from 'node:stream';
import type { ServerDuplexStream } from '@grpc/grpc-js';
import { CAPABILITY_VERSION, COMMAND_CAPABILITY, HTTPS_CAPABILITY, fail, SpokeError, toServiceError, type Logger, wire, isErrorCode } from '@spoke/shared';
import type { Namespace, Presence, DetectedServiceInfo } from '../namespace/namespace.js';
import type { Clock, HostFactsInfo } from '../types.js';
import { DumpTransfers, type DumpTransferHandle } from './dumps.js';

/** A typed command the master can send to an agent. */
export type AgentCommand =
  | { type: 'verifyServer'; minFreeBytes: number }
  | { type: 'ping' }
  // webGroupFiles: settings files the agent gives to the web group after the apply; recheck: the
  // agent re-observes the tree first (an operator's verify), instead of trusting its last commit
  | { type: 'converge'; tree: string; rootHash: string; excludes: string[]; label: string; webGroupFiles?: string[]; recheck?: boolean }
  | { type: 'treeStatus'; tree: string; excludes: string[] }
  | { type: 'configurePlatform'; platform: string; tree: string; kind: string; pinnedImpl: string }
  // site databases on a db agent: `hosts` are the web hosts of the site (every cluster member);
  // the password is the site's own (never the admin's) and is never logged
  | { type: 'dbCreate'; database: string; user: string; password: string; hosts: string[] }
  | { type: 'dbDrop'; database: string; user: string; hosts: string[] }
  | { type: 'dbGrants'; database: string; user: string; password: string; hosts: string[] }
  // needs CallOptions.dumpTo (the checked dump is written there) / CallOptions.restoreFrom
  | { type: 'dbDump'; database: string }
  | { type: 'dbRestore'; database: string }
  // sites on a web agent (capability 5): the vhost, files dirs and settings-file group; removal;
  // the platform's installer run over HTTP (the admin password is never logged)
  | {
      type: 'configureSite';
      domain: string;
      platform: string;
      /** Namespace path of the platform. */
      tree: string;
      kind: string;
      aliases: string[];
      redirectAliases: boolean;
      /** false: every name answers 503 with a maintenance page. */
      enabled: boolean;
      /** Paths relative to the platform root the web group must read (settings files): chgrp, mode 0640. */
      webGroupFiles: string[];
      pinnedImpl: string;
      /** The site's certificate and key for its 443 block (needs capability 12; the key is never logged). */
      tls?: SiteTlsConfig | null;
    }
  // an ACME HTTP-01 challenge answer served on port 80 by every site vhost (capability 12)
  | { type: 'acmeChallenge'; token: string; keyAuthorization: string; remove: boolean }
  | { type: 'removeSite'; domain: string; tree: string; deleteFiles: boolean; pinnedImpl: string }
  | {
      type: 'installSite';
      domain: string;
      kind: string;
      title: string;
      adminUser: string;
      adminEmail: string;
      adminPassword: string;
      /** Drupal: namespace path of the platform, install profile, langcode. */
      tree: string;
      profile: string;
      locale: string;
    }
  // Spoke's site tool on a web agent (capability 9): a one-time login link, pending database
  // updates, running them; tokenHash/ttlSeconds only for a WordPress login link
  | { type: 'siteTool'; tree: string; domain: string; kind: string; op: SiteToolOp; tokenHash?: string; ttlSeconds?: number }
  // one cron run of a site on a web agent (capability 10), through its web server (Drupal,
  // WordPress) or runJobs.php (MediaWiki)
  | { type: 'siteCron'; tree: string; domain: string; kind: string }
  // a site's user files (capability 6): a tar of files/ and private/ of sites/<domain>;
  // siteFilesPack needs CallOptions.filesTo, siteFilesUnpack CallOptions.filesFrom
  | { type: 'siteFilesPack'; tree: string; domain: string }
  | { type: 'siteFilesUnpack'; tree: string; domain: string; replace: boolean }
  // a platform leaving a web server (capability 7): its config, the agent's tree state and,
  // with removeTree, the tree (user data kept)
  | { type: 'forgetPlatform'; platform: string; tree: string; pinnedImpl: string; removeTree: boolean };

/** A site's certificate as ConfigureSite carries it. */
export interface SiteTlsConfig {
  /** Leaf first, then the chain. */
  certPem: string;
  keyPem: string;
  /** Port 80 answers 301 to https. */
  redirect: boolean;
  hsts: boolean;
}

/** What an agent removed for a platform leaving it. */
export interface PlatformForgetReport {
  /** The config file existed and was removed. */
  configRemoved: boolean;
  reloaded: boolean;
  /** The config file (host path; "" without a web server). */
  configPath: string;
  /** removeTree: the tree is gone (false: absent already, or user data kept). */
  treeRemoved: boolean;
  /** removeTree: user-data dirs kept, relative to the platform root. */
  kept: string[];
  problems: string[];
}

/** What an agent packed of a site's user files. */
export interface SiteFilesPackReport {
  bytes: number;
  entries: number;
  /** Left out, with why (sockets, FIFOs, links leaving the site dir). */
  skipped: string[];
}

/** What an agent unpacked into a site's user files. */
export interface SiteFilesUnpackReport {
  bytes: number;
  entries: number;
  /** The parts swapped in: "files", "private". */
  replaced: string[];
}

/** What an agent did to its web server for a site (the vhost, files dirs, settings files). */
export type SiteConfigReport = PlatformConfigReport;

/** What an agent removed for a site. */
export interface SiteRemoveReport {
  impl: string;
  /** The vhost file on the agent's host. */
  path: string;
  /** The vhost existed and was removed (false: already gone). */
  removed: boolean;
  reloaded: boolean;
  /** With deleteFiles: what was deleted, relative to the platform root. */
  deleted: string[];
  problems: string[];
}

/** What a site installer run did. */
export interface SiteInstallReport {
  /** The installer ran and succeeded. */
  ran: boolean;
  /** Why it did not run ("" when it ran), e.g. "Spoke has no non-interactive installer for kind generic; ...". */
  reason: string;
  /** The site's address. */
  url: string;
  /** The Drupal profile installed ("" for other kinds). */
  profile: string;
}

/** What the site tool can do on an agent. */
export type SiteToolOp = 'loginUrl' | 'updates' | 'update';

/** A database update of a Drupal site. */
export interface SiteUpdateInfo {
  module: string;
  /** hook_update_N number or post-update function. */
  update: string;
  description: string;
}

/** What the site tool answered. */
export interface SiteToolReport {
  /** loginUrl (Drupal): the one-time link; "" for WordPress (the master makes the link). */
  url: string;
  /** loginUrl: the account the link logs in as. */
  user: string;
  /** updates: pending ones; update: what is still pending after the run. */
  pending: SiteUpdateInfo[];
  /** update: what ran. */
  ran: SiteUpdateInfo[];
}

/** What one cron run did on an agent. */
export interface SiteCronReport {
  /** What ran, e.g. "GET /cron/… via 127.0.0.1:80" (the key elided). */
  method: string;
  /** HTTP status (0 for runJobs.php). */
  status: number;
  /** One line: what the site answered. */
  message: string;
  ms: number;
}

const SITE_TOOL_OPS: Record<SiteToolOp, wire.SiteToolOp> = {
  loginUrl: wire.SiteToolOp.SITE_TOOL_OP_LOGIN_URL,
  updates: wire.SiteToolOp.SITE_TOOL_OP_UPDATES,
  update: wire.SiteToolOp.SITE_TOOL_OP_UPDATE,
};

/** What a db agent granted (dbCreate, dbGrants): account hosts after its grantHosts mapping. */
export interface DbGrantsReport {
  hosts: string[];
  added: string[];
  removed: string[];
  /** How web servers reach the database server (agent.json db.siteHost/sitePort); "" / 0 from an agent that does not say. */
  siteHost: string;
  sitePort: number;
}

/** What a db agent dropped. */
export interface DbDropReport {
  databaseExisted: boolean;
  /** Account hosts dropped. */
  usersDropped: string[];
}

/** What an agent did to its web server for a platform. */
export interface PlatformConfigReport {
  impl: string;
  /** The config file on the agent's host. */
  path: string;
  changed: boolean;
  tested: boolean;
  reloaded: boolean;
  /** Permission fixes made under the platform's sites/. */
  fixed: string[];
  /** What the agent could not fix or found wrong (warnings). */
  problems: string[];
}

/** Paths that differ from a committed state (lists may be cut short; `total` counts all). */
export interface DriftInfo {
  changed: string[];
  added: string[];
  removed: string[];
  total: number;
}

/** What one agent did in a converge. */
export interface ConvergeReport {
  inSync: boolean;
  rootHash: string;
  added: number;
  changed: number;
  removed: number;
  filesFetched: number;
  bytesFetched: number;
  filesReused: number;
  bytesReused: number;
  ms: number;
  drift: DriftInfo;
  /** Paths skipped for user data in the way (capability 11); then rootHash is what was committed. */
  conflicts: ConflictInfo[];
  /** With conflicts: the root hash that was asked for. */
  wantedRootHash: string;
}

/** A path an agent could not converge without losing user data. */
export interface ConflictInfo {
  path: string;
  /** What the platform has there: "file" | "symlink". */
  wanted: string;
  /** The user data in the way. */
  userData: string;
}

/** What an agent holds for a tree. */
export interface TreeStatusReport {
  committedRootHash: string;
  actualRootHash: string;
  exists: boolean;
  drift: DriftInfo;
  /** What the last converge skipped (capability 11; [] from older agents). */
  conflicts: ConflictInfo[];
}

/** One root an agent checked during verify. */
export interface RootCheckInfo {
  path: string;
  hostPath: string;
  writable: boolean;
  freeBytes: number;
  totalBytes: number;
  error: string;
}

/** What `server verify` gets back from one agent. */
export interface VerifyReport {
  services: DetectedServiceInfo[];
  roots: RootCheckInfo[];
  facts: HostFactsInfo | null;
}

/** Result type per command. */
export interface AgentCommandResults {
  verifyServer: VerifyReport;
  ping: null;
  converge: ConvergeReport;
  treeStatus: TreeStatusReport;
  configurePlatform: PlatformConfigReport;
  dbCreate: DbGrantsReport;
  dbDrop: DbDropReport;
  dbGrants: DbGrantsReport;
  dbDump: { bytes: number };
  dbRestore: { bytes: number };
  configureSite: SiteConfigReport;
  removeSite: SiteRemoveReport;
  installSite: SiteInstallReport;
  siteTool: SiteToolReport;
  siteCron: SiteCronReport;
  siteFilesPack: SiteFilesPackReport;
  siteFilesUnpack: SiteFilesUnpackReport;
  forgetPlatform: PlatformForgetReport;
  acmeChallenge: { path: string };
}

/** Options of `call`. */
export interface CallOptions {
  timeoutMs?: number;
  signal?: AbortSignal;
  onProgress?: (p: { message: string; done: number; total: number }) => void;
  /**
   * dbDump: where the dump goes. It is ended once the whole dump arrived and was found complete;
   * on any failure it is destroyed unfinished (remove what it wrote).
   */
  dumpTo?: Writable;
  /** dbRestore: opens the dump the agent downloads. */
  restoreFrom?: () => Readable;
  /**
   * siteFilesPack: where the tar goes. Ended once it arrived in full; destroyed unfinished on any
   * failure (remove what it wrote).
   */
  filesTo?: Writable;
  /** siteFilesUnpack: opens the tar the agent downloads. */
  filesFrom?: () => Readable;
  /** The task log: says when the call waits for the agent to reconnect after a master start. */
  log?: TaskLog;
}

/** A task's log function (TaskContext.log). */
export type TaskLog = (message: string, level?: 'info' | 'warn' | 'error') => void;

interface Pending {
  resolve(v: wire.CommandResult): void;
  reject(e: SpokeError): void;
  onProgress?: CallOptions['onProgress'];
}

interface Session {
  server: string;
  call: ServerDuplexStream<wire.AgentEvent, wire.MasterCommand>;
  lastHeartbeatMs: number;
  helloed: boolean;
  /** From the agent's hello (0 before it). */
  capability: number;
  pending: Map<string, Pending>;
}

/** Emitted as `hello` after an agent's hello was recorded. */
export interface HelloEvent {
  server: string;
  observed: Record<string, string>;
}

/** Sessions of connected agents. Implements Presence for the namespace. */
export class AgentHub implements Presence {
  private readonly ns: Namespace;
  private readonly log: Logger;
  private readonly clock: Clock;
  private readonly heartbeatIntervalMs: number;
  private readonly heartbeatTtlMs: number;
  private readonly sessions = new Map<string, Session>();
  /** Agents that were online when the master last stopped and have not said hello since. */
  private readonly returning = new Set<string>();
  /** When the reconnect grace after this master's start ends (clock ms). */
  private readonly graceEndsMs: number;
  /** Dumps in flight for dbDump / dbRestore commands (the PutDump and GetDump handlers take them). */
  readonly dumps = new DumpTransfers();
  /** Emits `hello` and `observed` (HelloEvent), `online` and `offline` (server name). */
  readonly events = new EventEmitter();

  /**
   * `reconnectGraceMs` (default 0: none): for this long after the hub is built (the master's
   * start), a command for an agent that was online when the master last stopped waits for it to
   * reconnect instead of failing AGENT_OFFLINE at once (see awaitReconnect).
   */
  constructor(deps: { ns: Namespace; log: Logger; clock: Clock; heartbeatIntervalMs: number; heartbeatTtlMs: number; reconnectGraceMs?: number }) {
    this.ns = deps.ns;
    this.log = deps.log;
    this.clock = deps.clock;
    this.heartbeatIntervalMs = deps.heartbeatIntervalMs;
    this.heartbeatTtlMs = deps.heartbeatTtlMs;
    const grace = deps.reconnectGraceMs ?? 0;
    this.graceEndsMs = this.clock() + grace;
    if (grace > 0) {
      for (const s of expectedBack(this.ns.listServers(), this.heartbeatTtlMs)) this.returning.add(s);
      if (this.returning.size) this.log.info({ agents: [...this.returning], graceMs: grace }, 'expecting agents to reconnect after the master restart');
    }
  }

  /**
   * Waits for an agent that was online when the master last stopped to reconnect, for what is
   * left of the reconnect grace after the master's start. Returns at once when the agent is
   * online, was not online before the restart (never seen, or already gone then), came back once
   * already, or the grace is over; never throws. Says so in `opts.log` (the task log).
   */
  async awaitReconnect(server: string, opts: { signal?: AbortSignal; log?: TaskLog } = {}): Promise<void> {
    if (this.isOnline(server) || !this.returning.has(server)) return;
    const left = this.graceEndsMs - this.clock();
    if (left <= 0 || opts.signal?.aborted) {
      this.returning.delete(server);
      return;
    }
    const secs = Math.ceil(left / 1000);
    opts.log?.(`waiting up to ${secs}s for ${server} to reconnect after the master restart`);
    this.log.info({ server, waitMs: left }, 'waiting for an agent to reconnect after the master restart');
    const t0 = this.clock();
    await new Promise<void>((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.events.off('online', onOnline);
        opts.signal?.removeEventListener('abort', done);
        resolve();
      };
      const onOnline = (name: string) => {
        if (name === server) done();
      };
      const timer = setTimeout(done, left);
      this.events.on('online', onOnline);
      opts.signal?.addEventListener('abort', done, { once: true });
    });
    if (this.isOnline(server)) {
      opts.log?.(`${server} reconnected after ${((this.clock() - t0) / 1000).toFixed(1)}s`);
    } else if (!opts.signal?.aborted) {
      this.returning.delete(server);
      opts.log?.(`${server} did not reconnect within ${secs}s of the master restart`, 'warn');
      this.log.warn({ server }, 'agent did not reconnect within the grace after the master restart');
    }
  }

  /** True when the agent is connected, said hello, and its last heartbeat is within the TTL. */
  isOnline(server: string): boolean {
    const s = this.sessions.get(server);
    return !!s && s.helloed && this.clock() - s.lastHeartbeatMs <= this.heartbeatTtlMs;
  }

  /** Connected agent names. */
  connected(): string[] {
    return [...this.sessions.keys()].sort();
  }

  /** Takes over a Connect stream for an authenticated agent server. */
  attach(server: string, cluster: string | null, call: ServerDuplexStream<wire.AgentEvent, wire.MasterCommand>): void {
    const old = this.sessions.get(server);
    if (old) this.close(old, fail('AGENT_DISCONNECTED', 'replaced by a newer connection from the same agent'));
    const session: Session = { server, call, lastHeartbeatMs: this.clock(), helloed: false, capability: 0, pending: new Map() };
    this.sessions.set(server, session);
    const log = this.log.child({ server });
    log.info('agent connected');
    call.on('data', (ev: wire.AgentEvent) => {
      try {
        this.onEvent(session, ev);
      } catch (e) {
        log.error({ err: e }, 'bad agent event');
      }
    });
    const gone = (why: string) => {
      if (this.sessions.get(server) === session) {
        this.sessions.delete(server);
        this.ns.touch(server, session.lastHeartbeatMs);
        this.events.emit('offline', server);
        log.info({ why }, 'agent disconnected');
      }
      this.failPending(session, fail('AGENT_DISCONNECTED', `agent ${server} disconnected`));
    };
    call.on('end', () => {
      gone('stream ended');
      call.end();
    });
    call.on('error', (e) => gone(e.message));
    call.on('cancelled', () => gone('cancelled'));
    call.write({
      id: randomUUID(),
      command: {
        $case: 'welcome',
        value: { server, cluster: cluster ?? '', capabilityVersion: CAPABILITY_VERSION, heartbeatIntervalMs: this.heartbeatIntervalMs },
      },
    });
  }

  /** Drops an agent's session (used when its certificate is revoked). */
  disconnect(server: string, err: SpokeError): void {
    const s = this.sessions.get(server);
    if (s) this.close(s, err);
  }

  /** Closes every session (master shutdown). */
  closeAll(): void {
    for (const s of [...this.sessions.values()]) this.close(s, fail('AGENT_DISCONNECTED', 'the master is shutting down'));
  }

  private close(s: Session, err: SpokeError): void {
    if (this.sessions.get(s.server) === s) this.sessions.delete(s.server);
    this.failPending(s, err);
    const st = toServiceError(err);
    try {
      s.call.emit('error', Object.assign(new Error(err.message), st));
    } catch {
      // the stream is already gone
    }
  }

  private failPending(s: Session, err: SpokeError): void {
    for (const p of s.pending.values()) p.reject(err);
    s.pending.clear();
  }

  private onEvent(s: Session, ev: wire.AgentEvent): void {
    const e = ev.event;
    if (!e) return;
    // Any message is a sign of life: an agent busy applying a converge may send its result
    // before a late heartbeat, and the next command must not find it "offline".
    if (s.helloed) s.lastHeartbeatMs = this.clock();
    switch (e.$case) {
      case 'hello': {
        const h = e.value;
        s.helloed = true;
        s.capability = h.capabilityVersion;
        s.lastHeartbeatMs = this.clock();
        this.ns.recordHello(s.server, {
          facts: factsFromWire(h.facts),
          services: h.services.map((x) => ({ kind: x.kind, impl: x.impl, version: x.version })),
          capabilityVersion: h.capabilityVersion,
        });
        this.returning.delete(s.server);
        this.events.emit('online', s.server);
        this.events.emit('hello', { server: s.server, observed: { ...h.observed } } satisfies HelloEvent);
        return;
      }
      case 'observed':
        this.events.emit('observed', { server: s.server, observed: { ...e.value.observed } } satisfies HelloEvent);
        return;
      case 'heartbeat':
        s.lastHeartbeatMs = this.clock();
        this.ns.touch(s.server, s.lastHeartbeatMs);
        return;
      case 'progress': {
        const p = s.pending.get(e.value.id);
        p?.onProgress?.({ message: e.value.message, done: e.value.done, total: e.value.total });
        return;
      }
      case 'result': {
        const p = s.pending.get(e.value.id);
        if (!p) return; // a reply to a command we gave up on: harmless, commands are idempotent
        s.pending.delete(e.value.id);
        p.resolve(e.value);
        return;
      }
    }
  }

  /**
   * Sends a command to an agent and waits for its result. An agent expected back after the
   * master's start is waited for first (awaitReconnect; said in `opts.log`).
   * @throws SpokeError AGENT_OFFLINE, AGENT_TOO_OLD (the agent's capability predates the command),
   *   AGENT_TIMEOUT, AGENT_DISCONNECTED, TASK_CANCELLED, or the agent's own error code
   */
  async call<K extends AgentCommand['type']>(
    server: string,
    cmd: Extract<AgentCommand, { type: K }>,
    opts: CallOptions = {},
  ): Promise<AgentCommandResults[K]> {
    if (!this.isOnline(server)) await this.awaitReconnect(server, { signal: opts.signal, log: opts.log });
    const s = this.sessions.get(server);
    if (!s || !this.isOnline(server)) {
      throw fail('AGENT_OFFLINE', `agent ${server} is offline (last seen: ${this.lastSeen(server)})`);
    }
    // A vhost with a certificate needs an agent that knows about it: an older one would drop
    // the certificate and serve the site over plain HTTP only.
    const needs = cmd.type === 'configureSite' && (cmd as Extract<AgentCommand, { type: 'configureSite' }>).tls ? HTTPS_CAPABILITY : (COMMAND_CAPABILITY[cmd.type] ?? 1);
    if (s.capability < needs) {
      throw fail(
        'AGENT_TOO_OLD',
        `agent ${server} has capability ${s.capability}, ${cmd.type} needs ${needs}; upgrade spoke-agent on ${server} (this master speaks ${CAPABILITY_VERSION})`,
      );
    }
    const id = randomUUID();
    const timeoutMs = opts.timeoutMs ?? 60_000;
    const transfer = this.dumpTransfer(id, server, cmd, opts);
    const result = await new Promise<wire.CommandResult>((resolve, reject) => {
      const timer = setTimeout(() => {
        s.pending.delete(id);
        reject(fail('AGENT_TIMEOUT', `agent ${server} did not answer ${cmd.type} within ${Math.round(timeoutMs / 1000)}s`));
      }, timeoutMs);
      const onAbort = () => {
        s.pending.delete(id);
        clearTimeout(timer);
        const r: unknown = opts.signal?.reason;
        reject(r instanceof SpokeError ? r : fail('TASK_CANCELLED', 'cancelled'));
      };
      if (opts.signal?.aborted) return onAbort();
      opts.signal?.addEventListener('abort', onAbort, { once: true });
      s.pending.set(id, {
        resolve: (v) => {
          clearTimeout(timer);
          opts.signal?.removeEventListener('abort', onAbort);
          resolve(v);
        },
        reject: (err) => {
          clearTimeout(timer);
          opts.signal?.removeEventListener('abort', onAbort);
          reject(err);
        },
        onProgress: opts.onProgress,
      });
      s.call.write(commandToWire(id, cmd));
    }).catch((e: unknown) => {
      transfer?.abort(e as Error);
      throw e;
    });
    if (!result.ok) {
      const code = isErrorCode(result.errorCode) ? result.errorCode : 'AGENT_COMMAND_FAILED';
      const err = fail(code, `${server}: ${result.errorMessage || 'command failed'}`);
      transfer?.abort(err);
      throw err;
    }
    transfer?.finish();
    return resultFromWire(cmd.type, result) as AgentCommandResults[K];
  }

  /** Registers the transfer a dbDump / dbRestore / siteFilesPack / siteFilesUnpack command moves. @throws SpokeError INTERNAL */
  private dumpTransfer(id: string, server: string, cmd: AgentCommand, opts: CallOptions): DumpTransferHandle | null {
    if (cmd.type === 'dbDump') {
      if (!opts.dumpTo) throw fail('INTERNAL', 'dbDump needs CallOptions.dumpTo');
      return this.dumps.expectUpload(id, server, cmd.database, opts.dumpTo);
    }
    if (cmd.type === 'dbRestore') {
      if (!opts.restoreFrom) throw fail('INTERNAL', 'dbRestore needs CallOptions.restoreFrom');
      return this.dumps.offerDownload(id, server, opts.restoreFrom);
    }
    if (cmd.type === 'siteFilesPack') {
      if (!opts.filesTo) throw fail('INTERNAL', 'siteFilesPack needs CallOptions.filesTo');
      return this.dumps.expectUpload(id, server, `the files of ${cmd.domain}`, opts.filesTo, 'files');
    }
    if (cmd.type === 'siteFilesUnpack') {
      if (!opts.filesFrom) throw fail('INTERNAL', 'siteFilesUnpack needs CallOptions.filesFrom');
      return this.dumps.offerDownload(id, server, opts.filesFrom, 'files');
    }
    return null;
  }

  private lastSeen(server: string): string {
    try {
      const ms = this.ns.getServer(server).lastSeenMs;
      return ms ? new Date(ms).toISOString() : 'never';
    } catch {
      return 'unknown server';
    }
  }
}

/**
 * The agent servers that were online when the master last stopped: those last seen within two
 * heartbeat TTLs of the latest sign of life any agent gave (the master's last moments). An agent
 * that was already gone then, or never said hello, is not waited for.
 */
export function expectedBack(servers: readonly { name: string; kind: string; lastSeenMs: number | null }[], heartbeatTtlMs: number): string[] {
  const seen = servers.filter((s) => s.kind !== 'cluster' && s.lastSeenMs !== null);
  if (seen.length === 0) return [];
  const newest = Math.max(...seen.map((s) => s.lastSeenMs as number));
  return seen.filter((s) => (s.lastSeenMs as number) >= newest - 2 * heartbeatTtlMs).map((s) => s.name).sort();
}

function commandToWire(id: string, cmd: AgentCommand): wire.MasterCommand {
  switch (cmd.type) {
    case 'verifyServer':
      return { id, command: { $case: 'verifyServer', value: { minFreeBytes: cmd.minFreeBytes } } };
    case 'ping':
      return { id, command: { $case: 'ping', value: {} } };
    case 'converge':
      return {
        id,
        command: { $case: 'converge', value: { tree: cmd.tree, rootHash: cmd.rootHash, excludes: cmd.excludes, label: cmd.label, webGroupFiles: cmd.webGroupFiles ?? [], recheck: cmd.recheck ?? false } },
      };
    case 'treeStatus':
      return { id, command: { $case: 'treeStatus', value: { tree: cmd.tree, excludes: cmd.excludes } } };
    case 'configurePlatform':
      return {
        id,
        command: { $case: 'configurePlatform', value: { platform: cmd.platform, tree: cmd.tree, kind: cmd.kind, pinnedImpl: cmd.pinnedImpl } },
      };
    case 'dbCreate':
      return { id, command: { $case: 'dbCreate', value: { database: cmd.database, user: cmd.user, password: cmd.password, hosts: cmd.hosts } } };
    case 'dbDrop':
      return { id, command: { $case: 'dbDrop', value: { database: cmd.database, user: cmd.user, hosts: cmd.hosts } } };
    case 'dbGrants':
      return { id, command: { $case: 'dbGrants', value: { database: cmd.database, user: cmd.user, password: cmd.password, hosts: cmd.hosts } } };
    case 'dbDump':
      return { id, command: { $case: 'dbDump', value: { database: cmd.database } } };
    case 'dbRestore':
      return { id, command: { $case: 'dbRestore', value: { database: cmd.database } } };
    case 'configureSite':
      return {
        id,
        command: {
          $case: 'configureSite',
          value: {
            domain: cmd.domain,
            platform: cmd.platform,
            tree: cmd.tree,
            kind: cmd.kind,
            aliases: cmd.aliases,
            redirectAliases: cmd.redirectAliases,
            enabled: cmd.enabled,
            webGroupFiles: cmd.webGroupFiles,
            pinnedImpl: cmd.pinnedImpl,
            tls: cmd.tls ? { certPem: cmd.tls.certPem, keyPem: cmd.tls.keyPem, redirect: cmd.tls.redirect, hsts: cmd.tls.hsts } : undefined,
          },
        },
      };
    case 'acmeChallenge':
      return { id, command: { $case: 'acmeChallenge', value: { token: cmd.token, keyAuthorization: cmd.keyAuthorization, remove: cmd.remove } } };
    case 'removeSite':
      return { id, command: { $case: 'removeSite', value: { domain: cmd.domain, tree: cmd.tree, deleteFiles: cmd.deleteFiles, pinnedImpl: cmd.pinnedImpl } } };
    case 'installSite':
      return {
        id,
        command: {
          $case: 'installSite',
          value: {
            domain: cmd.domain,
            kind: cmd.kind,
            title: cmd.title,
            adminUser: cmd.adminUser,
            adminEmail: cmd.adminEmail,
            adminPassword: cmd.adminPassword,
            tree: cmd.tree,
            profile: cmd.profile,
            locale: cmd.locale,
          },
        },
      };
    case 'siteTool':
      return {
        id,
        command: {
          $case: 'siteTool',
          value: { tree: cmd.tree, domain: cmd.domain, kind: cmd.kind, op: SITE_TOOL_OPS[cmd.op], tokenHash: cmd.tokenHash ?? '', ttlSeconds: cmd.ttlSeconds ?? 0 },
        },
      };
    case 'siteCron':
      return { id, command: { $case: 'siteCron', value: { tree: cmd.tree, domain: cmd.domain, kind: cmd.kind } } };
    case 'siteFilesPack':
      return { id, command: { $case: 'siteFilesPack', value: { tree: cmd.tree, domain: cmd.domain } } };
    case 'siteFilesUnpack':
      return { id, command: { $case: 'siteFilesUnpack', value: { tree: cmd.tree, domain: cmd.domain, replace: cmd.replace } } };
    case 'forgetPlatform':
      return {
        id,
        command: { $case: 'forgetPlatform', value: { platform: cmd.platform, tree: cmd.tree, pinnedImpl: cmd.pinnedImpl, removeTree: cmd.removeTree } },
      };
  }
}

function driftFromWire(d: wire.Drift | undefined): DriftInfo {
  return { changed: d?.changed ?? [], added: d?.added ?? [], removed: d?.removed ?? [], total: d?.total ?? 0 };
}

function conflictFromWire(c: wire.ConvergeConflict): ConflictInfo {
  return { path: c.path, wanted: c.wanted, userData: c.userData };
}

function resultFromWire(type: AgentCommand['type'], r: wire.CommandResult): unknown {
  if (type === 'ping') return null;
  if (type === 'converge' && r.result?.$case === 'converge') {
    const c = r.result.value;
    return { ...c, drift: driftFromWire(c.drift), conflicts: c.conflicts.map(conflictFromWire) } satisfies ConvergeReport;
  }
  if (type === 'treeStatus' && r.result?.$case === 'treeStatus') {
    const t = r.result.value;
    return {
      committedRootHash: t.committedRootHash,
      actualRootHash: t.actualRootHash,
      exists: t.exists,
      drift: driftFromWire(t.drift),
      conflicts: t.conflicts.map(conflictFromWire),
    } satisfies TreeStatusReport;
  }
  if (type === 'configurePlatform' && r.result?.$case === 'configurePlatform') {
    const c = r.result.value;
    return { ...c, fixed: [...c.fixed], problems: [...c.problems] } satisfies PlatformConfigReport;
  }
  if (type === 'dbCreate' && r.result?.$case === 'dbCreate') {
    const hosts = [...r.result.value.hosts];
    return { hosts, added: hosts, removed: [], siteHost: r.result.value.siteHost, sitePort: r.result.value.sitePort } satisfies DbGrantsReport;
  }
  if (type === 'dbGrants' && r.result?.$case === 'dbGrants') {
    const g = r.result.value;
    return { hosts: [...g.hosts], added: [...g.added], removed: [...g.removed], siteHost: g.siteHost, sitePort: g.sitePort } satisfies DbGrantsReport;
  }
  if ((type === 'dbDump' && r.result?.$case === 'dbDump') || (type === 'dbRestore' && r.result?.$case === 'dbRestore')) {
    return { bytes: r.result.value.bytes };
  }
  if (type === 'dbDrop' && r.result?.$case === 'dbDrop') {
    return { databaseExisted: r.result.value.databaseExisted, usersDropped: [...r.result.value.usersDropped] } satisfies DbDropReport;
  }
  if (type === 'configureSite' && r.result?.$case === 'configureSite') {
    const c = r.result.value;
    return { ...c, fixed: [...c.fixed], problems: [...c.problems] } satisfies SiteConfigReport;
  }
  if (type === 'acmeChallenge' && r.result?.$case === 'acmeChallenge') {
    return { path: r.result.value.path };
  }
  if (type === 'removeSite' && r.result?.$case === 'removeSite') {
    const c = r.result.value;
    return { ...c, deleted: [...c.deleted], problems: [...c.problems] } satisfies SiteRemoveReport;
  }
  if (type === 'installSite' && r.result?.$case === 'installSite') {
    const c = r.result.value;
    return { ran: c.ran, reason: c.reason, url: c.url, profile: c.profile } satisfies SiteInstallReport;
  }
  if (type === 'siteTool' && r.result?.$case === 'siteTool') {
    const c = r.result.value;
    const u = (x: wire.SiteUpdate): SiteUpdateInfo => ({ module: x.module, update: x.update, description: x.description });
    return { url: c.url, user: c.user, pending: c.pending.map(u), ran: c.ran.map(u) } satisfies SiteToolReport;
  }
  if (type === 'siteCron' && r.result?.$case === 'siteCron') {
    const c = r.result.value;
    return { method: c.method, status: c.status, message: c.message, ms: c.ms } satisfies SiteCronReport;
  }
  if (type === 'siteFilesPack' && r.result?.$case === 'siteFilesPack') {
    const c = r.result.value;
    return { bytes: c.bytes, entries: c.entries, skipped: [...c.skipped] } satisfies SiteFilesPackReport;
  }
  if (type === 'siteFilesUnpack' && r.result?.$case === 'siteFilesUnpack') {
    const c = r.result.value;
    return { bytes: c.bytes, entries: c.entries, replaced: [...c.replaced] } satisfies SiteFilesUnpackReport;
  }
  if (type === 'forgetPlatform' && r.result?.$case === 'forgetPlatform') {
    const c = r.result.value;
    return { ...c, kept: [...c.kept], problems: [...c.problems] } satisfies PlatformForgetReport;
  }
  if (type !== 'verifyServer' || r.result?.$case !== 'verifyServer') throw fail('INTERNAL', `agent answered ${type} with ${r.result?.$case ?? 'nothing'}`);
  const v = r.result.value;
  return {
    services: v.services.map((x) => ({ kind: x.kind, impl: x.impl, version: x.version })),
    roots: v.roots.map((x) => ({ ...x })),
    facts: v.facts ? factsFromWire(v.facts) : null,
  } satisfies VerifyReport;
}

/** Host facts from the wire. */
export function factsFromWire(f: wire.HostFacts | undefined): HostFactsInfo {
  return {
    hostname: f?.hostname ?? '',
    os: f?.os ?? '',
    arch: f?.arch ?? '',
    agentVersion: f?.agentVersion ?? '',
    roots: [...(f?.roots ?? [])],
    rootPrefix: f?.rootPrefix ?? '',
    cpus: f?.cpus ?? 0,
    memoryBytes: f?.memoryBytes ?? 0,
  };
}
