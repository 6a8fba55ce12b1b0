/**
 * The agent simulator (issue 20): many simulated agents in one process, each speaking the real
 * agent protocol to a real master over real mTLS. A test and benchmark tool beside the real
 * agent (`spoke-agent`), never a replacement for it in the end-to-end tests.
 *
 * What is real: enrollment (the master's CA pinned from the token's fingerprint, a CSR, the
 * one-time token traded through the Enroll rpc), one TLS connection and one Connect stream per
 * agent, Welcome → Hello (capability version, facts, services, the observed root hashes of the
 * trees it holds), heartbeats at the interval the master asks for, replies matched by id through
 * shared's command codecs (`wire.commandFromWire` / `wire.resultToWire`), and reconnects with the
 * real agent's capped, fully jittered backoff (the formula of its `backoffDelay`). A converge asks the master for
 * the manifest (GetManifest) and for every blob the host does not hold (FetchBlobs), checks the
 * manifest's root hash and every blob's SHA-256 as the real agent does, and writes the tree under
 * `treesDir` when it is small (at most `writeLimitFiles` files); a larger tree is checked and
 * counted but kept only as its manifest, so fifty members of a 20,000-file platform fit in one
 * process. Everything else answers from the command's own content (a web-server config report
 * names the vhost file it would write; verify reports the configured roots as writable).
 */
import { createHash, hash as hashOf, X509Certificate } from 'node:crypto';
import { mkdirSync, writeFileSync, symlinkSync, rmSync } from 'node:fs';
import { connect as tlsConnect, type DetailedPeerCertificate } from 'node:tls';
import { join } from 'node:path';
import { credentials, Metadata, status as GrpcStatus, type ClientDuplexStream, type ServiceError } from '@grpc/grpc-js';
import {
  CAPABILITY_VERSION,
  STREAM_TREE_CAPABILITY,
  MASTER_TLS_NAME,
  SPOKE_VERSION,
  buildManifest,
  channelOptions,
  clientTls,
  createCsr,
  fail,
  parseHostPort,
  fromServiceError,
  grpcTarget,
  isSpokeError,
  wire,
  type AgentCommand,
  type AgentCommandResults,
  type AgentCommandType,
  type ConvergeReport,
  inSyncReport,
  type ConvergeRequest,
  type HostFactsInfo,
  type ManifestEntry,
} from '@spoke/shared';

/** Link state of one simulated agent: idle → connecting → online → (backoff → connecting)* → stopped. */
export type SimState = 'idle' | 'connecting' | 'online' | 'backoff' | 'stopped';

/** What every simulated agent of a fleet shares. */
export interface SimFleetOptions {
  /** The master's agent port, HOST:PORT. */
  master: string;
  /** Namespace roots every agent reports. @default ['/var/aegir', '/var/www'] */
  roots?: string[];
  /** Reconnect backoff, as the real agent's SPOKE_BACKOFF_INITIAL_MS / _MAX_MS. @default 500 / 15000 */
  backoffInitialMs?: number;
  backoffMaxMs?: number;
  /** Converged trees of at most writeLimitFiles files are written under `<treesDir>/<agent>/<tree>`; unset: none is written. */
  treesDir?: string;
  /** @default 2000 */
  writeLimitFiles?: number;
  /** Called for every command an agent receives, before it is answered (measurements). */
  onCommand?: (agent: string, type: string, receivedMs: number) => void;
}

/** One tree a simulated host holds. */
interface HeldTree {
  rootHash: string;
  /** path → content hash ("" for dirs and symlinks). */
  entries: Map<string, string>;
}

/** A tree a simulated agent holds from the start (reported in hello: e.g. a seeded platform it serves in sync). */
export interface PresetTree {
  tree: string;
  rootHash: string;
}

/** One simulated agent. Built by SimFleet. */
export class SimAgent {
  state: SimState = 'idle';
  /** Times it was online (said hello after a Welcome). */
  connects = 0;
  /** Why the master refused it, when it did (the agent stopped). */
  refused: string | null = null;
  private client: wire.AgentClient | null = null;
  private stream: ClientDuplexStream<wire.AgentEvent, wire.MasterCommand> | null = null;
  private heartbeat: NodeJS.Timeout | null = null;
  private retry: NodeJS.Timeout | null = null;
  private attempt = 0;
  private readonly trees = new Map<string, HeldTree>();
  /** Content hashes this host holds in any tree (what a converge can reuse instead of fetching). */
  private readonly content = new Map<string, number>();
  private readonly configs = new Set<string>();

  constructor(
    readonly name: string,
    private readonly identity: { caPem: string; certPem: string; keyPem: string },
    private readonly opts: Required<Omit<SimFleetOptions, 'treesDir' | 'onCommand'>> & Pick<SimFleetOptions, 'treesDir' | 'onCommand'>,
  ) {}

  /** Holds `tree` at `rootHash` without its content (reported in hello as observed). */
  preset(tree: string, rootHash: string): void {
    this.trees.set(tree, { rootHash, entries: new Map() });
  }

  /** The root hashes of the trees it holds, as hello reports them. */
  observed(): Record<string, string> {
    return Object.fromEntries([...this.trees].map(([t, h]) => [t, h.rootHash]));
  }

  /** Dials and keeps the link up (reconnecting with backoff) until stop. */
  start(): void {
    if (this.state === 'stopped') return;
    this.client ??= new wire.AgentClient(
      grpcTarget(this.opts.master),
      clientTls(this.identity.caPem, this.identity.certPem, this.identity.keyPem),
      // one connection per agent, as on separate hosts: never share a subchannel with another
      // identity; no grpc-js keepalive, as the real agent (packages/agent/src/liveness.ts: a PING
      // answered behind a full window ended busy connections)
      channelOptions({
        'grpc.use_local_subchannel_pool': 1,
        'grpc.keepalive_time_ms': -1,
        'grpc.initial_reconnect_backoff_ms': this.opts.backoffInitialMs,
        'grpc.max_reconnect_backoff_ms': this.opts.backoffMaxMs,
      }),
    );
    this.dial();
  }

  /** Stops for good and closes its connection. */
  stop(): void {
    this.state = 'stopped';
    if (this.retry) clearTimeout(this.retry);
    this.retry = null;
    this.stopHeartbeat();
    this.stream?.cancel();
    this.stream = null;
    this.client?.close();
    this.client = null;
  }

  private dial(): void {
    if (this.state === 'stopped' || !this.client) return;
    this.state = 'connecting';
    const stream = this.client.connect();
    this.stream = stream;
    stream.on('data', (cmd: wire.MasterCommand) => {
      if (cmd.command?.$case === 'welcome') return this.onWelcome(stream, cmd.command.value);
      void this.onCommand(stream, cmd);
    });
    stream.on('error', (e: Error & { code?: number; details?: string }) => this.lost(stream, e.code, e.details ?? e.message));
    stream.on('end', () => this.lost(stream, GrpcStatus.UNAVAILABLE, 'stream ended'));
  }

  private lost(stream: ClientDuplexStream<wire.AgentEvent, wire.MasterCommand>, code?: number, details?: string): void {
    if (this.stream !== stream || this.state === 'stopped') return;
    this.stream = null;
    this.stopHeartbeat();
    if (code === GrpcStatus.PERMISSION_DENIED || code === GrpcStatus.UNAUTHENTICATED) {
      this.refused = details ?? String(code);
      this.stop();
      return;
    }
    this.state = 'backoff';
    const delay = backoffDelay(this.attempt++, this.opts.backoffInitialMs, this.opts.backoffMaxMs);
    this.retry = setTimeout(() => {
      this.retry = null;
      this.dial();
    }, delay);
  }

  private onWelcome(stream: ClientDuplexStream<wire.AgentEvent, wire.MasterCommand>, w: wire.Welcome): void {
    this.attempt = 0;
    const services = [
      { kind: 'http', impl: 'nginx', version: '1.22.1', binary: '/usr/sbin/nginx' },
      { kind: 'php', impl: 'php-fpm', version: '8.2', binary: '/usr/sbin/php-fpm8.2' },
    ];
    // one below the streamed first sync (15): the simulator converges by GetManifest + FetchBlobs only
    const capabilityVersion = Math.min(CAPABILITY_VERSION, STREAM_TREE_CAPABILITY - 1);
    stream.write({ event: { $case: 'hello', value: { capabilityVersion, facts: this.facts(), services, observed: this.observed() } } });
    this.state = 'online';
    this.connects++;
    this.stopHeartbeat();
    this.heartbeat = setInterval(
      () => {
        if (this.stream === stream) stream.write({ event: { $case: 'heartbeat', value: { tsMs: Date.now() } } });
      },
      Math.max(100, w.heartbeatIntervalMs || 5000),
    );
    this.heartbeat.unref();
  }

  private stopHeartbeat(): void {
    if (this.heartbeat) clearInterval(this.heartbeat);
    this.heartbeat = null;
  }

  private facts(): HostFactsInfo {
    return {
      hostname: this.name,
      os: 'Linux (simulated)',
      arch: 'x64',
      agentVersion: `${SPOKE_VERSION}-sim`,
      roots: this.opts.roots,
      rootPrefix: '',
      cpus: 2,
      memoryBytes: 4 * 1024 ** 3,
    };
  }

  private async onCommand(stream: ClientDuplexStream<wire.AgentEvent, wire.MasterCommand>, msg: wire.MasterCommand): Promise<void> {
    this.opts.onCommand?.(this.name, msg.command?.$case ?? 'unknown', Date.now());
    const reply = (r: Omit<wire.CommandResult, 'id'>) => {
      if (this.stream === stream) stream.write({ event: { $case: 'result', value: { id: msg.id, ...r } } });
    };
    try {
      const cmd = wire.commandFromWire(msg);
      if (!cmd) return reply({ ok: false, errorCode: 'INVALID_ARGUMENT', errorMessage: 'the simulator does not know that command', result: undefined });
      const value = await this.answer(cmd);
      reply({ ok: true, errorCode: '', errorMessage: '', result: wire.resultToWire(cmd.type, value) });
    } catch (e) {
      reply({ ok: false, errorCode: isSpokeError(e) ? e.code : 'INTERNAL', errorMessage: e instanceof Error ? e.message : String(e), result: undefined });
    }
  }

  /** The answer to one command, from its own content and what this host holds. */
  private async answer(cmd: AgentCommand): Promise<AgentCommandResults[AgentCommandType]> {
    switch (cmd.type) {
      case 'ping':
        return null;
      case 'verifyServer':
        return {
          services: [
            { kind: 'http', impl: 'nginx', version: '1.22.1', binary: '/usr/sbin/nginx' },
            { kind: 'php', impl: 'php-fpm', version: '8.2', binary: '/usr/sbin/php-fpm8.2' },
          ],
          roots: this.opts.roots.map((path) => ({ path, hostPath: path, writable: true, freeBytes: 80 * 1024 ** 3, totalBytes: 100 * 1024 ** 3, error: '' })),
          facts: this.facts(),
        };
      case 'converge':
        return this.converge(cmd);
      case 'treeStatus': {
        const held = this.trees.get(cmd.tree);
        const none = { changed: [], added: [], removed: [], total: 0 };
        return { committedRootHash: held?.rootHash ?? '', actualRootHash: held?.rootHash ?? '', exists: !!held, drift: none, conflicts: [], quarantine: [] };
      }
      case 'configurePlatform':
        return this.config(`/etc/nginx/spoke.d/platform-${cmd.platform}.conf`);
      case 'configureSite':
        return this.config(`/etc/nginx/spoke.d/site-${cmd.domain}.conf`);
      case 'removeSite': {
        const path = `/etc/nginx/spoke.d/site-${cmd.domain}.conf`;
        const removed = this.configs.delete(path);
        return { impl: 'nginx', path, removed, reloaded: removed, deleted: [], problems: [] };
      }
      case 'forgetPlatform': {
        const configPath = `/etc/nginx/spoke.d/platform-${cmd.platform}.conf`;
        const configRemoved = this.configs.delete(configPath);
        const treeRemoved = cmd.removeTree && this.trees.delete(cmd.tree);
        return { configRemoved, reloaded: configRemoved, configPath, treeRemoved, kept: [], problems: [] };
      }
      default:
        throw fail('AGENT_COMMAND_FAILED', `the agent simulator does not do ${cmd.type}`);
    }
  }

  private config(path: string): AgentCommandResults['configurePlatform'] {
    const changed = !this.configs.has(path);
    this.configs.add(path);
    return { impl: 'nginx', path, changed, tested: true, reloaded: changed, fixed: [], problems: [] };
  }

  /**
   * A converge over the real wire: the manifest (its root hash checked), the blobs this host
   * lacks (each hash checked), written under treesDir when small. @throws SpokeError TREE_CHANGED, BLOB_HASH_MISMATCH
   */
  private async converge(c: ConvergeRequest): Promise<ConvergeReport> {
    const t0 = Date.now();
    const held = this.trees.get(c.tree);
    const report: ConvergeReport = inSyncReport(c.rootHash);
    if (held?.rootHash === c.rootHash) return { ...report, ms: Date.now() - t0 };
    const client = this.client;
    if (!client) throw fail('AGENT_DISCONNECTED', 'not connected to the master');
    const entries: ManifestEntry[] = [];
    try {
      for await (const chunk of client.getManifest({ tree: c.tree, rootHash: c.rootHash, baseRootHash: '' }) as AsyncIterable<wire.ManifestChunk>) {
        for (const e of chunk.entries) {
          const entry: ManifestEntry = { path: e.path, type: e.type as ManifestEntry['type'], mode: e.mode, size: e.size, hash: e.hash };
          if (e.type === 'symlink') entry.target = e.target;
          entries.push(entry);
        }
      }
    } catch (e) {
      throw fromServiceError(e);
    }
    const m = buildManifest(entries);
    if (m.rootHash !== c.rootHash)
      throw fail('TREE_CHANGED', `the manifest the master sent hashes to ${m.rootHash.slice(0, 12)}, not ${c.rootHash.slice(0, 12)}`);
    const old = held?.entries ?? new Map<string, string>();
    const next = new Map<string, string>();
    const want = new Map<string, number>();
    for (const e of m.entries) {
      next.set(e.path, e.hash);
      const was = old.get(e.path);
      if (was === undefined) report.added++;
      else if (was !== e.hash) report.changed++;
      if (e.type !== 'file' || was === e.hash) continue;
      if (this.content.has(e.hash)) {
        report.filesReused++;
        report.bytesReused += e.size;
      } else want.set(e.hash, e.size);
    }
    for (const p of old.keys()) if (!next.has(p)) report.removed++;
    const write = this.opts.treesDir !== undefined && m.entries.length <= this.opts.writeLimitFiles;
    const root = join(this.opts.treesDir ?? '', this.name, c.tree);
    const blobs = write ? new Map<string, Buffer>() : null;
    const hashes = [...want.keys()];
    for (let i = 0; i < hashes.length; i += 16_384) {
      const batch = hashes.slice(i, i + 16_384);
      const got = await this.fetchBlobs(client, c.tree, batch, blobs);
      report.filesFetched += got.files;
      report.bytesFetched += got.bytes;
    }
    if (write && blobs) {
      rmSync(root, { recursive: true, force: true });
      mkdirSync(root, { recursive: true });
      for (const e of m.entries) {
        const at = join(root, e.path);
        if (e.type === 'dir') mkdirSync(at, { recursive: true, mode: e.mode });
        else if (e.type === 'symlink') symlinkSync(e.target ?? '', at);
        else writeFileSync(at, blobs.get(e.hash) ?? Buffer.alloc(0), { mode: e.mode });
      }
    }
    for (const [h, size] of want) this.content.set(h, size);
    this.trees.set(c.tree, { rootHash: m.rootHash, entries: next });
    report.inSync = report.added + report.changed + report.removed === 0;
    report.ms = Date.now() - t0;
    return report;
  }

  /** Fetches and checks one batch of blobs (frames of [32-byte hash][8-byte size][content]). */
  private async fetchBlobs(
    client: wire.AgentClient,
    tree: string,
    batch: string[],
    keep: Map<string, Buffer> | null,
  ): Promise<{ files: number; bytes: number }> {
    const wanted = new Set(batch);
    let files = 0;
    let bytes = 0;
    let pending = Buffer.alloc(0);
    let blob: { hash: string; size: number; left: number; h: ReturnType<typeof createHash>; parts: Buffer[] | null } | null = null;
    const take = (data: Buffer) => {
      let buf = pending.length ? Buffer.concat([pending, data]) : data;
      pending = Buffer.alloc(0);
      while (buf.length) {
        if (!blob) {
          if (buf.length < 40) {
            pending = Buffer.from(buf);
            return;
          }
          const hash = buf.toString('hex', 0, 32);
          const size = Number(buf.readBigUInt64BE(32));
          if (!wanted.has(hash)) throw fail('BLOB_HASH_MISMATCH', `the master sent blob ${hash.slice(0, 12)}, which was not asked for`);
          buf = buf.subarray(40);
          if (!keep && buf.length >= size) {
            // the whole blob is in this chunk (most are): one hash call, no Hash object
            if (hashOf('sha256', buf.subarray(0, size), 'hex') !== hash) throw fail('BLOB_HASH_MISMATCH', `blob ${hash.slice(0, 12)} arrived corrupted`);
            wanted.delete(hash);
            files++;
            bytes += size;
            buf = buf.subarray(size);
            continue;
          }
          blob = { hash, size, left: size, h: createHash('sha256'), parts: keep ? [] : null };
        }
        const n = Math.min(blob.left, buf.length);
        const part = buf.subarray(0, n);
        blob.h.update(part);
        blob.parts?.push(Buffer.from(part));
        blob.left -= n;
        buf = buf.subarray(n);
        if (blob.left === 0) {
          if (blob.h.digest('hex') !== blob.hash) throw fail('BLOB_HASH_MISMATCH', `blob ${blob.hash.slice(0, 12)} arrived corrupted`);
          if (keep && blob.parts) keep.set(blob.hash, Buffer.concat(blob.parts));
          wanted.delete(blob.hash);
          files++;
          bytes += blob.size;
          blob = null;
        }
      }
    };
    const stream = client.fetchBlobs({ tree, hashes: batch });
    try {
      // a view, not a copy: 50 members of a 20,000-file platform copied 4 GB in this process
      for await (const chunk of stream as AsyncIterable<wire.BlobChunk>) take(Buffer.from(chunk.data.buffer, chunk.data.byteOffset, chunk.data.byteLength));
    } catch (e) {
      stream.cancel();
      throw isSpokeError(e) ? e : fromServiceError(e);
    }
    if (blob || wanted.size) throw fail('BLOB_HASH_MISMATCH', `${wanted.size} blob(s) did not arrive`);
    return { files, bytes };
  }
}

const TOKEN_RE = /^spoke1\.[A-Za-z0-9_-]{43}\.([0-9a-f]{64})$/;

/**
 * The master's CA certificate whose SHA-256 is `pin`, read from its TLS chain without trusting
 * it (as the agent's enroll does). @throws SpokeError MASTER_UNREACHABLE, CA_MISMATCH
 */
function fetchPinnedCA(master: string, pin: string): Promise<string> {
  const { host, port } = parseHostPort(master);
  return new Promise((resolve, reject) => {
    const sock = tlsConnect({ host, port, servername: MASTER_TLS_NAME, rejectUnauthorized: false, ALPNProtocols: ['h2'] });
    sock.once('error', (e) => reject(fail('MASTER_UNREACHABLE', `cannot reach the master at ${master}: ${e.message}`)));
    sock.once('secureConnect', () => {
      let c: DetailedPeerCertificate | undefined = sock.getPeerCertificate(true);
      const seen = new Set<string>();
      let found: string | undefined;
      while (c?.raw && !seen.has(c.fingerprint256)) {
        seen.add(c.fingerprint256);
        if (createHash('sha256').update(c.raw).digest('hex') === pin) found = new X509Certificate(c.raw).toString();
        c = c.issuerCertificate;
      }
      sock.end();
      if (found) resolve(found);
      else reject(fail('CA_MISMATCH', `the master at ${master} does not hold the CA these tokens were made for`));
    });
  });
}

/** The real agent's reconnect delay: exponential from `initialMs`, capped at `maxMs`, half of it jittered. */
export function backoffDelay(attempt: number, initialMs: number, maxMs: number): number {
  const ceiling = Math.min(maxMs, initialMs * 2 ** Math.min(attempt, 20));
  return Math.round(ceiling / 2 + (Math.random() * ceiling) / 2);
}

/** Many simulated agents in this process. */
export class SimFleet {
  readonly agents = new Map<string, SimAgent>();
  private readonly opts: Required<Omit<SimFleetOptions, 'treesDir' | 'onCommand'>> & Pick<SimFleetOptions, 'treesDir' | 'onCommand'>;

  constructor(opts: SimFleetOptions) {
    this.opts = { roots: ['/var/aegir', '/var/www'], backoffInitialMs: 500, backoffMaxMs: 15_000, writeLimitFiles: 2000, ...opts };
  }

  /**
   * Enrolls one agent per token as `spoke-agent enroll` does — the master's CA pinned from the
   * token's fingerprint (read once: every token of a master names the same CA), a fresh key and
   * CSR, the token traded through the Enroll rpc — `concurrency` at a time. Returns the agents
   * (not started). @throws SpokeError TOKEN_*, CA_MISMATCH, MASTER_UNREACHABLE
   */
  async enroll(tokens: readonly string[], concurrency = 8): Promise<SimAgent[]> {
    const out: SimAgent[] = new Array<SimAgent>(tokens.length);
    if (tokens.length === 0) return out;
    const pins = new Set(tokens.map((t) => TOKEN_RE.exec(t.trim())?.[1]));
    if (pins.size !== 1 || pins.has(undefined)) throw fail('TOKEN_INVALID', 'the tokens are malformed or name different CAs');
    const caPem = await fetchPinnedCA(this.opts.master, [...pins][0] as string);
    const client = new wire.AgentClient(grpcTarget(this.opts.master), clientTls(caPem), channelOptions());
    let next = 0;
    const worker = async () => {
      for (let i = next++; i < tokens.length; i = next++) {
        const { csrPem, keyPem } = await createCsr('spoke-agent');
        const res = await new Promise<wire.EnrollResponse>((ok, ko) => {
          client.enroll({ token: (tokens[i] as string).trim(), csrPem }, new Metadata(), { deadline: Date.now() + 60_000 }, (err, r) =>
            err ? ko(fromServiceError(err)) : ok(r),
          );
        });
        const agent = new SimAgent(res.server, { caPem: res.caPem, certPem: res.certPem, keyPem }, this.opts);
        this.agents.set(res.server, agent);
        out[i] = agent;
      }
    };
    try {
      await Promise.all(Array.from({ length: Math.max(1, concurrency) }, worker));
    } finally {
      client.close();
    }
    return out;
  }

  /** Starts every agent (each dials at once; reconnects after that are jittered). */
  start(): void {
    for (const a of this.agents.values()) a.start();
  }

  /** How many agents are online (said hello on an open stream). */
  online(): number {
    let n = 0;
    for (const a of this.agents.values()) if (a.state === 'online') n++;
    return n;
  }

  /** Stops every agent. */
  stop(): void {
    for (const a of this.agents.values()) a.stop();
  }
}

/** An operator client over the master's unix socket (`<stateDir>/spoke.sock`). Close it when done. */
export function operatorClient(stateDir: string): wire.OperatorClient {
  return new wire.OperatorClient(`unix://${join(stateDir, 'spoke.sock')}`, credentials.createInsecure(), {
    'grpc.max_receive_message_length': 512 * 1024 * 1024,
  });
}

/** One unary operator call as a promise (its error as a SpokeError). */
export function unary<Req, Res>(fn: (req: Req, md: Metadata, cb: (e: ServiceError | null, r?: Res) => void) => unknown, req: Req): Promise<Res> {
  return new Promise((ok, ko) =>
    fn(req, new Metadata(), (e, r) => (e || r === undefined ? ko(e ? fromServiceError(e) : fail('INTERNAL', 'no answer')) : ok(r))),
  );
}

/** Every site through the ListSites stream (pages of up to 1,000). */
export function allSites(client: wire.OperatorClient): Promise<wire.Site[]> {
  return new Promise((ok, ko) => {
    const out: wire.Site[] = [];
    const s = client.listSites({ platform: '' });
    s.on('data', (page: wire.SiteList) => out.push(...page.sites));
    s.on('end', () => ok(out));
    s.on('error', (e) => ko(fromServiceError(e)));
  });
}

/** One enrollment token per name (CreateToken), `concurrency` calls at a time. */
export async function createTokens(api: wire.OperatorClient, names: readonly string[], concurrency = 16): Promise<string[]> {
  const out = new Array<string>(names.length);
  let next = 0;
  const worker = async () => {
    for (let i = next++; i < names.length; i = next++) {
      const r = await unary<wire.CreateTokenRequest, wire.CreateTokenResponse>((q, md, cb) => api.createToken(q, md, cb), {
        server: names[i] as string,
        cluster: '',
        ttlSeconds: 0,
        replace: false,
      });
      out[i] = r.token;
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  return out;
}
