/**
 * Agent configuration: `<stateDir>/agent.json` (written by `enroll`, editable by hand) plus
 * command-line flags. Only this module reads the environment.
 */
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { checkPublishPath, fail, parseHostPort } from '@spoke/shared';
import { SERVICE_BIN_DIRS } from './detect.js';

/** Default namespace roots an agent may write under. */
export const DEFAULT_ROOTS = ['/var/aegir', '/var/www'];

/** The file format of agent.json. */
export interface AgentConfigFile {
  /** Master TLS address, HOST:PORT. */
  master: string;
  /** Server name (the certificate's identity; informational here). */
  server: string;
  /** Cluster joined at enrollment ("" for none). */
  cluster?: string;
  /** Namespace paths this agent may write under. @default ["/var/aegir", "/var/www"] */
  roots?: string[];
}

/** Fully-set agent options. */
export interface CompiledAgentOptions {
  stateDir: string;
  master: string;
  server: string;
  cluster: string;
  roots: string[];
  /** `--root` prefix that stands for `/` on this host ("" = real root). */
  rootPrefix: string;
  /** Reconnect backoff: first delay and cap. @default 500 ms, 15 s (env SPOKE_BACKOFF_MAX_MS) */
  backoffInitialMs: number;
  backoffMaxMs: number;
  logLevel: string;
  /** How often held trees are re-walked to find drift. @default 60000 (env SPOKE_DRIFT_INTERVAL_MS) */
  driftIntervalMs: number;
  /** Where service binaries are looked for: $PATH, then the sbin/bin dirs. */
  binDirs: string[];
}

/** Paths of the agent's identity files. */
export function identityFiles(stateDir: string): { key: string; cert: string; ca: string; config: string } {
  return {
    key: join(stateDir, 'agent.key'),
    cert: join(stateDir, 'agent.crt'),
    ca: join(stateDir, 'ca.crt'),
    config: join(stateDir, 'agent.json'),
  };
}

/** Checks a roots list: absolute normalised paths. @throws SpokeError CONFIG_INVALID */
export function checkRoots(roots: string[]): string[] {
  if (roots.length === 0) throw fail('CONFIG_INVALID', 'an agent needs at least one root');
  return roots.map((r) => {
    try {
      return checkPublishPath(r);
    } catch (e) {
      throw fail('CONFIG_INVALID', `root ${JSON.stringify(r)} is not an absolute normalised path`);
    }
  });
}

/** Writes agent.json. */
export function writeAgentConfig(stateDir: string, cfg: AgentConfigFile): void {
  writeFileSync(identityFiles(stateDir).config, `${JSON.stringify(cfg, null, 2)}\n`, { mode: 0o644 });
}

/**
 * Reads agent.json and applies flags.
 * @throws SpokeError NOT_ENROLLED when the state dir has no enrollment, CONFIG_INVALID
 */
export function compileAgentOptions(flags: { stateDir: string; root?: string; master?: string }): CompiledAgentOptions {
  const stateDir = resolve(flags.stateDir);
  const files = identityFiles(stateDir);
  if (!existsSync(files.config) || !existsSync(files.cert) || !existsSync(files.key)) {
    throw fail('NOT_ENROLLED', `no enrollment in ${stateDir}; run: spoke-agent enroll --master HOST:PORT --token TOKEN --state-dir ${flags.stateDir}`);
  }
  let cfg: AgentConfigFile;
  try {
    cfg = JSON.parse(readFileSync(files.config, 'utf8')) as AgentConfigFile;
  } catch (e) {
    throw fail('CONFIG_INVALID', `${files.config} is not valid JSON: ${(e as Error).message}`);
  }
  const master = flags.master ?? cfg.master;
  parseHostPort(master);
  const envInt = (name: string, d: number) => {
    const v = Number(process.env[name]);
    return Number.isFinite(v) && v > 0 ? v : d;
  };
  return {
    stateDir,
    master,
    server: cfg.server,
    cluster: cfg.cluster ?? '',
    roots: checkRoots(cfg.roots ?? DEFAULT_ROOTS),
    rootPrefix: flags.root && flags.root !== '/' ? resolve(flags.root) : '',
    backoffInitialMs: envInt('SPOKE_BACKOFF_INITIAL_MS', 500),
    backoffMaxMs: envInt('SPOKE_BACKOFF_MAX_MS', 15_000),
    logLevel: process.env.SPOKE_LOG_LEVEL ?? 'info',
    driftIntervalMs: envInt('SPOKE_DRIFT_INTERVAL_MS', 60_000),
    binDirs: [...new Set([...(process.env.PATH ?? '').split(':').filter((d) => d.startsWith('/')), ...SERVICE_BIN_DIRS])],
  };
}
