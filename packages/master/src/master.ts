/**
 * Builds and starts a master from compiled options and injected dependencies (logger, clock).
 * `main.ts` and `spoke up` call this; tests call it too.
 */
import { chmodSync, existsSync, mkdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { Server, ServerCredentials } from '@grpc/grpc-js';
import {
  FileWorker,
  RootMap,
  fail,
  grpcTarget,
  lockStateDir,
  parseHostPort,
  serverTls,
  startMetricsListener,
  type Logger,
  type MetricsListener,
} from '@spoke/shared';
import { MasterHealth } from './health/grpchealth.js';
import { NO_METRICS, PromMasterMetrics } from './health/metrics.js';
import { TreeStore } from './platforms/trees.js';
import { addServices } from './api/index.js';
import { Enroller, issueMasterCert, loadOrCreateCA } from './servers/ca.js';
import { Core } from './core.js';
import { AgentHub } from './servers/hub.js';
import { Namespace } from './namespace/namespace.js';
import type { CompiledMasterOptions } from './options.js';
import { openStore, type Db } from './namespace/store.js';
import { TaskEngine } from './tasks/engine.js';
import type { Clock } from './types.js';

/** A running master. */
export interface RunningMaster {
  core: Core;
  /** Bound TLS address, HOST:PORT (the real port when 0 was asked). */
  listen: string;
  socket: string;
  caPem: string;
  /** The metrics listener's bound address, HOST:PORT ("" when off). */
  metrics: string;
  /** Readiness behind the gRPC health service and /readyz. */
  health: MasterHealth;
  stop(): Promise<void>;
}

function bind(server: Server, target: string, creds: ServerCredentials, what: string): Promise<number> {
  return new Promise((resolve, reject) => {
    server.bindAsync(target, creds, (err, port) => (err ? reject(bindError(err, what)) : resolve(port)));
  });
}

/**
 * A failed bind as one line for the operator: a taken address is ADDRESS_IN_USE (grpc-js says
 * "No address added out of total 1 resolved" with the EADDRINUSE in its details).
 */
export function bindError(err: Error, what: string): Error {
  const text = `${err.message} ${String((err as { details?: unknown }).details ?? '')}`;
  if (/EADDRINUSE|address already in use/i.test(text)) {
    return fail('ADDRESS_IN_USE', `${what} is already in use (another spoke-master, or another program: see ss -ltnp); stop it or choose another address`);
  }
  if (/EACCES|permission denied/i.test(text)) return fail('CONFIG_INVALID', `cannot listen on ${what}: permission denied`);
  return fail('CONFIG_INVALID', `cannot listen on ${what}: ${err.message}`);
}

/** The ACME server's CA bundle. @throws SpokeError CONFIG_INVALID */
function readAcmeCa(file: string): string {
  if (!file) return '';
  try {
    return readFileSync(file, 'utf8');
  } catch (e) {
    throw fail('CONFIG_INVALID', `--acme-ca ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
}

/** Tests: a clock that runs ahead by the milliseconds written in `file` (0 when absent). */
function offsetClock(clock: Clock, file: string): Clock {
  return () => {
    let offset = 0;
    try {
      offset = Number(readFileSync(file, 'utf8').trim()) || 0;
    } catch {
      /* no offset yet */
    }
    return clock() + offset;
  };
}

/** Starts a master. @throws SpokeError STATE_DIR_LOCKED, CONFIG_INVALID */
export async function startMaster(opts: CompiledMasterOptions, deps: { log: Logger; clock?: Clock }): Promise<RunningMaster> {
  const clock = deps.clock ?? Date.now;
  const log = deps.log;
  mkdirSync(opts.stateDir, { recursive: true, mode: 0o700 });
  chmodSync(opts.stateDir, 0o700);
  const unlock = lockStateDir(opts.stateDir, 'master', 'stop it first, or give this one another --state-dir');
  let db: Db | undefined;
  let metricsListener: MetricsListener | undefined;
  try {
    const prom = opts.metrics ? new PromMasterMetrics() : undefined;
    const metrics = prom ?? NO_METRICS;
    const health = new MasterHealth();
    db = openStore(join(opts.stateDir, 'spoke.db'));
    const ca = await loadOrCreateCA(opts.stateDir);
    const { host } = parseHostPort(opts.listen);
    const tlsCert = await issueMasterCert(ca, [host]);
    const ns = new Namespace({ db, clock });
    const hub = new AgentHub({
      ns,
      log: log.child({ component: 'master.hub' }),
      clock,
      heartbeatIntervalMs: opts.heartbeatIntervalMs,
      heartbeatTtlMs: opts.heartbeatTtlMs,
      reconnectGraceMs: opts.agentReconnectGraceMs,
      metrics,
    });
    ns.setPresence(hub);
    const tasks = new TaskEngine({ db, clock, log: log.child({ component: 'master.tasks' }), concurrency: opts.taskConcurrency, metrics });
    const enroller = new Enroller({ db, ns, ca, clock });
    const fileWorker = new FileWorker();
    const trees = new TreeStore({ db, rootMap: new RootMap(opts.root), log: log.child({ component: 'master.trees' }), helper: fileWorker });
    const core = new Core({
      ns,
      enroller,
      tasks,
      hub,
      trees,
      log: log.child({ component: 'master.core' }),
      clock,
      info: { stateDir: opts.stateDir, root: opts.root, startedMs: clock(), listen: null, minFreeBytes: opts.minFreeBytes },
      faults: { corruptBlobs: opts.faultCorruptBlobs },
      db,
      buildEnv: opts.buildEnv,
      cron: { concurrency: opts.cronConcurrency, tickMs: opts.cronTickMs },
      streamFirstSync: opts.streamFirstSync,
      reconcile: { intervalMs: opts.reconcileIntervalMs, backoffMs: opts.reconcileBackoffMs },
      buildSourceDirs: opts.buildSourceDirs,
      buildLimits: { maxBytes: opts.buildMaxBytes, maxEntries: opts.buildMaxEntries, maxRatio: opts.buildMaxRatio },
      https: {
        acme: opts.acmeDirectory ? { directoryUrl: opts.acmeDirectory, email: opts.acmeEmail, caPem: readAcmeCa(opts.acmeCa) } : null,
        clock: opts.clockOffsetFile ? offsetClock(clock, opts.clockOffsetFile) : clock,
        tickMs: opts.httpsTickMs,
      },
      metrics,
    });
    const swept = await core.sweepBuilds();
    if (swept.length) log.warn({ dirs: swept }, 'removed staging dirs of builds interrupted by the last stop');
    const interrupted = tasks.recover();
    if (interrupted.length) log.warn({ tasks: interrupted }, 'tasks interrupted by the last stop were failed');

    const serverOpts = { 'grpc.keepalive_permit_without_calls': 1, 'grpc.max_receive_message_length': 64 * 1024 * 1024 };
    const tls = new Server(serverOpts);
    addServices(tls, core, 'tls', log);
    health.addTo(tls, 'tls');
    const port = await bind(tls, grpcTarget(opts.listen), serverTls(ca.certPem, tlsCert.certPem, tlsCert.keyPem), opts.listen);
    const listen = `${host.includes(':') ? `[${host}]` : host}:${port}`;
    core.setListen(listen);

    const local = new Server(serverOpts);
    addServices(local, core, 'socket', log);
    health.addTo(local, 'socket');
    if (existsSync(opts.socket)) rmSync(opts.socket, { force: true });
    await bind(local, `unix://${opts.socket}`, ServerCredentials.createInsecure(), opts.socket);
    chmodSync(opts.socket, 0o600);
    tasks.start();
    core.https.start();
    core.formerNames.start();
    core.sync.startReconcile();
    if (opts.cron) core.cron.start();
    else log.warn('the cron scheduler is off (SPOKE_CRON=off): no site cron runs on schedule; spoke site cron DOMAIN still runs one');
    if (prom) {
      const dbPath = join(opts.stateDir, 'spoke.db');
      prom.setSources({
        agents: () =>
          ns.listServers().flatMap((s) => {
            if (s.kind !== 'agent' || !s.enrolled) return [];
            const age = hub.heartbeatAgeMs(s.name);
            return [{ server: s.name, online: hub.isOnline(s.name), heartbeatAgeSeconds: age === null ? null : age / 1000 }];
          }),
        tasksByKindState: () => tasks.countsByKindState(),
        dbPath,
        ready: () => health.readiness === 'serving',
        certificates: () => core.https.servedCertificates(),
      });
      metricsListener = await startMetricsListener(opts.metrics, {
        render: () => prom.render(),
        ready: () => ({ ready: health.readiness === 'serving', reason: health.readiness }),
      });
    }
    health.set('serving');
    log.info({ listen, socket: opts.socket, stateDir: opts.stateDir, root: opts.root || '/', metrics: metricsListener?.address ?? '' }, 'master started');

    let stopped = false;
    return {
      core,
      listen,
      socket: opts.socket,
      caPem: ca.certPem,
      metrics: metricsListener?.address ?? '',
      health,
      stop: async () => {
        if (stopped) return;
        stopped = true;
        // Draining: probes see NOT_SERVING before anything closes.
        health.set('draining');
        await core.cron.stop();
        await core.https.stop();
        core.formerNames.stop();
        await tasks.stop();
        core.sync.close();
        await trees.close();
        fileWorker.close();
        hub.closeAll();
        // Let in-flight calls finish, but never wait on idle agent connections for long.
        const graceful = Promise.all([new Promise<void>((r) => tls.tryShutdown(() => r())), new Promise<void>((r) => local.tryShutdown(() => r()))]);
        await Promise.race([graceful, new Promise((r) => setTimeout(r, 2000).unref())]);
        tls.forceShutdown();
        local.forceShutdown();
        rmSync(opts.socket, { force: true });
        await metricsListener?.close();
        db?.close();
        unlock();
        log.info('master stopped');
      },
    };
  } catch (e) {
    await metricsListener?.close();
    db?.close();
    unlock();
    throw e;
  }
}
