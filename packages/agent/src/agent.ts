/**
 * Builds and starts an agent from compiled options and injected dependencies.
 */
import { SiteFileTransfer } from './sitetransfer.js';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { DEFAULT_ACME_DIR, SiteTlsStore } from './tls/sitetls.js';
import { FileWorker, lockStateDir, RootMap, startMetricsListener, type Logger, type MetricsListener } from '@spoke/shared';
import { PromAgentMetrics } from './metrics.js';
import { identityFiles, type CompiledAgentOptions } from './config.js';
import { MasterConnection } from './connection.js';
import { detectFpmSocket, detectServices, type DetectedService } from './detect.js';
import { AgentTrees } from './sync.js';
import { beginRun, distrustTrees, endRun, linuxBootId, syncAll } from './converge/boot.js';
import { commandRunner, WebConfig } from './webconfig.js';
import { SiteInstaller } from './siteinstall.js';
import { SitePhp } from './php/sitephp.js';
import { SiteCron } from './sitecron.js';
import { SiteDatabases } from './db/index.js';

/** A running agent. */
export interface RunningAgent {
  connection: MasterConnection;
  /** The metrics listener's bound address, HOST:PORT ("" when off). */
  metrics: string;
  stop(): Promise<void>;
}

/** Starts an agent: loads its identity, finishes interrupted converges, and dials the master. */
export async function startAgent(
  opts: CompiledAgentOptions,
  deps: {
    log: Logger;
    detect?: () => Promise<DetectedService[]>;
    /** The kernel's boot id (default: /proc/sys/kernel/random/boot_id). */
    bootId?: () => string | undefined;
    /** Flushes all file systems at a clean stop (default: sync(1)). */
    flush?: () => boolean;
  },
): Promise<RunningAgent> {
  // One agent per state dir: two replace each other's stream and race on the same trees.
  const unlock = lockStateDir(opts.stateDir, 'agent', 'stop it first (systemctl stop spoke-agent), or give this one its own --state-dir');
  try {
    return await startLocked(opts, deps, unlock);
  } catch (e) {
    unlock();
    throw e;
  }
}

async function startLocked(opts: CompiledAgentOptions, deps: Parameters<typeof startAgent>[1], unlock: () => void): Promise<RunningAgent> {
  const files = identityFiles(opts.stateDir);
  const identity = {
    caPem: readFileSync(files.ca, 'utf8'),
    certPem: readFileSync(files.cert, 'utf8'),
    keyPem: readFileSync(files.key, 'utf8'),
  };
  const rootMap = new RootMap(opts.rootPrefix);
  const fileWorker = new FileWorker();
  const trees = new AgentTrees({
    stateDir: opts.stateDir,
    roots: opts.roots,
    rootMap,
    fetchBatch: opts.fetchBatch,
    helper: fileWorker,
    quarantine: { maxBytes: opts.quarantineMaxBytes, maxAgeMs: opts.quarantineMaxAgeMs },
    log: deps.log.child({ component: 'agent.trees' }),
  });
  // Converges do not fsync: a machine that went down while this agent ran is found here, and
  // then the tree state it wrote is not trusted (see converge/boot.ts).
  const run = beginRun(opts.stateDir, (deps.bootId ?? linuxBootId)());
  if (run.unclean) {
    const d = distrustTrees(opts.stateDir, deps.log);
    deps.log.warn(
      { previousBoot: run.previousBoot, trees: d.trees, journalsDiscarded: d.journalsDiscarded, headsRemoved: d.headsRemoved },
      'the machine went down while the agent ran: every tree is hashed again and repaired from the master',
    );
  }
  await trees.startup();
  const detect = deps.detect ?? (() => detectServices(opts.binDirs));
  const tls = new SiteTlsStore({
    stateDir: opts.stateDir,
    acmeDir: opts.http.acmeDir || rootMap.toHost(DEFAULT_ACME_DIR),
    log: deps.log.child({ component: 'agent.tls' }),
  });
  const web = new WebConfig({
    tls,
    http: opts.http,
    fpmSocket: opts.fpmSocket,
    roots: opts.roots,
    rootMap,
    binDirs: opts.binDirs,
    detect,
    detectFpm: () => detectFpmSocket(),
    run: commandRunner(opts.binDirs),
    userFiles: { user: opts.phpUser },
    log: deps.log.child({ component: 'agent.web' }),
  });
  const sitePhp = new SitePhp({
    rootMap,
    roots: opts.roots,
    binDirs: opts.binDirs,
    phpCli: opts.phpCli,
    phpUser: opts.phpUser,
    log: deps.log.child({ component: 'agent.sitephp' }),
  });
  const installer = new SiteInstaller({
    http: opts.http,
    php: sitePhp,
    service: (pinned) => web.service(pinned),
    log: deps.log.child({ component: 'agent.install' }),
  });
  const cron = new SiteCron({
    http: opts.http,
    php: sitePhp,
    service: (pinned) => web.service(pinned),
    log: deps.log.child({ component: 'agent.cron' }),
  });
  const db = opts.db
    ? new SiteDatabases({
        settings: opts.db,
        server: opts.server,
        binDirs: opts.binDirs,
        tmpDir: join(opts.stateDir, 'tmp'),
        log: deps.log.child({ component: 'agent.db' }),
      })
    : null;
  const siteFiles = new SiteFileTransfer({
    roots: opts.roots,
    rootMap,
    webGroup: opts.http.webGroup,
    userFiles: { user: opts.phpUser },
    log: deps.log.child({ component: 'agent.sitefiles' }),
  });
  // The link is read at scrape time; it exists before the first scrape can arrive.
  let link: MasterConnection | undefined;
  const prom = opts.metrics ? new PromAgentMetrics(() => link?.linkState ?? 'idle') : undefined;
  const connection = new MasterConnection({
    metrics: prom,
    trees,
    web,
    installer,
    sitePhp,
    cron,
    db,
    siteFiles,
    tls,
    driftIntervalMs: opts.driftIntervalMs,
    log: deps.log.child({ component: 'agent.link' }),
    master: opts.master,
    identity,
    roots: opts.roots,
    rootMap,
    detect,
    backoffInitialMs: opts.backoffInitialMs,
    backoffMaxMs: opts.backoffMaxMs,
    capabilityVersion: opts.capabilityVersion,
    liveness: { probeAfterMs: opts.linkProbeMs, deadAfterMs: opts.linkDeadMs },
  });
  link = connection;
  let metricsListener: MetricsListener | undefined;
  if (prom) {
    // Ready = connected to the master (hello answered); the reason names the link state.
    metricsListener = await startMetricsListener(opts.metrics, {
      render: () => prom.render(),
      ready: () => ({ ready: connection.linkState === 'connected', reason: `link ${connection.linkState}` }),
    });
  }
  connection.start();
  deps.log.info({ master: opts.master, roots: opts.roots, root: opts.rootPrefix || '/', metrics: metricsListener?.address ?? '' }, 'agent started');
  return {
    connection,
    metrics: metricsListener?.address ?? '',
    stop: async () => {
      connection.stop();
      await metricsListener?.close();
      fileWorker.close();
      trees.close();
      if (!endRun(opts.stateDir, deps.flush ?? syncAll)) deps.log.warn('sync failed at stop: the next start re-hashes every tree');
      unlock();
      deps.log.info('agent stopped: link closed, trees at rest, state dir unlocked');
    },
  };
}
