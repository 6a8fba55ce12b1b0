/**
 * The agent command protocol in domain terms: every command the master sends to an agent, the
 * result it gets back, and the lowest agent capability that knows it. Master (hub) and agent
 * (connection + handlers) both use these types; the wire form lives in proto/ and is converted
 * at the edges by `commandwire.ts`.
 *
 * Adding a command: the proto (a MasterCommand and a CommandResult oneof case with the same
 * name), an entry in `AgentCommands`, `AgentCommandResults` and `COMMAND_CAPABILITY` here and in
 * `COMMAND_CODECS` (commandwire.ts), one agent handler (agent/src/handlers.ts), one master caller.
 * Every map is total over the command union, so a missing entry is a compile error.
 */

/** Host facts an agent reports at hello and in server verify. */
export interface HostFactsInfo {
  hostname: string;
  os: string;
  arch: string;
  agentVersion: string;
  /** Namespace roots this agent may write (absolute namespace paths). */
  roots: string[];
  /** --root prefix on the host ("" = /). */
  rootPrefix: string;
  cpus: number;
  memoryBytes: number;
}

/** A service an agent detected. */
export interface DetectedServiceReport {
  /** http | db | php */
  kind: string;
  /** nginx | apache | mariadb | mysql | php-fpm */
  impl: string;
  version: string;
  /** The binary found ("" when unknown). */
  binary: string;
}

/** One root an agent checked during verify. */
export interface RootCheck {
  /** Namespace path. */
  path: string;
  /** Where it lives on the host (--root applied). */
  hostPath: string;
  writable: boolean;
  freeBytes: number;
  totalBytes: number;
  error: string;
}

/** Paths that differ from a committed state (lists may be cut short; `total` counts all). */
export interface DriftInfo {
  changed: string[];
  added: string[];
  removed: string[];
  total: number;
}

/** A path an agent could not converge without losing user data. */
export interface ConflictInfo {
  path: string;
  /** What the platform has there: "file" | "symlink". */
  wanted: string;
  /** The user data in the way. */
  userData: string;
}

/** One quarantine entry on an agent: what a drift repair removed or overwrote, kept (capability 13). */
export interface QuarantineInfo {
  id: string;
  atMs: number;
  /** Directory on the agent's host holding the files at their tree-relative paths. */
  dir: string;
  files: number;
  bytes: number;
  /** The first 100 paths. */
  paths: string[];
  /** Paths lost without a copy (over the size bound). */
  skipped: number;
}

/** What the site tool can do on an agent. */
export type SiteToolOp = 'loginUrl' | 'updates' | 'update';

/** A database update of a Drupal site. */
export interface SiteUpdateInfo {
  module: string;
  /** hook_update_N number or post-update function. */
  update: string;
  description: string;
}

// ---- commands -------------------------------------------------------------------------------

/** One converge of a tree to a desired root hash. */
export interface ConvergeRequest {
  tree: string;
  rootHash: string;
  /** Extra excludes (the default user-data and VCS excludes always apply). */
  excludes: string[];
  /** For logs, e.g. "platform d7". */
  label: string;
  /** Settings files the agent gives to the web group after the apply (relative to the tree). */
  webGroupFiles?: string[];
  /**
   * Re-observe the tree on disk before deciding (an operator's verify), instead of trusting what
   * was last committed. An agent that does not know the field trusts its last commit, as before.
   */
  recheck?: boolean;
  /**
   * Report drift instead of repairing it (platforms with `--drift report`): a tree that differs
   * from what was last committed is left as it is and the converge fails with DRIFT_FOUND.
   * Agents below capability 13 ignore it and repair.
   */
  reportDrift?: boolean;
  /**
   * A first sync through StreamTree (capability 15): `rootHash` is empty, the master's walk is
   * still running and sends the tree as it reads it. An agent that holds something of the tree
   * converges from the manifest that walk finds (GetManifest + FetchBlobs) instead.
   */
  stream?: boolean;
}

/** One platform to configure on a web server. */
export interface ConfigurePlatformRequest {
  platform: string;
  /** Namespace path of the platform. */
  tree: string;
  /** Registry kind (drupal7, wordpress, generic, …). */
  kind: string;
  /** The http impl an operator pinned for this server ("" = none). */
  pinnedImpl: string;
}

/** A site database and its account. `hosts` are the site's web hosts (every cluster member). */
export interface DbAccountRequest {
  database: string;
  user: string;
  /** The site's own password (never the admin's); never logged. */
  password: string;
  hosts: string[];
}

/** One site to configure on a web server: the vhost, files dirs and settings-file group. */
export interface ConfigureSiteRequest {
  domain: string;
  platform: string;
  /** Namespace path of the platform. */
  tree: string;
  kind: string;
  aliases: string[];
  /** The aliases answer 301 to the domain. */
  redirectAliases: boolean;
  /**
   * Names that only answer 301 to the domain whatever `redirectAliases` says: a renamed site's
   * old name during its grace period (capability 14; an older agent would ignore them). @default []
   */
  redirectNames?: string[];
  /** false: every name answers 503 with a maintenance page. */
  enabled: boolean;
  /** Paths relative to the platform root the web group must read (settings files): chgrp, mode 0640. */
  webGroupFiles: string[];
  /** The http impl an operator pinned for this server ("" = none). */
  pinnedImpl: string;
  /**
   * The site's certificate and key for its 443 block (needs HTTPS_CAPABILITY, 12; the key is
   * never logged). null/absent: the site answers on http.listen only.
   */
  tls?: SiteTlsConfig | null;
}

/** A site's certificate as ConfigureSite carries it. */
export interface SiteTlsConfig {
  /** Leaf first, then the chain. */
  certPem: string;
  keyPem: string;
  /** Port 80 answers 301 to https (the ACME challenge path excepted). */
  redirect: boolean;
  /** Strict-Transport-Security on the 443 block. */
  hsts: boolean;
}

/** An ACME HTTP-01 challenge answer every site vhost serves on port 80 (capability 12). */
export interface AcmeChallengeRequest {
  /** base64url, checked by the agent. */
  token: string;
  keyAuthorization: string;
  /** Delete the challenge file instead. */
  remove: boolean;
}

/** One site to remove from a web server. */
export interface RemoveSiteRequest {
  domain: string;
  /** Namespace path of the platform. */
  tree: string;
  /** Also remove sites/<domain>/files and private (user data). */
  deleteFiles: boolean;
  pinnedImpl: string;
}

/** A site installer run (the admin password is never logged). */
export interface InstallSiteRequest {
  domain: string;
  kind: string;
  title: string;
  adminUser: string;
  adminEmail: string;
  /** Never logged. */
  adminPassword: string;
  /** Namespace path of the platform (Drupal). */
  tree: string;
  /** Drupal install profile (checked by the master against the platform's profiles). */
  profile: string;
  /** Drupal locale / langcode. */
  locale: string;
}

/** A site tool run; tokenHash/ttlSeconds only for a WordPress login link. */
export interface SiteToolRequest {
  tree: string;
  domain: string;
  kind: string;
  op: SiteToolOp;
  tokenHash?: string;
  ttlSeconds?: number;
}

/** A site's user files (files/ and private/ of sites/<domain>) on a web server. */
export interface SiteFilesRequest {
  /** Namespace path of the platform. */
  tree: string;
  domain: string;
}

/** A cron run of a site. */
export interface SiteCronRequest {
  /** Namespace path of the platform. */
  tree: string;
  domain: string;
  /** Registry kind: drupal7, drupal8, wordpress, mediawiki. */
  kind: string;
}

/** A platform leaving a web server. */
export interface ForgetPlatformRequest {
  platform: string;
  /** Namespace path of the platform. */
  tree: string;
  pinnedImpl: string;
  /** Also delete the tree (a non-empty sites/<site>/files or private is kept). */
  removeTree: boolean;
}

/**
 * Every command the master can send, by name. Commands that move bytes need a CallOptions
 * stream on the master: dbDump `dumpTo`, dbRestore `restoreFrom`, siteFilesPack `filesTo`,
 * siteFilesUnpack `filesFrom`.
 */
export interface AgentCommands {
  verifyServer: { minFreeBytes: number };
  ping: Record<never, never>;
  converge: ConvergeRequest;
  treeStatus: { tree: string; excludes: string[] };
  configurePlatform: ConfigurePlatformRequest;
  dbCreate: DbAccountRequest;
  dbDrop: Omit<DbAccountRequest, 'password'>;
  dbGrants: DbAccountRequest;
  dbDump: { database: string };
  dbRestore: { database: string };
  configureSite: ConfigureSiteRequest;
  removeSite: RemoveSiteRequest;
  installSite: InstallSiteRequest;
  siteTool: SiteToolRequest;
  siteCron: SiteCronRequest;
  siteFilesPack: SiteFilesRequest;
  /** replace=false: refused when the site already has files. */
  siteFilesUnpack: SiteFilesRequest & { replace: boolean };
  forgetPlatform: ForgetPlatformRequest;
  acmeChallenge: AcmeChallengeRequest;
}

/** The name of an agent command. */
export type AgentCommandType = keyof AgentCommands;

/** One agent command: its name in `type` and its fields. */
export type AgentCommand = { [K in AgentCommandType]: { type: K } & AgentCommands[K] }[AgentCommandType];

// ---- results --------------------------------------------------------------------------------

/** What `server verify` gets back from one agent. */
export interface VerifyReport {
  services: DetectedServiceReport[];
  roots: RootCheck[];
  facts: HostFactsInfo | null;
}

/** What one agent did in a converge. */
export interface ConvergeReport {
  /** Nothing had to change. */
  inSync: boolean;
  rootHash: string;
  added: number;
  changed: number;
  removed: number;
  filesFetched: number;
  bytesFetched: number;
  filesReused: number;
  bytesReused: number;
  ms: number;
  /** What differed from the last committed state (hand edits). */
  drift: DriftInfo;
  /** Paths skipped for user data in the way (capability 11); then rootHash is what was committed. */
  conflicts: ConflictInfo[];
  /** With conflicts: the root hash that was asked for. */
  wantedRootHash: string;
  /** What a drift repair kept in the agent's quarantine (absent: nothing hand-made was lost; capability 13). */
  quarantined?: QuarantineInfo;
  /** Received through StreamTree as the master walked the tree (capability 15). */
  streamed?: boolean;
}

/** The report of a converge that found the tree as wanted: nothing fetched, changed or drifted. */
export function inSyncReport(rootHash: string, ms = 0): ConvergeReport {
  return {
    inSync: true,
    rootHash,
    added: 0,
    changed: 0,
    removed: 0,
    filesFetched: 0,
    bytesFetched: 0,
    filesReused: 0,
    bytesReused: 0,
    ms,
    drift: { changed: [], added: [], removed: [], total: 0 },
    conflicts: [],
    wantedRootHash: '',
  };
}

/** What an agent holds for a tree. */
export interface TreeStatusReport {
  /** What the agent last converged to ("" = never). */
  committedRootHash: string;
  /** What is on disk now. */
  actualRootHash: string;
  exists: boolean;
  /** Actual against committed. */
  drift: DriftInfo;
  /** What the last converge skipped (capability 11; [] from older agents). */
  conflicts: ConflictInfo[];
  /** What drift repairs of this tree kept, oldest first (capability 13; [] from older agents). */
  quarantine: QuarantineInfo[];
}

/** What an agent did to its web server for a platform. */
export interface PlatformConfigReport {
  /** nginx | apache */
  impl: string;
  /** The config file on the agent's host. */
  path: string;
  /** The file was written (false: it already was as rendered). */
  changed: boolean;
  /** The server's config test ran and passed. */
  tested: boolean;
  reloaded: boolean;
  /** What the agent waited for after the reload, until the new config served (reloadwait.ts). @default "" */
  reloadWait?: string;
  /** Permission fixes made under the platform's sites/ (for a site: created dirs too). */
  fixed: string[];
  /** What the agent could not fix or found wrong (warnings). */
  problems: string[];
}

/** What an agent did to its web server for a site (the vhost, files dirs, settings files). */
export type SiteConfigReport = PlatformConfigReport;

/** What a db agent granted (dbCreate, dbGrants): account hosts after its grantHosts mapping. */
export interface DbGrantsReport {
  hosts: string[];
  added: string[];
  removed: string[];
  /** How web servers reach the database server (agent.json db.siteHost/sitePort); "" / 0 from an agent that does not say. */
  siteHost: string;
  sitePort: number;
}

/** What a db agent dropped. */
export interface DbDropReport {
  databaseExisted: boolean;
  /** Account hosts dropped. */
  usersDropped: string[];
}

/** Bytes a dump or restore moved. */
export interface BytesReport {
  bytes: number;
}

/** What an agent removed for a site. */
export interface SiteRemoveReport {
  impl: string;
  /** The vhost file on the agent's host. */
  path: string;
  /** The vhost existed and was removed (false: already gone). */
  removed: boolean;
  reloaded: boolean;
  /** As PlatformConfigReport.reloadWait. @default "" */
  reloadWait?: string;
  /** With deleteFiles: what was deleted, relative to the platform root. */
  deleted: string[];
  problems: string[];
}

/** What a site installer run did. */
export interface SiteInstallReport {
  /** The installer ran and succeeded. */
  ran: boolean;
  /** Why it did not run ("" when it ran), e.g. "Spoke has no non-interactive installer for kind generic; ...". */
  reason: string;
  /** The site's address. */
  url: string;
  /** The Drupal profile installed ("" for other kinds). */
  profile: string;
}

/** What the site tool answered. */
export interface SiteToolReport {
  /** loginUrl (Drupal): the one-time link; "" for WordPress (the master makes the link). */
  url: string;
  /** loginUrl: the account the link logs in as. */
  user: string;
  /** updates: pending ones; update: what is still pending after the run. */
  pending: SiteUpdateInfo[];
  /** update: what ran. */
  ran: SiteUpdateInfo[];
}

/** What one cron run did on an agent. */
export interface SiteCronReport {
  /** What ran, e.g. "GET /cron/… via 127.0.0.1:80" (the key elided). */
  method: string;
  /** HTTP status (0 for runJobs.php). */
  status: number;
  /** One line: what the site answered. */
  message: string;
  ms: number;
}

/** What an agent packed of a site's user files. */
export interface SiteFilesPackReport {
  /** Tar bytes sent. */
  bytes: number;
  entries: number;
  /** Left out, with why (sockets, FIFOs, links leaving the site dir). */
  skipped: string[];
}

/** What an agent unpacked into a site's user files. */
export interface SiteFilesUnpackReport {
  bytes: number;
  entries: number;
  /** The parts swapped in: "files", "private". */
  replaced: string[];
}

/** What an agent removed for a platform leaving it. */
export interface PlatformForgetReport {
  /** The config file existed and was removed. */
  configRemoved: boolean;
  reloaded: boolean;
  /** The config file (host path; "" without a web server). */
  configPath: string;
  /** removeTree: the tree is gone (false: absent already, or user data kept). */
  treeRemoved: boolean;
  /** removeTree: user-data dirs kept, relative to the platform root. */
  kept: string[];
  problems: string[];
}

/** What an agent did for an ACME challenge. */
export interface AcmeChallengeReport {
  /** The challenge file (host path). */
  path: string;
}

/** The result of each command. */
export interface AgentCommandResults {
  verifyServer: VerifyReport;
  ping: null;
  converge: ConvergeReport;
  treeStatus: TreeStatusReport;
  configurePlatform: PlatformConfigReport;
  dbCreate: DbGrantsReport;
  dbDrop: DbDropReport;
  dbGrants: DbGrantsReport;
  dbDump: BytesReport;
  dbRestore: BytesReport;
  configureSite: SiteConfigReport;
  removeSite: SiteRemoveReport;
  installSite: SiteInstallReport;
  siteTool: SiteToolReport;
  siteCron: SiteCronReport;
  siteFilesPack: SiteFilesPackReport;
  siteFilesUnpack: SiteFilesUnpackReport;
  forgetPlatform: PlatformForgetReport;
  acmeChallenge: AcmeChallengeReport;
}

/**
 * The lowest agent capability (capability.ts) that knows each command. Total over the command
 * union: a new command without an entry does not compile.
 */
export const COMMAND_CAPABILITY: { readonly [K in AgentCommandType]: number } = {
  verifyServer: 1,
  ping: 1,
  converge: 8,
  treeStatus: 8,
  configurePlatform: 3,
  dbCreate: 4,
  dbDrop: 4,
  dbGrants: 4,
  dbDump: 4,
  dbRestore: 4,
  configureSite: 5,
  removeSite: 5,
  installSite: 5,
  siteTool: 9,
  siteCron: 10,
  siteFilesPack: 6,
  siteFilesUnpack: 6,
  forgetPlatform: 7,
  acmeChallenge: 12,
};
