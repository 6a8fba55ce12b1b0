/**
 * The agent's link to the master: dial with mTLS, open the Connect stream, say hello, send
 * heartbeats, run commands and reply by id, and reconnect with capped, jittered backoff.
 * This is the agent's wire edge: commands are converted to domain calls here.
 */
import { Readable } from 'node:stream';
import { status as GrpcStatus, type ClientDuplexStream, type ServiceError } from '@grpc/grpc-js';
import {
  CAPABILITY_VERSION,
  channelOptions,
  clientTls,
  fromServiceError,
  grpcTarget,
  isSpokeError,
  wire,
  type AgentCommand,
  type AgentCommandResults,
  type AgentCommandType,
} from '@spoke/shared';
import { commandHandlers, hostFacts, UNKNOWN_COMMAND, type CommandContext, type CommandDeps, type CommandHandler, type CommandHandlers } from './handlers.js';
import { LinkLiveness, type LivenessOptions } from './liveness.js';
import { NO_AGENT_METRICS, type AgentMetrics } from './metrics.js';

/** Link state: idle → connecting → connected → (backoff → connecting)* → stopped. */
export type LinkState = 'idle' | 'connecting' | 'connected' | 'backoff' | 'stopped';

/** What the connection needs from the rest of the agent (and its command handlers). */
export interface ConnectionDeps extends CommandDeps {
  master: string;
  identity: { caPem: string; certPem: string; keyPem: string };
  backoffInitialMs: number;
  backoffMaxMs: number;
  /** How often to re-observe held trees for drift. @default 60000 */
  driftIntervalMs: number;
  /** Commands answered and converge bytes. @default NO_AGENT_METRICS */
  metrics?: AgentMetrics;
  /** The capability version announced at hello. @default CAPABILITY_VERSION */
  capabilityVersion?: number;
  /** When silence from the master means a dead connection (see liveness.ts). */
  liveness?: LivenessOptions;
  /** How long the bulk connection stays open with nothing on it. @default BULK_IDLE_MS */
  bulkIdleMs?: number;
}

/**
 * The bulk connection is closed after this long with no call on it (the next transfer dials it
 * again, one handshake): a thousand idle agents then hold one connection each on the master,
 * not two (~52 KiB of the master's memory per connection, bench/rss-idle.ts).
 */
export const BULK_IDLE_MS = 60_000;

/** Computes the next reconnect delay: exponential, capped, with full jitter. */
export function backoffDelay(attempt: number, initialMs: number, maxMs: number, rand: () => number = Math.random): number {
  const ceiling = Math.min(maxMs, initialMs * 2 ** Math.min(attempt, 20));
  return Math.round(ceiling / 2 + (rand() * ceiling) / 2);
}

/** The agent's connection loop. */
export class MasterConnection {
  private readonly deps: ConnectionDeps;
  /** The control connection: Connect (commands, progress, heartbeats) and the liveness probe. */
  private client: wire.AgentClient;
  /**
   * The bulk connection: trees (GetManifest, FetchBlobs, StreamTree) and dumps. Separate, so a
   * transfer never holds up the control messages: Node's HTTP/2 stops reading a connection while
   * a write to it is in progress, and the master's write of a window of blob data to an agent
   * behind a slow link lasts seconds (17 s for 16 MiB at 8 Mbit/s) — on one connection the
   * master read no heartbeat, no result, no ping for that long.
   */
  private bulk: wire.AgentClient;
  private readonly handlers: CommandHandlers;
  /** Judge each connection by what is heard on it, not by one ping's answer (see liveness.ts). */
  private readonly liveness: LinkLiveness;
  private readonly bulkLiveness: LinkLiveness;
  private livenessTimer: NodeJS.Timeout | null = null;
  private stream: ClientDuplexStream<wire.AgentEvent, wire.MasterCommand> | null = null;
  private heartbeat: NodeJS.Timeout | null = null;
  private drift: NodeJS.Timeout | null = null;
  private driftRunning = false;
  private retry: NodeJS.Timeout | null = null;
  /** The run loop's own handle: ref'd, so the process never ends while the link runs (see start). */
  private keepAlive: NodeJS.Timeout | null = null;
  private attempt = 0;
  private state: LinkState = 'idle';
  /** Called on every state change (tests and logs). */
  onState: (s: LinkState, info?: { code?: number; details?: string }) => void = () => undefined;
  /** Set when the master refused our identity: the agent stops retrying. */
  fatal: { code: number; details: string } | null = null;

  constructor(deps: ConnectionDeps) {
    this.deps = deps;
    this.liveness = new LinkLiveness({
      ...deps.liveness,
      probe: () => this.probe(this.client),
      onDead: (silentMs) => this.replaceChannels(silentMs),
    });
    this.bulkLiveness = new LinkLiveness({
      ...deps.liveness,
      probe: () => this.probe(this.bulk),
      onDead: (silentMs) => this.replaceBulk(silentMs),
    });
    this.client = this.newClient(this.liveness);
    this.bulk = this.newBulkClient();
    deps.trees.setClient(this.bulk);
    this.handlers = commandHandlers(deps);
  }

  /**
   * A client on a channel of its own: no grpc-js keepalive (liveness.ts judges the connection),
   * every call through the liveness interceptor, and its own subchannel pool, so closing a channel
   * whose connection is dead ends that connection whatever else shares the process's pool.
   */
  private newClient(liveness: LinkLiveness, extra: Record<string, number> = {}): wire.AgentClient {
    return new wire.AgentClient(grpcTarget(this.deps.master), clientTls(this.deps.identity.caPem, this.deps.identity.certPem, this.deps.identity.keyPem), {
      ...channelOptions({
        'grpc.initial_reconnect_backoff_ms': this.deps.backoffInitialMs,
        'grpc.max_reconnect_backoff_ms': this.deps.backoffMaxMs,
        'grpc.keepalive_time_ms': -1,
        'grpc.use_local_subchannel_pool': 1,
        ...extra,
      }),
      interceptors: [liveness.interceptor],
    });
  }

  /** The bulk client: its connection closed after BULK_IDLE_MS without a call. */
  private newBulkClient(): wire.AgentClient {
    return this.newClient(this.bulkLiveness, { 'grpc.client_idle_timeout_ms': this.deps.bulkIdleMs ?? BULK_IDLE_MS });
  }

  /** Asks the master for an answer (a gRPC health check; any answer, even UNIMPLEMENTED, is one). */
  private probe(client: wire.AgentClient): Promise<void> {
    return new Promise((resolve) => {
      client.makeUnaryRequest(
        '/grpc.health.v1.Health/Check',
        (b: Buffer) => b,
        (b: Buffer) => b,
        Buffer.alloc(0), // HealthCheckRequest{service: ""}: the server as a whole
        () => resolve(),
      );
    });
  }

  /**
   * The control connection is dead (nothing heard for the liveness limit; its calls were
   * cancelled): new channels — the bulk one too, the same network carries it — so the next dial
   * makes new connections.
   */
  private replaceChannels(silentMs: number): void {
    this.deps.log.warn(
      { silentMs, deadAfterMs: this.liveness.deadAfterMs },
      'nothing heard from the master (not even an answer to a health check): the connection is dead; reconnecting',
    );
    const old = this.client;
    this.client = this.newClient(this.liveness);
    this.stream?.cancel();
    old.close();
    this.bulkLiveness.cancelOpen('the connection to the master is dead');
    this.newBulk();
  }

  /** The bulk connection is dead with transfers open on it (they were cancelled): a new channel for the next. */
  private replaceBulk(silentMs: number): void {
    this.deps.log.warn(
      { silentMs, deadAfterMs: this.bulkLiveness.deadAfterMs },
      'nothing heard on the transfer connection: it is dead; the next transfer dials a new one',
    );
    this.newBulk();
  }

  /** A new bulk channel in place of the old, which is closed. */
  private newBulk(): void {
    const old = this.bulk;
    this.bulk = this.newBulkClient();
    this.deps.trees.setClient(this.bulk);
    old.close();
  }

  /** Current link state. */
  get linkState(): LinkState {
    return this.state;
  }

  private setState(s: LinkState, info?: { code?: number; details?: string }): void {
    if (this.state === s) return;
    this.state = s;
    this.deps.log.debug({ state: s, ...info }, 'link state');
    this.onState(s, info);
  }

  /**
   * Starts dialing and the periodic drift check; returns at once. The link then holds a ref'd
   * timer until `stop`: grpc-js unrefs its sockets whenever no call is open and our heartbeat and
   * drift timers are unref'd, so without it the event loop could empty between two states and the
   * process end with status 0 and no word. The same timer is a watchdog: a link that is neither
   * connected, dialing nor waiting to retry dials again.
   */
  start(): void {
    this.dial();
    this.drift = setInterval(() => void this.driftCheck(), this.deps.driftIntervalMs);
    this.drift.unref();
    this.keepAlive = setInterval(() => this.ensureDialing('watchdog'), Math.max(1000, this.deps.backoffMaxMs));
    // judged only while a Connect call is open (dialing has grpc-js's own connect timeouts)
    this.livenessTimer = setInterval(
      () => {
        if (this.stream !== null) this.liveness.check();
        // the bulk connection only while something is open on it (idle, silence means nothing)
        if (this.bulkLiveness.openCalls() > 0) this.bulkLiveness.check();
        else this.bulkLiveness.reset();
      },
      Math.max(10, Math.min(5000, this.liveness.probeAfterMs / 4)),
    );
    this.livenessTimer.unref();
  }

  /**
   * Dials again when the link has no stream and no retry pending (it would otherwise stay down
   * for good); `why` is logged. Called by the watchdog and by the daemon when its event loop
   * emptied. Returns whether it dialed.
   */
  ensureDialing(why: string): boolean {
    if (this.state === 'stopped' || this.stream !== null || this.retry !== null) return false;
    this.deps.log.warn({ why, state: this.state }, 'the link to the master was idle with no retry pending; dialing again');
    this.dial();
    return true;
  }

  /** Re-observes held trees; reports new observed hashes to the master when they changed. */
  private async driftCheck(): Promise<void> {
    if (this.driftRunning) return; // never overlap
    this.driftRunning = true;
    try {
      if (await this.deps.trees.checkDrift()) {
        const stream = this.stream;
        if (stream && this.state === 'connected') {
          stream.write({ event: { $case: 'observed', value: { observed: this.deps.trees.observed() } } });
        }
      }
    } catch (e) {
      this.deps.log.warn({ err: (e as Error).message }, 'drift check failed');
    } finally {
      this.driftRunning = false;
    }
  }

  /** Stops for good. */
  stop(): void {
    this.setState('stopped');
    if (this.retry) clearTimeout(this.retry);
    this.retry = null;
    if (this.drift) clearInterval(this.drift);
    if (this.keepAlive) clearInterval(this.keepAlive);
    this.keepAlive = null;
    if (this.livenessTimer) clearInterval(this.livenessTimer);
    this.livenessTimer = null;
    this.stopHeartbeat();
    this.stream?.cancel();
    this.stream = null;
    this.client.close();
    this.bulk.close();
  }

  private dial(): void {
    if (this.state === 'stopped') return;
    this.setState('connecting');
    let stream: ClientDuplexStream<wire.AgentEvent, wire.MasterCommand>;
    try {
      stream = this.client.connect();
    } catch (e) {
      // Never seen, but a throw here must not leave the link with nothing pending.
      this.deps.log.error({ err: e }, 'dialing the master failed');
      this.retryLater(GrpcStatus.UNAVAILABLE, (e as Error).message, false);
      return;
    }
    this.stream = stream;
    this.liveness.reset();
    let welcomed = false;
    stream.on('data', (cmd: wire.MasterCommand) => {
      if (cmd.command?.$case === 'welcome') {
        welcomed = true;
        this.attempt = 0;
        this.onWelcome(stream, cmd.command.value).catch((e: unknown) => {
          // A link without a hello is never online on the master: start over.
          this.deps.log.error({ err: e }, 'hello failed; reconnecting');
          if (this.stream === stream) stream.cancel();
        });
        return;
      }
      void this.onCommand(stream, cmd);
    });
    stream.on('error', (e: Error & { code?: number; details?: string }) => {
      this.lost(stream, welcomed, e.code, e.details ?? e.message);
    });
    stream.on('end', () => this.lost(stream, welcomed, GrpcStatus.UNAVAILABLE, 'stream ended'));
  }

  private lost(stream: ClientDuplexStream<wire.AgentEvent, wire.MasterCommand>, welcomed: boolean, code?: number, details?: string): void {
    if (this.stream !== stream || this.state === 'stopped') return;
    this.stream = null;
    this.stopHeartbeat();
    // Identity refused: retrying cannot help until an operator enrolls this host again.
    if (code === GrpcStatus.PERMISSION_DENIED || code === GrpcStatus.UNAUTHENTICATED) {
      this.fatal = { code, details: details ?? '' };
      this.deps.log.error({ code, details }, 'the master refused this agent; enroll again with a new token');
      if (this.keepAlive) clearInterval(this.keepAlive);
      this.keepAlive = null;
      this.setState('stopped', { code, details });
      return;
    }
    this.retryLater(code, details, welcomed);
  }

  /** Waits a backoff delay, then dials again. */
  private retryLater(code: number | undefined, details: string | undefined, welcomed: boolean): void {
    const delay = backoffDelay(this.attempt++, this.deps.backoffInitialMs, this.deps.backoffMaxMs);
    this.deps.log.warn({ code, details, retryInMs: delay, welcomed }, 'connection to master lost');
    this.setState('backoff', { code, details });
    if (this.retry) clearTimeout(this.retry);
    this.retry = setTimeout(() => {
      this.retry = null;
      this.dial();
    }, delay);
  }

  private async onWelcome(stream: ClientDuplexStream<wire.AgentEvent, wire.MasterCommand>, w: wire.Welcome): Promise<void> {
    const services = await this.deps.detect();
    if (this.stream !== stream) return;
    stream.write({
      event: {
        $case: 'hello',
        value: {
          capabilityVersion: this.deps.capabilityVersion ?? CAPABILITY_VERSION,
          facts: hostFacts(this.deps.roots, this.deps.rootMap),
          services: services.map((s) => ({ kind: s.kind, impl: s.impl, version: s.version, binary: s.binary })),
          observed: this.deps.trees.observed(),
        },
      },
    });
    this.deps.log.info({ as: w.server, cluster: w.cluster || undefined }, 'connected to master');
    this.setState('connected');
    this.stopHeartbeat();
    const every = Math.max(100, w.heartbeatIntervalMs || 5000);
    this.heartbeat = setInterval(() => {
      if (this.stream === stream) stream.write({ event: { $case: 'heartbeat', value: { tsMs: Date.now() } } });
    }, every);
    this.heartbeat.unref();
  }

  private stopHeartbeat(): void {
    if (this.heartbeat) clearInterval(this.heartbeat);
    this.heartbeat = null;
  }

  /**
   * Uploads a dump for command `id` with PutDump. A dump that fails here (the tool failed, or
   * its output is incomplete) cancels the upload and is reported with its own code; the master
   * checks completeness again on arrival.
   */
  private uploadDump(id: string, dump: Readable, rpc: 'putDump' | 'putFiles' = 'putDump'): Promise<number> {
    return new Promise((resolve, reject) => {
      let local: Error | null = null;
      const call = this.bulk[rpc]((err: ServiceError | null, res?: wire.PutDumpResult) => {
        if (local) return reject(local);
        if (err) {
          dump.destroy(); // stops the dump tool
          return reject(fromServiceError(err));
        }
        resolve(res?.bytes ?? 0);
      });
      let first = true;
      dump.on('data', (chunk: Buffer) => {
        const more = call.write({ commandId: first ? id : '', data: chunk });
        first = false;
        if (!more) {
          dump.pause();
          call.once('drain', () => dump.resume());
        }
      });
      dump.once('end', () => {
        if (first) call.write({ commandId: id, data: Buffer.alloc(0) }); // an empty dump: the master refuses it by name
        call.end();
      });
      dump.once('error', (e) => {
        local = e;
        call.cancel();
      });
    });
  }

  /** The dump (or with GetFiles, the files tar) for command `id`, downloaded as a byte stream. */
  private downloadDump(id: string, rpc: 'getDump' | 'getFiles' = 'getDump'): Readable {
    const call = this.bulk[rpc]({ commandId: id });
    const out = new Readable({ read: () => call.resume() });
    call.on('data', (c: wire.DumpChunk) => {
      if (!out.push(c.data)) call.pause();
    });
    call.once('end', () => out.push(null));
    call.on('error', (e) => out.destroy(fromServiceError(e)));
    out.once('close', () => {
      if (!out.readableEnded) call.cancel();
    });
    return out;
  }

  private async onCommand(stream: ClientDuplexStream<wire.AgentEvent, wire.MasterCommand>, msg: wire.MasterCommand): Promise<void> {
    const started = Date.now();
    const metrics = this.deps.metrics ?? NO_AGENT_METRICS;
    const reply = (r: Omit<wire.CommandResult, 'id'>) => {
      metrics.command(msg.command?.$case ?? 'unknown', r.ok ? 'ok' : r.errorCode || 'INTERNAL', (Date.now() - started) / 1000);
      if (this.stream === stream) stream.write({ event: { $case: 'result', value: { id: msg.id, ...r } } });
    };
    let cmd: AgentCommand | undefined;
    try {
      cmd = wire.commandFromWire(msg);
      if (!cmd) return reply({ ok: false, errorCode: 'INVALID_ARGUMENT', errorMessage: UNKNOWN_COMMAND, result: undefined });
      const value = await this.run(cmd, msg.id, stream);
      if (cmd.type === 'converge') {
        const c = value as AgentCommandResults['converge'];
        metrics.converged(c.bytesFetched, c.bytesReused);
      }
      return reply({ ok: true, errorCode: '', errorMessage: '', result: wire.resultToWire(cmd.type, value) });
    } catch (e) {
      // A SpokeError is a condition the master reports to the operator with its code (no web
      // server here, a full disk…): one warning line. Anything else is a bug: its stack.
      const command = cmd?.type ?? msg.command?.$case;
      if (isSpokeError(e) && e.code !== 'INTERNAL') this.deps.log.warn({ code: e.code, error: e.message, command }, 'command failed');
      else this.deps.log.error({ err: e, command }, 'command failed');
      reply({
        ok: false,
        errorCode: isSpokeError(e) ? e.code : 'INTERNAL',
        errorMessage: e instanceof Error ? e.message : String(e),
        result: undefined,
      });
    }
  }

  /** Runs a command through its handler, with this command's progress and transfers. */
  private run(cmd: AgentCommand, id: string, stream: ClientDuplexStream<wire.AgentEvent, wire.MasterCommand>): Promise<AgentCommandResults[AgentCommandType]> {
    const ctx: CommandContext = {
      progress: (p) => {
        if (this.stream === stream) stream.write({ event: { $case: 'progress', value: { id, ...p } } });
      },
      upload: (data, channel) => this.uploadDump(id, data, channel === 'dump' ? 'putDump' : 'putFiles'),
      download: (channel) => this.downloadDump(id, channel === 'dump' ? 'getDump' : 'getFiles'),
    };
    const { type, ...fields } = cmd;
    // The union is correlated by `type`; TypeScript cannot follow that through the lookup.
    const handler = this.handlers[type] as CommandHandler<AgentCommandType>;
    return handler(fields as never, ctx);
  }
}
