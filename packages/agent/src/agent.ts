/**
 * Builds and starts an agent from compiled options and injected dependencies.
 */
import { readFileSync } from 'node:fs';
import { RootMap, type Logger } from '@spoke/shared';
import { identityFiles, type CompiledAgentOptions } from './config.js';
import { MasterConnection } from './connection.js';
import { detectServices, type DetectedService } from './detect.js';
import { AgentTrees } from './sync.js';

/** A running agent. */
export interface RunningAgent {
  connection: MasterConnection;
  stop(): Promise<void>;
}

/** Starts an agent: loads its identity, finishes interrupted converges, and dials the master. */
export async function startAgent(
  opts: CompiledAgentOptions,
  deps: { log: Logger; detect?: () => Promise<DetectedService[]> },
): Promise<RunningAgent> {
  const files = identityFiles(opts.stateDir);
  const identity = {
    caPem: readFileSync(files.ca, 'utf8'),
    certPem: readFileSync(files.cert, 'utf8'),
    keyPem: readFileSync(files.key, 'utf8'),
  };
  const rootMap = new RootMap(opts.rootPrefix);
  const trees = new AgentTrees({ stateDir: opts.stateDir, roots: opts.roots, rootMap, log: deps.log.child({ component: 'agent.trees' }) });
  await trees.startup();
  const connection = new MasterConnection({
    trees,
    driftIntervalMs: opts.driftIntervalMs,
    log: deps.log.child({ component: 'agent.link' }),
    master: opts.master,
    identity,
    roots: opts.roots,
    rootMap,
    detect: deps.detect ?? (() => detectServices(opts.binDirs)),
    backoffInitialMs: opts.backoffInitialMs,
    backoffMaxMs: opts.backoffMaxMs,
  });
  connection.start();
  deps.log.info({ master: opts.master, server: opts.server, roots: opts.roots, root: opts.rootPrefix || '/' }, 'agent started');
  return {
    connection,
    stop: async () => {
      connection.stop();
    },
  };
}
