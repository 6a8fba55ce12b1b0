/**
 * The agent's link to the master: dial with mTLS, open the Connect stream, say hello, send
 * heartbeats, run commands and reply by id, and reconnect with capped, jittered backoff.
 * This is the agent's wire edge: commands are converted to domain calls here.
 */
import os from 'node:os';
import { Readable } from 'node:stream';
import { status as GrpcStatus, type ClientDuplexStream, type ServiceError } from '@grpc/grpc-js';
import {
  CAPABILITY_VERSION,
  SPOKE_VERSION,
  channelOptions,
  clientTls,
  fail,
  fromServiceError,
  grpcTarget,
  isSpokeError,
  wire,
  type Logger,
  type RootMap,
} from '@spoke/shared';
import { checkRoots } from './checks.js';
import type { DetectedService } from './detect.js';
import type { AgentTrees } from './sync.js';
import type { SiteTlsStore } from './tls/sitetls.js';
import type { WebConfig } from './webconfig.js';
import type { SiteInstaller } from './siteinstall.js';
import type { SitePhp, SiteToolOp } from './php/sitephp.js';
import type { SiteCron } from './sitecron.js';
import type { SiteDatabases } from './db/index.js';
import type { SiteFileTransfer } from './sitetransfer.js';
import { forgetPlatform } from './forget.js';

/** Link state: idle → connecting → connected → (backoff → connecting)* → stopped. */
export type LinkState = 'idle' | 'connecting' | 'connected' | 'backoff' | 'stopped';

/** What the connection needs from the rest of the agent. */
export interface ConnectionDeps {
  log: Logger;
  master: string;
  identity: { caPem: string; certPem: string; keyPem: string };
  roots: string[];
  rootMap: RootMap;
  detect: () => Promise<DetectedService[]>;
  backoffInitialMs: number;
  backoffMaxMs: number;
  /** Tree management (converge, status, observed hashes). */
  trees: AgentTrees;
  /** Web server config for platforms and sites. */
  web: Pick<WebConfig, 'configurePlatform' | 'configureSite' | 'removeSite' | 'removePlatform' | 'settingsToWebGroup'>;
  /** Site installers (WordPress over HTTP). */
  installer: Pick<SiteInstaller, 'install'>;
  /** Spoke's site tool (one-time login links, database updates). */
  sitePhp: Pick<SitePhp, 'run'>;
  /** Sites' cron runs (capability 10). */
  cron: Pick<SiteCron, 'run'>;
  /** Site databases (agent.json `db`); null when this agent manages no database server. */
  db?: Pick<SiteDatabases, 'createSiteDb' | 'dropSiteDb' | 'setGrants' | 'dumpSiteDb' | 'restoreSiteDb' | 'siteAddress'> | null;
  /** ACME HTTP-01 challenge files (capability 12); absent: AcmeChallenge fails. */
  tls?: Pick<SiteTlsStore, 'challenge'> | null;
  /** Sites' user files to and from the master (capability 6); absent: those commands fail. */
  siteFiles?: Pick<SiteFileTransfer, 'pack' | 'unpack'> | null;
  /** How often to re-observe held trees for drift. @default 60000 */
  driftIntervalMs: number;
}

/** Computes the next reconnect delay: exponential, capped, with full jitter. */
export function backoffDelay(attempt: number, initialMs: number, maxMs: number, rand: () => number = Math.random): number {
  const ceiling = Math.min(maxMs, initialMs * 2 ** Math.min(attempt, 20));
  return Math.round(ceiling / 2 + (rand() * ceiling) / 2);
}

/** The agent's connection loop. */
export class MasterConnection {
  private readonly deps: ConnectionDeps;
  private readonly client: wire.AgentClient;
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
    this.client = new wire.AgentClient(
      grpcTarget(deps.master),
      clientTls(deps.identity.caPem, deps.identity.certPem, deps.identity.keyPem),
      channelOptions({ 'grpc.initial_reconnect_backoff_ms': deps.backoffInitialMs, 'grpc.max_reconnect_backoff_ms': deps.backoffMaxMs }),
    );
    deps.trees.setClient(this.client);
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
    this.stopHeartbeat();
    this.stream?.cancel();
    this.stream = null;
    this.client.close();
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
          capabilityVersion: CAPABILITY_VERSION,
          facts: this.facts(),
          services: services.map((s) => ({ kind: s.kind, impl: s.impl, version: s.version, binary: s.binary })),
          observed: this.deps.trees.observed(),
        },
      },
    });
    this.deps.log.info({ server: w.server, cluster: w.cluster || undefined }, 'connected to master');
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

  private facts(): wire.HostFacts {
    return {
      hostname: os.hostname(),
      os: `${os.type()} ${os.release()}`,
      arch: os.arch(),
      agentVersion: SPOKE_VERSION,
      roots: this.deps.roots,
      rootPrefix: this.deps.rootMap.prefix,
      cpus: os.cpus().length,
      memoryBytes: os.totalmem(),
    };
  }

  /** @throws SpokeError INTERNAL */
  private siteFiles(): NonNullable<ConnectionDeps['siteFiles']> {
    if (!this.deps.siteFiles) throw fail('INTERNAL', 'this agent was started without site file transfers');
    return this.deps.siteFiles;
  }

  /** @throws SpokeError DB_NOT_CONFIGURED */
  private siteDbs(): NonNullable<ConnectionDeps['db']> {
    if (!this.deps.db) throw fail('DB_NOT_CONFIGURED', 'this agent manages no database server: add a db section to its agent.json and restart it');
    return this.deps.db;
  }

  /**
   * Uploads a dump for command `id` with PutDump. A dump that fails here (the tool failed, or
   * its output is incomplete) cancels the upload and is reported with its own code; the master
   * checks completeness again on arrival.
   */
  private uploadDump(id: string, dump: Readable, rpc: 'putDump' | 'putFiles' = 'putDump'): Promise<number> {
    return new Promise((resolve, reject) => {
      let local: Error | null = null;
      const call = this.client[rpc]((err: ServiceError | null, res?: wire.PutDumpResult) => {
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
    const call = this.client[rpc]({ commandId: id });
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

  private async onCommand(stream: ClientDuplexStream<wire.AgentEvent, wire.MasterCommand>, cmd: wire.MasterCommand): Promise<void> {
    const reply = (r: Omit<wire.CommandResult, 'id'>) => {
      if (this.stream === stream) stream.write({ event: { $case: 'result', value: { id: cmd.id, ...r } } });
    };
    try {
      switch (cmd.command?.$case) {
        case 'ping':
          return reply({ ok: true, errorCode: '', errorMessage: '', result: { $case: 'pong', value: {} } });
        case 'verifyServer': {
          const [services, roots] = await Promise.all([this.deps.detect(), checkRoots(this.deps.roots, this.deps.rootMap)]);
          return reply({
            ok: true,
            errorCode: '',
            errorMessage: '',
            result: {
              $case: 'verifyServer',
              value: {
                services: services.map((s) => ({ kind: s.kind, impl: s.impl, version: s.version, binary: s.binary })),
                roots,
                facts: this.facts(),
              },
            },
          });
        }
        case 'converge': {
          const c = cmd.command.value;
          const progress = (p: { message: string; done: number; total: number }) => {
            if (this.stream === stream) stream.write({ event: { $case: 'progress', value: { id: cmd.id, ...p } } });
          };
          const r = await this.deps.trees.converge(c, progress);
          if (c.webGroupFiles.length) {
            const g = await this.deps.web.settingsToWebGroup(c.tree, c.webGroupFiles);
            if (g.fixed.length) this.deps.log.info({ tree: c.tree, fixed: g.fixed }, 'settings files given to the web group');
            for (const problem of g.problems) this.deps.log.warn({ tree: c.tree, problem }, 'settings file');
          }
          return reply({ ok: true, errorCode: '', errorMessage: '', result: { $case: 'converge', value: r } });
        }
        case 'treeStatus': {
          const c = cmd.command.value;
          const r = await this.deps.trees.status(c.tree, c.excludes);
          return reply({ ok: true, errorCode: '', errorMessage: '', result: { $case: 'treeStatus', value: r } });
        }
        case 'configurePlatform': {
          const c = cmd.command.value;
          const r = await this.deps.web.configurePlatform({ platform: c.platform, tree: c.tree, kind: c.kind, pinnedImpl: c.pinnedImpl });
          return reply({ ok: true, errorCode: '', errorMessage: '', result: { $case: 'configurePlatform', value: r } });
        }
        case 'configureSite': {
          const c = cmd.command.value;
          const r = await this.deps.web.configureSite({
            domain: c.domain,
            platform: c.platform,
            tree: c.tree,
            kind: c.kind,
            aliases: c.aliases,
            redirectAliases: c.redirectAliases,
            enabled: c.enabled,
            webGroupFiles: c.webGroupFiles,
            pinnedImpl: c.pinnedImpl,
            tls: c.tls ? { certPem: c.tls.certPem, keyPem: c.tls.keyPem, redirect: c.tls.redirect, hsts: c.tls.hsts } : null,
          });
          return reply({ ok: true, errorCode: '', errorMessage: '', result: { $case: 'configureSite', value: r } });
        }
        case 'acmeChallenge': {
          const c = cmd.command.value;
          if (!this.deps.tls) throw fail('INTERNAL', 'this agent has no challenge store');
          const path = this.deps.tls.challenge(c.token, c.keyAuthorization, c.remove);
          return reply({ ok: true, errorCode: '', errorMessage: '', result: { $case: 'acmeChallenge', value: { path } } });
        }
        case 'removeSite': {
          const c = cmd.command.value;
          const r = await this.deps.web.removeSite({ domain: c.domain, tree: c.tree, deleteFiles: c.deleteFiles, pinnedImpl: c.pinnedImpl });
          return reply({ ok: true, errorCode: '', errorMessage: '', result: { $case: 'removeSite', value: r } });
        }
        case 'forgetPlatform': {
          const c = cmd.command.value;
          const r = await forgetPlatform(
            { web: this.deps.web, trees: this.deps.trees },
            { platform: c.platform, tree: c.tree, pinnedImpl: c.pinnedImpl, removeTree: c.removeTree },
          );
          return reply({ ok: true, errorCode: '', errorMessage: '', result: { $case: 'forgetPlatform', value: r } });
        }
        case 'installSite': {
          const c = cmd.command.value;
          const r = await this.deps.installer.install({
            domain: c.domain,
            kind: c.kind,
            title: c.title,
            adminUser: c.adminUser,
            adminEmail: c.adminEmail,
            adminPassword: c.adminPassword,
            tree: c.tree,
            profile: c.profile,
            locale: c.locale,
          });
          return reply({ ok: true, errorCode: '', errorMessage: '', result: { $case: 'installSite', value: r } });
        }
        case 'siteTool': {
          const c = cmd.command.value;
          const r = await runSiteTool(this.deps.sitePhp, c);
          return reply({ ok: true, errorCode: '', errorMessage: '', result: { $case: 'siteTool', value: r } });
        }
        case 'siteCron': {
          const c = cmd.command.value;
          const r = await this.deps.cron.run({ tree: c.tree, domain: c.domain, kind: c.kind });
          return reply({ ok: true, errorCode: '', errorMessage: '', result: { $case: 'siteCron', value: r } });
        }
        case 'dbCreate': {
          const c = cmd.command.value;
          const dbs = this.siteDbs();
          const r = await dbs.createSiteDb({ database: c.database, user: c.user, password: c.password, hosts: c.hosts });
          const at = dbs.siteAddress();
          return reply({ ok: true, errorCode: '', errorMessage: '', result: { $case: 'dbCreate', value: { hosts: r.hosts, siteHost: at.host, sitePort: at.port } } });
        }
        case 'dbDrop': {
          const c = cmd.command.value;
          const r = await this.siteDbs().dropSiteDb({ database: c.database, user: c.user, hosts: c.hosts });
          return reply({ ok: true, errorCode: '', errorMessage: '', result: { $case: 'dbDrop', value: r } });
        }
        case 'dbGrants': {
          const c = cmd.command.value;
          const dbs = this.siteDbs();
          const r = await dbs.setGrants({ database: c.database, user: c.user, password: c.password, hosts: c.hosts });
          const at = dbs.siteAddress();
          return reply({ ok: true, errorCode: '', errorMessage: '', result: { $case: 'dbGrants', value: { hosts: r.hosts, added: r.added, removed: r.removed, siteHost: at.host, sitePort: at.port } } });
        }
        case 'dbDump': {
          const dump = await this.siteDbs().dumpSiteDb(cmd.command.value.database);
          const bytes = await this.uploadDump(cmd.id, dump);
          return reply({ ok: true, errorCode: '', errorMessage: '', result: { $case: 'dbDump', value: { bytes } } });
        }
        case 'dbRestore': {
          const dbs = this.siteDbs();
          const download = this.downloadDump(cmd.id);
          const r = await dbs.restoreSiteDb(cmd.command.value.database, download).finally(() => download.destroy());
          return reply({ ok: true, errorCode: '', errorMessage: '', result: { $case: 'dbRestore', value: { bytes: r.bytes } } });
        }
        case 'siteFilesPack': {
          const c = cmd.command.value;
          const packed = await this.siteFiles().pack(c.tree, c.domain);
          const bytes = await this.uploadDump(cmd.id, packed.stream, 'putFiles');
          return reply({
            ok: true,
            errorCode: '',
            errorMessage: '',
            result: { $case: 'siteFilesPack', value: { bytes, entries: packed.entries, skipped: packed.skipped } },
          });
        }
        case 'siteFilesUnpack': {
          const c = cmd.command.value;
          const download = this.downloadDump(cmd.id, 'getFiles');
          const r = await this.siteFiles()
            .unpack(c.tree, c.domain, c.replace, download)
            .finally(() => download.destroy());
          return reply({
            ok: true,
            errorCode: '',
            errorMessage: '',
            result: { $case: 'siteFilesUnpack', value: { bytes: r.bytes, entries: r.entries, replaced: r.replaced } },
          });
        }
        default:
          return reply({
            ok: false,
            errorCode: 'INVALID_ARGUMENT',
            errorMessage: `this agent (capability ${CAPABILITY_VERSION}) does not know that command; upgrade it`,
            result: undefined,
          });
      }
    } catch (e) {
      // A SpokeError is a condition the master reports to the operator with its code (no web
      // server here, a full disk…): one warning line. Anything else is a bug: its stack.
      if (isSpokeError(e) && e.code !== 'INTERNAL') this.deps.log.warn({ code: e.code, msg: e.message, command: cmd.command?.$case }, 'command failed');
      else this.deps.log.error({ err: e, command: cmd.command?.$case }, 'command failed');
      reply({
        ok: false,
        errorCode: isSpokeError(e) ? e.code : 'INTERNAL',
        errorMessage: e instanceof Error ? e.message : String(e),
        result: undefined,
      });
    }
  }
}

const SITE_TOOL_OPS: Partial<Record<wire.SiteToolOp, SiteToolOp>> = {
  [wire.SiteToolOp.SITE_TOOL_OP_LOGIN_URL]: 'loginUrl',
  [wire.SiteToolOp.SITE_TOOL_OP_UPDATES]: 'updates',
  [wire.SiteToolOp.SITE_TOOL_OP_UPDATE]: 'update',
};

/** Runs a SiteToolCommand: the wire op to the tool's, its answer back to the wire. */
async function runSiteTool(php: Pick<SitePhp, 'run'>, c: wire.SiteToolCommand): Promise<wire.SiteToolResult> {
  const op = SITE_TOOL_OPS[c.op];
  if (!op) throw fail('INVALID_ARGUMENT', `unknown site tool op ${c.op}`);
  const params: Record<string, unknown> = {};
  if (op === 'loginUrl' && c.kind === 'wordpress') {
    if (!/^[0-9a-f]{64}$/.test(c.tokenHash)) throw fail('INVALID_ARGUMENT', 'a WordPress login link needs the sha256 of its token');
    params.token = c.tokenHash;
    params.ttl = Math.max(60, Math.min(Number(c.ttlSeconds) || 900, 86_400));
  }
  const a = await php.run(op, { tree: c.tree, domain: c.domain, kind: c.kind }, params, { timeoutMs: op === 'update' ? 30 * 60_000 : 5 * 60_000 });
  const updates = (v: unknown): wire.SiteUpdate[] =>
    Array.isArray(v) ? v.map((x: Record<string, unknown>) => ({ module: String(x.module ?? ''), update: String(x.update ?? ''), description: String(x.description ?? '') })) : [];
  return { url: String(a.url ?? ''), user: String(a.user ?? ''), pending: updates(a.pending), ran: updates(a.ran) };
}
