/**
 * What the agent does for each command the master sends: one handler per command, in a map
 * total over the command union of `@spoke/shared` (commands.ts), so a command without a handler
 * does not compile. Handlers take and return domain types; the connection (the wire edge)
 * decodes the command, runs its handler and encodes the result.
 */
import os from 'node:os';
import type { Readable } from 'node:stream';
import {
  CAPABILITY_VERSION,
  SPOKE_VERSION,
  fail,
  type AgentCommandResults,
  type AgentCommands,
  type AgentCommandType,
  type HostFactsInfo,
  type Logger,
  type RootMap,
  type SiteToolReport,
  type SiteToolRequest,
  type SiteUpdateInfo,
} from '@spoke/shared';
import { checkRoots } from './checks.js';
import type { DetectedService } from './detect.js';
import type { AgentTrees, ProgressFn } from './sync.js';
import type { WebConfig } from './webconfig.js';
import type { SiteInstaller } from './siteinstall.js';
import type { SitePhp } from './php/sitephp.js';
import type { SiteCron } from './sitecron.js';
import type { SiteDatabases } from './db/index.js';
import type { SiteFileTransfer } from './sitetransfer.js';
import type { SiteTlsStore } from './tls/sitetls.js';
import { forgetPlatform } from './forget.js';

/** What the handlers need from the rest of the agent. */
export interface CommandDeps {
  log: Logger;
  roots: string[];
  rootMap: RootMap;
  detect: () => Promise<DetectedService[]>;
  /** Tree management (converge, status, observed hashes). */
  trees: AgentTrees;
  /** Web server config for platforms and sites. */
  web: Pick<WebConfig, 'configurePlatform' | 'configureSite' | 'removeSite' | 'removePlatform' | 'settingsToWebGroup'>;
  /** Site installers (WordPress over HTTP, Drupal through the site tool). */
  installer: Pick<SiteInstaller, 'install'>;
  /** Spoke's site tool (one-time login links, database updates). */
  sitePhp: Pick<SitePhp, 'run'>;
  /** Sites' cron runs (capability 10). */
  cron: Pick<SiteCron, 'run'>;
  /** Site databases (agent.json `db`); null when this agent manages no database server. */
  db?: Pick<SiteDatabases, 'createSiteDb' | 'dropSiteDb' | 'setGrants' | 'dumpSiteDb' | 'restoreSiteDb' | 'siteAddress'> | null;
  /** Sites' user files to and from the master (capability 6); absent: those commands fail. */
  siteFiles?: Pick<SiteFileTransfer, 'pack' | 'unpack'> | null;
  /** ACME HTTP-01 challenge files (capability 12); absent: AcmeChallenge fails. */
  tls?: Pick<SiteTlsStore, 'challenge'> | null;
}

/** What a handler gets from the connection for the command it runs. */
export interface CommandContext {
  /** Reports progress of this command to the master. */
  progress: ProgressFn;
  /** Uploads a stream for this command (channel dump: PutDump, files: PutFiles); resolves to the bytes sent. */
  upload(data: Readable, channel: 'dump' | 'files'): Promise<number>;
  /** This command's stream from the master (dump: GetDump, files: GetFiles). */
  download(channel: 'dump' | 'files'): Readable;
}

/** Runs one command. */
export type CommandHandler<K extends AgentCommandType> = (cmd: AgentCommands[K], ctx: CommandContext) => Promise<AgentCommandResults[K]>;

/** A handler for every command. */
export type CommandHandlers = { readonly [K in AgentCommandType]: CommandHandler<K> };

/** This host's facts, as hello and server verify report them. */
export function hostFacts(roots: string[], rootMap: RootMap): HostFactsInfo {
  return {
    hostname: os.hostname(),
    os: `${os.type()} ${os.release()}`,
    arch: os.arch(),
    agentVersion: SPOKE_VERSION,
    roots,
    rootPrefix: rootMap.prefix,
    cpus: os.cpus().length,
    memoryBytes: os.totalmem(),
  };
}

/** The agent's command handlers over its components. */
export function commandHandlers(deps: CommandDeps): CommandHandlers {
  /** @throws SpokeError DB_NOT_CONFIGURED */
  const siteDbs = (): NonNullable<CommandDeps['db']> => {
    if (!deps.db) throw fail('DB_NOT_CONFIGURED', 'this agent manages no database server: add a db section to its agent.json and restart it');
    return deps.db;
  };
  /** @throws SpokeError INTERNAL */
  const siteFiles = (): NonNullable<CommandDeps['siteFiles']> => {
    if (!deps.siteFiles) throw fail('INTERNAL', 'this agent was started without site file transfers');
    return deps.siteFiles;
  };
  return {
    ping: async () => null,
    verifyServer: async () => {
      const [services, roots] = await Promise.all([deps.detect(), checkRoots(deps.roots, deps.rootMap)]);
      return {
        services: services.map((s) => ({ kind: s.kind, impl: s.impl, version: s.version, binary: s.binary })),
        roots,
        facts: hostFacts(deps.roots, deps.rootMap),
      };
    },
    converge: async (c, ctx) => {
      const r = await deps.trees.converge(c, ctx.progress);
      if (c.webGroupFiles?.length) {
        const g = await deps.web.settingsToWebGroup(c.tree, c.webGroupFiles);
        if (g.fixed.length) deps.log.info({ tree: c.tree, fixed: g.fixed }, 'settings files given to the web group');
        for (const problem of g.problems) deps.log.warn({ tree: c.tree, problem }, 'settings file');
      }
      return r;
    },
    treeStatus: (c) => deps.trees.status(c.tree, c.excludes),
    configurePlatform: (c) => deps.web.configurePlatform(c),
    configureSite: (c) => deps.web.configureSite(c),
    removeSite: (c) => deps.web.removeSite(c),
    forgetPlatform: (c) => forgetPlatform({ web: deps.web, trees: deps.trees }, c),
    installSite: (c) => deps.installer.install(c),
    siteTool: (c) => runSiteTool(deps.sitePhp, c),
    siteCron: (c) => deps.cron.run(c),
    dbCreate: async (c) => {
      const dbs = siteDbs();
      const r = await dbs.createSiteDb(c);
      const at = dbs.siteAddress();
      return { hosts: r.hosts, added: r.added, removed: r.removed, siteHost: at.host, sitePort: at.port };
    },
    dbDrop: (c) => siteDbs().dropSiteDb(c),
    dbGrants: async (c) => {
      const dbs = siteDbs();
      const r = await dbs.setGrants(c);
      const at = dbs.siteAddress();
      return { hosts: r.hosts, added: r.added, removed: r.removed, siteHost: at.host, sitePort: at.port };
    },
    dbDump: async (c, ctx) => {
      const dump = await siteDbs().dumpSiteDb(c.database);
      return { bytes: await ctx.upload(dump, 'dump') };
    },
    dbRestore: async (c, ctx) => {
      const dbs = siteDbs();
      const download = ctx.download('dump');
      const r = await dbs.restoreSiteDb(c.database, download).finally(() => download.destroy());
      return { bytes: r.bytes };
    },
    siteFilesPack: async (c, ctx) => {
      const packed = await siteFiles().pack(c.tree, c.domain);
      const bytes = await ctx.upload(packed.stream, 'files');
      return { bytes, entries: packed.entries, skipped: packed.skipped };
    },
    acmeChallenge: async (c) => {
      if (!deps.tls) throw fail('INTERNAL', 'this agent has no challenge store');
      return { path: deps.tls.challenge(c.token, c.keyAuthorization, c.remove) };
    },
    siteFilesUnpack: async (c, ctx) => {
      const download = ctx.download('files');
      const r = await siteFiles()
        .unpack(c.tree, c.domain, c.replace, download)
        .finally(() => download.destroy());
      return { bytes: r.bytes, entries: r.entries, replaced: r.replaced };
    },
  };
}

/** The message for a command this agent does not know (a newer master). */
export const UNKNOWN_COMMAND = `this agent (capability ${CAPABILITY_VERSION}) does not know that command; upgrade it`;

/** Runs the site tool for a SiteToolRequest. @throws SpokeError INVALID_ARGUMENT, SITE_TOOL_* */
async function runSiteTool(php: Pick<SitePhp, 'run'>, c: SiteToolRequest): Promise<SiteToolReport> {
  const params: Record<string, unknown> = {};
  if (c.op === 'loginUrl' && c.kind === 'wordpress') {
    if (!/^[0-9a-f]{64}$/.test(c.tokenHash ?? '')) throw fail('INVALID_ARGUMENT', 'a WordPress login link needs the sha256 of its token');
    params.token = c.tokenHash;
    params.ttl = Math.max(60, Math.min(Number(c.ttlSeconds) || 900, 86_400));
  }
  const a = await php.run(c.op, { tree: c.tree, domain: c.domain, kind: c.kind }, params, { timeoutMs: c.op === 'update' ? 30 * 60_000 : 5 * 60_000 });
  const updates = (v: unknown): SiteUpdateInfo[] =>
    Array.isArray(v)
      ? v.map((x: Record<string, unknown>) => ({ module: String(x.module ?? ''), update: String(x.update ?? ''), description: String(x.description ?? '') }))
      : [];
  return { url: String(a.url ?? ''), user: String(a.user ?? ''), pending: updates(a.pending), ran: updates(a.ran) };
}
