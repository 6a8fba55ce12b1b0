/**
 * The schemas of the agent's settings: agent.json (AGENT_JSON) and its environment (AGENT_ENV).
 * They check the values and give their types; `config.ts` reads the file and compiles options
 * from what they return. The `db` section has its own checker (db/settings.ts parseDbSettings).
 */
import { z } from 'zod';
import { CAPABILITY_VERSION, envInt, LOG_LEVEL } from '@spoke/shared';
import type { DbConfigFile } from './db/settings.js';
import { QUARANTINE_MAX_AGE_MS, QUARANTINE_MAX_BYTES } from './converge/quarantine.js';
import { DEAD_AFTER_MS, PROBE_AFTER_MS } from './liveness.js';
import { FETCH_BATCH } from './treefetch.js';
import { checkConfigPath, checkConfigValue, checkFpmAddress, checkListen } from './webtemplate.js';

/** A check that throws (the agent's own value rules) as a schema refinement: `is not valid: <why>`. */
function valid(check: (v: string) => unknown): (v: string, ctx: z.RefinementCtx) => void {
  return (v, ctx) => {
    try {
      check(v);
    } catch (e) {
      ctx.addIssue({ code: 'custom', message: `is not valid: ${(e as Error).message}` });
    }
  };
}

const ACCOUNT_RE = /^([a-z_][a-z0-9_.-]{0,31}|\d+)$/i;
// eslint-disable-next-line no-control-regex
const ARG_RE = /^[^\x00\n]+$/;

const LISTEN_WANTED = 'must be an address or a non-empty array of addresses, e.g. ["80"] or "127.0.0.1:8080"';
const HTTPS_LISTEN_WANTED = 'must be an address or a non-empty array of addresses, e.g. ["443"] or "127.0.0.1:8443"';

/** PORT, HOST:PORT or [IPv6]:PORT, or a non-empty array of them. */
const addresses = (wanted: string) =>
  z
    .union([z.string(), z.array(z.string()).min(1, { error: wanted })], { error: wanted })
    .superRefine((v, ctx) => (typeof v === 'string' ? [v] : v).forEach((l) => valid(checkListen)(l, ctx)));

const argv = z
  .array(z.string().regex(ARG_RE), { error: 'must be a non-empty array of arguments, e.g. ["nginx", "-t"] (no shell string)' })
  .min(1, { error: 'must be a non-empty array of arguments, e.g. ["nginx", "-t"] (no shell string)' });

/** agent.json `http`: paths here are host paths (never mapped through --root). */
export const HTTP_SECTION = z.strictObject({
  /** nginx | apache | none (do not manage a web server). @default detected: nginx, else apache */
  impl: z.enum(['nginx', 'apache', 'none'], { error: (i) => `must be nginx, apache or none (got ${JSON.stringify(i.input)})` }).optional(),
  /** Where platform and site configs are written. @default /etc/nginx/conf.d, /etc/apache2/sites-enabled */
  confDir: z
    .string()
    .superRefine(valid((v) => checkConfigPath('confDir', v)))
    .optional(),
  /** Addresses the platform and site configs listen on: PORT, HOST:PORT, [IPv6]:PORT. The first is where the agent runs site installers (WordPress) against its own server. @default ["80"] */
  listen: addresses(LISTEN_WANTED).optional(),
  /** Config test, argv. @default ["nginx","-t"], ["apache2ctl","configtest"] */
  testCommand: argv.optional(),
  /** Reload, argv. @default ["nginx","-s","reload"], ["apache2ctl","graceful"] */
  reloadCommand: argv.optional(),
  /** Group the web server runs as; owns sites/ and its files dirs. @default www-data */
  webGroup: z
    .string()
    .refine((v) => ACCOUNT_RE.test(v), { error: (i) => `is not a group name (got ${JSON.stringify(i.input)})` })
    .superRefine(valid((v) => checkConfigValue('webGroup', v)))
    .optional(),
  /** Overrides: `<templatesDir>/<impl>/platform.conf`, `site.conf`, `site-disabled.conf` replace the built-in templates. */
  templatesDir: z
    .string()
    .superRefine(valid((v) => checkConfigPath('templatesDir', v)))
    .optional(),
  /** Addresses the 443 blocks of HTTPS sites listen on (PORT, HOST:PORT, [IPv6]:PORT). @default ["443"] */
  httpsListen: addresses(HTTPS_LISTEN_WANTED).optional(),
  /** Where ACME HTTP-01 challenge files go (served at /.well-known/acme-challenge/). @default /var/lib/spoke-agent/acme-challenge (under --root) */
  acmeDir: z
    .string()
    .superRefine(valid((v) => checkConfigPath('acmeDir', v)))
    .optional(),
});

/** agent.json `php`. */
export const PHP_SECTION = z.strictObject({
  /** Socket path or HOST:PORT. @default detected from the pools in /etc/php, else /run/php */
  fpmSocket: z.string().superRefine(valid(checkFpmAddress)).optional(),
  /** The PHP command line binary that runs site installers, updates and one-time logins. @default `php` found on $PATH or in the sbin/bin dirs */
  cli: z
    .string()
    .superRefine(valid((v) => checkConfigPath('cli', v)))
    .optional(),
  /** The account those PHP runs use when the agent is root, so what they write belongs to the web server (php-fpm's pool user). @default www-data */
  user: z
    .string()
    .refine((v) => ACCOUNT_RE.test(v), { error: (i) => `is not a user name (got ${JSON.stringify(i.input)})` })
    .optional(),
});

/** The http and php sections (checked alone by parseWebSettings). */
export const WEB_SECTIONS = z.object({ http: HTTP_SECTION.optional(), php: PHP_SECTION.optional() });

/** agent.json, written by `enroll` and editable by hand. Keys it does not know at the top are kept. */
export const AGENT_JSON = z.looseObject({
  /** Master TLS address, HOST:PORT. */
  master: z.string(),
  /** Server name (the certificate's identity; informational here). */
  server: z.string(),
  /** Cluster joined at enrollment ("" for none). */
  cluster: z.string().optional(),
  /** Namespace paths this agent may write under. @default ["/var/aegir", "/var/www"] */
  roots: z.array(z.string()).optional(),
  http: HTTP_SECTION.optional(),
  php: PHP_SECTION.optional(),
  /** The MariaDB/MySQL server this agent manages site databases on (see DbConfigFile); absent = none. Checked by parseDbSettings. */
  db: z.custom<DbConfigFile>().optional(),
});

/** agent.json as written (the input of AGENT_JSON). */
export type AgentConfigFile = z.input<typeof AGENT_JSON>;

/** The agent's environment settings: each checked, none silently replaced by its default. */
export const AGENT_ENV = z.object({
  /** Reconnect backoff: first delay and cap. */
  SPOKE_BACKOFF_INITIAL_MS: envInt(500),
  SPOKE_BACKOFF_MAX_MS: envInt(15_000),
  /** How often held trees are re-walked to find drift. */
  SPOKE_DRIFT_INTERVAL_MS: envInt(60_000),
  /** Silence from the master after which the agent asks it for an answer, and after which the connection is dead (liveness.ts). */
  SPOKE_LINK_PROBE_MS: envInt(PROBE_AFTER_MS),
  SPOKE_LINK_DEAD_MS: envInt(DEAD_AFTER_MS),
  /** Hashes per FetchBlobs request (tests set it low to cross batches). */
  SPOKE_FETCH_BATCH: envInt(FETCH_BATCH),
  /**
   * The capability version this agent announces, at most its own: it speaks as an older agent
   * (tests of the master's fallbacks; turning a newer feature off on one host).
   */
  SPOKE_CAPABILITY_VERSION: envInt(CAPABILITY_VERSION).refine((v) => v >= 1 && v <= CAPABILITY_VERSION, {
    message: `must be between 1 and ${CAPABILITY_VERSION}`,
  }),
  /** What drift repairs keep in `<state-dir>/quarantine`: at most this many bytes (256 MiB). */
  SPOKE_QUARANTINE_MAX_BYTES: envInt(QUARANTINE_MAX_BYTES),
  /** …for at most this many days. */
  SPOKE_QUARANTINE_MAX_AGE_DAYS: envInt(QUARANTINE_MAX_AGE_MS / 86_400_000),
  SPOKE_LOG_LEVEL: LOG_LEVEL.default('info'),
  /** HOST:PORT of the metrics and readiness listener ("" = off). */
  SPOKE_METRICS: z.string().default(''),
  PATH: z.string().default(''),
});

/** The agent's environment settings, checked. */
export type AgentEnv = z.output<typeof AGENT_ENV>;
