/**
 * Agent configuration: `<stateDir>/agent.json` (written by `enroll`, editable by hand) plus
 * command-line flags. Only this module reads the environment.
 */
import { existsSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { z } from 'zod';
import { checkPublishPath, fail, parseEnv, parseHostPort, parseWith } from '@spoke/shared';
import { SERVICE_BIN_DIRS } from './detect.js';
import { exposesSecrets, parseDbSettings, type DbSettings } from './db/settings.js';
import { AGENT_ENV, AGENT_JSON, WEB_SECTIONS, type AgentConfigFile, type HTTP_SECTION, type PHP_SECTION } from './configschema.js';

/** Default namespace roots an agent may write under. */
export const DEFAULT_ROOTS = ['/var/aegir', '/var/www'];

/** The file format of agent.json (from its schema, configschema.ts). */
export type { AgentConfigFile };

/** agent.json `http`. */
export type HttpConfigFile = z.input<typeof HTTP_SECTION>;

/** agent.json `php`. */
export type PhpConfigFile = z.input<typeof PHP_SECTION>;

/** The web server settings, checked; "" / null mean "the default for the impl". */
export interface HttpSettings {
  /** "" = detect. */
  impl: 'nginx' | 'apache' | 'none' | '';
  confDir: string;
  listen: string[];
  testCommand: string[] | null;
  reloadCommand: string[] | null;
  webGroup: string;
  templatesDir: string;
  /** Where HTTPS sites listen. @default ["443"] */
  httpsListen?: string[];
  /** Host path of the ACME challenge dir ("" or absent = the default under --root). */
  acmeDir?: string;
  /** True when agent.json has an `http` section (an agent with --root manages only an explicit one). */
  configured: boolean;
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
  /** Hashes per FetchBlobs request (SPOKE_FETCH_BATCH; tests set it low to cross batches). */
  fetchBatch: number;
  /** Silence from the master before a probe, and before the connection is dead (liveness.ts). @default 20 s, 45 s (env SPOKE_LINK_PROBE_MS, SPOKE_LINK_DEAD_MS) */
  linkProbeMs: number;
  linkDeadMs: number;
  /** The capability version announced at hello (SPOKE_CAPABILITY_VERSION; default this agent's own). */
  capabilityVersion: number;
  /** What drift repairs keep in `<state-dir>/quarantine`: at most this many bytes. @default 256 MiB (env SPOKE_QUARANTINE_MAX_BYTES) */
  quarantineMaxBytes: number;
  /** …for at most this long. @default 30 days (env SPOKE_QUARANTINE_MAX_AGE_DAYS) */
  quarantineMaxAgeMs: number;
  /** Where service binaries are looked for: $PATH, then the sbin/bin dirs. */
  binDirs: string[];
  /** Web server management (agent.json `http`). */
  http: HttpSettings;
  /** php-fpm socket or HOST:PORT from agent.json ("" = detect). */
  fpmSocket: string;
  /** PHP command line for site tools (agent.json `php.cli`; "" = find `php`). */
  phpCli: string;
  /** Account the PHP command line runs as when the agent is root (agent.json `php.user`). */
  phpUser: string;
  /** Site databases (agent.json `db`); null = this agent manages no database server. */
  db: DbSettings | null;
  /**
   * HTTP listener for Prometheus metrics and readiness (`/metrics`, `/healthz`, `/readyz`),
   * HOST:PORT (`--metrics`, env SPOKE_METRICS). @default "" (off)
   */
  metrics: string;
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

/**
 * Checks agent.json's `http` and `php` sections.
 * @throws SpokeError CONFIG_INVALID
 */
export function parseWebSettings(cfg: Pick<AgentConfigFile, 'http' | 'php'>): { http: HttpSettings; fpmSocket: string; phpCli: string; phpUser: string } {
  const { http: h, php } = parseWith(WEB_SECTIONS, cfg, 'agent.json');
  const listen = h?.listen ?? ['80'];
  const httpsListen = h?.httpsListen ?? ['443'];
  return {
    http: {
      impl: h?.impl ?? '',
      confDir: h?.confDir ?? '',
      listen: typeof listen === 'string' ? [listen] : [...listen],
      testCommand: h?.testCommand ? [...h.testCommand] : null,
      reloadCommand: h?.reloadCommand ? [...h.reloadCommand] : null,
      webGroup: h?.webGroup ?? 'www-data',
      templatesDir: h?.templatesDir ?? '',
      httpsListen: typeof httpsListen === 'string' ? [httpsListen] : [...httpsListen],
      acmeDir: h?.acmeDir ?? '',
      configured: h !== undefined,
    },
    fpmSocket: php?.fpmSocket ?? '',
    phpCli: php?.cli ?? '',
    phpUser: php?.user ?? 'www-data',
  };
}

/** Writes agent.json. */
export function writeAgentConfig(stateDir: string, cfg: AgentConfigFile): void {
  writeFileSync(identityFiles(stateDir).config, `${JSON.stringify(cfg, null, 2)}\n`, { mode: 0o644 });
}

/**
 * Reads agent.json and applies flags.
 * @throws SpokeError NOT_ENROLLED when the state dir has no enrollment, CONFIG_INVALID
 */
export function compileAgentOptions(
  flags: { stateDir: string; root?: string; master?: string; metrics?: string },
  environ: Record<string, string | undefined> = process.env,
): CompiledAgentOptions {
  const stateDir = resolve(flags.stateDir);
  const files = identityFiles(stateDir);
  if (!existsSync(files.config) || !existsSync(files.cert) || !existsSync(files.key)) {
    throw fail('NOT_ENROLLED', `no enrollment in ${stateDir}; run: spoke-agent enroll --master HOST:PORT --token TOKEN --state-dir ${flags.stateDir}`);
  }
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(files.config, 'utf8'));
  } catch (e) {
    throw fail('CONFIG_INVALID', `${files.config} is not valid JSON: ${(e as Error).message}`);
  }
  const cfg = parseWith(AGENT_JSON, raw, 'agent.json');
  const env = parseEnv(AGENT_ENV, environ);
  const master = flags.master ?? cfg.master;
  parseHostPort(master);
  const metrics = flags.metrics ?? env.SPOKE_METRICS;
  if (metrics !== '') {
    try {
      parseHostPort(metrics);
    } catch {
      throw fail('CONFIG_INVALID', `--metrics / SPOKE_METRICS wants HOST:PORT (e.g. 127.0.0.1:9464), not ${JSON.stringify(metrics)}`);
    }
  }
  const web = parseWebSettings(cfg);
  const db = parseDbSettings(cfg.db);
  if (db?.adminPassword && exposesSecrets(statSync(files.config).mode)) {
    throw fail('CONFIG_INVALID', `${files.config} holds db.adminPassword but group or others can read it; run: chmod 600 ${files.config}`);
  }
  return {
    stateDir,
    master,
    server: cfg.server,
    cluster: cfg.cluster ?? '',
    roots: checkRoots(cfg.roots ?? DEFAULT_ROOTS),
    rootPrefix: flags.root && flags.root !== '/' ? resolve(flags.root) : '',
    backoffInitialMs: env.SPOKE_BACKOFF_INITIAL_MS,
    backoffMaxMs: env.SPOKE_BACKOFF_MAX_MS,
    logLevel: env.SPOKE_LOG_LEVEL,
    driftIntervalMs: env.SPOKE_DRIFT_INTERVAL_MS,
    fetchBatch: env.SPOKE_FETCH_BATCH,
    linkProbeMs: env.SPOKE_LINK_PROBE_MS,
    linkDeadMs: env.SPOKE_LINK_DEAD_MS,
    capabilityVersion: env.SPOKE_CAPABILITY_VERSION,
    quarantineMaxBytes: env.SPOKE_QUARANTINE_MAX_BYTES,
    quarantineMaxAgeMs: env.SPOKE_QUARANTINE_MAX_AGE_DAYS * 86_400_000,
    binDirs: [...new Set([...env.PATH.split(':').filter((d) => d.startsWith('/')), ...SERVICE_BIN_DIRS])],
    http: web.http,
    fpmSocket: web.fpmSocket,
    phpCli: web.phpCli,
    phpUser: web.phpUser,
    db,
    metrics,
  };
}
