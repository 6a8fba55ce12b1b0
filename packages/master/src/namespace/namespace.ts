/**
 * The namespace: servers, clusters, platforms, sites and their hard rules. Every mutation runs in
 * one SQLite transaction and either applies fully or throws a SpokeError with a stable code,
 * changing nothing.
 */
import { checkDomain, checkName, checkPublishPath, fail, pathContains } from '@spoke/shared';
import { isAbsolute } from 'node:path';
import type { Db } from './store.js';
import type {
  Clock,
  HostFactsInfo,
  PlatformInfo,
  PlatformSource,
  PlatformStatus,
  ServerInfo,
  ServerKind,
  ServiceInfo,
  SiteInfo,
  SiteSecrets,
  SiteStatus,
} from '../types.js';

/** Tells whether an agent server is connected with a fresh heartbeat. */
export interface Presence {
  isOnline(server: string): boolean;
}

interface ServerRow {
  name: string;
  kind: ServerKind;
  cluster: string | null;
  cert_fingerprint: string | null;
  enrolled_ms: number | null;
  created_ms: number;
  last_seen_ms: number | null;
  facts_json: string | null;
  capability_version: number | null;
}

interface PlatformRow {
  name: string;
  path: string;
  server: string;
  source_kind: 'existing' | 'makefile' | 'git';
  makefile: string | null;
  makefile_name: string | null;
  makefile_dir: string | null;
  git_url: string | null;
  git_ref: string | null;
  status: PlatformStatus;
  registry_json: string | null;
  live: number;
  created_ms: number;
  desired_root_hash: string | null;
  excludes_json: string;
}

interface SiteRow {
  domain: string;
  platform: string;
  db_server: string | null;
  profile: string | null;
  status: SiteStatus;
  created_ms: number;
  db_name: string | null;
  db_user: string | null;
  db_password: string | null;
  db_host: string | null;
  db_port: number | null;
  salt: string | null;
  installed_ms: number | null;
  own_settings: number;
  redirect_aliases: number;
  cron_interval_s: number;
}

/** A detected service as an agent reports it. */
export interface DetectedServiceInfo {
  kind: string;
  impl: string;
  version: string;
}

/** What `addPlatform` takes. */
export interface AddPlatformInput {
  name: string;
  path: string;
  server: string;
  source: PlatformSource;
  live?: boolean;
  excludes?: string[];
}

/** What `createSite` takes (the sites issue adds the tasks around it). */
export interface CreateSiteInput {
  domain: string;
  platform: string;
  dbServer?: string | null;
  profile?: string | null;
  aliases?: string[];
  /** @default 'pending' */
  status?: SiteStatus;
  /** The site's database on `dbServer` (names from siteDbName; the password is never printed). */
  db?: { name: string; user: string; password: string };
  salt?: string;
  /** The settings file is the site's own (an import that keeps it): Spoke does not render it. */
  ownSettings?: boolean;
  /** The aliases answer with a 301 to the domain. */
  redirectAliases?: boolean;
  /** Seconds between cron runs, 0 = off. @default 3600 */
  cronIntervalS?: number;
}

/** What the cron scheduler reads of a site (one cheap query for every site). */
export interface CronSiteRow {
  domain: string;
  platform: string;
  status: SiteStatus;
  /** Registry kind of the platform ("" when it was never verified). */
  kind: string;
  intervalS: number;
  installedMs: number | null;
  createdMs: number;
}

/** Thrown inside a transaction to roll back a dry run. */
const DRY_RUN = Symbol('dry run');

const PINNABLE: Record<string, readonly string[]> = {
  http: ['nginx', 'apache'],
  db: ['mariadb', 'mysql'],
};

/** Namespace rules and queries over the store. */
export class Namespace {
  private readonly db: Db;
  private readonly clock: Clock;
  private presence: Presence;

  constructor(deps: { db: Db; clock: Clock; presence?: Presence }) {
    this.db = deps.db;
    this.clock = deps.clock;
    this.presence = deps.presence ?? { isOnline: () => false };
  }

  /** Sets the presence source (the agent hub, once it exists). */
  setPresence(p: Presence): void {
    this.presence = p;
  }

  // ---------------------------------------------------------------- servers

  private row(name: string): ServerRow | undefined {
    return this.db.prepare('SELECT * FROM servers WHERE name = ?').get(name) as ServerRow | undefined;
  }

  /** @throws SpokeError SERVER_NOT_FOUND */
  private mustRow(name: string): ServerRow {
    const r = this.row(name);
    if (!r) throw fail('SERVER_NOT_FOUND', `no server named ${name} (see: spoke server ls)`);
    return r;
  }

  /** True when a server or cluster with this name exists. */
  hasServer(name: string): boolean {
    return this.row(name) !== undefined;
  }

  /** Members of a cluster, sorted. */
  members(cluster: string): string[] {
    return (
      this.db.prepare("SELECT name FROM servers WHERE cluster = ? AND kind = 'agent' ORDER BY name").all(cluster) as {
        name: string;
      }[]
    ).map((r) => r.name);
  }

  /**
   * The agent servers that must do the work for `server`: itself for an agent server, every
   * member for a cluster.
   * @throws SpokeError SERVER_NOT_FOUND
   */
  targets(server: string): string[] {
    const r = this.mustRow(server);
    return r.kind === 'cluster' ? this.members(server) : [server];
  }

  /**
   * The http implementation an operator pinned for `server` ("" = none: the agent's config or
   * detection decides); a cluster member without its own pin takes the pin of `platformServer`
   * (its cluster). Unknown servers have no pin.
   */
  httpPin(server: string, platformServer: string): string {
    const pin = (name: string): string => {
      try {
        return this.getServer(name).services.find((s) => s.kind === 'http')?.pinnedImpl ?? '';
      } catch {
        return '';
      }
    };
    return pin(server) || (server !== platformServer ? pin(platformServer) : '');
  }

  /** One server with everything the operator sees. @throws SpokeError SERVER_NOT_FOUND */
  getServer(name: string): ServerInfo {
    return this.toServer(this.mustRow(name));
  }

  /** All servers, clusters first then agents, by name. */
  listServers(): ServerInfo[] {
    const rows = this.db.prepare('SELECT * FROM servers ORDER BY kind DESC, name').all() as ServerRow[];
    return rows.map((r) => this.toServer(r));
  }

  private toServer(r: ServerRow): ServerInfo {
    const members = r.kind === 'cluster' ? this.members(r.name) : [];
    const online =
      r.kind === 'cluster' ? members.length > 0 && members.every((m) => this.presence.isOnline(m)) : this.presence.isOnline(r.name);
    const hostOf = r.kind === 'agent' && r.cluster ? r.cluster : r.name;
    const platforms = (
      this.db.prepare('SELECT name FROM platforms WHERE server = ? ORDER BY name').all(hostOf) as { name: string }[]
    ).map((p) => p.name);
    return {
      name: r.name,
      kind: r.kind,
      cluster: r.cluster,
      members,
      online,
      lastSeenMs: r.last_seen_ms,
      enrolled: r.kind === 'agent' && r.cert_fingerprint !== null,
      services: this.services(r.name, members),
      facts: r.facts_json ? (JSON.parse(r.facts_json) as HostFactsInfo) : null,
      platforms,
      createdMs: r.created_ms,
      certFingerprint: r.cert_fingerprint,
      capabilityVersion: r.capability_version,
    };
  }

  private services(server: string, members: string[]): ServiceInfo[] {
    type Row = { kind: string; detected_impl: string | null; detected_version: string | null; pinned_impl: string | null };
    const own = this.db.prepare('SELECT * FROM services WHERE server = ? ORDER BY kind').all(server) as Row[];
    const byKind = new Map<string, ServiceInfo>();
    for (const s of own) {
      byKind.set(s.kind, {
        kind: s.kind,
        impl: s.pinned_impl || s.detected_impl || '',
        version: s.detected_version ?? '',
        detectedImpl: s.detected_impl ?? '',
        pinnedImpl: s.pinned_impl ?? '',
      });
    }
    // A cluster offers what every member detected (same impl on all members).
    if (members.length > 0) {
      const rows = members.map(
        (m) => new Map((this.db.prepare('SELECT * FROM services WHERE server = ?').all(m) as Row[]).map((s) => [s.kind, s])),
      );
      const kinds = new Set(rows.flatMap((m) => [...m.keys()]));
      for (const kind of kinds) {
        const impls = new Set(rows.map((m) => m.get(kind)?.detected_impl ?? ''));
        const detected = impls.size === 1 ? [...impls][0] ?? '' : '';
        const cur = byKind.get(kind);
        const version = rows[0]?.get(kind)?.detected_version ?? '';
        byKind.set(kind, {
          kind,
          impl: cur?.pinnedImpl || detected,
          version: detected ? version : '',
          detectedImpl: detected,
          pinnedImpl: cur?.pinnedImpl ?? '',
        });
      }
    }
    return [...byKind.values()].sort((a, b) => a.kind.localeCompare(b.kind));
  }

  /**
   * Pins (or, with impl "", unpins) the implementation of a service on a server.
   * @throws SpokeError SERVER_NOT_FOUND, INVALID_SERVICE
   */
  pinService(server: string, kind: string, impl: string): ServerInfo {
    this.mustRow(server);
    const allowed = PINNABLE[kind];
    if (!allowed) throw fail('INVALID_SERVICE', `service kind ${JSON.stringify(kind)} cannot be pinned: use http or db`);
    if (impl !== '' && !allowed.includes(impl)) {
      throw fail('INVALID_SERVICE', `${kind} must be one of ${allowed.join(', ')} (got ${JSON.stringify(impl)})`);
    }
    this.db
      .prepare(
        `INSERT INTO services (server, kind, pinned_impl) VALUES (?, ?, ?)
         ON CONFLICT (server, kind) DO UPDATE SET pinned_impl = excluded.pinned_impl`,
      )
      .run(server, kind, impl || null);
    return this.getServer(server);
  }

  /**
   * Records a successful enrollment: creates the agent server (and its cluster, on the first
   * enrollment of a cluster token) or replaces its certificate. Runs inside the caller's
   * transaction when there is one.
   */
  recordEnrollment(input: { server: string; cluster: string | null; fingerprint: string; replace: boolean }): void {
    const now = this.clock();
    const existing = this.row(input.server);
    if (existing) {
      if (existing.kind !== 'agent') throw fail('SERVER_IS_CLUSTER', `${input.server} is a cluster; an agent cannot enroll as it`);
      if (!input.replace && existing.cert_fingerprint) {
        throw fail('SERVER_EXISTS', `server ${input.server} is already enrolled`);
      }
      if (existing.cert_fingerprint && existing.cert_fingerprint !== input.fingerprint) {
        this.revoke(existing.cert_fingerprint, input.server, 'replaced by a new enrollment');
      }
    }
    if (input.cluster) {
      const c = this.row(input.cluster);
      if (!c) {
        this.db
          .prepare("INSERT INTO servers (name, kind, created_ms) VALUES (?, 'cluster', ?)")
          .run(input.cluster, now);
      } else if (c.kind !== 'cluster') {
        throw fail('SERVER_NOT_CLUSTER', `${input.cluster} is an agent server, not a cluster`);
      }
    }
    if (existing) {
      this.db
        .prepare('UPDATE servers SET cert_fingerprint = ?, enrolled_ms = ?, cluster = COALESCE(?, cluster) WHERE name = ?')
        .run(input.fingerprint, now, input.cluster, input.server);
    } else {
      this.db
        .prepare(
          "INSERT INTO servers (name, kind, cluster, cert_fingerprint, enrolled_ms, created_ms) VALUES (?, 'agent', ?, ?, ?, ?)",
        )
        .run(input.server, input.cluster, input.fingerprint, now, now);
    }
  }

  /** Adds a certificate fingerprint to the revocation list. */
  revoke(fingerprint: string, server: string, reason: string): void {
    this.db
      .prepare('INSERT OR IGNORE INTO revoked_certs (fingerprint, server, revoked_ms, reason) VALUES (?, ?, ?, ?)')
      .run(fingerprint, server, this.clock(), reason);
  }

  /**
   * Checks an agent's certificate: its common name must be an enrolled agent server whose
   * current certificate has this fingerprint.
   * @throws SpokeError CERT_REVOKED, CERT_UNKNOWN
   */
  authenticateAgent(commonName: string, fingerprint: string): ServerInfo {
    const revoked = this.db.prepare('SELECT reason FROM revoked_certs WHERE fingerprint = ?').get(fingerprint) as
      | { reason: string }
      | undefined;
    if (revoked) throw fail('CERT_REVOKED', `the certificate of ${commonName} was revoked (${revoked.reason})`);
    const r = this.row(commonName);
    if (!r || r.kind !== 'agent' || r.cert_fingerprint !== fingerprint) {
      throw fail('CERT_UNKNOWN', `certificate for ${commonName} is not known to this master; enroll again with a new token`);
    }
    return this.toServer(r);
  }

  /** Records what an agent said at hello (observed fields only). */
  recordHello(server: string, hello: { facts: HostFactsInfo; services: DetectedServiceInfo[]; capabilityVersion: number }): void {
    const now = this.clock();
    this.db.transaction(() => {
      this.db
        .prepare('UPDATE servers SET facts_json = ?, capability_version = ?, last_seen_ms = ? WHERE name = ?')
        .run(JSON.stringify(hello.facts), hello.capabilityVersion, now, server);
      this.recordDetectedServices(server, hello.services);
    })();
  }

  /** Replaces the detected services of an agent server (pins are kept). */
  recordDetectedServices(server: string, services: DetectedServiceInfo[]): void {
    this.db.transaction(() => {
      this.db.prepare('UPDATE services SET detected_impl = NULL, detected_version = NULL WHERE server = ?').run(server);
      const up = this.db.prepare(
        `INSERT INTO services (server, kind, detected_impl, detected_version) VALUES (?, ?, ?, ?)
         ON CONFLICT (server, kind) DO UPDATE SET detected_impl = excluded.detected_impl, detected_version = excluded.detected_version`,
      );
      // One row per kind: the first detected impl of a kind wins (nginx before apache, as reported).
      const seen = new Set<string>();
      for (const s of services) {
        if (seen.has(s.kind)) continue;
        seen.add(s.kind);
        up.run(server, s.kind, s.impl, s.version);
      }
      this.db
        .prepare('DELETE FROM services WHERE server = ? AND detected_impl IS NULL AND pinned_impl IS NULL')
        .run(server);
    })();
  }

  /** Records a heartbeat. */
  touch(server: string, atMs = this.clock()): void {
    this.db.prepare('UPDATE servers SET last_seen_ms = ? WHERE name = ?').run(atMs, server);
  }

  /**
   * Removes a server and revokes its certificate. Refused when it hosts platforms, holds site
   * databases, or is the last member of a cluster. A cluster without platforms can be removed;
   * its members become standalone agent servers.
   * @throws SpokeError SERVER_NOT_FOUND, SERVER_HAS_PLATFORMS, SERVER_HAS_SITE_DATABASES,
   *   CLUSTER_WOULD_STRAND_PLATFORMS, CLUSTER_NEEDS_MEMBER
   */
  removeServer(name: string): { revoked: string | null; kind: ServerKind } {
    return this.db.transaction(() => {
      const r = this.mustRow(name);
      const platforms = this.platformNamesOn(name);
      if (platforms.length > 0) {
        throw fail(
          'SERVER_HAS_PLATFORMS',
          `${name} hosts platform${platforms.length > 1 ? 's' : ''} ${platforms.join(', ')}; remove or migrate them first`,
        );
      }
      const dbSites = this.db.prepare('SELECT domain FROM sites WHERE db_server = ? ORDER BY domain').all(name) as {
        domain: string;
      }[];
      if (dbSites.length > 0) {
        throw fail(
          'SERVER_HAS_SITE_DATABASES',
          `${name} holds the databases of ${dbSites.map((s) => s.domain).join(', ')}; migrate those sites first`,
        );
      }
      if (r.kind === 'agent' && r.cluster) this.checkMemberRemovable(r.cluster, name);
      if (r.kind === 'cluster') {
        this.db.prepare('UPDATE servers SET cluster = NULL WHERE cluster = ?').run(name);
      }
      if (r.cert_fingerprint) this.revoke(r.cert_fingerprint, name, 'server removed');
      this.db.prepare('DELETE FROM tokens WHERE server = ? AND used_ms IS NULL').run(name);
      this.db.prepare('DELETE FROM servers WHERE name = ?').run(name);
      return { revoked: r.cert_fingerprint, kind: r.kind };
    })();
  }

  private checkMemberRemovable(cluster: string, member: string): void {
    const others = this.members(cluster).filter((m) => m !== member);
    if (others.length > 0) return;
    const platforms = this.platformNamesOn(cluster);
    if (platforms.length > 0) {
      throw fail(
        'CLUSTER_WOULD_STRAND_PLATFORMS',
        `${member} is the last member of cluster ${cluster}, which hosts ${platforms.join(', ')}; add another member first`,
      );
    }
    throw fail('CLUSTER_NEEDS_MEMBER', `${member} is the last member of cluster ${cluster}; remove the cluster instead (spoke server rm ${cluster})`);
  }

  private platformNamesOn(server: string): string[] {
    return (this.db.prepare('SELECT name FROM platforms WHERE server = ? ORDER BY name').all(server) as { name: string }[]).map(
      (p) => p.name,
    );
  }

  private checkJoinable(member: string): void {
    const m = this.mustRow(member);
    if (m.kind !== 'agent') throw fail('SERVER_IS_CLUSTER', `${member} is a cluster; only agent servers can be members`);
    if (m.cluster) throw fail('SERVER_IN_CLUSTER', `${member} is already a member of cluster ${m.cluster}`);
    const platforms = this.platformNamesOn(member);
    if (platforms.length > 0) {
      throw fail('SERVER_HAS_PLATFORMS', `${member} hosts ${platforms.join(', ')} itself; a cluster member serves only its cluster's platforms`);
    }
  }

  /**
   * Creates a cluster of existing agent servers.
   * @throws SpokeError INVALID_NAME, SERVER_EXISTS, CLUSTER_NEEDS_MEMBER, SERVER_NOT_FOUND,
   *   SERVER_IS_CLUSTER, SERVER_IN_CLUSTER, SERVER_HAS_PLATFORMS
   */
  createCluster(name: string, members: string[]): ServerInfo {
    checkName(name, 'cluster name');
    return this.db.transaction(() => {
      if (this.row(name)) throw fail('SERVER_EXISTS', `a server named ${name} already exists`);
      const unique = [...new Set(members)];
      if (unique.length === 0) throw fail('CLUSTER_NEEDS_MEMBER', `cluster ${name} needs at least one member (--member NAME)`);
      this.db.prepare("INSERT INTO servers (name, kind, created_ms) VALUES (?, 'cluster', ?)").run(name, this.clock());
      for (const m of unique) {
        this.checkJoinable(m);
        this.db.prepare('UPDATE servers SET cluster = ? WHERE name = ?').run(name, m);
      }
      return this.getServer(name);
    })();
  }

  private mustCluster(name: string): ServerRow {
    const c = this.row(name);
    if (!c) throw fail('CLUSTER_NOT_FOUND', `no cluster named ${name}`);
    if (c.kind !== 'cluster') throw fail('SERVER_NOT_CLUSTER', `${name} is an agent server, not a cluster`);
    return c;
  }

  /** Adds an agent server to a cluster. @throws as createCluster, plus CLUSTER_NOT_FOUND */
  addClusterMember(cluster: string, member: string): ServerInfo {
    return this.db.transaction(() => {
      this.mustCluster(cluster);
      this.checkJoinable(member);
      this.db.prepare('UPDATE servers SET cluster = ? WHERE name = ?').run(cluster, member);
      return this.getServer(cluster);
    })();
  }

  /**
   * Takes an agent server out of a cluster (it stays enrolled, standalone).
   * @throws SpokeError CLUSTER_NOT_FOUND, CLUSTER_MEMBER_NOT_FOUND, CLUSTER_NEEDS_MEMBER,
   *   CLUSTER_WOULD_STRAND_PLATFORMS
   */
  removeClusterMember(cluster: string, member: string): ServerInfo {
    return this.db.transaction(() => {
      this.mustCluster(cluster);
      const m = this.row(member);
      if (!m || m.cluster !== cluster) throw fail('CLUSTER_MEMBER_NOT_FOUND', `${member} is not a member of cluster ${cluster}`);
      this.checkMemberRemovable(cluster, member);
      this.db.prepare('UPDATE servers SET cluster = NULL WHERE name = ?').run(member);
      return this.getServer(cluster);
    })();
  }

  // ---------------------------------------------------------------- platforms

  /**
   * Registers a platform. Its path is reserved across every server and cluster.
   * @throws SpokeError INVALID_NAME, INVALID_PATH, PLATFORM_NAME_TAKEN, PLATFORM_PATH_TAKEN,
   *   PLATFORM_PATH_NESTED, SERVER_NOT_FOUND, SERVER_IS_CLUSTER_MEMBER, PATH_OUTSIDE_ROOTS,
   *   INVALID_ARGUMENT, and whatever `check` throws: it runs after the namespace rules, before
   *   anything is written
   */
  addPlatform(input: AddPlatformInput, check?: () => void): PlatformInfo {
    checkName(input.name, 'platform name');
    checkPublishPath(input.path);
    const excludes = [...new Set(input.excludes ?? [])];
    for (const x of excludes) {
      if (!x || x.startsWith('/') || x.split('/').includes('..')) {
        throw fail('INVALID_ARGUMENT', `exclude ${JSON.stringify(x)} must be a pattern relative to the platform (no leading /, no ..)`);
      }
    }
    if (input.source.kind === 'git' && !input.source.url) throw fail('INVALID_ARGUMENT', 'a git platform needs a repository URL');
    if (input.source.kind === 'makefile' && !input.source.makefile.trim()) {
      throw fail('INVALID_ARGUMENT', 'the makefile is empty');
    }
    if (input.source.kind === 'makefile' && input.source.makefileDir && !isAbsolute(input.source.makefileDir)) {
      throw fail('INVALID_ARGUMENT', `the makefile directory ${input.source.makefileDir} must be an absolute path`);
    }
    return this.db.transaction(() => {
      const taken = this.db.prepare('SELECT name, path, server FROM platforms WHERE name = ?').get(input.name) as
        | PlatformRow
        | undefined;
      if (taken) throw fail('PLATFORM_NAME_TAKEN', `a platform named ${input.name} already exists (at ${taken.path} on ${taken.server})`);
      const same = this.db.prepare('SELECT name, server FROM platforms WHERE path = ?').get(input.path) as PlatformRow | undefined;
      if (same) {
        throw fail('PLATFORM_PATH_TAKEN', `path ${input.path} is already used by platform ${same.name} on ${same.server}`);
      }
      const nested = this.db
        .prepare(
          `SELECT name, path, server FROM platforms
           WHERE substr(@p, 1, length(path) + 1) = path || '/' OR substr(path, 1, length(@p) + 1) = @p || '/'
           LIMIT 1`,
        )
        .get({ p: input.path }) as PlatformRow | undefined;
      if (nested) {
        const how = pathContains(nested.path, input.path) ? 'inside' : 'around';
        throw fail(
          'PLATFORM_PATH_NESTED',
          `path ${input.path} is ${how} ${nested.path} of platform ${nested.name} on ${nested.server}; platform paths cannot nest`,
        );
      }
      const srv = this.mustRow(input.server);
      if (srv.kind === 'agent' && srv.cluster) {
        throw fail('SERVER_IS_CLUSTER_MEMBER', `${input.server} is a member of cluster ${srv.cluster}; place the platform on ${srv.cluster}`);
      }
      this.checkWithinRoots(input.path, srv);
      check?.();
      const s = input.source;
      this.db
        .prepare(
          `INSERT INTO platforms (name, path, server, source_kind, makefile, makefile_name, makefile_dir, git_url, git_ref, status, live, created_ms, excludes_json)
           VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 'pending', ?, ?, ?)`,
        )
        .run(
          input.name,
          input.path,
          input.server,
          s.kind,
          s.kind === 'makefile' ? s.makefile : null,
          s.kind === 'makefile' ? s.makefileName : null,
          s.kind === 'makefile' ? s.makefileDir || null : null,
          s.kind === 'git' ? s.url : null,
          s.kind === 'git' ? s.ref : null,
          input.live ? 1 : 0,
          this.clock(),
          JSON.stringify(excludes),
        );
      return this.getPlatform(input.name);
    })();
  }

  /**
   * A platform path must lie under the roots that every agent which will hold it reported in its
   * last hello (a cluster: each member), or its converge could only fail there, after the
   * platform was registered. An agent that never said hello is not checked: its converge says so.
   * @throws SpokeError PATH_OUTSIDE_ROOTS
   */
  private checkWithinRoots(path: string, srv: ServerRow): void {
    const holders = srv.kind === 'cluster' ? this.members(srv.name).map((m) => this.mustRow(m)) : [srv];
    for (const h of holders) {
      const roots = h.facts_json ? ((JSON.parse(h.facts_json) as HostFactsInfo).roots ?? []) : [];
      if (roots.length === 0 || roots.some((r) => pathContains(r, path))) continue;
      throw fail(
        'PATH_OUTSIDE_ROOTS',
        `path ${path} is outside the roots of ${h.name} (${roots.join(', ')}), the directories its agent may write; ` +
          `choose a path under one of them, or add a root to that agent's agent.json ("roots") and restart it`,
      );
    }
  }

  /** @throws SpokeError PLATFORM_NOT_FOUND */
  getPlatform(name: string): PlatformInfo {
    const r = this.db.prepare('SELECT * FROM platforms WHERE name = ?').get(name) as PlatformRow | undefined;
    if (!r) throw fail('PLATFORM_NOT_FOUND', `no platform named ${name} (see: spoke platform ls)`);
    return this.toPlatform(r);
  }

  /** All platforms by name. */
  listPlatforms(): PlatformInfo[] {
    return (this.db.prepare('SELECT * FROM platforms ORDER BY name').all() as PlatformRow[]).map((r) => this.toPlatform(r));
  }

  private toPlatform(r: PlatformRow): PlatformInfo {
    const source: PlatformSource =
      r.source_kind === 'makefile'
        ? { kind: 'makefile', makefile: r.makefile ?? '', makefileName: r.makefile_name ?? '', ...(r.makefile_dir ? { makefileDir: r.makefile_dir } : {}) }
        : r.source_kind === 'git'
          ? { kind: 'git', url: r.git_url ?? '', ref: r.git_ref ?? '' }
          : { kind: 'existing' };
    const sites = (this.db.prepare('SELECT domain FROM sites WHERE platform = ? ORDER BY domain').all(r.name) as { domain: string }[]).map(
      (s) => s.domain,
    );
    return {
      name: r.name,
      path: r.path,
      server: r.server,
      source,
      status: r.status,
      registryJson: r.registry_json,
      live: r.live === 1,
      sites,
      createdMs: r.created_ms,
      desiredRootHash: r.desired_root_hash,
      excludes: JSON.parse(r.excludes_json) as string[],
    };
  }

  /** Platforms whose tree a server must hold (for a member: its cluster's). */
  platformsFor(server: string): PlatformInfo[] {
    const r = this.row(server);
    if (!r) return [];
    const host = r.kind === 'agent' && r.cluster ? r.cluster : server;
    return (this.db.prepare('SELECT * FROM platforms WHERE server = ? ORDER BY name').all(host) as PlatformRow[]).map((p) =>
      this.toPlatform(p),
    );
  }

  /** Stores what verify found in a platform (JSON of the registry; the verify task is its writer). */
  setRegistry(name: string, registryJson: string): void {
    this.db.prepare('UPDATE platforms SET registry_json = ? WHERE name = ?').run(registryJson, name);
  }

  /** Records the root hash of a platform's canonical tree (the verify task is its writer). */
  setDesiredRootHash(name: string, hash: string): void {
    this.db.prepare('UPDATE platforms SET desired_root_hash = ? WHERE name = ?').run(hash, name);
  }

  /** Records what an agent reports it holds at `path` (observed; "" removes the record). */
  recordObserved(server: string, path: string, rootHash: string): void {
    if (!rootHash) {
      this.db.prepare('DELETE FROM tree_observed WHERE server = ? AND path = ?').run(server, path);
      return;
    }
    this.db
      .prepare(
        `INSERT INTO tree_observed (server, path, root_hash, updated_ms) VALUES (?, ?, ?, ?)
         ON CONFLICT (server, path) DO UPDATE SET root_hash = excluded.root_hash, updated_ms = excluded.updated_ms`,
      )
      .run(server, path, rootHash, this.clock());
  }

  /** What a server last reported for a path (null when never). */
  observed(server: string, path: string): string | null {
    const r = this.db.prepare('SELECT root_hash FROM tree_observed WHERE server = ? AND path = ?').get(server, path) as
      | { root_hash: string }
      | undefined;
    return r?.root_hash ?? null;
  }

  /** Sets a platform's status (the verify task is its writer). */
  setPlatformStatus(name: string, status: PlatformStatus): void {
    this.db.prepare('UPDATE platforms SET status = ? WHERE name = ?').run(status, name);
  }

  /**
   * Removes a platform from the namespace. With sites it is refused unless `force`, which
   * removes the site rows too (their files on the servers are not touched here).
   * @throws SpokeError PLATFORM_NOT_FOUND, PLATFORM_HAS_SITES
   */
  removePlatform(name: string, force = false): { sitesRemoved: string[] } {
    return this.db.transaction(() => {
      const p = this.getPlatform(name);
      if (p.sites.length > 0 && !force) {
        throw fail(
          'PLATFORM_HAS_SITES',
          `platform ${name} has ${p.sites.length} site${p.sites.length > 1 ? 's' : ''} (${p.sites.join(', ')}); migrate them or use --force`,
        );
      }
      this.db.prepare('DELETE FROM sites WHERE platform = ?').run(name);
      this.db.prepare('DELETE FROM platforms WHERE name = ?').run(name);
      return { sitesRemoved: p.sites };
    })();
  }

  // ---------------------------------------------------------------- sites

  /**
   * Creates a site row with its domain and aliases reserved across the namespace.
   * @throws SpokeError INVALID_DOMAIN, DOMAIN_TAKEN, PLATFORM_NOT_FOUND, SERVER_NOT_FOUND
   */
  createSite(input: CreateSiteInput): SiteInfo {
    checkDomain(input.domain);
    const aliases = [...new Set(input.aliases ?? [])];
    aliases.forEach((a) => checkDomain(a));
    if (aliases.includes(input.domain)) throw fail('DOMAIN_TAKEN', `alias ${input.domain} is the site's own domain`);
    if (input.db && !input.dbServer) throw fail('INVALID_ARGUMENT', `site ${input.domain}: a database needs its db server`);
    return this.db.transaction(() => {
      this.getPlatform(input.platform);
      if (input.dbServer) {
        const srv = this.mustRow(input.dbServer);
        if (srv.kind !== 'agent') throw fail('SERVER_IS_CLUSTER', `${input.dbServer} is a cluster; a site database lives on one agent server`);
      }
      this.claimDomain(input.domain);
      aliases.forEach((a) => this.claimDomain(a));
      if (input.db) {
        const taken = this.dbNamesTaken(input.dbServer as string);
        for (const n of [input.db.name, input.db.user]) {
          if (taken.has(n)) throw fail('DB_EXISTS', `database or user name ${n} is already used by another site on ${input.dbServer as string}`);
        }
      }
      this.db
        .prepare(
          `INSERT INTO sites (domain, platform, db_server, profile, status, created_ms, db_name, db_user, db_password, salt, own_settings, redirect_aliases, cron_interval_s)
           VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
        )
        .run(
          input.domain,
          input.platform,
          input.dbServer ?? null,
          input.profile ?? null,
          input.status ?? 'pending',
          this.clock(),
          input.db?.name ?? null,
          input.db?.user ?? null,
          input.db?.password ?? null,
          input.salt ?? null,
          input.ownSettings ? 1 : 0,
          input.redirectAliases ? 1 : 0,
          input.cronIntervalS ?? 3600,
        );
      const ins = this.db.prepare('INSERT INTO domains (name, site, is_alias) VALUES (?, ?, ?)');
      ins.run(input.domain, input.domain, 0);
      aliases.forEach((a) => ins.run(a, input.domain, 1));
      return this.getSite(input.domain);
    })();
  }

  private claimDomain(name: string): void {
    const d = this.db.prepare('SELECT site, is_alias FROM domains WHERE name = ?').get(name) as
      | { site: string; is_alias: number }
      | undefined;
    if (d) {
      throw fail(
        'DOMAIN_TAKEN',
        d.is_alias ? `${name} is already an alias of site ${d.site}` : `a site named ${name} already exists`,
      );
    }
  }

  /**
   * Runs the checks of `createSite` without keeping anything (a site task refuses at once what
   * its first step would refuse).
   * @throws as createSite
   */
  checkNewSite(input: CreateSiteInput): void {
    this.dryRun(() => this.createSite(input));
  }

  private dryRun(fn: () => unknown): void {
    try {
      this.db.transaction(() => {
        fn();
        throw DRY_RUN;
      })();
    } catch (e) {
      if (e !== DRY_RUN) throw e;
    }
  }

  /** Database and user names already used on a db server (for siteDbName). */
  dbNamesTaken(dbServer: string): Set<string> {
    const rows = this.db.prepare('SELECT db_name, db_user FROM sites WHERE db_server = ?').all(dbServer) as { db_name: string | null; db_user: string | null }[];
    return new Set(rows.flatMap((r) => [r.db_name, r.db_user].filter((x): x is string => !!x)));
  }

  /**
   * Adds an alias to a site (the alias must name the site by its own domain).
   * @throws SpokeError SITE_NOT_FOUND, INVALID_DOMAIN, DOMAIN_TAKEN
   */
  addAlias(site: string, alias: string): SiteInfo {
    checkDomain(alias);
    return this.db.transaction(() => {
      const s = this.mustSiteRow(site);
      this.claimDomain(alias);
      this.db.prepare('INSERT INTO domains (name, site, is_alias) VALUES (?, ?, 1)').run(alias, s.domain);
      return this.getSite(s.domain);
    })();
  }

  /** The checks of addAlias, keeping nothing. @throws as addAlias */
  checkNewAlias(site: string, alias: string): void {
    this.dryRun(() => this.addAlias(site, alias));
  }

  /**
   * Removes an alias of a site (its name is free again).
   * @throws SpokeError SITE_NOT_FOUND, ALIAS_NOT_FOUND
   */
  removeAlias(site: string, alias: string): SiteInfo {
    return this.db.transaction(() => {
      const s = this.mustSiteRow(site);
      if (alias === s.domain) throw fail('ALIAS_NOT_FOUND', `${alias} is the site's own domain, not an alias; delete the site instead`);
      const r = this.db.prepare('DELETE FROM domains WHERE name = ? AND site = ? AND is_alias = 1').run(alias, s.domain);
      if (r.changes === 0) throw fail('ALIAS_NOT_FOUND', `${alias} is not an alias of ${s.domain} (see: spoke site show ${s.domain})`);
      return this.getSite(s.domain);
    })();
  }

  /** The checks of removeAlias, keeping nothing. @throws as removeAlias */
  checkRemoveAlias(site: string, alias: string): void {
    this.dryRun(() => this.removeAlias(site, alias));
  }

  /** A site row by its own domain (not an alias). @throws SpokeError SITE_NOT_FOUND */
  private mustSiteRow(domain: string): SiteRow {
    const r = this.db.prepare('SELECT * FROM sites WHERE domain = ?').get(domain) as SiteRow | undefined;
    if (!r) throw fail('SITE_NOT_FOUND', `no site named ${domain} (see: spoke site ls)`);
    return r;
  }

  /** Sets a site's status (the site tasks are its writer). @throws SpokeError SITE_NOT_FOUND */
  setSiteStatus(domain: string, status: SiteStatus, opts: { installedMs?: number } = {}): void {
    this.mustSiteRow(domain);
    this.db
      .prepare('UPDATE sites SET status = ?, installed_ms = COALESCE(?, installed_ms) WHERE domain = ?')
      .run(status, opts.installedMs ?? null, domain);
  }

  /** Records how the web servers reach the site's database. @throws SpokeError SITE_NOT_FOUND */
  setSiteDbAddress(domain: string, host: string, port: number): void {
    this.mustSiteRow(domain);
    this.db.prepare('UPDATE sites SET db_host = ?, db_port = ? WHERE domain = ?').run(host, port, domain);
  }

  /** Sets whether a site's aliases answer with a 301 to its domain. @throws SpokeError SITE_NOT_FOUND */
  setSiteRedirectAliases(domain: string, on: boolean): void {
    this.mustSiteRow(domain);
    this.db.prepare('UPDATE sites SET redirect_aliases = ? WHERE domain = ?').run(on ? 1 : 0, domain);
  }

  /**
   * Sets a site's cron interval in seconds (0 = off); the cron scheduler is its reader.
   * @throws SpokeError SITE_NOT_FOUND, INVALID_ARGUMENT (negative or not whole)
   */
  setSiteCronInterval(domain: string, seconds: number): SiteInfo {
    if (!Number.isInteger(seconds) || seconds < 0) throw fail('INVALID_ARGUMENT', `cron interval must be whole seconds >= 0, got ${seconds}`);
    const s = this.getSite(domain);
    this.db.prepare('UPDATE sites SET cron_interval_s = ? WHERE domain = ?').run(seconds, s.domain);
    return this.getSite(s.domain);
  }

  /** Every site with what the cron scheduler needs (its platform's kind from the stored registry). */
  cronSites(): CronSiteRow[] {
    const kinds = new Map<string, string>();
    for (const p of this.db.prepare('SELECT name, registry_json FROM platforms').all() as { name: string; registry_json: string | null }[]) {
      let kind = '';
      try {
        kind = p.registry_json ? String((JSON.parse(p.registry_json) as { kind?: unknown }).kind ?? '') : '';
      } catch {
        kind = '';
      }
      kinds.set(p.name, kind);
    }
    const rows = this.db.prepare('SELECT domain, platform, status, cron_interval_s, installed_ms, created_ms FROM sites ORDER BY domain').all() as {
      domain: string;
      platform: string;
      status: SiteStatus;
      cron_interval_s: number;
      installed_ms: number | null;
      created_ms: number;
    }[];
    return rows.map((r) => ({
      domain: r.domain,
      platform: r.platform,
      status: r.status,
      kind: kinds.get(r.platform) ?? '',
      intervalS: r.cron_interval_s,
      installedMs: r.installed_ms,
      createdMs: r.created_ms,
    }));
  }

  /** The site's database password and salt (for rendering its settings only). @throws SpokeError SITE_NOT_FOUND */
  siteSecrets(domain: string): SiteSecrets {
    const r = this.mustSiteRow(domain);
    return { dbPassword: r.db_password ?? '', salt: r.salt ?? '' };
  }

  /**
   * Removes a site row; its domain and aliases are free again.
   * @throws SpokeError SITE_NOT_FOUND
   */
  deleteSite(domain: string): void {
    this.db.transaction(() => {
      this.mustSiteRow(domain);
      this.db.prepare('DELETE FROM domains WHERE site = ?').run(domain);
      this.db.prepare('DELETE FROM sites WHERE domain = ?').run(domain);
    })();
  }

  /**
   * The switch of `site migrate`, in one transaction: the site's row takes its new platform and
   * database (and salt). With a new domain, the site is renamed: the reservation row of the new
   * domain (created by the migrate, status `installing`) is replaced by the site, whose aliases,
   * status, profile and times follow it; the old domain is free afterwards.
   * @throws SpokeError SITE_NOT_FOUND, DOMAIN_TAKEN (the new domain is held by another site), PLATFORM_NOT_FOUND, DB_EXISTS
   */
  relocateSite(
    from: string,
    to: { domain: string; platform: string; dbServer: string; db: { name: string; user: string; password: string }; dbHost: string; dbPort: number; salt: string },
  ): SiteInfo {
    return this.db.transaction(() => {
      const r = this.mustSiteRow(from);
      this.getPlatform(to.platform);
      if (to.domain !== from) {
        const d = this.db.prepare('SELECT site, is_alias FROM domains WHERE name = ?').get(to.domain) as { site: string; is_alias: number } | undefined;
        const held = this.db.prepare('SELECT status FROM sites WHERE domain = ?').get(to.domain) as { status: SiteStatus } | undefined;
        if (d && (d.is_alias || d.site !== to.domain || held?.status !== 'installing')) {
          throw fail('DOMAIN_TAKEN', d.is_alias ? `${to.domain} is an alias of site ${d.site}` : `a site named ${to.domain} already exists`);
        }
        if (d) this.deleteSite(to.domain);
      }
      const taken = this.db
        .prepare('SELECT domain FROM sites WHERE db_server = ? AND domain NOT IN (?, ?) AND (db_name IN (?, ?) OR db_user IN (?, ?))')
        .get(to.dbServer, from, to.domain, to.db.name, to.db.user, to.db.name, to.db.user) as { domain: string } | undefined;
      if (taken) throw fail('DB_EXISTS', `database or user ${to.db.name} is already used by site ${taken.domain} on ${to.dbServer}`);
      if (to.domain === from) {
        this.db
          // the copy's settings are rendered by Spoke (own_settings ends)
          .prepare('UPDATE sites SET platform = ?, db_server = ?, db_name = ?, db_user = ?, db_password = ?, db_host = ?, db_port = ?, salt = ?, own_settings = 0 WHERE domain = ?')
          .run(to.platform, to.dbServer, to.db.name, to.db.user, to.db.password, to.dbHost, to.dbPort, to.salt, from);
        return this.getSite(from);
      }
      this.db
        .prepare(
          `INSERT INTO sites (domain, platform, db_server, profile, status, created_ms, db_name, db_user, db_password, db_host, db_port, salt, installed_ms, redirect_aliases, cron_interval_s)
           VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
        )
        .run(to.domain, to.platform, to.dbServer, r.profile, r.status, r.created_ms, to.db.name, to.db.user, to.db.password, to.dbHost, to.dbPort, to.salt, r.installed_ms, r.redirect_aliases, r.cron_interval_s);
      this.db.prepare('INSERT INTO domains (name, site, is_alias) VALUES (?, ?, 0)').run(to.domain, to.domain);
      this.db.prepare('UPDATE domains SET site = ? WHERE site = ? AND is_alias = 1').run(to.domain, from);
      this.db.prepare('DELETE FROM domains WHERE site = ?').run(from);
      this.db.prepare('DELETE FROM sites WHERE domain = ?').run(from);
      return this.getSite(to.domain);
    })();
  }

  /** @throws SpokeError SITE_NOT_FOUND */
  getSite(domain: string): SiteInfo {
    const r = this.db.prepare('SELECT * FROM sites WHERE domain = ?').get(domain) as SiteRow | undefined;
    if (!r) {
      const alias = this.db.prepare('SELECT site FROM domains WHERE name = ? AND is_alias = 1').get(domain) as
        | { site: string }
        | undefined;
      if (alias) return this.getSite(alias.site);
      throw fail('SITE_NOT_FOUND', `no site named ${domain} (see: spoke site ls)`);
    }
    return this.toSite(r);
  }

  /** Sites, optionally of one platform. */
  listSites(platform?: string): SiteInfo[] {
    const rows = platform
      ? (this.db.prepare('SELECT * FROM sites WHERE platform = ? ORDER BY domain').all(platform) as SiteRow[])
      : (this.db.prepare('SELECT * FROM sites ORDER BY domain').all() as SiteRow[]);
    return rows.map((r) => this.toSite(r));
  }

  private toSite(r: SiteRow): SiteInfo {
    const aliases = (
      this.db.prepare('SELECT name FROM domains WHERE site = ? AND is_alias = 1 ORDER BY name').all(r.domain) as { name: string }[]
    ).map((a) => a.name);
    const server = (this.db.prepare('SELECT server FROM platforms WHERE name = ?').get(r.platform) as { server: string }).server;
    return {
      domain: r.domain,
      platform: r.platform,
      server,
      dbServer: r.db_server,
      profile: r.profile,
      aliases,
      status: r.status,
      createdMs: r.created_ms,
      dbName: r.db_name,
      dbUser: r.db_user,
      dbHost: r.db_host,
      dbPort: r.db_port,
      installedMs: r.installed_ms,
      ownSettings: r.own_settings === 1,
      redirectAliases: r.redirect_aliases === 1,
      cronIntervalS: r.cron_interval_s,
    };
  }

  /** Counts for `spoke status`. */
  counts(): { servers: number; platforms: number; sites: number } {
    const one = (sql: string) => (this.db.prepare(sql).get() as { n: number }).n;
    return {
      servers: one('SELECT count(*) AS n FROM servers'),
      platforms: one('SELECT count(*) AS n FROM platforms'),
      sites: one('SELECT count(*) AS n FROM sites'),
    };
  }
}
