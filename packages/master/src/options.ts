/**
 * Master options: every field optional with a documented default; `compileMasterOptions` turns
 * them into fully-set options once at start-up. Only this module reads the environment.
 */
import { resolve } from 'node:path';
import { z } from 'zod';
import { envInt, fail, LOG_LEVEL, parseEnv, parseHostPort } from '@spoke/shared';
import { DEFAULT_BUILD_LIMITS } from './platforms/buildfs.js';

/** What a caller may set. */
export interface MasterOptions {
  /** State directory (SQLite, CA, socket). @default ./.spoke */
  stateDir?: string;
  /** TLS listener for agents and operator certificates, HOST:PORT (port 0 = ephemeral). @default 127.0.0.1:7443 */
  listen?: string;
  /** Prefix under which canonical copies of namespace paths live. @default "" (the real /) */
  root?: string;
  /** Unix socket for the CLI. @default <stateDir>/spoke.sock */
  socket?: string;
  /** How often agents send heartbeats. @default 5000 (env SPOKE_HEARTBEAT_MS) */
  heartbeatIntervalMs?: number;
  /** An agent is offline when its last heartbeat is older than this. @default 3 × heartbeat */
  heartbeatTtlMs?: number;
  /**
   * After the master starts, a task's command for an agent that was online when the master last
   * stopped waits this long for it to reconnect before failing AGENT_OFFLINE (agents that were
   * already gone then, or never enrolled, are not waited for). 0 turns it off.
   * @default 60000 (env SPOKE_RECONNECT_GRACE_MS)
   */
  agentReconnectGraceMs?: number;
  /**
   * How often the reconcile loop compares desired vs observed trees without an event.
   * @default 30000 (env SPOKE_RECONCILE_MS)
   */
  reconcileIntervalMs?: number;
  /** Wait after a failed converge before the loop retries it (doubles per failure, ≤ 15 min). @default 15000 (env SPOKE_RECONCILE_BACKOFF_MS) */
  reconcileBackoffMs?: number;
  /** Tasks that may run at once. @default 4 */
  taskConcurrency?: number;
  /** `server verify` fails when a root has less free space. @default 256 MiB */
  minFreeBytes?: number;
  /** pino level. @default info (env SPOKE_LOG_LEVEL) */
  logLevel?: string;
  /**
   * Fault injection for tests: corrupt the first data byte of the next N blob streams served
   * (env SPOKE_FAULT_CORRUPT_BLOBS). @default 0
   */
  faultCorruptBlobs?: number;
  /**
   * Environment of the tools that build platforms (git, patch, unzip): PATH, HOME (git config),
   * proxies, SSH agent. Prompts are always turned off. @default the master's own environment
   */
  buildEnv?: Record<string, string | undefined>;
  /** Run sites' cron on schedule (env SPOKE_CRON=off turns it off; `site cron` still runs). @default true */
  cron?: boolean;
  /**
   * Stream a first sync to agents that can take it (capability 15) as the walk reads the tree
   * (env SPOKE_STREAM_FIRST_SYNC=off: every converge by manifest and FetchBlobs). @default true
   */
  streamFirstSync?: boolean;
  /** Cron runs at once across all sites. @default 4 (env SPOKE_CRON_CONCURRENCY) */
  cronConcurrency?: number;
  /** Time between cron scheduler ticks. @default 10000 (env SPOKE_CRON_TICK_MS) */
  cronTickMs?: number;
  /**
   * Directories a build may read local sources from (file and copy downloads, local git
   * repositories, patches, includes); the master's state dir never, whatever this says.
   * (`--build-source-dir`, repeatable) @default [] (each makefile's own directory tree)
   */
  buildSourceDirs?: string[];
  /** Bytes of files one build may produce (`--build-max-bytes`). @default 1 GiB */
  buildMaxBytes?: number;
  /** Files, directories and links one build may produce (`--build-max-entries`). @default 100,000 */
  buildMaxEntries?: number;
  /**
   * How many times its own size an archive may expand to (`--build-max-ratio`); archives that
   * expand to less than 1 MiB are not held to it. @default 100
   */
  buildMaxRatio?: number;
  /** ACME directory URL for site certificates (`--acme-directory`, env SPOKE_ACME_DIRECTORY). @default "" (no ACME) */
  acmeDirectory?: string;
  /** ACME account contact (`--acme-email`, env SPOKE_ACME_EMAIL). @default "" */
  acmeEmail?: string;
  /** PEM bundle trusted for the ACME server's own TLS (`--acme-ca FILE`, env SPOKE_ACME_CA). @default "" (the system's) */
  acmeCa?: string;
  /** Time between certificate renewer ticks. @default 60000 (env SPOKE_HTTPS_TICK_MS) */
  httpsTickMs?: number;
  /**
   * Tests only: a file holding milliseconds the renewer's clock runs ahead of the real one, read
   * at each look (env SPOKE_TEST_CLOCK_OFFSET_FILE). @default "" (the real clock)
   */
  clockOffsetFile?: string;
  /**
   * HTTP listener for Prometheus metrics (`/metrics`) and readiness (`/healthz`, `/readyz`),
   * HOST:PORT (`--metrics`, env SPOKE_METRICS; port 0 = ephemeral). @default "" (off)
   */
  metrics?: string;
}

/** Fully-set master options. */
export type CompiledMasterOptions = Required<MasterOptions>;

/** The master's environment settings: each checked, none silently replaced by its default. */
export const MASTER_ENV = z.object({
  SPOKE_HEARTBEAT_MS: envInt(5000),
  /** 0 = no reconnect grace. */
  SPOKE_RECONNECT_GRACE_MS: envInt(60_000, 0),
  SPOKE_MIN_FREE_BYTES: envInt(256 * 1024 * 1024),
  SPOKE_LOG_LEVEL: LOG_LEVEL.default('info'),
  /** Test hook: corrupt this many blobs served to agents. */
  SPOKE_FAULT_CORRUPT_BLOBS: envInt(0, 0),
  /** "off" disables the cron scheduler. */
  SPOKE_CRON: z.string().optional(),
  /** "off": first syncs go by manifest and FetchBlobs, not StreamTree. */
  SPOKE_STREAM_FIRST_SYNC: z.string().optional(),
  SPOKE_CRON_CONCURRENCY: envInt(4),
  SPOKE_CRON_TICK_MS: envInt(10_000),
  /** As --acme-directory, --acme-email, --acme-ca ("" = none). */
  SPOKE_ACME_DIRECTORY: z.string().default(''),
  SPOKE_ACME_EMAIL: z.string().default(''),
  SPOKE_ACME_CA: z.string().default(''),
  /** Time between certificate renewer ticks. */
  SPOKE_HTTPS_TICK_MS: envInt(60_000),
  /** Tests only: a file holding milliseconds the renewer's clock runs ahead ("" = the real clock). */
  SPOKE_TEST_CLOCK_OFFSET_FILE: z.string().default(''),
  /** HOST:PORT of the metrics and readiness listener ("" = off). */
  SPOKE_METRICS: z.string().default(''),
  SPOKE_RECONCILE_MS: envInt(30_000),
  SPOKE_RECONCILE_BACKOFF_MS: envInt(15_000),
});

/** The master's environment settings, checked. */
export type MasterEnv = z.output<typeof MASTER_ENV>;

function positive(what: string, n: number): number {
  if (!Number.isFinite(n) || n <= 0) throw fail('CONFIG_INVALID', `${what} must be a positive number, not ${String(n)}`);
  return n;
}

function checkAcmeDirectory(url: string): string {
  if (!url) return '';
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw fail('CONFIG_INVALID', `--acme-directory ${JSON.stringify(url)} is not a URL`);
  }
  if (u.protocol !== 'https:') throw fail('CONFIG_INVALID', `--acme-directory must be an https:// URL (RFC 8555), not ${u.protocol}`);
  return url;
}

function checkEmail(e: string): string {
  if (e && !/^[^\s@]+@[^\s@]+$/.test(e)) throw fail('CONFIG_INVALID', `--acme-email ${JSON.stringify(e)} is not an e-mail address`);
  return e;
}

function checkedMetrics(listen: string): string {
  if (listen === '') return '';
  try {
    parseHostPort(listen);
  } catch {
    throw fail('CONFIG_INVALID', `--metrics / SPOKE_METRICS wants HOST:PORT (e.g. 127.0.0.1:9464), not ${JSON.stringify(listen)}`);
  }
  return listen;
}

/** Applies defaults and checks values. @throws SpokeError CONFIG_INVALID */
export function compileMasterOptions(o: MasterOptions = {}, environ: Record<string, string | undefined> = process.env): CompiledMasterOptions {
  const stateDir = resolve(o.stateDir ?? '.spoke');
  const listen = o.listen ?? '127.0.0.1:7443';
  parseHostPort(listen);
  const env = parseEnv(MASTER_ENV, environ);
  const heartbeatIntervalMs = o.heartbeatIntervalMs ?? env.SPOKE_HEARTBEAT_MS;
  return {
    stateDir,
    listen,
    root: o.root ? resolve(o.root) : '',
    socket: o.socket ? resolve(o.socket) : resolve(stateDir, 'spoke.sock'),
    heartbeatIntervalMs,
    heartbeatTtlMs: o.heartbeatTtlMs ?? heartbeatIntervalMs * 3,
    agentReconnectGraceMs: o.agentReconnectGraceMs ?? env.SPOKE_RECONNECT_GRACE_MS,
    reconcileIntervalMs: o.reconcileIntervalMs ?? env.SPOKE_RECONCILE_MS,
    reconcileBackoffMs: o.reconcileBackoffMs ?? env.SPOKE_RECONCILE_BACKOFF_MS,
    taskConcurrency: o.taskConcurrency ?? 4,
    minFreeBytes: o.minFreeBytes ?? env.SPOKE_MIN_FREE_BYTES,
    logLevel: o.logLevel ?? env.SPOKE_LOG_LEVEL,
    faultCorruptBlobs: o.faultCorruptBlobs ?? env.SPOKE_FAULT_CORRUPT_BLOBS,
    buildEnv: o.buildEnv ?? { ...environ },
    cron: o.cron ?? env.SPOKE_CRON !== 'off',
    streamFirstSync: o.streamFirstSync ?? env.SPOKE_STREAM_FIRST_SYNC !== 'off',
    cronConcurrency: o.cronConcurrency ?? env.SPOKE_CRON_CONCURRENCY,
    cronTickMs: o.cronTickMs ?? env.SPOKE_CRON_TICK_MS,
    buildSourceDirs: (o.buildSourceDirs ?? []).map((d) => resolve(d)),
    buildMaxBytes: positive('build max bytes', o.buildMaxBytes ?? DEFAULT_BUILD_LIMITS.maxBytes),
    buildMaxEntries: positive('build max entries', o.buildMaxEntries ?? DEFAULT_BUILD_LIMITS.maxEntries),
    buildMaxRatio: positive('build max ratio', o.buildMaxRatio ?? DEFAULT_BUILD_LIMITS.maxRatio),
    acmeDirectory: checkAcmeDirectory(o.acmeDirectory ?? env.SPOKE_ACME_DIRECTORY),
    acmeEmail: checkEmail(o.acmeEmail ?? env.SPOKE_ACME_EMAIL),
    acmeCa: (o.acmeCa ?? env.SPOKE_ACME_CA) ? resolve(o.acmeCa ?? env.SPOKE_ACME_CA) : '',
    httpsTickMs: o.httpsTickMs ?? env.SPOKE_HTTPS_TICK_MS,
    clockOffsetFile: o.clockOffsetFile ?? env.SPOKE_TEST_CLOCK_OFFSET_FILE,
    metrics: checkedMetrics(o.metrics ?? env.SPOKE_METRICS),
  };
}
