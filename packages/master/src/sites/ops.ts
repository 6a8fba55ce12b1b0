/**
 * The shared operations of the site tasks: what the step lists of install/verify/… (tasks.ts),
 * backup/restore (backuptasks.ts), clone/migrate (migrate.ts), import (import.ts) and login links
 * (login.ts) are made of — agent calls that wait for the agent, the database, the site's files in
 * the platform's canonical tree (with their undo data), converge, and the web server config.
 * Built once by SiteTasks and handed to each of those; it knows none of them.
 */
import { chmodSync, existsSync, lstatSync, mkdirSync, readdirSync, readFileSync, readlinkSync, renameSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fail, isSpokeError } from '@spoke/shared';
import type { AgentHub, CallOptions } from '../servers/hub.js';
import type { AgentCommand, AgentCommandResults, SiteTlsConfig } from '@spoke/shared';
import type { Step } from '../tasks/steps.js';
import type { Namespace } from '../namespace/namespace.js';
import { configOutcome, type PlatformSync } from '../platforms/converge.js';
import type { TaskContext } from '../tasks/engine.js';
import type { TreeStore } from '../platforms/trees.js';
import type { PlatformInfo, SiteInfo, SiteStatus } from '../types.js';
import type { PlatformKind, Registry } from '../platforms/registry/index.js';
import { renderPlatformSiteFiles, renderSiteFiles, settingsSupported, staleSiteFiles, type SiteFacts, type SiteFile, type SiteNames } from './settings.js';
import { settingsFileOf } from './readsettings.js';
import { redirectingNames } from './formernames.js';

/** A file or symlink as it was before a step wrote over it (undo data). */
export interface Previous {
  path: string;
  type: 'none' | 'file' | 'symlink';
  /** base64 for files, the target for symlinks. */
  data?: string;
  mode?: number;
}

/** Undo data of a step that wrote files into a platform tree. */
export interface WriteUndo {
  platform: string;
  previous: Previous[];
  /** Directories it created (removed on undo, with what is in them). */
  created: string[];
}

/** What the site tasks need of HTTPS (sites/https/https.ts). */
export interface SiteHttpsHook {
  /** The certificate a site's vhost carries now (null: plain HTTP). */
  tlsFor(domain: string): SiteTlsConfig | null;
  /** The site is served over HTTPS (its settings say so). */
  servedOverHttps(domain: string): boolean;
  /** The steps of `--https` on install, clone and migrate. */
  enableSteps(domain: string): Step[];
  /** Refuses `--https` when it cannot work (nothing is queued). @throws SpokeError */
  checkCanEnable(): void;
  /** What an operator should know when the site's certificate does not cover `name` (null: it does, or no HTTPS). */
  coverageNote(domain: string, name: string): string | null;
  /** The site was renamed: its certificate files follow (the renewer covers the new name). */
  renamed(from: string, to: string): void;
  /** The site was deleted: its certificate files go too. */
  forget(domain: string): void;
}

/** Site statuses a task other than install may act on. */
const ACTIVE: ReadonlySet<SiteStatus> = new Set(['installed', 'disabled', 'failed']);

/** The operations site tasks share (see the file comment). */
export class SiteOps {
  readonly ns: Namespace;
  readonly trees: TreeStore;
  private readonly hub: AgentHub;
  private readonly sync: PlatformSync;
  private readonly onlineWaitMs: number;
  /** HTTPS (sites/https): the certificate each vhost carries, and the steps of `--https`. */
  private https: SiteHttpsHook | null = null;

  constructor(deps: {
    ns: Namespace;
    hub: AgentHub;
    trees: TreeStore;
    sync: PlatformSync;
    /** How long a step waits for an agent to come online (e.g. right after a restart). @default 30000 */
    onlineWaitMs?: number;
  }) {
    this.ns = deps.ns;
    this.hub = deps.hub;
    this.trees = deps.trees;
    this.sync = deps.sync;
    this.onlineWaitMs = deps.onlineWaitMs ?? 30_000;
  }

  /** Wires HTTPS in (Core does, once). */
  setHttps(hook: SiteHttpsHook): void {
    this.https = hook;
  }

  /** Refuses `--https` when HTTPS is not wired or cannot work (nothing queued). @throws SpokeError */
  checkHttps(): void {
    if (!this.https) throw fail('INTERNAL', 'HTTPS is not wired');
    this.https.checkCanEnable();
  }

  /** The site is served over HTTPS (on, with a certificate). */
  servesHttps(domain: string): boolean {
    return this.https?.servedOverHttps(domain) ?? false;
  }

  /** A warning for a name the site's certificate does not cover (null: covered, or no HTTPS). */
  httpsCoverageNote(domain: string, name: string): string | null {
    return this.https?.coverageNote(domain, name) ?? null;
  }

  /** A site row was renamed: what HTTPS keeps outside the rows follows (nothing without HTTPS). */
  siteRenamed(from: string, to: string): void {
    this.https?.renamed(from, to);
  }

  /** A site row was deleted: what HTTPS kept outside the rows goes too. */
  siteForgotten(domain: string): void {
    this.https?.forget(domain);
  }

  /** The steps that turn HTTPS on after a task made the site (install, clone, migrate `--https`). */
  httpsSteps(domain: string): Step[] {
    if (!this.https) throw fail('INTERNAL', 'HTTPS is not wired');
    return this.https.enableSteps(domain);
  }

  // ---------------------------------------------------------------- sites and platforms

  /** A site a task may act on. @throws SpokeError SITE_NOT_FOUND, SITE_NOT_INSTALLED (`what` says what was asked) */
  activeSite(domain: string, what: string): SiteInfo {
    const s = this.ns.getSite(domain);
    if (!ACTIVE.has(s.status)) {
      throw fail('SITE_NOT_INSTALLED', `site ${s.domain} is ${s.status}; cannot ${what} it (see: spoke task ls --entity site:${s.domain})`);
    }
    return s;
  }

  /**
   * The db server for a new site when none is named: the only agent server with a db service
   * (detected or pinned); among several, the platform's own server when it is one of them.
   * @throws SpokeError DB_SERVER_REQUIRED
   */
  chooseDbServer(p: PlatformInfo): string {
    const candidates = this.ns
      .listServers()
      .filter((s) => s.kind === 'agent' && s.enrolled && s.services.some((x) => x.kind === 'db' && (x.detectedImpl || x.pinnedImpl)))
      .map((s) => s.name);
    if (candidates.length === 1) return candidates[0] as string;
    if (candidates.includes(p.server)) return p.server;
    if (candidates.length === 0) {
      throw fail('DB_SERVER_REQUIRED', 'no agent server reports a database service; name the one with a db section in its agent.json: --db-server NAME');
    }
    throw fail('DB_SERVER_REQUIRED', `several servers offer a database (${candidates.join(', ')}); choose one: --db-server NAME`);
  }

  /**
   * The kind of a verified platform Spoke can render site settings for, with its core version and
   * registry. @throws SpokeError PLATFORM_NOT_VERIFIED, PLATFORM_KIND_UNSUPPORTED
   */
  platformKind(p: PlatformInfo): { kind: PlatformKind; coreVersion: string | null; registry: Registry } {
    if (!p.registryJson) throw fail('PLATFORM_NOT_VERIFIED', `platform ${p.name} has not been verified yet; run: spoke platform verify ${p.name}`);
    const r = JSON.parse(p.registryJson) as Registry;
    if (!settingsSupported(r.kind)) {
      throw fail('PLATFORM_KIND_UNSUPPORTED', `platform ${p.name} is ${r.kind}; Spoke installs sites on Drupal 6/7/8+ and WordPress platforms only`);
    }
    return { kind: r.kind, coreVersion: r.coreVersion, registry: r };
  }

  // ---------------------------------------------------------------- running

  // ---------------------------------------------------------------- agents, databases, files, web server config

  siteExists(domain: string): boolean {
    try {
      return this.ns.getSite(domain).domain === domain;
    } catch (e) {
      if (isSpokeError(e, 'SITE_NOT_FOUND')) return false;
      throw e;
    }
  }

  /** Agent servers that serve a platform (every member of a cluster). */
  webServers(platform: string): string[] {
    const p = this.ns.getPlatform(platform);
    const t = this.ns.targets(p.server);
    if (t.length === 0) throw fail('CLUSTER_NEEDS_MEMBER', `${p.server} has no members`);
    return t;
  }

  pinned(server: string, platformServer: string): string {
    return this.ns.httpPin(server, platformServer);
  }

  /** The agent is connected now. */
  isOnline(server: string): boolean {
    return this.hub.isOnline(server);
  }

  /** Sends a command now, outside a task (AGENT_OFFLINE at once when the agent is not connected). */
  callNow<K extends AgentCommand['type']>(server: string, cmd: Extract<AgentCommand, { type: K }>, opts: CallOptions = {}): Promise<AgentCommandResults[K]> {
    return this.hub.call(server, cmd, { timeoutMs: 3 * 60_000, ...opts });
  }

  /** Waits (up to onlineWaitMs) for an agent to be online, then sends the command. */
  async call<K extends AgentCommand['type']>(
    ctx: TaskContext,
    server: string,
    cmd: Extract<AgentCommand, { type: K }>,
    opts: CallOptions = {},
  ): Promise<AgentCommandResults[K]> {
    await this.awaitAgent(ctx, server, cmd.type);
    return this.hub.call(server, cmd, { timeoutMs: 3 * 60_000, ...opts, signal: ctx.signal, log: ctx.log });
  }

  /**
   * Waits for an agent to be online: through the reconnect grace after a master restart, then up
   * to onlineWaitMs more; the task log says what waits for whom, and for how long. Never throws
   * (the command that follows fails AGENT_OFFLINE when the agent did not come).
   */
  async awaitAgent(ctx: TaskContext, server: string, what: string): Promise<void> {
    await this.hub.awaitReconnect(server, { signal: ctx.signal, log: ctx.log });
    const end = Date.now() + this.onlineWaitMs;
    let said = false;
    while (!this.hub.isOnline(server) && Date.now() < end && !ctx.signal.aborted) {
      if (!said) ctx.log(`${what}: waiting up to ${Math.ceil(this.onlineWaitMs / 1000)}s for ${server} to come online`, 'warn');
      said = true;
      await new Promise((r) => setTimeout(r, 200));
    }
    if (said)
      ctx.log(
        this.hub.isOnline(server) ? `${server} is online` : `${server} did not come online within ${Math.ceil(this.onlineWaitMs / 1000)}s`,
        this.hub.isOnline(server) ? 'info' : 'warn',
      );
  }

  recordDbAddress(ctx: TaskContext, domain: string, server: string, r: { siteHost: string; sitePort: number }): void {
    if (!r.siteHost) {
      ctx.log(`${server} did not say how web servers reach its database (an older agent); using localhost:3306`, 'warn');
    }
    this.ns.setSiteDbAddress(domain, r.siteHost || 'localhost', r.sitePort || 3306);
  }

  async dropDatabase(ctx: TaskContext, d: DbUndo): Promise<void> {
    const r = await this.call(ctx, d.server, { type: 'dbDrop', database: d.database, user: d.user, hosts: d.hosts });
    ctx.log(
      `${d.server}: ${r.databaseExisted ? `dropped database ${d.database}` : `database ${d.database} was already gone`}; ${r.usersDropped.length ? `dropped user ${d.user}@${r.usersDropped.join(',')}` : `no account of ${d.user} left`}`,
    );
  }

  /** The sites (names and aliases) whose platform-level files a platform gets. */
  platformSites(platform: string, opts: { without?: string; previousAliases?: SiteNames }): SiteNames[] {
    return this.ns
      .listSites(platform)
      .filter((s) => s.status !== 'pending' && s.domain !== opts.without)
      .map((s) => (opts.previousAliases?.domain === s.domain ? opts.previousAliases : { domain: s.domain, aliases: s.aliases }));
  }

  /**
   * Renders and writes a site's files (when `site` is given) and the platform-level files into
   * the platform's canonical tree; files that no longer belong (a removed alias' symlink) go.
   * Only what differs is written. Returns the undo data (what was there before).
   */
  async writeFiles(
    ctx: TaskContext,
    platform: string,
    opts: {
      site?: string;
      without?: string;
      previousAliases?: SiteNames;
      /** A site not (or not yet) in this platform's rows: its files from these facts, its names in the platform files (clone/migrate). */
      add?: SiteFacts;
      /** A site that left the platform since the last render (its stale files go). */
      gone?: SiteNames;
    },
  ): Promise<WriteUndo> {
    const p = this.ns.getPlatform(platform);
    const { kind, coreVersion } = this.platformKind(p);
    const root = this.trees.hostPath(p.path);
    const files: SiteFile[] = [];
    const own = opts.site ? this.ns.getSite(opts.site) : null;
    if (own?.ownSettings) ctx.log(`${settingsFileOf(kind, own.domain)} is the site's own (imported); Spoke does not render it`);
    if (opts.site && !own?.ownSettings) {
      const s = this.ns.getSite(opts.site);
      const facts = this.siteFacts(s, kind, coreVersion);
      if (!facts) throw fail('INTERNAL', `site ${s.domain} has no database recorded yet`);
      files.push(...renderSiteFiles(facts));
    }
    let sites = this.platformSites(platform, { without: opts.without });
    if (opts.add) {
      const add = opts.add;
      files.push(...renderSiteFiles(add));
      sites = [
        ...sites.filter((x) => x.domain !== add.domain).map((x) => ({ domain: x.domain, aliases: x.aliases.filter((a) => !add.aliases.includes(a)) })),
        { domain: add.domain, aliases: add.aliases },
      ].sort((a, b) => (a.domain < b.domain ? -1 : a.domain > b.domain ? 1 : 0));
    }
    const next = renderPlatformSiteFiles(kind, sites);
    // What the last render produced (the site being deleted still in, a changed alias as it was):
    // the files it had that the new render lacks are removed (Drupal 6 alias symlinks).
    const previous = this.platformSites(platform, { previousAliases: opts.previousAliases });
    const gone = opts.gone;
    if (gone && !previous.some((x) => x.domain === gone.domain)) {
      // A site renamed on its own platform keeps its aliases: they are the new name's now.
      previous.push({ domain: gone.domain, aliases: gone.aliases.filter((a) => !previous.some((x) => x.aliases.includes(a))) });
    }
    const before = renderPlatformSiteFiles(kind, previous);
    const stale = staleSiteFiles(before, next);
    files.push(...next);
    const undo: WriteUndo = { platform, previous: [], created: [] };
    const touched: string[] = [];
    for (const f of files) {
      const abs = join(root, f.path);
      if (sameAsDisk(abs, f)) continue;
      undo.previous.push(snapshot(root, f.path));
      const made = mkdirp(root, dirname(f.path));
      if (made) undo.created.push(made);
      writeSiteFile(abs, f);
      touched.push(f.path);
    }
    for (const rel of stale) {
      const abs = join(root, rel);
      if (!lexists(abs)) continue;
      undo.previous.push(snapshot(root, rel));
      rmSync(abs, { force: true });
      touched.push(rel);
    }
    this.trees.touch(p.path, [...touched, ...undo.created]);
    ctx.log(touched.length ? `platform ${p.name}: wrote ${touched.join(', ')}` : `platform ${p.name}: site files unchanged`);
    return undo;
  }

  /** Undo of writeFiles: puts back what was there, removes what it created, converges. */
  async restoreFiles(ctx: TaskContext, d: WriteUndo): Promise<void> {
    const p = this.ns.getPlatform(d.platform);
    const root = this.trees.hostPath(p.path);
    for (const prev of [...d.previous].reverse()) {
      const abs = join(root, prev.path);
      rmSync(abs, { force: true });
      if (prev.type === 'file') {
        mkdirSync(dirname(abs), { recursive: true });
        writeFileSync(abs, Buffer.from(prev.data ?? '', 'base64'), { mode: prev.mode ?? 0o644 });
        chmodSync(abs, prev.mode ?? 0o644);
      } else if (prev.type === 'symlink') {
        mkdirSync(dirname(abs), { recursive: true });
        symlinkSync(prev.data ?? '', abs);
      }
    }
    for (const dir of [...d.created].sort((a, b) => b.length - a.length)) rmSync(join(root, dir), { recursive: true, force: true });
    this.trees.touch(p.path, [...d.previous.map((x) => x.path), ...d.created]);
    ctx.log(`platform ${p.name}: restored ${[...d.previous.map((x) => x.path), ...d.created].join(', ') || 'nothing'}`);
    await this.converge(ctx, d.platform);
  }

  async converge(ctx: TaskContext, platform: string, paths: string[] = []): Promise<void> {
    // An undo after a master restart runs before the agents are back: every server waits its turn.
    for (const server of this.webServers(platform)) await this.awaitAgent(ctx, server, `converge of platform ${platform}`);
    await this.sync.converge(ctx, platform, paths);
  }

  /**
   * ConfigureSite on every web server of the site's platform. When some fail, the ones that
   * succeeded are put back (`revert`: configured as before; without it: RemoveSite, for a new
   * site) before the error is thrown.
   */
  async configure(
    ctx: TaskContext,
    domain: string,
    enabled: boolean,
    opts: { aliases?: string[]; revert?: { enabled: boolean; aliases: string[] } } = {},
  ): Promise<ConfigureUndo> {
    const s = this.ns.getSite(domain);
    const p = this.ns.getPlatform(s.platform);
    const servers = this.webServers(p.name);
    const aliases = opts.aliases ?? s.aliases;
    const results = await this.configureOn(ctx, servers, s, p, enabled, aliases);
    const failed = results.flatMap((r, i) => (r.status === 'rejected' ? [{ server: servers[i] as string, e: r.reason as unknown }] : []));
    if (failed.length) {
      const ok = results.flatMap((r, i) => (r.status === 'fulfilled' ? [servers[i] as string] : []));
      if (ok.length) {
        ctx.log(`putting the vhost on ${ok.join(', ')} back as it was (it failed elsewhere)`, 'warn');
        const undoCtx = { ...ctx, signal: ctx.stopping };
        try {
          if (opts.revert) {
            const back = await this.configureOn(undoCtx, ok, s, p, opts.revert.enabled, opts.revert.aliases);
            const bad = back.find((b) => b.status === 'rejected');
            if (bad) throw (bad as PromiseRejectedResult).reason;
          } else {
            await this.unconfigure(undoCtx, { domain: s.domain, platform: p.name, servers: ok, enabled, aliases }, true);
          }
        } catch (e) {
          ctx.log(`UNDO FAILED: vhost on ${ok.join(', ')}: ${isSpokeError(e) ? `${e.code}: ${e.message}` : String(e)}; fix it by hand`, 'error');
        }
      }
      const first = failed[0] as { server: string; e: unknown };
      const strip = (m: string, server: string) => (m.startsWith(`${server}: `) ? m.slice(server.length + 2) : m);
      const msg = failed.map((f) => `${f.server} (${isSpokeError(f.e) ? `${f.e.code}: ${strip(f.e.message, f.server)}` : String(f.e)})`).join(', ');
      throw fail(isSpokeError(first.e) ? first.e.code : 'INTERNAL', `site ${s.domain}: web server config failed on ${msg}`);
    }
    return { domain: s.domain, platform: p.name, servers, enabled, aliases };
  }

  configureOn(ctx: TaskContext, servers: string[], s: SiteInfo, p: PlatformInfo, enabled: boolean, aliases: string[]): Promise<PromiseSettledResult<string>[]> {
    const { kind, coreVersion } = this.platformKind(p);
    const files = this.settingsFiles(s, kind, coreVersion);
    const tls = this.https?.tlsFor(s.domain) ?? null;
    return Promise.allSettled(
      servers.map(async (server) => {
        const r = await this.call(ctx, server, {
          type: 'configureSite',
          domain: s.domain,
          platform: p.name,
          tree: p.path,
          kind,
          aliases,
          redirectAliases: s.redirectAliases,
          redirectNames: redirectingNames(s, Date.now()),
          enabled,
          webGroupFiles: files,
          pinnedImpl: this.pinned(server, p.server),
          tls,
        });
        ctx.log(`${server}: ${r.impl} vhost ${r.path} ${configOutcome(r)}${enabled ? '' : ' (disabled: every name answers 503)'}${tls ? ' with https' : ''}`);
        for (const f of r.fixed) ctx.log(`${server}: ${f}`);
        for (const pr of r.problems) ctx.log(`${server}: ${pr}`, 'warn');
        return server;
      }),
    );
  }

  /**
   * The settings files of every site of a platform the web group must read (relative to the
   * platform root): sent with each converge, so a rewritten settings file never leaves the web
   * server unable to read it. [] for a platform that was never verified.
   */
  platformSettingsFiles(platform: string): string[] {
    try {
      const p = this.ns.getPlatform(platform);
      if (!p.registryJson) return [];
      const { kind, coreVersion } = this.platformKind(p);
      const files = new Set(this.ns.listSites(platform).flatMap((s) => this.settingsFiles(s, kind, coreVersion)));
      // A site dir in the tree without its row here yet (the copy a clone or migrate is making):
      // its settings file too.
      const sites = join(this.trees.hostPath(p.path), 'sites');
      let dirs: string[] = [];
      try {
        dirs = readdirSync(sites, { withFileTypes: true })
          .filter((d) => d.isDirectory() && d.name !== 'all' && d.name !== 'default')
          .map((d) => d.name);
      } catch {
        /* no sites/ yet */
      }
      for (const d of dirs) {
        // Only site dirs (named as a domain): not a staging dir (.spoke-staging-*) or anything else.
        try {
          const rel = settingsFileOf(kind, d);
          if (lstatSync(join(this.trees.hostPath(p.path), rel)).isFile()) files.add(rel);
        } catch {
          /* not a site dir, or no settings file there */
        }
      }
      return [...files].sort();
    } catch (e) {
      if (isSpokeError(e) && (e.code === 'PLATFORM_KIND_UNSUPPORTED' || e.code === 'PLATFORM_NOT_FOUND')) return [];
      throw e;
    }
  }

  /** The settings files of a site the web group must read (relative to the platform root). */
  settingsFiles(s: SiteInfo, kind: PlatformKind, coreVersion: string | null): string[] {
    if (s.ownSettings) return [settingsFileOf(kind, s.domain)];
    const facts = this.siteFacts(s, kind, coreVersion);
    return facts
      ? renderSiteFiles(facts)
          .filter((f) => f.webGroupReadable)
          .map((f) => f.path)
      : [];
  }

  /** What a site's settings are rendered from (undefined while it has no database recorded). */
  private siteFacts(s: SiteInfo, kind: PlatformKind, coreVersion: string | null): SiteFacts | undefined {
    if (!s.dbName || !s.dbUser || !s.dbHost) return undefined;
    const sec = this.ns.siteSecrets(s.domain);
    return {
      domain: s.domain,
      aliases: s.aliases,
      kind,
      coreVersion,
      db: { name: s.dbName, user: s.dbUser, password: sec.dbPassword, host: s.dbHost, port: s.dbPort ?? 3306 },
      salt: sec.salt,
      ...(s.profile ? { profile: s.profile } : {}),
      ...(this.https?.servedOverHttps(s.domain) ? { https: true } : {}),
    };
  }

  /** Undo of an install's configure: RemoveSite (with the files dirs it created). */
  async unconfigure(ctx: TaskContext, d: ConfigureUndo, deleteFiles: boolean): Promise<void> {
    const p = this.ns.getPlatform(d.platform);
    const errors: string[] = [];
    for (const server of d.servers) {
      try {
        const r = await this.call(ctx, server, { type: 'removeSite', domain: d.domain, tree: p.path, deleteFiles, pinnedImpl: this.pinned(server, p.server) });
        ctx.log(`${server}: ${r.removed ? `removed vhost ${r.path}` : 'no vhost to remove'}${r.deleted.length ? `; deleted ${r.deleted.join(', ')}` : ''}`);
      } catch (e) {
        errors.push(`${server}: ${isSpokeError(e) ? `${e.code}: ${e.message}` : String(e)}`);
      }
    }
    if (errors.length) throw fail('AGENT_COMMAND_FAILED', `RemoveSite failed on ${errors.join('; ')}`);
  }

  /** Undo of a configure that changed a live vhost: configure it again as it was. */
  async reconfigure(ctx: TaskContext, d: ConfigureUndo, enabled: boolean): Promise<void> {
    if (!this.siteExists(d.domain)) return;
    await this.configure(ctx, d.domain, enabled, { aliases: d.aliases });
  }

  /** RemoveSite on every web server; a server without a web server is only warned about. */
  async removeSite(ctx: TaskContext, domain: string, platform: string, deleteFiles: boolean): Promise<string[]> {
    const p = this.ns.getPlatform(platform);
    const servers = this.webServers(platform);
    const done: string[] = [];
    for (const server of servers) {
      try {
        const r = await this.call(ctx, server, { type: 'removeSite', domain, tree: p.path, deleteFiles, pinnedImpl: this.pinned(server, p.server) });
        ctx.log(
          `${server}: ${r.removed ? `removed vhost ${r.path}${r.reloaded ? ' and reloaded' : ''}` : 'no vhost'}${deleteFiles ? (r.deleted.length ? `; deleted ${r.deleted.join(', ')}` : '; no site files left') : ''}`,
        );
        for (const pr of r.problems) ctx.log(`${server}: ${pr}`, 'warn');
        done.push(server);
      } catch (e) {
        if (isSpokeError(e, 'NO_HTTP_SERVICE')) {
          ctx.log(`${server}: ${e.code}: ${e.message}`, 'warn');
          continue;
        }
        throw e;
      }
    }
    return done;
  }
}

/** Undo data of a database step. */
export interface DbUndo {
  server: string;
  database: string;
  user: string;
  hosts: string[];
}

/** Undo data of a configure step: the servers and how the vhost was before. */
export interface ConfigureUndo {
  domain: string;
  platform: string;
  servers: string[];
  /** The enabled state to go back to. */
  enabled: boolean;
  aliases: string[];
}

function lexists(abs: string): boolean {
  try {
    lstatSync(abs);
    return true;
  } catch {
    return false;
  }
}

function snapshot(root: string, rel: string): Previous {
  const abs = join(root, rel);
  let st;
  try {
    st = lstatSync(abs);
  } catch {
    return { path: rel, type: 'none' };
  }
  if (st.isSymbolicLink()) return { path: rel, type: 'symlink', data: readlinkSync(abs) };
  if (st.isFile()) return { path: rel, type: 'file', data: readFileSync(abs).toString('base64'), mode: st.mode & 0o777 };
  throw fail('SITE_DIR_EXISTS', `${rel} in the platform tree is a directory where Spoke writes a file; move it away`);
}

function sameAsDisk(abs: string, f: SiteFile): boolean {
  try {
    const st = lstatSync(abs);
    if (f.kind === 'symlink') return st.isSymbolicLink() && readlinkSync(abs) === f.target;
    return st.isFile() && (st.mode & 0o777) === f.mode && readFileSync(abs, 'utf8') === f.content;
  } catch {
    return false;
  }
}

/** Creates `rel` (a dir under root) and its missing parents; returns the topmost one it made. */
function mkdirp(root: string, rel: string): string | null {
  const parts = rel.split('/').filter((x) => x && x !== '.');
  let first: string | null = null;
  for (let i = 1; i <= parts.length; i++) {
    const sub = parts.slice(0, i).join('/');
    if (!existsSync(join(root, sub))) {
      mkdirSync(join(root, sub), { mode: 0o755 });
      chmodSync(join(root, sub), 0o755);
      first ??= sub;
    }
  }
  return first;
}

/** Writes a file atomically with its mode (temp file + rename), or a symlink. */
function writeSiteFile(abs: string, f: SiteFile): void {
  if (f.kind === 'symlink') {
    rmSync(abs, { force: true });
    symlinkSync(f.target ?? '', abs);
    return;
  }
  const tmp = `${abs}.spoke-tmp-${process.pid}`;
  writeFileSync(tmp, f.content, { mode: f.mode });
  chmodSync(tmp, f.mode);
  renameSync(tmp, abs);
}
