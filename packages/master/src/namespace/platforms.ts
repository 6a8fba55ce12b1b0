/**
 * The platforms aggregate of the namespace: registration with its path rules, the stored
 * registry, desired and observed tree hashes, status, removal. Every mutation is one transaction;
 * a refusal throws a SpokeError with a stable code and changes nothing.
 */
import { checkName, checkPublishPath, fail, pathContains } from '@spoke/shared';
import { isAbsolute } from 'node:path';
import type { NamespaceScope } from './scope.js';
import type { ServerRow, Servers } from './servers.js';
import type { DriftMode, HostFactsInfo, PlatformInfo, PlatformSource, PlatformStatus } from '../types.js';

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
  drift_mode: DriftMode;
}

/** What `addPlatform` takes. */
export interface AddPlatformInput {
  name: string;
  path: string;
  server: string;
  source: PlatformSource;
  live?: boolean;
  excludes?: string[];
  /** @default 'repair' */
  drift?: DriftMode;
}

/** Platforms: rules and queries. */
export class Platforms {
  constructor(
    private readonly scope: NamespaceScope,
    private readonly servers: Servers,
  ) {}

  private get db() {
    return this.scope.db;
  }

  private get clock() {
    return this.scope.clock;
  }

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
      const taken = this.db.prepare('SELECT name, path, server FROM platforms WHERE name = ?').get(input.name) as PlatformRow | undefined;
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
      const srv = this.servers.mustRow(input.server);
      if (srv.kind === 'agent' && srv.cluster) {
        throw fail('SERVER_IS_CLUSTER_MEMBER', `${input.server} is a member of cluster ${srv.cluster}; place the platform on ${srv.cluster}`);
      }
      this.checkWithinRoots(input.path, srv);
      check?.();
      const s = input.source;
      this.db
        .prepare(
          `INSERT INTO platforms (name, path, server, source_kind, makefile, makefile_name, makefile_dir, git_url, git_ref, status, live, created_ms, excludes_json, drift_mode)
           VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 'pending', ?, ?, ?, ?)`,
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
          input.drift ?? 'repair',
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
    const holders = srv.kind === 'cluster' ? this.servers.members(srv.name).map((m) => this.servers.mustRow(m)) : [srv];
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

  /**
   * All platforms by name. Their sites come from one query for all (one per platform made a
   * reconcile pass over 1,000 platforms read 100,000 site rows in 1,000 queries; issue 20); with
   * `sites: false` none are read and every `sites` is empty (for callers that never look).
   */
  listPlatforms(opts: { sites?: boolean } = {}): PlatformInfo[] {
    const rows = this.db.prepare('SELECT * FROM platforms ORDER BY name').all() as PlatformRow[];
    const sites = new Map<string, string[]>();
    if (opts.sites !== false) {
      for (const s of this.db.prepare('SELECT platform, domain FROM sites ORDER BY domain').all() as { platform: string; domain: string }[]) {
        const list = sites.get(s.platform);
        if (list) list.push(s.domain);
        else sites.set(s.platform, [s.domain]);
      }
    }
    return rows.map((r) => this.toPlatform(r, sites.get(r.name) ?? []));
  }

  /** Every server's observed root hash of every tree, keyed `server\0path` (one query). */
  observedAll(): Map<string, string> {
    const rows = this.db.prepare('SELECT server, path, root_hash FROM tree_observed').all() as { server: string; path: string; root_hash: string }[];
    return new Map(rows.map((r) => [`${r.server}\0${r.path}`, r.root_hash]));
  }

  /** A platform row as the domain type; its sites read here unless the caller has them. */
  private toPlatform(r: PlatformRow, knownSites?: string[]): PlatformInfo {
    const source: PlatformSource =
      r.source_kind === 'makefile'
        ? { kind: 'makefile', makefile: r.makefile ?? '', makefileName: r.makefile_name ?? '', ...(r.makefile_dir ? { makefileDir: r.makefile_dir } : {}) }
        : r.source_kind === 'git'
          ? { kind: 'git', url: r.git_url ?? '', ref: r.git_ref ?? '' }
          : { kind: 'existing' };
    const sites =
      knownSites ?? (this.db.prepare('SELECT domain FROM sites WHERE platform = ? ORDER BY domain').all(r.name) as { domain: string }[]).map((s) => s.domain);
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
      drift: r.drift_mode,
    };
  }

  /** Sets what a drift check found on a server leads to (see DriftMode). @throws SpokeError PLATFORM_NOT_FOUND */
  setPlatformDrift(name: string, drift: DriftMode): PlatformInfo {
    this.getPlatform(name);
    this.db.prepare('UPDATE platforms SET drift_mode = ? WHERE name = ?').run(drift, name);
    return this.getPlatform(name);
  }

  /** Platforms whose tree a server must hold (for a member: its cluster's). */
  platformsFor(server: string): PlatformInfo[] {
    const r = this.servers.row(server);
    if (!r) return [];
    const host = r.kind === 'agent' && r.cluster ? r.cluster : server;
    return (this.db.prepare('SELECT * FROM platforms WHERE server = ? ORDER BY name').all(host) as PlatformRow[]).map((p) => this.toPlatform(p));
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

  /** What a server last reported for a path and when (null when never). */
  observedAt(server: string, path: string): { rootHash: string; updatedMs: number } | null {
    const r = this.db.prepare('SELECT root_hash, updated_ms FROM tree_observed WHERE server = ? AND path = ?').get(server, path) as
      { root_hash: string; updated_ms: number } | undefined;
    return r ? { rootHash: r.root_hash, updatedMs: r.updated_ms } : null;
  }

  /** What a server last reported for a path (null when never). */
  observed(server: string, path: string): string | null {
    const r = this.db.prepare('SELECT root_hash FROM tree_observed WHERE server = ? AND path = ?').get(server, path) as { root_hash: string } | undefined;
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
}
