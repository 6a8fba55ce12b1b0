/**
 * The agent gateway: one session per connected agent (its Connect stream), presence from
 * heartbeats, and request/response commands matched by id. This is the edge of the Connect
 * handler: it converts wire messages to domain types and back.
 */
import { EventEmitter } from 'node:events';
import { randomUUID } from 'node:crypto';
import type { Readable, Writable } from 'node:stream';
import type { ServerDuplexStream } from '@grpc/grpc-js';
import {
  CAPABILITY_VERSION,
  COMMAND_CAPABILITY,
  HTTPS_CAPABILITY,
  REDIRECT_NAMES_CAPABILITY,
  fail,
  SpokeError,
  toServiceError,
  wire,
  isErrorCode,
  type AgentCommand,
  type AgentCommandResults,
  type AgentCommandType,
  type HostFactsInfo,
  type Logger,
} from '@spoke/shared';
import type { Namespace, Presence } from '../namespace/namespace.js';
import type { Clock } from '../types.js';
import { DumpTransfers, type DumpTransferHandle } from './dumps.js';
import { NO_METRICS, type MasterMetrics } from '../health/metrics.js';

/** Options of `call`. */
export interface CallOptions {
  /**
   * How long the agent may go without a word on the command — a progress message or its result —
   * before it fails with AGENT_TIMEOUT (default 60 s). Each progress message starts it again, so
   * a converge that keeps reporting over a slow link is not cut off at a fixed length.
   */
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
  /** The agent said something about the command: its time limit starts again. */
  heard(): void;
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
  private readonly metrics: MasterMetrics;
  private readonly sessions = new Map<string, Session>();
  /** Agents that were online when the master last stopped and have not said hello since. */
  private readonly returning = new Set<string>();
  /**
   * Heartbeats not yet written to the store (server → clock ms). Liveness is kept here and in the
   * sessions; the store gets every connected agent's last heartbeat in one transaction per
   * heartbeat interval (one write per heartbeat was 200 commits a second with 1,000 agents;
   * issue 20) and at each disconnect and shutdown.
   */
  private readonly unsaved = new Map<string, number>();
  private saveTimer: NodeJS.Timeout | null = null;
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
  constructor(deps: {
    ns: Namespace;
    log: Logger;
    clock: Clock;
    heartbeatIntervalMs: number;
    heartbeatTtlMs: number;
    reconnectGraceMs?: number;
    /** Heartbeat gaps. @default NO_METRICS */
    metrics?: MasterMetrics;
  }) {
    this.metrics = deps.metrics ?? NO_METRICS;
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

  /** The capability version a connected agent announced at hello (0: not connected or no hello yet). */
  capabilityOf(server: string): number {
    return this.sessions.get(server)?.capability ?? 0;
  }

  /** Milliseconds since a connected agent's last heartbeat; null when it is not connected. */
  heartbeatAgeMs(server: string): number | null {
    const s = this.sessions.get(server);
    return s ? Math.max(0, this.clock() - s.lastHeartbeatMs) : null;
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
        this.unsaved.delete(server);
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
    this.saveHeartbeats();
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

  /** Writes the heartbeats received since the last save, in one transaction. */
  saveHeartbeats(): void {
    if (this.saveTimer) clearTimeout(this.saveTimer);
    this.saveTimer = null;
    if (this.unsaved.size === 0) return;
    const seen = [...this.unsaved];
    this.unsaved.clear();
    try {
      this.ns.touchMany(seen);
    } catch (err) {
      this.log.error({ err, agents: seen.length }, 'cannot record heartbeats');
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
      case 'heartbeat': {
        const now = this.clock();
        this.metrics.heartbeat((now - s.lastHeartbeatMs) / 1000);
        s.lastHeartbeatMs = now;
        this.unsaved.set(s.server, now);
        if (!this.saveTimer) {
          this.saveTimer = setTimeout(() => this.saveHeartbeats(), this.heartbeatIntervalMs);
          this.saveTimer.unref();
        }
        return;
      }
      case 'progress': {
        const p = s.pending.get(e.value.id);
        p?.heard();
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
  async call<K extends AgentCommandType>(server: string, cmd: Extract<AgentCommand, { type: K }>, opts: CallOptions = {}): Promise<AgentCommandResults[K]> {
    if (!this.isOnline(server)) await this.awaitReconnect(server, { signal: opts.signal, log: opts.log });
    const s = this.sessions.get(server);
    if (!s || !this.isOnline(server)) {
      throw fail('AGENT_OFFLINE', `agent ${server} is offline (last seen: ${this.lastSeen(server)})`);
    }
    // A vhost with a certificate needs an agent that knows about it: an older one would drop
    // the certificate and serve the site over plain HTTP only.
    const needs = cmd.type === 'configureSite' ? configureSiteNeeds(cmd as Extract<AgentCommand, { type: 'configureSite' }>) : COMMAND_CAPABILITY[cmd.type];
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
      const expire = () => {
        s.pending.delete(id);
        opts.signal?.removeEventListener('abort', onAbort);
        reject(fail('AGENT_TIMEOUT', `agent ${server} sent no word on ${cmd.type} (no progress, no result) for ${Math.round(timeoutMs / 1000)}s`));
      };
      let timer = setTimeout(expire, timeoutMs);
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
        heard: () => {
          clearTimeout(timer);
          timer = setTimeout(expire, timeoutMs);
        },
      });
      s.call.write(wire.commandToWire(id, cmd));
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
    return wire.resultFromWire(cmd.type as K, result);
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
  return seen
    .filter((s) => (s.lastSeenMs as number) >= newest - 2 * heartbeatTtlMs)
    .map((s) => s.name)
    .sort();
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

/** What a ConfigureSite needs of its agent: a certificate, redirect-only names (an older agent would drop either). */
function configureSiteNeeds(cmd: Extract<AgentCommand, { type: 'configureSite' }>): number {
  return Math.max(COMMAND_CAPABILITY.configureSite, cmd.tls ? HTTPS_CAPABILITY : 0, cmd.redirectNames?.length ? REDIRECT_NAMES_CAPABILITY : 0);
}
