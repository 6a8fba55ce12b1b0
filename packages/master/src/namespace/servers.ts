/**
 * The servers aggregate of the namespace: agent servers and clusters, their services (detected
 * and pinned), enrollment and revoked certificates, presence. Every mutation is one transaction;
 * a refusal throws a SpokeError with a stable code and changes nothing.
 */
import { checkName, fail } from '@spoke/shared';
import type { NamespaceScope } from './scope.js';
import type { HostFactsInfo, ServerInfo, ServerKind, ServiceInfo } from '../types.js';

/** A row of `servers` (read by the other aggregates through `row`/`mustRow`). */
export interface ServerRow {
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

/** A detected service as an agent reports it. */
export interface DetectedServiceInfo {
  kind: string;
  impl: string;
  version: string;
}

const PINNABLE: Record<string, readonly string[]> = {
  http: ['nginx', 'apache'],
  db: ['mariadb', 'mysql'],
};

/** Servers and clusters: rules and queries. */
export class Servers {
  constructor(private readonly scope: NamespaceScope) {}

  private get db() {
    return this.scope.db;
  }

  private get clock() {
    return this.scope.clock;
  }

  private get presence() {
    return this.scope.presence;
  }

  /** A server's row, undefined when there is none. */
  row(name: string): ServerRow | undefined {
    return this.db.prepare('SELECT * FROM servers WHERE name = ?').get(name) as ServerRow | undefined;
  }

  /** A server's row. @throws SpokeError SERVER_NOT_FOUND */
  mustRow(name: string): ServerRow {
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
    const membersOnline = members.filter((m) => this.presence.isOnline(m));
    const online = r.kind === 'cluster' ? members.length > 0 && membersOnline.length === members.length : this.presence.isOnline(r.name);
    const hostOf = r.kind === 'agent' && r.cluster ? r.cluster : r.name;
    const platforms = (this.db.prepare('SELECT name FROM platforms WHERE server = ? ORDER BY name').all(hostOf) as { name: string }[]).map((p) => p.name);
    return {
      name: r.name,
      kind: r.kind,
      cluster: r.cluster,
      members,
      online,
      membersOnline,
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
      const rows = members.map((m) => new Map((this.db.prepare('SELECT * FROM services WHERE server = ?').all(m) as Row[]).map((s) => [s.kind, s])));
      const kinds = new Set(rows.flatMap((m) => [...m.keys()]));
      for (const kind of kinds) {
        const impls = new Set(rows.map((m) => m.get(kind)?.detected_impl ?? ''));
        const detected = impls.size === 1 ? ([...impls][0] ?? '') : '';
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
        this.db.prepare("INSERT INTO servers (name, kind, created_ms) VALUES (?, 'cluster', ?)").run(input.cluster, now);
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
        .prepare("INSERT INTO servers (name, kind, cluster, cert_fingerprint, enrolled_ms, created_ms) VALUES (?, 'agent', ?, ?, ?, ?)")
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
    const revoked = this.db.prepare('SELECT reason FROM revoked_certs WHERE fingerprint = ?').get(fingerprint) as { reason: string } | undefined;
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
      this.db.prepare('DELETE FROM services WHERE server = ? AND detected_impl IS NULL AND pinned_impl IS NULL').run(server);
    })();
  }

  /** Records a heartbeat. */
  touch(server: string, atMs = this.clock()): void {
    this.db.prepare('UPDATE servers SET last_seen_ms = ? WHERE name = ?').run(atMs, server);
  }

  /** Records the last heartbeats of many servers in one transaction. */
  touchMany(seen: Iterable<readonly [server: string, atMs: number]>): void {
    const up = this.db.prepare('UPDATE servers SET last_seen_ms = ? WHERE name = ?');
    this.db.transaction(() => {
      for (const [server, atMs] of seen) up.run(atMs, server);
    })();
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
        throw fail('SERVER_HAS_PLATFORMS', `${name} hosts platform${platforms.length > 1 ? 's' : ''} ${platforms.join(', ')}; remove or migrate them first`);
      }
      const dbSites = this.db.prepare('SELECT domain FROM sites WHERE db_server = ? ORDER BY domain').all(name) as {
        domain: string;
      }[];
      if (dbSites.length > 0) {
        throw fail('SERVER_HAS_SITE_DATABASES', `${name} holds the databases of ${dbSites.map((s) => s.domain).join(', ')}; migrate those sites first`);
      }
      if (r.kind === 'agent' && r.cluster) {
        this.checkMemberRemovable(r.cluster, name);
        // A member holds its cluster's trees: it leaves the cluster first, which says what stays where.
        const served = this.platformNamesOn(r.cluster);
        if (served.length > 0) {
          throw fail(
            'SERVER_HAS_PLATFORMS',
            `${name} serves platform${served.length > 1 ? 's' : ''} ${served.join(', ')} of cluster ${r.cluster}; take it out first: spoke cluster remove ${r.cluster} ${name} [--delete-files], then spoke server rm ${name}`,
          );
        }
      }
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
    return (this.db.prepare('SELECT name FROM platforms WHERE server = ? ORDER BY name').all(server) as { name: string }[]).map((p) => p.name);
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
}
