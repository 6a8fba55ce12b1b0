/**
 * The namespace: servers, clusters, platforms, sites and their hard rules. Every mutation runs in
 * one SQLite transaction and either applies fully or throws a SpokeError with a stable code,
 * changing nothing.
 *
 * One aggregate per file — servers.ts (servers, clusters, services, enrollment), platforms.ts,
 * sites.ts (sites, domains, aliases; their reads in sitereads.ts) — over one store (scope.ts). `Namespace` is the facade every
 * caller uses: each method below hands over to its aggregate, where its rules and doc comment are.
 */
import { Platforms, type AddPlatformInput } from './platforms.js';
import type { NamespaceScope, Presence } from './scope.js';
import { Servers, type DetectedServiceInfo } from './servers.js';
import { SiteReads, type CronSiteRow } from './sitereads.js';
import { Sites, type CreateSiteInput } from './sites.js';
import type { Db } from './store.js';
import type { Clock, DriftMode, HostFactsInfo, PlatformInfo, PlatformStatus, ServerInfo, ServerKind, SiteInfo, SiteSecrets, SiteStatus } from '../types.js';

export type { Presence } from './scope.js';
export type { DetectedServiceInfo } from './servers.js';
export type { AddPlatformInput } from './platforms.js';
export type { CreateSiteInput } from './sites.js';
export type { CronSiteRow } from './sitereads.js';

/** Namespace rules and queries over the store. */
export class Namespace {
  private readonly scope: NamespaceScope;
  /** Servers and clusters. */
  readonly servers: Servers;
  /** Platforms. */
  readonly platforms: Platforms;
  /** Sites, their domains and aliases. */
  readonly sites: Sites;
  /** Reads of sites: one site, listings, what cron reads. */
  readonly siteReads: SiteReads;

  constructor(deps: { db: Db; clock: Clock; presence?: Presence }) {
    this.scope = { db: deps.db, clock: deps.clock, presence: deps.presence ?? { isOnline: () => false } };
    this.servers = new Servers(this.scope);
    this.platforms = new Platforms(this.scope, this.servers);
    this.siteReads = new SiteReads(this.scope);
    this.sites = new Sites(this.scope, this.servers, this.platforms, this.siteReads);
  }

  /** Sets the presence source (the agent hub, once it exists). */
  setPresence(p: Presence): void {
    this.scope.presence = p;
  }

  // ---------------------------------------------------------------- servers: see servers.ts

  hasServer(name: string): boolean {
    return this.servers.hasServer(name);
  }

  members(cluster: string): string[] {
    return this.servers.members(cluster);
  }

  targets(server: string): string[] {
    return this.servers.targets(server);
  }

  httpPin(server: string, platformServer: string): string {
    return this.servers.httpPin(server, platformServer);
  }

  getServer(name: string): ServerInfo {
    return this.servers.getServer(name);
  }

  listServers(): ServerInfo[] {
    return this.servers.listServers();
  }

  pinService(server: string, kind: string, impl: string): ServerInfo {
    return this.servers.pinService(server, kind, impl);
  }

  recordEnrollment(input: { server: string; cluster: string | null; fingerprint: string; replace: boolean }): void {
    return this.servers.recordEnrollment(input);
  }

  revoke(fingerprint: string, server: string, reason: string): void {
    return this.servers.revoke(fingerprint, server, reason);
  }

  authenticateAgent(commonName: string, fingerprint: string): ServerInfo {
    return this.servers.authenticateAgent(commonName, fingerprint);
  }

  recordHello(server: string, hello: { facts: HostFactsInfo; services: DetectedServiceInfo[]; capabilityVersion: number }): void {
    return this.servers.recordHello(server, hello);
  }

  recordDetectedServices(server: string, services: DetectedServiceInfo[]): void {
    return this.servers.recordDetectedServices(server, services);
  }

  touch(server: string, atMs?: number): void {
    return this.servers.touch(server, atMs);
  }

  touchMany(seen: Iterable<readonly [server: string, atMs: number]>): void {
    this.servers.touchMany(seen);
  }

  removeServer(name: string): { revoked: string | null; kind: ServerKind } {
    return this.servers.removeServer(name);
  }

  createCluster(name: string, members: string[]): ServerInfo {
    return this.servers.createCluster(name, members);
  }

  addClusterMember(cluster: string, member: string): ServerInfo {
    return this.servers.addClusterMember(cluster, member);
  }

  removeClusterMember(cluster: string, member: string): ServerInfo {
    return this.servers.removeClusterMember(cluster, member);
  }
  // ---------------------------------------------------------------- platforms: see platforms.ts

  addPlatform(input: AddPlatformInput, check?: () => void): PlatformInfo {
    return this.platforms.addPlatform(input, check);
  }

  getPlatform(name: string): PlatformInfo {
    return this.platforms.getPlatform(name);
  }

  listPlatforms(opts?: { sites?: boolean }): PlatformInfo[] {
    return this.platforms.listPlatforms(opts);
  }

  platformsFor(server: string): PlatformInfo[] {
    return this.platforms.platformsFor(server);
  }

  setRegistry(name: string, registryJson: string): void {
    return this.platforms.setRegistry(name, registryJson);
  }

  setDesiredRootHash(name: string, hash: string): void {
    return this.platforms.setDesiredRootHash(name, hash);
  }

  recordObserved(server: string, path: string, rootHash: string): void {
    return this.platforms.recordObserved(server, path, rootHash);
  }

  observed(server: string, path: string): string | null {
    return this.platforms.observed(server, path);
  }

  observedAll(): Map<string, string> {
    return this.platforms.observedAll();
  }

  observedAt(server: string, path: string): { rootHash: string; updatedMs: number } | null {
    return this.platforms.observedAt(server, path);
  }

  setPlatformDrift(name: string, drift: DriftMode): PlatformInfo {
    return this.platforms.setPlatformDrift(name, drift);
  }

  setPlatformStatus(name: string, status: PlatformStatus): void {
    return this.platforms.setPlatformStatus(name, status);
  }

  removePlatform(name: string, force?: boolean): { sitesRemoved: string[] } {
    return this.platforms.removePlatform(name, force);
  }
  // ---------------------------------------------------------------- sites: see sites.ts, sitereads.ts

  createSite(input: CreateSiteInput): SiteInfo {
    return this.sites.createSite(input);
  }

  checkNewSite(input: CreateSiteInput): void {
    return this.sites.checkNewSite(input);
  }

  dbNamesTaken(dbServer: string): Set<string> {
    return this.sites.dbNamesTaken(dbServer);
  }

  addAlias(site: string, alias: string): SiteInfo {
    return this.sites.addAlias(site, alias);
  }

  checkNewAlias(site: string, alias: string): void {
    return this.sites.checkNewAlias(site, alias);
  }

  removeAlias(site: string, alias: string): SiteInfo {
    return this.sites.removeAlias(site, alias);
  }

  checkRemoveAlias(site: string, alias: string): void {
    return this.sites.checkRemoveAlias(site, alias);
  }

  setSiteStatus(domain: string, status: SiteStatus, opts?: { installedMs?: number }): SiteStatus {
    return this.sites.setSiteStatus(domain, status, opts);
  }

  setSiteDbAddress(domain: string, host: string, port: number): void {
    return this.sites.setSiteDbAddress(domain, host, port);
  }

  setSiteRedirectAliases(domain: string, on: boolean): void {
    return this.sites.setSiteRedirectAliases(domain, on);
  }

  setSiteCronInterval(domain: string, seconds: number): SiteInfo {
    return this.sites.setSiteCronInterval(domain, seconds);
  }

  cronSites(platform: string, kind: string, page?: { after: number; limit: number }): (CronSiteRow & { row: number })[] {
    return this.siteReads.cronSites(platform, kind, page);
  }

  /** Each platform's kind from its stored registry ('' when none). */
  platformKinds(): Map<string, string> {
    return this.siteReads.platformKinds();
  }

  siteSecrets(domain: string): SiteSecrets {
    return this.sites.siteSecrets(domain);
  }

  deleteSite(domain: string): void {
    return this.sites.deleteSite(domain);
  }

  relocateSite(
    from: string,
    to: {
      domain: string;
      platform: string;
      dbServer: string;
      db: { name: string; user: string; password: string };
      dbHost: string;
      dbPort: number;
      salt: string;
      /** With a new domain: the old one answers a 301 to it until then (0: it is free at once). */
      redirectOldUntilMs?: number;
    },
  ): SiteInfo {
    return this.sites.relocateSite(from, to);
  }

  /** Former names whose grace ended by `nowMs`, with their sites. */
  expiredFormerNames(nowMs: number): { name: string; site: string }[] {
    return this.sites.expiredFormerNames(nowMs);
  }

  /** Drops a former name of a site (its name is free again); false when it was not one. */
  dropFormerName(site: string, name: string): boolean {
    return this.sites.dropFormerName(site, name);
  }

  getSite(domain: string): SiteInfo {
    return this.siteReads.getSite(domain);
  }

  listSites(platform?: string): SiteInfo[] {
    return this.siteReads.listSites(platform);
  }

  /** Sites in domain order, a page of `size` at a time (optionally of one platform). */
  sitePages(platform: string | undefined, size: number): Generator<SiteInfo[]> {
    return this.siteReads.sitePages(platform, size);
  }

  /** Counts for `spoke status`. */
  counts(): { servers: number; platforms: number; sites: number } {
    const one = (sql: string) => (this.scope.db.prepare(sql).get() as { n: number }).n;
    return {
      servers: one('SELECT count(*) AS n FROM servers'),
      platforms: one('SELECT count(*) AS n FROM platforms'),
      sites: one('SELECT count(*) AS n FROM sites'),
    };
  }
}
