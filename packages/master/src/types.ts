/**
 * Domain types of the master. The core works with these; gRPC handlers convert them to and from
 * wire messages at the edge (api/convert.ts).
 */
import type { HostFactsInfo } from '@spoke/shared';

/** What a server row is: one agent host, or a named group of agent servers acting as one. */
export type ServerKind = 'agent' | 'cluster';

/** A service as detected by the agent (observed) and/or pinned by an operator (desired). */
export interface ServiceInfo {
  kind: string;
  impl: string;
  version: string;
  detectedImpl: string;
  pinnedImpl: string;
}

/** Host facts an agent reports at hello (defined with the agent command protocol). */
export type { HostFactsInfo };

/** A server as the operator sees it. */
export interface ServerInfo {
  name: string;
  kind: ServerKind;
  cluster: string | null;
  members: string[];
  online: boolean;
  /** For a cluster: its members online now (some but not all: the cluster is degraded). */
  membersOnline: string[];
  lastSeenMs: number | null;
  enrolled: boolean;
  services: ServiceInfo[];
  facts: HostFactsInfo | null;
  platforms: string[];
  createdMs: number;
  certFingerprint: string | null;
  capabilityVersion: number | null;
}

/** Where a platform's code comes from. */
export type PlatformSource =
  | { kind: 'existing' }
  /**
   * `makefileDir`: absolute directory the makefile was read from (on the host the CLI ran on);
   * its relative includes, patches and downloads resolve there. Absent when not known.
   */
  | { kind: 'makefile'; makefile: string; makefileName: string; makefileDir?: string }
  | { kind: 'git'; url: string; ref: string };

/**
 * Platform status: pending (registered, never verified) → verifying → ready | failed;
 * ready/failed → verifying on each verify.
 */
export type PlatformStatus = 'pending' | 'verifying' | 'ready' | 'failed';

/** A platform row. */
export interface PlatformInfo {
  name: string;
  path: string;
  server: string;
  source: PlatformSource;
  status: PlatformStatus;
  registryJson: string | null;
  live: boolean;
  sites: string[];
  createdMs: number;
  /** Root hash of the master's canonical tree at the last scan (null before the first verify). */
  desiredRootHash: string | null;
  /** Extra exclude patterns for this platform's tree. */
  excludes: string[];
  /** What a drift check that finds hand edits on a server leads to (see DriftMode). */
  drift: DriftMode;
}

/**
 * What Spoke does when an agent finds a platform tree differs from what it last converged (hand
 * edits): `repair` queues a converge that puts the tree back, keeping what it removes or
 * overwrites in the server's quarantine; `report` only reports it (`platform status`, the task
 * log) and changes nothing until an operator runs `platform verify`, which repairs.
 */
export type DriftMode = 'repair' | 'report';

/**
 * Site status, driven by the site tasks: installing (site.install running) → installed; a failed
 * install is rolled back (the row goes). installed ⇄ disabled (site.disable / site.enable);
 * deleting while site.delete runs; failed is accepted by every task but set by none today.
 * pending: the default of a bare createSite. The allowed changes are the table
 * SITE_STATUS_TRANSITIONS (namespace/sites.ts), checked by Namespace.setSiteStatus.
 */
export type SiteStatus = 'pending' | 'installing' | 'installed' | 'disabled' | 'failed' | 'deleting';

/** A site row with its aliases. The database password and the salt are never in here. */
export interface SiteInfo {
  domain: string;
  platform: string;
  server: string;
  dbServer: string | null;
  profile: string | null;
  aliases: string[];
  status: SiteStatus;
  createdMs: number;
  /** Database and user on the db server (null before the install reserved them). */
  dbName: string | null;
  dbUser: string | null;
  /** How the web servers reach the database (from the db agent), null until created. */
  dbHost: string | null;
  dbPort: number | null;
  installedMs: number | null;
  /** The settings file is the site's own (imported and kept): Spoke does not render it. */
  ownSettings: boolean;
  /** The aliases answer with a 301 to the domain. */
  redirectAliases: boolean;
  /** Seconds between scheduled cron runs; 0 = off. */
  cronIntervalS: number;
  /**
   * Old names of a renamed site that answer a 301 to its domain until `untilMs` (then dropped:
   * sites/formernames.ts). Taken while listed; not aliases. Absent: none.
   */
  formerNames?: FormerName[];
}

/** A renamed site's old name, redirecting to the site for a grace period. */
export interface FormerName {
  name: string;
  untilMs: number;
}

/** What only the site tasks read: rendered into the settings files, never printed. */
export interface SiteSecrets {
  dbPassword: string;
  salt: string;
}

/**
 * Task states. Transitions: queued → running | cancelled; running → succeeded | failed |
 * cancelled. Final states never change. A task found `running` at start-up becomes failed.
 */
export type TaskState = 'queued' | 'running' | 'succeeded' | 'failed' | 'cancelled';

/** A task row. */
export interface TaskInfo {
  id: number;
  kind: string;
  entity: string;
  state: TaskState;
  params: Record<string, unknown>;
  result: unknown;
  errorCode: string | null;
  errorMessage: string | null;
  createdMs: number;
  startedMs: number | null;
  finishedMs: number | null;
}

/** One task log line. */
export interface TaskLogEntry {
  taskId: number;
  seq: number;
  tsMs: number;
  level: 'info' | 'warn' | 'error';
  message: string;
}

/** Milliseconds since the epoch; passed in so tests can control time. */
export type Clock = () => number;
